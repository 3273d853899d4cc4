//! The `parse` fuzz target on the stable toolchain, for CI: replays the seed corpus
//! and the repository's manifests, then feeds them, mutated, to the same target as
//! `cargo fuzz run parse` (`proxy_routing::fuzzing::parse`) for a given time.
//!
//! ```text
//! cargo run -p proxy-routing --example fuzz_parse -- --seconds 20 [--seed N] [DIR_OR_FILE ...]
//! ```
//!
//! Not coverage-guided, unlike libFuzzer: a smoke test that catches panics on inputs
//! near the seeds. A panicking input is written to the temporary directory and the run
//! exits with status 1; the seed is printed so that a run can be repeated.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use proxy_routing::fuzzing::{SEPARATOR, parse};

/// Fragments that mean something to the parsers, spliced into inputs.
const DICTIONARY: &[&str] = &[
    "apiVersion: networking.istio.io/v1\n",
    "kind: VirtualService\n",
    "\n---\n",
    "http:\n",
    "- name: r\n",
    "match:\n",
    "- uri:\n",
    "prefix: /",
    "exact: ",
    "regex: ",
    "(",
    ")",
    "[0-9]+",
    "{99999}",
    "route:\n",
    "- destination:\n",
    "host: identity",
    "host: legacy-api",
    "weight: ",
    "-1",
    "0",
    "2147483648",
    "mirror:",
    "mirrors:",
    "mirrorPercentage: {value: ",
    "101",
    "1e308",
    ".nan",
    ".inf",
    "timeout: ",
    "5s",
    "1.5ms",
    "retries:",
    "attempts: ",
    "retryOn: 5xx,503",
    "headers:",
    "withoutHeaders:",
    "ignoreUriCase: true",
    "rewrite: {uri: /}",
    "subset: v1",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    "\"",
    "\t",
    "\u{feff}",
    "é",
    "upstreams:\n",
    "address: 127.0.0.1:3000",
    "role: new",
    "sticky_key: {cookie: s}",
    "admin_token: ",
    "comparison: {ignore: [\"$..x\"]}",
    "guard: {max_p99_ratio: 0.5}",
    "Bearer e30.eyJzdWIiOiI0MiJ9.c2ln",
];

fn main() -> ExitCode {
    let mut seconds = 10u64;
    let mut seed = None;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--seed" => seed = Some(args.next().and_then(|v| v.parse().ok()).expect("--seed N")),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run with cargo run");
    let crate_dir = Path::new(&crate_dir);
    if paths.is_empty() {
        paths = vec![
            crate_dir.join("fuzz/seeds/parse"),
            crate_dir.join("fuzz/corpus/parse"),
            crate_dir.join("../../istio"),
            crate_dir.join("../config"),
        ];
    }
    let mut corpus = read_corpus(&paths);
    // The example manifest and config as one input, so that mutations reach the table.
    let manifest = std::fs::read(crate_dir.join("../../istio/virtualservice-member-api.yaml"));
    let config = std::fs::read(crate_dir.join("../config/local.yaml"));
    if let (Ok(manifest), Ok(config)) = (manifest, config) {
        corpus.push([manifest.as_slice(), SEPARATOR, config.as_slice()].concat());
    }
    let seed = seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        nanos.as_nanos() as u64
    });
    println!(
        "fuzz_parse: {} corpus inputs, {seconds}s, seed {seed}",
        corpus.len()
    );
    let mut tables = 0u64;
    for input in &corpus {
        match survives(input) {
            Some(built) => tables += u64::from(built),
            None => return ExitCode::FAILURE,
        }
    }
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let mut input = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut input, &corpus, &mut rng);
        }
        match survives(&input) {
            Some(built) => tables += u64::from(built),
            None => {
                println!("fuzz_parse: failed after {runs} inputs; repeat with --seed {seed}");
                return ExitCode::FAILURE;
            }
        }
        runs += 1;
    }
    println!(
        "fuzz_parse: {runs} mutated inputs in {seconds}s, {tables} built a route table, no panic (seed {seed})"
    );
    ExitCode::SUCCESS
}

/// Runs one input: whether it built a table, or `None` after a panic or a slow run,
/// once the input is saved.
fn survives(input: &[u8]) -> Option<bool> {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| parse(input));
    let slow = started.elapsed() > Duration::from_secs(2);
    match outcome {
        Ok(built) if !slow => return Some(built),
        _ => {}
    }
    let path = std::env::temp_dir().join(format!("fuzz_parse-{}.bin", std::process::id()));
    let saved = std::fs::write(&path, input).is_ok();
    let what = if slow {
        "a slow input (over 2s)"
    } else {
        "a panic"
    };
    println!(
        "fuzz_parse: {what}; input {}",
        if saved {
            path.display().to_string()
        } else {
            "not saved".into()
        }
    );
    None
}

fn read_corpus(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read_dir(path) {
            Ok(entries) => files.extend(entries.filter_map(Result::ok).map(|entry| entry.path())),
            Err(_) if path.is_file() => files.push(path.clone()),
            Err(_) => {}
        }
    }
    files.sort();
    let mut corpus: Vec<Vec<u8>> = files
        .iter()
        .filter_map(|file| std::fs::read(file).ok())
        .collect();
    if corpus.is_empty() {
        corpus.push(b"kind: VirtualService\n".to_vec());
    }
    corpus
}

const MAX_LEN: usize = 64 * 1024;

fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut Rng) {
    let at = rng.below(input.len() + 1);
    match rng.below(7) {
        0 if !input.is_empty() => {
            let index = at.min(input.len() - 1);
            input[index] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let index = at.min(input.len() - 1);
            input[index] = b":{}[]-#&*!|>'\"\n 09%,."[rng.below(21)];
        }
        2 => {
            let word = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
            input.splice(at..at, word.iter().copied());
        }
        3 => {
            let end = (at + rng.below(64)).min(input.len());
            input.drain(at..end);
        }
        4 => {
            let end = (at + rng.below(256)).min(input.len());
            let copy = input[at..end].to_vec();
            let to = rng.below(input.len() + 1);
            input.splice(to..to, copy);
        }
        5 => {
            let other = &corpus[rng.below(corpus.len())];
            let from = rng.below(other.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
            if lines.len() > 1 {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
            }
            *input = lines.join(&b'\n');
        }
    }
    input.truncate(MAX_LEN);
}

/// xorshift64*: small, seedable, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((u128::from(value) * bound as u128) >> 64) as usize
    }
}

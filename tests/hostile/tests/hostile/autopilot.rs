//! The rollout autopilot (`rollout auto`, the binary as SREs run it) under app traffic
//! that never pauses: every route taken from 0% to 100% on evidence alone, the
//! decommission report passing and `identity migrate cutover` refusing to go without it;
//! and, with two proxy replicas and a wrong write planted in the new side's database
//! half-way, the route aborted on both, the manifest back at 0% and the autopilot
//! stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, Migrating, ProxyProcess, binary, email, manifest, migrating, proxy, proxy_config,
    until,
};

/// The member routes the traffic below gives evidence on, each of them.
const ROUTES: [&str; 5] = [
    "sessions",
    "users-me-read",
    "users-me",
    "users-read",
    "users",
];

struct Rehearsal {
    m: Migrating,
    /// The proxy's replicas, on one manifest file (as pods on one ConfigMap).
    proxies: Vec<ProxyProcess>,
    dir: tempfile::TempDir,
}

/// A migrating service behind `replicas` proxies at 0%, whose guards never abort on
/// their own (only the autopilot judges here). The sync's lag judged above 10 s only,
/// as latency is (a CI run once had the sync 8 s behind while other suites ran beside
/// this one; the lag has its own tests and alerts).
fn rehearsal(replicas: usize) -> Rehearsal {
    let m = migrating(true, &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = proxy_config(
        m.legacy.addr,
        m.identity.http,
        "  write_effects_settle: 10s\nguard:\n  min_requests: 1000000\n  min_comparisons: 1000000\n",
    );
    let proxies = (0..replicas)
        .map(|_| proxy(dir.path(), &manifest(0), &config))
        .collect();
    Rehearsal { m, proxies, dir }
}

impl Rehearsal {
    fn manifest(&self) -> &Path {
        &self.proxies[0].vs_path
    }
}

/// App clients through the proxy until stopped: each signs up, logs in, reads its
/// profile and a public one, changes its nickname and logs out, over and over. Counts
/// the answers a client would not expect.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    unexpected: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(proxy: std::net::SocketAddr, clients: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let unexpected = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, unexpected) = (stop.clone(), unexpected.clone());
                tokio::spawn(async move {
                    // One client, its connections kept, as an app keeps them.
                    let http = reqwest::Client::new();
                    let call = |method: &str, url: String, token: Option<&str>, body: Option<Value>| {
                        let mut req = http.request(method.parse().unwrap(), url);
                        if let Some(t) = token {
                            req = req.bearer_auth(t);
                        }
                        if let Some(b) = body {
                            req = req.json(&b);
                        }
                        async move {
                            match req.send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    (status, r.json().await.unwrap_or(Value::Null))
                                }
                                Err(e) => (0, Value::String(e.to_string())),
                            }
                        }
                    };
                    let url = |p: &str| format!("http://{proxy}{p}");
                    let expect = |got: u16, want: u16, what: &str, v: &Value| {
                        if got != want {
                            unexpected.fetch_add(1, Ordering::Relaxed);
                            eprintln!("unexpected {got} for {what}: {v}");
                        }
                    };
                    let pause = || tokio::time::sleep(Duration::from_millis(5));
                    while !stop.load(Ordering::Relaxed) {
                        let email = email("auto");
                        let (s, v) = call(
                            "POST",
                            url("/api/v1/users"),
                            None,
                            Some(json!({"user": {"email": email, "password": "password-1", "nickname": "auto"}})),
                        )
                        .await;
                        expect(s, 201, "sign-up", &v);
                        let Some(id) = v["id"].as_i64() else {
                            pause().await;
                            continue;
                        };
                        let (s, v) = call(
                            "POST",
                            url("/api/v1/sessions"),
                            None,
                            Some(json!({"email": email, "password": "password-1"})),
                        )
                        .await;
                        expect(s, 201, "log-in", &v);
                        let Some(token) = v["token"].as_str().map(str::to_owned) else {
                            pause().await;
                            continue;
                        };
                        for n in 0..3 {
                            let (s, v) = call("GET", url("/api/v1/users/me"), Some(&token), None).await;
                            expect(s, 200, "profile", &v);
                            let (s, v) =
                                call("GET", url(&format!("/api/v1/users/{id}")), None, None).await;
                            expect(s, 200, "public profile", &v);
                            let (s, v) = call(
                                "PATCH",
                                url("/api/v1/users/me"),
                                Some(&token),
                                Some(json!({"user": {"nickname": format!("auto-{n}")}})),
                            )
                            .await;
                            expect(s, 200, "profile change", &v);
                        }
                        let (s, v) =
                            call("DELETE", url("/api/v1/sessions"), Some(&token), None).await;
                        expect(s, 204, "log-out", &v);
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            unexpected,
            tasks,
        }
    }

    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.unexpected.load(Ordering::Relaxed)
    }
}

/// `rollout ARGS...` against the proxy and its manifest, in the background.
fn rollout(r: &Rehearsal, args: &[&str]) -> tokio::task::JoinHandle<Output> {
    let mut command = Command::new(binary("rollout"));
    command
        .args(args)
        .env(
            "ROLLOUT_ADMIN_URL",
            r.proxies
                .iter()
                .map(|p| format!("http://{}", p.admin))
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ROLLOUT_VIRTUAL_SERVICE", r.manifest())
        .env("ROLLOUT_JOURNAL", journal(r));
    tokio::task::spawn_blocking(move || command.output().unwrap())
}

fn journal(r: &Rehearsal) -> PathBuf {
    r.dir.path().join("journal.jsonl")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn decisions(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An admin API answer of one proxy replica.
async fn admin_get(replica: &ProxyProcess, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{}{path}", replica.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What a failed run needs read: the differences the proxy sampled (fields, no
/// values), the sync's figures, and a whole data verify once the traffic has stopped.
async fn diagnosis(r: &Rehearsal) -> String {
    let samples = admin_get(&r.proxies[0], "/admin/samples").await;
    let metrics = reqwest::get(r.m.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sync: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("identity_sync"))
        .collect();
    // Whether what the data verify saw still differs once the traffic has stopped (a
    // write lost or misordered), or has settled (the sync behind).
    let (_, verify) = r.m.migrate_may_fail(&["verify"]);
    format!(
        "samples: {samples}\n{}\nverify after the run: {verify}",
        sync.join("\n")
    )
}

/// The new side's weight of `route` in the manifest, in percent.
fn weight(r: &Rehearsal, route: &str) -> u32 {
    let text = std::fs::read_to_string(r.manifest()).unwrap();
    let (legacy, new) = rollout::manifest::weights(
        &text,
        route,
        "legacy-api.members.svc.cluster.local",
        "identity.members.svc.cluster.local",
    )
    .unwrap();
    new * 100 / (legacy + new)
}

/// Short steps; latency judged above 10 s only (a shared 2-core machine running other
/// suites beside this one puts seconds on a request now and then: `bench/` judges
/// speed).
const QUICK: [&str; 10] = [
    "--p99-floor-ms",
    "10000",
    "--plan",
    "1,50,100",
    "--bake",
    "1.5",
    "--interval",
    "0.25",
    "--min-comparisons",
    "5",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autopilot_takes_every_route_to_100_percent_and_the_cutover_needs_its_report() {
    let r = rehearsal(1);
    let traffic = Traffic::start(r.proxies[0].addr, 4);
    let mut args = vec!["auto"];
    args.extend(ROUTES);
    args.extend(QUICK);
    let out = tokio::time::timeout(Duration::from_secs(120), rollout(&r, &args))
        .await
        .expect("the autopilot finished")
        .unwrap();
    let unexpected = traffic.stop().await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        diagnosis(&r).await
    );
    assert_eq!(unexpected, 0, "clients saw unexpected answers");
    for route in ROUTES {
        assert_eq!(weight(&r, route), 100, "{route}: {}", text(&out));
    }
    // Every step of every route was passed on evidence, verified, and recorded.
    let journal = decisions(&journal(&r));
    for route in ROUTES {
        let passed: Vec<&Value> = journal
            .iter()
            .filter(|d| d["route"] == route && (d["action"] == "advance" || d["action"] == "done"))
            .collect();
        let steps: Vec<u64> = passed
            .iter()
            .map(|d| d["percent"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [0, 1, 50], "{route}: {}", text(&out));
        for d in passed {
            let held = d["figures"]["reads"]["compared"].as_u64().unwrap()
                + d["figures"]["write_effects"]["compared"].as_u64().unwrap();
            assert!(held >= 5, "{route} advanced on {held} comparisons: {d}");
            assert_eq!(d["figures"]["reads"]["mismatches"], 0, "{d}");
            assert_eq!(d["figures"]["write_effects"]["mismatches"], 0, "{d}");
            assert_eq!(d["verify"]["deviating"], 0, "{d}");
            assert!(d["verify"]["compared"].as_u64().unwrap() > 0, "{d}");
        }
    }

    // The cutover refuses to go without a report, and with one that does not pass.
    let refused = r.m.migrate_may_fail(&["cutover"]);
    assert!(!refused.0, "cut over without a report: {}", refused.1);
    assert!(
        refused.1.contains("no decommission report"),
        "{}",
        refused.1
    );
    let report = r.dir.path().join("report.json");
    let report_arg = report.to_str().unwrap();
    let out = rollout(&r, &["report", "--no-verify", "--out", report_arg])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let refused = r.m.migrate_may_fail(&["cutover", "--report", report_arg]);
    assert!(!refused.0, "cut over on a failing report: {}", refused.1);
    assert!(refused.1.contains("does not pass"), "{}", refused.1);

    // An operator's abort after the autopilot finished: the report does not pass.
    let http = reqwest::Client::new();
    let admin = |action: &'static str| {
        http.post(format!(
            "http://{}/admin/routes/users-read/{action}",
            r.proxies[0].admin
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
    };
    assert_eq!(admin("abort").await.unwrap().status().as_u16(), 200);
    let out = rollout(&r, &["report", "--out", report_arg]).await.unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains("users-read: 0.0% on replica")
            && text(&out).contains("aborted by the operator"),
        "{}",
        text(&out)
    );
    assert_eq!(admin("resume").await.unwrap().status().as_u16(), 200);

    // The report with its final data verify passes, and the cutover goes by it.
    let out = rollout(&r, &["report", "--out", report_arg]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    for route in ROUTES {
        assert!(
            printed.contains(&format!("{route}: at 100%, PASSED")),
            "{printed}"
        );
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(saved["passed"], true);
    assert!(saved["final_verify"]["compared"].as_u64().unwrap() > 0);
    // Published on the proxy's dashboard.
    let shown = admin_get(&r.proxies[0], "/admin/report").await;
    assert_eq!(shown["passed"], true, "{shown}");
    let done = r.m.migrate_may_fail(&["cutover", "--report", report_arg]);
    assert!(done.0, "{}", done.1);
}

/// Two proxy replicas, the clients all on the second: the autopilot can only advance on
/// evidence it reads from a replica other than the first, and its abort reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_write_planted_half_way_aborts_the_route_on_every_replica_and_stops_the_autopilot()
{
    let r = rehearsal(2);
    let traffic = [Traffic::start(r.proxies[1].addr, 4)];
    let mut args = vec!["auto", "users-me"];
    args.extend(QUICK);
    let run = rollout(&r, &args);
    if !until(Duration::from_secs(60), || async {
        weight(&r, "users-me") == 50
    })
    .await
    {
        let out = tokio::time::timeout(Duration::from_secs(1), run).await;
        panic!(
            "users-me never reached 50%: {:?}",
            out.map(|o| text(&o.unwrap()))
        );
    }
    // Planted: the new side keeps the old nickname whatever it is asked (and whatever
    // the sync brings).
    crate::write_effects::psql(
        &r.m.identity.database_url,
        "CREATE FUNCTION planted() RETURNS trigger AS $$ BEGIN NEW.nickname := OLD.nickname; RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER planted BEFORE UPDATE ON members FOR EACH ROW EXECUTE FUNCTION planted();",
    );
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the autopilot stopped")
        .unwrap();
    let mut unexpected = 0;
    for t in traffic {
        unexpected += t.stop().await;
    }
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_eq!(unexpected, 0, "clients saw unexpected answers");
    let journal = decisions(&journal(&r));
    let abort = journal.last().unwrap();
    assert_eq!(abort["action"], "abort", "{abort}");
    assert_eq!(abort["percent"], 50, "{abort}");
    let reason = abort["reason"].as_str().unwrap();
    assert!(
        reason.contains("nickname"),
        "the field is not named: {reason}"
    );
    assert!(!reason.contains("auto-"), "a value in the reason: {reason}");
    // The first replica saw nothing: what the steps were judged on came from the
    // second.
    let metrics = reqwest::get(format!("http://{}/metrics", r.proxies[0].admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = rollout::evidence::Counters::of_route(&metrics, "users-me").figures();
    assert_eq!(first.held().compared, 0, "{first:?}");
    let advanced = journal.iter().filter(|d| d["action"] == "advance").count();
    assert_eq!(
        advanced, 2,
        "0% and 1% passed on the second replica's evidence"
    );
    // Aborted everywhere: the manifest and every replica at 0%.
    let aborted = abort["route"].as_str().unwrap();
    assert_eq!(weight(&r, aborted), 0);
    for replica in &r.proxies {
        let status = admin_get(replica, "/admin/status").await;
        let route = status["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == aborted)
            .unwrap();
        assert_eq!(route["new_share_percent"], 0.0, "{route}");
        assert_eq!(route["state"], "aborted", "{route}");
    }
}

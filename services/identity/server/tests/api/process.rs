//! The `identity` binary as operators run it: invalid settings exit 64 with a message
//! naming the setting; SIGTERM drains and exits cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

fn identity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_identity"))
}

#[test]
fn invalid_settings_name_the_setting_and_exit_64() {
    let cases: [(&[&str], &str); 6] = [
        (&["serve", "--http-addr", "not-an-address"], "--http-addr"),
        (
            &["serve", "--argon2-iterations", "0"],
            "--argon2-iterations",
        ),
        (&["serve", "--database-url", "mysql://x"], "--database-url"),
        (
            &["serve", "--throttle-per-account", "0"],
            "--throttle-per-account",
        ),
        (
            &["serve", "--legacy-db-max-connections", "1"],
            "--legacy-db-max-connections",
        ),
        (
            &["serve", "--legacy-database-url", "mysql://x"],
            "--legacy-database-url",
        ),
    ];
    for (args, setting) in cases {
        let out = identity()
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(setting), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            !stderr.contains("mysql://"),
            "a database URL is never echoed: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let out = identity()
        .args([
            "serve",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(
        !stderr.contains("nobody@"),
        "the URL may hold a password: {stderr}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = identity()
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "listening".
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("listening") && std::time::Instant::now() < deadline {
        let mut buf = [0u8; 512];
        let n = std::io::Read::read(&mut stderr, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("listening"), "{seen}");
    assert!(
        dir.path().join("identity.sqlite3").exists(),
        "the embedded database is created on first start"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

//! The `identity` binary as operators run it: invalid settings exit 64 with a message
//! naming the setting; SIGTERM drains and exits cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

fn identity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_identity"))
}

#[test]
fn invalid_settings_name_the_setting_and_exit_64() {
    let cases: [(&[&str], &str); 8] = [
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
        (&["serve", "--grpc-threads", "0"], "--grpc-threads"),
        (&["serve", "--grpc-threads", "257"], "--grpc-threads"),
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

/// A served `identity` on the embedded database, its JSON log read until "listening":
/// the process, its REST and gRPC addresses.
#[cfg(unix)]
fn serving(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    std::process::Child,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let mut child = identity()
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("\"listening\"") && std::time::Instant::now() < deadline {
        let mut buf = [0u8; 512];
        let n = std::io::Read::read(&mut stderr, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let line = seen
        .lines()
        .find(|l| l.contains("\"listening\""))
        .unwrap_or_else(|| panic!("{seen}"));
    let line = serde_json::from_str::<serde_json::Value>(line).unwrap();
    let addr = |name: &str| line[name].as_str().unwrap().parse().unwrap();
    // The log goes on being read, so that the service never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, addr("http"), addr("grpc"))
}

#[cfg(unix)]
#[test]
fn sigterm_drains_a_request_in_flight_and_exits_cleanly() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let (mut child, http, _) = serving(dir.path(), &[]);
    assert!(
        dir.path().join("identity.sqlite3").exists(),
        "the embedded database is created on first start"
    );
    // A sign-up in flight: its head and half its body sent.
    let body =
        r#"{"user":{"email":"drain@example.com","password":"password123","nickname":"drain"}}"#;
    let mut conn = std::net::TcpStream::connect(http).unwrap();
    write!(
        conn,
        "POST /api/v1/users HTTP/1.1\r\nHost: identity\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    )
    .unwrap();
    let in_flight = || {
        let mut m = std::net::TcpStream::connect(http).unwrap();
        m.write_all(b"GET /metrics HTTP/1.1\r\nHost: identity\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = m.read_to_string(&mut text);
        text.contains("identity_http_requests_in_flight 1")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !in_flight() {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The rest of the body after the signal: the request is still served.
    conn.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = [0u8; 64];
    let n = conn.read(&mut answer).unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    drop(conn);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// SIGTERM with gRPC connections that never close (a client that ignores the GOAWAY, one
/// that never even sent its preface), on every serving thread: the process still exits,
/// cleanly, once the grace period is over.
#[cfg(unix)]
#[test]
fn sigterm_exits_after_the_grace_even_with_grpc_connections_that_never_close() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, grpc) = serving(
        dir.path(),
        &["--grpc-threads", "2", "--shutdown-grace-secs", "1"],
    );
    let mut held = Vec::new();
    for n in 0..8 {
        let mut tcp = std::net::TcpStream::connect(grpc).unwrap();
        if n % 2 == 0 {
            tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .unwrap();
        }
        held.push(tcp);
    }
    std::thread::sleep(Duration::from_millis(300));
    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = signalled + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 15 s after SIGTERM with a grace of 1 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    drop(held);
}

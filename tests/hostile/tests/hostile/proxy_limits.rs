//! Attacks on the migration proxy's resources: clients that hold its memory, its
//! connections or its replay slots, and upstreams that stall.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{identity, legacy_sim, manifest, metric, proxy, proxy_config, until};

/// Bounds short enough for a test: what production sets in seconds or minutes.
const QUICK_LIMITS: &str = "limits:\n  body_read_timeout: 3s\n  header_read_timeout: 2s\n  idle_timeout: 2s\n  replay_timeout: 1s\n";

/// Whether the peer closed `stream` (EOF or reset) within `limit`, reading (and
/// dropping) whatever it sends first.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// The status line of what `stream` answers first.
fn first_status(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_one_byte_short_cannot_exhaust_the_proxys_memory() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(1),
        &proxy_config(legacy.addr, identity.http, QUICK_LIMITS),
    );
    let addr = p.addr;
    let before = p.process.rss_kib();
    // 400 connections, each announcing 1 MiB and sending all of it but the last byte.
    let attackers = tokio::task::spawn_blocking(move || {
        let body = vec![b'x'; (1 << 20) - 1];
        (0..400)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(
                    s,
                    "POST /api/v1/users HTTP/1.1\r\nHost: member-api\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    1 << 20
                )
                .unwrap();
                s.write_all(&body).unwrap();
                s
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let held = p.process.rss_kib();
    // An ordinary request is answered meanwhile.
    let ordinary = reqwest::get(format!("http://{addr}/api/v1/users/1"))
        .await
        .unwrap();
    assert_eq!(ordinary.status().as_u16(), 404);
    let started = Instant::now();
    let outcomes = tokio::task::spawn_blocking(move || {
        attackers
            .into_iter()
            .map(|mut s| {
                let status = first_status(&mut s);
                (status, closed_within(&mut s, Duration::from_secs(10)))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let took = started.elapsed();
    println!(
        "proxy RSS: {} KiB before, {} KiB holding 400 uploads one byte short; all answered and closed after {:.1} s",
        before,
        held,
        took.as_secs_f64()
    );
    assert!(held < 96 * 1024, "RSS {held} KiB while held");
    for (status, closed) in &outcomes {
        assert_eq!(status, "HTTP/1.1 408 Request Timeout");
        assert!(closed, "the connection stays open after its 408");
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(
        metric(p.admin, "proxy_limited_total{cause=\"body_read_timeout\"}").await,
        400.0
    );
    assert_eq!(metric(p.admin, "proxy_buffered_body_bytes").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_larger_than_the_comparison_bound_is_streamed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(0),
        &proxy_config(
            legacy.addr,
            identity.http,
            "limits: {max_buffered_body_bytes: 65536}\n",
        ),
    );
    // 2 MiB of JSON padding around a valid sign-up: too large to compare, and larger
    // than the whole body budget; forwarded as a stream, with its length.
    let padding = "x".repeat(2 << 20);
    let body = json!({"user": {"email": "big@example.com", "password": "password-big", "nickname": "big"}, "pad": padding});
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/users", p.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", p.process.output());
    assert_eq!(
        metric(
            p.admin,
            "proxy_streamed_requests_total{cause=\"too_large\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_a_request_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(1),
        &proxy_config(legacy.addr, identity.http, QUICK_LIMITS),
    );
    let mut silent = TcpStream::connect(p.addr).unwrap();
    // An h2c preface cut short: the connection never gets past protocol detection.
    let mut preface = TcpStream::connect(p.addr).unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)));
    assert!(closed_within(&mut preface, Duration::from_secs(10)));
    assert!(metric(p.admin, "proxy_limited_total{cause=\"idle\"}").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(1),
        &proxy_config(legacy.addr, identity.http, QUICK_LIMITS),
    );
    let addr = p.addr;
    let cut_off = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        let head = b"GET /api/v1/users/1 HTTP/1.1\r\nHost: member-api\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        // A byte every 200 ms: always active, never done.
        for byte in head {
            if s.write_all(&[*byte]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            let closed = matches!(s.read(&mut buf), Ok(0))
                || matches!(s.read(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            if closed {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await
    .unwrap();
    let cut_off = cut_off.expect("the slow head was never cut off");
    assert!(cut_off < Duration::from_secs(10), "{cut_off:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_allowed_are_closed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(1),
        &proxy_config(
            legacy.addr,
            identity.http,
            "limits: {max_connections: 8, idle_timeout: 60s}\n",
        ),
    );
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(p.addr).unwrap())
        .collect();
    // Let the proxy take them all.
    assert!(
        until(Duration::from_secs(10), || async {
            metric(p.admin, "proxy_open_connections").await == 8.0
        })
        .await
    );
    let mut ninth = TcpStream::connect(p.addr).unwrap();
    assert!(closed_within(&mut ninth, Duration::from_secs(5)));
    assert_eq!(
        metric(p.admin, "proxy_limited_total{cause=\"max_connections\"}").await,
        1.0
    );
    held.truncate(4);
    assert!(
        until(Duration::from_secs(10), || async {
            metric(p.admin, "proxy_open_connections").await == 4.0
        })
        .await
    );
    let r = reqwest::get(format!("http://{}/api/v1/users/1", p.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// A plain-socket upstream that answers every request with a head announcing 100 bytes,
/// sends 10 of them, and stalls.
fn stalling_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":1,\"ni",
                );
                std::thread::sleep(Duration::from_secs(120));
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_mid_answer_is_cut_at_the_route_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let identity = identity(dir.path(), None, &[]);
    let stalled = stalling_upstream();
    // Every rule times out after 1 s; the legacy stalls mid-body.
    let p = proxy(
        dir.path(),
        &manifest(0)
            .replace("timeout: 5s", "timeout: 1s")
            .replace("timeout: 10s", "timeout: 1s"),
        &proxy_config(stalled, identity.http, QUICK_LIMITS),
    );
    let started = Instant::now();
    let r = reqwest::get(format!("http://{}/api/v1/users/1", p.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.bytes().await;
    assert!(body.is_err(), "a cut answer is an error, not a short body");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Its replay slot (shadowed to the identity service) was freed and counted.
    assert!(
        until(Duration::from_secs(10), || async {
            metric(
                p.admin,
                "proxy_comparisons_total{route=\"users-read\",result=\"skipped_shadow_failed\"}",
            )
            .await
                + metric(
                    p.admin,
                    "proxy_comparisons_total{route=\"users-read\",result=\"skipped_timeout\"}",
                )
                .await
                >= 1.0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_never_opens_its_window_cannot_hold_replay_slots() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = legacy_sim(dir.path());
    let identity = identity(dir.path(), None, &[]);
    let p = proxy(
        dir.path(),
        &manifest(0).replace("timeout: 5s", "timeout: 2s"),
        &proxy_config(legacy.addr, identity.http, QUICK_LIMITS),
    );
    // 100 members on both sides with long image URLs: a batch read of them answers
    // about 210 KiB, more than the proxy buffers for one HTTP/2 stream.
    let client = reqwest::Client::new();
    let url = format!("https://img.example.com/{}", "i".repeat(2000));
    for upstream in [legacy.addr, identity.http] {
        for i in 0..100 {
            let r = client
                .post(format!("http://{upstream}/api/v1/users"))
                .json(&json!({"user": {"email": format!("w{i}@example.com"), "password": "password-w", "nickname": "window", "profile_image_url": url}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    }
    let ids = (1..=100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut heads = Vec::new();
    for _ in 0..20 {
        let request = http::Request::get(format!("http://{}/api/v1/users?ids={ids}", p.addr))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        heads.push(response);
        client = client.ready().await.unwrap();
    }
    // The heads arrive; the bodies never can (no window), and are held, never read.
    let mut held = Vec::new();
    for head in heads {
        let response = head.await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        held.push(response);
    }
    // Each replay gave up its slot within the replay timeout and said so; the guard
    // still saw every outcome.
    assert!(
        until(Duration::from_secs(15), || async {
            metric(p.admin, "proxy_comparisons_total{route=\"users-read\",result=\"skipped_timeout\"}").await
                + metric(p.admin, "proxy_comparisons_total{route=\"users-read\",result=\"skipped_shadow_failed\"}").await
                >= 20.0
        })
        .await,
        "{}",
        reqwest::get(format!("http://{}/metrics", p.admin)).await.unwrap().text().await.unwrap()
    );
    assert!(
        metric(
            p.admin,
            "proxy_comparisons_total{route=\"users-read\",result=\"skipped_timeout\"}"
        )
        .await
            >= 1.0,
        "the replays waited for the served answers and gave up"
    );
    drop(held);
    // Slots are free again: an ordinary replayed read is compared.
    let r = reqwest::get(format!("http://{}/api/v1/users?ids={ids}", p.addr))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        until(Duration::from_secs(10), || async {
            metric(
                p.admin,
                "proxy_comparisons_total{route=\"users-read\",result=\"match\"}",
            )
            .await
                >= 1.0
        })
        .await
    );
}

//! Graceful shutdown: a request in flight when the signal comes is answered, the listener
//! closes, and the proxy returns once drained. The upstream here answers slowly on
//! purpose (a plain socket that waits before it answers).

use std::time::{Duration, Instant};

use migration_proxy::{Proxy, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// An upstream that answers every request on a connection after `delay`, and says on
/// the channel when a request has arrived.
async fn slow_upstream(
    delay: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let _ = arrived.send(());
                        tokio::time::sleep(delay).await;
                        let body = br#"{"id":1,"nickname":"slow"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, arrivals)
}

/// A proxy in front of `upstream` (its one route, 5 s), with a 30 s drain period: its
/// address, the signal that stops it, its run, and the directory of its files.
async fn draining_proxy(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let (vs, cfg) = (dir.path().join("vs.yaml"), dir.path().join("proxy.yaml"));
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: slow}\n\
         spec:\n  hosts: [member-api]\n  http:\n  - name: all\n    route:\n    \
         - destination: {host: slow.test}\n    timeout: 5s\n",
    )
    .unwrap();
    std::fs::write(
        &cfg,
        format!("upstreams:\n  slow.test: {{address: \"{upstream}\", role: legacy}}\n"),
    )
    .unwrap();
    let bound = Proxy::build(Settings {
        drain: Duration::from_secs(30),
        ..crate::support::settings(&vs, &cfg)
    })
    .await
    .unwrap();
    let addr = bound.addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(bound.run_until(async {
        let _ = stopped.await;
    }));
    (addr, stop, running, dir)
}

/// Waits for the proxy's run to end, well before its 30 s drain period (`why` otherwise).
async fn stopped_before_the_drain_period(
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    signalled: Instant,
    why: &str,
) {
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the proxy stops once drained")
        .unwrap()
        .unwrap();
    assert!(signalled.elapsed() < Duration::from_secs(15), "{why}");
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_answered_and_then_the_proxy_stops() {
    let (upstream, mut arrivals) = slow_upstream(Duration::from_millis(600)).await;
    let (addr, stop, running, _dir) = draining_proxy(upstream).await;

    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/api/v1/users/1"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    // The request reached the upstream, which holds it for 600 ms.
    arrivals.recv().await.unwrap();
    let signalled = Instant::now();
    stop.send(()).unwrap();

    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    stopped_before_the_drain_period(
        running,
        signalled,
        "stopped when the request finished, not at the end of the drain period",
    )
    .await;
    // The listener is closed: a new client is refused.
    let refused = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/users/1"))
        .send()
        .await;
    assert!(refused.is_err(), "a stopped proxy accepts nothing");
}

/// Reads one HTTP/1 answer from `stream`: its head, lowercased, and whether a body of its
/// `content-length` followed. `None` when the connection ended before a whole answer.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if seen.len() >= end + 4 + length {
                return Some(head);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A kept-alive HTTP/1 client may have sent its next request at the very moment the
/// drain begins: it is answered, with `Connection: close`, not cut (the client would see
/// the connection reset, without an answer, and an app cannot tell whether to send it
/// again). A connection that stays quiet is closed soon after, not at the end of the
/// drain period.
#[tokio::test]
async fn a_request_sent_on_a_kept_alive_connection_as_the_drain_begins_is_answered() {
    let (upstream, _arrivals) = slow_upstream(Duration::ZERO).await;
    let (addr, stop, running, _dir) = draining_proxy(upstream).await;

    let request = b"GET /api/v1/users/1 HTTP/1.1\r\nhost: member-api\r\n\r\n";
    let mut answered = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut quiet = tokio::net::TcpStream::connect(addr).await.unwrap();
    for stream in [&mut answered, &mut quiet] {
        stream.write_all(request).await.unwrap();
        let head = read_answer(stream)
            .await
            .expect("an answer before the drain");
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }

    let signalled = Instant::now();
    stop.send(()).unwrap();
    // The drain has begun; the client sends its next request on the kept-alive connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    answered.write_all(request).await.unwrap();
    let head = read_answer(&mut answered)
        .await
        .expect("the request sent as the drain began is answered, not cut");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("connection: close"),
        "the client is told to go: {head}"
    );
    let mut rest = [0u8; 16];
    assert_eq!(
        answered.read(&mut rest).await.unwrap(),
        0,
        "then the connection ends"
    );

    // The quiet connection is closed by the proxy soon, and the proxy stops.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), quiet.read(&mut rest))
            .await
            .is_ok_and(|r| r.is_ok_and(|n| n == 0)),
        "a quiet connection is closed once the drain has seen it quiet"
    );
    stopped_before_the_drain_period(
        running,
        signalled,
        "stopped once its connections were quiet, not at the end of the drain period",
    )
    .await;
}

//! The listeners: the proxy port (HTTP/1.1 and h2c on one port) and the admin port, the
//! reload poll (and SIGHUP), and graceful shutdown: stop accepting, mark not ready,
//! let in-flight requests and replays finish within the drain period.
//!
//! Every client connection is bounded: at most `limits.max_connections` open (one over
//! is closed at once), a request head within `limits.header_read_timeout` (which is also
//! how long a kept-alive HTTP/1 connection may wait for its next request), no longer
//! than `limits.idle_timeout` without a request in flight (HTTP/2, and connections that
//! never send a request), bounded head sizes, and HTTP/2 streams and flow-control
//! windows that cap what a client can make the proxy buffer.
//!
//! Client connections are served by worker threads, one per core by default, each with
//! a single-threaded runtime that drives everything its connections need: the requests,
//! their upstream connections (each worker has its own pool) and their replays. A
//! request never wakes another thread, as in nginx's and Envoy's workers; on one
//! work-stealing runtime the upstream connection's task and the client's often ran on
//! different threads and an answer cost cross-thread wake-ups. The acceptor hands each
//! new connection to the worker with the fewest open connections (a shared listening
//! socket let one worker take three quarters of them). The admin port, the reload poll
//! and the guard's timer stay on the caller's runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use proxy_routing::Limits;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};

use crate::forward::BoxError;
use crate::limits::{ConnActivity, InFlight};
use crate::{Proxy, Settings};

/// Write buffer of one HTTP/2 stream (hyper's default is ~400 KiB): the member API's
/// answers are a few KiB, and a client that does not read cannot make the proxy hold
/// more than this per stream.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// Connections being served, and a wake-up for whoever waits for them all to end.
#[derive(Default)]
pub(crate) struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

/// One tracked connection; dropped when it ends.
struct Tracked(Arc<Tracker>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    fn enter(self: &Arc<Self>) -> Tracked {
        self.open.fetch_add(1, Ordering::AcqRel);
        Tracked(Arc::clone(self))
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves when no tracked connection is left.
    async fn all_closed(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Resolves once the stop flag is set.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts until stopped, handing each connection to `serve`.
async fn accept_loop(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    mut serve: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        serve(stream, peer);
    }
}

/// hyper's connection settings for the limits in force.
fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The read buffer bounds the head (431 beyond) and what one connection holds.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .initial_stream_window_size(limits.http2_stream_window_bytes)
        .initial_connection_window_size(limits.http2_connection_window_bytes)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_send_buf_size(H2_SEND_BUFFER)
        // A peer that stops answering pings is gone: its streams are not held.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// How the drain and the idle watchdog reach a connection.
struct Watch {
    drain: watch::Receiver<bool>,
    idle_timeout: Duration,
    /// Held while the connection is served.
    tracked: Tracked,
}

/// Serves one connection (HTTP/1.1 or h2c) on the current runtime until it ends, it is
/// idle past `idle_timeout` (no request in flight, none started), or the drain asks.
fn serve_connection<F, Fut, B>(
    stream: TcpStream,
    peer: SocketAddr,
    builder: &auto::Builder<TokioExecutor>,
    handler: &F,
    watch: Watch,
) -> tokio::task::JoinHandle<bool>
where
    F: Fn(http::Request<Incoming>, SocketAddr, Option<InFlight>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let activity = Arc::new(ConnActivity::default());
    let h = handler.clone();
    let requests = Arc::clone(&activity);
    let draining = watch.drain.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let h = h.clone();
        let version = req.version();
        let in_flight = requests.begin(version);
        let draining = draining.clone();
        async move {
            let mut response = h(req, peer, Some(in_flight)).await;
            // Draining, an HTTP/1 client is told to take its next request elsewhere
            // (hyper closes the connection once this answer is written).
            if version < http::Version::HTTP_2 && *draining.borrow() {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    // Graceful end of an `auto` connection: HTTP/1 after the answer in flight, HTTP/2
    // GOAWAY then the streams in flight.
    tokio::spawn(drive(conn, |c| c.graceful_shutdown(), activity, watch))
}

/// Draining, an HTTP/1 connection with nothing in flight is closed once it has been
/// quiet for one to two of these. Not at once: a kept-alive client may have sent its
/// next request already, which a close would cut (it would see the connection reset,
/// without an answer); a request that arrives meanwhile is answered with
/// `Connection: close`. HTTP/2 connections get GOAWAY at once, which names the last
/// stream served, so that a client knows what to send again.
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// The next tick of `ticks`, or never when there are none.
async fn tick_of(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Drives a connection to its end; true when the idle watchdog closed it.
async fn drive<C: std::future::Future>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: Arc<ConnActivity>,
    mut watch: Watch,
) -> bool {
    let mut conn = std::pin::pin!(conn);
    // Checked twice per period: a connection is closed after one to one and a half
    // periods with nothing in flight and nothing started.
    let mut ticks = tokio::time::interval(watch.idle_timeout / 2);
    ticks.tick().await;
    let (mut last_started, mut quiet, mut closing, mut idle) = (0, 0, false, false);
    // Draining an HTTP/1 connection: (ticks, quiet ticks, requests started at the last).
    let mut drain_ticks: Option<tokio::time::Interval> = None;
    let (mut drain_quiet, mut drain_started) = (0, 0);
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = watch.drain.wait_for(|d| *d), if !closing && drain_ticks.is_none() => {
                if activity.is_http2() {
                    shutdown(conn.as_mut());
                    closing = true;
                } else {
                    let start = tokio::time::Instant::now() + DRAIN_QUIET;
                    drain_ticks = Some(tokio::time::interval_at(start, DRAIN_QUIET));
                    drain_started = activity.state().1;
                }
            }
            _ = tick_of(&mut drain_ticks), if !closing => {
                let (in_flight, started) = activity.state();
                if in_flight == 0 && started == drain_started {
                    drain_quiet += 1;
                    if drain_quiet >= 2 {
                        shutdown(conn.as_mut());
                        closing = true;
                    }
                } else {
                    (drain_quiet, drain_started) = (0, started);
                }
            }
            _ = ticks.tick(), if !closing => {
                let (in_flight, started) = activity.state();
                if in_flight == 0 && started == last_started {
                    quiet += 1;
                    if quiet >= 2 {
                        shutdown(conn.as_mut());
                        (closing, idle) = (true, true);
                    }
                } else {
                    (quiet, last_started) = (0, started);
                }
            }
        }
    }
    drop(watch.tracked);
    idle
}

/// A worker thread as the acceptor sees it: where to send connections, and how many it
/// has open.
struct Worker {
    connections: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, Tracked)>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts worker `index`: it serves the connections it is sent until the acceptor goes
/// away, then keeps its runtime (open connections, replays) until `release`.
fn start_worker(
    index: usize,
    proxy: &Arc<Proxy>,
    drain: watch::Receiver<bool>,
    mut release: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Tracked)>();
    let open = Arc::new(AtomicUsize::new(0));
    let (proxy, counter) = (Arc::clone(proxy), Arc::clone(&open));
    let thread = std::thread::Builder::new()
        .name(format!("proxy-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                crate::forward::enter_worker(index);
                let handler = {
                    let proxy = Arc::clone(&proxy);
                    move |req, peer, in_flight| Arc::clone(&proxy).handle(req, peer, in_flight)
                };
                // hyper's settings, rebuilt when a reload changes the limits.
                let mut built: Option<(Limits, auto::Builder<TokioExecutor>)> = None;
                while let Some((stream, peer, tracked)) = rx.recv().await {
                    let stream = match TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            counter.fetch_sub(1, Ordering::Relaxed);
                            tracing::warn!(worker = index, error = %e, "cannot take a connection");
                            continue;
                        }
                    };
                    let limits = proxy.live.snapshot().config.limits.clone();
                    if built.as_ref().is_none_or(|(l, _)| *l != limits) {
                        built = Some((limits.clone(), connection_builder(&limits)));
                    }
                    let Some((_, builder)) = built.as_ref() else {
                        continue;
                    };
                    let watch = Watch {
                        drain: drain.clone(),
                        idle_timeout: limits.idle_timeout,
                        tracked,
                    };
                    let conn = serve_connection(stream, peer, builder, &handler, watch);
                    let (counter, proxy) = (Arc::clone(&counter), Arc::clone(&proxy));
                    tokio::spawn(async move {
                        if conn.await.unwrap_or(false) {
                            proxy.metrics.count_limited("idle");
                        }
                        counter.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                stopped(&mut release).await;
            });
        })?;
    Ok(Worker {
        connections: tx,
        open,
        thread,
    })
}

/// Hands a new connection to the worker with the fewest open (the next one if that
/// worker is gone); over `max_connections` the connection is closed at once.
fn dispatch(proxy: &Proxy, workers: &[Worker], stream: TcpStream, peer: SocketAddr) {
    let max = proxy.live.snapshot().config.limits.max_connections;
    if proxy.clients.open() >= max {
        proxy.metrics.count_limited("max_connections");
        tracing::warn!(max, "connection limit reached: closing a new connection");
        return;
    }
    let tracked = proxy.clients.enter();
    let mut stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand over a connection");
            return;
        }
    };
    let mut tracked = tracked;
    let mut by_load: Vec<&Worker> = workers.iter().collect();
    by_load.sort_by_key(|w| w.open.load(Ordering::Relaxed));
    for worker in by_load {
        worker.open.fetch_add(1, Ordering::Relaxed);
        match worker.connections.send((stream, peer, tracked)) {
            Ok(()) => return,
            Err(mpsc::error::SendError((back, _, t))) => {
                worker.open.fetch_sub(1, Ordering::Relaxed);
                (stream, tracked) = (back, t);
            }
        }
    }
    tracing::error!("no worker takes connections: closing one");
}

pub async fn run(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    admin: TcpListener,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Set when the drain starts: every connection ends gracefully.
    let (drain_tx, drain_rx) = watch::channel(false);
    let admins = Arc::new(Tracker::default());

    // Reloads: a poll of both files, and SIGHUP.
    let poller = {
        let (proxy, mut stop) = (Arc::clone(&proxy), stop_rx.clone());
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hup_fut = async {
                    match hup.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_fut = std::future::pending::<()>();
                tokio::select! {
                    () = tokio::time::sleep(settings.reload_interval) => {},
                    () = hup_fut => {},
                    () = stopped(&mut stop) => break,
                }
                let _ = proxy.reload();
                // The guard also judges routes whose traffic stopped.
                proxy.evaluate_all();
            }
        })
    };

    let (release_tx, release_rx) = watch::channel(false);
    let workers = (0..settings.workers.max(1))
        .map(|index| start_worker(index, &proxy, drain_rx.clone(), release_rx.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let main_loop = {
        let (proxy, stop) = (Arc::clone(&proxy), stop_rx.clone());
        tokio::spawn(async move {
            accept_loop(listener, stop, |stream, peer| {
                dispatch(&proxy, &workers, stream, peer);
            })
            .await;
            workers
        })
    };
    let admin_loop = {
        let (proxy, admins, stop, drain) = (
            Arc::clone(&proxy),
            Arc::clone(&admins),
            stop_rx.clone(),
            drain_rx.clone(),
        );
        tokio::spawn(async move {
            let builder = connection_builder(&proxy.live.snapshot().config.limits);
            let handler = {
                let proxy = Arc::clone(&proxy);
                move |req, _, _| crate::admin::handle(Arc::clone(&proxy), req)
            };
            accept_loop(admin, stop, |stream, peer| {
                let watch = Watch {
                    drain: drain.clone(),
                    idle_timeout: proxy.live.snapshot().config.limits.idle_timeout,
                    tracked: admins.enter(),
                };
                serve_connection(stream, peer, &builder, &handler, watch);
            })
            .await;
        })
    };

    shutdown.await;
    tracing::info!(
        drain_secs = settings.drain.as_secs(),
        "shutting down: draining"
    );
    proxy.draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    // No more connections for the workers.
    let threads: Vec<_> = main_loop
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.thread)
        .collect();
    let _ = admin_loop.await;
    let _ = poller.await;
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(settings.drain, async {
        proxy.clients.all_closed().await;
        admins.all_closed().await;
        // Replays and write-effect questions in flight finish too (they hold permits).
        let _ = proxy
            .shadow_permits
            .acquire_many(crate::MAX_REPLAYS as u32)
            .await;
        let _ = proxy
            .effect_permits
            .acquire_many(crate::MAX_EFFECT_CHECKS as u32)
            .await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain period over: closing remaining connections");
    }
    let _ = release_tx.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    Ok(())
}

//! The listeners: the proxy port (HTTP/1.1 and h2c on one port) and the admin port, the
//! reload poll (and SIGHUP), and graceful shutdown: stop accepting, mark not ready,
//! let in-flight requests and replays finish within the drain period.
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

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::{Proxy, Settings};

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

/// Serves one connection (HTTP/1.1 or h2c) on the current runtime, watched by the drain.
fn serve_connection<F, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    graceful: &GracefulShutdown,
    handler: &F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<crate::forward::ProxyBody>> + Send + 'static,
{
    let h = handler.clone();
    let service = service_fn(move |req| {
        let h = h.clone();
        async move { Ok::<_, Infallible>(h(req, peer).await) }
    });
    let conn = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let watched = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = watched.await;
    })
}

/// A worker thread as the acceptor sees it: where to send connections, and how many it
/// has open.
struct Worker {
    connections: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts worker `index`: it serves the connections it is sent until the acceptor goes
/// away, then keeps its runtime (open connections, replays) until `release`.
fn start_worker(
    index: usize,
    proxy: &Arc<Proxy>,
    graceful: &Arc<GracefulShutdown>,
    serving: mpsc::Sender<()>,
    mut release: watch::Receiver<bool>,
) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr)>();
    let open = Arc::new(AtomicUsize::new(0));
    let (proxy, graceful, counter) = (Arc::clone(proxy), Arc::clone(graceful), Arc::clone(&open));
    let thread = std::thread::Builder::new()
        .name(format!("proxy-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                crate::forward::enter_worker(index);
                let handler = move |req, peer| Arc::clone(&proxy).handle(req, peer);
                while let Some((stream, peer)) = rx.recv().await {
                    let stream = match TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            counter.fetch_sub(1, Ordering::Relaxed);
                            tracing::warn!(worker = index, error = %e, "cannot take a connection");
                            continue;
                        }
                    };
                    let conn = serve_connection(stream, peer, &graceful, &handler);
                    let counter = Arc::clone(&counter);
                    tokio::spawn(async move {
                        let _ = conn.await;
                        counter.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // The drain waits for the connections, not for this handle.
                drop((graceful, serving));
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
/// worker is gone).
fn dispatch(workers: &[Worker], stream: TcpStream, peer: SocketAddr) {
    let mut stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand over a connection");
            return;
        }
    };
    let mut by_load: Vec<&Worker> = workers.iter().collect();
    by_load.sort_by_key(|w| w.open.load(Ordering::Relaxed));
    for worker in by_load {
        worker.open.fetch_add(1, Ordering::Relaxed);
        match worker.connections.send((stream, peer)) {
            Ok(()) => return,
            Err(mpsc::error::SendError((back, _))) => {
                worker.open.fetch_sub(1, Ordering::Relaxed);
                stream = back;
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
    let graceful = Arc::new(GracefulShutdown::new());

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
    let (serving_tx, mut serving_rx) = mpsc::channel::<()>(1);
    let workers = (0..settings.workers.max(1))
        .map(|index| {
            start_worker(
                index,
                &proxy,
                &graceful,
                serving_tx.clone(),
                release_rx.clone(),
            )
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(serving_tx);
    let main_loop = {
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            accept_loop(listener, stop, |stream, peer| {
                dispatch(&workers, stream, peer);
            })
            .await;
            workers
        })
    };
    let admin_loop = {
        let (proxy, graceful, stop) = (Arc::clone(&proxy), Arc::clone(&graceful), stop_rx.clone());
        tokio::spawn(async move {
            let handler = move |req, _| crate::admin::handle(Arc::clone(&proxy), req);
            accept_loop(admin, stop, |stream, peer| {
                serve_connection(stream, peer, &graceful, &handler);
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
    // No more connections for the workers: each lets go of the drain's handle.
    let threads: Vec<_> = main_loop
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.thread)
        .collect();
    let _ = serving_rx.recv().await;
    let _ = admin_loop.await;
    let _ = poller.await;
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    let drained = tokio::time::timeout(settings.drain, async {
        graceful.shutdown().await;
        // Replays in flight finish too (they hold permits).
        let _ = proxy
            .shadow_permits
            .acquire_many(crate::MAX_REPLAYS as u32)
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

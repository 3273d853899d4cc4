//! The listeners: the proxy port (HTTP/1.1 and h2c on one port) and the admin port, the
//! reload poll (and SIGHUP), and graceful shutdown: stop accepting, mark not ready,
//! let in-flight requests and replays finish within the drain period.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{Proxy, Settings};

/// Resolves once the stop flag is set.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    graceful: &GracefulShutdown,
    mut stop: watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(http::Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<crate::forward::ProxyBody>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let h = handler.clone();
        let service = service_fn(move |req| {
            let h = h.clone();
            async move { Ok::<_, Infallible>(h(req, peer).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = watched.await;
        });
    }
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

    let main_loop = {
        let (proxy, graceful, stop) = (Arc::clone(&proxy), Arc::clone(&graceful), stop_rx.clone());
        tokio::spawn(async move {
            let p = Arc::clone(&proxy);
            accept_loop(listener, &graceful, stop, move |req, peer| {
                Arc::clone(&p).handle(req, peer)
            })
            .await;
        })
    };
    let admin_loop = {
        let (proxy, graceful, stop) = (Arc::clone(&proxy), Arc::clone(&graceful), stop_rx.clone());
        tokio::spawn(async move {
            let p = Arc::clone(&proxy);
            accept_loop(admin, &graceful, stop, move |req, _| {
                crate::admin::handle(Arc::clone(&p), req)
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
    let _ = main_loop.await;
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
    Ok(())
}

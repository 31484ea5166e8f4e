//! The HTTP endpoint: `GET /metrics`, `GET /health`, 404 and 405 for the rest.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use mmo_metrics::MetricsManager;
use tokio::sync::oneshot;

use crate::text::{encode_text, TEXT_CONTENT_TYPE};

/// How long a stopping exporter waits for open connections before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running exporter thread; dropping it stops the server and joins the thread.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// The address the server listens on (the real port when `addr` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves `manager` over HTTP on `addr` from one exporter thread (a single-threaded tokio runtime).
///
/// Binding happens before this returns, so an address in use is an error here, not in a log.
pub fn serve(manager: MetricsManager, addr: SocketAddr) -> io::Result<Exporter> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(manager);
    let thread = std::thread::Builder::new().name("mmo-metrics-exporter".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("mmo-metrics exporter: cannot use the listener on {addr}: {e}");
                    return;
                }
            };
            let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
                let _ = stopping_tx.send(());
            });
            let grace = async move {
                let _ = stopping_rx.await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                r = server => if let Err(e) = r {
                    tracing::error!("mmo-metrics exporter on {addr} stopped: {e}");
                },
                () = grace => tracing::warn!("mmo-metrics exporter on {addr}: connections still open after {SHUTDOWN_GRACE:?}; dropped"),
            }
        });
    })?;
    Ok(Exporter {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

fn router(manager: MetricsManager) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let manager = manager.clone();
                async move { ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], encode_text(&manager)) }
            }),
        )
        .route(
            "/health",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n") }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try /metrics or /health\n").into_response() })
}

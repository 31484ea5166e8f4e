//! The accept loop and the connections: the cap, the timeouts, TLS, and graceful shutdown.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use super::limits::{Admit, Busy, Connections, LogEvery, Ticket};
use super::self_metrics::SelfMetrics;
use super::tls::Tls;

/// How long a stopping exporter waits for open connections before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// The per-connection limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    /// Time to send a request's headers; it runs from the end of the previous response too, so
    /// it is also how long an idle keep-alive connection stays open.
    pub(crate) header_read: Duration,
    /// Time the client may take to accept any more bytes of a response.
    pub(crate) write: Duration,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn accept_loop(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    app: Router,
    limits: ConnLimits,
    conns: Arc<Connections>,
    metrics: Arc<SelfMetrics>,
    tls: Option<Arc<Tls>>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("mmo-metrics exporter: cannot use the listener on {addr}: {e}"),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept_failed = LogEvery::new(Duration::from_secs(10));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match conns.admit() {
                    Admit::Serve { ticket, made_room } => {
                        let conn = serve(stream, ticket, app.clone(), limits, Arc::clone(&metrics), tls.clone(), shutdown_rx.clone());
                        tokio::spawn(conn);
                        if made_room {
                            // Let the connection asked to make room close its socket before the
                            // next accept: in a burst of arrivals at the cap, descriptors stay
                            // near the cap instead of piling up behind this loop.
                            tokio::task::yield_now().await;
                        }
                    }
                    Admit::Refuse => drop(stream),
                },
                Err(e) => {
                    // Out of file descriptors and the like: count it, say so once in a while,
                    // back off a little, go on.
                    metrics.accept_error();
                    if let Some(n) = accept_failed.tick() {
                        tracing::warn!("mmo-metrics exporter on {addr}: {n} accept call(s) failed in the last 10 s, the latest: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut stop => break,
        }
    }
    drop(listener);
    let _ = shutdown.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while conns.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if conns.len() > 0 {
        tracing::warn!(
            "mmo-metrics exporter on {addr}: {} connection(s) still open after {SHUTDOWN_GRACE:?}; dropped",
            conns.len()
        );
    }
}

/// Serves one connection until it ends, the table asks it to make room, or the exporter stops;
/// in the last two cases the response being sent is finished first. With TLS the handshake comes
/// first, and must end within the header-read timeout (a connection in its handshake serves no
/// request, so the table may also close it to make room).
async fn serve(
    stream: TcpStream,
    mut ticket: Ticket,
    app: Router,
    limits: ConnLimits,
    metrics: Arc<SelfMetrics>,
    tls: Option<Arc<Tls>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The peer's address, for the handlers that need it (the receiver's senders without labels).
    let peer = stream.peer_addr().ok();
    let mut io = TimeoutStream::new(stream);
    io.set_write_timeout(Some(limits.write));
    let io = Box::pin(io);
    let mut make_room = ticket.close_requested();
    match tls {
        None => {
            serve_http(
                io,
                peer,
                &mut ticket,
                &mut make_room,
                None,
                app,
                limits,
                &metrics,
                shutdown,
            )
            .await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
            // The handshake and the first request's headers share one header-read timeout: hyper
            // starts its own timer only once the handshake is done, so without this deadline a
            // client could hold a connection for twice the timeout.
            let deadline = tokio::time::Instant::now() + limits.header_read;
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(io));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics.tls_handshake_error(handshake_error(&e));
                        return tracing::debug!("mmo-metrics exporter: TLS handshake failed: {e}");
                    }
                    Err(_) => return metrics.timeout("header_read"),
                },
                _ = &mut make_room => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            serve_http(
                stream,
                peer,
                &mut ticket,
                &mut make_room,
                Some(deadline),
                app,
                limits,
                &metrics,
                shutdown,
            )
            .await;
        }
    }
    drop(ticket);
}

/// The `error` label of [`TLS_HANDSHAKE_ERRORS_METRIC`](super::self_metrics::TLS_HANDSHAKE_ERRORS_METRIC)
/// for a failed handshake: tokio-rustls wraps rustls' error in the `io::Error`; any other
/// `io::Error` is the connection's.
fn handshake_error(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidMessage(_)) => "not_tls",
        Some(E::NoCertificatesPresented | E::InvalidCertificate(_)) => "client_certificate",
        Some(E::AlertReceived(_)) => "peer_alert",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(_) => "other",
        None => "closed",
    }
}

/// HTTP/1.1 on an open connection (plain, or TLS after its handshake). With `first_request_by`,
/// the connection is closed (and counted as a header-read timeout) if the first request's headers
/// have not arrived by then.
#[allow(clippy::too_many_arguments)]
async fn serve_http<IO>(
    io: IO,
    peer: Option<SocketAddr>,
    ticket: &mut Ticket,
    make_room: &mut oneshot::Receiver<()>,
    first_request_by: Option<tokio::time::Instant>,
    app: Router,
    limits: ConnLimits,
    metrics: &SelfMetrics,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let busy = ticket.busy();
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&first_request);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        if let Some(peer) = peer {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        }
        let request = Busy::new(&busy);
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(request);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = pin!(conn);
    let mut closing = false;
    let mut first_deadline = pin!(async {
        match first_request_by {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    });
    let mut first_deadline_passed = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = &mut first_deadline, if !first_deadline_passed => {
                if !first_request.load(Ordering::Relaxed) {
                    metrics.timeout("header_read");
                    return tracing::debug!("mmo-metrics exporter: no request within the header-read timeout of the TLS handshake's start");
                }
                first_deadline_passed = true;
            }
            _ = &mut *make_room, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = shutdown.wait_for(|stop| *stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.timeout("header_read");
        } else if is_write_timeout(&e) {
            metrics.timeout("write");
        }
        tracing::debug!("mmo-metrics exporter: connection ended: {e}");
    }
}

/// Whether the connection failed because the client accepted no bytes for the write timeout.
fn is_write_timeout(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    false
}

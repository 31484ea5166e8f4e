//! Scrapes of `/metrics`: one encode shared by every scrape that arrives while it runs, one
//! gzip of it shared by every scrape that asks for gzip, both on the runtime's blocking pool, and
//! a response body that shares the encoded bytes and holds the scrape's in-flight slot until it
//! has been handed to the connection in full (or the connection ends).

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mmo_metrics::{MetricKind, MetricsManager};
use tokio::sync::{watch, OnceCell};

use super::limits::Slot;
use super::self_metrics::SERIES_METRIC;
use crate::encode::encode_text_with;

/// Bytes a response body hands the connection at a time. The connection asks for more only when
/// it has written most of what it holds, so a client that stops reading keeps the body, and with
/// it the scrape's in-flight slot, until the write timeout cuts it.
const BODY_CHUNK: usize = 64 * 1024;

/// One encoded exposition, shared by every response made from it.
pub(crate) struct Exposition {
    pub(crate) text: Bytes,
    gzip: OnceCell<Bytes>,
}

impl Exposition {
    /// The gzip of the text, compressed once on the blocking pool by the first scrape that asks.
    /// `None` if the compression task failed.
    pub(crate) async fn gzip(&self) -> Option<Bytes> {
        let text = self.text.clone();
        self.gzip
            .get_or_try_init(|| async move { tokio::task::spawn_blocking(move || gzip(&text)).await })
            .await
            .ok()
            .cloned()
    }
}

/// gzip at level 1: on text expositions it gives about a tenth of the size at a quarter of the
/// default level's time.
fn gzip(text: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 8), flate2::Compression::fast());
    enc.write_all(text).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

/// Encodes the registry for scrapes.
pub(crate) struct Scraper {
    manager: MetricsManager,
    global_labels: Vec<(String, String)>,
    /// The encode in progress, which concurrent scrapes wait for instead of starting their own.
    pending: Mutex<Option<watch::Receiver<Option<Arc<Exposition>>>>>,
    /// Length of the last exposition: the next one's buffer starts that large, so the encode
    /// does not copy its output as it grows.
    last_len: AtomicUsize,
}

impl Scraper {
    pub(crate) fn new(manager: MetricsManager, global_labels: Vec<(String, String)>) -> Self {
        Self {
            manager,
            global_labels,
            pending: Mutex::new(None),
            last_len: AtomicUsize::new(64 * 1024),
        }
    }

    fn encode(&self) -> Exposition {
        let kinds = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
            MetricKind::Summary,
        ];
        let mut counts = [0usize; 4];
        self.manager.visit(|f| {
            if let Some(i) = kinds.iter().position(|k| *k == f.kind()) {
                counts[i] += f.series_count();
            }
        });
        for (kind, n) in kinds.iter().zip(counts) {
            let _ = self.manager.set_gauge(SERIES_METRIC, n as f64, &[kind.as_str()]);
        }
        let want = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(want + want / 8);
        encode_text_with(&self.manager, &self.global_labels, &mut out);
        self.last_len.store(out.len(), Ordering::Relaxed);
        Exposition {
            text: Bytes::from(out),
            gzip: OnceCell::new(),
        }
    }

    /// The exposition, from a new encode or from the one already running. `None` if the encode
    /// task failed.
    pub(crate) async fn exposition(self: &Arc<Self>) -> Option<Arc<Exposition>> {
        let mut rx = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match &*pending {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *pending = Some(rx.clone());
                    let me = Arc::clone(self);
                    // The encode runs to the end even when every scrape waiting for it is gone,
                    // and clears `pending` itself, by a guard: neither a cancelled scrape nor a
                    // panicking encode can leave it set (the waiters of a panicked one get 500).
                    tokio::task::spawn_blocking(move || {
                        let _clear = ClearPending(&me);
                        let exposition = Arc::new(me.encode());
                        let _ = tx.send(Some(exposition));
                    });
                    rx
                }
            }
        };
        let exposition = rx.wait_for(Option::is_some).await.ok()?.clone();
        exposition
    }
}

/// Clears [`Scraper::pending`] when the encode that set it ends, however it ends.
struct ClearPending<'a>(&'a Scraper);

impl Drop for ClearPending<'_> {
    fn drop(&mut self) {
        *self.0.pending.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A response body over shared bytes that holds its scrape's in-flight slot until the last chunk
/// has been handed to the connection, or the connection drops it.
pub(crate) struct ExpositionBody {
    data: Bytes,
    _slot: Slot,
}

impl ExpositionBody {
    pub(crate) fn new(data: Bytes, slot: Slot) -> Self {
        Self { data, _slot: slot }
    }
}

impl Body for ExpositionBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.data.len().min(BODY_CHUNK);
        Poll::Ready(Some(Ok(Frame::data(this.data.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

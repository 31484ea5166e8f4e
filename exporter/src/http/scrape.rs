//! Scrapes of `/metrics`: one encode per format shared by every scrape of that format that arrives
//! while it runs, one gzip of it shared by every scrape that asks for gzip, both on the runtime's
//! blocking pool, and a response body that shares the encoded bytes and holds the scrape's
//! in-flight slot until it has been handed to the connection in full (or the connection ends).
//! With the remote write receiver on, the received series follow the manager's families (see
//! `encode::received`).

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
use crate::encode::{
    encode_openmetrics_with_options, encode_protobuf_with, encode_text_with, received, ExpositionFormat,
    OpenMetricsOptions,
};
use crate::push::receive::{Receiver, Taken};

/// Writes one format's exposition of a manager, with global labels, into a buffer.
type Encoder = fn(&MetricsManager, &[(String, String)], OpenMetricsOptions, &mut Vec<u8>);

/// The encoder of `format`, or `None` when this server does not offer it. [`offered`] follows
/// from this: a format is negotiated only when it has an encoder here.
fn encoder(format: ExpositionFormat) -> Option<Encoder> {
    match format {
        ExpositionFormat::Text => Some(|m, g, _, out| text_encoder(|out| encode_text_with(m, g, out), out)),
        ExpositionFormat::OpenMetrics => {
            Some(|m, g, options, out| text_encoder(|out| encode_openmetrics_with_options(m, g, options, out), out))
        }
        ExpositionFormat::Protobuf => Some(|m, g, _, out| {
            out.clear();
            encode_protobuf_with(m, g, out);
        }),
    }
}

/// The formats this server offers, in [`ExpositionFormat::ALL`] order.
pub(crate) fn offered() -> Vec<ExpositionFormat> {
    ExpositionFormat::ALL
        .into_iter()
        .filter(|f| encoder(*f).is_some())
        .collect()
}

/// Runs a text format's encoder on `out`'s allocation.
fn text_encoder(encode: impl FnOnce(&mut String), out: &mut Vec<u8>) {
    out.clear();
    let mut text = String::from_utf8(std::mem::take(out)).expect("an empty buffer is UTF-8");
    encode(&mut text);
    *out = text.into_bytes();
}

/// Bytes a response body hands the connection at a time. The connection asks for more only when
/// it has written most of what it holds, so a client that stops reading keeps the body, and with
/// it the scrape's in-flight slot, until the write timeout cuts it.
const BODY_CHUNK: usize = 64 * 1024;

/// One encoded exposition, shared by every response made from it.
pub(crate) struct Exposition {
    /// The encoded bytes, in the format it was encoded for.
    pub(crate) body: Bytes,
    gzip: OnceCell<Bytes>,
}

impl Exposition {
    /// The gzip of the body, compressed once on the blocking pool by the first scrape that asks.
    /// `None` if the compression task failed.
    pub(crate) async fn gzip(&self) -> Option<Bytes> {
        let body = self.body.clone();
        self.gzip
            .get_or_try_init(|| async move { tokio::task::spawn_blocking(move || gzip(&body)).await })
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

/// The encode in progress of one format, which concurrent scrapes wait for.
type Pending = Option<watch::Receiver<Option<Arc<Exposition>>>>;

/// Number of formats: the length of the per-format arrays of [`Scraper`].
const FORMATS: usize = ExpositionFormat::ALL.len();

/// Encodes the registry for scrapes.
pub(crate) struct Scraper {
    manager: MetricsManager,
    global_labels: Vec<(String, String)>,
    openmetrics: OpenMetricsOptions,
    /// Per format ([`ExpositionFormat::index`]): the encode in progress, which concurrent scrapes
    /// of that format wait for instead of starting their own.
    pending: Mutex<[Pending; FORMATS]>,
    /// Per format: length of the last exposition; the next one's buffer starts that large, so
    /// the encode does not copy its output as it grows.
    last_len: [AtomicUsize; FORMATS],
    /// The remote write receiver, whose series follow the manager's.
    receiver: Option<Arc<Receiver>>,
}

impl Scraper {
    pub(crate) fn new(
        manager: MetricsManager,
        global_labels: Vec<(String, String)>,
        openmetrics: OpenMetricsOptions,
        receiver: Option<Arc<Receiver>>,
    ) -> Self {
        Self {
            manager,
            global_labels,
            openmetrics,
            pending: Mutex::new(std::array::from_fn(|_| None)),
            last_len: std::array::from_fn(|_| AtomicUsize::new(64 * 1024)),
            receiver,
        }
    }

    /// Encodes `format`, which must have an [`encoder`].
    fn encode(&self, format: ExpositionFormat) -> Exposition {
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
        let encode = encoder(format).expect("only offered formats are negotiated");
        let last_len = &self.last_len[format.index()];
        let want = last_len.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(want + want / 8);
        encode(&self.manager, &self.global_labels, self.openmetrics, &mut out);
        if let Some(receiver) = &self.receiver {
            let taken = Arc::new(Taken::of(&self.manager));
            receiver.set_taken(Arc::clone(&taken));
            let snapshot = receiver.store().snapshot();
            let eof: &[u8] = b"# EOF\n";
            let om = format == ExpositionFormat::OpenMetrics && out.ends_with(eof);
            if om {
                out.truncate(out.len() - eof.len());
            }
            received::expose(&snapshot, &taken, format, &mut out);
            if om {
                out.extend_from_slice(eof);
            }
        }
        last_len.store(out.len(), Ordering::Relaxed);
        Exposition {
            body: Bytes::from(out),
            gzip: OnceCell::new(),
        }
    }

    /// The exposition in `format` (an offered one), from a new encode or from the one of that
    /// format already running. `None` if the encode task failed.
    pub(crate) async fn exposition(self: &Arc<Self>, format: ExpositionFormat) -> Option<Arc<Exposition>> {
        let mut rx = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let pending = &mut pending[format.index()];
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
                        let _clear = ClearPending(&me, format);
                        let exposition = Arc::new(me.encode(format));
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

/// Clears a format's [`Scraper::pending`] when the encode that set it ends, however it ends.
struct ClearPending<'a>(&'a Scraper, ExpositionFormat);

impl Drop for ClearPending<'_> {
    fn drop(&mut self) {
        self.0.pending.lock().unwrap_or_else(PoisonError::into_inner)[self.1.index()] = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn one_exposition_per_format() {
        let m = MetricsManager::new();
        m.register_counter("hits", "Hits.", &[]).unwrap();
        m.increment_counter("hits", 1, &[]).unwrap();
        assert_eq!(offered(), ExpositionFormat::ALL);
        let scraper = Arc::new(Scraper::new(m, Vec::new(), OpenMetricsOptions::default(), None));
        let (text, om, pb) = tokio::join!(
            scraper.exposition(ExpositionFormat::Text),
            scraper.exposition(ExpositionFormat::OpenMetrics),
            scraper.exposition(ExpositionFormat::Protobuf)
        );
        let (text, om, pb) = (text.unwrap(), om.unwrap(), pb.unwrap());
        let family = <crate::proto::MetricFamily as prost::Message>::decode_length_delimited(&pb.body[..]).unwrap();
        assert_eq!(family.name.as_deref(), Some("hits_total"));
        assert!(text
            .body
            .starts_with(b"# HELP hits_total Hits.\n# TYPE hits_total counter\n"));
        assert!(om.body.starts_with(b"# TYPE hits counter\n") && om.body.ends_with(b"# EOF\n"));
        let unzipped = {
            use std::io::Read;
            let z = om.gzip().await.unwrap();
            let mut s = Vec::new();
            flate2::read::GzDecoder::new(&z[..]).read_to_end(&mut s).unwrap();
            s
        };
        assert_eq!(unzipped, om.body);
    }
}

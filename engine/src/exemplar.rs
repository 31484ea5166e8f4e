//! Exemplars: a sample's link to a trace, shown next to counter totals and histogram buckets in
//! OpenMetrics and protobuf expositions (never in text 0.0.4, which has none).
//!
//! A counter series keeps its latest exemplar, a classic histogram series the latest of each
//! bucket, each with its value and the wall-clock time it was recorded (milliseconds), as
//! client_golang does. Exemplars are recorded:
//!
//! - through handles: [`CounterHandle::increment_with_exemplar`],
//!   [`HistogramHandle::record_with_exemplar`];
//! - by name: [`MetricsManager::increment_counter_with_exemplar`],
//!   [`MetricsManager::observe_histogram_with_exemplar`];
//! - from `counter!` and `histogram!` call sites, unchanged, while this thread has a *current
//!   exemplar* ([`set_current`]): a game server sets the trace id of the message it handles, and
//!   every facade counter increment and histogram observation of that message carries it;
//! - with the `tracing` feature, from the `trace_id` field of the `tracing` spans entered on the
//!   thread (`ExemplarLayer`, a `tracing_subscriber` layer).
//!
//! Exemplar labels follow OpenMetrics: label names as metric labels (`[a-zA-Z_][a-zA-Z0-9_]*`,
//! not starting with `__`, no duplicates) and at most [`MAX_EXEMPLAR_LABELS_CHARS`] (128) UTF-8
//! characters of names and values together. Longer label sets are refused with
//! [`MetricsError::ExemplarLabelsTooLong`], never truncated; when an exemplar is refused, nothing
//! is recorded. They are read back through [`Sample::exemplar`](crate::Sample::exemplar) and
//! [`Sample::bucket_exemplar`](crate::Sample::bucket_exemplar).
//!
//! ```
//! use mmo_metrics::MetricsManager;
//!
//! let m = MetricsManager::new();
//! m.register_histogram("message_process_time", "Seconds per message.", &[], &[0.01, 0.1])?;
//! metrics::with_local_recorder(&m.recorder(), || {
//!     // Per message: every facade record of this message carries its trace id.
//!     let _trace = mmo_metrics::exemplar::set_current(&[("trace_id", "4bf92f3577b34da6")])?;
//!     metrics::histogram!("message_process_time").record(0.05);
//!     Ok::<(), mmo_metrics::MetricsError>(())
//! })?;
//! let mut seen = Vec::new();
//! m.visit(|f| {
//!     f.for_each_sample(|s| {
//!         if let Some(e) = s.bucket_exemplar(1) {
//!             seen.push((e.labels().map(|(n, v)| format!("{n}={v}")).collect::<String>(), e.value()));
//!         }
//!     })
//! });
//! assert_eq!(seen, [("trace_id=4bf92f3577b34da6".to_owned(), 0.05)]);
//! # Ok::<(), mmo_metrics::MetricsError>(())
//! ```
//!
//! [`CounterHandle::increment_with_exemplar`]: crate::CounterHandle::increment_with_exemplar
//! [`HistogramHandle::record_with_exemplar`]: crate::HistogramHandle::record_with_exemplar
//! [`MetricsManager::increment_counter_with_exemplar`]: crate::MetricsManager::increment_counter_with_exemplar
//! [`MetricsManager::observe_histogram_with_exemplar`]: crate::MetricsManager::observe_histogram_with_exemplar

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::storage::exemplar::StoredExemplar;
use crate::MetricsError;

#[cfg(feature = "tracing")]
pub use crate::exemplar_tracing::ExemplarLayer;

/// The most UTF-8 characters an exemplar's label names and values may have together
/// (OpenMetrics 1.0, "Exemplars").
pub const MAX_EXEMPLAR_LABELS_CHARS: usize = 128;

/// A checked exemplar label set, encoded in one shared allocation: for each label its name then
/// its value, each as a little-endian `u16` byte length followed by the bytes. Cheap to clone
/// (a reference count), so one label set serves every exemplar recorded with it.
#[derive(Clone)]
pub(crate) struct ExemplarLabels(Arc<[u8]>);

impl ExemplarLabels {
    /// Checks `labels` (see the module documentation) and encodes them. The error names no
    /// metric (see [`MetricsError::for_metric`]).
    pub(crate) fn new(labels: &[(&str, &str)]) -> Result<Self, MetricsError> {
        Self::check(labels)?;
        let mut buf = Vec::with_capacity(labels.iter().map(|(n, v)| 4 + n.len() + v.len()).sum());
        encode_pairs(labels, &mut buf);
        Ok(Self(buf.into()))
    }

    /// Checks `labels` (see the module documentation) without allocating when they are accepted;
    /// only a refusal builds its error. The error names no metric (see
    /// [`MetricsError::for_metric`]).
    pub(crate) fn check(labels: &[(&str, &str)]) -> Result<(), MetricsError> {
        if accepted(labels) {
            Ok(())
        } else {
            refusal(labels)
        }
    }

    /// The encoded bytes (see the type's documentation).
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.0
    }

    /// Labels from bytes encoded as the type's documentation says (from [`Self::encoded`] or
    /// [`ExemplarLabelsRef::encode_into`]).
    pub(crate) fn from_encoded(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    /// `(name, value)` pairs, in the order given.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest = &self.0[..];
        let mut piece = move || {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let (bytes, tail) = tail.split_at(usize::from(u16::from_le_bytes(*len)));
            rest = tail;
            Some(std::str::from_utf8(bytes).expect("encoded from `&str`s"))
        };
        std::iter::from_fn(move || Some((piece()?, piece()?)))
    }
}

impl fmt::Debug for ExemplarLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Whether `labels` pass every check of [`ExemplarLabels::check`], without allocating: names
/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`, no duplicates, at most
/// [`MAX_EXEMPLAR_LABELS_CHARS`] characters together.
fn accepted(labels: &[(&str, &str)]) -> bool {
    let mut bytes = 0;
    for (i, &(name, value)) in labels.iter().enumerate() {
        let mut chars = name.bytes();
        let valid = match chars.next() {
            Some(c) => (c.is_ascii_alphabetic() || c == b'_') && chars.all(|c| c.is_ascii_alphanumeric() || c == b'_'),
            None => false,
        };
        if !valid || name.starts_with("__") || labels[..i].iter().any(|&(n, _)| n == name) {
            return false;
        }
        bytes += name.len() + value.len();
    }
    // Names are ASCII: a character is a byte. Values count in characters, never more than bytes,
    // so they are counted only when the bytes are over the limit.
    bytes <= MAX_EXEMPLAR_LABELS_CHARS
        || labels.iter().map(|(n, v)| n.len() + v.chars().count()).sum::<usize>() <= MAX_EXEMPLAR_LABELS_CHARS
}

/// The error refusing `labels`, which [`accepted`] refused.
#[cold]
#[inline(never)]
fn refusal(labels: &[(&str, &str)]) -> Result<(), MetricsError> {
    let names: Vec<&str> = labels.iter().map(|&(n, _)| n).collect();
    crate::registry::names::check_label_names("", &names, None).map_err(|e| match e {
        MetricsError::InvalidLabelName { label, reason, .. } => MetricsError::InvalidExemplarLabel {
            metric: String::new(),
            label,
            reason,
        },
        MetricsError::DuplicateLabelName { label, .. } => MetricsError::InvalidExemplarLabel {
            metric: String::new(),
            label,
            reason: "it appears twice".into(),
        },
        e => e,
    })?;
    // Names are ASCII (checked above): their length in bytes is their length in characters.
    let chars: usize = labels.iter().map(|(n, v)| n.len() + v.chars().count()).sum();
    if chars <= MAX_EXEMPLAR_LABELS_CHARS {
        return Ok(());
    }
    Err(MetricsError::ExemplarLabelsTooLong {
        metric: String::new(),
        names: names.join(", "),
        found: chars,
        limit: MAX_EXEMPLAR_LABELS_CHARS,
    })
}

/// Appends `labels` to `buf` in [`ExemplarLabels`]' encoding.
fn encode_pairs(labels: &[(&str, &str)], buf: &mut Vec<u8>) {
    for piece in labels.iter().flat_map(|&(n, v)| [n, v]) {
        // At most 128 characters of 4 bytes: a `u16` holds every length.
        buf.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        buf.extend_from_slice(piece.as_bytes());
    }
}

/// Checked exemplar labels as a writer gets them: the caller's pairs (checked with
/// [`ExemplarLabels::check`]) or an encoded set (the thread's current exemplar).
#[derive(Clone, Copy)]
pub(crate) enum ExemplarLabelsRef<'a> {
    Pairs(&'a [(&'a str, &'a str)]),
    Encoded(&'a ExemplarLabels),
}

impl ExemplarLabelsRef<'_> {
    /// Appends the labels to `buf` in [`ExemplarLabels`]' encoding.
    pub(crate) fn encode_into(self, buf: &mut Vec<u8>) {
        match self {
            Self::Pairs(pairs) => encode_pairs(pairs, buf),
            Self::Encoded(labels) => buf.extend_from_slice(labels.encoded()),
        }
    }
}

impl<'a> From<&'a ExemplarLabels> for ExemplarLabelsRef<'a> {
    fn from(labels: &'a ExemplarLabels) -> Self {
        Self::Encoded(labels)
    }
}

/// An exemplar as read (see [`Sample::exemplar`](crate::Sample::exemplar)): the latest recorded on
/// a counter series or in a histogram bucket. Holds its own reference: a newer exemplar recorded
/// meanwhile replaces it in the series, not here.
#[derive(Clone)]
pub struct Exemplar(Arc<StoredExemplar>);

impl Exemplar {
    pub(crate) fn new(stored: Arc<StoredExemplar>) -> Self {
        Self(stored)
    }

    /// `(name, value)` label pairs, in the order they were given; at most
    /// [`MAX_EXEMPLAR_LABELS_CHARS`] characters together.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.labels.iter()
    }

    /// The value recorded with it: a counter's increment, a histogram's observation.
    pub fn value(&self) -> f64 {
        self.0.value
    }

    /// When it was recorded: wall clock, seconds since the Unix epoch, to the millisecond.
    pub fn timestamp(&self) -> f64 {
        self.0.timestamp_ms as f64 / 1e3
    }

    /// When it was recorded: wall clock, milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms
    }
}

impl fmt::Debug for Exemplar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exemplar")
            .field("labels", &self.0.labels.iter().collect::<Vec<_>>())
            .field("value", &self.0.value)
            .field("timestamp", &self.timestamp())
            .finish()
    }
}

thread_local! {
    /// This thread's current exemplar labels: a reference this thread-local owns (from
    /// `Arc::into_raw`), given back by the guard that replaces it. Const-initialised and without
    /// `Drop`, so reading it is one thread-local load, with no initialisation or state check.
    static CURRENT: Cell<Option<NonNull<[u8]>>> = const { Cell::new(None) };
}

/// Makes `labels` this thread's current exemplar until the returned guard drops (which restores
/// the one before): every `counter!` increment and `histogram!` observation on this thread
/// meanwhile records an exemplar with these labels and its value, so instrumented code needs no
/// change. Nest guards like scopes (drop them in reverse order, as scopes do).
///
/// The labels are checked here, once, as for every exemplar (see the module documentation): a
/// label set that is refused is an error and nothing changes. While no current exemplar is set, a
/// facade record pays one thread-local load for this.
///
/// Only facade calls read it: the manager's handles and by-name API take their exemplars
/// explicitly. Facade histograms rendered as summaries and gauges have no exemplars.
///
/// A guard leaked with `mem::forget` leaves its labels current for the rest of the thread's life.
pub fn set_current(labels: &[(&str, &str)]) -> Result<CurrentExemplar, MetricsError> {
    Ok(set_current_labels(ExemplarLabels::new(labels)?))
}

/// [`set_current`] with labels already checked.
pub(crate) fn set_current_labels(labels: ExemplarLabels) -> CurrentExemplar {
    let raw = NonNull::new(Arc::into_raw(labels.0).cast_mut()).expect("an Arc is never null");
    CurrentExemplar {
        prev: CURRENT.with(|c| c.replace(Some(raw))),
        _thread: PhantomData,
    }
}

/// Restores the previous current exemplar when dropped (see [`set_current`]). Not `Send`: it
/// belongs to the thread it was made on.
#[must_use = "the exemplar is current only until this guard drops"]
pub struct CurrentExemplar {
    /// The thread-local's value before: a reference this guard owns until it puts it back.
    prev: Option<NonNull<[u8]>>,
    _thread: PhantomData<*const ()>,
}

impl Drop for CurrentExemplar {
    fn drop(&mut self) {
        if let Some(cur) = CURRENT.with(|c| c.replace(self.prev)) {
            // SAFETY: the thread-local owned this reference (from `Arc::into_raw` in
            // `set_current`, or put back by a guard); replaced, it is ours to give back, once.
            drop(unsafe { Arc::from_raw(cur.as_ptr().cast_const()) });
        }
    }
}

impl fmt::Debug for CurrentExemplar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentExemplar").finish_non_exhaustive()
    }
}

/// Calls `f` with this thread's current exemplar labels, if any: one thread-local load when there
/// are none; the rest is out of line.
#[inline(always)]
pub(crate) fn with_current(f: impl FnOnce(&ExemplarLabels)) {
    if let Some(raw) = CURRENT.with(Cell::get) {
        with_current_set(raw, f);
    }
}

#[cold]
#[inline(never)]
fn with_current_set(raw: NonNull<[u8]>, f: impl FnOnce(&ExemplarLabels)) {
    // SAFETY: the thread-local owns a reference to this allocation (from `Arc::into_raw`) while
    // it holds `raw`; only this thread's `set_current` and guards change it, and `f` (which
    // records an exemplar) calls neither. `ManuallyDrop`: this borrows the thread-local's
    // reference and does not give it back; `f` takes its own by cloning.
    let labels = ManuallyDrop::new(ExemplarLabels(unsafe { Arc::from_raw(raw.as_ptr().cast_const()) }));
    f(&labels);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pairs(l: &ExemplarLabels) -> Vec<(String, String)> {
        l.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn labels_round_trip() {
        let given = [("trace_id", "abc"), ("span_id", ""), ("zone", "北京")];
        let l = ExemplarLabels::new(&given).unwrap();
        let want: Vec<(String, String)> = given.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(pairs(&l), want);
        assert!(
            ExemplarLabels::new(&[]).unwrap().iter().next().is_none(),
            "an empty set is one"
        );
    }

    #[test]
    fn at_most_128_characters() {
        // "trace_id" is 8 characters: a value of 120 makes 128.
        let v120 = "a".repeat(120);
        ExemplarLabels::new(&[("trace_id", &v120)]).expect("128 is the limit, accepted");
        let v121 = "a".repeat(121);
        let e = ExemplarLabels::new(&[("trace_id", &v121)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "exemplar labels [trace_id] are 129 UTF-8 characters long (label names and values \
             together), over OpenMetrics' limit of 128; the exemplar is refused, not truncated"
        );
        assert_eq!(
            e.for_metric("rpc").to_string(),
            "metric `rpc`: exemplar labels [trace_id] are 129 UTF-8 characters long (label names \
             and values together), over OpenMetrics' limit of 128; the exemplar is refused, not truncated"
        );
    }

    #[test]
    fn characters_not_bytes() {
        // 120 three-byte characters: 360 bytes, 128 characters with the name.
        let wide = "界".repeat(120);
        let l = ExemplarLabels::new(&[("trace_id", &wide)]).expect("128 characters");
        assert_eq!(pairs(&l)[0].1, wide);
        // 121 four-byte characters: 129 characters.
        let e = ExemplarLabels::new(&[("trace_id", &"😀".repeat(121))]).unwrap_err();
        assert!(
            matches!(
                e,
                MetricsError::ExemplarLabelsTooLong {
                    found: 129,
                    limit: 128,
                    ..
                }
            ),
            "{e}"
        );
        // Names count too, across labels: 4 + 60 + 4 + 61 = 129.
        let (a, b) = ("x".repeat(60), "y".repeat(61));
        let e = ExemplarLabels::new(&[("aaaa", &a), ("bbbb", &b)]).unwrap_err();
        assert!(e.to_string().contains("[aaaa, bbbb] are 129 UTF-8"), "{e}");
    }

    #[test]
    fn invalid_names_are_refused() {
        for (name, why) in [
            ("", "it is empty"),
            ("9trace", "it starts with '9'"),
            ("trace-id", "it contains '-'"),
            ("__trace", "reserved"),
        ] {
            let e = ExemplarLabels::new(&[(name, "x")]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("exemplar label name `{name}` is invalid: ")) && e.contains(why),
                "{name:?}: {e}"
            );
        }
        let e = ExemplarLabels::new(&[("a", "1"), ("a", "2")]).unwrap_err();
        assert_eq!(e.to_string(), "exemplar label name `a` is invalid: it appears twice");
    }

    fn current() -> Option<Vec<(String, String)>> {
        let mut got = None;
        with_current(|l| got = Some(pairs(l)));
        got
    }

    #[test]
    fn current_exemplar_nests_and_restores() {
        assert_eq!(current(), None);
        {
            let _outer = set_current(&[("trace_id", "outer")]).unwrap();
            assert_eq!(current(), Some(vec![("trace_id".into(), "outer".into())]));
            {
                let _inner = set_current(&[("trace_id", "inner")]).unwrap();
                assert_eq!(current(), Some(vec![("trace_id".into(), "inner".into())]));
                assert!(set_current(&[("bad-name", "x")]).is_err());
                assert_eq!(current(), Some(vec![("trace_id".into(), "inner".into())]), "unchanged");
            }
            assert_eq!(current(), Some(vec![("trace_id".into(), "outer".into())]));
        }
        assert_eq!(current(), None);
        // Per thread.
        let _here = set_current(&[("trace_id", "here")]).unwrap();
        std::thread::spawn(|| assert_eq!(current(), None)).join().unwrap();
    }

    #[test]
    fn guards_dropped_out_of_order_stay_sound() {
        let outer = set_current(&[("trace_id", "outer")]).unwrap();
        let inner = set_current(&[("trace_id", "inner")]).unwrap();
        drop(outer);
        assert_eq!(current(), None, "the outer guard restored what it replaced");
        drop(inner);
        assert_eq!(current(), Some(vec![("trace_id".into(), "outer".into())]));
        // Clears it again: `outer`'s labels were put back, owned by the thread-local.
        let clear = CurrentExemplar {
            prev: None,
            _thread: PhantomData,
        };
        drop(clear);
        assert_eq!(current(), None);
    }

    #[test]
    fn the_quick_check_agrees_with_the_errors() {
        let long = "v".repeat(121);
        let wide = "界".repeat(100);
        let cases: [&[(&str, &str)]; 12] = [
            &[],
            &[("trace_id", "abc")],
            &[("_a", ""), ("b9", "x")],
            &[("trace_id", &long)],
            &[("trace_id", &wide)],
            &[("a", &wide), ("b", &wide)],
            &[("", "x")],
            &[("9a", "x")],
            &[("a-b", "x")],
            &[("__a", "x")],
            &[("a", "1"), ("b", "2"), ("a", "3")],
            &[("é", "x")],
        ];
        for labels in cases {
            assert_eq!(
                accepted(labels),
                refusal(labels).is_ok(),
                "{labels:?}: the quick check and the error path disagree"
            );
            assert_eq!(ExemplarLabels::check(labels).is_ok(), accepted(labels), "{labels:?}");
        }
        assert!(accepted(&[("trace_id", "abc")]) && !accepted(&[("trace_id", &long)]));
    }
}

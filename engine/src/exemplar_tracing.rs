//! The `tracing` integration (feature `tracing`): spans whose fields name a trace make it the
//! current exemplar while they are entered, so `counter!` and `histogram!` calls inside them carry
//! it with no change to either.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::exemplar::{set_current_labels, CurrentExemplar, ExemplarLabels};
use crate::MetricsError;

/// A `tracing_subscriber` layer that makes a span's trace fields the current exemplar
/// ([`crate::exemplar::set_current`]) while the span is entered on a thread, and restores the one
/// before when it exits.
///
/// The fields are `trace_id` by default ([`Self::with_fields`] picks others, `span_id` for
/// example); each is an exemplar label of the same name, its value as the span recorded it (a
/// string as is, other values as `Debug` prints them). A span with none of them changes nothing;
/// nor does one whose values make a label set that is refused (over 128 characters together): it
/// is counted in [`Self::refused`], never truncated. Fields recorded after the span was made
/// (`span.record("trace_id", id)`) count from the next time it is entered.
///
/// Entered spans nest: the innermost one with trace fields is the current exemplar (its own fields
/// only), and its exit restores the one of the span around it.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let m = mmo_metrics::MetricsManager::new();
/// let subscriber = tracing_subscriber::registry().with(mmo_metrics::exemplar::ExemplarLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     metrics::with_local_recorder(&m.recorder(), || {
///         tracing::info_span!("message", trace_id = "4bf92f35").in_scope(|| {
///             metrics::counter!("messages").increment(1); // carries trace_id="4bf92f35"
///         });
///     })
/// });
/// let mut ids = Vec::new();
/// m.visit(|f| f.for_each_sample(|s| ids.extend(s.exemplar().map(|e| e.labels().map(|(_, v)| v.to_owned()).collect::<String>()))));
/// assert_eq!(ids, ["4bf92f35"]);
/// ```
#[derive(Debug, Clone)]
pub struct ExemplarLayer {
    fields: Vec<String>,
    /// Shared by clones, so a caller keeps a clone to read it.
    refused: Arc<AtomicU64>,
}

impl Default for ExemplarLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ExemplarLayer {
    /// A layer taking each span's `trace_id` field.
    pub fn new() -> Self {
        Self {
            fields: vec!["trace_id".into()],
            refused: Default::default(),
        }
    }

    /// A layer taking these span fields, each a valid label name.
    pub fn with_fields(fields: &[&str]) -> Result<Self, MetricsError> {
        ExemplarLabels::new(&fields.iter().map(|&f| (f, "")).collect::<Vec<_>>())?;
        Ok(Self {
            fields: fields.iter().map(|&f| f.to_owned()).collect(),
            refused: Default::default(),
        })
    }

    /// Spans whose trace fields made a label set that was refused (too long), counted by this layer
    /// and its clones.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Collects the span's trace fields into its extensions.
    fn collect<S: Subscriber + for<'a> LookupSpan<'a>>(
        &self,
        id: &Id,
        ctx: &Context<'_, S>,
        visit: impl FnOnce(&mut Fields<'_>),
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let mut fields = Fields {
            wanted: &self.fields,
            found: ext.remove::<SpanFields>().map(|f| f.0).unwrap_or_default(),
        };
        visit(&mut fields);
        if fields.found.is_empty() {
            return;
        }
        let pairs: Vec<(&str, &str)> = fields.found.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let labels = ExemplarLabels::new(&pairs);
        if labels.is_err() {
            self.refused.fetch_add(1, Relaxed);
        }
        let labels = labels.ok();
        ext.insert(SpanFields(fields.found, labels));
    }
}

/// A span's trace fields as recorded, and the exemplar labels they make (`None`: refused).
struct SpanFields(Vec<(String, String)>, Option<ExemplarLabels>);

/// A visitor keeping the wanted fields.
struct Fields<'a> {
    wanted: &'a [String],
    found: Vec<(String, String)>,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: String) {
        if !self.wanted.iter().any(|w| w == field.name()) {
            return;
        }
        match self.found.iter_mut().find(|(n, _)| n == field.name()) {
            Some(f) => f.1 = value,
            None => self.found.push((field.name().to_owned(), value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

thread_local! {
    /// The guards of the spans entered on this thread that set the current exemplar, innermost last.
    static ENTERED: RefCell<Vec<(Id, CurrentExemplar)>> = const { RefCell::new(Vec::new()) };
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ExemplarLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.collect(id, &ctx, |f| attrs.record(f));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.collect(id, &ctx, |f| values.record(f));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let labels = span.extensions().get::<SpanFields>().and_then(|f| f.1.clone());
        if let Some(labels) = labels {
            let guard = set_current_labels(labels);
            let _ = ENTERED.try_with(|e| e.borrow_mut().push((id.clone(), guard)));
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let guard = ENTERED.try_with(|e| {
            let mut e = e.borrow_mut();
            let i = e.iter().rposition(|(entered, _)| entered == id)?;
            Some(e.remove(i).1)
        });
        // Dropped outside the borrow: it restores the exemplar before the span's.
        drop(guard);
    }
}

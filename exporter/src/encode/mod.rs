//! Exposition formats over one format-neutral walk of the read API.
//!
//! [`walk`] visits every family that has series, in name order, and hands a [`Format`] the
//! family's metadata once, then each series with its labels and value. A family the `metrics`
//! facade created may have series of several label sets; they all come in its one walk, so a
//! format writes one metadata block for them. The labels a format sees are the series' own, then
//! every global label (`service`, `instance`: the exporter's, then the manager's,
//! [`mmo_metrics::MetricsManagerBuilder::add_global_label`]) whose name the series does not carry
//! itself. A format only writes bytes; the number and escape helpers of the text formats are in
//! [`fmt`].

pub(crate) mod fmt;
mod negotiate;
mod openmetrics;
pub mod proto;
mod protobuf;
pub(crate) mod received;
mod text;

use std::sync::Arc;

use mmo_metrics::{Labels, MetricKind, MetricsManager, Sample};

pub use negotiate::{negotiate, ExpositionFormat};
pub use openmetrics::{
    encode_openmetrics, encode_openmetrics_with, encode_openmetrics_with_options, OpenMetricsOptions,
    OPENMETRICS_CONTENT_TYPE,
};
pub use protobuf::{encode_protobuf_with, PROTOBUF_CONTENT_TYPE};
pub use text::{encode_text, encode_text_into, encode_text_with, TEXT_CONTENT_TYPE};

/// Label names no global label may take: every histogram sample has `le`, every summary
/// quantile sample `quantile`, so a global label of that name would make those lines invalid.
pub const RESERVED_GLOBAL_LABELS: [&str; 2] = ["le", "quantile"];

/// What a format learns about a family before its series.
pub(crate) struct FamilyMeta<'a> {
    /// The family name; a counter's without `_total`.
    pub(crate) name: &'a str,
    pub(crate) kind: MetricKind,
    pub(crate) help: Option<Arc<str>>,
    /// The unit given through `describe_*!` (`metrics::Unit::as_str`: `seconds`, `bytes`, …).
    pub(crate) unit: Option<&'static str>,
}

/// The labels of one series as exposed: its own, then the global labels it does not carry.
#[derive(Clone, Copy)]
pub(crate) struct SeriesLabels<'a> {
    own: Labels<'a>,
    global: &'a [(String, String)],
}

impl<'a> SeriesLabels<'a> {
    /// `(name, value)` pairs in exposition order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let own = self.own;
        own.iter().chain(
            self.global
                .iter()
                .filter(move |(k, _)| !own.iter().any(|(n, _)| n == k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// One exposition format: told each family, then each of its series.
pub(crate) trait Format {
    /// A family with at least one series begins.
    fn family(&mut self, family: &FamilyMeta<'_>);
    /// One series of the family last begun: its labels as exposed, and its value, creation time
    /// and exemplars (`sample.labels()` are the series' own, without the global ones).
    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>);
}

/// Walks every family of `manager` that has series into `format`, adding `global` labels and
/// then the manager's global labels of other names.
pub(crate) fn walk(manager: &MetricsManager, global: &[(String, String)], format: &mut impl Format) {
    let merged: Vec<(String, String)>;
    let global = match manager.global_labels() {
        [] => global,
        own => {
            merged = global
                .iter()
                .chain(own.iter().filter(|(k, _)| !global.iter().any(|(g, _)| g == k)))
                .cloned()
                .collect();
            &merged
        }
    };
    manager.visit(|family| {
        if family.series_count() == 0 {
            return;
        }
        format.family(&FamilyMeta {
            name: family.name(),
            kind: family.kind(),
            help: family.help(),
            unit: family.unit().map(|u| u.as_str()),
        });
        family.for_each_sample(|sample| {
            let labels = SeriesLabels {
                own: sample.labels(),
                global,
            };
            format.series(labels, sample);
        });
    });
}

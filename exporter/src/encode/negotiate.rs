//! Content negotiation: which exposition format answers a scrape, from its `Accept` header.
//!
//! Prometheus lists every format it can parse, each with a weight (`q`), e.g. 2.42's default
//! `application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,
//! text/plain;version=0.0.4;q=0.5,*/*;q=0.1` (RFC 9110, section 12.5.1). [`negotiate`] picks the
//! offered format of the highest weight; among equal weights, the one the header names first.
//!
//! A media range applies to a format when its type matches and its parameters ask for nothing the
//! format's bytes are not:
//!
//! - `text/plain` with no `version`, `version=0.0.4` or `version=1.0.0` → text 0.0.4. Text 1.0.0
//!   differs from 0.0.4 only in allowing quoted UTF-8 metric and label names; the names here are
//!   always legacy names (the engine validates them, the facade replaces other characters with
//!   `_`), so a text 0.0.4 body is a valid text 1.0.0 body, labelled with the version it is.
//!   client_golang answers such a request the same way, with text 0.0.4.
//! - `application/openmetrics-text` with no `version`, `version=1.0.0` or `version=0.0.1` →
//!   OpenMetrics 1.0.0. 0.0.1 is the draft that became 1.0.0, with the same syntax for what is
//!   exposed here; client_golang sends the same bytes to a 0.0.1 request (labelled 0.0.1), and
//!   Prometheus picks its parser from the media type alone. Other versions (`2.0.0`) do not match.
//! - `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
//!   `encoding=delimited` → protobuf (both parameters required, as client_golang requires them).
//! - `escaping=` (Prometheus 3: `allow-utf-8`, `underscores`, `dots`, `values`) is satisfied
//!   whatever its value: it says how names outside the legacy character set are to be escaped,
//!   and every name exposed here is inside it, so every scheme leaves them unchanged.
//! - `charset` and unknown parameters are ignored; the answer is UTF-8.
//! - `type/*` and `*/*` match every offered format of that type; on a tie the order is text,
//!   OpenMetrics, protobuf (text for a browser or `curl`).
//!
//! When several ranges apply to one format, the most specific decides its weight (RFC 9110): an
//! exact version over a compatible or absent one, a full type over `type/*`, over `*/*`; so
//! `text/plain;q=0,*/*` refuses text. `q=0` refuses; a `q` that is not a number counts as 0.
//! When nothing offered is acceptable, the answer is text 0.0.4, which every scraper reads.

/// An exposition format a scrape can be answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpositionFormat {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Prometheus protobuf (`io.prometheus.client.MetricFamily`, length-delimited).
    Protobuf,
}

impl ExpositionFormat {
    /// Every format, in the order [`negotiate`] prefers on a tie.
    pub const ALL: [ExpositionFormat; 3] = [
        ExpositionFormat::Text,
        ExpositionFormat::OpenMetrics,
        ExpositionFormat::Protobuf,
    ];

    /// The exact Content-Type of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::Text => super::TEXT_CONTENT_TYPE,
            ExpositionFormat::OpenMetrics => super::OPENMETRICS_CONTENT_TYPE,
            ExpositionFormat::Protobuf => super::PROTOBUF_CONTENT_TYPE,
        }
    }

    /// Position in [`Self::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// How specifically `range` names this format: `None` when it does not apply, else 0 for
    /// `*/*`, 1 for `type/*`, 2 for the media type, 3 for the media type with the exact version
    /// (or protobuf parameters) served.
    fn specificity(self, range: &MediaRange<'_>) -> Option<u8> {
        let (ty, subtype) = match self {
            ExpositionFormat::Text => ("text", "plain"),
            ExpositionFormat::OpenMetrics => ("application", "openmetrics-text"),
            ExpositionFormat::Protobuf => ("application", "vnd.google.protobuf"),
        };
        if range.ty == "*" {
            return Some(0);
        }
        if !range.ty.eq_ignore_ascii_case(ty) {
            return None;
        }
        if range.subtype == "*" {
            return Some(1);
        }
        if !range.subtype.eq_ignore_ascii_case(subtype) {
            return None;
        }
        let version = range.param("version");
        match self {
            ExpositionFormat::Text => match version {
                None => Some(2),
                Some(v) if v.is("0.0.4") => Some(3),
                Some(v) if v.is("1.0.0") => Some(2),
                Some(_) => None,
            },
            ExpositionFormat::OpenMetrics => match version {
                None => Some(2),
                Some(v) if v.is("1.0.0") => Some(3),
                Some(v) if v.is("0.0.1") => Some(2),
                Some(_) => None,
            },
            ExpositionFormat::Protobuf => {
                let proto = range
                    .param("proto")
                    .is_some_and(|v| v.is("io.prometheus.client.MetricFamily"));
                let delimited = range.param("encoding").is_some_and(|v| v.is("delimited"));
                (proto && delimited).then_some(3)
            }
        }
    }
}

/// The format to answer a scrape with, among `offered`, from its `Accept` header (several
/// `Accept` headers joined with `,`); text 0.0.4 when none is acceptable (see the module docs).
///
/// ```
/// use mmo_metrics_exporter::{negotiate, ExpositionFormat};
///
/// // What Prometheus 2.42 sends by default.
/// let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
///               text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// let offered = [ExpositionFormat::OpenMetrics, ExpositionFormat::Text];
/// assert_eq!(negotiate(accept, &offered), ExpositionFormat::OpenMetrics);
/// assert_eq!(negotiate("text/plain", &offered), ExpositionFormat::Text);
/// assert_eq!(negotiate("image/png", &offered), ExpositionFormat::Text);
/// ```
pub fn negotiate(accept: &str, offered: &[ExpositionFormat]) -> ExpositionFormat {
    /// Per format: the specificity, weight and header position of the range that decides it.
    #[derive(Clone, Copy)]
    struct Best {
        specificity: u8,
        q: f64,
        position: usize,
    }
    let mut best: [Option<Best>; 3] = [None; 3];
    for (position, item) in split_unquoted(accept, ',').enumerate() {
        let Some(range) = MediaRange::parse(item) else { continue };
        for format in ExpositionFormat::ALL {
            let Some(specificity) = format.specificity(&range) else {
                continue;
            };
            let slot = &mut best[format.index()];
            // The most specific range decides; among equally specific ones, the first.
            if slot.is_none_or(|b| specificity > b.specificity) {
                *slot = Some(Best {
                    specificity,
                    q: range.q,
                    position,
                });
            }
        }
    }
    let mut chosen: Option<(ExpositionFormat, Best)> = None;
    for format in ExpositionFormat::ALL {
        if !offered.contains(&format) {
            continue;
        }
        let Some(b) = best[format.index()].filter(|b| b.q > 0.0) else {
            continue;
        };
        // `ALL` is in tie order, so a later format must be strictly better.
        if chosen.is_none_or(|(_, c)| b.q > c.q || (b.q == c.q && b.position < c.position)) {
            chosen = Some((format, b));
        }
    }
    chosen.map_or(ExpositionFormat::Text, |(format, _)| format)
}

/// One media range of an `Accept` header: `type/subtype;param=value;q=0.5`.
struct MediaRange<'a> {
    ty: &'a str,
    subtype: &'a str,
    /// The `name=value` parameters as written, `q` among them.
    params: &'a str,
    q: f64,
}

impl<'a> MediaRange<'a> {
    /// `None` for an empty or malformed range (no `/`, `*/subtype`).
    fn parse(item: &'a str) -> Option<Self> {
        let (media, params) = match item.find(';') {
            Some(i) => (&item[..i], &item[i + 1..]),
            None => (item, ""),
        };
        let (ty, subtype) = media.trim().split_once('/')?;
        let (ty, subtype) = (ty.trim(), subtype.trim());
        if ty.is_empty() || subtype.is_empty() || (ty == "*" && subtype != "*") {
            return None;
        }
        let mut range = MediaRange {
            ty,
            subtype,
            params,
            q: 1.0,
        };
        if let Some(q) = range.param("q") {
            // RFC 9110 weights are 0 to 1 with at most three decimals; one that is not a number
            // refuses the range rather than guessing.
            range.q = q.0.trim_matches('"').parse::<f64>().map_or(0.0, |q| q.clamp(0.0, 1.0));
        }
        Some(range)
    }

    /// The value of the first parameter named `name` (case-insensitive).
    fn param(&self, name: &str) -> Option<ParamValue<'a>> {
        split_unquoted(self.params, ';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then(|| ParamValue(v.trim()))
        })
    }
}

/// A parameter value as written: a token or a quoted string.
#[derive(Clone, Copy)]
struct ParamValue<'a>(&'a str);

impl ParamValue<'_> {
    /// Whether the value is `want`, once unquoted (`"1.0.0"` is `1.0.0`).
    fn is(self, want: &str) -> bool {
        match self.0.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            None => self.0 == want,
            Some(inner) if !inner.contains('\\') => inner == want,
            Some(inner) => {
                let mut unescaped = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    unescaped.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
                }
                unescaped == want
            }
        }
    }
}

/// The parts of `s` between `sep`s that are not inside a quoted string, empty ones skipped.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || loop {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        let end = s
            .char_indices()
            .find(|&(_, c)| {
                if escaped {
                    escaped = false;
                } else if quoted && c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quoted = !quoted;
                } else if c == sep && !quoted {
                    return true;
                }
                false
            })
            .map(|(i, _)| i);
        let part = match end {
            Some(i) => {
                rest = Some(&s[i + sep.len_utf8()..]);
                &s[..i]
            }
            None => {
                rest = None;
                s
            }
        };
        if !part.trim().is_empty() {
            return Some(part);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ExpositionFormat::{OpenMetrics, Protobuf, Text};
    use super::*;

    /// What the server offers today, and with the protobuf encoder.
    const OFFERED: [ExpositionFormat; 2] = [OpenMetrics, Text];
    const ALL: [ExpositionFormat; 3] = [Protobuf, OpenMetrics, Text];

    // The Accept headers of Prometheus' scrapers, as they build them (scrape/scrape.go,
    // config/config.go of each release).

    /// 2.x before 2.49 (2.42 is Debian 12's): `scrapeAcceptHeader`.
    const PROM_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// The same with `--enable-feature=native-histograms`: `scrapeAcceptHeaderWithProtobuf`.
    const PROM_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// 2.49 to 2.54: `acceptHeader(DefaultScrapeProtocols)` with weights from the number of
    /// protocols.
    const PROM_2_49: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    /// 2.49 to 2.54 with native histograms: `DefaultNativeHistogramScrapeProtocols`.
    const PROM_2_49_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    /// 3.0 with UTF-8 names (its default): every range gets `escaping=allow-utf-8`, and
    /// `text/plain;version=1.0.0` already carries one, so it has two.
    const PROM_3_0_UTF8: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2";
    /// 3.0 with `metric_name_validation_scheme: legacy`.
    const PROM_3_0_LEGACY: &str = "application/openmetrics-text;version=1.0.0;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    /// 3.0 with native histograms (`DefaultProtoFirstScrapeProtocols`), UTF-8 names.
    const PROM_3_0_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.2,*/*;q=0.1";
    /// 3.x now (scrape_test.go `TestAcceptHeader`): `escaping=` only on the 1.0.0 text formats,
    /// with the configured scheme.
    const PROM_3_UNDERSCORES: &str = "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROM_3_DOTS_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=dots;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=dots;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    const PROM_3_UTF8: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROM_3_UTF8_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    /// 3.x with `scrape_protocols: [PrometheusText1.0.0]` alone.
    const PROM_3_TEXT_1_ONLY: &str = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,*/*;q=0.5";

    #[test]
    fn prometheus_headers() {
        for (header, offered, want) in [
            (PROM_2_42, &OFFERED[..], OpenMetrics),
            (PROM_2_42, &ALL[..], OpenMetrics),
            (PROM_2_42_NATIVE, &OFFERED[..], OpenMetrics),
            (PROM_2_42_NATIVE, &ALL[..], Protobuf),
            (PROM_2_49, &OFFERED[..], OpenMetrics),
            (PROM_2_49_NATIVE, &OFFERED[..], OpenMetrics),
            (PROM_2_49_NATIVE, &ALL[..], Protobuf),
            (PROM_3_0_UTF8, &OFFERED[..], OpenMetrics),
            (PROM_3_0_UTF8, &ALL[..], OpenMetrics),
            (PROM_3_0_LEGACY, &OFFERED[..], OpenMetrics),
            (PROM_3_0_NATIVE, &OFFERED[..], OpenMetrics),
            (PROM_3_0_NATIVE, &ALL[..], Protobuf),
            (PROM_3_UNDERSCORES, &OFFERED[..], OpenMetrics),
            (PROM_3_DOTS_NATIVE, &OFFERED[..], OpenMetrics),
            (PROM_3_DOTS_NATIVE, &ALL[..], Protobuf),
            (PROM_3_UTF8, &ALL[..], OpenMetrics),
            (PROM_3_UTF8_NATIVE, &OFFERED[..], OpenMetrics),
            (PROM_3_UTF8_NATIVE, &ALL[..], Protobuf),
            (PROM_3_TEXT_1_ONLY, &ALL[..], Text),
            // A server that offers text only answers every one of them with text.
            (PROM_2_42, &[Text][..], Text),
            (PROM_3_0_NATIVE, &[Text][..], Text),
        ] {
            assert_eq!(negotiate(header, offered), want, "{header} offering {offered:?}");
        }
    }

    #[test]
    fn weights_and_order() {
        // Highest weight wins, wherever it is.
        assert_eq!(
            negotiate("text/plain;q=0.9,application/openmetrics-text;q=0.8", &ALL),
            Text
        );
        assert_eq!(
            negotiate("text/plain;q=0.8,application/openmetrics-text;q=0.9", &ALL),
            OpenMetrics
        );
        // Equal weights: the first named.
        assert_eq!(negotiate("application/openmetrics-text,text/plain", &ALL), OpenMetrics);
        assert_eq!(negotiate("text/plain,application/openmetrics-text", &ALL), Text);
        assert_eq!(
            negotiate("text/plain;q=0.5,application/openmetrics-text;q=0.500", &ALL),
            Text
        );
        // q=0 refuses, even against a wildcard; then nothing acceptable: text.
        assert_eq!(negotiate("application/openmetrics-text;q=0", &ALL), Text);
        assert_eq!(negotiate("text/plain;q=0,*/*;q=0.1", &OFFERED), OpenMetrics);
        assert_eq!(negotiate("application/openmetrics-text;q=0,*/*", &OFFERED), Text);
        assert_eq!(negotiate("*/*;q=0", &ALL), Text);
        // A weight that is not a number refuses; above 1 counts as 1.
        assert_eq!(negotiate("application/openmetrics-text;q=high", &ALL), Text);
        assert_eq!(
            negotiate("text/plain;q=0.5,application/openmetrics-text;q=7", &ALL),
            OpenMetrics
        );
        // The most specific range decides a format's weight, wherever it is.
        assert_eq!(
            negotiate(
                "application/openmetrics-text;q=0.9,application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.5",
                &ALL
            ),
            Text
        );
        assert_eq!(
            negotiate(
                "*/*;q=0.9,text/plain;q=0.1,application/openmetrics-text;q=0.2",
                &OFFERED
            ),
            OpenMetrics
        );
    }

    #[test]
    fn wildcards_and_fallback() {
        for offered in [&OFFERED[..], &ALL[..]] {
            assert_eq!(negotiate("*/*", offered), Text);
            assert_eq!(negotiate("", offered), Text);
            assert_eq!(negotiate("text/*", offered), Text);
            assert_eq!(negotiate("application/*", offered), OpenMetrics);
            assert_eq!(negotiate("application/json", offered), Text);
            assert_eq!(negotiate("image/png,application/xml;q=0.9", offered), Text);
            // A browser.
            assert_eq!(
                negotiate(
                    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
                    offered
                ),
                Text
            );
        }
        assert_eq!(negotiate("application/*", &[Protobuf, Text]), Protobuf);
        // Malformed ranges are skipped, not fatal.
        assert_eq!(
            negotiate("garbage, */plain, /x, application/openmetrics-text", &ALL),
            OpenMetrics
        );
        // Nothing offered is acceptable: text, even if not offered.
        assert_eq!(negotiate("application/openmetrics-text", &[]), Text);
    }

    #[test]
    fn versions() {
        for (range, want) in [
            ("application/openmetrics-text", OpenMetrics),
            ("application/openmetrics-text;version=1.0.0", OpenMetrics),
            ("application/openmetrics-text;version=0.0.1", OpenMetrics),
            ("application/openmetrics-text;version=2.0.0", Text),
            ("application/openmetrics-text;version=0.0.4", Text),
            ("text/plain", Text),
            ("text/plain;version=0.0.4", Text),
            ("text/plain;version=1.0.0", Text),
            ("text/plain;version=1.0.0;escaping=underscores", Text),
        ] {
            assert_eq!(negotiate(range, &OFFERED), want, "{range}");
        }
        // A text version that is not served does not take text's place in the order.
        assert_eq!(
            negotiate("text/plain;version=9.9.9,application/openmetrics-text;q=0.5", &OFFERED),
            OpenMetrics
        );
        assert_eq!(
            negotiate("application/openmetrics-text;version=2.0.0,text/plain;q=0.1", &OFFERED),
            Text
        );
        // Protobuf needs both parameters, and only the delimited encoding is served.
        for (range, want) in [
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
                Protobuf,
            ),
            ("application/vnd.google.protobuf", Text),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily",
                Text,
            ),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
                Text,
            ),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text",
                Text,
            ),
            (
                "application/vnd.google.protobuf;proto=other.Message;encoding=delimited",
                Text,
            ),
        ] {
            assert_eq!(negotiate(range, &ALL), want, "{range}");
        }
    }

    #[test]
    fn syntax() {
        // Whitespace around separators, case of types and parameter names, quoted values,
        // trailing and empty separators (client_golang's tests send `...; escaping=allow-utf-8;`).
        for (header, want) in [
            (
                " application/openmetrics-text ; version=1.0.0 ; q=0.9 , text/plain ; q=0.5 ",
                OpenMetrics,
            ),
            (
                "Application/OpenMetrics-Text;Version=1.0.0;Q=0.9,text/plain;q=0.5",
                OpenMetrics,
            ),
            (
                "application/openmetrics-text;version=\"1.0.0\";q=\"0.9\",text/plain;q=0.5",
                OpenMetrics,
            ),
            ("application/openmetrics-text;version=\"2.0.0\",text/plain;q=0.5", Text),
            ("application/openmetrics-text;version=\"1.\\0.0\"", OpenMetrics),
            (
                "application/openmetrics-text;version=1.0.0; escaping=allow-utf-8;",
                OpenMetrics,
            ),
            (",,application/openmetrics-text;;version=1.0.0,,", OpenMetrics),
            ("TEXT/PLAIN;VERSION=0.0.4", Text),
            // A quoted comma or semicolon does not split.
            (
                "application/openmetrics-text;note=\"a,b;c\";q=0.9,text/plain;q=0.5",
                OpenMetrics,
            ),
            ("text/plain;note=\"x,application/openmetrics-text\"", Text),
            (
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
                Protobuf,
            ),
        ] {
            assert_eq!(negotiate(header, &ALL), want, "{header}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(
            OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Protobuf.content_type(),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        );
        for (i, f) in ExpositionFormat::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }
}

//! Helpers shared by integration tests: reading the exposition, counting log lines.

#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use mmo_metrics::MetricsManager;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

pub fn text(m: &MetricsManager) -> String {
    mmo_metrics_exporter::encode_text(m)
}

/// The value of the sample written exactly `sample` (name and labels), if exposed.
pub fn value(m: &MetricsManager, sample: &str) -> Option<f64> {
    text(m).lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|r| r.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}

/// Log events seen by a [`Capture`]: how many of each level, and the first messages.
#[derive(Default, Debug)]
pub struct Logged {
    pub errors: usize,
    pub warns: usize,
    pub others: usize,
    /// The first 10,000 messages (level, message with its fields).
    pub messages: Vec<(Level, String)>,
}

impl Logged {
    /// Messages of `level` containing every one of `parts`.
    pub fn count(&self, level: Level, parts: &[&str]) -> usize {
        self.messages
            .iter()
            .filter(|(l, m)| *l == level && parts.iter().all(|p| m.contains(p)))
            .count()
    }
}

/// A subscriber that counts events and keeps their messages.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Logged>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?} "));
        } else {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let mut l = self.0.lock().unwrap();
        match *event.metadata().level() {
            Level::ERROR => l.errors += 1,
            Level::WARN => l.warns += 1,
            _ => l.others += 1,
        }
        if l.messages.len() < 10_000 {
            l.messages.push((*event.metadata().level(), f.0));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Events of this test binary that no [`capture_logs`] on their thread took (threads the library
/// starts, such as collectors, log here), through the binary's one global subscriber.
pub fn global_logs() -> &'static Arc<Mutex<Logged>> {
    static LOGS: OnceLock<Arc<Mutex<Logged>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let c = Capture::default();
        tracing::subscriber::set_global_default(c.clone()).expect("the only global subscriber");
        c.0
    })
}

/// Runs `f` with a [`Capture`] as this thread's subscriber; returns what it logged.
///
/// The global subscriber is installed first. tracing caches each log call site's interest,
/// computed from the subscribers that exist when the site is first reached; with thread-scoped
/// subscribers only, a site first reached on another thread while this one installs its own can
/// cache "never" and hide this thread's events (seen as a test that found 0 of 1 expected log
/// lines). A global subscriber that takes every event keeps every site's interest at "always".
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Logged) {
    global_logs();
    let c = Capture::default();
    let r = tracing::subscriber::with_default(c.clone(), f);
    let logged = std::mem::take(&mut *c.0.lock().unwrap());
    (r, logged)
}

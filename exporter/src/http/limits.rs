//! What bounds a client: in-flight scrape slots released by a guard, the connection table with
//! its cap, and a log that speaks at most once per interval however often its event happens.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::self_metrics::{Gauge, SelfMetrics};

/// The scrapes served at once: encoding, waiting for an encode, or sending their body.
pub(crate) struct Slots {
    taken: AtomicUsize,
    max: usize,
    /// Shows `taken`.
    gauge: Gauge,
}

impl Slots {
    pub(crate) fn new(max: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            taken: AtomicUsize::new(0),
            max,
            gauge,
        })
    }

    /// A slot, or `None` when all are taken. The slot is given back when the guard drops,
    /// whatever ends the scrape: its body sent, the client gone, a timeout.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        // Relaxed: the count guards no other memory; it only has to be exact, which the
        // read-modify-write operations make it.
        let n = self
            .taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        self.gauge.set((n + 1) as f64);
        Some(Slot(Arc::clone(self)))
    }

    /// Slots taken now.
    #[cfg(test)]
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }
}

/// One taken in-flight slot; dropping it gives the slot back.
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let n = self.0.taken.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.set((n - 1) as f64);
    }
}

/// Logs an event at most once per `every`, with how many times it happened since the last line.
#[derive(Debug)]
pub(crate) struct LogEvery {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event; returns how many happened since the last time it said to log (this one
    /// included) when it is time to log again, `None` otherwise.
    pub(crate) fn tick(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.1 += 1;
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => None,
            _ => {
                let n = s.1;
                *s = (Some(now), 0);
                Some(n)
            }
        }
    }
}

/// A connection in the table: whether it is serving a request, and how to ask it to close.
struct Conn {
    busy: Arc<AtomicUsize>,
    close: oneshot::Sender<()>,
}

/// The open connections, capped. At the cap a new connection takes the place of the oldest one
/// that is serving no request (it is asked to close, which it does at once, or after the response
/// it is sending); when every connection is busy the new one is refused.
pub(crate) struct Connections {
    max: usize,
    inner: Mutex<Table>,
    metrics: Arc<SelfMetrics>,
    at_cap: LogEvery,
    addr: std::net::SocketAddr,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// By id, which is the order of acceptance: the first idle entry is the oldest idle one.
    open: BTreeMap<u64, Conn>,
}

/// What [`Connections::admit`] decided.
pub(crate) enum Admit {
    /// Serve it; the ticket keeps its place in the table and gives it back on drop.
    /// `made_room`: an idle connection was asked to close for it.
    Serve { ticket: Ticket, made_room: bool },
    /// Every connection is busy: close this one.
    Refuse,
}

impl Connections {
    pub(crate) fn new(max: usize, metrics: Arc<SelfMetrics>, addr: std::net::SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            max,
            inner: Mutex::new(Table::default()),
            metrics,
            at_cap: LogEvery::new(Duration::from_secs(10)),
            addr,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.table().open.len()
    }

    /// Admits a new connection, making room at the cap by closing the oldest idle one.
    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        let mut t = self.table();
        let at_cap = t.open.len() >= self.max;
        if at_cap {
            // Relaxed: `busy` is a hint for choosing whom to close; a request that starts just
            // after the check is still answered, since closing waits for the response.
            let idle = t
                .open
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
                .map(|(id, _)| *id);
            let Some(old) = idle.and_then(|id| t.open.remove(&id)) else {
                drop(t);
                self.reached_cap("refused");
                return Admit::Refuse;
            };
            let _ = old.close.send(());
        }
        let id = t.next_id;
        t.next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel();
        t.open.insert(
            id,
            Conn {
                busy: Arc::clone(&busy),
                close: tx,
            },
        );
        let open = t.open.len();
        drop(t);
        self.metrics.connections.set(open as f64);
        if at_cap {
            self.reached_cap("evicted");
        }
        Admit::Serve {
            ticket: Ticket {
                id,
                busy,
                close: Some(rx),
                table: Arc::clone(self),
            },
            made_room: at_cap,
        }
    }

    /// Counts an arrival at the cap (`evicted` or `refused`) and logs at most once per 10 s.
    fn reached_cap(&self, action: &str) {
        self.metrics.connection_limit(action);
        if let Some(n) = self.at_cap.tick() {
            tracing::warn!(
                "mmo-metrics exporter on {}: {n} connection(s) arrived at the limit of {} open connections \
                 in the last 10 s (the latest {action}); raise it with ExporterBuilder::max_connections",
                self.addr,
                self.max
            );
        }
    }
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Ticket {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Option<oneshot::Receiver<()>>,
    table: Arc<Connections>,
}

impl Ticket {
    /// Resolves when the connection is asked to make room for a newer one.
    pub(crate) fn close_requested(&mut self) -> oneshot::Receiver<()> {
        self.close.take().unwrap_or_else(|| oneshot::channel().1)
    }

    /// The count of requests in progress on this connection, which [`Busy`] guards keep.
    pub(crate) fn busy(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.busy)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let open = {
            let mut t = self.table.table();
            t.open.remove(&self.id);
            t.open.len()
        };
        self.table.metrics.connections.set(open as f64);
    }
}

/// A request in progress on a connection; dropping it (response ready, or the request cancelled)
/// ends it.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Busy {
    pub(crate) fn new(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(busy))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_come_back_when_guards_drop() {
        let slots = Slots::new(2, Gauge::none());
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none());
        drop(a);
        let c = slots.try_take().expect("a's slot is back");
        drop((b, c));
        assert_eq!(slots.taken(), 0);
    }

    #[test]
    fn log_every_counts_between_lines() {
        let log = LogEvery::new(Duration::from_secs(3600));
        assert_eq!(log.tick(), Some(1));
        for _ in 0..99 {
            assert_eq!(log.tick(), None);
        }
        let log = LogEvery::new(Duration::ZERO);
        assert_eq!(log.tick(), Some(1));
        assert_eq!(log.tick(), Some(1));
    }
}

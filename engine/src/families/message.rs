//! `messages_total{direction,msg_type}`, `message_size_bytes{direction}`,
//! `message_process_time{msg_type}`.

use super::{Timer, SECONDS_BUCKETS, SIZE_BUCKETS};
use crate::{CounterHandle, HistogramHandle, MetricsError, MetricsManager, NativeConfig};

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from a client (`direction="in"`).
    In,
    /// Sent to a client (`direction="out"`).
    Out,
}

impl Direction {
    /// The label value: `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Message metrics.
#[derive(Clone, Debug)]
pub struct MessageMetrics {
    manager: MetricsManager,
}

/// Handles for one (direction, message type): resolved once, then lookup-free.
#[derive(Clone)]
pub struct MessageHandles {
    messages: CounterHandle,
    size: HistogramHandle,
    process_time: HistogramHandle,
}

impl std::fmt::Debug for MessageHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageHandles").finish_non_exhaustive()
    }
}

impl MessageMetrics {
    /// Registers the family.
    pub fn register(m: &MetricsManager) -> Result<Self, MetricsError> {
        Self::register_with(m, None)
    }

    /// Registers the family with `message_process_time` as a classic and a native histogram (see
    /// [`MetricsManager::register_histogram_with_native`]): Prometheus with native histograms
    /// enabled stores the native part, others the classic buckets. Recording into both costs
    /// about twice a classic record.
    pub fn register_with_native(m: &MetricsManager, native: NativeConfig) -> Result<Self, MetricsError> {
        Self::register_with(m, Some(native))
    }

    fn register_with(m: &MetricsManager, native: Option<NativeConfig>) -> Result<Self, MetricsError> {
        m.register_counter(
            "messages_total",
            "Messages handled, by direction and type.",
            &["direction", "msg_type"],
        )?;
        m.register_histogram(
            "message_size_bytes",
            "Message sizes in bytes.",
            &["direction"],
            &SIZE_BUCKETS,
        )?;
        match native {
            Some(native) => m.register_histogram_with_native(
                "message_process_time",
                "Time to process a message, in seconds.",
                &["msg_type"],
                &SECONDS_BUCKETS,
                native,
            )?,
            None => m.register_histogram(
                "message_process_time",
                "Time to process a message, in seconds.",
                &["msg_type"],
                &SECONDS_BUCKETS,
            )?,
        }
        Ok(Self { manager: m.clone() })
    }

    /// Handles for messages of `msg_type` going `direction`.
    pub fn handles(&self, direction: Direction, msg_type: &str) -> Result<MessageHandles, MetricsError> {
        Ok(MessageHandles {
            messages: self
                .manager
                .counter("messages_total", &[direction.as_str(), msg_type])?,
            size: self.manager.histogram("message_size_bytes", &[direction.as_str()])?,
            process_time: self.manager.histogram("message_process_time", &[msg_type])?,
        })
    }
}

impl MessageHandles {
    /// Counts one message of `bytes` bytes.
    #[inline]
    pub fn received(&self, bytes: usize) {
        self.messages.increment(1);
        self.size.record(bytes as f64);
    }

    /// Same as [`Self::received`], for outgoing messages.
    #[inline]
    pub fn sent(&self, bytes: usize) {
        self.received(bytes);
    }

    /// Records a processing time in seconds.
    #[inline]
    pub fn processed(&self, seconds: f64) {
        self.process_time.record(seconds);
    }

    /// Times processing until the timer drops.
    pub fn process_timer(&self) -> Timer {
        Timer::new(self.process_time.clone())
    }
}

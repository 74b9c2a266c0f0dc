//! Per-loop counters and their Prometheus text exposition (format 0.0.4).
//!
//! The loop thread owns a [`LoopMetrics`] of plain integers and bumps them with ordinary
//! adds: nothing atomic on the message path. Once per iteration (or less often) it calls
//! [`LoopMetrics::publish`], a relaxed store of every field into the loop's
//! [`LoopShared`], which a scraper on any thread reads with [`render`]. A scrape may see one
//! loop an iteration behind another; each loop's values are read once per scrape, so the
//! process-wide sums and the per-loop series of one scrape always agree.
//!
//! Naming: `wsloop_<what>` is the process-wide family (no `loop` label; summed over the
//! loops) and `wsloop_loop_<what>` the per-loop family (label `loop="0"`, `"1"`…), so no
//! family mixes label sets and `sum(wsloop_loop_x)` never double-counts a total.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Close codes counted one by one: 1000 ..= 1015 (RFC 6455 §7.4.1); the rest count as
/// `code="other"`.
pub const CLOSE_CODES: std::ops::RangeInclusive<u16> = 1000..=1015;
const CLOSE_SLOTS: usize = 1015 - 1000 + 2;

/// HTTP statuses a refused upgrade or plain request is counted under; the rest count as
/// `status="other"`.
pub const REFUSAL_STATUSES: [u16; 9] = [400, 403, 404, 405, 413, 426, 431, 501, 503];
const REFUSAL_SLOTS: usize = REFUSAL_STATUSES.len() + 1;

/// Upper bounds of the loop-iteration-time histogram, in nanoseconds (10 µs … 1 s); one
/// more bucket (`+Inf`) takes the rest.
pub const ITERATION_BUCKETS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];
const ITERATION_SLOTS: usize = ITERATION_BUCKETS_NS.len() + 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Declares the scalar metrics once: the plain field, its atomic mirror, the publish
/// store and the render table cannot drift apart.
macro_rules! scalars {
    ($( $(#[$doc:meta])* $field:ident: $kind:ident, $name:literal, $help:literal; )*) => {
        /// One loop's counters and gauges as plain integers, owned by the loop thread.
        /// Counters only grow; gauges (`connections_open`, `buffered_bytes`) are set or
        /// moved both ways by the loop.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct LoopMetrics {
            $( $(#[$doc])* pub $field: u64, )*
            closed_by_code: [u64; CLOSE_SLOTS],
            refused_by_status: [u64; REFUSAL_SLOTS],
            iteration_buckets: [u64; ITERATION_SLOTS],
            iteration_nanos: u64,
        }

        /// The atomic mirror of one loop's [`LoopMetrics`], shared (`Arc`) with scrapers.
        #[derive(Debug, Default)]
        pub struct LoopShared {
            $( $field: AtomicU64, )*
            closed_by_code: [AtomicU64; CLOSE_SLOTS],
            refused_by_status: [AtomicU64; REFUSAL_SLOTS],
            iteration_buckets: [AtomicU64; ITERATION_SLOTS],
            iteration_nanos: AtomicU64,
        }

        impl LoopMetrics {
            /// Copies every field into `shared` with relaxed stores (no read-modify-write;
            /// only this loop writes `shared`). Call once per iteration or less often.
            pub fn publish(&self, shared: &LoopShared) {
                $( shared.$field.store(self.$field, Relaxed); )*
                store_all(&shared.closed_by_code, &self.closed_by_code);
                store_all(&shared.refused_by_status, &self.refused_by_status);
                store_all(&shared.iteration_buckets, &self.iteration_buckets);
                shared.iteration_nanos.store(self.iteration_nanos, Relaxed);
            }

            fn add(&mut self, o: &LoopMetrics) {
                $( self.$field += o.$field; )*
                add_all(&mut self.closed_by_code, &o.closed_by_code);
                add_all(&mut self.refused_by_status, &o.refused_by_status);
                add_all(&mut self.iteration_buckets, &o.iteration_buckets);
                self.iteration_nanos += o.iteration_nanos;
            }
        }

        impl LoopShared {
            /// What the loop last published (relaxed loads).
            pub fn load(&self) -> LoopMetrics {
                LoopMetrics {
                    $( $field: self.$field.load(Relaxed), )*
                    closed_by_code: load_all(&self.closed_by_code),
                    refused_by_status: load_all(&self.refused_by_status),
                    iteration_buckets: load_all(&self.iteration_buckets),
                    iteration_nanos: self.iteration_nanos.load(Relaxed),
                }
            }
        }

        const SCALARS: &[(Kind, &str, &str, fn(&LoopMetrics) -> u64)] = &[
            $( (Kind::$kind, $name, $help, |m| m.$field), )*
        ];
    };
}

scalars! {
    /// Connections open now (handshaking, open or closing). Gauge.
    connections_open: Gauge, "connections_open", "Connections open now, in any state.";
    /// Connections accepted from the listener (including those then refused).
    accepted: Counter, "accepted_total", "Connections accepted from the listener.";
    /// WebSocket data messages received (after reassembly of fragments).
    messages_in: Counter, "received_messages_total", "WebSocket data messages received.";
    /// WebSocket data messages sent (a broadcast counts once per recipient).
    messages_out: Counter, "sent_messages_total", "WebSocket data messages sent, once per recipient.";
    /// Bytes read from sockets, all framing and HTTP included.
    bytes_in: Counter, "received_bytes_total", "Bytes read from sockets, framing and HTTP included.";
    /// Bytes the kernel accepted for writing, all framing and HTTP included.
    bytes_out: Counter, "sent_bytes_total", "Bytes written to sockets, framing and HTTP included.";
    /// Messages published to a topic.
    publishes: Counter, "publishes_total", "Messages published to a topic.";
    /// Published messages queued to a subscriber (one per subscriber per publish).
    deliveries: Counter, "deliveries_total", "Published messages queued to a subscriber.";
    /// Sends refused because the connection's unsent output was past `max_backpressure`.
    dropped_sends: Counter, "dropped_sends_total", "Sends refused by backpressure.";
    /// Subscribers closed (1008) because they could not keep up.
    slow_subscribers_closed: Counter, "slow_subscribers_closed_total", "Subscribers closed for falling behind.";
    /// Bytes waiting in connections' write buffers now. Gauge.
    buffered_bytes: Gauge, "buffered_bytes", "Unsent bytes in write buffers now.";
    /// Publishers held by pacing (a connection's input paused because a subscriber it
    /// published to is above the high watermark, or a loop's mailbox is full).
    publishers_paced: Counter, "publishers_paced_total", "Publishers held until their subscribers or another loop caught up.";
    /// Subscribers above the high watermark under `pace` now. Gauge.
    congested_subscribers: Gauge, "congested_subscribers", "Subscribers above the high watermark holding their publishers now.";
    /// Bytes waiting in the loop's mailbox (commands from other loops and threads). Gauge.
    mailbox_bytes: Gauge, "mailbox_bytes", "Bytes of commands waiting in the loop's mailbox.";
    /// Topics with at least one subscriber on the loop now. Gauge.
    topics: Gauge, "topics", "Topics with a subscriber on the loop now.";
    /// Commands for this loop dropped at its mailbox bound.
    mailbox_dropped: Counter, "mailbox_dropped_total", "Commands dropped at the loop's mailbox bound.";
}

fn store_all<const N: usize>(to: &[AtomicU64; N], from: &[u64; N]) {
    for (a, v) in to.iter().zip(from) {
        a.store(*v, Relaxed);
    }
}

fn load_all<const N: usize>(from: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| from[i].load(Relaxed))
}

fn add_all<const N: usize>(to: &mut [u64; N], from: &[u64; N]) {
    for (a, v) in to.iter_mut().zip(from) {
        *a += v;
    }
}

impl LoopMetrics {
    /// Counts a connection ended with close `code` (the code sent or received, or 1006
    /// for an abnormal end); codes outside 1000..=1015 count as `other`.
    pub fn on_close(&mut self, code: u16) {
        let slot = if CLOSE_CODES.contains(&code) {
            (code - 1000) as usize
        } else {
            CLOSE_SLOTS - 1
        };
        self.closed_by_code[slot] += 1;
    }

    /// Counts `n` bytes of a write buffer taken by the kernel: sent, and no longer
    /// buffered.
    #[inline]
    pub fn on_written(&mut self, n: u64) {
        self.bytes_out += n;
        self.buffered_bytes = self.buffered_bytes.saturating_sub(n);
    }

    /// Counts `n` unsent bytes dropped with their connection.
    #[inline]
    pub fn on_discarded(&mut self, n: u64) {
        self.buffered_bytes = self.buffered_bytes.saturating_sub(n);
    }

    /// Counts a request answered with HTTP `status` instead of an upgrade.
    pub fn on_refused(&mut self, status: u16) {
        let slot = REFUSAL_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(REFUSAL_SLOTS - 1);
        self.refused_by_status[slot] += 1;
    }

    /// Counts one loop iteration that took `took` (into the histogram and the total).
    pub fn on_iteration(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let slot = ITERATION_BUCKETS_NS.partition_point(|b| *b < ns);
        self.iteration_buckets[slot] += 1;
        self.iteration_nanos = self.iteration_nanos.saturating_add(ns);
    }

    /// Connections ended, over every close code.
    pub fn closed(&self) -> u64 {
        self.closed_by_code.iter().sum()
    }

    /// Loop iterations counted by [`LoopMetrics::on_iteration`].
    pub fn iterations(&self) -> u64 {
        self.iteration_buckets.iter().sum()
    }
}

mod backplane;
mod render;
pub use backplane::render_backplane;
pub use render::render;

#[cfg(test)]
mod tests;

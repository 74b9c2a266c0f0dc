//! Per-thread measurements: a fixed-size latency histogram, error counters and close
//! codes. Nothing here allocates while recording; threads merge their stats at the end.

use std::collections::BTreeMap;

/// Exact below 128 ns, then 64 sub-buckets per power of two (at most 1.6% wide).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS; // 64
const EXACT: usize = 2 * SUB; // 128
const BUCKETS: usize = EXACT + (64 - SUB_BITS as usize - 1) * SUB;

/// Log-linear latency histogram in nanoseconds (HdrHistogram-like, fixed 30 KB).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    n: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            n: 0,
            sum: 0,
            max: 0,
        }
    }
}

#[inline]
fn index(v: u64) -> usize {
    if v < EXACT as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= 7
    let shift = msb - SUB_BITS; // >= 1
    let m = (v >> shift) as usize; // in [64, 128)
    EXACT + (shift as usize - 1) * SUB + (m - SUB)
}

/// The middle of bucket `i`.
fn value_of(i: usize) -> u64 {
    if i < EXACT {
        return i as u64;
    }
    let shift = ((i - EXACT) / SUB + 1) as u32;
    let m = ((i - EXACT) % SUB + SUB) as u64;
    (m << shift) + (1u64 << (shift - 1))
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.n += 1;
        self.sum += ns as u128;
        if ns > self.max {
            self.max = ns;
        }
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The value at quantile `q` (0..=1), in ns; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}

/// What went wrong; every kind counts as an error (nonzero exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// socket/bind/connect failed (refused, no ports, fd limit).
    Connect,
    /// Not a valid 101 response, or a wrong Sec-WebSocket-Accept.
    Handshake,
    /// Not open within --connect-timeout.
    ConnectTimeout,
    /// The server broke RFC 6455 (decoder error).
    Protocol,
    /// A payload differs from what was sent (length, content, opcode).
    Corrupt,
    /// A sequence number out of order: reordered, duplicated or lost messages.
    Sequence,
    /// Broadcast: messages a subscriber never received (checked at the end).
    Missing,
    /// A message nobody sent (unparseable broadcast, unexpected echo).
    Unexpected,
    /// The server closed a connection during the run (close frame or EOF).
    ServerClosed,
    /// The server dropped TCP after our close frame without answering it.
    NoCloseReply,
    /// Our close frame got no answer (or no TCP close) in time.
    CloseTimeout,
    /// A read or write failed (reset, broken pipe).
    Io,
    /// Held connections that did not answer the final ping.
    NoPong,
    /// The overall deadline expired.
    Deadline,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::ConnectTimeout,
        ErrorKind::Protocol,
        ErrorKind::Corrupt,
        ErrorKind::Sequence,
        ErrorKind::Missing,
        ErrorKind::Unexpected,
        ErrorKind::ServerClosed,
        ErrorKind::NoCloseReply,
        ErrorKind::CloseTimeout,
        ErrorKind::Io,
        ErrorKind::NoPong,
        ErrorKind::Deadline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Sequence => "sequence",
            ErrorKind::Missing => "missing",
            ErrorKind::Unexpected => "unexpected",
            ErrorKind::ServerClosed => "server_closed",
            ErrorKind::NoCloseReply => "no_close_reply",
            ErrorKind::CloseTimeout => "close_timeout",
            ErrorKind::Io => "io",
            ErrorKind::NoPong => "no_pong",
            ErrorKind::Deadline => "deadline",
        }
    }
}

const MAX_SAMPLES: usize = 8;

/// Everything one worker thread measured.
#[derive(Default)]
pub struct ThreadStats {
    /// Latency of measured messages (echo round trip / publish→receive).
    pub hist: Histogram,
    /// Handshake latency (connect() to a verified 101), every connection.
    pub hs_hist: Histogram,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub error_samples: Vec<String>,
    pub close_codes: BTreeMap<u16, u64>,
    /// Set while the thread is in the measured phase.
    pub measuring: bool,
    /// Measured messages received (echoes, broadcast deliveries, handshakes).
    pub msgs: u64,
    /// Measured payload bytes received.
    pub bytes: u64,
    /// Measured messages sent (echo requests, publishes).
    pub sent: u64,
    /// All messages received, for the progress line.
    pub total_msgs: u64,
    /// All handshakes completed.
    pub handshakes: u64,
    /// Handshakes completed while measuring.
    pub measured_handshakes: u64,
    /// Broadcast: per publisher id, how many it published (set by the thread owning it).
    pub pub_sent: Vec<u64>,
    /// Broadcast: per publisher id, Σ over live connections of the next expected sequence.
    pub expected_sum: Vec<u64>,
    /// Broadcast: live connections at the end (those counted in `expected_sum`).
    pub live_at_end: u64,
    /// Broadcast --rate: publishes skipped because the window held a publisher back
    /// for more than a second.
    pub rate_skipped: u64,
    /// Connect --hold: connections that answered the final ping.
    pub answered: u64,
    /// Bytes read from the sockets while measuring (frames as on the wire).
    pub wire_in: u64,
    /// Bytes handed to the sockets while measuring.
    pub wire_out: u64,
}

impl ThreadStats {
    #[cold]
    pub fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.errors[kind as usize] += 1;
        if self.error_samples.len() < MAX_SAMPLES {
            self.error_samples
                .push(format!("{}: {}", kind.name(), detail()));
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn close_code(&mut self, code: u16) {
        *self.close_codes.entry(code).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: ThreadStats) {
        self.hist.merge(&o.hist);
        self.hs_hist.merge(&o.hs_hist);
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        for s in o.error_samples {
            if self.error_samples.len() < MAX_SAMPLES * 2 {
                self.error_samples.push(s);
            }
        }
        for (c, n) in o.close_codes {
            *self.close_codes.entry(c).or_insert(0) += n;
        }
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.sent += o.sent;
        self.total_msgs += o.total_msgs;
        self.handshakes += o.handshakes;
        self.measured_handshakes += o.measured_handshakes;
        merge_vec(&mut self.pub_sent, &o.pub_sent);
        merge_vec(&mut self.expected_sum, &o.expected_sum);
        self.live_at_end += o.live_at_end;
        self.rate_skipped += o.rate_skipped;
        self.answered += o.answered;
        self.wire_in += o.wire_in;
        self.wire_out += o.wire_out;
    }
}

fn merge_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i >= prev && i < BUCKETS, "{v}");
            prev = i;
            let mid = value_of(i) as f64;
            assert!(
                (mid - v as f64).abs() <= (v as f64) * 0.016 + 1.0,
                "{v} -> {mid}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() < 500_000.0 * 0.02, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() < 990_000.0 * 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}

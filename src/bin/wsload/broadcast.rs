//! Broadcast against the chat protocol (`wsloop chat`, `node-ws-chat`): M publishers,
//! N subscribers; every connection receives every broadcast.
//!
//! Published payload (`size` bytes, ASCII): `#`, publisher id (3 six-bit digits),
//! sequence number (6), send time in ns since wsload's epoch on CLOCK_MONOTONIC (8), then
//! a filler that depends on the sequence number. Text comes back as `user<N>: <payload>`,
//! binary verbatim. Every receiver checks, per publisher, that sequence numbers arrive in
//! order without gaps; a publisher's own broadcast is its acknowledgement, and at most
//! `window` publishes per publisher are unacknowledged.

use crate::driver::{App, Ctx, Phase};
use crate::payload::{get6, json_like, put6};
use crate::stats::ErrorKind;
use crate::sys::epoch_ns;
use wsloop::protocol::decoder::Message;
use wsloop::protocol::frame::{encode_header, OpCode, MAX_HEADER_LEN};
use wsloop::protocol::mask::apply_mask;

/// `#` + id + sequence + timestamp.
pub const MIN_SIZE: usize = 18;
const FILL_FROM: usize = MIN_SIZE;

pub struct Broadcast {
    publishers: u32,
    window: u64,
    size: usize,
    binary: bool,
    /// Rate mode: ns between two publishes of one publisher.
    interval: Option<u64>,
    /// `a..z` repeated (or JSON-like text); the filler of sequence `s` starts at
    /// `(FILL_FROM + s) % 26`.
    pattern: Vec<u8>,
    /// --deflate: the payload of the publish being compressed.
    plain: Vec<u8>,
    /// Slab keys of this thread's open publishers.
    pubs: Vec<usize>,
    sending: bool,
    /// --messages: publishes per publisher.
    quota: Option<u64>,
    /// --messages: measured publishes this thread still has to send.
    budget_left: u64,
    local_publishers: u64,
    done: bool,
    /// Publishers' own receptions count as deliveries (and latency samples).
    count_publishers: bool,
}

pub struct BConn {
    id: u32,
    /// Next expected sequence number per publisher.
    expected: Box<[u64]>,
    publisher: Option<Publisher>,
}

struct Publisher {
    seq: u64,
    acked: u64,
    next_at: u64,
    budget: u64,
}

impl Broadcast {
    pub fn new(
        publishers: u32,
        window: u32,
        size: usize,
        binary: bool,
        json: bool,
        rate: Option<f64>,
        quota: Option<u64>,
    ) -> Self {
        let interval = rate.map(|r| (publishers as f64 * 1e9 / r).max(1.0) as u64);
        Broadcast {
            publishers,
            window: window as u64,
            size,
            binary,
            interval,
            pattern: if json {
                json_like(size + 26)
            } else {
                (0..size + 26).map(|i| b'a' + (i % 26) as u8).collect()
            },
            plain: Vec::with_capacity(size),
            pubs: Vec::new(),
            sending: false,
            quota,
            budget_left: 0,
            local_publishers: 0,
            done: false,
            count_publishers: true,
        }
    }

    /// Whether publishers' receptions count as deliveries and latency samples (false:
    /// only subscribers', for `--subscriber-url`).
    pub fn count_publishers(mut self, yes: bool) -> Self {
        self.count_publishers = yes;
        self
    }

    #[inline]
    fn filler(&self, seq: u64) -> &[u8] {
        let from = (FILL_FROM + (seq % 26) as usize) % 26;
        &self.pattern[from..from + self.size - FILL_FROM]
    }

    fn check_done(&mut self, ctx: &mut Ctx) {
        if self.quota.is_some()
            && ctx.phase == Phase::Measure
            && !self.done
            && self.budget_left == 0
            && *ctx.inflight == 0
        {
            self.done = true;
            ctx.shared.thread_done(ctx.now);
        }
    }

    /// Strips `user<N>: ` (or `user<N>-<hex tag>: `, from a `--redis` instance) from a
    /// relayed text; `None` for anything else.
    fn strip_user(b: &[u8]) -> Option<&[u8]> {
        let rest = b.strip_prefix(b"user")?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut rest = &rest[digits..];
        if let Some(tagged) = rest.strip_prefix(b"-") {
            let hex = tagged.iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if hex == 0 {
                return None;
            }
            rest = &tagged[hex..];
        }
        rest.strip_prefix(b": ")
    }

    /// `user<N> come in!` and `user<N> left`.
    fn is_notice(b: &[u8]) -> bool {
        b.starts_with(b"user") && (b.ends_with(b" come in!") || b.ends_with(b" left"))
    }
}

impl App for Broadcast {
    type Conn = BConn;

    fn new_conn(&mut self, id: u32) -> BConn {
        BConn {
            id,
            expected: vec![0; self.publishers as usize].into_boxed_slice(),
            publisher: (id < self.publishers).then_some(Publisher {
                seq: 0,
                acked: 0,
                next_at: 0,
                budget: 0,
            }),
        }
    }

    fn on_open(&mut self, _ctx: &mut Ctx, key: usize, c: &mut BConn) -> bool {
        if c.publisher.is_some() {
            self.pubs.push(key);
            self.local_publishers += 1;
        }
        false
    }

    fn on_close(&mut self, ctx: &mut Ctx, key: usize, c: &mut BConn) {
        if let Some(p) = &c.publisher {
            self.pubs.retain(|&k| k != key);
            *ctx.inflight -= (p.seq - p.acked) as i64;
            self.budget_left -= p.budget;
            self.check_done(ctx);
        }
    }

    fn on_phase(&mut self, ctx: &mut Ctx) {
        self.sending = matches!(ctx.phase, Phase::Warmup | Phase::Measure);
        if ctx.phase == Phase::Measure {
            if let Some(q) = self.quota {
                self.budget_left = q * self.pubs.len() as u64;
                self.check_done(ctx);
            }
        }
    }

    fn pump(&mut self, ctx: &mut Ctx, c: &mut BConn, out: &mut Vec<u8>) {
        let Some(p) = c.publisher.as_mut() else {
            return;
        };
        if ctx.phase_changed && ctx.phase == Phase::Measure {
            if let Some(q) = self.quota {
                p.budget = q;
            }
        }
        if !self.sending {
            return;
        }
        if p.next_at == 0 {
            p.next_at = ctx.now;
        }
        let mut n = self.window - (p.seq - p.acked);
        if let Some(iv) = self.interval {
            let due = if ctx.now >= p.next_at {
                (ctx.now - p.next_at) / iv + 1
            } else {
                0
            };
            n = n.min(due);
            p.next_at += n * iv;
            if ctx.now > p.next_at + 1_000_000_000 {
                // More than a second behind (held back by the window): skip what is
                // overdue instead of bursting to catch up, and count it.
                ctx.st.rate_skipped += (ctx.now - p.next_at) / iv;
                p.next_at = ctx.now;
            }
        }
        if self.quota.is_some() && ctx.phase == Phase::Measure {
            n = n.min(p.budget);
            p.budget -= n;
            self.budget_left -= n;
        }
        if n == 0 {
            return;
        }
        let ts = ctx.now.saturating_sub(epoch_ns());
        let op = if self.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        let mut h = [0u8; MAX_HEADER_LEN];
        let hl = encode_header(&mut h, true, op, self.size as u64, Some(ctx.mask));
        let deflate = ctx.z.on(ctx.key);
        if !deflate {
            out.reserve(n as usize * (hl + self.size));
        }
        for _ in 0..n {
            let mut stamp = [0u8; MIN_SIZE];
            stamp[0] = b'#';
            put6(c.id as u64, &mut stamp[1..4]);
            put6(p.seq, &mut stamp[4..10]);
            put6(ts, &mut stamp[10..18]);
            let from = (FILL_FROM + (p.seq % 26) as usize) % 26;
            let filler = &self.pattern[from..from + self.size - FILL_FROM];
            if deflate {
                self.plain.clear();
                self.plain.extend_from_slice(&stamp);
                self.plain.extend_from_slice(filler);
                ctx.z.write(ctx.key, out, op, &self.plain, ctx.mask);
            } else {
                out.extend_from_slice(&h[..hl]);
                let start = out.len();
                out.extend_from_slice(&stamp);
                out.extend_from_slice(filler);
                apply_mask(&mut out[start..], ctx.mask, 0);
            }
            p.seq += 1;
        }
        *ctx.inflight += n as i64;
        if ctx.st.measuring {
            ctx.st.sent += n;
        }
        let pid = c.id as usize;
        if ctx.st.pub_sent.len() <= pid {
            ctx.st.pub_sent.resize(self.publishers as usize, 0);
        }
        ctx.st.pub_sent[pid] = p.seq;
    }

    #[inline]
    fn on_message(&mut self, ctx: &mut Ctx, c: &mut BConn, msg: Message<'_>) {
        let payload = match msg {
            Message::Text(t) => match Self::strip_user(t.as_bytes()) {
                Some(p) => p,
                None if Self::is_notice(t.as_bytes()) => return,
                None => {
                    let id = c.id;
                    let t = t.chars().take(60).collect::<String>();
                    ctx.st.error(ErrorKind::Unexpected, || {
                        format!("connection {id}: unexpected text {t:?}")
                    });
                    return;
                }
            },
            Message::Binary(b) => b,
            Message::Pong(_)
            | Message::Ping(_)
            | Message::Close(_)
            | Message::Compressed { .. } => return,
        };
        ctx.st.total_msgs += 1;
        let id = c.id;
        if payload.len() != self.size || payload[0] != b'#' {
            let len = payload.len();
            ctx.st.error(ErrorKind::Unexpected, || {
                format!("connection {id}: a {len}-byte message that is not a publish")
            });
            return;
        }
        let (Some(pid), Some(seq), Some(ts)) = (
            get6(&payload[1..4]),
            get6(&payload[4..10]),
            get6(&payload[10..18]),
        ) else {
            return ctx.st.error(ErrorKind::Corrupt, || {
                format!("connection {id}: unreadable publish header")
            });
        };
        if pid >= self.publishers as u64 {
            return ctx.st.error(ErrorKind::Corrupt, || {
                format!("connection {id}: publisher id {pid} out of range")
            });
        }
        if payload[FILL_FROM..] != *self.filler(seq) {
            ctx.st.error(ErrorKind::Corrupt, || {
                format!("connection {id}: publish {pid}#{seq} has a damaged body")
            });
        }
        let exp = &mut c.expected[pid as usize];
        if seq != *exp {
            let e = *exp;
            ctx.st.error(ErrorKind::Sequence, || {
                if seq > e {
                    format!(
                        "connection {id}: from publisher {pid} expected #{e}, got #{seq} ({} lost)",
                        seq - e
                    )
                } else {
                    format!("connection {id}: from publisher {pid} expected #{e}, got #{seq} again/late")
                }
            });
        }
        *exp = (*exp).max(seq + 1);
        if ctx.st.measuring && (self.count_publishers || c.publisher.is_none()) {
            let lat = ctx.now.saturating_sub(epoch_ns() + ts);
            ctx.st.hist.record(lat);
            ctx.st.msgs += 1;
            ctx.st.bytes += self.size as u64;
        }
        if pid == id as u64 {
            if let Some(p) = c.publisher.as_mut() {
                let acked = (seq + 1).max(p.acked).min(p.seq);
                *ctx.inflight -= (acked - p.acked) as i64;
                p.acked = acked;
                self.check_done(ctx);
            }
        }
    }

    fn finish(&mut self, ctx: &mut Ctx, c: &BConn) {
        let m = self.publishers as usize;
        if ctx.st.expected_sum.len() < m {
            ctx.st.expected_sum.resize(m, 0);
        }
        for (s, e) in ctx.st.expected_sum.iter_mut().zip(c.expected.iter()) {
            *s += *e;
        }
        ctx.st.live_at_end += 1;
    }

    fn timer_period(&self) -> Option<u64> {
        // Rate mode: look at the publishers at least every millisecond.
        self.interval.map(|iv| iv.clamp(20_000, 1_000_000))
    }

    fn timer_keys(&self, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.pubs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(Broadcast::strip_user(b"user12: #abc"), Some(&b"#abc"[..]));
        assert_eq!(Broadcast::strip_user(b"user12 come in!"), None);
        assert_eq!(Broadcast::strip_user(b"user: x"), None);
        assert_eq!(
            Broadcast::strip_user(b"user7-3fa9c1d2: #abc"),
            Some(&b"#abc"[..])
        );
        assert_eq!(Broadcast::strip_user(b"user7-: #abc"), None);
        assert!(Broadcast::is_notice(b"user7-3fa9c1d2 come in!"));
        assert!(Broadcast::is_notice(b"user3 come in!"));
        assert!(Broadcast::is_notice(b"user3 left"));
        assert!(!Broadcast::is_notice(b"hello"));
    }

    #[test]
    fn filler_rotates_with_sequence() {
        let b = Broadcast::new(1, 1, 40, false, false, None, None);
        assert_eq!(b.filler(0).len(), 22);
        assert_ne!(b.filler(0), b.filler(1));
        assert_eq!(b.filler(0), b.filler(26));
    }
}

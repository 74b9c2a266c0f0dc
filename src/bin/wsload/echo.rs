//! Echo: every connection keeps K messages in flight and verifies each echo byte for byte.
//!
//! Payload: 8 characters of per-connection sequence number and 4 of connection id
//! (six bits each, see `payload.rs`), then a deterministic filler. Messages are cut from
//! a frame masked once per thread: sending one is a copy plus twelve XORs. Echoes arrive
//! in order on a connection, so the send time of message `seq` sits in a ring of K slots.

use crate::driver::{App, Ctx, Phase};
use crate::payload::{fill_byte, get6, json_like, put6};
use crate::stats::ErrorKind;
use wsloop::protocol::decoder::Message;
use wsloop::protocol::frame::{encode_header, OpCode, MAX_HEADER_LEN};
use wsloop::protocol::mask::apply_mask;

/// Bytes of sequence number + connection id at the start of each payload.
pub const STAMP: usize = 12;

/// --json: how far message bodies are spread over the corpus (64 KiB, twice the largest
/// deflate window).
const CORPUS_SPAN: usize = 64 * 1024;

/// --json: where message `seq`'s payload starts in the corpus.
#[inline]
fn corpus_offset(seq: u64) -> usize {
    (seq.wrapping_mul(7919) % CORPUS_SPAN as u64) as usize
}

pub struct Echo {
    k: u64,
    size: usize,
    binary: bool,
    /// Bytes of the stamp that fit (`min(size, 12)`).
    stamp: usize,
    /// A whole masked frame (stamp bytes get overwritten per message).
    frame: Vec<u8>,
    header_len: usize,
    mask: [u8; 4],
    /// The unmasked payload, for comparing echoes past the stamp.
    reference: Vec<u8>,
    /// --json: JSON-like text `size` + [`CORPUS_SPAN`] bytes long; message `seq` carries
    /// the `size` bytes at [`corpus_offset`]`(seq)`, so consecutive messages differ (a
    /// compressor keeping its context across messages gets no free matches).
    corpus: Option<Vec<u8>>,
    /// --json or --deflate: the payload of the message being built.
    plain: Vec<u8>,
    sending: bool,
    /// --messages: this thread's share, what is left to send and what was counted.
    quota: Option<u64>,
    budget: u64,
    counted: u64,
    done: bool,
}

pub struct EchoConn {
    id: u32,
    sent: u64,
    recv: u64,
    /// --messages: echoes of sequence numbers from here on are measured.
    measure_from: u64,
    /// Send times, a ring of K slots indexed by `head` (next send) and `tail` (next echo).
    sent_at: Box<[u64]>,
    head: u32,
    tail: u32,
}

impl Echo {
    /// `json`: JSON-like payloads ([`json_like`]) instead of [`fill_byte`]'s.
    pub fn new(
        k: u32,
        size: usize,
        binary: bool,
        json: bool,
        mask: [u8; 4],
        quota: Option<u64>,
    ) -> Self {
        let corpus = json.then(|| json_like(size + CORPUS_SPAN));
        let reference: Vec<u8> = match &corpus {
            Some(c) => c[..size].to_vec(),
            None => (0..size).map(|i| fill_byte(i, binary)).collect(),
        };
        let mut h = [0u8; MAX_HEADER_LEN];
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        let header_len = encode_header(&mut h, true, op, size as u64, Some(mask));
        let mut frame = h[..header_len].to_vec();
        frame.extend_from_slice(&reference);
        apply_mask(&mut frame[header_len..], mask, 0);
        Echo {
            k: k as u64,
            size,
            binary,
            stamp: size.min(STAMP),
            frame,
            header_len,
            mask,
            plain: reference.clone(),
            corpus,
            reference,
            sending: false,
            quota,
            budget: 0,
            counted: 0,
            done: false,
        }
    }

    /// The payload of message `seq` past the stamp.
    #[inline]
    fn body(&self, seq: u64) -> &[u8] {
        match &self.corpus {
            Some(c) => {
                let at = corpus_offset(seq);
                &c[at + STAMP..at + self.size]
            }
            None => &self.reference[STAMP..],
        }
    }

    #[inline]
    fn stamp_for(seq: u64, id: u32) -> [u8; STAMP] {
        let mut s = [0u8; STAMP];
        put6(seq, &mut s[..8]);
        put6(id as u64, &mut s[8..]);
        s
    }

    /// Whether an echo is exactly message `seq` of connection `id`.
    #[inline]
    fn matches(&self, seq: u64, id: u32, payload: &[u8]) -> bool {
        let expected = Self::stamp_for(seq, id);
        if self.stamp == STAMP {
            // Fixed-size compare: no memcmp call for the stamp.
            let got: &[u8; STAMP] = payload[..STAMP].try_into().expect("checked length");
            got == &expected && payload[STAMP..] == *self.body(seq)
        } else {
            payload == &expected[..self.stamp]
        }
    }

    #[cold]
    fn mismatch(&self, ctx: &mut Ctx, c: &EchoConn, seq: u64, payload: &[u8]) {
        let id = c.id;
        let stamp = self.stamp.min(8);
        match get6(&payload[..stamp]) {
            Some(got) if got != seq & ((1u64 << (6 * stamp)) - 1) => {
                ctx.st.error(ErrorKind::Sequence, || {
                    format!("connection {id}: expected echo of #{seq}, got #{got}")
                })
            }
            _ => ctx.st.error(ErrorKind::Corrupt, || {
                format!(
                    "connection {id}: echo #{seq} differs: {:?}",
                    String::from_utf8_lossy(&payload[..payload.len().min(40)])
                )
            }),
        }
    }
}

impl App for Echo {
    type Conn = EchoConn;

    fn new_conn(&mut self, id: u32) -> EchoConn {
        EchoConn {
            id,
            sent: 0,
            recv: 0,
            measure_from: u64::MAX,
            sent_at: vec![0; self.k as usize].into_boxed_slice(),
            head: 0,
            tail: 0,
        }
    }

    fn on_open(&mut self, ctx: &mut Ctx, _key: usize, c: &mut EchoConn) -> bool {
        if ctx.phase == Phase::Measure {
            c.measure_from = 0;
        }
        false
    }

    fn on_phase(&mut self, ctx: &mut Ctx) {
        self.sending = matches!(ctx.phase, Phase::Warmup | Phase::Measure);
        if ctx.phase == Phase::Measure {
            if let Some(q) = self.quota {
                self.budget = q;
                if q == 0 && !self.done {
                    self.done = true;
                    ctx.shared.thread_done(ctx.now);
                }
            }
        }
    }

    #[inline]
    fn pump(&mut self, ctx: &mut Ctx, c: &mut EchoConn, out: &mut Vec<u8>) {
        if ctx.phase_changed && ctx.phase == Phase::Measure {
            c.measure_from = c.sent;
        }
        if !self.sending {
            return;
        }
        let mut n = self.k - (c.sent - c.recv);
        let counting = self.quota.is_some() && ctx.phase == Phase::Measure;
        if counting {
            n = n.min(self.budget);
            self.budget -= n;
        }
        if n == 0 {
            return;
        }
        let deflate = ctx.z.on(ctx.key);
        if !deflate {
            out.reserve(n as usize * self.frame.len());
        }
        let op = if self.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        for _ in 0..n {
            let seq = c.sent;
            c.sent_at[c.head as usize] = ctx.now;
            c.head += 1;
            if c.head as u64 == self.k {
                c.head = 0;
            }
            let stamp = Self::stamp_for(seq, c.id);
            if deflate || self.corpus.is_some() {
                // Built per message: the stamp and (--json) the body differ.
                self.plain[..self.stamp].copy_from_slice(&stamp[..self.stamp]);
                if self.size > STAMP && self.corpus.is_some() {
                    let at = corpus_offset(seq);
                    let corpus = self.corpus.as_deref().unwrap_or_default();
                    self.plain[STAMP..].copy_from_slice(&corpus[at + STAMP..at + self.size]);
                }
                ctx.z.write(ctx.key, out, op, &self.plain, ctx.mask);
            } else {
                let start = out.len() + self.header_len;
                out.extend_from_slice(&self.frame);
                for (j, b) in out[start..start + self.stamp].iter_mut().enumerate() {
                    *b = stamp[j] ^ self.mask[j & 3];
                }
            }
            c.sent += 1;
        }
        *ctx.inflight += n as i64;
        if ctx.st.measuring {
            ctx.st.sent += n;
        }
    }

    #[inline]
    fn on_message(&mut self, ctx: &mut Ctx, c: &mut EchoConn, msg: Message<'_>) {
        let (payload, binary) = match msg {
            Message::Text(t) => (t.as_bytes(), false),
            Message::Binary(b) => (b, true),
            _ => return,
        };
        ctx.st.total_msgs += 1;
        if c.recv >= c.sent {
            let id = c.id;
            ctx.st.error(ErrorKind::Unexpected, || {
                format!("connection {id}: a message with nothing in flight")
            });
            return;
        }
        let seq = c.recv;
        c.recv += 1;
        *ctx.inflight -= 1;
        if binary != self.binary || payload.len() != self.size {
            let (id, len) = (c.id, payload.len());
            ctx.st.error(ErrorKind::Corrupt, || {
                format!("connection {id}: echo #{seq} came back as binary={binary}, {len} bytes")
            });
        } else if !self.matches(seq, c.id, payload) {
            self.mismatch(ctx, c, seq, payload);
        }
        let slot = c.tail as usize;
        c.tail += 1;
        if c.tail as u64 == self.k {
            c.tail = 0;
        }
        let measured = if self.quota.is_some() {
            ctx.st.measuring && seq >= c.measure_from
        } else {
            ctx.st.measuring
        };
        if measured {
            let rtt = ctx.now.saturating_sub(c.sent_at[slot]);
            ctx.st.hist.record(rtt);
            ctx.st.msgs += 1;
            ctx.st.bytes += self.size as u64;
            if let Some(q) = self.quota {
                self.counted += 1;
                if self.counted >= q && !self.done {
                    self.done = true;
                    ctx.shared.thread_done(ctx.now);
                }
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx, _key: usize, c: &mut EchoConn) {
        *ctx.inflight -= (c.sent - c.recv) as i64;
        if let Some(q) = self.quota {
            // Its unanswered measured messages will never come: stop waiting for them.
            if ctx.phase == Phase::Measure && !self.done {
                let lost = c.sent - c.recv.max(c.measure_from.min(c.sent));
                self.counted += lost;
                if self.counted >= q {
                    self.done = true;
                    ctx.shared.thread_done(ctx.now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsloop::protocol::decoder::{Decoded, Decoder, Role};

    #[test]
    fn frames_decode_to_stamped_payload() {
        let e = Echo::new(1, 30, false, false, [1, 2, 3, 4], None);
        let mut out = e.frame.clone();
        let stamp = Echo::stamp_for(77, 5);
        for j in 0..STAMP {
            out[e.header_len + j] = stamp[j] ^ e.mask[j & 3];
        }
        let mut d = Decoder::new(Role::Server);
        match d.decode(&mut out, 1 << 20).unwrap() {
            Decoded::Message {
                message: Message::Text(t),
                ..
            } => {
                assert_eq!(&t.as_bytes()[..STAMP], &stamp);
                assert_eq!(&t.as_bytes()[STAMP..], &e.reference[STAMP..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_bodies_differ_per_message_and_are_checked() {
        let e = Echo::new(1, 1024, false, true, [1, 2, 3, 4], None);
        let payload = |seq: u64| {
            let mut p = Echo::stamp_for(seq, 3).to_vec();
            p.extend_from_slice(e.body(seq));
            p
        };
        assert_eq!(payload(0).len(), 1024);
        assert_ne!(e.body(1), e.body(2));
        assert!(e.matches(7, 3, &payload(7)));
        // The right stamp with another message's body is a corrupt echo.
        let mut wrong = payload(7);
        wrong[STAMP..].copy_from_slice(e.body(8));
        assert!(!e.matches(7, 3, &wrong));
    }
}

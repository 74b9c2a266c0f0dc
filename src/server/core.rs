//! Loop state shared by the event handling and the handler's [`Ctx`]: connections,
//! timers, topics and the output side (corking, backpressure, closing).

use std::io::{IoSlice, Write};
use std::sync::atomic::Ordering;

use slab::Slab;

use super::app_timers::AppTimers;
use super::config::Config;
use super::connection::{flags, Conn, State};
use super::deflate::LoopDeflate;
use super::fd_limit;
use super::handle::ServerHandle;
use super::handler::{ConnId, SendStatus};
use super::mailbox::Command;
use super::metrics::LoopMetrics;
use super::pacing::{Pacing, Producer};
use super::publish::Topics;
use super::timer::{Entry, Wheel};
use super::write_buffer::BufferPool;
use crate::protocol::close;
use crate::protocol::frame::{encode_header, write_server_frame, OpCode, MAX_HEADER_LEN};

/// Payloads at least this large skip the copy into the write buffer when nothing is
/// queued ahead of them (one `writev`); smaller ones are gathered (corked) as usual.
const DIRECT_WRITE_MIN: usize = 8 << 10;

/// A handler `close` callback owed, run once the current callback has returned.
#[derive(Debug)]
pub(crate) struct Closed {
    pub id: ConnId,
    pub code: u16,
    pub reason: Box<str>,
}

/// Timeouts converted to wheel ticks once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    /// A request head must arrive within this (from accept, or from the end of the
    /// previous response on a keep-alive connection).
    pub handshake: u32,
    /// A response in progress must make progress (bytes taken by the kernel) within this.
    pub idle: u32,
    /// Half the idle timeout: the keep-alive ping goes out after this much silence.
    pub idle_half: u32,
    pub close: u32,
    /// `slow_subscriber_timeout`.
    pub slow_subscriber: u32,
}

pub(crate) struct Core {
    /// This loop's number (0 .. threads).
    pub loop_id: u16,
    /// Mailboxes of every loop, and the process-wide connection count.
    pub handle: ServerHandle,
    /// Commands for other loops gathered this iteration, handed over in one batch (and
    /// one wake-up) per loop at the end of it.
    pub outbox: Vec<Vec<Command>>,
    /// What `outbox` holds for each loop, in mailbox bytes (`mailbox::cost`).
    pub outbox_cost: Vec<usize>,
    /// `Config::effective_high_watermark`.
    pub high: usize,
    /// Who produces what is being queued now (pacing holds it if need be).
    pub producer: Producer,
    /// Congested subscribers and held producers (`pacing.rs`).
    pub pacing: Pacing,
    /// Application timers.
    pub timers: AppTimers,
    pub conns: Slab<Conn>,
    pub config: Config,
    pub ticks: Ticks,
    pub pool: BufferPool,
    pub wheel: Wheel,
    /// Current tick.
    pub now: u32,
    /// Connections with output gathered this iteration (the cork).
    pub dirty: Vec<u32>,
    /// Released connections, removed from the slab after the batch of events.
    pub to_free: Vec<u32>,
    /// `close` callbacks owed (a callback cannot re-enter the handler).
    pub closed: Vec<Closed>,
    /// Connections whose reading resumed: their held input is parsed and their socket
    /// read again once the current callback has returned.
    pub resumed: Vec<u32>,
    /// Connections that used up their work for this iteration with input left; they
    /// resume next iteration (and the loop polls without sleeping meanwhile).
    pub yielded: Vec<u32>,
    /// `config.max_connections` clamped to the open-file limit.
    pub max_connections: usize,
    /// How many connections past `max_connections` may linger with a 503 at once.
    pub reject_slack: usize,
    pub topics: Topics,
    /// Publish encodes into this once per message.
    pub(crate) scratch: Vec<u8>,
    pub next_generation: u32,
    /// This loop's counters: plain adds on the loop thread, published once per iteration.
    pub metrics: LoopMetrics,
    /// permessage-deflate state, when `config.deflate` allows it.
    pub deflate: Option<Box<LoopDeflate>>,
}

impl Core {
    pub fn new(config: Config, wheel: Wheel, loop_id: u16, handle: ServerHandle) -> Self {
        let ticks = Ticks {
            handshake: Wheel::ticks(config.handshake_timeout),
            idle: Wheel::ticks(config.idle_timeout),
            idle_half: Wheel::ticks(config.idle_timeout / 2),
            close: Wheel::ticks(config.close_timeout),
            slow_subscriber: Wheel::ticks(config.slow_subscriber_timeout),
        };
        // Reserve the slab for the connection limit up front: untouched pages cost no
        // resident memory, and the slab never reallocates (and copies every connection)
        // while the loop is serving.
        let (max_connections, reject_slack) =
            fd_limit::connection_budget(config.max_connections, fd_limit::fd_limit());
        // Connections spread over the loops; the slab grows past its share if the kernel's
        // spread is uneven.
        let capacity = (max_connections / handle.loops().max(1)).min(1 << 20);
        let loops = handle.loops();
        let deflate = config.deflate.map(|cfg| {
            let share = config.max_deflate_contexts.div_ceil(loops.max(1));
            Box::new(LoopDeflate::new(cfg, share))
        });
        Core {
            loop_id,
            handle,
            outbox: (0..loops).map(|_| Vec::new()).collect(),
            outbox_cost: vec![0; loops],
            high: config.effective_high_watermark(),
            producer: Producer::Nobody,
            pacing: Pacing::new(loops),
            timers: AppTimers::default(),
            conns: Slab::with_capacity(capacity),
            config,
            ticks,
            pool: BufferPool::default(),
            wheel,
            now: 0,
            dirty: Vec::new(),
            to_free: Vec::new(),
            closed: Vec::new(),
            resumed: Vec::new(),
            yielded: Vec::new(),
            max_connections,
            reject_slack,
            topics: Topics::default(),
            scratch: Vec::new(),
            next_generation: 0,
            metrics: LoopMetrics::default(),
            deflate,
        }
    }

    #[inline]
    pub fn id(&self, idx: u32) -> ConnId {
        ConnId {
            index: idx,
            generation: self.conns[idx as usize].generation,
            loop_id: self.loop_id,
        }
    }

    /// The connection behind `id`, if it is this loop's and still the same connection.
    #[inline]
    pub(crate) fn lookup(&self, id: ConnId) -> Option<&Conn> {
        if id.loop_id != self.loop_id {
            return None;
        }
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// Moves the connection's deadline `ticks` from now; files a wheel entry only when
    /// the deadline moves earlier than the one already filed.
    pub fn set_deadline(&mut self, idx: u32, ticks: u32) {
        let now = self.now;
        let c = &mut self.conns[idx as usize];
        c.deadline = now + ticks;
        if c.deadline < c.armed {
            c.armed = c.deadline;
            self.wheel.insert(Entry {
                index: idx,
                generation: c.generation,
                deadline: c.deadline,
            });
        }
    }

    #[inline]
    pub fn mark_dirty(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::DIRTY) {
            c.flags |= flags::DIRTY;
            self.dirty.push(idx);
        }
    }

    /// Queues one server frame. A large payload with nothing queued ahead of it is written
    /// at once with `writev` (header + payload) instead of being copied into the buffer;
    /// only what the kernel refuses is copied.
    pub fn queue_frame(&mut self, idx: u32, opcode: OpCode, payload: &[u8]) {
        let c = &mut self.conns[idx as usize];
        let before = c.out.len();
        if payload.len() >= DIRECT_WRITE_MIN && c.out.is_empty() && !c.has(flags::WRITE_BLOCKED) {
            let mut h = [0u8; MAX_HEADER_LEN];
            let hl = encode_header(&mut h, true, opcode, payload.len() as u64, None);
            let total = hl + payload.len();
            let iov = [IoSlice::new(&h[..hl]), IoSlice::new(payload)];
            let (written, blocked) = match c.stream.write_vectored(&iov) {
                // A short write: the send buffer is full, wait for WRITABLE.
                Ok(n) => (n, true),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (0, true),
                // Any other error (a reset): queue everything but do not wait for
                // WRITABLE, which a dead socket never reports. This write consumed the
                // socket's error, so the next read sees a plain EOF; the flush this queue
                // triggers writes again, fails (EPIPE) and releases the connection.
                Err(_) => (0, false),
            };
            self.metrics.bytes_out += written as u64;
            // TLS: all of it accepted, but ciphertext the kernel refused is left in rustls.
            if written == total && c.stream.wants_write() {
                c.flags |= flags::WRITE_BLOCKED;
                return;
            }
            if written == total {
                return;
            }
            if blocked {
                c.flags |= flags::WRITE_BLOCKED;
            }
            let out = c.out.append(&mut self.pool);
            if written < hl {
                out.extend_from_slice(&h[written..hl]);
                out.extend_from_slice(payload);
            } else {
                out.extend_from_slice(&payload[written - hl..]);
            }
            self.metrics.buffered_bytes += (c.out.len() - before) as u64;
            self.after_queue(idx);
            return;
        }
        write_server_frame(c.out.append(&mut self.pool), true, opcode, payload);
        self.metrics.buffered_bytes += (c.out.len() - before) as u64;
        self.after_queue(idx);
    }

    /// Appends raw bytes (an HTTP response, a pre-encoded frame).
    /// Returns the connection's unsent bytes afterwards. One slab lookup: this is the
    /// per-subscriber step of every publish.
    #[inline]
    pub fn queue_bytes(&mut self, idx: u32, bytes: &[u8]) -> usize {
        let low = self.config.low_watermark;
        let c = &mut self.conns[idx as usize];
        c.out.append(&mut self.pool).extend_from_slice(bytes);
        self.metrics.buffered_bytes += bytes.len() as u64;
        let len = c.out.len();
        if len > low {
            c.flags |= flags::ABOVE_LOW;
        }
        if !c.has(flags::DIRTY) {
            c.flags |= flags::DIRTY;
            self.dirty.push(idx);
        }
        len
    }

    /// Marks the connection's output for the flush (and `drain`, past the low watermark);
    /// returns its unsent bytes.
    #[inline]
    pub(crate) fn after_queue(&mut self, idx: u32) -> usize {
        let low = self.config.low_watermark;
        let c = &mut self.conns[idx as usize];
        let len = c.out.len();
        if len > low {
            c.flags |= flags::ABOVE_LOW;
        }
        self.mark_dirty(idx);
        len
    }

    /// Ends the connection's turn for this iteration: it has input left (held, or in the
    /// socket) and continues next iteration, so one busy client cannot starve the rest.
    pub fn yield_turn(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::YIELDED) {
            c.flags |= flags::YIELDED;
            self.yielded.push(idx);
        }
    }

    /// Sends a data frame to an open connection, honouring `max_backpressure` (refused
    /// past it) and reporting the high watermark.
    pub fn send(&mut self, idx: u32, opcode: OpCode, payload: &[u8]) -> SendStatus {
        let limit = self.config.max_backpressure;
        let c = &self.conns[idx as usize];
        if !c.is_open() {
            return SendStatus::Closed;
        }
        if c.out.len() > limit {
            self.metrics.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        if matches!(opcode, OpCode::Text | OpCode::Binary) {
            self.metrics.messages_out += 1;
            if let Some(z) = self.deflate.as_deref_mut().filter(|z| z.is_on(idx)) {
                let c = &mut self.conns[idx as usize];
                let before = c.out.len();
                z.write_frame(idx, c.out.append(&mut self.pool), opcode, payload);
                self.metrics.buffered_bytes += (c.out.len() - before) as u64;
                self.after_queue(idx);
            } else {
                self.queue_frame(idx, opcode, payload);
            }
        } else {
            self.queue_frame(idx, opcode, payload);
        }
        if self.conns[idx as usize].out.len() > self.high {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Starts the closing handshake: queue our close frame, tell the handler, and wait for
    /// the peer's close (or the close timeout).
    pub fn start_close(&mut self, idx: u32, code: u16, reason: &str) {
        if !self.conns[idx as usize].is_open() {
            return;
        }
        self.queue_close_frame(idx, code, reason);
        self.conns[idx as usize].state = State::Closing;
        self.set_deadline(idx, self.ticks.close);
        self.notify_closed(idx, code, reason);
    }

    /// Fails the connection (protocol error, policy): close frame with `code`, then TCP.
    pub fn fail(&mut self, idx: u32, code: u16, reason: &str) {
        let c = &self.conns[idx as usize];
        if matches!(c.state, State::Open | State::Closing) {
            if c.is_open() {
                self.queue_close_frame(idx, code, reason);
            }
            self.notify_closed(idx, code, reason);
            self.linger(idx);
        }
    }

    pub fn queue_close_frame(&mut self, idx: u32, code: u16, reason: &str) {
        let mut payload = [0u8; 125];
        let n = close::encode_payload(code, reason, &mut payload);
        self.queue_frame(idx, OpCode::Close, &payload[..n]);
    }

    /// Queue the handler's `close` callback (once per opened connection).
    pub fn notify_closed(&mut self, idx: u32, code: u16, reason: &str) {
        let c = &mut self.conns[idx as usize];
        if c.has(flags::OPENED) {
            c.flags &= !flags::OPENED;
            self.metrics.on_close(code);
            let id = ConnId {
                index: idx,
                generation: c.generation,
                loop_id: self.loop_id,
            };
            self.unsubscribe_all(idx);
            self.forget_pacing(idx);
            self.closed.push(Closed {
                id,
                code,
                reason: reason.into(),
            });
        }
    }

    /// Last bytes are queued: flush them, shut down writing, read to EOF, then release.
    pub fn linger(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        c.state = State::Linger;
        c.flags &= !(flags::PAUSED | flags::OUT_PAUSED | flags::YIELDED);
        self.pool.put(std::mem::take(&mut c.rx));
        self.forget_pacing(idx);
        let ticks = self.ticks.close;
        self.set_deadline(idx, ticks);
        self.mark_dirty(idx);
    }

    /// Called when the write buffer emptied in Linger: send our FIN (over TLS, a
    /// close_notify first; if the kernel refuses it, this runs again on WRITABLE).
    pub fn shutdown_write(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::SHUT_WR) {
            match c.stream.shutdown_write() {
                Ok(true) => c.flags |= flags::SHUT_WR,
                Ok(false) => c.flags |= flags::WRITE_BLOCKED,
                Err(_) => self.release(idx),
            }
        }
    }

    /// Drops the connection: the slot is freed (and the socket closed) after this batch of
    /// events, so a late event for it can never reach a new connection in the same slot.
    pub fn release(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if matches!(c.state, State::Closed) {
            return;
        }
        c.state = State::Closed;
        if c.has(flags::OPENED) {
            self.notify_closed(idx, close::ABNORMAL, "");
        }
        self.forget_pacing(idx);
        let c = &mut self.conns[idx as usize];
        self.metrics.on_discarded(c.out.len() as u64);
        c.out.release(&mut self.pool);
        self.pool.put(std::mem::take(&mut c.rx));
        if let Some(z) = self.deflate.as_deref_mut() {
            z.close(idx);
        }
        self.to_free.push(idx);
    }

    /// A connection cannot cause more output than it takes: once its own unsent output
    /// is above the high watermark (after offering it to the kernel), its input is not
    /// read until the output drains to the low watermark. Called after each message.
    #[inline]
    pub(crate) fn pause_if_above_high(&mut self, idx: u32) {
        let high = self.high;
        let c = &self.conns[idx as usize];
        if c.out.len() > high && c.is_open() && self.above_high_after_flush(idx, high) {
            self.pause(idx, flags::OUT_PAUSED);
        }
    }

    pub fn pause(&mut self, idx: u32, flag: u16) {
        self.conns[idx as usize].flags |= flag;
    }

    pub fn resume(&mut self, idx: u32, flag: u16) {
        let c = &mut self.conns[idx as usize];
        if c.has(flag) {
            c.flags &= !flag;
            if c.readable() {
                self.resumed.push(idx);
            }
        }
    }

    /// Whether the connection's unsent output is above `high`, after offering it to the
    /// kernel if that is what it takes (output gathered this iteration is not yet a sign
    /// of a slow reader; one already congested is not flushed early again).
    pub(crate) fn above_high_after_flush(&mut self, idx: u32, high: usize) -> bool {
        let c = &self.conns[idx as usize];
        if c.out.len() <= high {
            return false;
        }
        if c.has(flags::CONGESTED) || c.has(flags::WRITE_BLOCKED) {
            return true;
        }
        self.flush_now(idx);
        self.conns[idx as usize].out.len() > high
    }

    /// Writes the connection's output now, ahead of the end-of-iteration flush (the cork).
    /// Returns whether its unsent bytes are within `max_backpressure` afterwards.
    pub(crate) fn flush_now(&mut self, idx: u32) -> bool {
        let c = &mut self.conns[idx as usize];
        let before = c.out.len();
        let result = c.out.flush(&mut c.stream, &mut self.pool);
        if c.out.len() < before {
            c.flags |= flags::PROGRESS;
        }
        self.metrics.on_written((before - c.out.len()) as u64);
        match result {
            // TLS: the buffer is out only if rustls holds no ciphertext either.
            Ok(true) if !c.stream.wants_write() => c.flags &= !flags::WRITE_BLOCKED,
            Ok(_) => c.flags |= flags::WRITE_BLOCKED,
            // Reported again by the next flush, which releases the connection.
            Err(_) => return false,
        }
        c.out.len() <= self.config.max_backpressure
    }

    /// Publishes this loop's counters for scrapers (relaxed stores, no read-modify-write).
    pub fn publish_metrics(&mut self) {
        self.metrics.connections_open = self.conns.len() as u64;
        let link = &self.handle.shared.links[self.loop_id as usize];
        self.metrics.mailbox_bytes = link.queued() as u64;
        self.metrics.mailbox_dropped = link.dropped.load(Ordering::Relaxed);
        self.metrics.congested_subscribers = self.pacing.congested() as u64;
        self.metrics.topics = self.topics.len() as u64;
        self.metrics
            .publish(&self.handle.shared.metrics[self.loop_id as usize]);
    }

    /// Counts a connection freed (the process-wide count).
    pub fn count_freed(&self) {
        self.handle
            .shared
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn buffered_amount(&self, id: ConnId) -> usize {
        self.lookup(id).map_or(0, |c| c.out.len())
    }

    /// The slot of `id` if it is still that connection.
    pub fn slot(&self, id: ConnId) -> Option<u32> {
        self.lookup(id).map(|_| id.index)
    }
}

//! Loop state shared by the event handling and the handler's [`Ctx`]: connections,
//! timers, topics and the output side (corking, backpressure, closing).

use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use slab::Slab;

use super::app_timers::AppTimers;
use super::config::{Config, MAX_TIMEOUT};
use super::connection::{flags, Conn, State};
use super::deflate::LoopDeflate;
use super::fd_limit;
use super::handle::{encode_frame, encode_shared, Command, ServerHandle};
use super::handler::{ConnId, Payload, SendStatus};
use super::metrics::LoopMetrics;
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
}

/// Exact-match topics: name → id, id → subscriber slots (and name, for the backplane).
#[derive(Debug, Default)]
pub(crate) struct Topics {
    ids: HashMap<Arc<str>, u32>,
    subscribers: Vec<Vec<u32>>,
    names: Vec<Arc<str>>,
}

impl Topics {
    /// Returns whether `idx` was the topic's last subscriber on this loop.
    fn remove_subscriber(&mut self, topic: u32, idx: u32) -> bool {
        let subs = &mut self.subscribers[topic as usize];
        match subs.iter().position(|&x| x == idx) {
            Some(p) => {
                subs.swap_remove(p);
                subs.is_empty()
            }
            None => false,
        }
    }
}

pub(crate) struct Core {
    /// This loop's number (0 .. threads).
    pub loop_id: u16,
    /// Mailboxes of every loop, and the process-wide connection count.
    pub handle: ServerHandle,
    /// Commands for other loops gathered this iteration, handed over in one batch (and
    /// one wake-up) per loop at the end of it.
    pub outbox: Vec<Vec<Command>>,
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
    scratch: Vec<u8>,
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
    fn lookup(&self, id: ConnId) -> Option<&Conn> {
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
    pub fn queue_bytes(&mut self, idx: u32, bytes: &[u8]) {
        let c = &mut self.conns[idx as usize];
        c.out.append(&mut self.pool).extend_from_slice(bytes);
        self.metrics.buffered_bytes += bytes.len() as u64;
        self.after_queue(idx);
    }

    #[inline]
    fn after_queue(&mut self, idx: u32) {
        let low = self.config.low_watermark;
        let c = &mut self.conns[idx as usize];
        if c.out.len() > low {
            c.flags |= flags::ABOVE_LOW;
        }
        self.mark_dirty(idx);
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

    /// Sends a data frame to an open connection, honouring `max_backpressure`.
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
        if self.conns[idx as usize].out.len() > limit {
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
        let c = &mut self.conns[idx as usize];
        self.metrics.on_discarded(c.out.len() as u64);
        c.out.release(&mut self.pool);
        self.pool.put(std::mem::take(&mut c.rx));
        if let Some(z) = self.deflate.as_deref_mut() {
            z.close(idx);
        }
        self.to_free.push(idx);
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

    fn topic_id(&mut self, topic: &str) -> u32 {
        if let Some(&id) = self.topics.ids.get(topic) {
            return id;
        }
        let id = self.topics.subscribers.len() as u32;
        let name: Arc<str> = topic.into();
        self.topics.ids.insert(name.clone(), id);
        self.topics.subscribers.push(Vec::new());
        self.topics.names.push(name);
        id
    }

    /// The topic's first subscriber on this loop arrived (`first`) or its last one left:
    /// the backplane, if any, counts it towards the Redis subscription.
    fn backplane_interest(&self, topic: u32, first: bool) {
        if let Some(hook) = self.handle.shared.backplane.get() {
            let name = &self.topics.names[topic as usize];
            match first {
                true => hook.subscribe(name),
                false => hook.unsubscribe(name),
            }
        }
    }

    pub fn subscribe(&mut self, idx: u32, topic: &str) -> bool {
        let t = self.topic_id(topic);
        let c = &mut self.conns[idx as usize];
        if !c.is_open() || c.topics.contains(&t) {
            return false;
        }
        c.topics.push(t);
        let subs = &mut self.topics.subscribers[t as usize];
        subs.push(idx);
        if subs.len() == 1 {
            self.backplane_interest(t, true);
        }
        true
    }

    pub fn unsubscribe(&mut self, idx: u32, topic: &str) -> bool {
        let Some(&t) = self.topics.ids.get(topic) else {
            return false;
        };
        let c = &mut self.conns[idx as usize];
        let Some(pos) = c.topics.iter().position(|&x| x == t) else {
            return false;
        };
        c.topics.swap_remove(pos);
        if self.topics.remove_subscriber(t, idx) {
            self.backplane_interest(t, false);
        }
        true
    }

    fn unsubscribe_all(&mut self, idx: u32) {
        for t in std::mem::take(&mut self.conns[idx as usize].topics) {
            if self.topics.remove_subscriber(t, idx) {
                self.backplane_interest(t, false);
            }
        }
    }

    /// Writes the connection's output now, ahead of the end-of-iteration flush (the cork).
    /// Returns whether its unsent bytes are within `max_backpressure` afterwards.
    fn flush_now(&mut self, idx: u32) -> bool {
        let c = &mut self.conns[idx as usize];
        let before = c.out.len();
        let result = c.out.flush(&mut c.stream, &mut self.pool);
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

    /// Encodes the frame once and appends the same bytes to every subscriber's output,
    /// on this loop and (through their mailboxes, at the end of the iteration) on every
    /// other loop; with a backplane, also queues it for the other instances. Returns the
    /// deliveries on this loop.
    pub fn publish(&mut self, topic: &str, opcode: OpCode, payload: &[u8]) -> usize {
        self.metrics.publishes += 1;
        if let Some(hook) = self.handle.shared.backplane.get() {
            hook.publish(topic, opcode, payload);
        }
        if self.outbox.len() > 1 {
            // Several loops: the bytes are shared with them, so encode into an Arc once.
            let frame = encode_frame(opcode, payload);
            let name: Arc<str> = match self.topics.ids.get_key_value(topic) {
                Some((k, _)) => k.clone(),
                None => topic.into(),
            };
            let me = self.loop_id as usize;
            for (l, out) in self.outbox.iter_mut().enumerate() {
                if l != me {
                    out.push(Command::Publish {
                        topic: name.clone(),
                        frame: frame.clone(),
                    });
                }
            }
            return self.publish_frame(topic, &frame);
        }
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        write_server_frame(&mut frame, true, opcode, payload);
        let delivered = self.publish_frame(topic, &frame);
        self.scratch = frame;
        delivered
    }

    /// Appends an encoded frame to the output of every subscriber of `topic` on this loop.
    /// A subscriber past `max_backpressure` even after offering its output to the kernel
    /// is closed with 1008, never waited for.
    pub fn publish_frame(&mut self, topic: &str, frame: &[u8]) -> usize {
        let Some(&t) = self.topics.ids.get(topic) else {
            return 0;
        };
        let limit = self.config.max_backpressure;
        let mut delivered = 0;
        let mut slow = Vec::new();
        let subs = std::mem::take(&mut self.topics.subscribers[t as usize]);
        // Taken out while delivering (and put back below) only when some connection of
        // this loop agreed to deflate; otherwise the plain path costs one comparison.
        let mut deflate = match &self.deflate {
            Some(z) if z.active > 0 => self.deflate.take(),
            _ => None,
        };
        if let Some(z) = deflate.as_deref_mut() {
            z.begin_publish();
        }
        for &idx in &subs {
            let c = &self.conns[idx as usize];
            if !c.is_open() {
                continue;
            }
            // Output gathered this iteration has not been offered to the kernel yet: a
            // burst from publishers bigger than the limit is not a slow subscriber.
            if c.out.len() > limit && !self.flush_now(idx) {
                slow.push(idx);
                continue;
            }
            match deflate.as_deref_mut() {
                Some(z) => self.queue_published(z, idx, frame),
                None => self.queue_bytes(idx, frame),
            }
            delivered += 1;
        }
        if deflate.is_some() {
            self.deflate = deflate;
        }
        self.metrics.deliveries += delivered as u64;
        self.metrics.messages_out += delivered as u64;
        self.metrics.slow_subscribers_closed += slow.len() as u64;
        // Subscriptions made by callbacks meanwhile are impossible (no callback ran), so
        // the list goes back as it was.
        self.topics.subscribers[t as usize] = subs;
        for idx in slow {
            warn!(
                "closing slow subscriber (slot {idx}): {} bytes unsent, limit {limit}",
                self.conns[idx as usize].out.len()
            );
            self.fail(idx, close::POLICY, "backpressure limit exceeded");
        }
        delivered
    }

    /// Queues an encoded data frame for one open connection, honouring
    /// `max_backpressure` (a frame sent from another thread or loop).
    pub fn send_frame(&mut self, id: ConnId, frame: &[u8]) -> SendStatus {
        let Some(c) = self.lookup(id) else {
            return SendStatus::Closed;
        };
        if !c.is_open() {
            return SendStatus::Closed;
        }
        let limit = self.config.max_backpressure;
        if c.out.len() > limit {
            self.metrics.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        self.metrics.messages_out += 1;
        match self.deflate.take() {
            Some(mut z) => {
                z.begin_publish();
                self.queue_published(&mut z, id.index, frame);
                self.deflate = Some(z);
            }
            None => self.queue_bytes(id.index, frame),
        }
        if self.conns[id.index as usize].out.len() > limit {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Appends an encoded frame for one connection, compressed if it agreed to
    /// permessage-deflate.
    fn queue_published(&mut self, z: &mut LoopDeflate, idx: u32, frame: &[u8]) {
        let c = &mut self.conns[idx as usize];
        let before = c.out.len();
        let out = c.out.append(&mut self.pool);
        if !z.write_published(idx, frame, out) {
            out.extend_from_slice(frame);
        }
        self.metrics.buffered_bytes += (c.out.len() - before) as u64;
        self.after_queue(idx);
    }

    /// Hands each other loop what this iteration gathered for it, one batch and at most
    /// one wake-up per loop.
    pub fn post_outbox(&mut self) {
        for (l, out) in self.outbox.iter_mut().enumerate() {
            if !out.is_empty() {
                let batch = std::mem::take(out);
                self.handle.shared.links[l].post(Command::Batch(batch));
            }
        }
    }

    /// Forwards a command to the loop that owns `conn` (another loop).
    fn forward(&mut self, conn: ConnId, cmd: Command) {
        if let Some(out) = self.outbox.get_mut(conn.loop_id as usize) {
            out.push(cmd);
        }
    }

    /// Publishes this loop's counters for scrapers (relaxed stores, no read-modify-write).
    pub fn publish_metrics(&mut self) {
        self.metrics.connections_open = self.conns.len() as u64;
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

/// The handler's view of the loop: send, close, publish, read backpressure.
pub struct Ctx<'a> {
    pub(crate) core: &'a mut Core,
}

impl Ctx<'_> {
    /// Sends a text or binary message. To a connection of another loop the message is
    /// handed over (encoded once) at the end of this iteration and `Sent` is returned;
    /// that loop applies `max_backpressure` when it arrives.
    pub fn send(&mut self, conn: ConnId, msg: Payload<'_>) -> SendStatus {
        if conn.loop_id != self.core.loop_id {
            let frame = encode_shared(msg);
            self.core.forward(conn, Command::Send { conn, frame });
            return SendStatus::Sent;
        }
        let Some(idx) = self.core.slot(conn) else {
            return SendStatus::Closed;
        };
        match msg {
            Payload::Text(t) => self.core.send(idx, OpCode::Text, t.as_bytes()),
            Payload::Binary(b) => self.core.send(idx, OpCode::Binary, b),
        }
    }

    /// [`Ctx::send`] of a text message.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> SendStatus {
        self.send(conn, Payload::Text(text))
    }

    /// [`Ctx::send`] of a binary message.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> SendStatus {
        self.send(conn, Payload::Binary(data))
    }

    /// Sends a ping (payload truncated to 125 bytes).
    pub fn ping(&mut self, conn: ConnId, payload: &[u8]) -> SendStatus {
        let Some(idx) = self.core.slot(conn) else {
            return SendStatus::Closed;
        };
        self.core
            .send(idx, OpCode::Ping, &payload[..payload.len().min(125)])
    }

    /// Starts the closing handshake with `code` and `reason` (truncated to fit a frame).
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        if conn.loop_id != self.core.loop_id {
            let reason = reason.into();
            self.core
                .forward(conn, Command::Close { conn, code, reason });
            return;
        }
        if let Some(idx) = self.core.slot(conn) {
            self.core.start_close(idx, code, reason);
        }
    }

    /// Unsent bytes of the connection (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self, conn: ConnId) -> usize {
        self.core.buffered_amount(conn)
    }

    /// The per-connection limit on unsent bytes.
    pub fn max_backpressure(&self) -> usize {
        self.core.config.max_backpressure
    }

    /// Stops reading the connection (TCP pushes back on the peer) until `resume`.
    pub fn pause(&mut self, conn: ConnId) {
        if let Some(idx) = self.core.slot(conn) {
            self.core.pause(idx, flags::PAUSED);
        }
    }

    /// Reads the connection again after [`Ctx::pause`].
    pub fn resume(&mut self, conn: ConnId) {
        if let Some(idx) = self.core.slot(conn) {
            self.core.resume(idx, flags::PAUSED);
        }
    }

    /// Subscribes `conn` to `topic` (exact match); false if it was already subscribed
    /// or is not open.
    pub fn subscribe(&mut self, conn: ConnId, topic: &str) -> bool {
        self.core
            .slot(conn)
            .is_some_and(|idx| self.core.subscribe(idx, topic))
    }

    /// Unsubscribes `conn` from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) -> bool {
        self.core
            .slot(conn)
            .is_some_and(|idx| self.core.unsubscribe(idx, topic))
    }

    /// Sends `msg` to every subscriber of `topic` on every loop (encoded once) and, with a
    /// backplane, on every other instance; returns how many subscribers of this loop it was
    /// queued for.
    pub fn publish(&mut self, topic: &str, msg: Payload<'_>) -> usize {
        match msg {
            Payload::Text(t) => self.core.publish(topic, OpCode::Text, t.as_bytes()),
            Payload::Binary(b) => self.core.publish(topic, OpCode::Binary, b),
        }
    }

    /// Connections this loop currently holds (any state).
    pub fn connections(&self) -> usize {
        self.core.conns.len()
    }

    /// This loop's number (0 .. threads).
    pub fn loop_id(&self) -> usize {
        self.core.loop_id as usize
    }

    /// A handle for other threads (publish, send, close, defer, stop).
    pub fn handle(&self) -> ServerHandle {
        self.core.handle.clone()
    }

    /// Calls [`Handler::timer`](super::Handler::timer) for `conn` with `token` after
    /// `delay` (rounded up to the loop's 100 ms tick; at most 24 h), if the connection
    /// is still open then. Timers cannot be cancelled: ignore a stale `token` instead.
    pub fn set_timer(&mut self, conn: ConnId, delay: Duration, token: u64) {
        if self.core.slot(conn).is_some() {
            let due = self.core.now + Wheel::ticks(delay.min(MAX_TIMEOUT));
            self.core.timers.add(due, Some(conn), token);
        }
    }

    /// Calls [`Handler::loop_timer`](super::Handler::loop_timer) with `token` after
    /// `delay` (rounded up to the loop's 100 ms tick; at most 24 h).
    pub fn set_loop_timer(&mut self, delay: Duration, token: u64) {
        let due = self.core.now + Wheel::ticks(delay.min(MAX_TIMEOUT));
        self.core.timers.add(due, None, token);
    }
}

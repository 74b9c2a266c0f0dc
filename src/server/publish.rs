//! Topics and the publish path: exact-match topics, a frame encoded once and appended to
//! every subscriber's output, other loops reached through their bounded mailboxes, and
//! the slow-subscriber policy applied per delivery (`pacing.rs` for `pace`).

use std::collections::HashMap;
use std::sync::Arc;

use log::warn;

use super::config::SlowSubscriber;
use super::connection::flags;
use super::core::Core;
use super::deflate::LoopDeflate;
use super::handle::encode_frame;
use super::handler::{ConnId, Published, SendStatus};
use super::mailbox::{cost, Command};
use super::pacing::Producer;
use crate::protocol::close;
use crate::protocol::frame::{write_server_frame, OpCode};

/// Exact-match topics: name → id, id → subscriber slots (and name, for the backplane).
/// A topic is freed when its last subscriber on this loop leaves (its id is reused), so
/// the table holds at most one entry per subscription.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    ids: HashMap<Arc<str>, u32>,
    subscribers: Vec<Vec<u32>>,
    names: Vec<Option<Arc<str>>>,
    /// Ids of freed topics.
    free: Vec<u32>,
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

    /// Forgets a topic that has no subscriber left.
    fn free(&mut self, topic: u32) {
        if let Some(name) = self.names[topic as usize].take() {
            self.ids.remove(&name);
            self.subscribers[topic as usize] = Vec::new();
            self.free.push(topic);
        }
    }

    /// Topics with at least one subscriber on this loop.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

impl Core {
    fn topic_id(&mut self, topic: &str) -> u32 {
        if let Some(&id) = self.topics.ids.get(topic) {
            return id;
        }
        let name: Arc<str> = topic.into();
        let id = match self.topics.free.pop() {
            Some(id) => {
                self.topics.names[id as usize] = Some(name.clone());
                id
            }
            None => {
                self.topics.subscribers.push(Vec::new());
                self.topics.names.push(Some(name.clone()));
                (self.topics.names.len() - 1) as u32
            }
        };
        self.topics.ids.insert(name, id);
        id
    }

    /// The topic's first subscriber on this loop arrived (`first`) or its last one left:
    /// the backplane, if any, counts it towards the Redis subscription.
    fn backplane_interest(&self, topic: u32, first: bool) {
        if let Some(hook) = self.handle.shared.backplane.get() {
            if let Some(name) = &self.topics.names[topic as usize] {
                match first {
                    true => hook.subscribe(name),
                    false => hook.unsubscribe(name),
                }
            }
        }
    }

    /// The topic lost its last subscriber on this loop.
    fn topic_emptied(&mut self, topic: u32) {
        self.backplane_interest(topic, false);
        self.topics.free(topic);
    }

    pub fn subscribe(&mut self, idx: u32, topic: &str) -> bool {
        let c = &self.conns[idx as usize];
        if !c.is_open() {
            return false;
        }
        if let Some(t) = self.topics.ids.get(topic) {
            if c.topics.contains(t) {
                return false;
            }
        }
        let t = self.topic_id(topic);
        self.conns[idx as usize].topics.push(t);
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
            self.topic_emptied(t);
        }
        // A congested subscriber that leaves a topic no longer holds its publishers (or
        // counts as a slow subscriber): release whoever waits for it. If it is still
        // above the high watermark for another topic, that topic's next publish to it
        // holds its producer again.
        self.uncongest(idx);
        true
    }

    pub(crate) fn unsubscribe_all(&mut self, idx: u32) {
        for t in std::mem::take(&mut self.conns[idx as usize].topics) {
            if self.topics.remove_subscriber(t, idx) {
                self.topic_emptied(t);
            }
        }
    }

    /// Encodes the frame once and appends the same bytes to every subscriber's output,
    /// on this loop and (through their mailboxes, at the end of the iteration) on every
    /// other loop; with a backplane, also queues it for the other instances. Reports
    /// this loop's deliveries.
    pub fn publish(&mut self, topic: &str, opcode: OpCode, payload: &[u8]) -> Published {
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
            for l in 0..self.outbox.len() {
                if l != me {
                    let cmd = Command::Publish {
                        topic: name.clone(),
                        frame: frame.clone(),
                    };
                    self.hand_over(l, cmd);
                }
            }
            return self.publish_frame(topic, &frame, None);
        }
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        write_server_frame(&mut frame, true, opcode, payload);
        let report = self.publish_frame(topic, &frame, None);
        self.scratch = frame;
        report
    }

    /// Gathers `cmd` for loop `l` (handed over at the end of the iteration), within that
    /// loop's mailbox bound: past the bound it is dropped and counted; at the high mark
    /// the producing connection is held until the mailbox has room.
    pub(crate) fn hand_over(&mut self, l: usize, cmd: Command) -> SendStatus {
        let c = cost(&cmd);
        let link = &self.handle.shared.links[l];
        // A connection is held at the high mark, but several can burst in before they
        // are held (one message each): one that meets the bound gets its message in and
        // is held like the others, so it overshoots by one message and a reader that
        // reads loses nothing. Refusing it without holding it would let it publish
        // straight into the refusal until the mailbox drains.
        let first_overshoot = match self.producer {
            Producer::Conn(p) => {
                let generation = self.conns[p as usize].generation;
                !self.pacing.held_on_loop(l, p, generation)
            }
            _ => false,
        };
        if link.queued() + self.outbox_cost[l] >= link.max() && !first_overshoot {
            // Counted as that loop's (it is that loop's bound).
            link.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return SendStatus::Dropped;
        }
        self.outbox[l].push(cmd);
        self.outbox_cost[l] += c;
        if link.behind_for_loops(self.outbox_cost[l]) {
            self.hold_on_loop(l);
            return SendStatus::Backpressure;
        }
        SendStatus::Sent
    }

    /// Appends an encoded frame to the output of every subscriber of `topic` on this loop.
    /// A subscriber past `max_backpressure` even after offering its output to the kernel
    /// is closed with 1008, never waited for; one left above the high watermark holds
    /// the producer under `pace` (`pacing.rs`). `shared`: the frame came through the
    /// mailbox in these shared bytes; under `pace` a congested subscriber gets it parked.
    pub fn publish_frame(
        &mut self,
        topic: &str,
        frame: &[u8],
        shared: Option<&Arc<[u8]>>,
    ) -> Published {
        let mut report = Published::default();
        let Some(&t) = self.topics.ids.get(topic) else {
            return report;
        };
        let limit = self.config.max_backpressure;
        let high = self.high;
        let pace = self.config.slow_subscriber == SlowSubscriber::Pace;
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
            if let Some(arc) = shared.filter(|_| pace && c.has(flags::CONGESTED)) {
                // Behind its drained output, in order; nothing waits for it meanwhile.
                match self.park(idx, arc) {
                    true => {
                        report.delivered += 1;
                        report.congested += 1;
                    }
                    false => slow.push(idx),
                }
                continue;
            }
            // Output gathered this iteration has not been offered to the kernel yet: a
            // burst from publishers bigger than the limit is not a slow subscriber.
            if c.out.len() > limit && !self.flush_now(idx) {
                slow.push(idx);
                continue;
            }
            let len = match deflate.as_deref_mut() {
                Some(z) => self.queue_published(z, idx, frame),
                None => self.queue_bytes(idx, frame),
            };
            report.delivered += 1;
            // The common case (below the high watermark) costs one comparison.
            if len > high && self.above_high_after_flush(idx, high) {
                report.congested += 1;
                self.note_congested(idx);
            }
        }
        if deflate.is_some() {
            self.deflate = deflate;
        }
        self.metrics.deliveries += report.delivered as u64;
        self.metrics.messages_out += report.delivered as u64;
        self.metrics.slow_subscribers_closed += slow.len() as u64;
        report.dropped = slow.len();
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
        report
    }

    /// Queues an encoded data frame for one open connection, honouring
    /// `max_backpressure` (a frame sent from another thread or loop, through the
    /// mailbox: under `pace` a connection left above the high watermark holds the
    /// mailbox).
    pub fn send_frame(&mut self, id: ConnId, frame: &Arc<[u8]>) -> SendStatus {
        let Some(c) = self.lookup(id) else {
            return SendStatus::Closed;
        };
        if !c.is_open() {
            return SendStatus::Closed;
        }
        if self.config.slow_subscriber == SlowSubscriber::Pace && c.has(flags::CONGESTED) {
            self.metrics.messages_out += 1;
            if self.park(id.index, frame) {
                return SendStatus::Backpressure;
            }
            self.metrics.dropped_sends += 1;
            return SendStatus::Dropped;
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
            None => {
                self.queue_bytes(id.index, frame);
            }
        }
        if self.above_high_after_flush(id.index, self.high) {
            self.note_congested(id.index);
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Appends an encoded frame for one connection, compressed if it agreed to
    /// permessage-deflate.
    pub(crate) fn queue_published(&mut self, z: &mut LoopDeflate, idx: u32, frame: &[u8]) -> usize {
        let c = &mut self.conns[idx as usize];
        let before = c.out.len();
        let out = c.out.append(&mut self.pool);
        if !z.write_published(idx, frame, out) {
            out.extend_from_slice(frame);
        }
        self.metrics.buffered_bytes += (c.out.len() - before) as u64;
        self.after_queue(idx)
    }

    /// Hands each other loop what this iteration gathered for it, one batch and at most
    /// one wake-up per loop.
    pub fn post_outbox(&mut self) {
        for (l, out) in self.outbox.iter_mut().enumerate() {
            if !out.is_empty() {
                let batch = std::mem::take(out);
                let c = std::mem::take(&mut self.outbox_cost[l]);
                self.handle.shared.links[l].post_charged(Command::Batch(batch), c);
            }
        }
    }
}

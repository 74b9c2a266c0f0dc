//! The `pace` slow-subscriber policy: a publisher is held while a subscriber it delivered
//! to is above the high watermark, so that every subscriber that reads gets every message
//! and memory stays bounded; a subscriber that takes no byte for
//! `slow_subscriber_timeout` while above the high watermark is closed with 1008 instead.
//!
//! Who produces a message decides how it is held ([`Producer`]):
//! - a **connection** (a publish from its `message` callback): its input is paused
//!   ([`flags::PACED`]) until every congested subscriber it delivered to has drained to
//!   the low watermark (or been closed); TCP then pushes back on the client;
//! - the **mailbox** (publishes and sends from other loops, handle threads, the
//!   backplane): the loop goes on taking commands, so nothing unrelated waits (a close,
//!   a send to someone else, another topic); what a command brings for a congested
//!   subscriber is *parked* for it (the shared frame, no copy, in order) and appended as
//!   it drains. While any subscriber has parked messages the loop's mailbox reports its
//!   high mark, so the producers behind it are held in turn (a connection on another
//!   loop has its input paused, a handle thread is told `Backpressure`; see
//!   `mailbox.rs`). A subscriber's parked share is bounded by `max_backpressure`: past
//!   it (a producer that cannot be held, like another instance through Redis, or one
//!   that ignores `Backpressure`) the subscriber is closed with 1008;
//! - **nobody** (a timer, an `open` or `close` callback): nothing to hold; the message is
//!   queued and counts towards the subscriber's bound like any other.
//!
//! A connection producer is also held while a loop it sends or publishes to has its
//! mailbox above the high mark (in both policies: that is the loop's capacity, not one
//! reader's), and resumed when that mailbox falls below its low mark. A mailbox command
//! that hands messages to such a loop (a deferred closure that publishes) cannot hold
//! its own mailbox (two loops could then wait for each other); instead this loop's
//! mailbox reports its high mark too until that loop has room, so the handle thread
//! behind the command is told `Backpressure`.
//!
//! Bounds: every subscriber's unsent output stays within `max_backpressure` (past it, it
//! is closed with 1008 in either policy); with pacing, a subscriber gets at most one
//! message per unheld producer above the high watermark before those producers are held.
//! The tables here hold at most one entry per connection of the loop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::config::SlowSubscriber;
use super::connection::flags;
use super::core::Core;
use crate::protocol::close;

/// Who is producing the output being queued right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Producer {
    /// A timer, an `open` or `close` callback: nothing that can be held.
    #[default]
    Nobody,
    /// The connection (slot) whose message the handler is handling.
    Conn(u32),
    /// A command from the loop's mailbox.
    Mailbox,
}

/// A subscriber above the high watermark, and who waits for it.
#[derive(Debug)]
struct Congested {
    /// Tick of its last progress (bytes taken by the kernel), or of congestion start.
    since: u32,
    /// Producers (slot, generation) held until it drains.
    waiters: Vec<(u32, u32)>,
}

/// Mailbox messages waiting for a congested subscriber, in order.
#[derive(Debug, Default)]
struct Parked {
    frames: VecDeque<Arc<[u8]>>,
    bytes: usize,
}

/// A held producer.
#[derive(Debug)]
struct Held {
    generation: u32,
    /// Congested subscribers and full mailboxes it waits for.
    waits: u32,
}

/// One loop's pacing state (empty, and untouched on the message path, while nothing is
/// congested).
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    congested: HashMap<u32, Congested>,
    held: HashMap<u32, Held>,
    /// Mailbox messages parked for congested subscribers, by slot.
    parked: HashMap<u32, Parked>,
    /// Other loops this loop's mailbox commands handed messages to while they were
    /// behind (this loop's mailbox reports its high mark meanwhile), by loop.
    downstream: Vec<bool>,
    /// Producers (slot, generation) held on another loop's full mailbox, by loop.
    on_loops: Vec<Vec<(u32, u32)>>,
    /// Entries in `on_loops` and set `downstream` flags (checked once per iteration, so
    /// kept as a count).
    on_loops_len: usize,
    /// A `downstream` loop stopped being congested: the mailbox may be read again.
    pub resume_mail: bool,
    /// The mailbox command just carried out handed messages to a loop that is behind:
    /// the rest of the mailbox waits for the next iteration (after this one's outbox is
    /// handed over), so a burst of such commands cannot overrun that loop's bound.
    pub downstream_hit: bool,
}

impl Pacing {
    pub fn new(loops: usize) -> Self {
        Pacing {
            on_loops: (0..loops).map(|_| Vec::new()).collect(),
            downstream: vec![false; loops],
            ..Pacing::default()
        }
    }

    /// Subscribers above the high watermark now.
    pub fn congested(&self) -> usize {
        self.congested.len()
    }

    /// Whether a sweep is due each tick (something is congested).
    #[inline]
    pub fn needs_sweep(&self) -> bool {
        !self.congested.is_empty()
    }

    /// Whether producer `(p, generation)` is held on loop `l`'s mailbox.
    pub fn held_on_loop(&self, l: usize, p: u32, generation: u32) -> bool {
        self.on_loops[l].contains(&(p, generation))
    }

    /// The mailbox must not be read for now: one of its commands handed messages to a
    /// loop with a congested subscriber (`Link::congested`, which depends on clients
    /// only, so two loops cannot wait for each other this way).
    pub fn mailbox_waits_downstream(&self, links: &[super::mailbox::Link]) -> bool {
        self.on_loops_len > 0
            && self
                .downstream
                .iter()
                .zip(links)
                .any(|(&d, l)| d && l.congested())
    }

    /// Whether producers wait for other loops' mailboxes.
    #[inline]
    pub fn waits_on_loops(&self) -> bool {
        self.on_loops_len > 0
    }
}

impl Core {
    /// The subscriber `idx` is above the high watermark after a delivery: under `pace`,
    /// mark it congested and hold the current producer until it drains.
    pub(crate) fn note_congested(&mut self, idx: u32) {
        if self.config.slow_subscriber != SlowSubscriber::Pace {
            return;
        }
        let now = self.now;
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::CONGESTED) {
            c.flags |= flags::CONGESTED;
            c.flags &= !flags::PROGRESS;
            // Producers beyond the mailbox (other loops, handle threads) wait from now on.
            self.handle.shared.links[self.loop_id as usize].press(false);
            self.pacing.congested.insert(
                idx,
                Congested {
                    since: now,
                    waiters: Vec::new(),
                },
            );
        }
        match self.producer {
            // Nothing to hold; what the mailbox brings next is parked (`park`).
            Producer::Nobody | Producer::Mailbox => {}
            // Its own output above the high watermark already pauses its input.
            Producer::Conn(p) if p == idx => {}
            Producer::Conn(p) => {
                let generation = self.conns[p as usize].generation;
                let entry = self.pacing.congested.get_mut(&idx).expect("just inserted");
                if !entry.waiters.contains(&(p, generation)) {
                    entry.waiters.push((p, generation));
                    self.hold(p);
                }
            }
        }
    }

    /// Parks a mailbox message for congested subscriber `idx` (delivered in order as it
    /// drains), charged to this loop's mailbox until then. False if that would take its
    /// parked share past half the mailbox bound (room for what producers queued before
    /// they were told to wait; one dead reader never takes the whole mailbox from the
    /// rest): the caller closes it as slow.
    pub(crate) fn park(&mut self, idx: u32, frame: &Arc<[u8]>) -> bool {
        let limit = self.config.max_mailbox_bytes / 2;
        let p = self.pacing.parked.entry(idx).or_default();
        if p.bytes > 0 && p.bytes + frame.len() > limit {
            return false;
        }
        p.bytes += frame.len();
        p.frames.push_back(frame.clone());
        self.handle.shared.links[self.loop_id as usize].charge(frame.len());
        true
    }

    /// Subscriber `idx` drained to the low watermark: moves its parked messages to its
    /// output while it stays within the high watermark. Returns whether it is still
    /// backed up (messages left parked, or its output above the high watermark again).
    pub(crate) fn unpark(&mut self, idx: u32) -> bool {
        let Some(mut p) = self.pacing.parked.remove(&idx) else {
            return false;
        };
        let high = self.high;
        let mut deflate = match &self.deflate {
            Some(z) if z.active > 0 => self.deflate.take(),
            _ => None,
        };
        let mut len = self.conns[idx as usize].out.len();
        let mut released = 0;
        while len <= high {
            let Some(frame) = p.frames.pop_front() else {
                break;
            };
            p.bytes -= frame.len();
            released += frame.len();
            len = match deflate.as_deref_mut() {
                Some(z) => {
                    z.begin_publish();
                    self.queue_published(z, idx, &frame)
                }
                None => self.queue_bytes(idx, &frame),
            };
        }
        if deflate.is_some() {
            self.deflate = deflate;
        }
        self.uncharge(released);
        if p.frames.is_empty() {
            len > high
        } else {
            self.pacing.parked.insert(idx, p);
            true
        }
    }

    /// Parked bytes left the mailbox's charge; tells the other loops if that gave room.
    fn uncharge(&self, n: usize) {
        if n > 0 && self.handle.shared.links[self.loop_id as usize].done(n) {
            self.tell_loops_room();
        }
    }

    /// One reason fewer for this loop's producers to wait (see `Link::press`); tells the
    /// other loops if that gave room.
    fn relieve_own(&self, downstream: bool) {
        let links = &self.handle.shared.links;
        if links[self.loop_id as usize].relieve(downstream) {
            self.tell_loops_room();
        }
    }

    /// This loop's mailbox has room again: loops holding producers for it look again
    /// (handle threads were woken by the link).
    pub(crate) fn tell_loops_room(&self) {
        let me = self.loop_id as usize;
        for (l, link) in self.handle.shared.links.iter().enumerate() {
            if l != me {
                link.room_news
                    .store(true, std::sync::atomic::Ordering::Release);
                link.wake();
            }
        }
    }

    /// Holds producer `p` for one more congested subscriber or full mailbox.
    fn hold(&mut self, p: u32) {
        let c = &mut self.conns[p as usize];
        let generation = c.generation;
        if !c.has(flags::PACED) {
            self.metrics.publishers_paced += 1;
        }
        c.flags |= flags::PACED;
        let h = self.pacing.held.entry(p).or_insert(Held {
            generation,
            waits: 0,
        });
        if h.generation != generation {
            *h = Held {
                generation,
                waits: 0,
            };
        }
        h.waits += 1;
    }

    /// One thing producer `(p, generation)` waited for is gone; resumes it at the last.
    fn unhold(&mut self, p: u32, generation: u32) {
        let Some(h) = self.pacing.held.get_mut(&p) else {
            return;
        };
        if h.generation != generation {
            return; // a stale waiter: that connection is gone
        }
        h.waits -= 1;
        if h.waits == 0 {
            self.pacing.held.remove(&p);
            if self
                .conns
                .get(p as usize)
                .is_some_and(|c| c.generation == generation)
            {
                self.resume(p, flags::PACED);
            }
        }
    }

    /// The subscriber `idx` drained to the low watermark, or stopped being a subscriber:
    /// release whoever waits for it.
    pub(crate) fn uncongest(&mut self, idx: u32) {
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::CONGESTED) {
            return;
        }
        c.flags &= !(flags::CONGESTED | flags::PROGRESS);
        let Some(entry) = self.pacing.congested.remove(&idx) else {
            return;
        };
        self.relieve_own(false);
        for (p, g) in entry.waiters {
            self.unhold(p, g);
        }
    }

    /// The connection ends: it neither waits nor is waited for any more.
    pub(crate) fn forget_pacing(&mut self, idx: u32) {
        self.uncongest(idx);
        if let Some(p) = self.pacing.parked.remove(&idx) {
            self.uncharge(p.bytes);
        }
        let c = &mut self.conns[idx as usize];
        if !c.has(flags::PACED) {
            return; // held producers carry the flag, so nothing to forget
        }
        c.flags &= !flags::PACED;
        if self
            .pacing
            .held
            .get(&idx)
            .is_some_and(|h| h.generation == c.generation)
        {
            self.pacing.held.remove(&idx);
        }
    }

    /// Loop `l`'s mailbox (with what this iteration gathered for it) is at its high
    /// mark: hold the current producer, if it is a connection, until it has room; if it
    /// is this loop's mailbox, report this mailbox's high mark until then.
    pub(crate) fn hold_on_loop(&mut self, l: usize) {
        let p = match self.producer {
            Producer::Conn(p) => p,
            Producer::Mailbox => {
                self.pacing.downstream_hit = true;
                if !self.pacing.downstream[l] {
                    self.pacing.downstream[l] = true;
                    self.pacing.on_loops_len += 1;
                    self.handle.shared.links[self.loop_id as usize].press(true);
                    self.handle.shared.links[l].want_room();
                }
                return;
            }
            Producer::Nobody => return,
        };
        let generation = self.conns[p as usize].generation;
        if self.pacing.on_loops[l].contains(&(p, generation)) {
            return;
        }
        self.pacing.on_loops[l].push((p, generation));
        self.pacing.on_loops_len += 1;
        self.hold(p);
        self.handle.shared.links[l].want_room();
    }

    /// Releases producers held on other loops whose mailboxes fell below their low mark.
    pub(crate) fn check_loops(&mut self) {
        for l in 0..self.pacing.on_loops.len() {
            if self.pacing.downstream[l] {
                let link = &self.handle.shared.links[l];
                if !link.congested() {
                    self.pacing.resume_mail = true;
                }
                if link.has_room_for_loops(self.outbox_cost[l]) {
                    self.pacing.downstream[l] = false;
                    self.pacing.on_loops_len -= 1;
                    self.relieve_own(true);
                } else {
                    link.want_room();
                }
            }
            if self.pacing.on_loops[l].is_empty() {
                continue;
            }
            let link = &self.handle.shared.links[l];
            if !link.has_room_for_loops(self.outbox_cost[l]) {
                link.want_room();
                continue;
            }
            let waiting = std::mem::take(&mut self.pacing.on_loops[l]);
            self.pacing.on_loops_len -= waiting.len();
            for (p, g) in waiting {
                self.unhold(p, g);
            }
        }
    }

    /// Once per tick while something is congested: a subscriber that took no byte for
    /// `slow_subscriber_timeout` is closed with 1008.
    pub(crate) fn sweep_congested(&mut self) {
        if !self.pacing.needs_sweep() {
            return;
        }
        let now = self.now;
        let limit = self.ticks.slow_subscriber;
        let mut stalled = Vec::new();
        for (&idx, entry) in self.pacing.congested.iter_mut() {
            let c = &mut self.conns[idx as usize];
            if c.has(flags::PROGRESS) {
                c.flags &= !flags::PROGRESS;
                entry.since = now;
            } else if now.wrapping_sub(entry.since) >= limit {
                stalled.push(idx);
            }
        }
        for idx in stalled {
            // The kernel reports a congested socket writable only once its send buffer
            // has drained by a large share (a third or more of it, which autotuning can
            // make megabytes): a reader that reads slowly but steadily takes bytes all
            // along without a WRITABLE event. Offer the output to the kernel before
            // calling the subscriber stalled; if it takes at least the low watermark's
            // worth (a reader of at least low_watermark / slow_subscriber_timeout, 13 KB/s
            // by default), that is progress. Less does not count: a socket that is never
            // read still takes a few KiB now and then (its buffers grow or collapse).
            let before = self.conns[idx as usize].out.len();
            self.flush_now(idx);
            let min = self.config.low_watermark;
            let c = &mut self.conns[idx as usize];
            if before.saturating_sub(c.out.len()) >= min
                && !matches!(c.state, super::connection::State::Closed)
            {
                c.flags &= !flags::PROGRESS;
                if let Some(entry) = self.pacing.congested.get_mut(&idx) {
                    entry.since = now;
                }
                // `flush` (at the end of this iteration) notices a drain to the low
                // watermark and releases the producers.
                self.mark_dirty(idx);
                continue;
            }
            log::warn!(
                "closing slow subscriber (slot {idx}): no progress for {:?} with {} bytes unsent",
                self.config.slow_subscriber_timeout,
                self.conns[idx as usize].out.len()
            );
            self.metrics.slow_subscribers_closed += 1;
            self.fail(idx, close::POLICY, "slow subscriber");
            // A subscriber already closing is not failed again; it stops holding anyone.
            self.forget_pacing(idx);
        }
    }
}

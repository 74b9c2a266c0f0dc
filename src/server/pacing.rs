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
//!   backplane): the loop stops taking commands from its mailbox until those
//!   subscribers drain; the mailbox fills to its high mark and its producers are held in
//!   turn (see `mailbox.rs`);
//! - **nobody** (a timer, an `open` or `close` callback): nothing to hold; the message is
//!   queued and counts towards the subscriber's bound like any other.
//!
//! A connection producer is also held while a loop it sends or publishes to has its
//! mailbox above the high mark (in both policies: that is the loop's capacity, not one
//! reader's), and resumed when that mailbox falls below its low mark.
//!
//! Bounds: every subscriber's unsent output stays within `max_backpressure` (past it, it
//! is closed with 1008 in either policy); with pacing, a subscriber gets at most one
//! message per unheld producer above the high watermark before those producers are held.
//! The tables here hold at most one entry per connection of the loop.

use std::collections::HashMap;

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
    /// The mailbox waits for it.
    mailbox: bool,
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
    /// Congested subscribers the mailbox waits for; it is not read while above 0.
    mailbox_waits: u32,
    /// Producers (slot, generation) held on another loop's full mailbox, by loop.
    on_loops: Vec<Vec<(u32, u32)>>,
    /// Entries in `on_loops` (checked once per iteration, so kept as a count).
    on_loops_len: usize,
    /// The mailbox was released: the loop should read it again.
    pub mailbox_released: bool,
}

impl Pacing {
    pub fn new(loops: usize) -> Self {
        Pacing {
            on_loops: (0..loops).map(|_| Vec::new()).collect(),
            ..Pacing::default()
        }
    }

    /// The mailbox must not be read: a subscriber one of its commands reached is congested.
    #[inline]
    pub fn mailbox_held(&self) -> bool {
        self.mailbox_waits > 0
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
            self.pacing.congested.insert(
                idx,
                Congested {
                    since: now,
                    waiters: Vec::new(),
                    mailbox: false,
                },
            );
        }
        match self.producer {
            Producer::Nobody => {}
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
            Producer::Mailbox => {
                let entry = self.pacing.congested.get_mut(&idx).expect("just inserted");
                if !entry.mailbox {
                    entry.mailbox = true;
                    self.pacing.mailbox_waits += 1;
                }
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
        for (p, g) in entry.waiters {
            self.unhold(p, g);
        }
        if entry.mailbox {
            self.pacing.mailbox_waits -= 1;
            if self.pacing.mailbox_waits == 0 {
                self.pacing.mailbox_released = true;
            }
        }
    }

    /// The connection ends: it neither waits nor is waited for any more.
    pub(crate) fn forget_pacing(&mut self, idx: u32) {
        self.uncongest(idx);
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
    /// mark: hold the current producer, if it is a connection, until it has room.
    pub(crate) fn hold_on_loop(&mut self, l: usize) {
        let Producer::Conn(p) = self.producer else {
            return;
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
            if self.pacing.on_loops[l].is_empty() {
                continue;
            }
            let link = &self.handle.shared.links[l];
            if !link.below_low(self.outbox_cost[l]) {
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
            if before.saturating_sub(c.out.len()) >= min && !matches!(c.state, super::connection::State::Closed) {
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

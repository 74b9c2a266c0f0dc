//! One loop's mailbox: what other threads and other loops ask of it, in one FIFO, bounded
//! in bytes.
//!
//! Every command is charged its cost ([`cost`]: the frame bytes it carries plus a fixed
//! overhead, so that a flood of tiny commands is bounded too) from the moment it is posted
//! until the loop has carried it out. The bound (`Config::max_mailbox_bytes`) has three
//! marks, as a connection's write buffer has:
//!
//! - below **half** of it a producer may go on;
//! - at or above half ([`Link::above_high`]) producers are asked to wait: a connection
//!   publishing on another loop has its input paused, a [`ServerHandle`] caller is told
//!   [`SendStatus::Backpressure`](super::SendStatus::Backpressure) and may
//!   [`wait_for_room`](super::ServerHandle::wait_for_room);
//! - at or above the **whole** bound a handle's command is refused
//!   ([`SendStatus::Dropped`](super::SendStatus::Dropped), counted in
//!   `wsloop_mailbox_dropped_total`); the loop's own producers were paused at half, so
//!   they overshoot it by at most one message each;
//! - waiters are woken when the queued bytes fall below a **quarter** of the bound.
//!
//! The loop takes a bounded amount of work from its mailbox per iteration (see
//! `event_loop.rs`), so a flood from other loops delays its own sockets by at most that.
//!
//! [`ServerHandle`]: super::ServerHandle

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mio::Waker;

use super::ctx::Ctx;
use super::handler::ConnId;

/// A closure run on a loop's thread.
pub type Deferred = Box<dyn FnOnce(&mut Ctx<'_>) + Send>;

/// What a loop can be asked to do.
pub(crate) enum Command {
    /// Deliver an encoded frame to this loop's subscribers of `topic` (the bytes are
    /// shared by every loop: encoded once per publish).
    Publish { topic: Arc<str>, frame: Arc<[u8]> },
    /// Send an encoded frame to one connection of this loop.
    Send { conn: ConnId, frame: Arc<[u8]> },
    /// Start the closing handshake of one connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: Box<str>,
    },
    /// Run a closure on the loop's thread.
    Defer(Deferred),
    /// Several of the above, handed over by another loop once per iteration.
    Batch(Vec<Command>),
}

/// Bytes charged per command on top of the frame it carries: about what the command and
/// its channel slot cost, so that the byte bound also bounds the count.
pub(crate) const COMMAND_OVERHEAD: usize = 64;

/// What `cmd` is charged against its loop's mailbox bound, in bytes.
pub(crate) fn cost(cmd: &Command) -> usize {
    match cmd {
        Command::Publish { topic, frame } => COMMAND_OVERHEAD + topic.len() + frame.len(),
        Command::Send { frame, .. } => COMMAND_OVERHEAD + frame.len(),
        Command::Close { reason, .. } => COMMAND_OVERHEAD + reason.len(),
        // What the closure captures inline; heap it owns (a captured `Vec`'s bytes) is
        // out of sight, so a closure carrying a payload should be sized by its caller:
        // feeds publish with `ServerHandle::publish`, which is charged by size.
        Command::Defer(f) => COMMAND_OVERHEAD + std::mem::size_of_val(&**f),
        Command::Batch(cmds) => cmds.iter().map(cost).sum(),
    }
}

/// Whether a mailbox took a command, and how full it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Queued; the mailbox is below its high mark.
    Queued,
    /// Queued; the mailbox is at or above its high mark: the producer should wait.
    Full,
    /// Not queued: the mailbox is at its bound.
    Refused,
}

/// One loop's mailbox, as seen from other threads.
pub(crate) struct Link {
    tx: Sender<Command>,
    waker: Waker,
    /// Set by the first command since the loop last emptied its mailbox.
    woken: AtomicBool,
    /// Bytes posted and not yet carried out ([`cost`]).
    queued: AtomicUsize,
    /// The bound on `queued` (`Config::max_mailbox_bytes`).
    max: usize,
    /// A producer waits for `queued` to fall below the low mark.
    room_wanted: AtomicBool,
    /// Handle threads in [`Link::wait_for_room`] sleep here.
    room_lock: Mutex<()>,
    room: Condvar,
    /// Another loop this loop's producers wait for has room again: look (set by that
    /// loop, which then wakes this one).
    pub(crate) room_news: AtomicBool,
    /// [`ServerHandle::stop`](super::ServerHandle::stop) was called: out of band, so that
    /// a full mailbox (or one waiting for a congested loop downstream) cannot delay the
    /// shutdown.
    pub(crate) stop: AtomicBool,
    /// Commands from handle threads refused at the bound (a loop's own metric).
    pub(crate) dropped: AtomicU64,
    /// Subscribers of this loop above the high watermark under `pace` (congested): while
    /// above 0 the mailbox reports its high mark, so producers wait before more comes.
    parked: AtomicUsize,
    /// Other loops this loop's mailbox commands handed messages to while they were
    /// behind: while above 0 the mailbox reports its high mark to handle threads. Kept
    /// apart from `parked` so that two loops feeding each other cannot wait on each
    /// other's report ([`Link::has_room_for_loops`] ignores it).
    downstream: AtomicUsize,
}

impl Link {
    pub(crate) fn new(tx: Sender<Command>, waker: Waker, max: usize) -> Self {
        Link {
            tx,
            waker,
            woken: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            max,
            room_wanted: AtomicBool::new(false),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            room_news: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            downstream: AtomicUsize::new(0),
        }
    }

    /// Queues `cmd` (charged `cost`) whatever the fill, and wakes the loop unless a
    /// wake-up is already pending. The loop clears `woken` before it empties the mailbox,
    /// so a command queued meanwhile either is seen by that emptying or wakes the loop
    /// again. For producers that were paused at the high mark (loops) or that checked
    /// the bound themselves ([`Link::admit`]).
    pub(crate) fn post_charged(&self, cmd: Command, cost: usize) {
        self.queued.fetch_add(cost, Ordering::AcqRel);
        if self.tx.send(cmd).is_err() {
            // The loop is gone: nothing will ever carry it out.
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return;
        }
        self.wake();
    }

    /// Charges `n` more bytes to the mailbox (messages parked for a congested subscriber
    /// stay charged until they are in its output: see `pacing.rs`).
    pub(crate) fn charge(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// Wakes the loop unless a wake-up is pending.
    pub(crate) fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// Posts `cmd` unless the mailbox is at its bound (then counts it as dropped).
    pub(crate) fn post(&self, cmd: Command) -> Admission {
        let c = cost(&cmd);
        if !self.has_space() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Admission::Refused;
        }
        self.post_charged(cmd, c);
        self.admission()
    }

    /// Below the bound: a command may be queued.
    pub(crate) fn has_space(&self) -> bool {
        self.queued.load(Ordering::Acquire) < self.max
    }

    /// How full the mailbox is now, as an [`Admission`] for something just queued.
    pub(crate) fn admission(&self) -> Admission {
        if self.above_high(0) {
            self.room_wanted.store(true, Ordering::Release);
            Admission::Full
        } else {
            Admission::Queued
        }
    }

    /// The bound (`Config::max_mailbox_bytes`).
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Bytes queued and not yet carried out.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// At or above the high mark (half the bound), counting `extra` bytes about to come,
    /// or with a subscriber holding parked messages, or feeding a loop that is behind.
    pub(crate) fn above_high(&self, extra: usize) -> bool {
        self.queued() + extra >= self.max / 2
            || self.parked.load(Ordering::Acquire) > 0
            || self.downstream.load(Ordering::Acquire) > 0
    }

    /// Below the low mark (a quarter of the bound), counting `extra` bytes about to come,
    /// with nothing parked and feeding no loop that is behind: a handle thread may go on.
    pub(crate) fn below_low(&self, extra: usize) -> bool {
        self.has_room_for_loops(extra) && self.downstream.load(Ordering::Acquire) == 0
    }

    /// At or above the high mark, or with a subscriber holding parked messages: another
    /// loop holds the connection that hands it more (a downstream report is not counted:
    /// see `downstream`).
    pub(crate) fn behind_for_loops(&self, extra: usize) -> bool {
        self.queued() + extra >= self.max / 2 || self.parked.load(Ordering::Acquire) > 0
    }

    /// A subscriber of this loop is above the high watermark under `pace`. This depends
    /// on clients only (they read, or are closed at the slow-subscriber timeout), never
    /// on another loop, so another loop's mailbox may wait for it without a cycle.
    pub(crate) fn congested(&self) -> bool {
        self.parked.load(Ordering::Acquire) > 0
    }

    /// Below the low mark with nothing parked: another loop's producers may go on.
    pub(crate) fn has_room_for_loops(&self, extra: usize) -> bool {
        self.queued() + extra < self.max / 4 && self.parked.load(Ordering::Acquire) == 0
    }

    /// A subscriber of this loop holds parked messages now (`downstream`: this loop
    /// feeds a loop that is behind).
    pub(crate) fn press(&self, downstream: bool) {
        self.counter(downstream).fetch_add(1, Ordering::AcqRel);
    }

    /// Undoes one [`Link::press`]. Returns true when that left the mailbox below its low
    /// mark with a producer waiting (handle threads are woken here; the caller tells the
    /// other loops), as [`Link::done`] does.
    pub(crate) fn relieve(&self, downstream: bool) -> bool {
        self.counter(downstream).fetch_sub(1, Ordering::AcqRel) == 1 && self.wake_waiters()
    }

    fn counter(&self, downstream: bool) -> &AtomicUsize {
        match downstream {
            true => &self.downstream,
            false => &self.parked,
        }
    }

    /// Wakes producers waiting for room if there is room now.
    fn wake_waiters(&self) -> bool {
        if self.below_low(0) && self.room_wanted.swap(false, Ordering::AcqRel) {
            // Taking the lock orders this wake-up after a waiter's last check.
            drop(self.room_lock.lock());
            self.room.notify_all();
            return true;
        }
        false
    }

    /// Asks to be told (room news, the condvar) when the mailbox falls below its low mark.
    pub(crate) fn want_room(&self) {
        self.room_wanted.store(true, Ordering::Release);
    }

    /// Called by the loop on a wake-up, before it empties its mailbox.
    pub(crate) fn clear_woken(&self) {
        self.woken.store(false, Ordering::Release);
    }

    /// The loop carried out a command of `cost`. Returns true when that took the mailbox
    /// below its low mark while a producer was waiting: the caller tells the other loops
    /// (handle threads are woken here).
    pub(crate) fn done(&self, cost: usize) -> bool {
        let before = self.queued.fetch_sub(cost, Ordering::AcqRel);
        let low = self.max / 4;
        before.saturating_sub(cost) < low && self.wake_waiters()
    }

    /// Blocks until the mailbox has room: returns at once if it is below its high mark,
    /// otherwise waits until it falls below its low mark. False if `deadline` passed
    /// first.
    pub(crate) fn wait_for_room(&self, deadline: Instant) -> bool {
        if !self.above_high(0) {
            return true;
        }
        let mut guard = self.room_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            self.room_wanted.store(true, Ordering::Release);
            if self.below_low(0) || self.stop.load(Ordering::Acquire) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Bounded slices: a loop that exited (its mailbox never drains) cannot
            // keep a caller past its deadline.
            let slice = (deadline - now).min(Duration::from_millis(100));
            guard = match self.room.wait_timeout(guard, slice) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

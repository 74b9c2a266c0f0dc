//! Reaching the loops from outside (and from each other): a [`ServerHandle`] is
//! `Send + Sync + Clone` and queues commands on a loop's mailbox (`mailbox.rs`), then
//! wakes it through its `mio::Waker` -- at most once until the loop has looked at its
//! mailbox again, so a burst of commands costs one wake-up (uWebSockets' `Loop::defer` +
//! `Loop::wakeup`).
//!
//! Each loop has one FIFO mailbox, bounded in bytes, so commands from one thread (or one
//! loop) reach a loop in the order they were made, and a producer learns when it is
//! ahead of the loop ([`SendStatus`]) and can wait for room
//! ([`ServerHandle::wait_for_room`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::backplane_hook::Hook;
use super::ctx::Ctx;
use super::handler::{ConnId, Payload, SendStatus};
use super::mailbox::{cost, Admission, Command, Link};
use super::metrics::LoopShared;
use crate::backplane::BackplaneStats;
use crate::protocol::frame::{write_server_frame, OpCode};

pub use super::mailbox::Deferred;

/// What every loop shares: the mailboxes and the process-wide connection count.
pub(crate) struct Shared {
    /// Shared on its own with the backplane's sink, which needs nothing else.
    pub links: Arc<[Link]>,
    /// Open connections over all loops (`max_connections` holds for the process): one
    /// atomic add per accept and one subtract per close, never per message.
    pub connections: AtomicUsize,
    /// Each loop's published counters, by loop number; read by `/metrics` scrapes.
    pub metrics: Vec<Arc<LoopShared>>,
    /// The Redis backplane, if [`Server::with_backplane`](super::Server::with_backplane)
    /// set one (before the loops run).
    pub backplane: OnceLock<Hook>,
}

/// A handle to a running server, usable from any thread: publish to a topic, send to or
/// close one connection, run a closure on a loop, stop the server.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// Encodes a message as one unmasked server frame, once, in shareable bytes.
pub(crate) fn encode_shared(msg: Payload<'_>) -> Arc<[u8]> {
    match msg {
        Payload::Text(t) => encode_frame(OpCode::Text, t.as_bytes()),
        Payload::Binary(b) => encode_frame(OpCode::Binary, b),
    }
}

/// [`encode_shared`] for an opcode and payload.
pub(crate) fn encode_frame(opcode: OpCode, payload: &[u8]) -> Arc<[u8]> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    write_server_frame(&mut frame, true, opcode, payload);
    frame.into()
}

impl ServerHandle {
    /// Number of loops (threads) of the server.
    pub fn loops(&self) -> usize {
        self.shared.links.len()
    }

    /// Sends `msg` to every subscriber of `topic` on every loop, and, with a backplane,
    /// to every other instance (queued, never waited for). The frame is encoded once
    /// and its bytes shared by the loops; messages published from one thread arrive in
    /// the order they were published.
    ///
    /// Returns, for the local loops (the backplane counts its own drops):
    /// - [`SendStatus::Sent`]: queued on every loop;
    /// - [`SendStatus::Backpressure`]: queued, but some loop's mailbox is at its high mark
    ///   (the loop is behind, or, under [`SlowSubscriber::Pace`](super::config::SlowSubscriber::Pace),
    ///   has a subscriber above its high watermark): call
    ///   [`ServerHandle::wait_for_room`] before publishing more;
    /// - [`SendStatus::Dropped`]: not queued anywhere: some loop's mailbox is at
    ///   `Config::max_mailbox_bytes` (counted in `wsloop_mailbox_dropped_total`).
    ///
    /// A producer thread that waits whenever it is told `Backpressure` never sees
    /// `Dropped` and, under `pace`, loses nothing for a subscriber that reads:
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use wsloop::{Payload, SendStatus, ServerHandle};
    /// fn feed(handle: ServerHandle, ticks: impl Iterator<Item = String>) {
    ///     for tick in ticks {
    ///         if handle.publish("ticks", Payload::Text(&tick)) == SendStatus::Backpressure {
    ///             // Paced: the loops are behind; go on once they have room.
    ///             while !handle.wait_for_room(Duration::from_secs(1)) {}
    ///         }
    ///     }
    /// }
    /// ```
    pub fn publish(&self, topic: &str, msg: Payload<'_>) -> SendStatus {
        if let Some(hook) = self.shared.backplane.get() {
            match msg {
                Payload::Text(t) => hook.publish(topic, OpCode::Text, t.as_bytes()),
                Payload::Binary(b) => hook.publish(topic, OpCode::Binary, b),
            }
        }
        // All or nothing: a publish is refused unless every loop has space.
        if let Some(full) = self.shared.links.iter().find(|l| !l.has_space()) {
            full.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return SendStatus::Dropped;
        }
        let frame = encode_shared(msg);
        let topic: Arc<str> = topic.into();
        let mut status = SendStatus::Sent;
        for link in self.shared.links.iter() {
            let cmd = Command::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
            };
            let c = cost(&cmd);
            link.post_charged(cmd, c);
            if link.admission() == Admission::Full {
                status = SendStatus::Backpressure;
            }
        }
        status
    }

    /// Sends `msg` to one connection (on whichever loop owns it). The status says what
    /// the loop's mailbox did with it, as for [`ServerHandle::publish`] (`Closed` if there
    /// is no such loop). The connection's own state is the loop's business: a connection
    /// that has closed meanwhile gets nothing; one above `max_backpressure` when the
    /// message arrives drops it (counted in `wsloop_dropped_sends_total`; under `pace`
    /// what comes for a connection above its high watermark is parked for it and the
    /// mailbox reports its high mark meanwhile, so a producer that honours
    /// `Backpressure` does not get there).
    pub fn send(&self, conn: ConnId, msg: Payload<'_>) -> SendStatus {
        let Some(link) = self.shared.links.get(conn.loop_id()) else {
            return SendStatus::Closed;
        };
        admitted(link.post(Command::Send {
            conn,
            frame: encode_shared(msg),
        }))
    }

    /// Waits until every loop's mailbox has room: returns at once if each is below its
    /// high mark, otherwise waits until each is below its low mark. `false` if `timeout`
    /// passed first (the loops are still behind; try again or give up).
    pub fn wait_for_room(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.links.iter().all(|l| l.wait_for_room(deadline))
    }

    /// Starts the closing handshake of one connection with `code` and `reason`.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) {
        if let Some(link) = self.shared.links.get(conn.loop_id()) {
            link.post(Command::Close {
                conn,
                code,
                reason: reason.into(),
            });
        }
    }

    /// Runs `f` on loop `loop_id`'s thread, between events. Returns what the loop's
    /// mailbox did with it, as for [`ServerHandle::publish`] (`Closed`: no such loop).
    pub fn defer(
        &self,
        loop_id: usize,
        f: impl FnOnce(&mut Ctx<'_>) + Send + 'static,
    ) -> SendStatus {
        match self.shared.links.get(loop_id) {
            Some(link) => admitted(link.post(Command::Defer(Box::new(f)))),
            None => SendStatus::Closed,
        }
    }

    /// Stops the server gracefully: every loop stops accepting, closes its WebSockets
    /// with 1001 and waits up to the close timeout; then `Server::run` returns.
    pub fn stop(&self) {
        for link in self.shared.links.iter() {
            // Out of band: a full mailbox cannot delay it.
            link.stop.store(true, Ordering::Release);
            link.wake();
        }
    }

    /// Open connections over all loops.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The Redis backplane's counters, if the server has one.
    pub fn backplane_stats(&self) -> Option<BackplaneStats> {
        self.shared.backplane.get().map(Hook::stats)
    }

    /// This instance's tag on the backplane (eight hex digits), if the server has one.
    pub fn instance_tag(&self) -> Option<&str> {
        self.shared.backplane.get().map(Hook::instance_tag)
    }
}

/// A mailbox's answer as a [`SendStatus`].
fn admitted(a: Admission) -> SendStatus {
    match a {
        Admission::Queued => SendStatus::Sent,
        Admission::Full => SendStatus::Backpressure,
        Admission::Refused => SendStatus::Dropped,
    }
}

//! Reaching the loops from outside (and from each other): a [`ServerHandle`] is
//! `Send + Sync + Clone` and queues commands on a loop's mailbox, then wakes it through
//! its `mio::Waker` -- at most once until the loop has looked at its mailbox again, so a
//! burst of commands costs one wake-up (uWebSockets' `Loop::defer` + `Loop::wakeup`).
//!
//! Each loop has one FIFO mailbox, so commands from one thread (or one loop) reach a
//! loop in the order they were made.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};

use mio::Waker;

use super::backplane_hook::Hook;
use super::core::Ctx;
use super::handler::{ConnId, Payload};
use super::metrics::LoopShared;
use crate::backplane::BackplaneStats;
use crate::protocol::frame::{write_server_frame, OpCode};

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
    /// Shut down gracefully.
    Stop,
    /// Several of the above, handed over by another loop once per iteration.
    Batch(Vec<Command>),
}

/// One loop's mailbox, as seen from other threads.
pub(crate) struct Link {
    tx: Sender<Command>,
    waker: Waker,
    /// Set by the first command since the loop last emptied its mailbox.
    woken: AtomicBool,
}

impl Link {
    pub(crate) fn new(tx: Sender<Command>, waker: Waker) -> Self {
        Link {
            tx,
            waker,
            woken: AtomicBool::new(false),
        }
    }

    /// Queues `cmd` and wakes the loop unless a wake-up is already pending. The loop
    /// clears `woken` before it empties the mailbox, so a command queued meanwhile either
    /// is seen by that emptying or wakes the loop again.
    pub(crate) fn post(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() && !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// Called by the loop on a wake-up, before it empties its mailbox.
    pub(crate) fn clear_woken(&self) {
        self.woken.store(false, Ordering::Release);
    }
}

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
    pub fn publish(&self, topic: &str, msg: Payload<'_>) {
        if let Some(hook) = self.shared.backplane.get() {
            match msg {
                Payload::Text(t) => hook.publish(topic, OpCode::Text, t.as_bytes()),
                Payload::Binary(b) => hook.publish(topic, OpCode::Binary, b),
            }
        }
        let frame = encode_shared(msg);
        let topic: Arc<str> = topic.into();
        for link in self.shared.links.iter() {
            link.post(Command::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
            });
        }
    }

    /// Sends `msg` to one connection (on whichever loop owns it). Dropped silently if the
    /// connection has closed meanwhile, or if it is above `max_backpressure` then.
    pub fn send(&self, conn: ConnId, msg: Payload<'_>) {
        if let Some(link) = self.shared.links.get(conn.loop_id()) {
            link.post(Command::Send {
                conn,
                frame: encode_shared(msg),
            });
        }
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

    /// Runs `f` on loop `loop_id`'s thread, between events (nothing if there is no
    /// such loop).
    pub fn defer(&self, loop_id: usize, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) {
        if let Some(link) = self.shared.links.get(loop_id) {
            link.post(Command::Defer(Box::new(f)));
        }
    }

    /// Stops the server gracefully: every loop stops accepting, closes its WebSockets
    /// with 1001 and waits up to the close timeout; then `Server::run` returns.
    pub fn stop(&self) {
        for link in self.shared.links.iter() {
            link.post(Command::Stop);
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

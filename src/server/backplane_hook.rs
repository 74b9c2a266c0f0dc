//! The server's side of the Redis backplane ([`crate::backplane`]): what the loops call on
//! a topic's first/last local subscriber and on a local publish, and the sink that fans out
//! what other instances published.
//!
//! - **Subscriptions.** Each loop calls [`Hook::subscribe`] when a topic gets its first
//!   subscriber on that loop and [`Hook::unsubscribe`] when it loses its last; the backplane
//!   counts those calls per topic, so the Redis channel is subscribed while any loop of the
//!   process has a subscriber (a process-wide refcount built from per-loop transitions).
//! - **Publishes.** A local publish ([`Ctx::publish`](super::Ctx::publish),
//!   [`ServerHandle::publish`](super::ServerHandle::publish)) is fanned out locally as before
//!   and also queued for Redis ([`Hook::publish`]: a copy onto a bounded queue, never a wait).
//!   A full queue or a Redis that is away drops the message for the other instances only; the
//!   drop is counted (`wsloop_backplane_dropped_total`) and logged once per run of drops.
//! - **Incoming.** The sink runs on the backplane's reader thread: it encodes the frame once
//!   and posts the same bytes to every loop as a local-only publish (`Command::Publish`, which
//!   never goes back to Redis). Own messages never come back: the backplane drops its echoes.
//!   Each loop's mailbox is bounded (`Config::max_mailbox_bytes`). The reader never waits
//!   for room: Redis cannot be paced (its publisher is another instance's client), and a
//!   reader that stops reading only makes Redis cut the subscription at its own output
//!   limit, losing messages for every subscriber uncounted. A message that finds a
//!   mailbox at its bound is dropped for that loop and counted in
//!   `wsloop_mailbox_dropped_total`; under `pace` a congested subscriber's share waits
//!   parked for it, bounded by `max_backpressure` (past it that subscriber is closed 1008).
//!
//! The sink holds only the loops' mailboxes, not the server's shared state, so the state
//! (which owns the backplane) is never dropped on the reader thread, which would have to
//! join itself.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use log::{info, warn};

use super::handle::encode_frame;
use super::mailbox::{Command, Link};
use crate::backplane::{Backplane, BackplaneConfig, BackplaneStats, Incoming};
use crate::protocol::frame::OpCode;

/// One process's backplane, as the loops use it.
pub(crate) struct Hook {
    bp: Backplane,
    /// Publishes are being dropped (logged once until one gets through again).
    dropping: AtomicBool,
}

impl Hook {
    /// Starts the backplane; what it receives is posted to `links` (every loop), never
    /// waiting for room (see the module doc).
    pub(crate) fn start(config: BackplaneConfig, links: Arc<[Link]>) -> io::Result<Hook> {
        let (host, port) = (config.host.clone(), config.port);
        let bp = Backplane::start(config, move |m: Incoming| fan_out(&links, m))?;
        info!(
            "backplane: Redis at {host}:{port}, instance tag {}",
            bp.instance_tag()
        );
        Ok(Hook {
            bp,
            dropping: AtomicBool::new(false),
        })
    }

    /// A loop's first local subscriber of `topic`.
    pub(crate) fn subscribe(&self, topic: &str) {
        self.bp.subscribe(topic);
    }

    /// A loop's last local subscriber of `topic` left.
    pub(crate) fn unsubscribe(&self, topic: &str) {
        self.bp.unsubscribe(topic);
    }

    /// Queues a local publish for the other instances (data opcodes only). Never blocks.
    pub(crate) fn publish(&self, topic: &str, opcode: OpCode, payload: &[u8]) {
        let text = match opcode {
            OpCode::Text => true,
            OpCode::Binary => false,
            _ => return,
        };
        if self.bp.publish(topic, text, payload) {
            // Not while an outage is open: a flapping link lets some publishes through
            // between drops, and each flap must not cost two log lines.
            if self.dropping.load(Relaxed) && self.bp.link_stable() {
                self.dropping.store(false, Relaxed);
                info!("backplane: publishes reach Redis again");
            }
        } else if !self.dropping.swap(true, Relaxed) {
            warn!(
                "backplane: dropping publishes for other instances (Redis away or queue full; \
                 local delivery goes on; counted in wsloop_backplane_dropped_total)"
            );
        }
    }

    /// The backplane's counters.
    pub(crate) fn stats(&self) -> BackplaneStats {
        self.bp.stats()
    }

    /// The instance tag (eight hex digits).
    pub(crate) fn instance_tag(&self) -> &str {
        self.bp.instance_tag()
    }
}

/// Encodes a message from another instance once and hands the bytes to every loop as a
/// local-only publish, within each loop's mailbox bound.
fn fan_out(links: &[Link], m: Incoming) {
    let opcode = if m.text { OpCode::Text } else { OpCode::Binary };
    let frame = encode_frame(opcode, &m.payload);
    for link in links {
        // Refused at the bound: counted by the link as that loop's drop.
        link.post(Command::Publish {
            topic: m.topic.clone(),
            frame: frame.clone(),
        });
    }
}

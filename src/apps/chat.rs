//! Chat broadcast, after the classic Node chat demo: joiners are announced as
//! `userN come in!`, each text message goes to everyone (sender included) as
//! `userN: text`, binary messages are relayed verbatim, leavers as `userN left`.
//!
//! One room across every loop of the server: publishes reach subscribers on all loops,
//! and user numbers come from one counter shared by the loops' handlers (an atomic add
//! per join, never per message).
//!
//! Across instances (a server with a Redis backplane) every join, message and leave is a
//! publish, so it reaches the other instances too; [`Chat::with_instance_tag`] makes names
//! unique across them (`user3-3fa9c1d2`): the tag is the instance's random id, known
//! before any client connects and needing no Redis round trip, so a join never waits on
//! Redis and names stay unique while Redis is away (a Redis `INCR` would do neither).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::protocol::close;
use crate::server::{ConnId, Ctx, Handler, Payload, Upgrade, UpgradeRequest};

const TOPIC: &str = "chat";

/// The chat handler. Clones (one per loop) share the user counter.
#[derive(Clone, Default)]
pub struct Chat {
    next_user: Arc<AtomicU64>,
    /// Appended to every user name: empty, or `-<instance tag>`.
    suffix: String,
    /// Reused for formatting, so a message costs no allocation.
    line: String,
}

impl Chat {
    /// A chat whose user names end in `-<tag>` (e.g. the backplane's
    /// [`instance_tag`](crate::backplane::BackplaneConfig::instance_tag)), so that names
    /// from several instances never clash: `user3-3fa9c1d2 come in!`.
    pub fn with_instance_tag(tag: &str) -> Chat {
        Chat {
            suffix: format!("-{tag}"),
            ..Chat::default()
        }
    }
}

impl Chat {
    /// Starts `line` afresh with the user's name. Only the number goes through the
    /// formatter; the rest is copied (a publish's formatting is on every message's path).
    fn name(&mut self, user: u64) {
        self.line.clear();
        let _ = write!(self.line, "user{user}");
        self.line.push_str(&self.suffix);
    }
}

impl Handler for Chat {
    /// The user number.
    type Data = u64;

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<u64> {
        Upgrade::Accept(self.next_user.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, user: &mut u64) {
        ctx.subscribe(conn, TOPIC);
        self.name(*user);
        self.line.push_str(" come in!");
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, user: &mut u64, msg: Payload<'_>) {
        // Every subscriber gets a copy; one bigger than the per-connection buffer limit
        // would leave every reader "slow" (over max_backpressure, closed with 1008) at the
        // next publish, so one sender could empty the room. The sender gets 1009 instead.
        let len = match msg {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        };
        if len > ctx.max_backpressure() {
            ctx.close(
                conn,
                close::TOO_BIG,
                "larger than the room's buffer per reader",
            );
            return;
        }
        match msg {
            Payload::Text(t) => {
                self.name(*user);
                self.line.push_str(": ");
                self.line.push_str(t);
                ctx.publish(TOPIC, Payload::Text(&self.line));
            }
            Payload::Binary(_) => {
                ctx.publish(TOPIC, msg);
            }
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, user: u64, _code: u16, _reason: &str) {
        self.name(user);
        self.line.push_str(" left");
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }
}

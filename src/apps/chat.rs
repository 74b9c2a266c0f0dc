//! Chat broadcast, after the classic Node chat demo: joiners are announced as
//! `userN come in!`, each text message goes to everyone (sender included) as
//! `userN: text`, binary messages are relayed verbatim, leavers as `userN left`.
//!
//! One room across every loop of the server: publishes reach subscribers on all loops,
//! and user numbers come from one counter shared by the loops' handlers (an atomic add
//! per join, never per message).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::server::{ConnId, Ctx, Handler, Payload, Upgrade, UpgradeRequest};

const TOPIC: &str = "chat";

/// The chat handler. Clones (one per loop) share the user counter.
#[derive(Clone, Default)]
pub struct Chat {
    next_user: Arc<AtomicU64>,
    /// Reused for formatting, so a message costs no allocation.
    line: String,
}

impl Handler for Chat {
    /// The user number.
    type Data = u64;

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<u64> {
        Upgrade::Accept(self.next_user.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, user: &mut u64) {
        ctx.subscribe(conn, TOPIC);
        self.line.clear();
        let _ = write!(self.line, "user{user} come in!");
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, user: &mut u64, msg: Payload<'_>) {
        match msg {
            Payload::Text(t) => {
                self.line.clear();
                let _ = write!(self.line, "user{user}: {t}");
                ctx.publish(TOPIC, Payload::Text(&self.line));
            }
            Payload::Binary(_) => {
                ctx.publish(TOPIC, msg);
            }
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, user: u64, _code: u16, _reason: &str) {
        self.line.clear();
        let _ = write!(self.line, "user{user} left");
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }
}

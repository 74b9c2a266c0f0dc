//! Chat broadcast, after the classic Node chat demo: joiners are announced as
//! `userN come in!`, each text message goes to everyone (sender included) as
//! `userN: text`, binary messages are relayed verbatim, leavers as `userN left`.

use std::fmt::Write;

use crate::server::{ConnId, Ctx, Handler, Payload};

const TOPIC: &str = "chat";

#[derive(Default)]
pub struct Chat {
    next_user: u64,
    /// User number by connection slot.
    users: Vec<u64>,
    /// Reused for formatting, so a message costs no allocation.
    line: String,
}

impl Chat {
    fn user(&self, conn: ConnId) -> u64 {
        self.users.get(conn.index()).copied().unwrap_or(0)
    }
}

impl Handler for Chat {
    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _protocol: Option<&str>) {
        self.next_user += 1;
        if self.users.len() <= conn.index() {
            self.users.resize(conn.index() + 1, 0);
        }
        self.users[conn.index()] = self.next_user;
        ctx.subscribe(conn, TOPIC);
        self.line.clear();
        let _ = write!(self.line, "user{} come in!", self.next_user);
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Payload<'_>) {
        match msg {
            Payload::Text(t) => {
                self.line.clear();
                let _ = write!(self.line, "user{}: {t}", self.user(conn));
                ctx.publish(TOPIC, Payload::Text(&self.line));
            }
            Payload::Binary(_) => {
                ctx.publish(TOPIC, msg);
            }
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _code: u16, _reason: &str) {
        self.line.clear();
        let _ = write!(self.line, "user{} left", self.user(conn));
        ctx.publish(TOPIC, Payload::Text(&self.line));
    }
}

//! Echo: every message goes back with its opcode. Under backpressure it stops reading the
//! connection until the output drains, so TCP pushes back on the client and nothing is lost.

use crate::server::{ConnId, Ctx, Handler, Payload, SendStatus};

pub struct Echo {
    protocols: Vec<&'static str>,
}

impl Echo {
    /// Subprotocols offered, most preferred first.
    pub fn new(protocols: Vec<&'static str>) -> Self {
        Echo { protocols }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Echo::new(vec!["com.kaazing.echo", "echo"])
    }
}

impl Handler for Echo {
    fn protocols(&self) -> &[&str] {
        &self.protocols
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, msg: Payload<'_>) {
        match ctx.send(conn, msg) {
            SendStatus::Sent => {}
            SendStatus::Backpressure => ctx.pause(conn),
            SendStatus::Dropped => {
                // Unreachable while reading pauses at the limit; never lose data silently.
                log::warn!("echo: send dropped on {conn:?}; closing");
                ctx.close(conn, 1011, "backpressure");
            }
            SendStatus::Closed => {}
        }
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        ctx.resume(conn);
    }
}

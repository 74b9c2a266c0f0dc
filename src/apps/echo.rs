//! Echo: every message goes back with its opcode. Under backpressure the core stops
//! reading the connection until its output drains (a connection's own output above the
//! high watermark pauses its input), so TCP pushes back on the client and nothing is lost.

use crate::protocol::Request;
use crate::server::{ConnId, Ctx, Handler, Payload, SendStatus, Upgrade, UpgradeRequest};

/// The echo handler; stateless, so each loop gets a clone.
#[derive(Clone)]
pub struct Echo {
    protocols: Vec<&'static str>,
}

impl Echo {
    /// Echo that confirms the first of `protocols` (most preferred first) a client offers.
    pub fn new(protocols: Vec<&'static str>) -> Self {
        Echo { protocols }
    }
}

impl Default for Echo {
    /// Subprotocols `com.kaazing.echo` and `echo` (what echo test pages ask for).
    fn default() -> Self {
        Echo::new(vec!["com.kaazing.echo", "echo"])
    }
}

impl Handler for Echo {
    type Data = ();

    fn protocols(&self, _req: &Request<'_>) -> &[&str] {
        &self.protocols
    }

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::Accept(())
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), msg: Payload<'_>) {
        match ctx.send(conn, msg) {
            SendStatus::Sent | SendStatus::Backpressure | SendStatus::Closed => {}
            SendStatus::Dropped => {
                // Unreachable while the core pauses reading at the high watermark; never
                // lose data silently.
                log::warn!("echo: send dropped on {conn:?}; closing");
                ctx.close(conn, 1011, "backpressure");
            }
        }
    }
}

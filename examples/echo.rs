//! Echo server: every message goes back to its sender with its opcode.
//!
//! ```text
//! cargo run --example echo [ADDR|PORT]      # default 127.0.0.1:0 (a free port)
//! ```
//!
//! Prints `listening on ADDR` first. The library's own [`wsloop::apps::echo::Echo`] adds
//! backpressure handling (pause reading while the output is above the limit); this is
//! the smallest handler that works.

use std::net::SocketAddr;

use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};

/// No state at all: each loop gets a clone.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    /// Nothing per connection (costs nothing in the slot table).
    type Data = ();

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::Accept(())
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), msg: Payload<'_>) {
        ctx.send(conn, msg);
    }
}

/// `ADDR` or `PORT` (on 127.0.0.1) from the first argument; a free port otherwise.
fn listen_addr() -> SocketAddr {
    let Some(arg) = std::env::args().nth(1) else {
        return SocketAddr::from(([127, 0, 0, 1], 0));
    };
    arg.parse()
        .or_else(|_| {
            arg.parse::<u16>()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        })
        .unwrap_or_else(|_| panic!("usage: echo [ADDR|PORT], got {arg:?}"))
}

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: listen_addr(),
        ..Config::default()
    };
    let server = Server::bind(config, Echo)?;
    println!("listening on {}", server.local_addr());
    server.run()
}

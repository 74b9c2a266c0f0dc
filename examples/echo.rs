//! Echo server: every message goes back to its sender with its opcode.
//!
//! ```text
//! cargo run --example echo [ADDR|PORT]      # default 127.0.0.1:0 (a free port)
//! ```
//!
//! Prints `listening on ADDR` first. The library's own [`wsloop::apps::echo::Echo`] adds
//! backpressure handling (pause reading while the output is above the limit); this is
//! the smallest handler that works.

use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};

mod common;

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

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: common::listen_addr(std::env::args().nth(1), "usage: echo [ADDR|PORT]"),
        ..Config::default()
    };
    let server = Server::bind(config, Echo)?;
    println!("listening on {}", server.local_addr());
    server.run()
}

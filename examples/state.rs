//! Per-connection state and a per-connection timer.
//!
//! ```text
//! cargo run --example state [ADDR|PORT]     # default 127.0.0.1:0 (a free port)
//! ```
//!
//! Each connection counts its own messages: the reply to its Nth message is `count N`.
//! Every 500 ms each connection also gets `tick T (N messages)` from its own timer, which
//! stops by itself when the connection closes.

use std::time::Duration;

use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};

mod common;

const TICK: Duration = Duration::from_millis(500);

/// What each connection carries, handed to every callback as `&mut Counter`.
#[derive(Default)]
struct Counter {
    messages: u64,
    ticks: u64,
}

#[derive(Clone)]
struct Counting;

impl Handler for Counting {
    type Data = Counter;

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<Counter> {
        Upgrade::Accept(Counter::default())
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut Counter) {
        ctx.set_timer(conn, TICK, 0);
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, c: &mut Counter, _msg: Payload<'_>) {
        c.messages += 1;
        ctx.send_text(conn, &format!("count {}", c.messages));
    }

    fn timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, c: &mut Counter, _token: u64) {
        c.ticks += 1;
        ctx.send_text(conn, &format!("tick {} ({} messages)", c.ticks, c.messages));
        // Timers fire once; re-arm for the next tick (none fires after the close).
        ctx.set_timer(conn, TICK, 0);
    }

    fn close(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, c: Counter, code: u16, _: &str) {
        eprintln!(
            "{conn:?} closed ({code}) after {} messages, {} ticks",
            c.messages, c.ticks
        );
    }
}

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: common::listen_addr(std::env::args().nth(1), "usage: state [ADDR|PORT]"),
        ..Config::default()
    };
    let server = Server::bind(config, Counting)?;
    println!("listening on {}", server.local_addr());
    server.run()
}

//! Chat room: one topic, every message published to everyone, joins and leaves announced.
//!
//! ```text
//! cargo run --example chat [ADDR|PORT]      # default 127.0.0.1:0 (a free port)
//! ```
//!
//! A joiner is announced as `userN come in!`, each text message goes to everyone (the
//! sender too) as `userN: text`, a leaver as `userN left`. The room spans every loop:
//! `Ctx::publish` reaches subscribers on the other loops too.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};

const ROOM: &str = "room";

/// One per loop (clones): the user counter is shared, the line buffer is the loop's own.
#[derive(Clone, Default)]
struct Chat {
    next_user: Arc<AtomicU64>,
    line: String,
}

impl Handler for Chat {
    /// The user's number.
    type Data = u64;

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<u64> {
        Upgrade::Accept(self.next_user.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, user: &mut u64) {
        ctx.subscribe(conn, ROOM);
        self.announce(ctx, format_args!("user{user} come in!"));
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, user: &mut u64, msg: Payload<'_>) {
        match msg {
            Payload::Text(t) => self.announce(ctx, format_args!("user{user}: {t}")),
            Payload::Binary(_) => {
                ctx.publish(ROOM, msg);
            }
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, user: u64, _code: u16, _reason: &str) {
        self.announce(ctx, format_args!("user{user} left"));
    }
}

impl Chat {
    /// Formats into the reused buffer (no allocation per message) and publishes.
    fn announce(&mut self, ctx: &mut Ctx<'_>, line: std::fmt::Arguments<'_>) {
        self.line.clear();
        let _ = self.line.write_fmt(line);
        ctx.publish(ROOM, Payload::Text(&self.line));
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
        .unwrap_or_else(|_| panic!("usage: chat [ADDR|PORT], got {arg:?}"))
}

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: listen_addr(),
        ..Config::default()
    };
    let server = Server::bind(config, Chat::default())?;
    println!("listening on {}", server.local_addr());
    server.run()
}

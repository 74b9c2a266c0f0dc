//! Chat room: one topic, every message published to everyone, joins and leaves announced.
//!
//! ```text
//! cargo run --example chat [ADDR|PORT]      # default 127.0.0.1:0 (a free port)
//! ```
//!
//! A joiner is announced as `userN come in!`, each text message goes to everyone (the
//! sender too) as `userN: text`, a leaver as `userN left`. The room spans every loop:
//! `Ctx::publish` reaches subscribers on the other loops too. The handler is the one the
//! `wsloop chat` binary runs (`src/apps/chat.rs`, about 50 lines): read it for how.

use wsloop::apps::chat::Chat;
use wsloop::{Config, Server};

mod common;

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: common::listen_addr(std::env::args().nth(1), "usage: chat [ADDR|PORT]"),
        ..Config::default()
    };
    let server = Server::bind(config, Chat::default())?;
    println!("listening on {}", server.local_addr());
    server.run()
}

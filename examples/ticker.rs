//! Publishing from a plain thread: a ticker thread sends numbered messages to topic
//! `ticker` through a [`ServerHandle`](wsloop::ServerHandle), about 100 000 a second.
//!
//! ```text
//! cargo run --example ticker COUNT [ADDR|PORT]   # default 1000000, 127.0.0.1:0
//! ```
//!
//! Every connection subscribes to `ticker`. The thread starts when the first subscriber
//! is in, sends `0`, `1`, ... `COUNT-1` as text, prints `published COUNT` on stderr and
//! ends; the server keeps running. Messages from one thread reach every subscriber in
//! order, with no gap unless a subscriber is too slow (then it is closed with 1008
//! rather than buffered without bound).

use std::fmt::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsloop::{Config, ConnId, Ctx, Handler, Payload, SendStatus, Server, Upgrade, UpgradeRequest};

mod common;

const TOPIC: &str = "ticker";
/// Messages per pacing step: 100 per millisecond ≈ 100 000 per second.
const BATCH: u64 = 100;
const STEP: Duration = Duration::from_millis(1);

/// Subscribes every connection; tells the ticker thread when the first one is in.
#[derive(Clone)]
struct Subscribe {
    first: mpsc::SyncSender<()>,
}

impl Handler for Subscribe {
    type Data = ();

    fn upgrade(&mut self, _req: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::Accept(())
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        ctx.subscribe(conn, TOPIC);
        // Subscribed before the thread hears of it, so its first message is delivered.
        // Later joiners find the (one-slot) channel full or closed: nothing to do.
        let _ = self.first.try_send(());
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = match args.next() {
        Some(a) => a.parse().expect("usage: ticker COUNT [ADDR|PORT]"),
        None => 1_000_000,
    };
    let listen = common::listen_addr(args.next(), "usage: ticker COUNT [ADDR|PORT]");
    let config = Config {
        listen,
        // A subscriber may fall a few seconds behind at this rate (~10 bytes a message)
        // before it counts as slow; the default 1 MiB is about one second.
        max_backpressure: 16 << 20,
        ..Config::default()
    };
    let (first, subscribed) = mpsc::sync_channel(1);
    let server = Server::bind(config, Subscribe { first })?;
    let handle = server.handle();
    println!("listening on {}", server.local_addr());

    std::thread::spawn(move || {
        if subscribed.recv().is_err() {
            return;
        }
        let start = Instant::now();
        let mut text = String::new();
        for n in 0..count {
            if n % BATCH == 0 {
                // Paced against the start, so sleeping late does not slow the average.
                let due = start + STEP * (n / BATCH) as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            text.clear();
            let _ = write!(text, "{n}");
            // Backpressure: the loops (or, under the default `pace` policy, a subscriber)
            // are behind; wait for room instead of piling up or losing ticks.
            if handle.publish(TOPIC, Payload::Text(&text)) == SendStatus::Backpressure {
                while !handle.wait_for_room(Duration::from_secs(1)) {}
            }
        }
        eprintln!("published {count} in {:?}", start.elapsed());
    });
    server.run()
}

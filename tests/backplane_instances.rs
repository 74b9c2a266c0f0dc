//! Several `wsloop chat --redis` instances (two loops each) sharing one `redis-server` on a
//! free port (see `common/redis.rs`; without `redis-server` these tests fail and say so):
//! tungstenite clients on every instance see every message of every other client, in
//! order per publisher, exactly once; a Redis outage loses exactly what was published
//! while the publishing instance's `/metrics` said `wsloop_backplane_up 0`, local delivery
//! goes on meanwhile, and delivery across instances resumes after the reconnect.
//!
//! Readiness is read from `/metrics` (`up`, `subscriptions`), polled with a generous
//! deadline; nothing asserts on wall-clock time.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{read_http_response, ServerProc};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const DEADLINE: Duration = Duration::from_secs(30);

type Ws = WebSocket<TcpStream>;
type Samples = HashMap<String, f64>;

fn instance(redis: &RedisServer) -> ServerProc {
    let url = redis.url();
    let args = ["--redis", &url, "--threads", "2", "--metrics", "--no-www"];
    ServerProc::start("chat", &args)
}

/// One `/metrics` scrape on a fresh connection: every sample by its series.
fn scrape(addr: SocketAddr) -> Samples {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    std::io::Write::write_all(&mut s, req.as_bytes()).expect("send scrape");
    let r = read_http_response(&mut s);
    assert_eq!(r.status, 200, "{}", r.head);
    String::from_utf8(r.body)
        .expect("UTF-8 exposition")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().expect("sample value")))
        .collect()
}

fn metric(m: &Samples, name: &str) -> u64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("no {name} in /metrics")) as u64
}

/// Polls `addr`'s `/metrics` until `ok` holds; returns that scrape.
fn until(addr: SocketAddr, what: &str, ok: impl Fn(&Samples) -> bool) -> Samples {
    let end = Instant::now() + DEADLINE;
    loop {
        let m = scrape(addr);
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what} on {addr}; last scrape: {:?}",
            m.iter()
                .filter(|(k, _)| k.starts_with("wsloop_backplane_"))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the instance has a live Redis connection with `subs` channels subscribed.
fn settled(addr: SocketAddr, subs: u64) -> Samples {
    until(
        addr,
        &format!("backplane up with {subs} subscription(s)"),
        |m| {
            metric(m, "wsloop_backplane_up") == 1
                && metric(m, "wsloop_backplane_subscriptions") == subs
        },
    )
}

fn connect(addr: SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let req = format!("ws://{addr}/").into_client_request().unwrap();
    let (ws, resp) = tungstenite::client::client(req, stream).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn send(ws: &mut Ws, text: String) {
    ws.send(Message::text(text)).expect("send");
}

/// A chat message `NAME: p<publisher> <seq>`, or None for join and leave notices.
fn parse_chat(text: &str) -> Option<(String, usize, usize)> {
    if text.ends_with(" come in!") || text.ends_with(" left") {
        return None;
    }
    let (name, rest) = text
        .split_once(": ")
        .unwrap_or_else(|| panic!("unexpected {text:?}"));
    let (p, seq) = rest.split_once(' ').expect("p<k> <seq>");
    Some((
        name.to_string(),
        p[1..].parse().expect("publisher"),
        seq.parse().expect("seq"),
    ))
}

/// Reads chat messages until `done` says the received sequences (per publisher) are
/// complete; records each publisher's name. A read past the deadline fails the test.
fn read_until(
    ws: &mut Ws,
    who: &str,
    got: &mut HashMap<usize, Vec<usize>>,
    names: &mut HashMap<usize, String>,
    done: impl Fn(&HashMap<usize, Vec<usize>>) -> bool,
) {
    while !done(got) {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t.as_str().to_owned(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => panic!("{who}: unexpected {other:?}"),
            Err(e) => panic!("{who}: read failed ({e}); so far {got:?}"),
        };
        let Some((name, p, seq)) = parse_chat(&text) else {
            continue;
        };
        got.entry(p).or_default().push(seq);
        let n = names.entry(p).or_insert_with(|| name.clone());
        assert_eq!(*n, name, "{who}: publisher {p} under two names");
    }
}

/// `instances` instances with `per` clients each; every client publishes `n` messages.
fn mesh(instances: usize, per: usize, n: usize) {
    let redis = RedisServer::start();
    let servers: Vec<ServerProc> = (0..instances).map(|_| instance(&redis)).collect();
    for s in &servers {
        settled(s.addr, 0);
    }
    // Client c is on instance c / per.
    let mut clients: Vec<Ws> = (0..instances * per)
        .map(|c| connect(servers[c / per].addr))
        .collect();
    for s in &servers {
        settled(s.addr, 1);
    }
    for seq in 0..n {
        for (c, ws) in clients.iter_mut().enumerate() {
            send(ws, format!("p{c} {seq}"));
        }
    }
    let all: Vec<usize> = (0..n).collect();
    let total = clients.len();
    let mut seen_names: Option<HashMap<usize, String>> = None;
    for (c, ws) in clients.iter_mut().enumerate() {
        let who = format!("client {c} (instance {})", c / per);
        let (mut got, mut names) = (HashMap::new(), HashMap::new());
        read_until(ws, &who, &mut got, &mut names, |g| {
            (0..total).all(|p| g.get(&p).is_some_and(|v| v.len() >= n))
        });
        for p in 0..total {
            assert_eq!(got[&p], all, "{who}: messages of publisher {p}");
        }
        // Every client knows every publisher under the same name.
        match &seen_names {
            None => seen_names = Some(names),
            Some(first) => assert_eq!(*first, names, "{who}: names differ"),
        }
    }
    // Names are unique across instances: the same tag within an instance, a different one
    // on each instance.
    let names = seen_names.unwrap();
    let distinct: HashSet<&String> = names.values().collect();
    assert_eq!(distinct.len(), total, "names not unique: {names:?}");
    let tag = |p: usize| {
        names[&p]
            .rsplit_once('-')
            .expect("user<N>-<tag>")
            .1
            .to_string()
    };
    let tags: HashSet<String> = (0..instances).map(|i| tag(i * per)).collect();
    assert_eq!(tags.len(), instances, "instance tags: {tags:?}");
    for p in 0..total {
        assert_eq!(tag(p), tag(p / per * per), "publisher {p}'s tag");
    }
    // Each instance wrote to Redis exactly its own joins and messages (what it received
    // from Redis never went back), dropped nothing, and got at least every other
    // instance's messages (joins of clients connected before it subscribed are not seen).
    let own = (per + per * n) as u64;
    let others = ((instances - 1) * per * n) as u64;
    for s in &servers {
        let m = until(s.addr, "every publish written to Redis", |m| {
            metric(m, "wsloop_backplane_published_total") == own
                && metric(m, "wsloop_backplane_received_total") >= others
        });
        assert!(
            metric(&m, "wsloop_backplane_received_total")
                <= others + (instances - 1) as u64 * per as u64
        );
        assert_eq!(metric(&m, "wsloop_backplane_dropped_total"), 0);
        assert_eq!(metric(&m, "wsloop_backplane_out_of_order_total"), 0);
        assert_eq!(metric(&m, "wsloop_backplane_malformed_total"), 0);
        assert_eq!(metric(&m, "wsloop_backplane_topics"), 1);
    }
}

#[test]
fn two_instances_every_client_sees_every_message_once_in_order() {
    mesh(2, 2, 200);
}

#[test]
fn three_instances_every_client_sees_every_message_once_in_order() {
    mesh(3, 2, 100);
}

/// The channel is subscribed while any client of the instance is, on whichever loop, and
/// unsubscribed when the last leaves.
#[test]
fn subscription_follows_the_last_local_subscriber() {
    let redis = RedisServer::start();
    let a = instance(&redis);
    settled(a.addr, 0);
    let mut clients: Vec<Ws> = (0..4).map(|_| connect(a.addr)).collect();
    settled(a.addr, 1);
    while let Some(mut ws) = clients.pop() {
        ws.close(None).expect("close");
        // Read to the end of the closing handshake.
        while ws.read().is_ok() {}
        if !clients.is_empty() {
            let m = scrape(a.addr);
            assert_eq!(metric(&m, "wsloop_backplane_topics"), 1);
        }
    }
    let m = settled(a.addr, 0);
    assert_eq!(metric(&m, "wsloop_backplane_topics"), 0);
}

/// Kill Redis and start it again on the same port. What each client sees, exactly:
/// phase 1 (Redis up): every message of both publishers; phase 2 (Redis down, as each
/// instance's `/metrics` says before the phase starts): only its own publisher's messages,
/// delivered locally — the other instance's phase-2 messages are lost for it, and each
/// instance counts exactly its phase-2 messages as dropped; phase 3 (after both instances
/// resubscribed): every message of both again.
#[test]
fn redis_outage_loses_only_what_was_published_while_it_was_down() {
    const PHASE: usize = 5;
    let mut redis = RedisServer::start();
    let servers = [instance(&redis), instance(&redis)];
    for s in &servers {
        settled(s.addr, 0);
    }
    let mut clients: Vec<Ws> = servers.iter().map(|s| connect(s.addr)).collect();
    for s in &servers {
        settled(s.addr, 1);
    }
    let publish = |clients: &mut Vec<Ws>, seqs: std::ops::Range<usize>| {
        for seq in seqs {
            for (c, ws) in clients.iter_mut().enumerate() {
                send(ws, format!("p{c} {seq}"));
            }
        }
    };
    let mut got: Vec<HashMap<usize, Vec<usize>>> = vec![HashMap::new(), HashMap::new()];
    let mut names: Vec<HashMap<usize, String>> = vec![HashMap::new(), HashMap::new()];
    let upto = |own: usize, own_n: usize, other_n: usize| {
        move |g: &HashMap<usize, Vec<usize>>| {
            g.get(&own).map_or(0, Vec::len) >= own_n
                && g.get(&(1 - own)).map_or(0, Vec::len) >= other_n
        }
    };

    // Phase 1: Redis up.
    publish(&mut clients, 0..PHASE);
    for c in 0..2 {
        let who = format!("client {c}, phase 1");
        read_until(
            &mut clients[c],
            &who,
            &mut got[c],
            &mut names[c],
            upto(c, PHASE, PHASE),
        );
    }

    // Phase 2: Redis down. Local delivery goes on; nothing crosses.
    redis.kill();
    let dropped_before: Vec<u64> = servers
        .iter()
        .map(|s| {
            let m = until(s.addr, "the outage noticed (up 0)", |m| {
                metric(m, "wsloop_backplane_up") == 0
            });
            metric(&m, "wsloop_backplane_dropped_total")
        })
        .collect();
    publish(&mut clients, PHASE..2 * PHASE);
    for c in 0..2 {
        let who = format!("client {c}, phase 2");
        read_until(
            &mut clients[c],
            &who,
            &mut got[c],
            &mut names[c],
            upto(c, 2 * PHASE, PHASE),
        );
    }
    for (s, before) in servers.iter().zip(&dropped_before) {
        let m = scrape(s.addr);
        assert_eq!(
            metric(&m, "wsloop_backplane_dropped_total"),
            before + PHASE as u64,
            "each phase-2 message counted as dropped, once"
        );
        assert_eq!(metric(&m, "wsloop_backplane_up"), 0);
    }

    // Phase 3: Redis back on the same port; both instances reconnect and resubscribe.
    redis.restart();
    for s in &servers {
        let m = settled(s.addr, 1);
        assert!(metric(&m, "wsloop_backplane_reconnects_total") >= 1);
    }
    publish(&mut clients, 2 * PHASE..3 * PHASE);
    for c in 0..2 {
        let who = format!("client {c}, phase 3");
        read_until(
            &mut clients[c],
            &who,
            &mut got[c],
            &mut names[c],
            upto(c, 3 * PHASE, 2 * PHASE),
        );
    }

    let own: Vec<usize> = (0..3 * PHASE).collect();
    let crossed: Vec<usize> = (0..PHASE).chain(2 * PHASE..3 * PHASE).collect();
    for c in 0..2 {
        assert_eq!(
            got[c][&c], own,
            "client {c}: its own messages, all, locally"
        );
        assert_eq!(
            got[c][&(1 - c)],
            crossed,
            "client {c}: the other instance's phases 1 and 3, none of phase 2"
        );
    }
}

/// A library server that subscribes every connection to topic `t` and publishes nothing
/// itself: what its clients get comes from `ServerHandle::publish`.
#[derive(Clone)]
struct Listen;

impl wsloop::Handler for Listen {
    type Data = ();

    fn upgrade(&mut self, _req: &wsloop::UpgradeRequest<'_>) -> wsloop::Upgrade<()> {
        wsloop::Upgrade::Accept(())
    }

    fn open(&mut self, ctx: &mut wsloop::Ctx<'_>, conn: wsloop::ConnId, _: &mut ()) {
        ctx.subscribe(conn, "t");
    }
}

/// `ServerHandle::publish` on one library server reaches the clients of another through
/// Redis, in order, once; a second backplane is refused.
#[test]
fn server_handle_publishes_cross_instances() {
    use wsloop::backplane::BackplaneConfig;
    use wsloop::{Config, Server};
    const N: usize = 300;
    let redis = RedisServer::start();
    let start = || {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            ..Config::default()
        };
        let bp = BackplaneConfig::from_url(&redis.url()).unwrap();
        let server = Server::bind(config, Listen)
            .unwrap()
            .with_backplane(bp.clone())
            .unwrap();
        let again = Server::bind(
            Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Config::default()
            },
            Listen,
        )
        .unwrap()
        .with_backplane(bp.clone())
        .unwrap()
        .with_backplane(bp);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AlreadyExists)
        );
        let (addr, handle) = (server.local_addr(), server.handle());
        let t = std::thread::spawn(move || server.run().unwrap());
        (addr, handle, t)
    };
    let (a_addr, a, a_thread) = start();
    let (b_addr, b, b_thread) = start();
    let mut on_b: Vec<Ws> = (0..3).map(|_| connect(b_addr)).collect();
    let mut on_a = connect(a_addr);
    let wait = |h: &wsloop::ServerHandle| {
        let end = Instant::now() + DEADLINE;
        while !h
            .backplane_stats()
            .is_some_and(|s| s.connected && s.subscriptions == 1)
        {
            assert!(Instant::now() < end, "backplane never subscribed");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait(&a);
    wait(&b);
    assert_ne!(a.instance_tag(), b.instance_tag());
    for i in 0..N {
        a.publish("t", wsloop::Payload::Text(&format!("a{i}")));
    }
    b.publish("t", wsloop::Payload::Binary(b"from b"));
    let expect: Vec<String> = (0..N).map(|i| format!("a{i}")).collect();
    // Order holds per publisher only: b's own message may come before or among a's.
    for (k, ws) in on_b.iter_mut().enumerate() {
        let (mut texts, mut binaries) = (Vec::new(), Vec::new());
        for _ in 0..=N {
            match ws.read().expect("read") {
                Message::Text(t) => texts.push(t.as_str().to_owned()),
                Message::Binary(b) => binaries.push(b.to_vec()),
                other => panic!("client {k} on b: unexpected {other:?}"),
            }
        }
        assert_eq!(texts, expect, "client {k} on b");
        assert_eq!(
            binaries,
            [b"from b".to_vec()],
            "client {k} on b: b's own, once"
        );
    }
    // a's client got a's messages locally, then b's binary through Redis, once each.
    let got: Vec<Message> = (0..=N).map(|_| on_a.read().expect("read")).collect();
    let mut want: Vec<Message> = expect.iter().map(|e| Message::text(e.as_str())).collect();
    let at = got
        .iter()
        .position(|m| m.is_binary())
        .expect("b's message on a");
    want.insert(at, Message::binary(&b"from b"[..]));
    assert_eq!(got, want, "a's client: a's own in order, b's once");
    // Published counts on Redis's answer to each PUBLISH, which may lag the delivery.
    let end = Instant::now() + Duration::from_secs(30);
    let sa = loop {
        let sa = a.backplane_stats().unwrap();
        if sa.published_total >= N as u64 || Instant::now() > end {
            break sa;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!((sa.published_total, sa.dropped_total), (N as u64, 0));
    // Gone clients (TCP closed) let the shutdown finish without waiting out the close
    // timeout for closing handshakes nobody reads.
    drop(on_b);
    drop(on_a);
    a.stop();
    b.stop();
    a_thread.join().unwrap();
    b_thread.join().unwrap();
}

/// A Redis that stops reading (SIGSTOP) never holds up the loops: the backplane's bounded
/// queue fills, further publishes are dropped and counted, and local delivery carries on
/// at full speed, every message in order, for a feed that honours backpressure.
#[test]
fn a_stalled_redis_costs_drops_not_local_delivery() {
    use wsloop::backplane::BackplaneConfig;
    use wsloop::{Config, Server};
    const N: usize = 5_000;
    const SIZE: usize = 4 << 10;
    let redis = RedisServer::start();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..Config::default()
    };
    let mut bp = BackplaneConfig::from_url(&redis.url()).unwrap();
    bp.queue_messages = 16;
    let server = Server::bind(config, Listen)
        .unwrap()
        .with_backplane(bp)
        .unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let run = std::thread::spawn(move || server.run().unwrap());
    let mut ws = connect(addr);
    let end = Instant::now() + DEADLINE;
    while !handle
        .backplane_stats()
        .is_some_and(|s| s.connected && s.subscriptions == 1)
    {
        assert!(Instant::now() < end, "backplane never subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stop = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &redis.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} redis-server");
    };
    stop("-STOP");
    // The client reads while the publisher publishes 20 MiB: more than the kernel buffers
    // between the backplane's writer and a Redis that reads nothing.
    let reader = std::thread::spawn(move || {
        (0..N)
            .map(|i| match ws.read().expect("read") {
                Message::Binary(b) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(
                        &b[..8],
                        &(i as u64).to_be_bytes(),
                        "message {i} out of order"
                    );
                }
                other => panic!("message {i}: unexpected {other:?}"),
            })
            .count()
    });
    // The feed paces itself: told `Backpressure` (the loops' mailboxes, or under the
    // default `pace` policy a subscriber, are behind), it waits for room. So the verdict
    // does not depend on whether the reader thread or the feed runs first.
    let mut payload = vec![7u8; SIZE];
    for i in 0..N {
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        match handle.publish("t", wsloop::Payload::Binary(&payload)) {
            wsloop::SendStatus::Sent => {}
            wsloop::SendStatus::Backpressure => {
                while !handle.wait_for_room(Duration::from_secs(1)) {}
            }
            other => panic!("publish {i}: {other:?}"),
        }
    }
    assert_eq!(
        reader.join().expect("reader"),
        N,
        "every message delivered locally"
    );
    let s = handle.backplane_stats().unwrap();
    assert!(
        s.dropped_total > 0,
        "a stalled Redis must cost drops: {s:?}"
    );
    assert!(s.dropped_total <= N as u64, "{s:?}");
    stop("-CONT");
    handle.stop();
    run.join().unwrap();
}

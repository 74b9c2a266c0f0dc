//! The examples under `examples/`, run as a user would (`cargo build --examples`, then
//! the binary), driven by an independent client (the `tungstenite` crate).
//!
//! Cargo gives tests no path to example binaries, so they are found next to this test's
//! own executable (`target/debug/deps/..` → `target/debug/examples/NAME`) after one
//! `cargo build --examples` (a no-op when they are fresh).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Generous: the machine is shared and everything runs in debug builds.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>/examples`, built once per test process.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/examples-HASH
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--examples", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        profile_dir.join("examples")
    })
}

/// A running example, killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Example {
    /// Starts `name` with `args` and waits for its `listening on ADDR` line.
    fn start(name: &str, args: &[&str]) -> Example {
        let path = examples_dir().join(name);
        let mut child = Command::new(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}: first line {line:?}"))
            .parse()
            .expect("an address");
        Example { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Handshake on `path` with extra headers: the socket, or the HTTP status of the
    /// refusal.
    fn try_connect(&self, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
        let stream = TcpStream::connect(self.addr).expect("tcp connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut req = self.url(path).into_client_request().unwrap();
        for &(k, v) in headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        match tungstenite::client::client(req, stream) {
            Ok((ws, resp)) => {
                assert_eq!(resp.status(), 101);
                Ok(ws)
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                Err(resp.status().as_u16())
            }
            Err(e) => panic!("handshake on {path}: {e}"),
        }
    }

    fn connect(&self, path: &str) -> Ws {
        self.try_connect(path, &[]).expect("handshake")
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Next text message, skipping pings and pongs.
fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next text that is not someone's join notice. With several loops, a join published
/// on another loop reaches the subscribers there when it arrives, so a client that
/// joined just after may see it too (order is per publisher, not global).
fn next_text_not_join(ws: &mut Ws) -> String {
    loop {
        let t = next_text(ws);
        if !t.ends_with(" come in!") {
            return t;
        }
    }
}

/// The HTTP status a refused handshake got.
fn refused_status(r: Result<Ws, u16>) -> u16 {
    match r {
        Err(status) => status,
        Ok(_) => panic!("expected a refusal, got 101"),
    }
}

#[test]
fn echo_round_trip() {
    let ex = Example::start("echo", &[]);
    let mut ws = ex.connect("/");
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(bin.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(bin));
    ws.close(None).unwrap();
}

#[test]
fn chat_announces_joins_and_broadcasts() {
    let ex = Example::start("chat", &[]);
    let mut a = ex.connect("/");
    assert_eq!(next_text(&mut a), "user1 come in!");
    let mut b = ex.connect("/");
    assert_eq!(next_text(&mut b), "user2 come in!");
    assert_eq!(next_text(&mut a), "user2 come in!");
    a.send(Message::text("hi all")).unwrap();
    assert_eq!(next_text(&mut a), "user1: hi all");
    assert_eq!(next_text_not_join(&mut b), "user1: hi all");
    b.close(None).unwrap();
    assert_eq!(next_text(&mut a), "user2 left");
}

#[test]
fn routes_check_origin_token_and_path() {
    let ex = Example::start("routes", &[]);
    let origin = ("Origin", "http://localhost:8080");

    // Right origin and a token, by query or by header: 101 and the session's data.
    let mut ws = ex
        .try_connect("/private?token=secret&name=ann", &[origin])
        .expect("query token accepted");
    ws.send(Message::text("one")).unwrap();
    assert_eq!(next_text(&mut ws), "ann #1: one");
    ws.send(Message::text("two")).unwrap();
    assert_eq!(next_text(&mut ws), "ann #2: two");
    let mut ws2 = ex
        .try_connect("/private", &[origin, ("Authorization", "bearer secret")])
        .expect("bearer token accepted");
    ws2.send(Message::text("x")).unwrap();
    assert_eq!(next_text(&mut ws2), "anonymous #1: x");

    // The public route needs no token.
    let mut echo = ex.try_connect("/echo", &[origin]).expect("public route");
    echo.send(Message::text("e")).unwrap();
    assert_eq!(next_text(&mut echo), "e");

    let evil = ("Origin", "http://evil.example");
    assert_eq!(
        refused_status(ex.try_connect("/private?token=secret", &[evil])),
        403
    );
    assert_eq!(refused_status(ex.try_connect("/echo", &[evil])), 403);
    assert_eq!(refused_status(ex.try_connect("/private", &[origin])), 401);
    assert_eq!(
        refused_status(ex.try_connect("/private?token=wrong", &[origin])),
        401
    );
    assert_eq!(
        refused_status(ex.try_connect("/private", &[origin, ("Authorization", "Bearer nope")])),
        401
    );
    assert_eq!(refused_status(ex.try_connect("/nowhere", &[origin])), 404);
}

#[test]
fn state_counts_per_connection_and_ticks() {
    let ex = Example::start("state", &[]);
    let mut a = ex.connect("/");
    let mut b = ex.connect("/");
    // Ticks may interleave with replies; replies must count 1, 2, 3 per connection.
    let next_count = |ws: &mut Ws| loop {
        let t = next_text(ws);
        if !t.starts_with("tick ") {
            return t;
        }
    };
    for n in 1..=3 {
        a.send(Message::text("m")).unwrap();
        assert_eq!(next_count(&mut a), format!("count {n}"));
    }
    b.send(Message::text("m")).unwrap();
    assert_eq!(next_count(&mut b), "count 1", "b has its own counter");
    a.send(Message::text("m")).unwrap();
    assert_eq!(next_count(&mut a), "count 4");

    // The per-connection timer: a tick that reports this connection's message count.
    let tick = loop {
        let t = next_text(&mut b);
        if t.starts_with("tick ") {
            break t;
        }
    };
    assert!(tick.ends_with("(1 messages)"), "{tick}");
}

#[test]
fn ticker_delivers_every_message_in_order() {
    const N: u64 = 200_000;
    let ex = Example::start("ticker", &[&N.to_string()]);
    let mut ws = ex.connect("/");
    for expected in 0..N {
        let got = next_text(&mut ws);
        assert_eq!(got, expected.to_string(), "message {expected} of {N}");
    }
}

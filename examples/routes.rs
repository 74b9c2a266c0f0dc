//! Several endpoints on one port with a [`Router`]: an Origin allow-list for all of
//! them, a public echo, and a private endpoint that wants a token.
//!
//! ```text
//! cargo run --example routes [ADDR|PORT]    # default 127.0.0.1:0 (a free port)
//! ```
//!
//! - a browser `Origin` other than `http://localhost:8080` → 403 (Router::allow_origins);
//! - `/echo`: echo, no per-connection data;
//! - `/private`: needs `?token=secret` or `Authorization: Bearer secret` (else 401);
//!   its data is a session (who, how many messages), replies `NAME #N: text`;
//! - any other path → 404 (no fallback route).

use wsloop::apps::echo::Echo;
use wsloop::server::Router;
use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};

mod common;

const ALLOWED_ORIGIN: &str = "http://localhost:8080";
const TOKEN: &str = "secret";

/// `/private`: authenticated sessions.
struct Private;

/// What a `/private` connection carries.
struct Session {
    /// From `?name=` (default `anonymous`), capped at 32 bytes.
    name: String,
    messages: u64,
}

/// The token from `Authorization: Bearer T` (a header with another scheme: none), or
/// else, without that header, from the query's `token=T`.
fn token<'a>(req: &UpgradeRequest<'a>) -> Option<&'a str> {
    if let Some(v) = req.header("authorization") {
        // The scheme name is case-insensitive (RFC 7235 §2.1).
        return match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Some(t.trim()),
            _ => None,
        };
    }
    query_param(req.query()?, "token")
}

/// The first `key=value` pair of a query (undecoded; enough for a token of URL-safe
/// characters).
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

impl Handler for Private {
    type Data = Session;

    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<Session> {
        if token(req) != Some(TOKEN) {
            return Upgrade::Reject(401);
        }
        let name = req
            .query()
            .and_then(|q| query_param(q, "name"))
            .unwrap_or("anonymous");
        // Bounded: the name comes from the client.
        let name = name.chars().take(32).collect();
        Upgrade::Accept(Session { name, messages: 0 })
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, s: &mut Session, msg: Payload<'_>) {
        s.messages += 1;
        let text = String::from_utf8_lossy(msg.as_bytes());
        ctx.send_text(conn, &format!("{} #{}: {text}", s.name, s.messages));
    }
}

fn main() -> std::io::Result<()> {
    let config = Config {
        listen: common::listen_addr(std::env::args().nth(1), "usage: routes [ADDR|PORT]"),
        ..Config::default()
    };
    // A Router is not Clone (its routes are boxed), so each loop builds its own.
    let server = Server::bind_with(config, |_loop_id| {
        Router::new()
            .allow_origins(&[ALLOWED_ORIGIN])
            // `/echo`: the bundled, stateless echo handler.
            .route("/echo", Echo::default())
            .route("/private", Private)
    })?;
    println!("listening on {}", server.local_addr());
    server.run()
}

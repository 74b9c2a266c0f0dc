//! wsloop: a single-threaded, readiness-driven WebSocket server (RFC 6455) on mio.
//!
//! [`protocol`] is the sans-IO core; [`server`] is the event loop and the [`Handler`] API;
//! [`apps`] holds the echo and chat applications the binary runs.
//!
//! An application implements [`Handler`]: `upgrade` decides on each request and creates
//! the connection's [`Handler::Data`]; the other callbacks get that data and a [`Ctx`] to
//! send, publish and set timers through. [`Server::bind`] gives each loop (one per
//! thread) a clone of the handler; [`Server::run`] runs until stopped, and a
//! [`ServerHandle`] reaches the loops from any thread. Several endpoints on one port:
//! [`server::Router`]. More in `examples/` (echo, chat, routes, state, ticker).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//!
//! use wsloop::{Config, ConnId, Ctx, Handler, Payload, Server, Upgrade, UpgradeRequest};
//!
//! /// Echoes every message; counts them per connection.
//! #[derive(Clone)]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Data = u64;
//!
//!     fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<u64> {
//!         match req.path() {
//!             "/echo" => Upgrade::Accept(0),
//!             _ => Upgrade::Reject(404),
//!         }
//!     }
//!
//!     fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, n: &mut u64, msg: Payload<'_>) {
//!         *n += 1;
//!         ctx.send(conn, msg);
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(), // a free port
//!     threads: 1,
//!     ..Config::default()
//! };
//! let server = Server::bind(config, Echo)?;
//! let addr = server.local_addr();
//! let handle = server.handle();
//!
//! // A client on another thread: the RFC 6455 §1.3 handshake, then stop the server.
//! let client = std::thread::spawn(move || -> std::io::Result<String> {
//!     let mut tcp = TcpStream::connect(addr)?;
//!     write!(
//!         tcp,
//!         "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
//!          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!          Sec-WebSocket-Version: 13\r\n\r\n"
//!     )?;
//!     let mut head = Vec::new();
//!     let mut byte = [0u8];
//!     while !head.ends_with(b"\r\n\r\n") {
//!         tcp.read_exact(&mut byte)?;
//!         head.push(byte[0]);
//!     }
//!     handle.stop(); // closes the connection with 1001; `run` then returns
//!     Ok(String::from_utf8_lossy(&head).into_owned())
//! });
//!
//! server.run()?;
//! let response = client.join().unwrap()?;
//! assert!(response.starts_with("HTTP/1.1 101"), "{response}");
//! assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod apps;
pub mod backplane;
pub mod protocol;
pub mod server;

pub use protocol::Request;
pub use server::{
    Config, ConnId, Ctx, Handler, Payload, Published, SendStatus, Server, ServerHandle,
    SlowSubscriber, Upgrade, UpgradeRequest,
};

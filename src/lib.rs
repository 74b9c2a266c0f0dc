//! wsloop: a single-threaded, readiness-driven WebSocket server (RFC 6455) on mio.
//!
//! [`protocol`] is the sans-IO core; [`server`] is the event loop and the [`Handler`] API;
//! [`apps`] holds the echo and chat applications the binary runs.

pub mod apps;
pub mod backplane;
pub mod protocol;
pub mod server;

pub use protocol::Request;
pub use server::{
    Config, ConnId, Ctx, Handler, Payload, SendStatus, Server, ServerHandle, Upgrade,
    UpgradeRequest,
};

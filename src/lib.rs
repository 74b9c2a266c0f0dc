//! wsloop: a single-threaded, readiness-driven WebSocket server (RFC 6455) on mio.
//!
//! [`protocol`] is the sans-IO core; [`server`] is the event loop and the [`Handler`] API.

pub mod protocol;

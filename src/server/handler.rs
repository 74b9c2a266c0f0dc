//! The application's side: a [`Handler`] gets callbacks and a [`Ctx`] to act through,
//! in the spirit of uWebSockets' behaviour struct. Applications never touch the loop.

use crate::protocol::Request;

pub use super::core::Ctx;

/// Identifies a connection. Carries a generation, so an id kept after its connection
/// closed never reaches a new connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A small dense number (the slab slot), handy for per-connection tables in a
    /// handler. Reused after the connection closes.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A data message, borrowed for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Payload<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(t) => t.as_bytes(),
            Payload::Binary(b) => b,
        }
    }
}

/// What `send` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued (and, at the end of this loop iteration, written) within the limit.
    Sent,
    /// Queued, but the connection's unsent bytes are now above `max_backpressure`:
    /// stop sending until `drain`.
    Backpressure,
    /// Refused: the connection was already above `max_backpressure`.
    Dropped,
    /// No such open connection (closed, closing, or never existed).
    Closed,
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Accept, with the subprotocol the server chose (`None`: send none).
    Accept,
    /// Refuse with this HTTP status (e.g. 403 for an Origin not on the allow-list).
    Reject(u16),
}

/// Application callbacks. Every method has a default, so a handler implements only what
/// it needs.
pub trait Handler {
    /// Subprotocols the server speaks, most preferred first. The first of these the client
    /// offered is chosen; none is sent when nothing matches.
    fn protocols(&self) -> &[&str] {
        &[]
    }

    /// Decide on an upgrade request (Origin allow-list, authentication...). `protocol` is
    /// the subprotocol that will be confirmed.
    fn upgrade(&mut self, _req: &Request<'_>, _protocol: Option<&str>) -> Upgrade {
        Upgrade::Accept
    }

    /// The connection is open; `protocol` is the negotiated subprotocol, if any.
    fn open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _protocol: Option<&str>) {}

    /// A complete text or binary message. The payload is borrowed, usually straight
    /// from the loop's receive buffer.
    fn message(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _msg: Payload<'_>) {}

    /// The connection is closed (or closing): `code` is the peer's close code, ours after
    /// a protocol error, or 1006 when TCP ended without a close frame. Called once.
    fn close(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _code: u16, _reason: &str) {}

    /// Unsent bytes fell to the low watermark after having been above it.
    fn drain(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId) {}

    /// A ping arrived (the pong is sent automatically).
    fn ping(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _payload: &[u8]) {}

    /// A pong arrived.
    fn pong(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _payload: &[u8]) {}
}

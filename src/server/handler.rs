//! The application's side: a [`Handler`] gets callbacks and a [`Ctx`] to act through, in
//! the spirit of uWebSockets' behaviour struct, plus a value of its own per connection
//! ([`Handler::Data`], uWebSockets' `UserData`). Applications never touch the loop.

use std::net::SocketAddr;

use crate::protocol::Request;

pub use super::ctx::Ctx;

/// Identifies a connection across the whole server: the loop that owns it, its slot, and
/// a generation, so an id kept after its connection closed never reaches a new
/// connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    pub(crate) loop_id: u16,
}

impl ConnId {
    /// A small dense number (the slab slot within its loop), reused after the connection
    /// closes. Unique only together with [`ConnId::loop_id`].
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The loop (0 .. threads) that owns the connection.
    pub fn loop_id(self) -> usize {
        self.loop_id as usize
    }
}

/// A data message, borrowed for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A text message: valid UTF-8, checked before the handler sees it (RFC 6455 §8.1).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Payload<'_> {
    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(t) => t.as_bytes(),
            Payload::Binary(b) => b,
        }
    }
}

/// What `send` (or a handle's `publish`) did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued (and, at the end of this loop iteration, written) within the high
    /// watermark; for a connection of another loop or a handle: taken by the loop's
    /// mailbox, which is below its high mark.
    Sent,
    /// Queued, but the connection's unsent bytes are now above the high watermark
    /// (`Config::high_watermark`): stop sending until `drain`. From a handle, or to
    /// another loop: the mailbox is at its high mark (wait:
    /// [`ServerHandle::wait_for_room`](super::ServerHandle::wait_for_room)).
    Backpressure,
    /// Refused: the connection was already above `max_backpressure`, or the mailbox at
    /// `Config::max_mailbox_bytes`. Counted.
    Dropped,
    /// No such open connection (closed, closing, or never existed).
    Closed,
}

/// What a [`Ctx::publish`] did on the publishing loop (other loops deliver it when their
/// mailbox gets to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Subscribers of this loop it was queued for.
    pub delivered: usize,
    /// Of those, how many are above the high watermark now: under `pace` they hold the
    /// publishing connection until they drain; under `close` they are the next to be
    /// closed if they do not catch up.
    pub congested: usize,
    /// Subscribers past `max_backpressure` that were closed with 1008 instead.
    pub dropped: usize,
}

/// The answer to an upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade<D> {
    /// Accept, attaching `D` to the connection: every later callback gets `&mut D`, and
    /// `close` gets it back by value when the connection ends.
    Accept(D),
    /// Refuse with this HTTP status (e.g. 403 for an Origin not on the allow-list, 401
    /// for a missing token, 404 for an unknown path).
    Reject(u16),
}

/// An upgrade request as the handler sees it: the parsed request head, the peer's
/// address and the subprotocol the server will confirm if it accepts.
pub struct UpgradeRequest<'a> {
    pub(crate) request: &'a Request<'a>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) protocol: Option<&'a str>,
}

impl<'a> UpgradeRequest<'a> {
    /// The whole request head (method, path, query, every header).
    pub fn request(&self) -> &'a Request<'a> {
        self.request
    }

    /// The request target's path, e.g. `/chat`.
    pub fn path(&self) -> &'a str {
        self.request.path
    }

    /// The query string after `?`, undecoded, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.request.query
    }

    /// The first header named `name` (case-insensitive) as text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.request.header_str(name)
    }

    /// The `Origin` header a browser sends (RFC 6454): check it against an allow-list to
    /// stop cross-site WebSocket hijacking.
    pub fn origin(&self) -> Option<&'a str> {
        self.request.origin()
    }

    /// The peer's address (`None` if the socket could not tell, e.g. already reset).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The subprotocol that will be confirmed (the first of [`Handler::protocols`] the
    /// client offered), if any.
    pub fn protocol(&self) -> Option<&'a str> {
        self.protocol
    }
}

/// Application callbacks. Only `upgrade` must be written (it says what a connection
/// carries); every other method has a default that does nothing.
///
/// Each loop has its own handler (see [`Server::bind`](super::Server::bind)); callbacks
/// run on that loop's thread and must not block.
pub trait Handler: 'static {
    /// The application's value per connection (use `()` for none: it costs nothing).
    type Data: 'static;

    /// Subprotocols the server speaks for this request (by path, for instance), most
    /// preferred first. The first the client offered is chosen; none is sent when
    /// nothing matches (RFC 6455 §4.2.2).
    fn protocols(&self, _req: &Request<'_>) -> &[&str] {
        &[]
    }

    /// Decides on an upgrade request (Origin allow-list, authentication, per-IP limits)
    /// and, when accepting, creates the connection's data from what the request carried.
    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<Self::Data>;

    /// The connection is open (the 101 is queued).
    fn open(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _data: &mut Self::Data) {}

    /// A complete text or binary message. The payload is borrowed, usually straight
    /// from the loop's receive buffer.
    fn message(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _data: &mut Self::Data,
        _msg: Payload<'_>,
    ) {
    }

    /// The connection is closed (or closing): `code` is the peer's close code, ours after
    /// a protocol error, or 1006 when TCP ended without a close frame. Called once, with
    /// the connection's data by value (dropped afterwards unless the handler keeps it).
    fn close(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _conn: ConnId,
        _data: Self::Data,
        _code: u16,
        _reason: &str,
    ) {
    }

    /// Unsent bytes fell to the low watermark after having been above it.
    fn drain(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _data: &mut Self::Data) {}

    /// A ping arrived (the pong is sent automatically).
    fn ping(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _data: &mut Self::Data, _payload: &[u8]) {
    }

    /// A pong arrived.
    fn pong(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _data: &mut Self::Data, _payload: &[u8]) {
    }

    /// A timer set with [`Ctx::set_timer`] for this connection came due (only while the
    /// connection is open); `token` is the value it was set with.
    fn timer(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _data: &mut Self::Data, _token: u64) {}

    /// A timer set with [`Ctx::set_loop_timer`] came due.
    fn loop_timer(&mut self, _ctx: &mut Ctx<'_>, _token: u64) {}
}

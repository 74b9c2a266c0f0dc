//! Several WebSocket endpoints on one listener, by exact path plus a fallback, each with
//! its own handler type, data type and subprotocols (uWebSockets'
//! `App().ws<UserData>("/path", {...})`). Static pages are served beside them by the
//! HTTP side as usual.
//!
//! The router is itself a [`Handler`]: its per-connection data remembers the route and
//! holds the route's own data boxed (a `Box` of a zero-sized type does not allocate, so
//! a route with `Data = ()` costs nothing extra). Per message, the cost is one indirect
//! call and a type check.

use std::any::Any;

use super::ctx::Ctx;
use super::handler::{ConnId, Handler, Payload, Upgrade, UpgradeRequest};
use crate::protocol::Request;

/// A handler with its data type erased, so routes of different types share one table.
trait Route {
    fn protocols(&self, req: &Request<'_>) -> &[&str];
    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<Box<dyn Any>>;
    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any);
    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, msg: Payload<'_>);
    fn close(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        data: Box<dyn Any>,
        code: u16,
        reason: &str,
    );
    fn drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any);
    fn ping(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, payload: &[u8]);
    fn pong(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, payload: &[u8]);
    fn timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, token: u64);
    fn loop_timer(&mut self, ctx: &mut Ctx<'_>, token: u64);
}

/// The data of a connection is always the route's own type: the router created it from
/// that route's `upgrade`.
fn data_of<D: 'static>(data: &mut dyn Any) -> &mut D {
    data.downcast_mut::<D>()
        .expect("a routed connection's data has its route's type")
}

impl<H: Handler> Route for H {
    fn protocols(&self, req: &Request<'_>) -> &[&str] {
        Handler::protocols(self, req)
    }

    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<Box<dyn Any>> {
        match Handler::upgrade(self, req) {
            Upgrade::Accept(d) => Upgrade::Accept(Box::new(d)),
            Upgrade::Reject(status) => Upgrade::Reject(status),
        }
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any) {
        Handler::open(self, ctx, conn, data_of(data))
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, msg: Payload<'_>) {
        Handler::message(self, ctx, conn, data_of(data), msg)
    }

    fn close(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        data: Box<dyn Any>,
        code: u16,
        reason: &str,
    ) {
        let data = *data
            .downcast::<H::Data>()
            .expect("a routed connection's data has its route's type");
        Handler::close(self, ctx, conn, data, code, reason)
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any) {
        Handler::drain(self, ctx, conn, data_of(data))
    }

    fn ping(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, payload: &[u8]) {
        Handler::ping(self, ctx, conn, data_of(data), payload)
    }

    fn pong(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, payload: &[u8]) {
        Handler::pong(self, ctx, conn, data_of(data), payload)
    }

    fn timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, data: &mut dyn Any, token: u64) {
        Handler::timer(self, ctx, conn, data_of(data), token)
    }

    fn loop_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        Handler::loop_timer(self, ctx, token)
    }
}

/// A routed connection's data: which route it belongs to, and that route's data.
pub struct Routed {
    route: usize,
    data: Box<dyn Any>,
}

impl Routed {
    /// The index of the route (in the order routes were added; the fallback last).
    pub fn route(&self) -> usize {
        self.route
    }
}

/// WebSocket endpoints by exact path, plus an optional fallback for every other path.
/// An upgrade to a path with no route and no fallback is refused with 404.
///
/// ```
/// use wsloop::apps::{chat::Chat, echo::Echo};
/// use wsloop::server::Router;
/// let router = Router::new().route("/chat", Chat::default()).route("/echo", Echo::default());
/// assert_eq!(router.len(), 2);
/// ```
#[derive(Default)]
pub struct Router {
    paths: Vec<Box<str>>,
    routes: Vec<Box<dyn Route + Send>>,
    has_fallback: bool,
    /// Browser origins allowed to upgrade (`None`: every origin).
    origins: Option<Vec<Box<str>>>,
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Router::default()
    }

    /// Serves `handler` at exactly `path` (no prefix matching; the query is ignored).
    /// Panics if `path` has a route already or the fallback was set (routes come first).
    pub fn route<H: Handler + Send>(mut self, path: &str, handler: H) -> Self {
        assert!(!self.has_fallback, "add routes before the fallback");
        assert!(
            !self.paths.iter().any(|p| &**p == path),
            "route {path} added twice"
        );
        self.paths.push(path.into());
        self.routes.push(Box::new(handler));
        self
    }

    /// Serves `handler` for every path without a route of its own.
    pub fn fallback<H: Handler + Send>(mut self, handler: H) -> Self {
        assert!(!self.has_fallback, "one fallback only");
        self.routes.push(Box::new(handler));
        self.has_fallback = true;
        self
    }

    /// Refuses (403) upgrades whose `Origin` header is not one of `origins` (compared
    /// ASCII-case-insensitively, e.g. `https://example.com`), against cross-site
    /// WebSocket hijacking. Requests without `Origin` (not from a browser) pass.
    pub fn allow_origins<S: AsRef<str>>(mut self, origins: &[S]) -> Self {
        self.origins = Some(origins.iter().map(|o| o.as_ref().into()).collect());
        self
    }

    /// Whether a request with this `Origin` header may upgrade.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (&self.origins, origin) {
            (None, _) | (_, None) => true,
            (Some(list), Some(o)) => list.iter().any(|a| a.eq_ignore_ascii_case(o)),
        }
    }

    /// Number of routes, the fallback included.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there is no route at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn find(&self, path: &str) -> Option<usize> {
        self.paths
            .iter()
            .position(|p| &**p == path)
            .or(self.has_fallback.then(|| self.routes.len() - 1))
    }
}

impl Handler for Router {
    type Data = Routed;

    fn protocols(&self, req: &Request<'_>) -> &[&str] {
        match self.find(req.path) {
            Some(r) => self.routes[r].protocols(req),
            None => &[],
        }
    }

    fn upgrade(&mut self, req: &UpgradeRequest<'_>) -> Upgrade<Routed> {
        if !self.origin_allowed(req.origin()) {
            return Upgrade::Reject(403);
        }
        let Some(route) = self.find(req.path()) else {
            return Upgrade::Reject(404);
        };
        match self.routes[route].upgrade(req) {
            Upgrade::Accept(data) => Upgrade::Accept(Routed { route, data }),
            Upgrade::Reject(status) => Upgrade::Reject(status),
        }
    }

    fn open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed) {
        self.routes[d.route].open(ctx, conn, &mut *d.data)
    }

    fn message(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed, msg: Payload<'_>) {
        self.routes[d.route].message(ctx, conn, &mut *d.data, msg)
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: Routed, code: u16, reason: &str) {
        self.routes[d.route].close(ctx, conn, d.data, code, reason)
    }

    fn drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed) {
        self.routes[d.route].drain(ctx, conn, &mut *d.data)
    }

    fn ping(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed, payload: &[u8]) {
        self.routes[d.route].ping(ctx, conn, &mut *d.data, payload)
    }

    fn pong(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed, payload: &[u8]) {
        self.routes[d.route].pong(ctx, conn, &mut *d.data, payload)
    }

    fn timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, d: &mut Routed, token: u64) {
        self.routes[d.route].timer(ctx, conn, &mut *d.data, token)
    }

    /// Loop timers carry no route: every route's `loop_timer` is called with the token
    /// (routes pick theirs by token value).
    fn loop_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) {
        for r in &mut self.routes {
            r.loop_timer(ctx, token);
        }
    }
}

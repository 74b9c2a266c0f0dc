//! The HTTP/1.1 side of a connection (RFC 9112 §9.3): request head → one response → the
//! next request, or the upgrade to WebSocket. Parsing and framing are sans-IO in
//! [`crate::protocol::http1`]; this file owns the exchange's state, bounds and deadlines:
//!
//! - A request head must arrive within the handshake timeout, counted from accept or
//!   from the moment the previous response was written, never reset per byte.
//! - A response in progress has its own, progress-based deadline: the idle timeout,
//!   pushed back whenever the kernel takes bytes of it. A slow but steady download is
//!   never cut by the head's deadline.
//! - A request body is read past (bounded by `max_request_body`) before the next head is
//!   parsed, so it can never be taken for a request. Framing errors in the head are
//!   answered 400/413/501 and the connection closed; a body that turns out malformed or
//!   too large after its request was answered closes the connection without a second
//!   response (which the client would take for the answer to its next request).
//! - Pipelined requests are answered in order, parsed in place from the receive buffer;
//!   at most [`MAX_REQUESTS_PER_TURN`] per connection per loop iteration, and none while
//!   the connection's unsent output is above `max_backpressure` (reading stops until it
//!   drains, as it does for echo).

use log::debug;

use super::connection::{flags, State};
use super::event_loop::Inner;
use super::handler::{Handler, Upgrade, UpgradeRequest};
use super::metrics;
use super::static_files::{self, FileBody};
use crate::protocol::handshake::{validate_upgrade, write_accept_response};
use crate::protocol::http1::{
    find_head_end, parse_request, write_response, BodyReader, HttpError, Persist, Request,
};

/// The media type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Requests answered per connection per loop iteration before it yields to the others.
pub const MAX_REQUESTS_PER_TURN: u32 = 16;

/// Where an HTTP/1.1 exchange is. Input waits while a response is being streamed, so the
/// two directions never need to be tracked independently.
#[derive(Debug)]
pub enum Http {
    /// Waiting for (the rest of) a request head; `scanned` is how far the search for its
    /// end got, so a slow head is scanned once in total. `sent` is the previous response's
    /// bytes still in the kernel's send queue when the head's deadline last came
    /// (`u32::MAX`: not looked yet): while the client is still receiving the previous
    /// response, it cannot be blamed for not sending the next request.
    Head { scanned: u32, sent: u32 },
    /// Reading past the body of a request that has been answered.
    Body(Box<BodyReader>),
    /// Streaming a file response; the next request waits in the kernel until it is done.
    File(Box<Streaming>),
}

/// A file response in progress, and what follows it.
#[derive(Debug)]
pub struct Streaming {
    pub file: FileBody,
    /// Whether the connection stays open after the response.
    pub persist: Persist,
    /// The body of the request being answered, still to be read past.
    pub then: Option<BodyReader>,
}

/// What answering one request head led to.
enum Next {
    /// A response is queued; the connection stays in the HTTP state.
    Answered,
    /// Upgraded (the handler's data is stored); `open` is owed.
    Upgraded,
    /// The connection is closing (an error, `Connection: close`).
    Closed,
}

impl<H: Handler> Inner<H> {
    /// Answers the requests in the connection's held input followed by the first `n`
    /// bytes of `rbuf`, in place; only what cannot be answered yet is kept.
    pub(super) fn process_http(&mut self, idx: u32, n: usize) {
        let rbuf = std::mem::take(&mut self.rbuf);
        let c = &mut self.core.conns[idx as usize];
        let mut held = std::mem::take(&mut c.rx);
        let from_held = !held.is_empty();
        if from_held {
            held.extend_from_slice(&rbuf[..n]);
        }
        let buf: &[u8] = if from_held { &held } else { &rbuf[..n] };
        let len = buf.len();
        let (off, upgraded) = self.answer_requests(idx, buf);
        let c = &mut self.core.conns[idx as usize];
        if off < len && matches!(c.state, State::Http(_) | State::Open) {
            if from_held {
                held.drain(..off);
                c.rx = held;
            } else {
                let mut kept = self.core.pool.take();
                kept.extend_from_slice(&rbuf[off..n]);
                c.rx = kept;
            }
        } else {
            // Back to the pool: a connection between requests holds no input buffer.
            self.core.pool.put(held);
        }
        self.rbuf = rbuf;
        if upgraded {
            // What `open` publishes (a join notice) is this connection's doing: under
            // `pace` a congested room holds the newcomer's input, not the room.
            self.core.producer = super::pacing::Producer::Conn(idx);
            self.with_data(idx, |h, ctx, id, d| h.open(ctx, id, d));
            self.core.producer = super::pacing::Producer::Nobody;
            self.core.pause_if_above_high(idx);
            self.run_notices();
            // Frames pipelined behind the upgrade request.
            if !self.core.conns[idx as usize].rx.is_empty() {
                self.process_frames(idx, 0);
            }
        }
        self.run_notices();
    }

    /// Answers complete requests from the start of `buf`; returns how many bytes were
    /// used, and whether the connection upgraded.
    fn answer_requests(&mut self, idx: u32, buf: &[u8]) -> (usize, bool) {
        let max_head = self.core.config.max_header_size;
        let mut off = 0;
        let mut answered = 0;
        loop {
            let c = &mut self.core.conns[idx as usize];
            if c.has(flags::OUT_PAUSED | flags::YIELDED) {
                return (off, false);
            }
            let State::Http(http) = &mut c.state else {
                return (off, false);
            };
            match http {
                Http::File(_) => return (off, false),
                Http::Body(reader) => match reader.consume(&buf[off..]) {
                    Ok(used) => {
                        off += used;
                        if !reader.is_done() {
                            return (off, false);
                        }
                        *http = Http::Head {
                            scanned: 0,
                            sent: u32::MAX,
                        };
                    }
                    Err(e) => {
                        // The request was answered already: a second response would be
                        // taken for the answer to the next request. Close without one.
                        debug!("request body (slot {idx}): {e}; closing");
                        self.core.linger(idx);
                        return (buf.len(), false);
                    }
                },
                Http::Head { scanned, .. } => {
                    if off == buf.len() {
                        return (off, false);
                    }
                    if answered == MAX_REQUESTS_PER_TURN {
                        self.core.yield_turn(idx);
                        return (off, false);
                    }
                    let mut s = *scanned as usize;
                    let end = match find_head_end(&buf[off..], &mut s, max_head) {
                        Ok(Some(end)) => end,
                        Ok(None) => {
                            *scanned = s as u32;
                            return (off, false);
                        }
                        Err(e) => {
                            self.refuse(idx, e, false);
                            return (buf.len(), false);
                        }
                    };
                    *scanned = 0;
                    let head = &buf[off..off + end];
                    off += end;
                    answered += 1;
                    match self.respond(idx, head) {
                        Next::Answered => {
                            let limit = self.core.config.max_backpressure;
                            if self.core.conns[idx as usize].out.len() > limit {
                                // Stop answering (and reading) until the client reads.
                                self.core.pause(idx, flags::OUT_PAUSED);
                            }
                        }
                        Next::Upgraded => return (off, true),
                        Next::Closed => return (buf.len(), false),
                    }
                }
            }
        }
    }

    /// Answers one complete request head: upgrade, refusal or static file.
    fn respond(&mut self, idx: u32, head: &[u8]) -> Next {
        let req = match parse_request(head) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(idx, e, head.starts_with(b"HEAD "));
                return Next::Closed;
            }
        };
        let head_only = req.is_head();
        if !req.wants_websocket() {
            let body = match BodyReader::new(req.body, self.core.config.max_request_body as u64) {
                Ok(b) => b,
                Err(e) => {
                    self.refuse(idx, e, head_only);
                    return Next::Closed;
                }
            };
            let persist = if req.keep_alive() {
                Persist::KeepAlive
            } else {
                Persist::Close
            };
            let resp = if self.core.config.metrics && req.path == "/metrics" {
                self.metrics_response(&req, persist)
            } else {
                static_files::respond(&req, self.core.config.www.as_deref(), persist)
            };
            debug!(
                "{} {} (slot {idx}): {}",
                req.method,
                req.path,
                String::from_utf8_lossy(resp.bytes.get(9..12).unwrap_or_default())
            );
            self.core.queue_bytes(idx, &resp.bytes);
            let next = match (resp.body, persist, body) {
                (Some(file), _, then) => Http::File(Box::new(Streaming {
                    file,
                    persist,
                    then,
                })),
                (None, Persist::Close, _) => {
                    // Whatever follows (a body, more requests) is read and dropped.
                    self.core.linger(idx);
                    return Next::Closed;
                }
                (None, Persist::KeepAlive, Some(reader)) => Http::Body(Box::new(reader)),
                (None, Persist::KeepAlive, None) => Http::Head {
                    scanned: 0,
                    sent: u32::MAX,
                },
            };
            self.core.conns[idx as usize].state = State::Http(next);
            let t = self.core.ticks.idle;
            self.core.set_deadline(idx, t);
            return Next::Answered;
        }
        let protocols = self.handler.protocols(&req);
        let upgrade = match validate_upgrade(&req, protocols) {
            Ok(u) => u,
            Err(e) => {
                self.refuse(idx, e, head_only);
                return Next::Closed;
            }
        };
        // Owned, so the handler may be borrowed mutably below.
        let protocol: Option<Box<str>> = upgrade.protocol.map(|i| protocols[i].into());
        let peer = self.core.conns[idx as usize]
            .stream
            .socket()
            .peer_addr()
            .ok();
        let up = UpgradeRequest {
            request: &req,
            peer,
            protocol: protocol.as_deref(),
        };
        let data = match self.handler.upgrade(&up) {
            Upgrade::Accept(data) => data,
            Upgrade::Reject(status) => {
                debug!(
                    "upgrade {} refused by the handler (slot {idx}): HTTP {status}",
                    req.path
                );
                self.core.metrics.on_refused(status);
                let mut resp = Vec::new();
                write_response(&mut resp, status, &[], b"refused\n", Persist::Close, false);
                self.core.queue_bytes(idx, &resp);
                self.core.linger(idx);
                return Next::Closed;
            }
        };
        debug!("upgrade {} (slot {idx})", req.path);
        if self.data.len() <= idx as usize {
            self.data.resize_with(idx as usize + 1, || None);
        }
        self.data[idx as usize] = Some(data);
        let deflate = self.core.deflate.as_deref_mut().and_then(|z| {
            let agreed = z.negotiate(&req)?;
            z.open(idx, agreed);
            Some(agreed)
        });
        let mut resp = Vec::with_capacity(160);
        write_accept_response(
            &mut resp,
            &upgrade.accept,
            protocol.as_deref(),
            deflate.as_ref(),
        );
        self.core.queue_bytes(idx, &resp);
        let c = &mut self.core.conns[idx as usize];
        c.decoder.set_permessage_deflate(deflate.is_some());
        c.state = State::Open;
        c.flags |= flags::OPENED;
        let t = self.core.ticks.idle_half;
        self.core.set_deadline(idx, t);
        Next::Upgraded
    }

    /// `GET /metrics` (with `Config::metrics`): every loop's last published counters, this
    /// loop's as of now, in the Prometheus text format 0.0.4; other methods get 405.
    fn metrics_response(&mut self, req: &Request<'_>, persist: Persist) -> static_files::Response {
        let mut bytes = Vec::new();
        if !matches!(req.method, "GET" | "HEAD") {
            let allow = [("Allow", "GET, HEAD")];
            write_response(&mut bytes, 405, &allow, b"", persist, false);
            return static_files::Response { bytes, body: None };
        }
        self.core.publish_metrics();
        let mut text = String::with_capacity(8 << 10);
        metrics::render(&self.core.handle.shared.metrics, &mut text);
        if let Some(stats) = self.core.handle.backplane_stats() {
            metrics::render_backplane(&stats, &mut text);
        }
        write_response(
            &mut bytes,
            200,
            &[("Content-Type", METRICS_CONTENT_TYPE)],
            text.as_bytes(),
            persist,
            req.is_head(),
        );
        static_files::Response { bytes, body: None }
    }

    /// Answers with the error's status and closes (after the client has the answer).
    fn refuse(&mut self, idx: u32, e: HttpError, head_only: bool) {
        debug!("refusing request (slot {idx}): {e}");
        self.core.metrics.on_refused(e.status());
        let mut resp = Vec::new();
        e.write_response(&mut resp, head_only);
        self.core.queue_bytes(idx, &resp);
        self.core.linger(idx);
    }

    /// After a write in the HTTP state: push the progress deadline, stream the next piece
    /// of a file, or, once the response is out, wait for the next request.
    pub(super) fn http_after_flush(&mut self, idx: u32, progressed: bool, emptied: bool) {
        let core = &mut self.core;
        let c = &mut core.conns[idx as usize];
        let State::Http(http) = &mut c.state else {
            return;
        };
        if !emptied || !c.out.is_empty() {
            if progressed {
                let t = core.ticks.idle;
                core.set_deadline(idx, t);
            }
            return;
        }
        match http {
            Http::File(s) if s.file.remaining > 0 => {
                let before = c.out.len();
                let refilled = s.file.refill(c.out.append(&mut core.pool));
                core.metrics.buffered_bytes += (c.out.len() - before) as u64;
                if refilled.is_err() {
                    // The file shrank under us: the promised length cannot be honoured.
                    core.release(idx);
                    return;
                }
                core.mark_dirty(idx);
                let t = core.ticks.idle;
                core.set_deadline(idx, t);
            }
            Http::File(s) => {
                let (persist, then) = (s.persist, s.then.take());
                if persist == Persist::Close {
                    core.linger(idx);
                    return;
                }
                *http = match then {
                    Some(reader) => Http::Body(Box::new(reader)),
                    None => Http::Head {
                        scanned: 0,
                        sent: u32::MAX,
                    },
                };
                // Megabytes may still sit in the socket buffers: the head's deadline
                // waits while they move (see `Http::Head::sent`).
                let t = core.ticks.handshake;
                core.set_deadline(idx, t);
                // Input was held back while the file went out: read it now.
                if core.conns[idx as usize].readable() {
                    core.resumed.push(idx);
                }
                self.run_notices();
            }
            Http::Head { .. } | Http::Body(_) => {
                // The response is out: the next request has the head's deadline.
                let t = core.ticks.handshake;
                core.set_deadline(idx, t);
            }
        }
    }
}

//! What happens when a connection's deadline passes: a keep-alive ping, then an idle
//! close (1001) for WebSockets; every other state (a request head or response that took
//! too long, a close handshake or linger past its timeout) drops the connection.

use log::debug;

use super::connection::{flags, State};
use super::event_loop::Inner;
use super::handler::Handler;
use super::http::Http;
use super::socket_queue::still_receiving;
use crate::protocol::close;
use crate::protocol::frame::OpCode;

impl<H: Handler> Inner<H> {
    pub(super) fn expire_timers(&mut self) {
        let mut due = Vec::new();
        let now = self.core.now;
        self.core.wheel.expire(now, &mut due);
        for e in due {
            let Some(c) = self.core.conns.get_mut(e.index as usize) else {
                continue;
            };
            if c.generation != e.generation || c.armed != e.deadline {
                continue; // stale: the connection was replaced or re-filed earlier
            }
            if c.deadline > now {
                // Activity moved the deadline: file the entry again, lazily.
                c.armed = c.deadline;
                let d = c.deadline;
                self.core
                    .wheel
                    .insert(super::timer::Entry { deadline: d, ..e });
                continue;
            }
            let idx = e.index;
            c.armed = u32::MAX;
            // The server itself stopped reading this connection (held by pacing, or its
            // own output above the high watermark): its input, a pong among it, is
            // waiting unread, so silence is not idleness. Held by pacing: it waits for
            // others (who have their own timeout). Paused by its own output: not idle
            // while the kernel still takes that output.
            let server_paused = c.is_open()
                && (c.has(flags::PACED)
                    || (c.has(flags::OUT_PAUSED) && {
                        let before = c.out.len();
                        self.core.flush_now(e.index);
                        self.core.mark_dirty(e.index);
                        self.core.conns[e.index as usize].out.len() < before
                    }));
            let c = &mut self.core.conns[e.index as usize];
            if server_paused {
                c.flags &= !flags::PING_SENT;
                let t = self.core.ticks.idle_half;
                self.core.set_deadline(e.index, t);
                continue;
            }
            match c.state {
                State::Open if !c.has(flags::PING_SENT) => {
                    c.flags |= flags::PING_SENT;
                    self.core.queue_frame(idx, OpCode::Ping, b"wsloop");
                    let t = self.core.ticks.idle_half;
                    self.core.set_deadline(idx, t);
                }
                State::Open => {
                    debug!("idle timeout (slot {idx})");
                    self.core
                        .start_close(idx, close::GOING_AWAY, "idle timeout");
                }
                // Not while a TLS handshake is running: what the kernel holds then is our
                // handshake reply, and a client that does not read it is stalling, not
                // receiving a response; that deadline stays fixed from accept. (After
                // the handshake nothing of it is left queued: the client read the whole
                // flight to send its Finished, and TLS 1.3 with no tickets sends nothing
                // after that; TLS 1.2's last 51 bytes fit its emptied window.)
                State::Http(Http::Head { ref mut sent, .. })
                    if !c.stream.is_handshaking()
                        && let Some(q) = still_receiving(c.stream.socket(), *sent) =>
                {
                    // The previous response is still on its way to the client (it sat in
                    // the socket buffers when the kernel took it): wait, while it moves.
                    *sent = q;
                    let t = self.core.ticks.idle;
                    self.core.set_deadline(idx, t);
                }
                _ => {
                    debug!("timeout in {:?} (slot {idx})", c.state);
                    if self.shutdown_deadline.is_some()
                        && matches!(c.state, State::Closing | State::Linger)
                    {
                        // Cut at the close timeout, which the shutdown deadline equals:
                        // the shutdown log counts it.
                        self.shutdown_cut += 1;
                    }
                    self.core.release(idx);
                }
            }
            self.run_notices();
        }
    }

    /// Calls the application timers that came due, at most `MAX_TIMERS_PER_TURN` (the
    /// rest are still due, so the next poll does not sleep).
    pub(super) fn fire_app_timers(&mut self) {
        let now = self.core.now;
        for _ in 0..super::app_timers::MAX_TIMERS_PER_TURN {
            let Some(t) = self.core.timers.pop_due(now) else {
                break;
            };
            match t.conn {
                Some(conn) => {
                    let Some(idx) = self.core.slot(conn) else {
                        continue;
                    };
                    if self.core.conns[idx as usize].is_open() {
                        self.with_data(idx, |h, ctx, id, d| h.timer(ctx, id, d, t.token));
                    }
                }
                None => {
                    let (h, mut ctx) = self.ctx();
                    h.loop_timer(&mut ctx, t.token);
                }
            }
            self.run_notices();
        }
    }
}

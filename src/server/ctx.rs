//! The handler's side of the loop: [`Ctx`], what every callback acts through.

use std::time::Duration;

use super::config::{SlowSubscriber, MAX_TIMEOUT};
use super::connection::flags;
use super::core::Core;
use super::handle::{encode_shared, ServerHandle};
use super::handler::{ConnId, Payload, Published, SendStatus};
use super::mailbox::Command;
use super::pacing::Producer;
use super::timer::Wheel;
use crate::protocol::frame::OpCode;

/// The handler's view of the loop: send, close, publish, read backpressure.
pub struct Ctx<'a> {
    pub(crate) core: &'a mut Core,
}

impl Ctx<'_> {
    /// Sends a text or binary message.
    ///
    /// - [`SendStatus::Sent`]: queued; the connection's unsent bytes are within the high
    ///   watermark.
    /// - [`SendStatus::Backpressure`]: queued, but now above the high watermark: stop
    ///   sending until [`Handler::drain`](super::Handler::drain) (the core already stops
    ///   reading a connection whose *own* output is above it).
    /// - [`SendStatus::Dropped`]: refused, the connection was above `max_backpressure`.
    /// - [`SendStatus::Closed`]: no such open connection.
    ///
    /// To a connection of another loop the message is handed over (encoded once) at the
    /// end of this iteration, through that loop's bounded mailbox: the status is the
    /// mailbox's (`Backpressure`: it is at its high mark, and the connection whose
    /// message is being handled has its input paused until it has room; `Dropped`: at
    /// its bound); that loop applies `max_backpressure` when it arrives.
    pub fn send(&mut self, conn: ConnId, msg: Payload<'_>) -> SendStatus {
        if conn.loop_id != self.core.loop_id {
            let l = conn.loop_id as usize;
            if l >= self.core.outbox.len() {
                return SendStatus::Closed;
            }
            let frame = encode_shared(msg);
            return self.core.hand_over(l, Command::Send { conn, frame });
        }
        let Some(idx) = self.core.slot(conn) else {
            return SendStatus::Closed;
        };
        let status = match msg {
            Payload::Text(t) => self.core.send(idx, OpCode::Text, t.as_bytes()),
            Payload::Binary(b) => self.core.send(idx, OpCode::Binary, b),
        };
        // Under `pace`, a message sent to another connection of this loop holds its
        // producer like a publish does (and like a send to another loop's connection,
        // which the receiving loop paces): a relay loses nothing for a reader that
        // reads. A connection's output to itself pauses its own input instead.
        let own = matches!(self.core.producer, Producer::Conn(p) if p == idx);
        if status == SendStatus::Backpressure
            && !own
            && self.core.config.slow_subscriber == SlowSubscriber::Pace
            && self.core.above_high_after_flush(idx, self.core.high)
        {
            self.core.note_congested(idx);
        }
        status
    }

    /// [`Ctx::send`] of a text message.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> SendStatus {
        self.send(conn, Payload::Text(text))
    }

    /// [`Ctx::send`] of a binary message.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> SendStatus {
        self.send(conn, Payload::Binary(data))
    }

    /// Sends a ping (payload truncated to 125 bytes).
    pub fn ping(&mut self, conn: ConnId, payload: &[u8]) -> SendStatus {
        let Some(idx) = self.core.slot(conn) else {
            return SendStatus::Closed;
        };
        self.core
            .send(idx, OpCode::Ping, &payload[..payload.len().min(125)])
    }

    /// Starts the closing handshake with `code` and `reason` (truncated to fit a frame).
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        if conn.loop_id != self.core.loop_id {
            if (conn.loop_id as usize) < self.core.outbox.len() {
                let reason = reason.into();
                let cmd = Command::Close { conn, code, reason };
                self.core.hand_over(conn.loop_id as usize, cmd);
            }
            return;
        }
        if let Some(idx) = self.core.slot(conn) {
            self.core.start_close(idx, code, reason);
        }
    }

    /// Unsent bytes of the connection (the browser's `bufferedAmount`).
    pub fn buffered_amount(&self, conn: ConnId) -> usize {
        self.core.buffered_amount(conn)
    }

    /// The per-connection limit on unsent bytes.
    pub fn max_backpressure(&self) -> usize {
        self.core.config.max_backpressure
    }

    /// The high watermark in effect (`Config::effective_high_watermark`): above it a
    /// connection's input is not read and sends report `Backpressure`.
    pub fn high_watermark(&self) -> usize {
        self.core.high
    }

    /// Stops reading the connection (TCP pushes back on the peer) until `resume`.
    pub fn pause(&mut self, conn: ConnId) {
        if let Some(idx) = self.core.slot(conn) {
            self.core.pause(idx, flags::PAUSED);
        }
    }

    /// Reads the connection again after [`Ctx::pause`].
    pub fn resume(&mut self, conn: ConnId) {
        if let Some(idx) = self.core.slot(conn) {
            self.core.resume(idx, flags::PAUSED);
        }
    }

    /// Subscribes `conn` to `topic` (exact match); false if it was already subscribed
    /// or is not open.
    pub fn subscribe(&mut self, conn: ConnId, topic: &str) -> bool {
        self.core
            .slot(conn)
            .is_some_and(|idx| self.core.subscribe(idx, topic))
    }

    /// Unsubscribes `conn` from `topic`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) -> bool {
        self.core
            .slot(conn)
            .is_some_and(|idx| self.core.unsubscribe(idx, topic))
    }

    /// Sends `msg` to every subscriber of `topic` on every loop (encoded once) and, with a
    /// backplane, on every other instance. Reports this loop's subscribers: how many it
    /// was queued for, how many of those are above the high watermark now (under
    /// [`SlowSubscriber::Pace`](super::config::SlowSubscriber::Pace) the connection whose
    /// message is being handled is held until they drain), and how many were closed as
    /// slow instead (past `max_backpressure`). Other loops deliver it when their mailbox
    /// gets to it.
    pub fn publish(&mut self, topic: &str, msg: Payload<'_>) -> Published {
        match msg {
            Payload::Text(t) => self.core.publish(topic, OpCode::Text, t.as_bytes()),
            Payload::Binary(b) => self.core.publish(topic, OpCode::Binary, b),
        }
    }

    /// Connections this loop currently holds (any state).
    pub fn connections(&self) -> usize {
        self.core.conns.len()
    }

    /// This loop's number (0 .. threads).
    pub fn loop_id(&self) -> usize {
        self.core.loop_id as usize
    }

    /// A handle for other threads (publish, send, close, defer, stop).
    pub fn handle(&self) -> ServerHandle {
        self.core.handle.clone()
    }

    /// Calls [`Handler::timer`](super::Handler::timer) for `conn` with `token` after
    /// `delay` (rounded up to the loop's 100 ms tick; at most 24 h), if the connection
    /// is still open then. Timers cannot be cancelled: ignore a stale `token` instead.
    /// False if nothing was set: no such connection, or the loop already holds
    /// 2^20 pending timers (`app_timers::MAX_APP_TIMERS`).
    pub fn set_timer(&mut self, conn: ConnId, delay: Duration, token: u64) -> bool {
        if self.core.slot(conn).is_none() {
            return false;
        }
        let due = self.core.now + Wheel::ticks(delay.min(MAX_TIMEOUT));
        self.core.timers.add(due, Some(conn), token)
    }

    /// Calls [`Handler::loop_timer`](super::Handler::loop_timer) with `token` after
    /// `delay` (rounded up to the loop's 100 ms tick; at most 24 h). False if the loop
    /// already holds 2^20 pending timers.
    pub fn set_loop_timer(&mut self, delay: Duration, token: u64) -> bool {
        let due = self.core.now + Wheel::ticks(delay.min(MAX_TIMEOUT));
        self.core.timers.add(due, None, token)
    }
}

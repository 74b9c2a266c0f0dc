//! The WebSocket read path: frames parsed in place from the loop's receive buffer and
//! handed to the handler as messages; control frames answered here.

use log::debug;

use super::connection::State;
use super::core::Core;
use super::ctx::Ctx;
use super::event_loop::{run_notices, Inner};
use super::handler::{Handler, Payload};
use super::pacing::Producer;
use crate::protocol::close;
use crate::protocol::deflate::Inflated;
use crate::protocol::frame::OpCode;
use crate::protocol::{Decoded, Decoder, Message, Role};

impl<H: Handler> Inner<H> {
    /// Parses frames from the connection's held bytes followed by the first `n` bytes of
    /// `rbuf`. Frames whole in `rbuf` are parsed in place (zero-copy); only an
    /// incomplete tail, or input left when reading pauses, is copied to the connection.
    pub(super) fn process_frames(&mut self, idx: u32, n: usize) {
        let max = self.core.config.max_message_size;
        let c = &mut self.core.conns[idx as usize];
        let mut decoder = std::mem::replace(&mut c.decoder, Decoder::new(Role::Server));
        let mut held = std::mem::take(&mut c.rx);
        let from_held = !held.is_empty();
        if from_held {
            held.extend_from_slice(&self.rbuf[..n]);
        }
        let buf: &mut [u8] = if from_held {
            &mut held
        } else {
            &mut self.rbuf[..n]
        };
        let mut off = 0;
        loop {
            let c = &self.core.conns[idx as usize];
            if !c.readable() || !matches!(c.state, State::Open | State::Closing) {
                break;
            }
            match decoder.decode(&mut buf[off..], max) {
                Ok(Decoded::Incomplete { .. }) => break,
                Ok(Decoded::Fragment { consumed }) => off += consumed,
                Ok(Decoded::Message { consumed, message }) => {
                    off += consumed;
                    let data = self.data.get_mut(idx as usize).and_then(Option::as_mut);
                    // What the handler publishes now is this connection's doing: pacing
                    // holds its input if a subscriber it reaches is congested.
                    self.core.producer = Producer::Conn(idx);
                    dispatch(&mut self.core, &mut self.handler, data, idx, message);
                    self.core.producer = Producer::Nobody;
                    self.core.pause_if_above_high(idx);
                    run_notices(&mut self.core, &mut self.handler, &mut self.data);
                }
                Err(e) => {
                    debug!("protocol error (slot {idx}): {e}");
                    self.core.fail(idx, e.close_code(), e.reason());
                    off = buf.len();
                    break;
                }
            }
        }
        let c = &mut self.core.conns[idx as usize];
        let keep = matches!(c.state, State::Open | State::Closing) && off < buf.len();
        if keep {
            if from_held {
                held.drain(..off);
            } else {
                held = self.core.pool.take();
                held.extend_from_slice(&self.rbuf[off..n]);
            }
            c.rx = held;
        } else {
            // Back to the pool: a connection between frames holds no input buffer.
            self.core.pool.put(held);
        }
        c.decoder = decoder;
        self.run_notices();
    }
}

/// A compressed message that inflates to at least this many bytes ends its connection's
/// turn for the loop iteration (the rest of its input waits for the next one).
const INFLATE_TURN_BUDGET: usize = 256 << 10;

/// Hands one decoded message to the handler (or answers it, for control frames).
fn dispatch<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    data: Option<&mut H::Data>,
    idx: u32,
    message: Message<'_>,
) {
    let id = core.id(idx);
    if matches!(
        message,
        Message::Text(_) | Message::Binary(_) | Message::Compressed { .. }
    ) {
        core.metrics.messages_in += 1;
    }
    // Data exists exactly while the connection is open (set on upgrade, taken by close).
    let (open, data) = match data {
        Some(d) if core.conns[idx as usize].is_open() => (true, Some(d)),
        _ => (false, None),
    };
    match (message, data) {
        (Message::Text(t), Some(d)) => handler.message(&mut Ctx { core }, id, d, Payload::Text(t)),
        (Message::Binary(b), Some(d)) => {
            handler.message(&mut Ctx { core }, id, d, Payload::Binary(b))
        }
        (Message::Compressed { text, data }, Some(d)) => {
            let Some(z) = core.deflate.as_deref_mut() else {
                // The decoder hands these out only after deflate was agreed.
                return core.fail(idx, close::PROTOCOL_ERROR, "unexpected RSV1");
            };
            let mut buf = z.take_buffer();
            let max = core.config.max_message_size;
            match z.inflate(idx, text, data, max, &mut buf) {
                Ok(Inflated::Text(t)) => {
                    handler.message(&mut Ctx { core }, id, d, Payload::Text(t))
                }
                Ok(Inflated::Binary(b)) => {
                    handler.message(&mut Ctx { core }, id, d, Payload::Binary(b))
                }
                Err(e) => {
                    debug!("permessage-deflate error (slot {idx}): {e}");
                    core.fail(idx, e.close_code(), e.reason());
                }
            }
            if buf.len() >= INFLATE_TURN_BUDGET && core.conns[idx as usize].is_open() {
                // Inflating costs CPU out of proportion to the bytes read (a 16 KiB frame
                // can inflate to the message limit): one big message ends the
                // connection's turn, so a few such clients cannot stall the loop.
                core.yield_turn(idx);
            }
            if let Some(z) = core.deflate.as_deref_mut() {
                z.put_buffer(buf);
            }
        }
        (Message::Ping(p), Some(d)) => {
            // Every ping is answered (RFC 6455 §5.5.2). Pongs count against the write
            // limit like any output the connection causes: above the high watermark
            // reading stops until drained (`pause_if_above_high`, after this callback)
            // rather than queue pongs without bound.
            core.queue_frame(idx, OpCode::Pong, p);
            handler.ping(&mut Ctx { core }, id, d, p);
        }
        (Message::Pong(p), Some(d)) => handler.pong(&mut Ctx { core }, id, d, p),
        (Message::Close(frame), _) => {
            if open {
                // Echo the peer's code (none if it sent none), then close TCP.
                match frame.code {
                    Some(code) => core.queue_close_frame(idx, code, frame.reason),
                    None => core.queue_frame(idx, OpCode::Close, &[]),
                }
                core.notify_closed(idx, frame.code_or_no_status(), frame.reason);
            }
            core.linger(idx);
        }
        // Data after our close frame is read and dropped (RFC 6455 §1.4).
        _ => {}
    }
}

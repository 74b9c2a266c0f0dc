//! One connection: its socket, its explicit state, and only the memory that state needs.

use super::http::Http;
use super::transport::Transport;
use super::write_buffer::WriteBuffer;
use crate::protocol::Decoder;

/// Where a connection is in its life. Buffers live in [`Conn`] and are empty (no heap)
/// unless the state has bytes to hold.
#[derive(Debug)]
pub enum State {
    /// An HTTP/1.1 exchange: a request head (an upgrade request, or a plain request on a
    /// keep-alive connection), a request body being read past, or a file response being
    /// streamed ([`Http`]).
    Http(Http),
    /// WebSocket open.
    Open,
    /// Our close frame is queued; waiting for the peer's (until the close timeout).
    Closing,
    /// Last bytes queued (an HTTP error or the final close frame): once they are written
    /// the write side is shut down and input is read and dropped until the peer's FIN
    /// (or the close timeout), so the peer sees our last bytes rather than a reset.
    Linger,
    /// Released; the slot is freed after the current batch of events.
    Closed,
}

/// Bits of [`Conn::flags`].
pub mod flags {
    /// Queued in the loop's list of connections to flush this iteration.
    pub const DIRTY: u16 = 1;
    /// The kernel refused bytes; wait for a WRITABLE event before writing again.
    pub const WRITE_BLOCKED: u16 = 1 << 1;
    /// The handler paused reading ([`Ctx::pause`](crate::server::Ctx::pause)).
    pub const PAUSED: u16 = 1 << 2;
    /// The core paused reading: the connection's own unsent output (what its messages
    /// made the handler send, pongs, HTTP responses to pipelined requests) went past the
    /// high watermark; reading resumes at the low watermark.
    pub const OUT_PAUSED: u16 = 1 << 3;
    /// Unsent bytes went above the low watermark; `drain` fires when they fall back.
    pub const ABOVE_LOW: u16 = 1 << 4;
    /// A keep-alive ping is out and unanswered by any input.
    pub const PING_SENT: u16 = 1 << 5;
    /// The write side was shut down (Linger).
    pub const SHUT_WR: u16 = 1 << 6;
    /// The handler's `open` ran, so its `close` is owed exactly once.
    pub const OPENED: u16 = 1 << 7;
    /// The connection used up its share of work this iteration with input left (held,
    /// or still in the socket): it continues next iteration, after the others had theirs.
    pub const YIELDED: u16 = 1 << 8;
    /// Pacing holds this connection's input: a subscriber it published to is above the
    /// high watermark, or a loop it handed messages to has a full mailbox (`pacing.rs`).
    pub const PACED: u16 = 1 << 9;
    /// A subscriber above the high watermark under `pace` (an entry in `Pacing`).
    pub const CONGESTED: u16 = 1 << 10;
    /// The kernel took bytes of a congested subscriber since the last sweep.
    pub const PROGRESS: u16 = 1 << 11;
}

#[derive(Debug)]
pub struct Conn {
    /// The socket, or TLS over it (the TLS state boxed, so a plain connection pays 12
    /// bytes for the enum).
    pub stream: Transport,
    pub generation: u32,
    pub flags: u16,
    pub state: State,
    /// Unsent output.
    pub out: WriteBuffer,
    /// Unparsed input: an incomplete frame or request head, or input left when reading
    /// paused. Empty (no heap) on an idle connection.
    pub rx: Vec<u8>,
    pub decoder: Decoder,
    /// Tick at which the state's timer fires; activity only moves this field.
    pub deadline: u32,
    /// Deadline of this connection's entry in the timer wheel.
    pub armed: u32,
    /// Ids of the topics this connection is subscribed to.
    pub topics: Vec<u32>,
}

impl Conn {
    #[inline]
    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    /// Input may be read and parsed. A file response in progress holds input back too:
    /// HTTP/1.1 answers requests in order, so the next one waits in the kernel (and TCP
    /// pushes back on the client) rather than in our memory.
    #[inline]
    pub fn readable(&self) -> bool {
        !self.has(flags::PAUSED | flags::OUT_PAUSED | flags::YIELDED | flags::PACED)
            && !matches!(self.state, State::Closed | State::Http(Http::File(_)))
    }

    #[inline]
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }
}

// Idle connections must stay cheap: this is most of what one costs in user space.
const _: () = assert!(std::mem::size_of::<Conn>() <= 160);

#[cfg(test)]
mod tests {
    #[test]
    fn conn_size() {
        println!("Conn is {} bytes", std::mem::size_of::<super::Conn>());
        println!(
            "slab entry is {} bytes",
            std::mem::size_of::<slab::Slab<super::Conn>>()
        );
    }
}

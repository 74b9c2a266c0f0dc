//! What the loop does for TLS connections beyond [`Transport`](super::transport::Transport)
//! itself: a bound on handshakes advanced per iteration and on the bytes a handshake may
//! take, ciphertext rustls kept after a read, the peer's close_notify, and SIGHUP
//! (certificate reload).
//!
//! A TLS connection starts in `State::Http(Http::Head)` like a plain one, with the
//! handshake deadline armed at accept: the TLS handshake and the HTTP request head
//! share that one deadline, so a client stalled anywhere before its upgrade request is
//! complete is dropped at `handshake_timeout`. While the TLS handshake is not complete
//! that deadline is never moved (see `expire_timers`), and the ciphertext read is
//! bounded by `max_header_size`, as a plain request head is.
//!
//! The peer's close_notify (RFC 8446 §6.1) is answered with ours before the TCP close:
//! `read` reports it as `Ok(0)`, the loop's EOF handling either releases the connection
//! (nothing owed: [`Transport::answer_close_notify`](super::transport::Transport::answer_close_notify)
//! writes ours at once) or lingers (ours follows what is still queued, from
//! `shutdown_write`).

use log::{info, warn};

use super::connection::{flags, State};
use super::event_loop::Inner;
use super::handler::Handler;

/// TLS handshake steps (reads of a connection still in its handshake: a ClientHello to
/// answer, a Finished to verify) per loop iteration, for events and for connections
/// carried over from the last iteration each. A step costs a key exchange and a
/// signature (tens to hundreds of microseconds); past the bound the connection yields
/// like a busy reader (see `Core::yield_turn`) and continues next iteration, so a storm
/// of handshakes delays open connections by at most this many steps per iteration.
pub const MAX_TLS_HANDSHAKES_PER_TURN: u32 = 32;

impl<H: Handler> Inner<H> {
    /// Takes one step of the iteration's handshake budget if the connection is in its TLS
    /// handshake. `false`: the budget is spent; the connection has yielded its turn.
    ///
    /// It also hands the connection the bound on what its handshake may read
    /// (`max_header_size`), before each handshake read: the transport is built by
    /// `add_connection`, which knows no TLS details.
    #[inline]
    pub(super) fn handshake_turn(&mut self, idx: u32) -> bool {
        let c = &mut self.core.conns[idx as usize];
        if !c.stream.is_handshaking() {
            return true;
        }
        if self.handshakes_left == 0 {
            self.core.yield_turn(idx);
            return false;
        }
        c.stream
            .set_handshake_limit(self.core.config.max_header_size);
        self.handshakes_left -= 1;
        true
    }

    /// A new budget of handshake steps (once for the events of an iteration, once for
    /// the connections carried over).
    #[inline]
    pub(super) fn refill_handshakes(&mut self) {
        self.handshakes_left = MAX_TLS_HANDSHAKES_PER_TURN;
    }

    /// After a read: handshake replies and alerts are written from inside it, and what the
    /// kernel refused stays in rustls. Wait for WRITABLE then (`flush` writes it first).
    ///
    /// And the peer's close_notify: one that came in the same read as data was not
    /// reported yet (`read` hands out the data first, and a short read means the socket
    /// is drained, so no event would come for it): read again now, which reports it. One
    /// that dropped the connection (nothing was owed) is answered with ours now, before
    /// the socket is closed.
    #[inline]
    pub(super) fn note_tls_backlog(&mut self, idx: u32) {
        let Some(c) = self.core.conns.get_mut(idx as usize) else {
            return;
        };
        if c.stream.peer_closed() {
            match c.state {
                State::Closed => c.stream.answer_close_notify(),
                State::Linger => {}
                // Reads once more: `Ok(0)` moves it to Linger or Closed, so this recursion
                // ends there (or sooner, if the handler paused reading meanwhile).
                _ if c.readable() => return self.on_readable(idx, true),
                // Paused, yielded, or a file response streaming: the read that resumes
                // it reports the close_notify.
                _ => {}
            }
        }
        let c = &mut self.core.conns[idx as usize];
        if c.stream.wants_write() {
            c.flags |= flags::WRITE_BLOCKED;
        }
    }

    /// SIGHUP: re-read the certificate files (without TLS there is nothing to reload; the
    /// signal is logged and ignored). Connections, established or mid-handshake, keep the
    /// certificate they started with; a failed reload keeps the old one.
    pub(super) fn reload_certificate(&mut self) {
        let Some(tls) = &self.core.config.tls else {
            info!("SIGHUP: no TLS certificate to reload; going on");
            return;
        };
        match tls.reload() {
            Ok(true) => info!("SIGHUP: certificate reloaded; new handshakes use it"),
            Ok(false) => info!("SIGHUP: TLS configured without files, nothing to reload"),
            Err(e) => warn!("SIGHUP: certificate reload failed ({e}); keeping the current one"),
        }
    }
}

//! What the loop does for TLS connections beyond [`Transport`](super::transport::Transport)
//! itself: a bound on handshakes advanced per iteration, ciphertext rustls kept after a
//! read, and SIGHUP (certificate reload).
//!
//! A TLS connection starts in `State::Http(Http::Head)` like a plain one, with the
//! handshake deadline armed at accept: the TLS handshake and the HTTP request head
//! share that one deadline, so a client stalled anywhere before its upgrade request is
//! complete is dropped at `handshake_timeout`.

use log::{info, warn};

use super::connection::flags;
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
    #[inline]
    pub(super) fn handshake_turn(&mut self, idx: u32) -> bool {
        let c = &self.core.conns[idx as usize];
        if !c.stream.is_handshaking() {
            return true;
        }
        if self.handshakes_left == 0 {
            self.core.yield_turn(idx);
            return false;
        }
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
    #[inline]
    pub(super) fn note_tls_backlog(&mut self, idx: u32) {
        if let Some(c) = self.core.conns.get_mut(idx as usize) {
            if c.stream.wants_write() {
                c.flags |= flags::WRITE_BLOCKED;
            }
        }
    }

    /// SIGHUP: re-read the certificate files. Connections, established or mid-handshake,
    /// keep the certificate they started with; a failed reload keeps the old one.
    pub(super) fn reload_certificate(&mut self) {
        let Some(tls) = &self.core.config.tls else {
            return;
        };
        match tls.reload() {
            Ok(true) => info!("SIGHUP: certificate reloaded; new handshakes use it"),
            Ok(false) => info!("SIGHUP: TLS configured without files, nothing to reload"),
            Err(e) => warn!("SIGHUP: certificate reload failed ({e}); keeping the current one"),
        }
    }
}

//! Graceful shutdown (SIGINT/SIGTERM or a [`StopHandle`](super::StopHandle)): stop
//! accepting, close every WebSocket with 1001, drop connections that are not WebSockets,
//! and wait up to the close timeout for the closing handshakes.

use std::time::Instant;

use log::info;

use super::connection::State;
use super::event_loop::Inner;
use super::handler::Handler;
use crate::protocol::close;

impl<H: Handler> Inner<H> {
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.close_listener();
        let idxs: Vec<u32> = self.core.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            match self.core.conns[idx as usize].state {
                State::Open => {
                    self.core
                        .start_close(idx, close::GOING_AWAY, "server shutting down")
                }
                State::Closing | State::Linger | State::Closed => {}
                State::Http(_) => self.core.release(idx),
            }
        }
        self.run_notices();
        self.shutdown_deadline = Some(now + self.core.config.close_timeout);
    }

    /// The shutdown's last log line: how many connections had not finished their closing
    /// handshake when the deadline came.
    pub(super) fn log_shutdown(&self) {
        // Those still here at the deadline, and those cut by their own close timeout
        // (armed with the same duration when the shutdown began) just before it.
        info!(
            "shutdown complete ({} connections dropped at the deadline)",
            self.core.conns.len() + self.shutdown_cut
        );
    }
}

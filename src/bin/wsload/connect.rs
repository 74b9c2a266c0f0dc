//! Connect: handshakes per second, or (with --hold) N idle connections held open for a
//! memory reading of the server, each checked with a ping at the end.
//!
//! The driver times every handshake and answers the server's pings; this app only
//! decides to close right away (no hold) and sends and matches the final pings.

use crate::driver::{App, Ctx, Phase};
use wsloop::protocol::decoder::Message;
use wsloop::protocol::frame::{write_client_frame, OpCode};

const CHECK: &[u8] = b"wsload-check";

pub struct Connect {
    hold: bool,
}

pub struct CConn {
    pinged: bool,
    answered: bool,
}

impl Connect {
    pub fn new(hold: bool) -> Self {
        Connect { hold }
    }
}

impl App for Connect {
    type Conn = CConn;

    fn new_conn(&mut self, _id: u32) -> CConn {
        CConn {
            pinged: false,
            answered: false,
        }
    }

    fn on_open(&mut self, _ctx: &mut Ctx, _key: usize, _c: &mut CConn) -> bool {
        !self.hold
    }

    fn pump(&mut self, ctx: &mut Ctx, c: &mut CConn, out: &mut Vec<u8>) {
        if ctx.phase == Phase::Check && !c.pinged {
            write_client_frame(out, true, OpCode::Ping, CHECK, ctx.mask);
            c.pinged = true;
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx, c: &mut CConn, msg: Message<'_>) {
        ctx.st.total_msgs += 1;
        if let Message::Pong(p) = msg {
            if c.pinged && !c.answered && p == CHECK {
                c.answered = true;
                ctx.st.answered += 1;
                ctx.shared
                    .answered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

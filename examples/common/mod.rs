//! What every example does the same way: take the listening address from the command line.

use std::net::SocketAddr;

/// `ADDR`, or `PORT` on 127.0.0.1, from `arg`; a free port on 127.0.0.1 when absent.
/// Panics with `usage` on anything else.
pub fn listen_addr(arg: Option<String>, usage: &str) -> SocketAddr {
    let Some(arg) = arg else {
        return SocketAddr::from(([127, 0, 0, 1], 0));
    };
    arg.parse()
        .or_else(|_| {
            arg.parse::<u16>()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        })
        .unwrap_or_else(|_| panic!("{usage}, got {arg:?}"))
}

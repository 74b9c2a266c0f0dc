//! WebSocket echo server on `tokio-tungstenite`, used as a benchmark peer for wsloop.
//!
//! * single-threaded tokio runtime (`current_thread`), one task per connection;
//! * `tokio_tungstenite::accept_async` with the library's default `WebSocketConfig`
//!   (no compression — tungstenite has no permessage-deflate);
//! * text and binary messages are echoed with the same opcode; tungstenite itself
//!   answers pings with pongs and replies to a close frame;
//! * TCP_NODELAY on every accepted socket, listen backlog 4096, and the open-file
//!   soft limit raised to the hard limit at startup.
//!
//! Usage: `tokio-tungstenite-echo [--listen ADDR]` (default `127.0.0.1:8001`).
//! Prints exactly one line to stdout once listening:
//! `tokio-tungstenite-echo listening on <ip>:<port>`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const NAME: &str = "tokio-tungstenite-echo";
const DEFAULT_LISTEN: &str = "127.0.0.1:8001";
const BACKLOG: u32 = 4096;

fn usage() -> ! {
    eprintln!("usage: {NAME} [--listen ADDR]   (default {DEFAULT_LISTEN}; port 0 = ephemeral)");
    std::process::exit(2);
}

fn parse_args() -> SocketAddr {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next().unwrap_or_else(|| usage());
        } else if let Some(v) = arg.strip_prefix("--listen=") {
            listen = v.to_string();
        } else {
            usage();
        }
    }
    match listen.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(addr) => addr,
        None => {
            eprintln!("{NAME}: cannot parse listen address {listen:?}");
            std::process::exit(2);
        }
    }
}

/// Raise RLIMIT_NOFILE's soft limit to its hard limit (load tests open ~19k sockets).
fn raise_nofile_limit() {
    unsafe {
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                eprintln!("{NAME}: setrlimit(RLIMIT_NOFILE) failed: {}", std::io::Error::last_os_error());
            }
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    // `next()` also flushes pongs / the close reply that tungstenite queued itself.
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            // Ping -> pong and Close -> close reply are handled inside tungstenite.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = parse_args();
    raise_nofile_limit();
    let listener = match bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{NAME}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("local_addr");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{NAME} listening on {local}");
        let _ = out.flush();
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                // e.g. EMFILE: back off briefly instead of spinning.
                eprintln!("{NAME}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

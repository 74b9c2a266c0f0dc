//! WebSocket echo server on `fastwebsockets`, used as a benchmark peer for wsloop.
//!
//! Follows the crate's own `examples/echo_server.rs`:
//! * single-threaded tokio runtime (`current_thread`), one task per connection;
//! * HTTP/1.1 handshake through hyper 1 + hyper-util with `fastwebsockets::upgrade`;
//! * the socket wrapped in a `FragmentCollector`, so fragmented messages are
//!   reassembled and echoed as one message with the same opcode;
//! * `auto_close` and `auto_pong` on (set explicitly; they are the defaults),
//!   default max message size (64 MiB), no compression (fastwebsockets has none);
//! * TCP_NODELAY on every accepted socket, listen backlog 4096, and the open-file
//!   soft limit raised to the hard limit at startup.
//!
//! Usage: `fastwebsockets-echo [--listen ADDR]` (default `127.0.0.1:8001`).
//! Prints exactly one line to stdout once listening:
//! `fastwebsockets-echo listening on <ip>:<port>`.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const NAME: &str = "fastwebsockets-echo";
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

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // auto_close has already sent the close reply.
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            // auto_pong has already answered pings; pongs are ignored.
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        // As in the crate's example: the WebSocket loop runs outside tokio's coop budget.
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = http1::Builder::new()
        .serve_connection(io, service_fn(server_upgrade))
        .with_upgrades()
        .await;
}

fn main() {
    let addr = parse_args();
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
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
    });
}

//! Server configuration: every limit bounded, each with a default and a CLI flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Listen backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// Set SO_REUSEPORT so several processes can share the port (always set when
    /// `threads > 1`: the loops of one server share it that way).
    pub reuse_port: bool,
    /// Event loops, one thread each, sharing the port through SO_REUSEPORT. Default: the
    /// number of cores (`std::thread::available_parallelism`).
    pub threads: usize,
    /// Largest message, all fragments together; larger ones are refused with 1009.
    pub max_message_size: usize,
    /// Largest HTTP request head; larger ones get 431.
    pub max_header_size: usize,
    /// Largest request body read past (and dropped) on a keep-alive connection; a larger
    /// one gets 413 and the connection closes. WebSocket upgrades may carry none (400).
    pub max_request_body: usize,
    /// Open connections beyond this get HTTP 503.
    pub max_connections: usize,
    /// Per-connection unsent bytes past which sends are refused (echo: reading pauses;
    /// broadcast: the subscriber is closed with 1008).
    pub max_backpressure: usize,
    /// `drain` fires when the unsent bytes fall to this after having been above it.
    pub low_watermark: usize,
    /// From accept to a complete request head.
    pub handshake_timeout: Duration,
    /// No input for this long closes the connection; a ping goes out at half of it.
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close frame (and for the TCP close) after ours.
    pub close_timeout: Duration,
    /// Serve static files from here for plain HTTP GET/HEAD requests.
    pub www: Option<PathBuf>,
    /// Close gracefully (1001) on SIGINT/SIGTERM.
    pub handle_signals: bool,
    /// Size of the one loop-wide receive buffer.
    pub recv_buffer_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8001".parse().expect("valid address"),
            backlog: 4096,
            reuse_port: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_message_size: 16 << 20,
            max_header_size: 8 << 10,
            max_request_body: 64 << 10,
            max_connections: 100_000,
            max_backpressure: 1 << 20,
            low_watermark: 64 << 10,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            close_timeout: Duration::from_secs(5),
            www: None,
            handle_signals: false,
            recv_buffer_size: 512 << 10,
        }
    }
}

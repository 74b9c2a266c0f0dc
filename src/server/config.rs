//! Server configuration: every limit bounded, each with a default and a CLI flag.
//!
//! [`Config::validate`] checks every field against the bounds below; `Server::bind` calls
//! it, so a configuration the loop cannot honour (a watermark above the backpressure limit,
//! a timeout the timer wheel cannot hold) is refused with the field's name instead of
//! misbehaving later.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::tls::{TlsConfig, ALPN_HTTP11};
use crate::protocol::deflate::DeflateConfig;

/// Shortest timeout: the timer wheel's tick; anything shorter would round up to it anyway.
pub const MIN_TIMEOUT: Duration = crate::server::timer::TICK;
/// Longest timeout (24 h). The wheel counts 100 ms ticks in a `u32` as `now + ticks`; with
/// deadlines at most 864 000 ticks ahead, wrapping needs about 13 years of uptime.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest `max_message_size` and `max_backpressure` (1 GiB): a single message or one
/// connection's unsent output past this is a denial of service, not a use case, and the
/// bound keeps `size + frame header` arithmetic far from `usize` overflow on 32-bit targets.
pub const MAX_BUFFER_LIMIT: usize = 1 << 30;
/// Smallest `max_header_size` (256 bytes): a minimal upgrade request (request line, Host,
/// Upgrade, Connection, a 24-character Sec-WebSocket-Key, Sec-WebSocket-Version) is about
/// 150 bytes; below 256 ordinary clients would get 431.
pub const MIN_HEADER_SIZE: usize = 256;
/// Largest `max_header_size` (1 MiB): the request head is buffered per connection until it
/// is complete, so this bounds what a slow handshake can hold.
pub const MAX_HEADER_SIZE: usize = 1 << 20;
/// Largest `max_connections` (2^30): connection indexes are `u32` and the loop accepts a
/// slack of refused connections past the limit; this keeps the sum far from overflow.
pub const MAX_CONNECTIONS: usize = 1 << 30;
/// Smallest `recv_buffer_size` (4 KiB): smaller reads cost a syscall per few frames.
pub const MIN_RECV_BUFFER: usize = 4 << 10;
/// Largest `recv_buffer_size` (64 MiB): the buffer is allocated up front, once per loop.
pub const MAX_RECV_BUFFER: usize = 64 << 20;
/// Smallest `max_mailbox_bytes` (64 KiB): room for a few hundred small commands.
pub const MIN_MAILBOX_BYTES: usize = 64 << 10;

/// What happens to a subscriber that takes published messages slower than they come
/// (`Config::slow_subscriber`, `--slow-subscriber`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowSubscriber {
    /// One reader never slows the room (big fan-out, live feeds): a subscriber whose
    /// unsent output is past `max_backpressure` when a message comes is closed with 1008
    /// (`wsloop_slow_subscribers_closed_total`). Publishers are never held by readers.
    /// Order per publisher holds for every subscriber; a subscriber closed as slow loses
    /// what it had not been sent.
    Close,
    /// Lossless for every reader that reads: a publisher is held while a subscriber it
    /// delivered to is above `high_watermark` (a connection's input is paused; handle
    /// threads and other loops' connections are told the mailbox is at its high mark),
    /// and goes on when that subscriber drains to `low_watermark`; what the mailbox
    /// brings it meanwhile is parked for it, in order. A subscriber that takes no byte
    /// for `slow_subscriber_timeout` while above the high watermark is closed with 1008
    /// (and releases the publishers it held). Memory: at most `max_backpressure` of
    /// output plus half of `max_mailbox_bytes` parked per subscriber (past either,
    /// closed with 1008, which a reading subscriber reaches only if producers that
    /// cannot be held burst into it: each holdable one gets one message past the high
    /// watermark before it is held).
    #[default]
    Pace,
}

impl std::str::FromStr for SlowSubscriber {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "close" => Ok(SlowSubscriber::Close),
            "pace" => Ok(SlowSubscriber::Pace),
            other => Err(format!("{other:?}: expected close or pace")),
        }
    }
}

/// Everything the server needs to know before it binds. Build one with
/// `Config { field: value, ..Config::default() }`, then [`Config::validate`] (which
/// `Server::bind` also calls).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see `Server::local_addr`).
    /// Default `127.0.0.1:8001`.
    pub listen: SocketAddr,
    /// Listen backlog in connections, at least 1 (the kernel caps it at
    /// `net.core.somaxconn`). Default 4096.
    pub backlog: i32,
    /// Set SO_REUSEPORT so several processes can share the port (always set when
    /// `threads > 1`: the loops of one server share it that way). Default `false`.
    pub reuse_port: bool,
    /// Event loops, one thread each, sharing the port through SO_REUSEPORT. In
    /// `1..=1024`. Default: the number of cores (`std::thread::available_parallelism`).
    pub threads: usize,
    /// Largest message in bytes, all fragments together; larger ones are refused with close
    /// code 1009 (RFC 6455 §7.4.1). In `1..=1 GiB`. Default 16 MiB.
    pub max_message_size: usize,
    /// Largest HTTP request head in bytes (request line and headers); larger ones get 431.
    /// In `256..=1 MiB`. Default 8 KiB.
    pub max_header_size: usize,
    /// Largest request body in bytes read past (and dropped) on a keep-alive connection;
    /// a larger one gets 413 and the connection closes. WebSocket upgrades may carry none
    /// (400). In `0..=1 GiB`. Default 64 KiB.
    pub max_request_body: usize,
    /// Open connections (over all loops) beyond this get HTTP 503. At least 1; the server
    /// further clamps it to the open-file limit (`fd_limit::connection_budget`).
    /// Default 100 000.
    pub max_connections: usize,
    /// Per-connection unsent bytes past which sends are refused (`SendStatus::Dropped`)
    /// and a subscriber is closed with 1008: the hard bound on one connection's output.
    /// In `1..=1 GiB` and greater than `low_watermark`. Default 1 MiB.
    pub max_backpressure: usize,
    /// Bytes: while a connection's own unsent output is above this (the smaller of it and
    /// `max_backpressure`), its input is not read (TCP pushes back on the peer: a client
    /// cannot cause more output than it takes), sends report `SendStatus::Backpressure`,
    /// and under [`SlowSubscriber::Pace`] a subscriber above it holds its publishers.
    /// Greater than `low_watermark`. Default 256 KiB.
    pub high_watermark: usize,
    /// Bytes: reading resumes, held publishers go on and `drain` fires when the unsent
    /// bytes fall to this after having been above it. Must be below `max_backpressure` and
    /// `high_watermark`, or a paused connection would never resume. Default 64 KiB.
    pub low_watermark: usize,
    /// What happens to a subscriber slower than its publishers: see [`SlowSubscriber`].
    /// Default [`SlowSubscriber::Pace`].
    pub slow_subscriber: SlowSubscriber,
    /// Under [`SlowSubscriber::Pace`]: a subscriber above the high watermark that takes no
    /// byte for this long is closed with 1008. In `100 ms..=24 h`. Default 5 s.
    pub slow_subscriber_timeout: Duration,
    /// Bound, in bytes, on each loop's mailbox: commands from other loops and from
    /// [`ServerHandle`](super::ServerHandle)s (and what the Redis backplane delivers)
    /// waiting for the loop, charged frame bytes plus 64 per command. Producers are
    /// held at half of it (a connection's input pauses; a handle reports
    /// `SendStatus::Backpressure`), go on below a quarter, and past all of it a handle's
    /// command is refused (`SendStatus::Dropped`, `wsloop_mailbox_dropped_total`).
    /// In `64 KiB..=1 GiB`. Default 8 MiB.
    pub max_mailbox_bytes: usize,
    /// From accept to a complete request head. In `100 ms..=24 h`. Default 10 s.
    pub handshake_timeout: Duration,
    /// No input for this long closes the connection; a ping goes out at half of it.
    /// In `100 ms..=24 h`. Default 120 s.
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close frame (and for the TCP close) after ours, and
    /// for connections to finish at shutdown. In `100 ms..=24 h`. Default 5 s.
    pub close_timeout: Duration,
    /// Serve static files from this directory for plain HTTP GET/HEAD requests; it must be
    /// an existing directory. `None` answers plain HTTP with 426. Default `None`.
    pub www: Option<PathBuf>,
    /// Close gracefully (1001) on SIGINT/SIGTERM. Default `false`.
    pub handle_signals: bool,
    /// Serve the Prometheus text exposition (format 0.0.4) of every loop's counters at
    /// `GET /metrics` on the WebSocket listener. Default `false` (`/metrics` is then an
    /// ordinary static path).
    pub metrics: bool,
    /// Size in bytes of the one loop-wide receive buffer. In `4 KiB..=64 MiB`.
    /// Default 512 KiB.
    pub recv_buffer_size: usize,
    /// permessage-deflate (RFC 7692): `Some` accepts a client's offer with these
    /// parameters, `None` declines every offer. Default `None`. Checked: window bits in
    /// `8..=15`, memory level `1..=9`, level `0..=9`, `min_compress_size` at most
    /// `max_message_size`.
    pub deflate: Option<DeflateConfig>,
    /// At most this many connections (over all loops, each loop its share) may agree
    /// permessage-deflate with context takeover, which can cost a dedicated compressor and
    /// inflater each (about 180–430 KiB by window and memory level); past it the server
    /// answers `server_no_context_takeover; client_no_context_takeover` (shared contexts,
    /// nothing per connection). Only matters when `deflate` allows context takeover.
    /// At most [`MAX_CONNECTIONS`]. Default 1 000.
    pub max_deflate_contexts: usize,
    /// Speak TLS on the listener (`wss://`, `https://`): every accepted connection starts
    /// with a TLS handshake (within `handshake_timeout`), then the same HTTP and WebSocket
    /// path. Its ALPN list must be empty or exactly `http/1.1` (RFC 6455 runs over
    /// HTTP/1.1 only). With `handle_signals`, SIGHUP re-reads the certificate files
    /// ([`TlsConfig::reload`]). Default `None` (plain TCP).
    pub tls: Option<TlsConfig>,
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
            high_watermark: 256 << 10,
            low_watermark: 64 << 10,
            slow_subscriber: SlowSubscriber::Pace,
            slow_subscriber_timeout: Duration::from_secs(5),
            max_mailbox_bytes: 8 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            close_timeout: Duration::from_secs(5),
            www: None,
            handle_signals: false,
            metrics: false,
            recv_buffer_size: 512 << 10,
            deflate: None,
            max_deflate_contexts: 1000,
            tls: None,
        }
    }
}

/// A [`Config`] field out of its bounds: which field, and why.
///
/// Displays as `invalid Config.max_backpressure: must be greater than low_watermark (65536)`;
/// converts into an [`io::Error`] of kind [`io::ErrorKind::InvalidInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// An error for `field` (the `Config` field name) with a human-readable `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending `Config` field, e.g. `"max_backpressure"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was refused, e.g. `"must be greater than low_watermark (65536)"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Config.{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for io::Error {
    fn from(e: ConfigError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The permessage-deflate parameters a zlib can honour (RFC 7692 §7.1.2: windows of
/// 2^8..2^15 bytes; 8 acts as 9, see [`crate::protocol::deflate`]).
fn check_deflate(d: &DeflateConfig, max_message_size: usize) -> Result<(), ConfigError> {
    let bits = |b: u8| format!("{b} bits");
    in_range(
        "deflate.server_max_window_bits",
        d.server_max_window_bits,
        8,
        15,
        bits,
    )?;
    in_range(
        "deflate.client_max_window_bits",
        d.client_max_window_bits,
        8,
        15,
        bits,
    )?;
    in_range("deflate.mem_level", d.mem_level, 1, 9, |v| v.to_string())?;
    in_range("deflate.level", d.level, 0, 9, |v| v.to_string())?;
    in_range(
        "deflate.min_compress_size",
        d.min_compress_size,
        0,
        max_message_size,
        bytes,
    )
}

/// `Ok` if `lo <= v <= hi`, else an error naming the bounds (with `show` for the units).
fn in_range<T: PartialOrd + Copy>(
    field: &'static str,
    v: T,
    lo: T,
    hi: T,
    show: impl Fn(T) -> String,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{} is outside {}..={}", show(v), show(lo), show(hi)),
        ));
    }
    Ok(())
}

fn bytes(v: usize) -> String {
    v.to_string()
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Checks one timeout against [`MIN_TIMEOUT`]..=[`MAX_TIMEOUT`].
pub fn check_timeout(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    in_range(field, d, MIN_TIMEOUT, MAX_TIMEOUT, secs)
}

impl Config {
    /// The high watermark in effect: `high_watermark`, at most `max_backpressure`.
    pub fn effective_high_watermark(&self) -> usize {
        self.high_watermark.min(self.max_backpressure)
    }

    /// Checks every field against its documented bounds and the fields' invariants
    /// (`low_watermark < max_backpressure`); the first violation is returned, naming the
    /// field. `www`, when set, must be an existing directory (checked on the file system).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backlog < 1 {
            return Err(ConfigError::new(
                "backlog",
                format!("{} must be at least 1", self.backlog),
            ));
        }
        in_range(
            "max_message_size",
            self.max_message_size,
            1,
            MAX_BUFFER_LIMIT,
            bytes,
        )?;
        in_range(
            "max_header_size",
            self.max_header_size,
            MIN_HEADER_SIZE,
            MAX_HEADER_SIZE,
            bytes,
        )?;
        in_range(
            "max_connections",
            self.max_connections,
            1,
            MAX_CONNECTIONS,
            bytes,
        )?;
        in_range(
            "max_backpressure",
            self.max_backpressure,
            1,
            MAX_BUFFER_LIMIT,
            bytes,
        )?;
        in_range("threads", self.threads, 1, 1024, |n| n.to_string())?;
        in_range(
            "max_request_body",
            self.max_request_body,
            0,
            MAX_BUFFER_LIMIT,
            bytes,
        )?;
        if self.low_watermark >= self.max_backpressure {
            return Err(ConfigError::new(
                "max_backpressure",
                format!(
                    "{} must be greater than low_watermark ({}), or a paused connection never resumes",
                    self.max_backpressure, self.low_watermark
                ),
            ));
        }
        if self.low_watermark >= self.high_watermark {
            return Err(ConfigError::new(
                "high_watermark",
                format!(
                    "{} must be greater than low_watermark ({}), or a paused connection never resumes",
                    self.high_watermark, self.low_watermark
                ),
            ));
        }
        in_range(
            "max_mailbox_bytes",
            self.max_mailbox_bytes,
            MIN_MAILBOX_BYTES,
            MAX_BUFFER_LIMIT,
            bytes,
        )?;
        check_timeout("slow_subscriber_timeout", self.slow_subscriber_timeout)?;
        check_timeout("handshake_timeout", self.handshake_timeout)?;
        check_timeout("idle_timeout", self.idle_timeout)?;
        check_timeout("close_timeout", self.close_timeout)?;
        in_range(
            "recv_buffer_size",
            self.recv_buffer_size,
            MIN_RECV_BUFFER,
            MAX_RECV_BUFFER,
            bytes,
        )?;
        if let Some(d) = &self.deflate {
            check_deflate(d, self.max_message_size)?;
        }
        in_range(
            "max_deflate_contexts",
            self.max_deflate_contexts,
            0,
            MAX_CONNECTIONS,
            |n| n.to_string(),
        )?;
        if let Some(dir) = &self.www {
            if !dir.is_dir() {
                return Err(ConfigError::new(
                    "www",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            // A client offering h2 first would get h2 and then an HTTP/1.1 answer.
            let alpn = &tls.server_config().alpn_protocols;
            if alpn.iter().any(|p| p != ALPN_HTTP11) {
                return Err(ConfigError::new(
                    "tls",
                    "ALPN protocols must be empty or exactly http/1.1 (WebSocket upgrades are HTTP/1.1)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut c = Config::default();
        f(&mut c);
        c.validate()
    }

    fn field_of(r: Result<(), ConfigError>) -> &'static str {
        r.expect_err("should be refused").field()
    }

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn backlog_at_least_one() {
        assert_eq!(field_of(with(|c| c.backlog = 0)), "backlog");
        assert_eq!(field_of(with(|c| c.backlog = -5)), "backlog");
        with(|c| c.backlog = 1).unwrap();
    }

    #[test]
    fn max_message_size_bounds() {
        assert_eq!(
            field_of(with(|c| c.max_message_size = 0)),
            "max_message_size"
        );
        with(|c| c.max_message_size = 1).unwrap();
        with(|c| c.max_message_size = MAX_BUFFER_LIMIT).unwrap();
        let e = with(|c| c.max_message_size = MAX_BUFFER_LIMIT + 1).unwrap_err();
        assert_eq!(e.field(), "max_message_size");
        assert!(e.reason().contains("1073741825"), "{e}");
    }

    #[test]
    fn max_header_size_bounds() {
        assert_eq!(
            field_of(with(|c| c.max_header_size = 255)),
            "max_header_size"
        );
        with(|c| c.max_header_size = 256).unwrap();
        with(|c| c.max_header_size = 1 << 20).unwrap();
        assert_eq!(
            field_of(with(|c| c.max_header_size = (1 << 20) + 1)),
            "max_header_size"
        );
    }

    #[test]
    fn max_connections_bounds() {
        assert_eq!(field_of(with(|c| c.max_connections = 0)), "max_connections");
        with(|c| c.max_connections = 1).unwrap();
        assert_eq!(
            field_of(with(|c| c.max_connections = MAX_CONNECTIONS + 1)),
            "max_connections"
        );
    }

    #[test]
    fn backpressure_must_exceed_low_watermark() {
        // Issue 9 case 6: below the watermark a paused echo connection never drains.
        let e = with(|c| {
            c.max_backpressure = 1000;
            c.low_watermark = 65536;
        })
        .unwrap_err();
        assert_eq!(e.field(), "max_backpressure");
        assert!(
            e.to_string().starts_with(
                "invalid Config.max_backpressure: 1000 must be greater than low_watermark (65536)"
            ),
            "{e}"
        );
        // Equal is refused too: `drain` needs the buffer to have been above the mark.
        assert!(with(|c| {
            c.max_backpressure = 4096;
            c.low_watermark = 4096;
        })
        .is_err());
        with(|c| {
            c.max_backpressure = 4097;
            c.low_watermark = 4096;
        })
        .unwrap();
        with(|c| {
            c.max_backpressure = 1;
            c.low_watermark = 0;
        })
        .unwrap();
        assert_eq!(
            field_of(with(|c| {
                c.max_backpressure = 0;
                c.low_watermark = 0;
            })),
            "max_backpressure"
        );
        assert_eq!(
            field_of(with(|c| c.max_backpressure = MAX_BUFFER_LIMIT + 1)),
            "max_backpressure"
        );
    }

    #[test]
    fn high_watermark_and_mailbox_bounds() {
        let e = with(|c| c.high_watermark = c.low_watermark).unwrap_err();
        assert_eq!(e.field(), "high_watermark");
        with(|c| c.high_watermark = c.low_watermark + 1).unwrap();
        // Above max_backpressure it acts as max_backpressure.
        let c = Config {
            max_backpressure: 100_000,
            high_watermark: 1 << 20,
            ..Config::default()
        };
        c.validate().unwrap();
        assert_eq!(c.effective_high_watermark(), 100_000);
        assert_eq!(
            field_of(with(|c| c.max_mailbox_bytes = MIN_MAILBOX_BYTES - 1)),
            "max_mailbox_bytes"
        );
        with(|c| c.max_mailbox_bytes = MIN_MAILBOX_BYTES).unwrap();
        assert_eq!(
            field_of(with(|c| c.slow_subscriber_timeout = Duration::ZERO)),
            "slow_subscriber_timeout"
        );
        assert_eq!("pace".parse(), Ok(SlowSubscriber::Pace));
        assert_eq!("close".parse(), Ok(SlowSubscriber::Close));
        assert!("drop".parse::<SlowSubscriber>().is_err());
    }

    #[test]
    fn timeouts_bounded_by_tick_and_a_day() {
        type Set = fn(&mut Config, Duration);
        let fields: [(&str, Set); 3] = [
            ("handshake_timeout", |c, d| c.handshake_timeout = d),
            ("idle_timeout", |c, d| c.idle_timeout = d),
            ("close_timeout", |c, d| c.close_timeout = d),
        ];
        for (name, set) in fields {
            let mut c = Config::default();
            set(&mut c, Duration::from_millis(99));
            assert_eq!(c.validate().unwrap_err().field(), name);
            set(&mut c, Duration::ZERO);
            assert_eq!(c.validate().unwrap_err().field(), name);
            set(&mut c, MIN_TIMEOUT);
            c.validate().unwrap();
            set(&mut c, MAX_TIMEOUT);
            c.validate().unwrap();
            // Issue 9 case 7: 858993459.4 s wrapped the u32 tick arithmetic.
            set(&mut c, Duration::from_secs_f64(858_993_459.4));
            let e = c.validate().unwrap_err();
            assert_eq!(e.field(), name);
            assert!(e.reason().contains("86400s"), "{e}");
        }
    }

    #[test]
    fn max_timeout_cannot_wrap_the_wheel() {
        // A deadline is `now + ticks` in u32: at the bound there is room for years of ticks.
        let ticks = MAX_TIMEOUT.as_millis() / MIN_TIMEOUT.as_millis();
        let years_of_headroom = (u32::MAX as u128 - ticks) / (10 * 60 * 60 * 24 * 365);
        assert!(years_of_headroom >= 13, "{years_of_headroom}");
    }

    #[test]
    fn recv_buffer_bounds() {
        assert_eq!(
            field_of(with(|c| c.recv_buffer_size = 4095)),
            "recv_buffer_size"
        );
        with(|c| c.recv_buffer_size = 4096).unwrap();
        with(|c| c.recv_buffer_size = 64 << 20).unwrap();
        assert_eq!(
            field_of(with(|c| c.recv_buffer_size = (64 << 20) + 1)),
            "recv_buffer_size"
        );
    }

    #[test]
    fn www_must_be_a_directory() {
        let dir = std::env::temp_dir();
        with(|c| c.www = Some(dir.clone())).unwrap();
        let missing = dir.join("wsloop-config-test-no-such-dir");
        let e = with(|c| c.www = Some(missing.clone())).unwrap_err();
        assert_eq!(e.field(), "www");
        assert!(e.reason().contains("not a directory"), "{e}");
        // A file is not a directory either.
        let file = std::env::current_exe().unwrap();
        assert_eq!(field_of(with(|c| c.www = Some(file.clone()))), "www");
    }

    #[test]
    fn tls_alpn_must_be_empty_or_http11() {
        use std::sync::Arc;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = |alpn: &[&[u8]]| {
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
            let mut sc =
                rustls::ServerConfig::builder_with_provider(crate::server::tls::provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(vec![cert.der().clone()], der.into())
                    .unwrap();
            sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Some(TlsConfig::from_server_config(Arc::new(sc)))
        };
        with(|c| c.tls = tls(&[])).unwrap();
        with(|c| c.tls = tls(&[b"http/1.1"])).unwrap();
        assert_eq!(
            field_of(with(|c| c.tls = tls(&[b"h2", b"http/1.1"]))),
            "tls"
        );
        assert_eq!(field_of(with(|c| c.tls = tls(&[b"h2"]))), "tls");
    }

    #[test]
    fn converts_to_invalid_input_io_error() {
        let e = with(|c| c.backlog = 0).unwrap_err();
        let io: io::Error = e.clone().into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(io.to_string(), e.to_string());
        let inner = io.get_ref().unwrap().downcast_ref::<ConfigError>().unwrap();
        assert_eq!(inner.field(), "backlog");
    }
}

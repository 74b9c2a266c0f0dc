//! Command line: scenarios as clap subcommands, plus the loopback-only URL and the
//! source-address list.

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Parser, Debug)]
#[command(
    name = "wsload",
    version,
    about = "WebSocket load generator for wsloop (loopback only)",
    long_about = "WebSocket load generator for wsloop (loopback only).\n\n\
        Prints a progress line on stderr every second, a table on stdout and, as the last \
        stdout line, one JSON object. Exits 1 if any verification or connection error \
        occurred, 2 on bad usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Echo: every connection keeps K messages in flight; each echo is verified byte for byte.
    Echo(EchoArgs),
    /// Broadcast against `wsloop chat`: M publishers, N subscribers, per-publisher ordering checked.
    Broadcast(BroadcastArgs),
    /// Handshakes per second; with --hold, keep N idle connections open (server memory).
    Connect(ConnectArgs),
    /// Soak churn: connections opened and ended every way (clean, reset, half-open), plain
    /// HTTP, slow readers that must be dropped; or, with --burst, a burst of connections.
    Churn(crate::churn::ChurnArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server URL: ws:// or wss:// on a loopback address (127.0.0.0/8, ::1 or localhost).
    #[arg(long, default_value = "ws://127.0.0.1:8001/")]
    pub url: String,
    /// For wss://: PEM file of the CA certificate(s) to trust (e.g. the `ca.pem` that
    /// `scripts/test-cert.sh` writes). The server's certificate must name the URL's host.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Worker threads, each with its own mio Poll; connections are split round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Local addresses to bind client sockets to, round-robin (e.g. `127.0.0.2-127.0.0.9`
    /// or `127.0.0.2,127.0.0.3`); each gives another ~28k ephemeral ports.
    #[arg(long, value_name = "IPS")]
    pub source_ips: Option<String>,
    /// Server process id: report its CPU time per message and its memory (from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Most connection attempts (TCP connect + handshake) in progress at once, all threads.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,
    /// Give up on connections not open after this many seconds.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// Overall deadline in seconds (default: everything the run needs plus 30 s).
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<f64>,
    /// Spin on epoll_wait instead of sleeping while load runs: lower latency and less
    /// wake-up work on both sides, but wsload shows 100 % CPU (its core is spent anyway).
    #[arg(long)]
    pub busy_poll: bool,
    /// Offer permessage-deflate (RFC 7692) without context takeover either way
    /// (`client_no_context_takeover; server_no_context_takeover`) and compress every
    /// message sent; the server must accept.
    #[arg(long)]
    pub deflate: bool,
    /// With --deflate: offer context takeover both ways (`client_max_window_bits`), so
    /// each connection keeps a compressor and an inflater if the server agrees.
    #[arg(long, requires = "deflate")]
    pub deflate_context_takeover: bool,
    /// Free-form label copied into the JSON (e.g. the server's name).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: u32,
    /// Messages in flight per connection (1 = ping-pong; more = pipelined).
    #[arg(long, short = 'k', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub inflight: u32,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 20)]
    pub size: usize,
    /// Binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// JSON-like payload (records with repeated keys and varying values, as chat or
    /// telemetry sends; compresses like real traffic) instead of `a..z` repeated.
    #[arg(long)]
    pub json: bool,
    /// Measured seconds (default 5 unless --messages is given).
    #[arg(long, short = 'd', value_name = "SECS", conflicts_with = "messages")]
    pub duration: Option<f64>,
    /// Stop after this many echoes (all connections together) sent and received after warmup.
    #[arg(long, short = 'n', value_name = "COUNT")]
    pub messages: Option<u64>,
    /// Seconds of load before measuring.
    #[arg(long, short = 'w', default_value_t = 1.0, value_name = "SECS")]
    pub warmup: f64,
}

#[derive(Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections that only listen.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u32,
    /// Connections that publish (they also receive every broadcast).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub publishers: u32,
    /// Total publishes per second, all publishers together (default: flat out within --window).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Most unacknowledged publishes per publisher (a publish is acknowledged when the
    /// publisher receives its own broadcast), so the server is not flooded.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// Payload bytes per published message (at least 18: id, sequence, timestamp).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Binary messages (relayed verbatim by the chat server; default text, relayed as `user<N>: T`).
    #[arg(long)]
    pub binary: bool,
    /// Subscribers connect here instead of --url (e.g. another instance joined through
    /// `--redis`); publishers stay on --url. Deliveries and latency are then counted at
    /// the subscribers only, so the figures are the subscribers' path (pass the same URL
    /// as --url for the single-instance baseline with the same accounting).
    #[arg(long, value_name = "URL")]
    pub subscriber_url: Option<String>,
    /// JSON-like filler after the publish header instead of `a..z` repeated.
    #[arg(long)]
    pub json: bool,
    /// Measured seconds (default 5 unless --messages is given).
    #[arg(long, short = 'd', value_name = "SECS", conflicts_with = "messages")]
    pub duration: Option<f64>,
    /// Stop after this many publishes (all publishers together) after warmup.
    #[arg(long, short = 'n', value_name = "COUNT")]
    pub messages: Option<u64>,
    /// Seconds of load before measuring.
    #[arg(long, short = 'w', default_value_t = 1.0, value_name = "SECS")]
    pub warmup: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open (without --hold each is closed right after its handshake,
    /// so the count may exceed the open-file limit).
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: u32,
    /// Keep all connections open and idle for this many seconds, then check each with a ping.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// New connections per second (default: as fast as --connect-concurrency allows).
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
}

/// A parsed `ws://` or `wss://` URL on a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `wss://`: set by `main` from `--tls-ca` once the URL is parsed.
    pub tls: Option<crate::link::TlsTarget>,
    /// `wss://`.
    pub secure: bool,
    /// The host without the port (the TLS server name).
    pub hostname: String,
    /// `Host` header value.
    pub host: String,
    /// Request target (path and query).
    pub path: String,
}

/// Parses `ws[s]://HOST[:PORT][/PATH]`; refuses anything that is not loopback.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, secure) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true)
    } else {
        return Err(format!("{url:?}: URL must start with ws:// or wss://"));
    };
    let default_port = if secure { 443 } else { 80 };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let end = h
            .find(']')
            .ok_or_else(|| format!("{url:?}: bad IPv6 literal"))?;
        let port = match &h[end + 1..] {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("{url:?}: bad port"))?,
        };
        (&h[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{url:?}: bad port"))?),
            None => (authority, default_port),
        }
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .map_err(|_| format!("{url:?}: host must be an IP literal or localhost"))?
    };
    if !is_loopback(ip) {
        return Err(format!(
            "{url:?}: refusing non-loopback address {ip} (wsload only targets 127.0.0.0/8 and ::1)"
        ));
    }
    if port == 0 {
        return Err(format!("{url:?}: port 0"));
    }
    Ok(Target {
        tls: None,
        secure,
        hostname: host.to_string(),
        addr: SocketAddr::new(ip, port),
        host: authority.to_string(),
        path,
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Parses `127.0.0.2-127.0.0.9,127.0.1.1` into a list (loopback only, same family as the target).
pub fn parse_source_ips(spec: &str, target: &SocketAddr) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("bad source address {a:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("bad source address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_535 {
                return Err(format!("bad source range {part:?}"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse::<IpAddr>()
                    .map_err(|_| format!("bad source address {part:?}"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("empty --source-ips".into());
    }
    for ip in &out {
        if !is_loopback(*ip) {
            return Err(format!("source address {ip} is not loopback"));
        }
        if ip.is_ipv4() != target.is_ipv4() {
            return Err(format!(
                "source address {ip} is not the target's address family"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:8001/").unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (8001, "/"));
        let t = parse_url("ws://localhost:9/chat?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("localhost:9", "/chat?x=1")
        );
        let t = parse_url("ws://[::1]:7").unwrap();
        assert_eq!(
            (t.addr.to_string().as_str(), t.path.as_str()),
            ("[::1]:7", "/")
        );
        assert_eq!(parse_url("ws://127.3.4.5").unwrap().addr.port(), 80);
        assert!(parse_url("ws://10.0.0.1:80/").is_err());
        assert!(parse_url("ws://example.com/").is_err());
        let t = parse_url("wss://localhost:8443/").unwrap();
        assert!(t.secure && t.hostname == "localhost" && t.addr.port() == 8443);
        assert_eq!(parse_url("wss://[::1]/").unwrap().addr.port(), 443);
        assert!(parse_url("http://127.0.0.1/").is_err());
    }

    #[test]
    fn source_ranges() {
        let t: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v = parse_source_ips("127.0.0.2-127.0.0.9", &t).unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v[7].to_string(), "127.0.0.9");
        assert_eq!(
            parse_source_ips("127.0.0.2, 127.0.0.5", &t).unwrap().len(),
            2
        );
        assert!(parse_source_ips("10.0.0.1", &t).is_err());
        assert!(parse_source_ips("::1", &t).is_err());
        assert!(parse_source_ips("127.0.0.9-127.0.0.2", &t).is_err());
    }
}

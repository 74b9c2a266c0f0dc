//! `wsloop`: run the echo or chat server.

mod cli_args;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wsloop::apps::{chat::Chat, echo::Echo};
use wsloop::backplane::{random_instance_id, BackplaneConfig};
use wsloop::protocol::deflate::DeflateConfig;
use wsloop::server::Router;
use wsloop::{Config, Handler, Server};

#[derive(Parser, Debug)]
#[command(
    name = "wsloop",
    version,
    about = "An RFC 6455 WebSocket server: one mio event loop per thread",
    after_help = "Logging: set RUST_LOG (error, warn, info, debug). Default: info."
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Mode {
    /// The demo: chat at /chat, echo at /echo, and the demo pages, on one port.
    Demo,
    /// Echo every message back with its opcode (subprotocols: com.kaazing.echo, echo).
    Echo,
    /// Broadcast chat: "userN come in!", "userN: text", "userN left".
    Chat,
}

#[derive(clap::Args, Debug)]
struct Opts {
    /// Address to listen on: PORT (on 127.0.0.1), HOST:PORT or [IPv6]:PORT (port 0 picks a
    /// free port; the start-up line names it).
    #[arg(long, global = true, default_value = "127.0.0.1:8001", value_name = "ADDR", value_parser = cli_args::listen)]
    listen: SocketAddr,
    /// Directory served for plain HTTP GET/HEAD (the demo pages).
    #[arg(long, global = true, value_name = "DIR", value_parser = cli_args::directory)]
    www: Option<PathBuf>,
    /// Do not serve static files at all (plain HTTP requests get 426).
    #[arg(long, global = true)]
    no_www: bool,
    /// Largest message, all fragments together (larger: close 1009). Bytes, or with a unit
    /// B, KiB, MiB, GiB.
    #[arg(long, global = true, default_value = "16MiB", value_name = "SIZE", value_parser = cli_args::message_size)]
    max_message_size: usize,
    /// Largest HTTP request head (larger: 431). Bytes, or with a unit (e.g. 8KiB).
    #[arg(long, global = true, default_value = "8KiB", value_name = "SIZE", value_parser = cli_args::header_size)]
    max_header_size: usize,
    /// Open connections beyond this get HTTP 503 (also capped by the open-file limit).
    #[arg(long, global = true, default_value = "100000", value_name = "N", value_parser = cli_args::connections)]
    max_connections: usize,
    /// Unsent bytes per connection past which sends are refused and a subscriber is
    /// closed with 1008 (the hard bound per connection, e.g. 1MiB).
    #[arg(long, global = true, default_value = "1MiB", value_name = "SIZE", value_parser = cli_args::backpressure)]
    max_backpressure: usize,
    /// Unsent bytes above which a connection's input is not read (it cannot cause more
    /// output than it takes) and, with --slow-subscriber pace, its publishers are held
    /// (at most --max-backpressure; reading resumes at a quarter of it, at most 64 KiB).
    #[arg(long, global = true, default_value = "256KiB", value_name = "SIZE", value_parser = cli_args::backpressure)]
    high_watermark: usize,
    /// A subscriber slower than its publishers: `pace` holds the publishers (lossless for
    /// every reader that reads; one that takes nothing for --slow-subscriber-timeout is
    /// closed 1008), `close` closes it 1008 past --max-backpressure (one reader never
    /// slows the room).
    #[arg(long, global = true, default_value = "pace", value_name = "POLICY", value_parser = ["pace", "close"])]
    slow_subscriber: String,
    /// With --slow-subscriber pace: seconds a subscriber above the high watermark may take
    /// no byte before it is closed with 1008 (0.1 to 86400).
    #[arg(long, global = true, default_value = "5", value_name = "SECS", value_parser = cli_args::seconds)]
    slow_subscriber_timeout: Duration,
    /// Bound on each loop's mailbox (messages from other loops, threads and Redis):
    /// producers are held at half of it, what is still offered past it is dropped and
    /// counted.
    #[arg(long, global = true, default_value = "8MiB", value_name = "SIZE", value_parser = cli_args::mailbox_size)]
    max_mailbox_bytes: usize,
    /// Seconds from accept to a complete request head (0.1 to 86400).
    #[arg(long, global = true, default_value = "10", value_name = "SECS", value_parser = cli_args::seconds)]
    handshake_timeout: Duration,
    /// Seconds without input before closing; a ping goes out at half (0.1 to 86400).
    #[arg(long, global = true, default_value = "120", value_name = "SECS", value_parser = cli_args::seconds)]
    idle_timeout: Duration,
    /// Seconds to wait for the peer's close frame after ours (0.1 to 86400).
    #[arg(long, global = true, default_value = "5", value_name = "SECS", value_parser = cli_args::seconds)]
    close_timeout: Duration,
    /// Listen backlog.
    #[arg(long, global = true, default_value_t = 4096, value_parser = clap::value_parser!(i32).range(1..))]
    backlog: i32,
    /// Set SO_REUSEPORT (several wsloop processes on the same port).
    #[arg(long, global = true)]
    reuse_port: bool,
    /// Event loops (threads), sharing the port; default: the number of cores.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Largest request body read past on a keep-alive connection (larger: 413).
    #[arg(long, global = true, default_value_t = 64 << 10, value_name = "BYTES")]
    max_request_body: usize,
    /// Browser origin allowed to open WebSockets, e.g. https://example.com (repeatable);
    /// others get 403. Without it every origin is accepted.
    #[arg(long = "allow-origin", global = true, value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Serve Prometheus metrics (text format 0.0.4) at GET /metrics on the same port.
    #[arg(long, global = true)]
    metrics: bool,
    /// Accept permessage-deflate (RFC 7692). By default the server answers
    /// server_no_context_takeover and client_no_context_takeover: one compressor and one
    /// inflater per loop, nothing per connection.
    #[arg(long, global = true)]
    deflate: bool,
    /// With --deflate: keep compression contexts between messages when the client allows
    /// it (better ratios on small similar messages; a compressor and an inflater per
    /// connection, sized by --deflate-window-bits and --deflate-mem-level).
    #[arg(long, global = true, requires = "deflate")]
    deflate_context_takeover: bool,
    /// With --deflate: the largest LZ77 window, log2 bytes, both directions (8 acts as 9).
    #[arg(long, global = true, requires = "deflate", default_value_t = 15, value_name = "BITS", value_parser = clap::value_parser!(u8).range(8..=15))]
    deflate_window_bits: u8,
    /// With --deflate: zlib memory level of a compressor (1 smallest .. 9).
    #[arg(long, global = true, requires = "deflate", default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=9))]
    deflate_mem_level: u8,
    /// With --deflate: compression level (0 none, 1 fastest .. 9 best).
    #[arg(long, global = true, requires = "deflate", default_value_t = 6, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=9))]
    deflate_level: u8,
    /// With --deflate: messages shorter than this are sent uncompressed.
    #[arg(long, global = true, requires = "deflate", default_value = "128", value_name = "SIZE", value_parser = cli_args::message_size)]
    deflate_min_size: usize,
    /// With --deflate-context-takeover: at most this many connections keep contexts
    /// (up to ~430 KiB each); later ones are answered no context takeover.
    #[arg(
        long,
        global = true,
        requires = "deflate",
        default_value_t = 1000,
        value_name = "N"
    )]
    deflate_max_contexts: usize,
    /// Speak TLS (wss://, https://) with this PEM certificate chain, leaf first; needs
    /// --tls-key. SIGHUP re-reads both files (open connections keep theirs).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Join other instances through Redis pub/sub: redis://[[USER]:PASSWORD@]HOST[:PORT][/],
    /// or rediss://... for TLS (publishes reach every instance's subscribers; chat names get
    /// the instance tag). A password here is visible in `ps`: see --redis-password-file.
    #[arg(long, global = true, value_name = "URL", value_parser = cli_args::redis_url)]
    redis: Option<BackplaneConfig>,
    /// With --redis: read the Redis password from this file (its first line) rather than
    /// the URL, so it is not visible in `ps`. Without it, the WSLOOP_REDIS_PASSWORD
    /// environment variable is used if set.
    #[arg(long, global = true, value_name = "FILE", requires = "redis")]
    redis_password_file: Option<PathBuf>,
    /// With a rediss:// --redis URL: trust the CA certificates in this PEM file for the Redis
    /// server's certificate (default: the system's CA bundle).
    #[arg(long, global = true, value_name = "FILE", requires = "redis")]
    redis_ca: Option<PathBuf>,
}

/// `www/` of the checkout when run from it (or via cargo), if it exists.
fn default_www() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("www"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www"),
    ];
    candidates.into_iter().find(|p| p.is_dir())
}

/// Prints the start-up line and runs the bound server. A busy port ends the process with
/// a message saying how to choose another.
fn serve<H: Handler + Send>(
    listen: SocketAddr,
    secure: bool,
    bound: std::io::Result<Server<H>>,
    backplane: Option<BackplaneConfig>,
    mode: &str,
    page: &str,
) -> std::io::Result<()> {
    let mut server = match bound {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!("error: {}", cli_args::busy_port_message(listen));
            std::process::exit(1);
        }
        r => r?,
    };
    if let Some(bp) = backplane {
        server = server.with_backplane(bp)?;
    }
    let addr = server.local_addr();
    // The one start-up line on stdout (scripts and tests read the port from it).
    println!("wsloop {mode} listening on {addr}");
    let _ = std::io::stdout().flush();
    let (ws, http) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    log::info!(
        "{mode} server on {ws}://{addr}/ with {} loop(s) (demo page: {http}://{addr}{page})",
        server.loops()
    );
    server.run()
}

/// Each loop's handler: a router built by `factory`, behind the Origin allow-list.
fn routed(origins: &[String], factory: impl Fn() -> Router) -> impl Fn(usize) -> Router {
    let origins = origins.to_vec();
    // An empty allow-list means "no list" (every Origin), as the start-up log says; an
    // empty `allow_origins` list would refuse every browser.
    move |_| match origins.is_empty() {
        true => factory(),
        false => factory().allow_origins(&origins),
    }
}

/// The TLS configuration from `--tls-cert`/`--tls-key` (clap makes sure both or neither
/// are given); unusable files end the process with the reason.
fn tls_config(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Option<wsloop::server::tls::TlsConfig> {
    let (cert, key) = (cert?, key?);
    match wsloop::server::tls::TlsConfig::from_pem_files(cert, key) {
        Ok(t) => {
            log::info!(
                "TLS on (wss://, https://; TLS 1.2 and 1.3, ALPN http/1.1) with {}; SIGHUP reloads it",
                cert.display()
            );
            Some(t)
        }
        Err(e) => {
            eprintln!("error: --tls-cert/--tls-key: {e}");
            std::process::exit(2);
        }
    }
}

/// The Redis password from `--redis-password-file` or `WSLOOP_REDIS_PASSWORD`, over the
/// URL's; an unreadable file ends the process with the reason.
fn redis_password(bp: &mut BackplaneConfig, file: Option<&std::path::Path>) {
    let from = match file {
        Some(path) => BackplaneConfig::read_password_file(path).map(Some),
        None => BackplaneConfig::password_from_env(),
    };
    match from {
        Ok(Some(password)) => bp.set_password(password),
        Ok(None) if bp.url_has_password() => log::warn!(
            "the --redis URL carries a password, visible to every local user in `ps`; use \
             --redis-password-file FILE or {} instead",
            wsloop::backplane::PASSWORD_ENV
        ),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: Redis password: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = Cli::parse();
    let o = cli.opts;
    let fds = wsloop::server::raise_fd_limit();
    log::debug!("open-file limit {fds}");
    let config = Config {
        listen: o.listen,
        backlog: o.backlog,
        reuse_port: o.reuse_port,
        threads: o
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        max_request_body: o.max_request_body,
        max_message_size: o.max_message_size,
        max_header_size: o.max_header_size,
        max_connections: o.max_connections,
        max_backpressure: o.max_backpressure,
        low_watermark: (o.max_backpressure.min(o.high_watermark) / 4).min(64 << 10),
        high_watermark: o.high_watermark,
        slow_subscriber: o.slow_subscriber.parse().expect("clap checked the value"),
        slow_subscriber_timeout: o.slow_subscriber_timeout,
        max_mailbox_bytes: o.max_mailbox_bytes,
        handshake_timeout: o.handshake_timeout,
        idle_timeout: o.idle_timeout,
        close_timeout: o.close_timeout,
        www: if o.no_www {
            None
        } else {
            o.www.or_else(default_www)
        },
        handle_signals: true,
        metrics: o.metrics,
        deflate: o.deflate.then_some(DeflateConfig {
            server_max_window_bits: o.deflate_window_bits,
            client_max_window_bits: o.deflate_window_bits,
            server_no_context_takeover: !o.deflate_context_takeover,
            client_no_context_takeover: !o.deflate_context_takeover,
            mem_level: o.deflate_mem_level,
            level: o.deflate_level,
            min_compress_size: o.deflate_min_size,
        }),
        max_deflate_contexts: o.deflate_max_contexts.min(o.max_connections),
        tls: tls_config(o.tls_cert.as_deref(), o.tls_key.as_deref()),
        ..Config::default()
    };
    if let Err(e) = config.validate() {
        // The flags' parsers check the same bounds; this catches what they combine into.
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if o.allow_origins.is_empty() {
        log::info!("every Origin may open WebSockets (restrict with --allow-origin ORIGIN)");
    }
    let origins = o.allow_origins;
    // The instance id is drawn here so that chat names can carry its tag. What arrives from
    // other instances is held to this instance's rules: no bigger than a client's message
    // may be, nor than one reader's buffer (the chat's rule, so a peer with a bigger
    // --max-backpressure cannot get this instance's room closed as slow readers).
    let backplane = o.redis.map(|bp| {
        let mut bp = BackplaneConfig {
            instance_id: Some(random_instance_id()),
            max_payload: o.max_message_size.min(o.max_backpressure),
            tls_ca_file: o.redis_ca.clone(),
            ..bp
        };
        redis_password(&mut bp, o.redis_password_file.as_deref());
        bp
    });
    let chat = match &backplane {
        Some(bp) => Chat::with_instance_tag(&BackplaneConfig::instance_tag(
            bp.instance_id.unwrap_or_default(),
        )),
        None => Chat::default(),
    };
    let listen = config.listen;
    let secure = config.tls.is_some();
    let result = match cli.mode {
        Mode::Demo => {
            let f = routed(&origins, move || {
                Router::new()
                    .route("/chat", chat.clone())
                    .route("/echo", Echo::default())
            });
            serve(
                listen,
                secure,
                Server::bind_with(config, f),
                backplane,
                "demo",
                "/",
            )
        }
        // Without an allow-list the plain handlers run, as the benchmarks measure them.
        Mode::Echo if origins.is_empty() => serve(
            listen,
            secure,
            Server::bind(config, Echo::default()),
            backplane,
            "echo",
            "/echo.html",
        ),
        Mode::Chat if origins.is_empty() => serve(
            listen,
            secure,
            Server::bind(config, chat),
            backplane,
            "chat",
            "/",
        ),
        Mode::Echo => {
            let f = routed(&origins, || Router::new().fallback(Echo::default()));
            serve(
                listen,
                secure,
                Server::bind_with(config, f),
                backplane,
                "echo",
                "/echo.html",
            )
        }
        Mode::Chat => {
            let f = routed(&origins, move || Router::new().fallback(chat.clone()));
            serve(
                listen,
                secure,
                Server::bind_with(config, f),
                backplane,
                "chat",
                "/",
            )
        }
    };
    if let Err(e) = result {
        log::error!("{e}");
        std::process::exit(1);
    }
}

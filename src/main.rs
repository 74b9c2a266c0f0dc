//! `wsloop`: run the echo or chat server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wsloop::apps::{chat::Chat, echo::Echo};
use wsloop::server::Router;
use wsloop::{Config, Handler, Server};

#[derive(Parser, Debug)]
#[command(
    name = "wsloop",
    version,
    about = "A single-threaded RFC 6455 WebSocket server on mio",
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
    /// Address to listen on (port 0 picks a free port; the start-up line names it).
    #[arg(long, global = true, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Directory served for plain HTTP GET/HEAD (the demo pages).
    #[arg(long, global = true, value_name = "DIR")]
    www: Option<PathBuf>,
    /// Do not serve static files at all (plain HTTP requests get 426).
    #[arg(long, global = true)]
    no_www: bool,
    /// Largest message in bytes, all fragments together (larger: close 1009).
    #[arg(long, global = true, default_value_t = 16 << 20, value_name = "BYTES")]
    max_message_size: usize,
    /// Largest HTTP request head in bytes (larger: 431).
    #[arg(long, global = true, default_value_t = 8 << 10, value_name = "BYTES")]
    max_header_size: usize,
    /// Open connections beyond this get HTTP 503.
    #[arg(long, global = true, default_value_t = 100_000, value_name = "N")]
    max_connections: usize,
    /// Unsent bytes per connection past which sends are refused.
    #[arg(long, global = true, default_value_t = 1 << 20, value_name = "BYTES")]
    max_backpressure: usize,
    /// Seconds from accept to a complete request head.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECS")]
    handshake_timeout: f64,
    /// Seconds without input before closing (a ping goes out at half).
    #[arg(long, global = true, default_value_t = 120.0, value_name = "SECS")]
    idle_timeout: f64,
    /// Seconds to wait for the peer's close frame after ours.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECS")]
    close_timeout: f64,
    /// Listen backlog.
    #[arg(long, global = true, default_value_t = 4096)]
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
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.001, 1e9))
}

/// `www/` of the checkout when run from it (or via cargo), if it exists.
fn default_www() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("www"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www"),
    ];
    candidates.into_iter().find(|p| p.is_dir())
}

fn run<H: Handler + Clone + Send>(
    config: Config,
    handler: H,
    mode: &str,
    page: &str,
) -> std::io::Result<()> {
    let server = Server::bind(config, handler)?;
    let addr = server.local_addr();
    // The one start-up line on stdout (scripts and tests read the port from it).
    println!("wsloop {mode} listening on {addr}");
    let _ = std::io::stdout().flush();
    log::info!(
        "{mode} server on ws://{addr}/ with {} loop(s) (demo page: http://{addr}{page})",
        server.loops()
    );
    server.run()
}

/// Builds each loop's handler, behind an Origin allow-list when one is given.
fn routed(
    origins: &[String],
    factory: impl Fn() -> Router + Send + Sync + 'static,
) -> impl Fn(usize) -> Router {
    let origins = origins.to_vec();
    move |_| factory().allow_origins(&origins)
}

fn run_routed(
    config: Config,
    factory: impl Fn(usize) -> Router,
    mode: &str,
    page: &str,
) -> std::io::Result<()> {
    let server = Server::bind_with(config, factory)?;
    let addr = server.local_addr();
    println!("wsloop {mode} listening on {addr}");
    let _ = std::io::stdout().flush();
    log::info!(
        "{mode} server on ws://{addr}/ with {} loop(s) (demo page: http://{addr}{page})",
        server.loops()
    );
    server.run()
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
        low_watermark: (o.max_backpressure / 4).min(64 << 10),
        handshake_timeout: secs(o.handshake_timeout),
        idle_timeout: secs(o.idle_timeout),
        close_timeout: secs(o.close_timeout),
        www: if o.no_www {
            None
        } else {
            o.www.or_else(default_www)
        },
        handle_signals: true,
        ..Config::default()
    };
    if o.allow_origins.is_empty() {
        log::info!("every Origin may open WebSockets (restrict with --allow-origin ORIGIN)");
    }
    let origins = o.allow_origins;
    let chat = Chat::default();
    let result = match cli.mode {
        Mode::Demo => {
            let f = routed(&origins, move || {
                Router::new()
                    .route("/chat", chat.clone())
                    .route("/echo", Echo::default())
            });
            run_routed(config, f, "demo", "/")
        }
        // Without an allow-list the plain handlers run, as the benchmarks measure them.
        Mode::Echo if origins.is_empty() => run(config, Echo::default(), "echo", "/echo.html"),
        Mode::Chat if origins.is_empty() => run(config, chat, "chat", "/"),
        Mode::Echo => {
            let f = routed(&origins, || Router::new().fallback(Echo::default()));
            run_routed(config, f, "echo", "/echo.html")
        }
        Mode::Chat => {
            let f = routed(&origins, move || Router::new().fallback(chat.clone()));
            run_routed(config, f, "chat", "/")
        }
    };
    if let Err(e) = result {
        log::error!("{e}");
        std::process::exit(1);
    }
}

//! The readiness loop: one `mio::Poll`, one listener, one receive buffer, connections in a
//! slab addressed by their token. Events go to the connection's state (`http.rs` for the
//! HTTP/1.1 side, `ws_read.rs` for WebSocket input); output is written once per
//! connection per iteration (the cork); timers and shutdown live in `expiry.rs` and
//! `shutdown.rs`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use super::backplane_hook::Hook;
use super::config::Config;
use super::connection::{flags, Conn, State};
use super::core::Core;
use super::ctx::Ctx;
use super::fd_limit::SpareFd;
use super::handle::{ServerHandle, Shared};
use super::handler::{ConnId, Handler};
use super::http::Http;
use super::mailbox::{cost, Command, Link, COMMAND_OVERHEAD};
use super::pacing::Producer;
use super::timer::Wheel;
use super::transport::Transport;
use crate::backplane::BackplaneConfig;
use crate::protocol::close;
use crate::protocol::http1::{write_response, Persist};
use crate::protocol::{Decoder, Role};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// How long to stop accepting after EMFILE/ENFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// Mailbox commands (each command of a batch from another loop counts) carried out per
/// iteration.
const MAX_COMMANDS_PER_TURN: usize = 1024;

/// Bytes of mailbox work per iteration: frame bytes times the subscribers they were
/// queued for (a command that reaches nobody counts its overhead). Like the 2 MiB a
/// connection may read per turn, this bounds how long other loops' publishes keep this
/// one from its own sockets.
const MAX_MAILBOX_WORK_PER_TURN: usize = 2 << 20;

/// Full receive buffers read from one connection per iteration before it yields to the
/// others (2 MiB with the default 512 KiB buffer).
const MAX_READS_PER_TURN: u32 = 4;

/// A WebSocket server: one listener per loop on the same port (SO_REUSEPORT), one loop
/// per thread, one handler per loop, nothing shared on the hot path.
pub struct Server<H: Handler> {
    config: Config,
    local_addr: SocketAddr,
    handle: ServerHandle,
    loops: Vec<LoopParts<H>>,
}

/// What one loop is built from; the loop itself (with its connections and the handler's
/// per-connection data) is created on its own thread.
struct LoopParts<H> {
    poll: Poll,
    registry: Registry,
    listener: TcpListener,
    handler: H,
    /// This loop's end of its mailbox (see `handle.rs`).
    mailbox: Receiver<Command>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    spare_fd: SpareFd,
}

/// One running loop.
struct EventLoop<H: Handler> {
    poll: Poll,
    events: Events,
    /// This loop's end of its mailbox (see `handle.rs`).
    mailbox: Receiver<Command>,
    /// The mailbox may hold commands (woken, or the last drain stopped at its bound).
    mail_pending: bool,
    /// The rest of a batch from another loop that the last drain stopped in.
    batch: Option<std::vec::IntoIter<Command>>,
    inner: Inner<H>,
}

/// Everything the event handlers touch, apart from `poll`, `events` and the mailbox.
pub(super) struct Inner<H: Handler> {
    pub(super) core: Core,
    pub(super) handler: H,
    /// The handler's value per connection, by slot: set when an upgrade is accepted,
    /// handed to `close` when the connection ends.
    pub(super) data: Vec<Option<H::Data>>,
    registry: Registry,
    listener: Option<TcpListener>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// The one receive buffer of the loop.
    pub(super) rbuf: Vec<u8>,
    /// Most bytes read at once from a connection in the HTTP state: requests are small,
    /// and what a read brings that cannot be answered yet is held by the connection.
    http_read_size: usize,
    accept_paused_until: Option<Instant>,
    emfile_logged: bool,
    spare_fd: SpareFd,
    pub(super) shutdown_deadline: Option<Instant>,
    /// Connections cut by their close timeout during the shutdown (see `log_shutdown`).
    pub(super) shutdown_cut: usize,
    /// TLS handshake steps left this iteration (see `tls_loop.rs`).
    pub(super) handshakes_left: u32,
}

fn listen(addr: SocketAddr, config: &Config, reuse_port: bool) -> io::Result<TcpListener> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(config.backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl<H: Handler + Clone> Server<H> {
    /// Binds the listeners, giving each loop a clone of `handler`. Nothing runs until
    /// [`Server::run`]. Errors: an invalid [`Config`] (naming the field), or the
    /// address cannot be bound.
    pub fn bind(config: Config, handler: H) -> io::Result<Self> {
        Self::bind_with(config, |_| handler.clone())
    }
}

impl<H: Handler> Server<H> {
    /// Binds the listeners, building each loop's handler with `factory(loop_id)`.
    /// Handlers that share state across loops share it through what the factory
    /// captures (an `Arc`, an atomic counter); on the hot path, each loop touches only
    /// its own.
    pub fn bind_with(config: Config, mut factory: impl FnMut(usize) -> H) -> io::Result<Self> {
        config.validate()?;
        let threads = config.threads.max(1);
        let reuse_port = config.reuse_port || threads > 1;
        if reuse_port && !config.reuse_port && config.listen.port() != 0 {
            // Our loops share the port through SO_REUSEPORT, which would also let us join
            // a group another process (same user) already listens with, silently
            // splitting its connections with it. A plain bind first refuses a busy port as
            // with one loop (AddrInUse); it is closed before the loops bind.
            drop(listen(config.listen, &config, false)?);
        }
        let mut listeners = vec![listen(config.listen, &config, reuse_port)?];
        // Port 0 picks a port once; the other loops join that one.
        let local_addr = listeners[0].local_addr()?;
        for _ in 1..threads {
            listeners.push(listen(local_addr, &config, true)?);
        }
        let mut links = Vec::with_capacity(threads);
        let mut loops = Vec::with_capacity(threads);
        for (i, mut listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let (tx, rx) = std::sync::mpsc::channel();
            links.push(Link::new(
                tx,
                Waker::new(poll.registry(), WAKER)?,
                config.max_mailbox_bytes,
            ));
            // Signals go to loop 0, which stops every loop (or, for SIGHUP, reloads what
            // can be reloaded). SIGHUP is always taken: config-management tools send it to
            // mean "reload", and its default action would kill the process.
            let signals = if config.handle_signals && i == 0 {
                let mut s = signal_hook_mio::v1_0::Signals::new([
                    signal_hook::consts::SIGINT,
                    signal_hook::consts::SIGTERM,
                    signal_hook::consts::SIGHUP,
                ])?;
                poll.registry()
                    .register(&mut s, SIGNALS, Interest::READABLE)?;
                Some(s)
            } else {
                None
            };
            // Every descriptor a loop needs is opened here, before `bind` returns.
            loops.push(LoopParts {
                registry: poll.registry().try_clone()?,
                poll,
                listener,
                handler: factory(i),
                mailbox: rx,
                signals,
                spare_fd: SpareFd::new(),
            });
        }
        let handle = ServerHandle {
            shared: Arc::new(Shared {
                links: links.into(),
                connections: AtomicUsize::new(0),
                metrics: (0..threads).map(|_| Arc::default()).collect(),
                backplane: OnceLock::new(),
            }),
        };
        Ok(Server {
            config,
            local_addr,
            handle,
            loops,
        })
    }

    /// The address the listeners are bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads: publish, send, close, defer, stop.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Number of loops (threads) the server runs.
    pub fn loops(&self) -> usize {
        self.loops.len()
    }

    /// Joins this server to other instances through Redis pub/sub (see [`crate::backplane`]):
    /// a topic's Redis channel (`wsloop:<topic>`) is subscribed while any loop has a local
    /// subscriber of it; every local publish (through [`Ctx`] or a
    /// [`ServerHandle`]) also goes to Redis; what other instances publish is delivered
    /// locally, encoded once for every loop, and never sent back to Redis. Nothing here
    /// waits on Redis: it connects in the background (the server serves locally meanwhile
    /// and through outages, reconnecting with back-off), and a publish that finds the
    /// queue full or Redis away is dropped for the other instances only, counted in
    /// `/metrics` (`wsloop_backplane_dropped_total`) and logged once per run of drops.
    ///
    /// Call before [`Server::run`]. Errors: a backplane was already set
    /// ([`io::ErrorKind::AlreadyExists`]), or its threads could not be spawned.
    pub fn with_backplane(self, mut config: BackplaneConfig) -> io::Result<Self> {
        // What other instances send is held to this server's own limits: a peer with a
        // bigger message or buffer limit cannot send what a local client could not.
        config.max_payload = config.max_payload.min(
            self.config
                .max_message_size
                .min(self.config.max_backpressure),
        );
        let shared = &self.handle.shared;
        if shared.backplane.get().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the server already has a backplane",
            ));
        }
        // Redis cannot be paced (another instance's publisher is out of reach): what it
        // delivers is never waited for; a full mailbox drops it for that loop (counted),
        // and a congested subscriber's parked share is bounded (`pacing.rs`).
        let hook = Hook::start(config, shared.links.clone())?;
        // Only `with_backplane` sets it, and it holds `self`: nobody raced us.
        let _ = shared.backplane.set(hook);
        Ok(self)
    }
}

impl<H: Handler + Send> Server<H> {
    /// Runs every loop (loop 0 on the calling thread, the others on threads of their own)
    /// until stopped (a signal, or [`ServerHandle::stop`]) and every connection has
    /// closed or the close timeout passed.
    ///
    /// A handler that panics takes the whole process down (exit status 101) after
    /// logging which loop died: a port that is half served (the kernel still hands the
    /// dead loop its share of new connections) is worse than a restart.
    pub fn run(self) -> io::Result<()> {
        let Server {
            config,
            handle,
            loops,
            ..
        } = self;
        let mut parts = loops.into_iter();
        let first = parts.next().expect("at least one loop");
        let mut threads = Vec::new();
        for (i, p) in parts.enumerate() {
            let (config, handle) = (config.clone(), handle.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("wsloop-{}", i + 1))
                    .spawn(move || run_loop(i + 1, p, config, handle).0)?,
            );
        }
        let (result, mut signals) = run_loop(0, first, config, handle.clone());
        if result.is_err() {
            handle.stop();
        }
        // Loop 0 may finish its own drain before the others: signals are still read
        // while they finish, so a second one exits at once whatever the loop count.
        while threads.iter().any(|t| !t.is_finished()) {
            if let Some(s) = signals.as_mut() {
                let stop = s.pending().any(|sig| sig != signal_hook::consts::SIGHUP);
                if stop {
                    warn!("second signal: exiting at once");
                    std::process::exit(130);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for t in threads {
            match t.join() {
                Ok(r) => r?,
                Err(_) => std::process::exit(101),
            }
        }
        result
    }
}

/// Builds and runs one loop on the current thread; a panic ends the process. Hands back
/// the loop's signal source (loop 0's), still armed.
fn run_loop<H: Handler>(
    loop_id: usize,
    parts: LoopParts<H>,
    config: Config,
    handle: ServerHandle,
) -> (io::Result<()>, Option<signal_hook_mio::v1_0::Signals>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut el = EventLoop::new(loop_id, parts, config, handle)?;
        let r = el.run();
        Ok::<_, io::Error>((r, el.inner.signals.take()))
    }));
    match outcome {
        Ok(Ok((r, signals))) => (r, signals),
        Ok(Err(e)) => (Err(e), None),
        Err(_) => {
            log::error!("loop {loop_id} panicked (in a handler?); exiting");
            std::process::exit(101);
        }
    }
}

impl<H: Handler> EventLoop<H> {
    fn new(
        loop_id: usize,
        parts: LoopParts<H>,
        config: Config,
        handle: ServerHandle,
    ) -> io::Result<Self> {
        let LoopParts {
            poll,
            registry,
            listener,
            handler,
            mailbox,
            signals,
            spare_fd,
        } = parts;
        let now = Instant::now();
        let rbuf = vec![0u8; config.recv_buffer_size.max(4096)];
        let http_read_size = (config.max_header_size + 1).max(16 << 10).min(rbuf.len());
        let core = Core::new(config, Wheel::new(now), loop_id as u16, handle);
        if loop_id == 0 && core.max_connections < core.config.max_connections {
            info!(
                "max_connections {} lowered to {} to fit the open-file limit",
                core.config.max_connections, core.max_connections
            );
        }
        let inner = Inner {
            core,
            handler,
            data: Vec::new(),
            registry,
            listener: Some(listener),
            signals,
            rbuf,
            http_read_size,
            accept_paused_until: None,
            emfile_logged: false,
            spare_fd,
            shutdown_deadline: None,
            shutdown_cut: 0,
            handshakes_left: 0,
        };
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(1024),
            mailbox,
            mail_pending: false,
            batch: None,
            inner,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            let timeout = match self.mail_pending {
                true => Some(Duration::ZERO),
                false => self.inner.poll_timeout(Instant::now()),
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let inner = &mut self.inner;
            let now = Instant::now();
            inner.core.now = inner.core.wheel.tick_of(now);
            // Those that used up their turn last iteration go after this batch of events.
            let yielded = std::mem::take(&mut inner.core.yielded);
            inner.refill_handshakes();
            for ev in self.events.iter() {
                match ev.token() {
                    LISTENER => inner.accept(now),
                    WAKER => {
                        let me = inner.core.loop_id as usize;
                        let link = &inner.core.handle.shared.links[me];
                        link.clear_woken();
                        let stop = link.stop.load(Ordering::Acquire);
                        let room = link.room_news.swap(false, Ordering::AcqRel);
                        self.mail_pending = true;
                        if stop {
                            inner.begin_shutdown(now);
                        }
                        if room {
                            inner.core.check_loops();
                            inner.run_notices();
                        }
                    }
                    SIGNALS => {
                        let (mut got, mut hup) = (false, false);
                        if let Some(s) = inner.signals.as_mut() {
                            for sig in s.pending() {
                                match sig {
                                    signal_hook::consts::SIGHUP => hup = true,
                                    _ => got = true,
                                }
                            }
                        }
                        if hup {
                            inner.reload_certificate();
                        }
                        if got && inner.shutdown_deadline.is_some() {
                            warn!("second signal: exiting at once");
                            std::process::exit(130);
                        }
                        if got {
                            info!("signal received: closing connections (1001)");
                            inner.core.handle.stop();
                        }
                    }
                    Token(i) => {
                        let idx = i as u32;
                        if ev.is_writable() {
                            inner.on_writable(idx);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            inner.on_readable(idx, ev.is_read_closed() || ev.is_error());
                            // The cork for this socket: everything its input produced for
                            // it goes out in one write, now, while the buffer is hot (and
                            // back in the pool for the next socket). Output for other
                            // sockets (publishes) waits for the end of the iteration.
                            inner.flush_if_dirty(idx);
                        }
                    }
                }
            }
            if std::mem::take(&mut inner.core.pacing.resume_mail) {
                self.mail_pending = true;
            }
            if self.mail_pending {
                self.mail_pending = drain_mailbox(&self.mailbox, &mut self.batch, inner, now);
            }
            inner.refill_handshakes();
            inner.continue_yielded(yielded);
            inner.end_of_iteration(now);
            inner.core.metrics.on_iteration(now.elapsed());
            inner.core.publish_metrics();
            if let Some(deadline) = inner.shutdown_deadline {
                if inner.core.conns.is_empty() || now >= deadline {
                    inner.log_shutdown();
                    return Ok(());
                }
            }
        }
    }
}

impl<H: Handler> Inner<H> {
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.core.yielded.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut t = self.core.wheel.next_timeout(now);
        let mut consider = |d: Duration| t = Some(t.map_or(d, |t| t.min(d)));
        if let Some(tick) = self.core.timers.next_deadline() {
            consider(self.core.wheel.until_tick(tick, now));
        }
        if let Some(until) = self.accept_paused_until {
            consider(until.saturating_duration_since(now));
        }
        if let Some(d) = self.shutdown_deadline {
            consider(d.saturating_duration_since(now));
        }
        if self.core.pacing.needs_sweep() || self.core.pacing.waits_on_loops() {
            // Congested subscribers are checked for progress once per tick, and held
            // producers look at other loops' mailboxes (their room news is the fast path).
            consider(self.core.wheel.until_tick(self.core.now + 1, now));
        }
        t
    }

    /// Calls `f` with the handler, a `Ctx`, the connection's id and its data, if it has
    /// data (it has exactly while open: set on upgrade, taken by `close`).
    pub(super) fn with_data(
        &mut self,
        idx: u32,
        f: impl FnOnce(&mut H, &mut Ctx<'_>, ConnId, &mut H::Data),
    ) {
        let id = self.core.id(idx);
        if let Some(d) = self.data.get_mut(idx as usize).and_then(Option::as_mut) {
            f(
                &mut self.handler,
                &mut Ctx {
                    core: &mut self.core,
                },
                id,
                d,
            );
        }
    }

    pub(super) fn ctx(&mut self) -> (&mut H, Ctx<'_>) {
        (
            &mut self.handler,
            Ctx {
                core: &mut self.core,
            },
        )
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now < t) {
            return;
        }
        self.accept_paused_until = None;
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, _peer)) => self.add_connection(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    // Out of descriptors: answer who is waiting with the spare one, then
                    // back off instead of spinning on the same readiness.
                    // A TLS client could not read a plaintext 503: it gets the close alone.
                    let answer = match self.core.config.tls {
                        None => server_full(),
                        Some(_) => Vec::new(),
                    };
                    let refused = self.spare_fd.refuse_waiting(listener, &answer);
                    self.core.metrics.accepted += refused as u64;
                    for _ in 0..refused {
                        self.core.metrics.on_refused(503);
                    }
                    if !self.emfile_logged {
                        warn!(
                            "accept: {e}; refused {refused} with 503, pausing accepts \
                             (keeps serving open connections)"
                        );
                        self.emfile_logged = true;
                    }
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    debug!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn add_connection(&mut self, stream: TcpStream) {
        let core = &mut self.core;
        core.metrics.accepted += 1;
        let open = core.handle.shared.connections.load(Ordering::Relaxed);
        let over = open >= core.max_connections;
        let tls = core.config.tls.as_ref();
        // Over TLS a 503 would cost a whole handshake first: a full server just closes.
        if over && (tls.is_some() || open >= core.max_connections + core.reject_slack) {
            return; // dropped: closes the socket
        }
        let _ = stream.set_nodelay(true);
        let mut stream = match tls {
            None => Transport::Plain(stream),
            Some(t) => match Transport::tls(stream, t.server_config().clone()) {
                Ok(s) => s,
                Err(e) => {
                    debug!("TLS session: {e}");
                    return;
                }
            },
        };
        let entry = core.conns.vacant_entry();
        let idx = entry.key() as u32;
        if self
            .registry
            .register(
                &mut stream,
                Token(idx as usize),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        core.handle
            .shared
            .connections
            .fetch_add(1, Ordering::Relaxed);
        core.next_generation = core.next_generation.wrapping_add(1);
        let deadline = core.now + core.ticks.handshake;
        entry.insert(Conn {
            stream,
            generation: core.next_generation,
            flags: 0,
            state: State::Http(Http::Head {
                scanned: 0,
                sent: u32::MAX,
            }),
            out: Default::default(),
            rx: Vec::new(),
            decoder: Decoder::new(Role::Server),
            deadline,
            armed: deadline,
            topics: Vec::new(),
        });
        core.wheel.insert(super::timer::Entry {
            index: idx,
            generation: core.next_generation,
            deadline,
        });
        if over {
            debug!("refusing connection (slot {idx}): HTTP 503, server full");
            core.metrics.on_refused(503);
            core.queue_bytes(idx, &server_full());
            core.linger(idx);
        }
    }

    fn on_writable(&mut self, idx: u32) {
        let Some(c) = self.core.conns.get_mut(idx as usize) else {
            return;
        };
        if c.has(flags::WRITE_BLOCKED) {
            c.flags &= !flags::WRITE_BLOCKED;
            self.flush(idx);
        }
    }

    /// Reads until the socket is drained. A read that returns less than the buffer's room
    /// means it is drained for now (edge-triggered epoll reports new data again), so the
    /// read that would only say WouldBlock is never made -- unless `to_eof`: the peer's
    /// FIN (or an error) may already be queued behind the data, and its edge has been
    /// reported, so no event would ever come for it. Then reading goes on until EOF or
    /// WouldBlock. After [`MAX_READS_PER_TURN`] full reads the connection yields and
    /// continues next iteration.
    pub(super) fn on_readable(&mut self, idx: u32, to_eof: bool) {
        self.read_turn(idx, to_eof);
        self.note_tls_backlog(idx);
    }

    fn read_turn(&mut self, idx: u32, to_eof: bool) {
        let mut reads = 0;
        loop {
            let Some(c) = self.core.conns.get_mut(idx as usize) else {
                return;
            };
            if !c.readable() {
                return;
            }
            if reads == MAX_READS_PER_TURN {
                self.core.yield_turn(idx);
                return;
            }
            if !self.handshake_turn(idx) {
                return;
            }
            let c = &mut self.core.conns[idx as usize];
            let room = match c.state {
                State::Http(_) => self.http_read_size,
                _ => self.rbuf.len(),
            };
            match c.stream.read(&mut self.rbuf[..room]) {
                Ok(0) => {
                    self.on_eof(idx);
                    return;
                }
                Ok(n) => {
                    reads += 1;
                    self.core.metrics.bytes_in += n as u64;
                    self.on_bytes(idx, n);
                    if n < room && !to_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // TLS: a FIN without close_notify. HTTP and WebSocket delimit their own
                // messages, so this is an EOF like any other (1006 if no close frame).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.on_eof(idx);
                    return;
                }
                Err(e) => {
                    // TLS failures (an alert or the 400 for plain HTTP is written) too.
                    debug!("read (slot {idx}): {e}");
                    self.core.release(idx);
                    self.run_notices();
                    return;
                }
            }
        }
    }

    fn on_eof(&mut self, idx: u32) {
        // TCP ended: without a close frame this is 1006 for the handler. The peer may only
        // have shut down its write side: what is already queued for it (an echo, the
        // reply to its close frame, an HTTP response) is written before closing.
        // (A file response in progress never gets here: input is not read meanwhile, so
        // its FIN is seen once the file is out.)
        let c = &mut self.core.conns[idx as usize];
        if (c.out.is_empty() && !c.stream.wants_write()) || matches!(c.state, State::Closed) {
            self.core.release(idx);
        } else {
            self.core.notify_closed(idx, close::ABNORMAL, "");
            self.core.linger(idx);
        }
        self.run_notices();
    }

    /// `n` fresh bytes are at the start of `rbuf`.
    fn on_bytes(&mut self, idx: u32, n: usize) {
        let c = &mut self.core.conns[idx as usize];
        match c.state {
            State::Open => {
                c.flags &= !flags::PING_SENT;
                let t = self.core.ticks.idle_half;
                self.core.set_deadline(idx, t);
                self.process_frames(idx, n);
            }
            State::Closing => self.process_frames(idx, n),
            State::Http(_) => self.process_http(idx, n),
            State::Linger | State::Closed => {}
        }
    }

    /// Parses input the connection holds (left when it paused or yielded).
    fn process_held(&mut self, idx: u32) {
        let c = &self.core.conns[idx as usize];
        if c.rx.is_empty() {
            return;
        }
        match c.state {
            State::Open | State::Closing => self.process_frames(idx, 0),
            State::Http(_) => self.process_http(idx, 0),
            State::Linger | State::Closed => {}
        }
    }

    /// Writes what the connection has queued. Then, by state: shut down after final
    /// bytes, move an HTTP exchange on, or tell the handler the backlog drained.
    pub(super) fn flush(&mut self, idx: u32) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(idx as usize) else {
            return;
        };
        c.flags &= !flags::DIRTY;
        if c.has(flags::WRITE_BLOCKED) || matches!(c.state, State::Closed) {
            return;
        }
        let before = c.out.len();
        // TLS: output is gone only once rustls holds no ciphertext either (a no-op for
        // plain sockets and for TLS with nothing held).
        let flushed = c.out.flush(&mut c.stream, &mut core.pool);
        let emptied = match flushed.and_then(|done| Ok(done && c.stream.flush_tls()?)) {
            Ok(done) => done,
            Err(e) => {
                debug!("write (slot {idx}): {e}");
                core.metrics.on_written((before - c.out.len()) as u64);
                core.release(idx);
                self.run_notices();
                return;
            }
        };
        if !emptied {
            c.flags |= flags::WRITE_BLOCKED;
        }
        let left = c.out.len();
        if left < before {
            c.flags |= flags::PROGRESS;
        }
        core.metrics.on_written((before - left) as u64);
        if c.has(flags::ABOVE_LOW) && left <= core.config.low_watermark {
            c.flags &= !flags::ABOVE_LOW;
            // Parked mailbox messages go out first; the subscriber stays congested (and
            // its publishers held) until they are all in its output and it drains.
            if !core.unpark(idx) {
                core.uncongest(idx);
            }
            core.resume(idx, flags::OUT_PAUSED);
            if core.conns[idx as usize].is_open() {
                self.with_data(idx, |h, ctx, id, d| h.drain(ctx, id, d));
            }
            self.run_notices();
        }
        let c = &mut self.core.conns[idx as usize];
        match c.state {
            State::Http(_) => self.http_after_flush(idx, left < before, emptied),
            // Only once everything (also what `drain` queued) is written may we shut down.
            State::Linger if emptied && c.out.is_empty() => self.core.shutdown_write(idx),
            _ => {}
        }
    }

    pub(super) fn flush_if_dirty(&mut self, idx: u32) {
        if self
            .core
            .conns
            .get(idx as usize)
            .is_some_and(|c| c.has(flags::DIRTY))
        {
            self.flush(idx);
        }
    }

    /// Runs the owed `close` callbacks, then lets resumed connections parse what they
    /// hold and read their socket again.
    pub(super) fn run_notices(&mut self) {
        run_notices(&mut self.core, &mut self.handler, &mut self.data);
        while !self.core.resumed.is_empty() {
            for idx in std::mem::take(&mut self.core.resumed) {
                if self
                    .core
                    .conns
                    .get(idx as usize)
                    .is_some_and(|c| c.readable())
                {
                    self.process_held(idx);
                    // Readiness reported while paused was consumed: a FIN may be pending.
                    self.on_readable(idx, true);
                }
                run_notices(&mut self.core, &mut self.handler, &mut self.data);
            }
        }
    }

    /// Gives the connections that yielded last iteration their next turn.
    fn continue_yielded(&mut self, yielded: Vec<u32>) {
        for &idx in &yielded {
            let Some(c) = self.core.conns.get_mut(idx as usize) else {
                continue;
            };
            if c.has(flags::YIELDED) {
                c.flags &= !flags::YIELDED;
                if c.readable() {
                    self.core.resumed.push(idx);
                }
            }
        }
        self.run_notices();
        let mut spare = yielded;
        spare.clear();
        if self.core.yielded.is_empty() {
            self.core.yielded = spare; // keep the allocation
        }
    }

    fn end_of_iteration(&mut self, now: Instant) {
        self.expire_timers();
        self.fire_app_timers();
        if self.core.pacing.needs_sweep() || self.core.pacing.waits_on_loops() {
            self.core.sweep_congested();
            self.core.check_loops();
            self.run_notices();
        }
        // The cork: one write per connection for everything gathered this iteration.
        while !self.core.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.core.dirty);
            for &idx in &dirty {
                // Skips those already flushed after their own read.
                self.flush_if_dirty(idx);
            }
            let mut d = dirty;
            d.clear();
            if self.core.dirty.is_empty() {
                self.core.dirty = d;
            }
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept(now);
        }
        // Deferred teardown: only now are released slots freed and sockets closed.
        for idx in std::mem::take(&mut self.core.to_free) {
            // Closing the socket (dropping the stream) also removes it from epoll, so no
            // deregister syscall is needed.
            if let Some(mut c) = self.core.conns.try_remove(idx as usize) {
                self.core.metrics.on_discarded(c.out.len() as u64);
                c.out.release(&mut self.core.pool);
                self.core.count_freed();
            }
        }
        self.core.post_outbox();
    }

    /// Carries out a command from the mailbox (another thread or loop); returns its work
    /// in bytes (see [`MAX_MAILBOX_WORK_PER_TURN`]).
    fn apply(&mut self, cmd: Command) -> usize {
        self.core.producer = Producer::Mailbox;
        let work = match cmd {
            Command::Publish { topic, frame } => {
                let r = self.core.publish_frame(&topic, &frame, Some(&frame));
                frame.len() * r.delivered.max(1)
            }
            Command::Send { conn, frame } => {
                self.core.send_frame(conn, &frame);
                frame.len()
            }
            Command::Close { conn, code, reason } => {
                Ctx {
                    core: &mut self.core,
                }
                .close(conn, code, &reason);
                COMMAND_OVERHEAD
            }
            Command::Defer(f) => {
                f(&mut Ctx {
                    core: &mut self.core,
                });
                COMMAND_OVERHEAD
            }
            Command::Batch(cmds) => {
                // Batches are opened by `drain_mailbox`; one nested here is carried out whole.
                cmds.into_iter().map(|c| self.apply(c)).sum()
            }
        };
        self.core.producer = Producer::Nobody;
        self.run_notices();
        work
    }

    /// Stops accepting (the listener is closed, so the port is free for a successor).
    pub(super) fn close_listener(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
        }
    }
}

/// Carries out commands from the mailbox, at most [`MAX_COMMANDS_PER_TURN`] and
/// [`MAX_MAILBOX_WORK_PER_TURN`] bytes of work per iteration, opening batches from other
/// loops command by command; returns whether it stopped at that bound (more may be
/// waiting). Another loop that keeps posting cannot keep this one from flushing its
/// output and serving its own sockets. (Under `pace` nothing here waits for a slow
/// subscriber of this loop: what it is sent is parked for it, see `pacing.rs`; it waits
/// only while one of its commands fed another loop with a congested subscriber.)
fn drain_mailbox<H: Handler>(
    mailbox: &Receiver<Command>,
    batch: &mut Option<std::vec::IntoIter<Command>>,
    inner: &mut Inner<H>,
    _now: Instant,
) -> bool {
    let (mut commands, mut work) = (0, 0);
    let me = inner.core.loop_id as usize;
    loop {
        if commands >= MAX_COMMANDS_PER_TURN || work >= MAX_MAILBOX_WORK_PER_TURN {
            return true;
        }
        let links = &inner.core.handle.shared.links;
        if inner.shutdown_deadline.is_none() && inner.core.pacing.mailbox_waits_downstream(links) {
            // Resumed by `check_loops` (each iteration while it waits, and on room news).
            return false;
        }
        let cmd = match batch.as_mut().and_then(Iterator::next) {
            Some(cmd) => cmd,
            None => {
                *batch = None;
                match mailbox.try_recv() {
                    Ok(Command::Batch(cmds)) => {
                        *batch = Some(cmds.into_iter());
                        continue;
                    }
                    Ok(cmd) => cmd,
                    Err(_) => return false,
                }
            }
        };
        let c = cost(&cmd);
        work += inner.apply(cmd);
        commands += 1;
        if inner.core.handle.shared.links[me].done(c) {
            // Below the low mark with producers waiting: loops holding connections for
            // this mailbox look again (handle threads were woken by `done`).
            inner.core.tell_loops_room();
        }
        if std::mem::take(&mut inner.core.pacing.downstream_hit) {
            return true;
        }
    }
}

/// The 503 a client past `max_connections` (or at the fd limit) gets.
fn server_full() -> Vec<u8> {
    let mut resp = Vec::with_capacity(160);
    write_response(
        &mut resp,
        503,
        &[("Retry-After", "1")],
        b"server full\n",
        Persist::Close,
        false,
    );
    resp
}

/// Runs the owed `close` callbacks in order, handing each connection's data back (they
/// may owe more: a leave notice published to a slow subscriber closes it).
pub(super) fn run_notices<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    data: &mut [Option<H::Data>],
) {
    while !core.closed.is_empty() {
        for c in std::mem::take(&mut core.closed) {
            if let Some(d) = data.get_mut(c.id.index()).and_then(Option::take) {
                handler.close(&mut Ctx { core }, c.id, d, c.code, &c.reason);
            }
        }
    }
}

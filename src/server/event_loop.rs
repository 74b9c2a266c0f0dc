//! The single-threaded readiness loop: one `mio::Poll`, one receive buffer, connections in
//! a slab addressed by their token.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use super::config::Config;
use super::connection::{flags, Conn, State};
use super::core::{Core, Ctx};
use super::handler::{Handler, Payload, Upgrade};
use super::static_files;
use super::timer::Wheel;
use crate::protocol::close;
use crate::protocol::frame::OpCode;
use crate::protocol::handshake::{self, find_head_end, parse_request, validate_upgrade};
use crate::protocol::{Decoded, Decoder, Message, Role};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// How long to stop accepting after EMFILE/ENFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// Connections past `max_connections` still get a 503 while fewer than this many extra
/// are lingering; beyond that they are closed at once.
const REJECT_SLACK: usize = 1024;

/// Stops a running [`Server`] gracefully from another thread.
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A WebSocket server: one loop, one thread, one handler.
pub struct Server<H: Handler> {
    poll: Poll,
    events: Events,
    inner: Inner<H>,
}

/// Everything the event handlers touch, apart from `poll` and `events`.
struct Inner<H: Handler> {
    core: Core,
    handler: H,
    registry: Registry,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    /// The one receive buffer of the loop.
    rbuf: Vec<u8>,
    accept_paused_until: Option<Instant>,
    emfile_logged: bool,
    shutdown_deadline: Option<Instant>,
}

fn listen(config: &Config) -> io::Result<TcpListener> {
    let domain = Domain::for_address(config.listen);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if config.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&config.listen.into())?;
    socket.listen(config.backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The open-file soft limit (0 if it cannot be read).
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which is valid and properly
    // aligned for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

/// Raises the open-file soft limit to the hard limit; returns the new soft limit. The
/// binary calls this at start-up; the library never changes process limits on its own.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which is valid
    // and properly aligned for the duration of the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

impl<H: Handler> Server<H> {
    /// Binds the listener. Nothing runs until [`Server::run`].
    pub fn bind(config: Config, handler: H) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut listener = listen(&config)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let signals = if config.handle_signals {
            let mut s = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
            ])?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let now = Instant::now();
        let rbuf = vec![0u8; config.recv_buffer_size.max(4096)];
        let inner = Inner {
            core: Core::new(config, Wheel::new(now)),
            handler,
            registry: poll.registry().try_clone()?,
            listener: Some(listener),
            local_addr,
            signals,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            rbuf,
            accept_paused_until: None,
            emfile_logged: false,
            shutdown_deadline: None,
        };
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            inner,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.inner.stop.clone(),
            waker: self.inner.waker.clone(),
        }
    }

    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// Runs until stopped (signal or [`StopHandle`]) and every connection has closed or
    /// the close timeout passed.
    pub fn run(&mut self) -> io::Result<()> {
        loop {
            let timeout = self.inner.poll_timeout(Instant::now());
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            let inner = &mut self.inner;
            let now = Instant::now();
            inner.core.now = inner.core.wheel.tick_of(now);
            for ev in self.events.iter() {
                match ev.token() {
                    LISTENER => inner.accept(now),
                    WAKER => {
                        if inner.stop.load(Ordering::SeqCst) {
                            inner.begin_shutdown(now);
                        }
                    }
                    SIGNALS => {
                        let got = inner
                            .signals
                            .as_mut()
                            .is_some_and(|s| s.pending().next().is_some());
                        if got {
                            info!("signal received: closing connections (1001)");
                            inner.begin_shutdown(now);
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
            inner.end_of_iteration(now);
            if let Some(deadline) = inner.shutdown_deadline {
                if inner.core.conns.is_empty() || now >= deadline {
                    info!(
                        "shutdown complete ({} connections dropped at the deadline)",
                        inner.core.conns.len()
                    );
                    return Ok(());
                }
            }
        }
    }
}

impl<H: Handler> Inner<H> {
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let mut t = self.core.wheel.next_timeout(now);
        let mut consider = |d: Duration| t = Some(t.map_or(d, |t| t.min(d)));
        if let Some(until) = self.accept_paused_until {
            consider(until.saturating_duration_since(now));
        }
        if let Some(d) = self.shutdown_deadline {
            consider(d.saturating_duration_since(now));
        }
        t
    }

    fn ctx(&mut self) -> (&mut H, Ctx<'_>) {
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
                    // Out of descriptors: the pending connection stays in the backlog.
                    // Back off instead of spinning on the same readiness.
                    if !self.emfile_logged {
                        warn!("accept: {e}; pausing accepts (keeps serving open connections)");
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

    fn add_connection(&mut self, mut stream: TcpStream) {
        let core = &mut self.core;
        let over = core.conns.len() >= core.config.max_connections;
        if over && core.conns.len() >= core.config.max_connections + REJECT_SLACK {
            return; // dropped: closes the socket
        }
        let _ = stream.set_nodelay(true);
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
        core.next_generation = core.next_generation.wrapping_add(1);
        let deadline = core.now + core.ticks.handshake;
        entry.insert(Conn {
            stream,
            generation: core.next_generation,
            flags: 0,
            state: State::Handshake { scanned: 0 },
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
            let mut resp = Vec::new();
            handshake::write_response(
                &mut resp,
                503,
                &[("Retry-After", "1")],
                b"server full\n",
                true,
            );
            core.queue_bytes(idx, &resp);
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
    /// WouldBlock.
    fn on_readable(&mut self, idx: u32, to_eof: bool) {
        loop {
            let Some(c) = self.core.conns.get_mut(idx as usize) else {
                return;
            };
            if !c.readable() {
                return;
            }
            match c.stream.read(&mut self.rbuf) {
                Ok(0) => {
                    self.on_eof(idx);
                    return;
                }
                Ok(n) => {
                    self.on_bytes(idx, n);
                    if n < self.rbuf.len() && !to_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
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
        let c = &mut self.core.conns[idx as usize];
        if let State::Http(body) = &mut c.state {
            // A file is being sent: the rest of it is owed too. Finish it, then close
            // rather than wait for another request.
            body.keep_alive = false;
            return;
        }
        if c.out.is_empty() || matches!(c.state, State::Closed) {
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
            State::Handshake { .. } => {
                // `handshake` bounds what is held: a head not ended within the limit is
                // refused with 431, and bytes behind a complete head (frames pipelined
                // after an upgrade request) belong to the next stage, not to the head.
                c.rx.extend_from_slice(&self.rbuf[..n]);
                self.handshake(idx);
            }
            State::Http(_) => {
                if c.rx.len() + n > self.core.config.max_header_size + 4096 {
                    // A pipelined flood behind a request being answered: bounded.
                    let mut resp = Vec::new();
                    handshake::HttpError::HeadTooLarge.write_response(&mut resp);
                    self.core.queue_bytes(idx, &resp);
                    self.core.linger(idx);
                    return;
                }
                c.rx.extend_from_slice(&self.rbuf[..n]);
            }
            State::Linger | State::Closed => {}
        }
    }

    /// Parses frames from the connection's held bytes followed by the first `n` bytes of
    /// `rbuf`. Frames whole in `rbuf` are parsed in place (zero-copy); only an
    /// incomplete tail, or input left when reading pauses, is copied to the connection.
    fn process_frames(&mut self, idx: u32, n: usize) {
        let max = self.core.config.max_message_size;
        let c = &mut self.core.conns[idx as usize];
        let mut decoder = std::mem::replace(&mut c.decoder, Decoder::new(Role::Server));
        let mut held = std::mem::take(&mut c.rx);
        let from_held = !held.is_empty();
        if from_held {
            held.extend_from_slice(&self.rbuf[..n]);
        }
        let buf: &mut [u8] = if from_held {
            &mut held
        } else {
            &mut self.rbuf[..n]
        };
        let mut off = 0;
        loop {
            let c = &self.core.conns[idx as usize];
            if !c.readable() || !matches!(c.state, State::Open | State::Closing) {
                break;
            }
            match decoder.decode(&mut buf[off..], max) {
                Ok(Decoded::Incomplete { .. }) => break,
                Ok(Decoded::Fragment { consumed }) => off += consumed,
                Ok(Decoded::Message { consumed, message }) => {
                    off += consumed;
                    dispatch(&mut self.core, &mut self.handler, idx, message);
                    run_notices(&mut self.core, &mut self.handler);
                }
                Err(e) => {
                    debug!("protocol error (slot {idx}): {e}");
                    self.core.fail(idx, e.close_code(), e.reason());
                    off = buf.len();
                    break;
                }
            }
        }
        let c = &mut self.core.conns[idx as usize];
        let keep = matches!(c.state, State::Open | State::Closing) && off < buf.len();
        if keep {
            if from_held {
                held.drain(..off);
            } else {
                held = self.core.pool.take();
                held.extend_from_slice(&self.rbuf[off..n]);
            }
            c.rx = held;
        } else {
            // Back to the pool: a connection between frames holds no input buffer.
            self.core.pool.put(held);
        }
        c.decoder = decoder;
        self.run_notices();
    }

    fn handshake(&mut self, idx: u32) {
        let max_head = self.core.config.max_header_size;
        let c = &mut self.core.conns[idx as usize];
        let State::Handshake { scanned } = &mut c.state else {
            return;
        };
        let mut s = *scanned as usize;
        let found = find_head_end(&c.rx, &mut s, max_head);
        *scanned = s as u32;
        let end = match found {
            Ok(Some(end)) => end,
            Ok(None) => return,
            Err(e) => return self.refuse(idx, e.status(), |out| e.write_response(out)),
        };
        let rx = std::mem::take(&mut c.rx);
        let outcome = self.respond(idx, &rx[..end]);
        let c = &mut self.core.conns[idx as usize];
        if matches!(
            c.state,
            State::Open | State::Handshake { .. } | State::Http(_)
        ) {
            // Bytes pipelined behind the head belong to the next stage.
            c.rx = if rx.len() > end {
                rx[end..].to_vec()
            } else {
                Vec::new() // an idle connection holds no input buffer
            };
        }
        match outcome {
            Next::Open(protocol) => {
                let id = self.core.id(idx);
                let (h, mut ctx) = self.ctx();
                h.open(&mut ctx, id, protocol.as_deref());
                self.run_notices();
                if !self.core.conns[idx as usize].rx.is_empty() {
                    self.process_frames(idx, 0);
                }
            }
            Next::Request => {
                if !self.core.conns[idx as usize].rx.is_empty() {
                    self.handshake(idx);
                }
            }
            Next::Done => {}
        }
    }

    /// Answers one complete request head: upgrade, refusal or static file.
    fn respond(&mut self, idx: u32, head: &[u8]) -> Next {
        let req = match parse_request(head) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(idx, e.status(), |out| e.write_response(out));
                return Next::Done;
            }
        };
        if !req.wants_websocket() {
            let resp = static_files::respond(&req, self.core.config.www.as_deref());
            self.core.queue_bytes(idx, &resp.bytes);
            let c = &mut self.core.conns[idx as usize];
            if let Some(body) = resp.body {
                c.state = State::Http(Box::new(body));
                return Next::Done;
            }
            if resp.keep_alive {
                c.state = State::Handshake { scanned: 0 };
                let t = self.core.ticks.handshake;
                self.core.set_deadline(idx, t);
                return Next::Request;
            }
            self.core.linger(idx);
            return Next::Done;
        }
        let upgrade = match validate_upgrade(&req, self.handler.protocols()) {
            Ok(u) => u,
            Err(e) => {
                self.refuse(idx, e.status(), |out| e.write_response(out));
                return Next::Done;
            }
        };
        let protocol: Option<String> = upgrade
            .protocol
            .map(|i| self.handler.protocols()[i].to_owned());
        if let Upgrade::Reject(status) = self.handler.upgrade(&req, protocol.as_deref()) {
            self.refuse(idx, status, |out| {
                handshake::write_response(out, status, &[], b"refused\n", true)
            });
            return Next::Done;
        }
        let mut resp = Vec::with_capacity(160);
        handshake::write_accept_response(&mut resp, &upgrade.accept, protocol.as_deref());
        self.core.queue_bytes(idx, &resp);
        let c = &mut self.core.conns[idx as usize];
        c.state = State::Open;
        c.flags |= flags::OPENED;
        let t = self.core.ticks.idle_half;
        self.core.set_deadline(idx, t);
        Next::Open(protocol)
    }

    fn refuse(&mut self, idx: u32, status: u16, write: impl FnOnce(&mut Vec<u8>)) {
        debug!("refusing request (slot {idx}): HTTP {status}");
        let mut resp = Vec::new();
        write(&mut resp);
        self.core.queue_bytes(idx, &resp);
        self.core.linger(idx);
    }

    /// Writes what the connection has queued. Then, by state: stream more of a file,
    /// shut down after final bytes, or tell the handler the backlog drained.
    fn flush(&mut self, idx: u32) {
        let core = &mut self.core;
        let Some(c) = core.conns.get_mut(idx as usize) else {
            return;
        };
        c.flags &= !flags::DIRTY;
        if c.has(flags::WRITE_BLOCKED) || matches!(c.state, State::Closed) {
            return;
        }
        let emptied = match c.out.flush(&mut c.stream, &mut core.pool) {
            Ok(done) => done,
            Err(e) => {
                debug!("write (slot {idx}): {e}");
                core.release(idx);
                self.run_notices();
                return;
            }
        };
        if !emptied {
            c.flags |= flags::WRITE_BLOCKED;
        }
        let left = c.out.len();
        if c.has(flags::ABOVE_LOW) && left <= core.config.low_watermark {
            c.flags &= !flags::ABOVE_LOW;
            core.resume(idx, flags::PONG_PAUSED);
            if core.conns[idx as usize].is_open() {
                let id = core.id(idx);
                let (h, mut ctx) = self.ctx();
                h.drain(&mut ctx, id);
            }
            self.run_notices();
        }
        if !emptied {
            return;
        }
        let c = &mut self.core.conns[idx as usize];
        if !c.out.is_empty() {
            // `drain` (or input it resumed) queued more, possibly a final close frame:
            // the connection is dirty again, and only once that is written may we shut
            // down or move on.
            return;
        }
        match &mut c.state {
            State::Linger => self.core.shutdown_write(idx),
            State::Http(body) => {
                if body.remaining > 0 {
                    let r = body.refill(c.out.append(&mut self.core.pool));
                    if r.is_err() {
                        self.core.release(idx);
                    } else {
                        self.core.mark_dirty(idx);
                    }
                } else if body.keep_alive {
                    c.state = State::Handshake { scanned: 0 };
                    let t = self.core.ticks.handshake;
                    self.core.set_deadline(idx, t);
                    if !self.core.conns[idx as usize].rx.is_empty() {
                        self.handshake(idx);
                    }
                } else {
                    self.core.linger(idx);
                }
            }
            _ => {}
        }
    }

    fn flush_if_dirty(&mut self, idx: u32) {
        if self
            .core
            .conns
            .get(idx as usize)
            .is_some_and(|c| c.has(flags::DIRTY))
        {
            self.flush(idx);
        }
    }

    fn run_notices(&mut self) {
        run_notices(&mut self.core, &mut self.handler);
        // Resumed connections: parse what they hold, then read the socket again.
        while !self.core.resumed.is_empty() {
            for idx in std::mem::take(&mut self.core.resumed) {
                if self
                    .core
                    .conns
                    .get(idx as usize)
                    .is_some_and(|c| c.readable())
                {
                    if !self.core.conns[idx as usize].rx.is_empty() {
                        self.process_frames(idx, 0);
                    }
                    // Readiness reported while paused was consumed: a FIN may be pending.
                    self.on_readable(idx, true);
                }
                run_notices(&mut self.core, &mut self.handler);
            }
        }
    }

    fn end_of_iteration(&mut self, now: Instant) {
        self.expire_timers();
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
                c.out.release(&mut self.core.pool);
            }
        }
    }

    fn expire_timers(&mut self) {
        let mut due = Vec::new();
        let now = self.core.now;
        self.core.wheel.expire(now, &mut due);
        for e in due {
            let Some(c) = self.core.conns.get_mut(e.index as usize) else {
                continue;
            };
            if c.generation != e.generation || c.armed != e.deadline {
                continue; // stale: the connection was replaced or re-filed earlier
            }
            if c.deadline > now {
                // Activity moved the deadline: file the entry again, lazily.
                c.armed = c.deadline;
                let d = c.deadline;
                self.core
                    .wheel
                    .insert(super::timer::Entry { deadline: d, ..e });
                continue;
            }
            let idx = e.index;
            c.armed = u32::MAX;
            match c.state {
                State::Open if !c.has(flags::PING_SENT) => {
                    c.flags |= flags::PING_SENT;
                    self.core.queue_frame(idx, OpCode::Ping, b"wsloop");
                    let t = self.core.ticks.idle_half;
                    self.core.set_deadline(idx, t);
                }
                State::Open => {
                    debug!("idle timeout (slot {idx})");
                    self.core
                        .start_close(idx, close::GOING_AWAY, "idle timeout");
                }
                _ => {
                    debug!("timeout in {:?} (slot {idx})", c.state);
                    self.core.release(idx);
                }
            }
            self.run_notices();
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
        }
        let idxs: Vec<u32> = self.core.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            match self.core.conns[idx as usize].state {
                State::Open => {
                    self.core
                        .start_close(idx, close::GOING_AWAY, "server shutting down")
                }
                State::Closing | State::Linger | State::Closed => {}
                _ => self.core.release(idx),
            }
        }
        self.run_notices();
        self.shutdown_deadline = Some(now + self.core.config.close_timeout);
    }
}

enum Next {
    /// Upgraded; call `open` with the negotiated subprotocol.
    Open(Option<String>),
    /// A keep-alive HTTP response is queued; the next request may already be held.
    Request,
    Done,
}

/// Hands one decoded message to the handler (or answers it, for control frames).
fn dispatch<H: Handler>(core: &mut Core, handler: &mut H, idx: u32, message: Message<'_>) {
    let id = core.id(idx);
    let open = core.conns[idx as usize].is_open();
    match message {
        Message::Text(t) if open => handler.message(&mut Ctx { core }, id, Payload::Text(t)),
        Message::Binary(b) if open => handler.message(&mut Ctx { core }, id, Payload::Binary(b)),
        Message::Ping(p) if open => {
            // Every ping is answered (RFC 6455 §5.5.2). Pongs count against the write
            // limit: past it, stop reading until drained rather than queue pongs without
            // bound (at most one pong lands above the limit).
            core.queue_frame(idx, OpCode::Pong, p);
            if core.conns[idx as usize].out.len() > core.config.max_backpressure {
                core.pause(idx, flags::PONG_PAUSED);
            }
            handler.ping(&mut Ctx { core }, id, p);
        }
        Message::Pong(p) if open => handler.pong(&mut Ctx { core }, id, p),
        Message::Close(frame) => {
            if open {
                // Echo the peer's code (none if it sent none), then close TCP.
                match frame.code {
                    Some(code) => core.queue_close_frame(idx, code, frame.reason),
                    None => core.queue_frame(idx, OpCode::Close, &[]),
                }
                core.notify_closed(idx, frame.code_or_no_status(), frame.reason);
            }
            core.linger(idx);
        }
        // Data after our close frame is read and dropped (RFC 6455 §1.4).
        _ => {}
    }
}

/// Runs the owed `close` callbacks in order (they may owe more: a leave notice published
/// to a slow subscriber closes it).
fn run_notices<H: Handler>(core: &mut Core, handler: &mut H) {
    while !core.closed.is_empty() {
        for c in std::mem::take(&mut core.closed) {
            handler.close(&mut Ctx { core }, c.id, c.code, &c.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Exercises the `unsafe` getrlimit/setrlimit calls: afterwards the soft limit equals
    /// the hard limit that /proc reports.
    #[test]
    fn fd_limit_raised_to_hard_limit() {
        let got = super::raise_fd_limit();
        assert_eq!(super::fd_limit(), got);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (soft, hard) = (fields[3], fields[4]);
        assert_eq!(soft, hard);
        assert_eq!(got.to_string(), soft);
    }
}

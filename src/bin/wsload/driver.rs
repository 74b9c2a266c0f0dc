//! The worker event loop (one mio `Poll` per thread) and the main thread's controller.
//!
//! Scenarios plug in through [`App`]: the driver owns sockets, the handshake, frame
//! decoding, pings, close handshakes and phases; the app sees whole messages and appends
//! the frames it wants to send. Per read event the driver does one read into the
//! thread's buffer (more only if the buffer filled up), decodes every whole frame in
//! place, lets the app append its replies to one output buffer, and writes that with
//! one syscall. Nothing is allocated per message.

use crate::cli::Target;
use crate::conn::{self, Conn, HandshakeResult, State};
use crate::link::Link;
use crate::stats::{ErrorKind, ThreadStats};
use crate::sys::now_ns;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wsloop::protocol::close::NORMAL;
use wsloop::protocol::decoder::{Decoded, Message};
use wsloop::protocol::deflate::Inflated;
use wsloop::protocol::error::ProtocolError;
use wsloop::protocol::frame::{write_client_frame, OpCode};

/// Largest message wsload accepts from a server.
pub const MAX_MESSAGE: usize = 64 << 20;
const WAKER: Token = Token(usize::MAX);
/// Initial per-thread read buffer (grows only for frames larger than this).
const READ_BUF: usize = 256 * 1024;

/// Run phases, set by the main thread, in this order.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Opening connections.
    Connecting = 0,
    /// Load runs, not measured.
    Warmup = 1,
    /// Load runs and is measured.
    Measure = 2,
    /// No new load; wait for what is in flight.
    Drain = 3,
    /// Connect --hold: ping every connection.
    Check = 4,
    /// Close handshake on every connection.
    Close = 5,
    /// Stop.
    Done = 6,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Connecting,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            4 => Phase::Check,
            5 => Phase::Close,
            _ => Phase::Done,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connect",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Check => "check",
            Phase::Close => "close",
            Phase::Done => "done",
        }
    }
}

/// Counters the workers publish (once per loop iteration) for the main thread.
#[derive(Default)]
pub struct Shared {
    phase: AtomicU8,
    pub stop_connecting: AtomicBool,
    /// Messages received, all phases (progress line).
    pub msgs: AtomicU64,
    /// Handshakes completed.
    pub opened: AtomicU64,
    /// Connections open now.
    pub open: AtomicI64,
    /// Connections that never opened.
    pub failed: AtomicU64,
    pub errors: AtomicU64,
    /// Echo: requests without their echo; broadcast: unacknowledged publishes.
    pub inflight: AtomicI64,
    /// Connect --hold: connections that answered the final ping.
    pub answered: AtomicU64,
    /// --messages: threads that finished their share.
    pub threads_done: AtomicU32,
    /// --messages: when the last thread finished (ns).
    pub done_at_ns: AtomicU64,
}

impl Shared {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Called by an app when its thread finished its --messages share.
    pub fn thread_done(&self, now: u64) {
        self.done_at_ns.fetch_max(now, Ordering::AcqRel);
        self.threads_done.fetch_add(1, Ordering::AcqRel);
    }
}

/// What an app gets with every callback.
pub struct Ctx<'a> {
    /// Current time (ns), refreshed per event.
    pub now: u64,
    pub phase: Phase,
    /// Set while the driver calls `pump` on every connection right after a phase change.
    pub phase_changed: bool,
    pub st: &'a mut ThreadStats,
    pub shared: &'a Shared,
    /// This thread's masking key (fixed per thread: legitimate for a load tool).
    pub mask: [u8; 4],
    /// Change of in-flight messages (flushed to `Shared::inflight`).
    pub inflight: &'a mut i64,
    /// permessage-deflate state of this thread's connections (`z.write(key, ...)` sends a
    /// data frame, compressed if the connection agreed).
    pub z: &'a mut crate::deflate::Thread,
    /// Slab key of the connection the callback is about (`usize::MAX` in `on_phase`).
    pub key: usize,
}

/// A scenario's behaviour. One instance per worker thread.
pub trait App: Send + 'static {
    type Conn: Send;
    fn new_conn(&mut self, id: u32) -> Self::Conn;
    /// Handshake done. Return true to close the connection right away.
    fn on_open(&mut self, _ctx: &mut Ctx, _key: usize, _c: &mut Self::Conn) -> bool {
        false
    }
    /// A text, binary or pong message.
    fn on_message(&mut self, ctx: &mut Ctx, c: &mut Self::Conn, msg: Message<'_>);
    /// Append frames to send (after input was handled, on phase changes and timer ticks).
    fn pump(&mut self, _ctx: &mut Ctx, _c: &mut Self::Conn, _out: &mut Vec<u8>) {}
    /// The phase changed (called once per thread, before `pump` on every connection).
    fn on_phase(&mut self, _ctx: &mut Ctx) {}
    /// The connection is going away (after it was open).
    fn on_close(&mut self, _ctx: &mut Ctx, _key: usize, _c: &mut Self::Conn) {}
    /// Called for every open connection when the Close phase begins (end-of-run checks).
    fn finish(&mut self, _ctx: &mut Ctx, _c: &Self::Conn) {}
    /// Period (ns) at which `pump` must run on `timer_keys` (rate-limited sending).
    fn timer_period(&self) -> Option<u64> {
        None
    }
    fn timer_keys(&self, _out: &mut Vec<usize>) {}
}

/// Connection-level settings shared by all workers.
#[derive(Clone)]
pub struct NetCfg {
    pub target: Target,
    /// Connections with an id at least `.0` go to `.1` instead of `target`.
    pub alt_target: Option<(u32, Target)>,
    pub sources: Vec<IpAddr>,
    pub threads: u32,
    /// Connections to open, all threads.
    pub total: u32,
    /// Attempts in progress at once, all threads.
    pub concurrency: u32,
    /// Sockets a thread may hold at once.
    pub fd_budget_per_thread: usize,
    /// New connections per second, all threads.
    pub rate: Option<f64>,
    pub seed: u64,
    /// Poll with a zero timeout during warmup, measure and drain.
    pub busy_poll: bool,
    /// --deflate: what to offer (every connection must then agree).
    pub deflate: Option<crate::deflate::Offer>,
}

impl NetCfg {
    /// Where connection `id` connects.
    pub fn target_for(&self, id: u32) -> &Target {
        match &self.alt_target {
            Some((from, t)) if id >= *from => t,
            _ => &self.target,
        }
    }
}

struct Worker<A: App> {
    poll: Poll,
    slab: Slab<Conn<A::Conn>>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    app: A,
    z: crate::deflate::Thread,
    st: ThreadStats,
    shared: Arc<Shared>,
    net: Arc<NetCfg>,
    mask: [u8; 4],
    now: u64,
    phase: Phase,
    /// Next connection id to open; ids of this thread are thread, thread+T, ...
    next_id: u32,
    connecting: usize,
    conc: usize,
    rate_start: u64,
    started: u64,
    dead: Vec<usize>,
    keys: Vec<usize>,
    next_timer: u64,
    // Values already added to the shared counters.
    inflight: i64,
    pub_inflight: i64,
    pub_msgs: u64,
    pub_errors: u64,
    pub_opened: u64,
    open_delta: i64,
    failed_delta: u64,
}

impl<A: App> Worker<A> {
    fn run(mut self) -> ThreadStats {
        let mut events = Events::with_capacity(1024);
        loop {
            self.open_more();
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.st.error(ErrorKind::Io, || format!("poll: {e}"));
                    break;
                }
            }
            self.now = now_ns();
            let p = self.shared.phase();
            if p != self.phase {
                self.change_phase(p);
                if p == Phase::Done {
                    break;
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let hup = ev.is_read_closed() || ev.is_error();
                let readable = ev.is_readable() || hup;
                let writable = ev.is_writable() || ev.is_error();
                self.handle(ev.token().0, readable, writable, hup);
            }
            self.timers();
            self.reap();
            self.publish();
        }
        self.publish();
        self.st
    }

    fn timeout(&self) -> Option<Duration> {
        if self.net.busy_poll && matches!(self.phase, Phase::Warmup | Phase::Measure | Phase::Drain)
        {
            return Some(Duration::ZERO);
        }
        let mut due: Option<u64> = None;
        if self.app.timer_period().is_some() {
            due = Some(self.next_timer);
        }
        if let Some(rate) = self.thread_rate() {
            if self.has_more_to_open() && self.connecting < self.conc {
                let next = self.rate_start + ((self.started + 1) as f64 * 1e9 / rate) as u64;
                due = Some(due.map_or(next, |d| d.min(next)));
            }
        }
        due.map(|d| Duration::from_nanos(d.saturating_sub(now_ns())))
    }

    fn thread_rate(&self) -> Option<f64> {
        self.net.rate.map(|r| r / self.net.threads as f64)
    }

    fn has_more_to_open(&self) -> bool {
        self.next_id < self.net.total
            && self.phase <= Phase::Measure
            && !self.shared.stop_connecting.load(Ordering::Relaxed)
    }

    #[allow(clippy::too_many_arguments)]
    fn ctx<'a>(
        st: &'a mut ThreadStats,
        shared: &'a Shared,
        inflight: &'a mut i64,
        z: &'a mut crate::deflate::Thread,
        key: usize,
        now: u64,
        phase: Phase,
        mask: [u8; 4],
    ) -> Ctx<'a> {
        Ctx {
            now,
            phase,
            phase_changed: false,
            st,
            shared,
            mask,
            inflight,
            z,
            key,
        }
    }

    /// Starts new connections while under the concurrency, fd and rate limits.
    fn open_more(&mut self) {
        if !self.has_more_to_open() {
            return;
        }
        if self.rate_start == 0 {
            self.rate_start = self.now;
        }
        let allowed = match self.thread_rate() {
            Some(r) => ((self.now - self.rate_start) as f64 * r / 1e9) as u64 + 1,
            None => u64::MAX,
        };
        while self.next_id < self.net.total
            && self.connecting < self.conc
            && self.slab.len() < self.net.fd_budget_per_thread
            && self.started < allowed
        {
            let id = self.next_id;
            self.next_id += self.net.threads;
            self.started += 1;
            let src = if self.net.sources.is_empty() {
                None
            } else {
                Some(self.net.sources[id as usize % self.net.sources.len()])
            };
            let now = now_ns();
            let sock = match conn::start_connect(self.net.target_for(id).addr, src) {
                Ok(s) => s,
                Err(e) => {
                    self.failed_delta += 1;
                    self.st.error(ErrorKind::Connect, || {
                        let hint = match e.raw_os_error() {
                            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                                " (open-file limit: run several wsload processes)"
                            }
                            Some(libc::EADDRNOTAVAIL) => {
                                " (out of ephemeral ports: add --source-ips)"
                            }
                            _ => "",
                        };
                        format!("connection {id}: {e}{hint}")
                    });
                    continue;
                }
            };
            let entry = self.slab.vacant_entry();
            let key = entry.key();
            let sock = match Link::new(sock, self.net.target.tls.as_ref()) {
                Ok(s) => s,
                Err(e) => {
                    self.failed_delta += 1;
                    self.st.error(ErrorKind::Connect, || format!("TLS: {e}"));
                    continue;
                }
            };
            let mut c = Conn::new(sock, id, self.net.seed, now, self.app.new_conn(id));
            if let Err(e) = self.poll.registry().register(
                &mut c.sock,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.failed_delta += 1;
                self.st
                    .error(ErrorKind::Connect, || format!("register: {e}"));
                continue;
            }
            entry.insert(c);
            self.connecting += 1;
        }
    }

    fn handle(&mut self, key: usize, readable: bool, writable: bool, hup: bool) {
        let Some(c) = self.slab.get_mut(key) else {
            return;
        };
        self.now = now_ns();
        match c.state {
            State::Closed => {}
            State::Connecting => {
                if readable || writable {
                    self.finish_connect(key);
                }
            }
            State::Handshake => {
                if writable {
                    if let Err(e) = c.sock.flush_tls() {
                        self.fail(key, ErrorKind::Handshake, format!("write: {e}"));
                        return;
                    }
                }
                if writable && !c.pending.is_empty() {
                    if let Err(e) = c.flush() {
                        self.fail(key, ErrorKind::Handshake, format!("write: {e}"));
                        return;
                    }
                }
                if readable {
                    self.read_handshake(key);
                }
            }
            State::Open | State::Closing => {
                if writable {
                    if let Err(e) = c.sock.flush_tls() {
                        self.io_error(key, e);
                        return;
                    }
                }
                if writable && !c.pending.is_empty() {
                    if let Err(e) = c.flush() {
                        self.io_error(key, e);
                        return;
                    }
                }
                if readable {
                    self.service(key, true, hup);
                }
            }
        }
    }

    fn finish_connect(&mut self, key: usize) {
        let c = &mut self.slab[key];
        match c.sock.tcp().take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                let id = c.id;
                return self.fail(key, ErrorKind::Connect, format!("connection {id}: {e}"));
            }
        }
        match c.sock.tcp().peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => {
                let id = c.id;
                return self.fail(key, ErrorKind::Connect, format!("connection {id}: {e}"));
            }
        }
        self.wbuf.clear();
        let key_str = std::str::from_utf8(&c.partial).unwrap_or("");
        let target = self.net.target_for(c.id);
        conn::write_request(
            &mut self.wbuf,
            &target.host,
            &target.path,
            key_str,
            self.net.deflate.map(|o| o.header()),
        );
        c.partial.clear();
        c.state = State::Handshake;
        if let Err(e) = c.send(&self.wbuf) {
            self.fail(key, ErrorKind::Handshake, format!("write request: {e}"));
        }
    }

    fn read_handshake(&mut self, key: usize) {
        let c = &mut self.slab[key];
        loop {
            match c.sock.read(&mut self.rbuf) {
                Ok(0) => {
                    return self.fail(key, ErrorKind::Handshake, "EOF before 101".into());
                }
                Ok(n) => {
                    c.partial.extend_from_slice(&self.rbuf[..n]);
                    if n < self.rbuf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(key, ErrorKind::Handshake, format!("read: {e}")),
            }
        }
        match conn::check_response(&c.partial, &c.accept) {
            HandshakeResult::Partial => {}
            HandshakeResult::Failed(why) => {
                let id = c.id;
                self.fail(key, ErrorKind::Handshake, format!("connection {id}: {why}"));
            }
            HandshakeResult::Done(head, extensions) => {
                if let Some(offer) = self.net.deflate {
                    match offer.check_answer(extensions.as_deref()) {
                        Ok(agreed) => {
                            c.decoder.set_permessage_deflate(true);
                            self.z.open(key, agreed);
                        }
                        Err(why) => {
                            let id = c.id;
                            let why = format!("connection {id}: {why}");
                            return self.fail(key, ErrorKind::Handshake, why);
                        }
                    }
                }
                c.partial.drain(..head);
                c.state = State::Open;
                self.connecting -= 1;
                self.open_delta += 1;
                self.st.handshakes += 1;
                if self.st.measuring {
                    self.st.measured_handshakes += 1;
                }
                self.st
                    .hs_hist
                    .record(self.now.saturating_sub(c.started_ns));
                let mut ctx = Self::ctx(
                    &mut self.st,
                    &self.shared,
                    &mut self.inflight,
                    &mut self.z,
                    key,
                    self.now,
                    self.phase,
                    self.mask,
                );
                let close_now = self.app.on_open(&mut ctx, key, &mut c.app);
                if close_now {
                    self.start_close(key, NORMAL);
                } else {
                    // Frames may have arrived with the 101.
                    self.service(key, false, false);
                }
            }
        }
    }

    /// Decodes buffered and (with `read`) newly read frames, lets the app respond, and
    /// writes everything produced with one syscall.
    fn service(&mut self, key: usize, read: bool, hup: bool) {
        let Worker {
            slab,
            rbuf,
            wbuf,
            app,
            z,
            st,
            shared,
            inflight,
            now,
            phase,
            mask,
            ..
        } = self;
        let c = &mut slab[key];
        let mut ctx = Self::ctx(st, shared, inflight, z, key, *now, *phase, *mask);
        wbuf.clear();
        let mut filled = c.partial.len();
        if filled > 0 {
            if filled > rbuf.len() {
                rbuf.resize(filled.next_power_of_two(), 0);
            }
            rbuf[..filled].copy_from_slice(&c.partial);
            c.partial.clear();
            let used = decode_all(c, &mut rbuf[..filled], app, &mut ctx, wbuf);
            rbuf.copy_within(used..filled, 0);
            filled -= used;
        }
        let mut eof = false;
        let mut io_err = None;
        while read && !c.broken {
            if filled == rbuf.len() {
                // A frame bigger than the buffer: grow (rare; bounded by MAX_MESSAGE).
                let n = rbuf.len() * 2;
                rbuf.resize(n, 0);
            }
            let space = rbuf.len() - filled;
            match c.sock.read(&mut rbuf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    filled += n;
                    if ctx.st.measuring {
                        ctx.st.wire_in += n as u64;
                    }
                    let used = decode_all(c, &mut rbuf[..filled], app, &mut ctx, wbuf);
                    rbuf.copy_within(used..filled, 0);
                    filled -= used;
                    // A short read drained the socket: under epoll's edge triggering,
                    // bytes arriving later raise a new event, so skip the EAGAIN read.
                    // Not so for a FIN that was already reported with this event.
                    if n < space && !hup {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    io_err = Some(e);
                    break;
                }
            }
        }
        if filled > 0 && !c.broken && !c.got_close {
            c.partial.extend_from_slice(&rbuf[..filled]);
        }
        if c.state == State::Open {
            app.pump(&mut ctx, &mut c.app, wbuf);
        }
        let fatal_protocol = c.broken;
        if !wbuf.is_empty() {
            if ctx.st.measuring {
                ctx.st.wire_out += wbuf.len() as u64;
            }
            if let Err(e) = c.send(wbuf) {
                io_err.get_or_insert(e);
            }
        }
        if fatal_protocol {
            // decode_all hit a protocol error: close frame written, now drop TCP.
            self.kill(key);
        } else if let Some(e) = io_err {
            self.io_error(key, e);
        } else if eof {
            self.eof(key);
        }
    }

    fn eof(&mut self, key: usize) {
        let c = &mut self.slab[key];
        if !c.got_close {
            self.st.close_code(wsloop::protocol::close::ABNORMAL);
            let id = c.id;
            if c.sent_close {
                self.st.error(ErrorKind::NoCloseReply, || {
                    format!("connection {id}: TCP closed without answering our close frame")
                });
            } else {
                self.st.error(ErrorKind::ServerClosed, || {
                    format!("connection {id}: TCP closed without a close frame")
                });
            }
        }
        self.kill(key);
    }

    fn io_error(&mut self, key: usize, e: io::Error) {
        let c = &self.slab[key];
        // A reset after the close handshake completed is not an error.
        if !c.got_close {
            let id = c.id;
            self.st.close_code(wsloop::protocol::close::ABNORMAL);
            self.st
                .error(ErrorKind::Io, || format!("connection {id}: {e}"));
        }
        self.kill(key);
    }

    /// A connection that never opened.
    fn fail(&mut self, key: usize, kind: ErrorKind, why: String) {
        self.st.error(kind, || why);
        self.kill(key);
    }

    /// Sends a close frame and waits for the server's close and EOF.
    fn start_close(&mut self, key: usize, code: u16) {
        let c = &mut self.slab[key];
        if c.state != State::Open {
            return;
        }
        self.wbuf.clear();
        write_client_frame(
            &mut self.wbuf,
            true,
            OpCode::Close,
            &code.to_be_bytes(),
            self.mask,
        );
        c.sent_close = true;
        c.state = State::Closing;
        if let Err(e) = c.send(&self.wbuf) {
            self.io_error(key, e);
        }
    }

    /// Marks a connection dead; it leaves the slab (closing the socket) after this batch
    /// of events, so no stale event can reach a reused slot.
    fn kill(&mut self, key: usize) {
        let c = &mut self.slab[key];
        match c.state {
            State::Closed => return,
            State::Connecting | State::Handshake => {
                self.connecting -= 1;
                self.failed_delta += 1;
            }
            State::Open | State::Closing => {
                self.open_delta -= 1;
                let mut ctx = Self::ctx(
                    &mut self.st,
                    &self.shared,
                    &mut self.inflight,
                    &mut self.z,
                    key,
                    self.now,
                    self.phase,
                    self.mask,
                );
                self.app.on_close(&mut ctx, key, &mut c.app);
            }
        }
        c.state = State::Closed;
        self.dead.push(key);
    }

    fn reap(&mut self) {
        for key in self.dead.drain(..) {
            self.z.close(key);
            self.slab.remove(key);
        }
    }

    /// Runs `pump` on one connection and writes what it produced.
    fn pump_one(&mut self, key: usize, phase_changed: bool) {
        let Some(c) = self.slab.get_mut(key) else {
            return;
        };
        if c.state != State::Open {
            return;
        }
        self.wbuf.clear();
        let mut ctx = Self::ctx(
            &mut self.st,
            &self.shared,
            &mut self.inflight,
            &mut self.z,
            key,
            self.now,
            self.phase,
            self.mask,
        );
        ctx.phase_changed = phase_changed;
        self.app.pump(&mut ctx, &mut c.app, &mut self.wbuf);
        if !self.wbuf.is_empty() {
            if self.st.measuring {
                self.st.wire_out += self.wbuf.len() as u64;
            }
            if let Err(e) = c.send(&self.wbuf) {
                self.io_error(key, e);
            }
        }
    }

    fn timers(&mut self) {
        let Some(period) = self.app.timer_period() else {
            return;
        };
        if self.now < self.next_timer {
            return;
        }
        self.next_timer = self.now + period;
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        self.app.timer_keys(&mut keys);
        for &k in &keys {
            self.pump_one(k, false);
        }
        self.keys = keys;
    }

    fn change_phase(&mut self, new: Phase) {
        self.phase = new;
        self.st.measuring = new == Phase::Measure;
        {
            let mut ctx = Self::ctx(
                &mut self.st,
                &self.shared,
                &mut self.inflight,
                &mut self.z,
                usize::MAX,
                self.now,
                new,
                self.mask,
            );
            self.app.on_phase(&mut ctx);
        }
        let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
        match new {
            Phase::Close => {
                for &k in &keys {
                    let c = &self.slab[k];
                    match c.state {
                        State::Open => {
                            let mut ctx = Self::ctx(
                                &mut self.st,
                                &self.shared,
                                &mut self.inflight,
                                &mut self.z,
                                k,
                                self.now,
                                new,
                                self.mask,
                            );
                            self.app.finish(&mut ctx, &c.app);
                            self.start_close(k, NORMAL);
                        }
                        State::Connecting | State::Handshake => {
                            let id = c.id;
                            self.fail(
                                k,
                                ErrorKind::ConnectTimeout,
                                format!("connection {id} not open when the run ended"),
                            );
                        }
                        State::Closing | State::Closed => {}
                    }
                }
            }
            Phase::Done => {
                for &k in &keys {
                    let c = &self.slab[k];
                    match c.state {
                        State::Closing => {
                            let id = c.id;
                            let kind = if c.got_close {
                                ErrorKind::CloseTimeout
                            } else {
                                ErrorKind::NoCloseReply
                            };
                            self.st.error(kind, || {
                                format!("connection {id}: close handshake did not finish in time")
                            });
                        }
                        State::Open | State::Connecting | State::Handshake => {
                            let id = c.id;
                            self.st.error(ErrorKind::Deadline, || {
                                format!("connection {id} still {:?} at the end", c.state)
                            });
                        }
                        State::Closed => {}
                    }
                    self.kill(k);
                }
                self.reap();
            }
            _ => {
                for &k in &keys {
                    self.pump_one(k, true);
                }
            }
        }
        self.reap();
    }

    /// After --connect-timeout: give up on connections not open yet.
    fn abandon_connecting(&mut self) {
        if self.shared.stop_connecting.load(Ordering::Relaxed) && self.next_id < self.net.total {
            // Never attempted: count them as failed too.
            let left = (self.net.total - self.next_id).div_ceil(self.net.threads) as u64;
            self.next_id = self.net.total;
            self.st.errors[ErrorKind::ConnectTimeout as usize] += left;
            self.st.error_samples.push(format!(
                "connect_timeout: {left} connections never attempted (--connect-timeout)"
            ));
            self.failed_delta += left;
        }
        if self.shared.stop_connecting.load(Ordering::Relaxed) && self.connecting > 0 {
            let keys: Vec<usize> = self
                .slab
                .iter()
                .filter(|(_, c)| matches!(c.state, State::Connecting | State::Handshake))
                .map(|(k, _)| k)
                .collect();
            for k in keys {
                let id = self.slab[k].id;
                self.fail(
                    k,
                    ErrorKind::ConnectTimeout,
                    format!("connection {id} not open within --connect-timeout"),
                );
            }
            self.reap();
        }
    }

    /// Adds this iteration's changes to the shared counters.
    fn publish(&mut self) {
        if self.shared.stop_connecting.load(Ordering::Relaxed)
            && (self.connecting > 0 || self.next_id < self.net.total)
        {
            self.abandon_connecting();
        }
        let s = &self.shared;
        if self.st.total_msgs != self.pub_msgs {
            s.msgs
                .fetch_add(self.st.total_msgs - self.pub_msgs, Ordering::Relaxed);
            self.pub_msgs = self.st.total_msgs;
        }
        let errors = self.st.error_count();
        if errors != self.pub_errors {
            s.errors
                .fetch_add(errors - self.pub_errors, Ordering::Relaxed);
            self.pub_errors = errors;
        }
        if self.st.handshakes != self.pub_opened {
            s.opened
                .fetch_add(self.st.handshakes - self.pub_opened, Ordering::Relaxed);
            self.pub_opened = self.st.handshakes;
        }
        if self.inflight != self.pub_inflight {
            s.inflight
                .fetch_add(self.inflight - self.pub_inflight, Ordering::Relaxed);
            self.pub_inflight = self.inflight;
        }
        if self.open_delta != 0 {
            s.open.fetch_add(self.open_delta, Ordering::Relaxed);
            self.open_delta = 0;
        }
        if self.failed_delta != 0 {
            s.failed.fetch_add(self.failed_delta, Ordering::Relaxed);
            self.failed_delta = 0;
        }
    }
}

/// Decodes every whole frame at the start of `buf`; returns the bytes consumed. Pings are
/// answered, close frames recorded and answered; data and pongs go to the app.
fn decode_all<A: App>(
    c: &mut Conn<A::Conn>,
    buf: &mut [u8],
    app: &mut A,
    ctx: &mut Ctx,
    out: &mut Vec<u8>,
) -> usize {
    let mut off = 0;
    while off < buf.len() && !c.got_close && !c.broken {
        match c.decoder.decode(&mut buf[off..], MAX_MESSAGE) {
            Ok(Decoded::Incomplete { .. }) => break,
            Ok(Decoded::Fragment { consumed }) => off += consumed,
            Ok(Decoded::Message { consumed, message }) => {
                off += consumed;
                match message {
                    Message::Ping(p) => {
                        if !c.sent_close {
                            write_client_frame(out, true, OpCode::Pong, p, ctx.mask);
                        }
                    }
                    Message::Close(cf) => {
                        let code = cf.code_or_no_status();
                        ctx.st.close_code(code);
                        c.got_close = true;
                        if !c.sent_close {
                            let id = c.id;
                            let reason = cf.reason.to_string();
                            ctx.st.error(ErrorKind::ServerClosed, || {
                                format!("connection {id}: server closed with {code} {reason:?}")
                            });
                            // Echo the code back (none if the server sent none).
                            let payload = cf.code.map(u16::to_be_bytes);
                            write_client_frame(
                                out,
                                true,
                                OpCode::Close,
                                payload.as_ref().map_or(&[][..], |p| &p[..]),
                                ctx.mask,
                            );
                            c.sent_close = true;
                            c.state = State::Closing;
                        }
                    }
                    m @ (Message::Text(_) | Message::Binary(_) | Message::Pong(_)) => {
                        app.on_message(ctx, &mut c.app, m);
                    }
                    Message::Compressed { text, data } => {
                        // Inflated into a buffer taken from the thread's state for the
                        // call, so the app gets `ctx` and the message at once.
                        let mut inflated = std::mem::take(&mut ctx.z.inflated);
                        let r = match ctx
                            .z
                            .inflate(ctx.key, text, data, MAX_MESSAGE, &mut inflated)
                        {
                            Ok(Inflated::Text(t)) => {
                                app.on_message(ctx, &mut c.app, Message::Text(t));
                                Ok(())
                            }
                            Ok(Inflated::Binary(b)) => {
                                app.on_message(ctx, &mut c.app, Message::Binary(b));
                                Ok(())
                            }
                            Err(e) => Err(e),
                        };
                        ctx.z.inflated = inflated;
                        if let Err(e) = r {
                            protocol_error(c, ctx, out, e);
                            return buf.len();
                        }
                    }
                }
            }
            Err(e) => {
                protocol_error(c, ctx, out, e);
                return buf.len();
            }
        }
    }
    if c.got_close || c.broken {
        // Nothing after a close frame is meaningful.
        return buf.len();
    }
    off
}

/// The server broke the protocol: count it, send our close frame with the error's code;
/// the caller writes `out` and then drops the connection.
fn protocol_error<S>(c: &mut Conn<S>, ctx: &mut Ctx, out: &mut Vec<u8>, e: ProtocolError) {
    let id = c.id;
    ctx.st
        .error(ErrorKind::Protocol, || format!("connection {id}: {e}"));
    if !c.sent_close {
        let mut p = [0u8; 125];
        let n = wsloop::protocol::close::encode_payload(e.close_code(), e.reason(), &mut p);
        write_client_frame(out, true, OpCode::Close, &p[..n], ctx.mask);
        c.sent_close = true;
    }
    c.broken = true;
}

/// The main thread's handle on the workers: phases, waiting with progress lines, results.
pub struct Controller {
    pub shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    handles: Vec<JoinHandle<ThreadStats>>,
    pub start: Instant,
    deadline: Instant,
    pub deadline_hit: bool,
    name: &'static str,
    quiet: bool,
    last_progress: Instant,
    last_msgs: u64,
    /// What a "message" is in the progress line.
    pub unit: &'static str,
}

/// Spawns `threads` workers; `make_app(thread_index)` builds each one's app.
/// The masking key of worker `thread` (apps that precompute frames need it up front).
pub fn thread_mask(seed: u64, thread: u32) -> [u8; 4] {
    (conn::splitmix64(seed ^ thread as u64) as u32 | 0x0101_0101).to_le_bytes()
}

/// Spawns the workers in phase `initial`; `make_app(thread_index)` builds each one's app.
pub fn spawn<A: App>(
    name: &'static str,
    net: NetCfg,
    initial: Phase,
    deadline: Duration,
    quiet: bool,
    mut make_app: impl FnMut(u32) -> A,
) -> Result<Controller, String> {
    crate::sys::epoch_ns(); // fix the broadcast timestamp epoch before any worker runs
    let shared = Arc::new(Shared::default());
    shared.phase.store(initial as u8, Ordering::Release);
    let net = Arc::new(net);
    let mut wakers = Vec::new();
    let mut handles = Vec::new();
    let conc = (net.concurrency as usize)
        .div_ceil(net.threads as usize)
        .max(1);
    for t in 0..net.threads {
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| format!("eventfd: {e}"))?);
        wakers.push(waker);
        let worker = Worker {
            poll,
            slab: Slab::with_capacity(
                (net.total as usize / net.threads as usize + 1).min(net.fd_budget_per_thread),
            ),
            rbuf: vec![0; READ_BUF],
            wbuf: Vec::with_capacity(64 * 1024),
            app: make_app(t),
            z: crate::deflate::Thread::new(),
            st: ThreadStats {
                measuring: initial == Phase::Measure,
                ..ThreadStats::default()
            },
            shared: shared.clone(),
            net: net.clone(),
            mask: thread_mask(net.seed, t),
            now: now_ns(),
            phase: initial,
            next_id: t,
            connecting: 0,
            conc,
            rate_start: 0,
            started: 0,
            dead: Vec::new(),
            keys: Vec::new(),
            next_timer: 0,
            inflight: 0,
            pub_inflight: 0,
            pub_msgs: 0,
            pub_errors: 0,
            pub_opened: 0,
            open_delta: 0,
            failed_delta: 0,
        };
        let h = std::thread::Builder::new()
            .name(format!("wsload-{t}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("spawn: {e}"))?;
        handles.push(h);
    }
    let now = Instant::now();
    Ok(Controller {
        shared,
        wakers,
        handles,
        start: now,
        deadline: now + deadline,
        deadline_hit: false,
        name,
        quiet,
        last_progress: now,
        last_msgs: 0,
        unit: "msg/s",
    })
}

impl Controller {
    pub fn set_phase(&mut self, p: Phase) {
        self.shared.phase.store(p as u8, Ordering::Release);
        self.wake();
    }

    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    pub fn threads(&self) -> u32 {
        self.handles.len() as u32
    }

    pub fn stop_connecting(&mut self) {
        self.shared.stop_connecting.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// Waits until `pred` holds (true) or `max` passes or the deadline hits (false),
    /// printing a progress line every second.
    pub fn wait(&mut self, max: Duration, pred: impl Fn(&Shared) -> bool) -> bool {
        let until = Instant::now() + max;
        loop {
            if pred(&self.shared) {
                return true;
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.deadline_hit = true;
                return false;
            }
            if now >= until {
                return false;
            }
            self.progress(now);
            let step = until
                .min(self.deadline)
                .min(self.last_progress + Duration::from_secs(1))
                .saturating_duration_since(now)
                .min(Duration::from_millis(10));
            std::thread::sleep(step);
        }
    }

    /// Sleeps (with progress lines) unless the deadline hits first.
    pub fn sleep(&mut self, d: Duration) {
        self.wait(d, |_| false);
    }

    fn progress(&mut self, now: Instant) {
        let dt = now.duration_since(self.last_progress).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let s = &self.shared;
        let msgs = s.msgs.load(Ordering::Relaxed);
        // Connect reports handshakes, the others messages received.
        let count = if self.unit == "conn/s" {
            s.opened.load(Ordering::Relaxed)
        } else {
            msgs
        };
        let rate = count.saturating_sub(self.last_msgs) as f64 / dt;
        self.last_msgs = count;
        self.last_progress = now;
        if self.quiet {
            return;
        }
        eprintln!(
            "wsload {} {:>6.1}s {:<8} {:>12} {}  open {:>6}  opened {:>6}  failed {}  inflight {}  errors {}",
            self.name,
            now.duration_since(self.start).as_secs_f64(),
            self.phase().name(),
            crate::report::group(rate.round() as u64),
            self.unit,
            s.open.load(Ordering::Relaxed),
            s.opened.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.inflight.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
        );
    }

    /// Close handshake on every connection (up to `max`), stop the workers, merge stats.
    pub fn finish(mut self, max_close: Duration) -> ThreadStats {
        if self.phase() < Phase::Close {
            self.set_phase(Phase::Close);
        }
        self.wait(max_close, |s| s.open.load(Ordering::Relaxed) <= 0);
        self.set_phase(Phase::Done);
        let mut total = ThreadStats::default();
        for h in self.handles.drain(..) {
            match h.join() {
                Ok(st) => total.merge(st),
                Err(_) => total.error(ErrorKind::Io, || "worker thread panicked".into()),
            }
        }
        if self.deadline_hit {
            total.error(ErrorKind::Deadline, || "overall deadline expired".into());
        }
        total
    }
}

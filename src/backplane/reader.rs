//! The reader thread: connects (with back-off), says `HELLO 3`, hands the connection's write
//! half to the writer, then reads: messages go to the sink, replies settle the writer's
//! [`Pending`](super::Pending) entries, subscription counts go to the stats.
//!
//! Logging is per condition, not per event, so that nothing Redis does can flood the log:
//! an outage is one `warn` when it starts and one `info` when the link has been stable for
//! [`BackplaneConfig::stable_after`](super::BackplaneConfig::stable_after) (however many
//! connections flapped in between); Redis refusing publishes is one `warn` when it starts
//! and one `info` with the count when a publish is accepted again; the same for refused
//! `SUBSCRIBE`/`PING`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::link::Stream;
use super::resp::{self, Decoder, Inbound, Limits};
use super::{envelope, Expect, Incoming, Shared};

/// Publishers whose recent messages are remembered; past this the table starts afresh
/// (an instance that restarts gets a new id, so old entries only accumulate; a flood of
/// forged ids can only make duplicate detection forget, never make it drop more).
const MAX_PUBLISHERS: usize = 4096;
/// Recent messages remembered per publisher for duplicate detection.
const RECENT: usize = 8;

type Sink = Box<dyn FnMut(Incoming) + Send>;

/// A condition that is logged when it starts and when it ends, not per occurrence.
#[derive(Default)]
struct Latch {
    /// Occurrences in the current run; `None` while the condition is off.
    run: Option<u64>,
}

impl Latch {
    /// Counts one occurrence; true on the first of a run (log the start).
    fn hit(&mut self) -> bool {
        let first = self.run.is_none();
        *self.run.get_or_insert(0) += 1;
        first
    }

    /// Ends the run; its length if one was on (log the end).
    fn clear(&mut self) -> Option<u64> {
        self.run.take()
    }
}

/// An outage: from the first failure until a connection stays up for `stable_after`.
struct Outage {
    since: Instant,
    /// Connection attempts that failed or did not stay up.
    attempts: u64,
}

/// The reader's state across connections.
struct Reader {
    shared: Arc<Shared>,
    sink: Sink,
    addr: String,
    decoder: Decoder,
    backoff: Duration,
    outage: Option<Outage>,
    ever_up: bool,
    refused_publish: Latch,
    refused_other: Latch,
    dedup: Dedup,
}

pub(super) fn run(shared: Arc<Shared>, sink: Sink) {
    let cfg = &shared.cfg;
    // The biggest blob worth keeping is a message of `max_payload` with its envelope; a
    // bigger one is skipped by the decoder and dropped as oversize.
    let limits = Limits::for_bulk(cfg.max_payload.saturating_add(envelope::HEADER_LEN));
    let mut r = Reader {
        addr: format!("{}:{}", cfg.host, cfg.port),
        backoff: cfg.backoff_min,
        decoder: Decoder::new(limits),
        outage: None,
        ever_up: false,
        refused_publish: Latch::default(),
        refused_other: Latch::default(),
        dedup: Dedup::new(),
        sink,
        shared,
    };
    r.run();
}

impl Reader {
    fn run(&mut self) {
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        while !shared.shutdown.load(Relaxed) {
            self.decoder.reset();
            match self.connect() {
                Ok(stream) => {
                    if !install(&shared, &stream) {
                        stream.shutdown();
                        break;
                    }
                    let c = &shared.counters;
                    c.connects.fetch_add(1, Relaxed);
                    if self.ever_up {
                        c.reconnects.fetch_add(1, Relaxed);
                    } else {
                        info!("backplane: connected to Redis at {}", self.addr);
                    }
                    self.ever_up = true;
                    shared.wake_writer();
                    let up_at = Instant::now();
                    let why = self.read_loop(&stream, up_at);
                    {
                        let mut link = shared.link();
                        link.up = false;
                        link.fresh = None;
                        link.current = None;
                        // Counted before `connected` goes false, so whoever sees the link down
                        // also sees its unanswered publishes as dropped.
                        let lost = shared.pending().reset(0);
                        c.dropped.fetch_add(lost, Relaxed);
                        c.connected.store(false, Relaxed);
                        c.subscriptions.store(0, Relaxed);
                    }
                    stream.shutdown();
                    shared.wake_writer();
                    if shared.shutdown.load(Relaxed) {
                        break;
                    }
                    if why.kind() == io::ErrorKind::InvalidData {
                        c.protocol_errors.fetch_add(1, Relaxed);
                    }
                    match &mut self.outage {
                        None => {
                            warn!(
                                "backplane: lost Redis at {}: {why}; local delivery continues, \
                                 publishes to other instances are dropped until it is back",
                                self.addr
                            );
                            shared.stable.store(false, Relaxed);
                            self.outage = Some(Outage {
                                since: Instant::now(),
                                attempts: 1,
                            });
                        }
                        Some(o) => {
                            // Up again but not for long: the same outage, no new line.
                            o.attempts += 1;
                            debug!("backplane: Redis at {} dropped again: {why}", self.addr);
                        }
                    }
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        shared.counters.protocol_errors.fetch_add(1, Relaxed);
                    }
                    match &mut self.outage {
                        None => {
                            warn!(
                                "backplane: cannot reach Redis at {}: {e}; retrying with back-off \
                                 up to every {:?}",
                                self.addr, cfg.backoff_max
                            );
                            shared.stable.store(false, Relaxed);
                            self.outage = Some(Outage {
                                since: Instant::now(),
                                attempts: 1,
                            });
                        }
                        Some(o) => {
                            o.attempts += 1;
                            debug!("backplane: Redis at {} still away: {e}", self.addr);
                        }
                    }
                }
            }
            shared.nap(self.backoff);
            self.backoff = (self.backoff * 2).min(cfg.backoff_max);
        }
    }

    /// The connection has stayed up long enough: the outage (if any) is over.
    fn stable(&mut self) {
        self.backoff = self.shared.cfg.backoff_min;
        self.shared.stable.store(true, Relaxed);
        if let Some(o) = self.outage.take() {
            info!(
                "backplane: Redis at {} is back (outage of {:.1} s, {} attempt(s)); re-subscribed",
                self.addr,
                o.since.elapsed().as_secs_f64(),
                o.attempts
            );
        }
    }

    /// TCP connect, the TLS handshake for `rediss://`, and `HELLO 3` (with `AUTH` and a
    /// client name). Bytes after the answer stay in the decoder.
    fn connect(&mut self) -> io::Result<Stream> {
        let cfg = &self.shared.cfg;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
        let mut stream = None;
        for addr in (cfg.host.as_str(), cfg.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, cfg.io_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let sock = stream.ok_or(last)?;
        sock.set_nodelay(true)?;
        sock.set_write_timeout(Some(cfg.io_timeout))?;
        sock.set_read_timeout(Some(cfg.io_timeout))?;
        let stream = Stream::new(sock, cfg, self.shared.tls.as_ref())?;
        let name = format!("wsloop-{}", self.shared.tag);
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some((user, pass)) = &cfg.auth {
            args.extend([&b"AUTH"[..], user.as_bytes(), pass.as_bytes()]);
        }
        args.extend([&b"SETNAME"[..], name.as_bytes()]);
        let mut hello = Vec::new();
        resp::push_command(&mut hello, &args);
        stream.write_all(&hello)?;
        // The whole answer within io_timeout, however it is dribbled.
        let deadline = Instant::now() + cfg.io_timeout;
        loop {
            match self.decoder.next_frame()? {
                Some(Inbound::Error(msg)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("HELLO 3 refused: {msg}"),
                    ));
                }
                Some(Inbound::Reply) => break,
                // Pushes before the answer (none expected): not the answer.
                Some(_) => {}
                None if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no complete answer to HELLO in time",
                    ));
                }
                None => read_more(&stream, &mut self.decoder)?,
            }
        }
        stream.set_read_timeout(Some(cfg.keepalive * 3))?;
        Ok(stream)
    }

    /// Reads and dispatches until the connection fails; returns why.
    fn read_loop(&mut self, stream: &Stream, up_at: Instant) -> io::Error {
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        // Connected, HELLO answered: the link starts with no outstanding command.
        let mut was_stable = false;
        loop {
            loop {
                let inbound = match self.decoder.next_frame() {
                    Ok(Some(inbound)) => inbound,
                    Ok(None) => break,
                    Err(e) => return e.into(),
                };
                if let Err(e) = handle(
                    &shared,
                    &self.addr,
                    inbound,
                    &mut self.sink,
                    &mut self.dedup,
                    &mut self.refused_publish,
                    &mut self.refused_other,
                ) {
                    return e;
                }
            }
            if !was_stable && up_at.elapsed() >= cfg.stable_after {
                was_stable = true;
                self.stable();
            }
            // A Redis that trickles bytes (or reads and never answers) is noticed here: the
            // oldest command written must be answered within three keep-alive periods.
            let stalled = shared
                .pending()
                .q
                .front()
                .is_some_and(|(_, since)| since.elapsed() > cfg.keepalive * 3);
            if stalled {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("a command unanswered for over {:?}", cfg.keepalive * 3),
                );
            }
            if let Err(e) = read_more(stream, &mut self.decoder) {
                return e;
            }
        }
    }
}

/// Publishes the new connection to the writer and to `Drop`; false if shutting down.
fn install(shared: &Shared, stream: &Stream) -> bool {
    let (Ok(fresh), Ok(current)) = (stream.try_clone(), stream.try_clone()) else {
        return false;
    };
    let mut link = shared.link();
    // Checked under the lock `Drop` takes after setting the flag, so a connection made during
    // shutdown is never left blocking in `read`.
    if shared.shutdown.load(Relaxed) {
        return false;
    }
    link.epoch += 1;
    link.up = true;
    link.fresh = Some(fresh);
    link.current = Some(current);
    let lost = shared.pending().reset(link.epoch);
    shared.counters.dropped.fetch_add(lost, Relaxed);
    shared.counters.connected.store(true, Relaxed);
    true
}

/// Reads once from `stream` into the decoder; end of stream is an error.
fn read_more(stream: &Stream, decoder: &mut Decoder) -> io::Result<()> {
    let got = loop {
        match stream.read_into(decoder) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match got {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed by Redis",
        )),
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "nothing from Redis for three keep-alive periods",
            ))
        }
        Err(e) => Err(e),
    }
}

/// One frame from Redis. An error return gives the link up (a reply to no command).
fn handle(
    shared: &Shared,
    addr: &str,
    inbound: Inbound<'_>,
    sink: &mut Sink,
    dedup: &mut Dedup,
    refused_publish: &mut Latch,
    refused_other: &mut Latch,
) -> io::Result<()> {
    let c = &shared.counters;
    match inbound {
        Inbound::Message { channel, data } => {
            deliver(shared, channel, data, sink, dedup);
            Ok(())
        }
        Inbound::OversizeMessage { channel, len } => {
            // Dropped whatever it is: its bytes are gone already.
            debug!(
                "backplane: dropped a {len}-byte message on {:?}: over max_payload",
                String::from_utf8_lossy(channel)
            );
            c.oversize.fetch_add(1, Relaxed);
            Ok(())
        }
        Inbound::Subscribed { count, .. } => {
            c.subscriptions.store(count.max(0) as u64, Relaxed);
            let mut p = shared.pending();
            if let Some((Expect::Subscribe(n), _)) = p.q.front_mut() {
                *n -= 1;
                if *n == 0 {
                    p.q.pop_front();
                }
            }
            if let Some(run) = refused_other.clear() {
                info!(
                    "backplane: Redis at {addr} accepts SUBSCRIBE again ({run} command(s) refused)"
                );
            }
            Ok(())
        }
        Inbound::BadMessage => {
            c.malformed.fetch_add(1, Relaxed);
            Ok(())
        }
        Inbound::OtherPush => Ok(()),
        Inbound::Error(msg) => {
            let what = {
                let mut p = shared.pending();
                // A SUBSCRIBE's successes are pushes, so an entry still at the front when a
                // reply comes is either this error's command or one Redis answered in full.
                let front = p.q.front_mut().map(|(e, _)| e);
                match front {
                    Some(Expect::Publish(n)) => {
                        *n -= 1;
                        if *n == 0 {
                            p.q.pop_front();
                        }
                        Some(Expect::Publish(1))
                    }
                    Some(e) => {
                        let e = *e;
                        p.q.pop_front();
                        Some(e)
                    }
                    None => None,
                }
            };
            match what {
                Some(Expect::Publish(_)) => {
                    c.refused.fetch_add(1, Relaxed);
                    c.dropped.fetch_add(1, Relaxed);
                    if refused_publish.hit() {
                        warn!(
                            "backplane: Redis at {addr} refuses PUBLISH: {msg}; publishes for \
                             other instances are dropped (wsloop_backplane_refused_total) until \
                             it accepts them again"
                        );
                    }
                    Ok(())
                }
                Some(e) => {
                    if refused_other.hit() {
                        warn!("backplane: Redis at {addr} refuses a command ({e:?}): {msg}");
                    }
                    Ok(())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an error reply to no command: {msg}"),
                )),
            }
        }
        Inbound::Reply => {
            let mut p = shared.pending();
            // Skip SUBSCRIBE entries Redis answered with fewer pushes than channels (it
            // would not; a hostile one could): a reply is never a SUBSCRIBE's success.
            while matches!(p.q.front(), Some((Expect::Subscribe(_), _))) {
                p.q.pop_front();
            }
            match p.q.front_mut() {
                Some((Expect::Publish(n), _)) => {
                    *n -= 1;
                    if *n == 0 {
                        p.q.pop_front();
                    }
                    drop(p);
                    c.published.fetch_add(1, Relaxed);
                    if let Some(run) = refused_publish.clear() {
                        info!(
                            "backplane: Redis at {addr} accepts PUBLISH again; {run} publish(es) \
                             were refused"
                        );
                    }
                    Ok(())
                }
                Some(_) => {
                    p.q.pop_front();
                    Ok(())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a reply to no command",
                )),
            }
        }
    }
}

/// Recent messages per publisher, for dropping exact duplicates only.
///
/// Why not "drop anything not newer than the last sequence number": the envelope is not
/// authenticated (anyone who can `PUBLISH` on the Redis can write one), so a forged message
/// with a real instance id and sequence number `u64::MAX` would make that rule drop every
/// later real message of that instance. A rule may only drop what it is sure was delivered
/// already: a message equal, by a keyed hash of its whole contents, to one of the
/// publisher's last [`RECENT`]. A forged copy of the real next message can then only
/// "pre-deliver" the same bytes. An older sequence number is delivered, counted as out of
/// order, and becomes the publisher's position (resets tolerated), so after a forged jump the
/// count shows it once and the real messages flow on.
struct Dedup {
    keys: RandomState,
    publishers: HashMap<u64, Recent>,
}

#[derive(Default)]
struct Recent {
    last: u64,
    seen: [(u64, u64); RECENT],
    next: usize,
}

/// What `Dedup` says about a message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    New,
    /// Delivered, but older than the last one seen from its publisher.
    Older,
    Duplicate,
}

impl Dedup {
    fn new() -> Dedup {
        Dedup {
            keys: RandomState::new(),
            publishers: HashMap::new(),
        }
    }

    fn check(
        &mut self,
        instance: u64,
        seq: u64,
        topic: &str,
        text: bool,
        payload: &[u8],
    ) -> Verdict {
        let digest = self.keys.hash_one((topic, text, payload));
        if self.publishers.len() >= MAX_PUBLISHERS && !self.publishers.contains_key(&instance) {
            self.publishers.clear();
        }
        let r = self.publishers.entry(instance).or_default();
        if r.seen.contains(&(seq, digest)) && seq != 0 {
            return Verdict::Duplicate;
        }
        let verdict = if seq <= r.last {
            Verdict::Older
        } else {
            Verdict::New
        };
        r.last = seq;
        r.seen[r.next] = (seq, digest);
        r.next = (r.next + 1) % RECENT;
        verdict
    }
}

/// A message push: checked like a client's message, then handed to the sink.
fn deliver(shared: &Shared, channel: &[u8], data: &[u8], sink: &mut Sink, dedup: &mut Dedup) {
    let c = &shared.counters;
    let topic = channel
        .strip_prefix(shared.cfg.channel_prefix.as_bytes())
        .and_then(|t| std::str::from_utf8(t).ok());
    let (Some(topic), Ok((header, payload))) = (topic, envelope::decode(data)) else {
        c.malformed.fetch_add(1, Relaxed);
        return;
    };
    if header.instance == shared.instance {
        c.own_echoes.fetch_add(1, Relaxed);
        return;
    }
    if payload.len() > shared.cfg.max_payload {
        c.oversize.fetch_add(1, Relaxed);
        return;
    }
    if header.text && simdutf8::basic::from_utf8(payload).is_err() {
        c.malformed.fetch_add(1, Relaxed);
        return;
    }
    // Filtering here makes `unsubscribe` take effect at once, not when Redis confirms it.
    let Some(topic) = shared
        .link()
        .desired
        .get_key_value(topic)
        .map(|(k, _)| k.clone())
    else {
        return;
    };
    match dedup.check(header.instance, header.seq, &topic, header.text, payload) {
        Verdict::Duplicate => {
            c.duplicates.fetch_add(1, Relaxed);
            return;
        }
        Verdict::Older => {
            c.out_of_order.fetch_add(1, Relaxed);
        }
        Verdict::New => {}
    }
    c.received.fetch_add(1, Relaxed);
    sink(Incoming {
        topic,
        text: header.text,
        payload: Arc::from(payload),
        from: header.instance,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_jump_does_not_silence_the_real_publisher() {
        let mut d = Dedup::new();
        assert_eq!(d.check(7, 1, "t", true, b"a"), Verdict::New);
        assert_eq!(d.check(7, u64::MAX, "t", true, b"forged"), Verdict::New);
        assert_eq!(d.check(7, 2, "t", true, b"b"), Verdict::Older);
        assert_eq!(d.check(7, 3, "t", true, b"c"), Verdict::New);
        // Exact repeats are dropped; the same number with other contents is not.
        assert_eq!(d.check(7, 3, "t", true, b"c"), Verdict::Duplicate);
        assert_eq!(d.check(7, 3, "t", true, b"C"), Verdict::Older);
        assert_eq!(d.check(7, 3, "u", true, b"c"), Verdict::Older);
        assert_eq!(d.check(8, 3, "t", true, b"c"), Verdict::New);
    }

    #[test]
    fn latch_logs_start_and_end_once() {
        let mut l = Latch::default();
        assert!(l.hit());
        assert!(!l.hit());
        assert!(!l.hit());
        assert_eq!(l.clear(), Some(3));
        assert_eq!(l.clear(), None);
    }
}

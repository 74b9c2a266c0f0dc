//! A Redis pub/sub backplane: several wsloop instances act as one.
//!
//! A publish on any instance reaches the subscribers of every instance: each instance
//! subscribes to the Redis channels of the topics its clients use, publishes its local
//! publishes to Redis, and hands what Redis delivers to a `sink` that fans it out locally.
//!
//! # Shape
//! ```text
//! loop threads ──publish()──► bounded queue ──► writer thread ──┐
//!              ──subscribe()─► topic counts ─┘  (batches, PING) │ one RESP3 TCP connection
//!                                                               ▼
//! sink(Incoming) ◄── reader thread (connect, back-off, read) ◄── Redis
//! ```
//! - **Two plain threads, no runtime.** The reader blocks in `read` and owns the connection's
//!   life (connect, `HELLO 3`, back-off); the writer owns every byte written (publishes in
//!   batches, `SUBSCRIBE`/`UNSUBSCRIBE`, keep-alive `PING`). A loop thread only takes a mutex
//!   around a topic count or `try_send`s onto a bounded queue: it never waits on Redis.
//! - **One connection, RESP3.** With `HELLO 3` a subscribed connection can still `PUBLISH`, so
//!   one FIFO carries this instance's publishes: order per publisher holds by construction.
//!   The RESP decoder is our own bounded, iterative, resumable scanner ([`resp::Decoder`]),
//!   over our own socket, because the reader/writer split needs a full-duplex socket (the
//!   `redis` crate's blocking `PubSub` borrows one connection for both and can only poll
//!   with read time-outs) and because every byte from Redis is hostile input (see
//!   [`resp`] for why not `redis-protocol`).
//! - **Replies are matched to commands.** The writer records what it wrote (publishes,
//!   `SUBSCRIBE`s, `PING`) in a bounded FIFO before writing it; the reader pops an entry per
//!   reply. A publish counts as published when Redis answers it with a receiver count; an
//!   error answer (`-NOPERM`, `-ERR`) counts it as dropped and refused, logged once when
//!   refusals start and once when they end (with the count). A command left unanswered for
//!   three keep-alive periods gives the link up (a Redis that dribbles bytes, or none).
//! - **Channels** are `wsloop:<topic>` ([`BackplaneConfig::channel_prefix`]); messages carry a
//!   20-byte header ([`envelope`]: instance id, sequence number, text flag) before the payload.
//! - **What arrives is checked like what a client sends**: a message that is not an envelope,
//!   or claims to be text and is not UTF-8, is counted in
//!   [`BackplaneStats::malformed_total`] and dropped; one over
//!   [`BackplaneConfig::max_payload`] (this instance's limit, whatever the publisher's) in
//!   [`BackplaneStats::oversize_total`], dropped without being buffered. An instance drops
//!   its own messages (it delivered them locally already) and exact duplicates of a
//!   publisher's recent messages. The sequence number is *not* trusted to drop anything
//!   else: anyone who can `PUBLISH` on the Redis can forge an envelope, and a forged huge
//!   sequence number must not make this instance ignore the real publisher's later
//!   messages. So an older sequence number is delivered, counted
//!   ([`BackplaneStats::out_of_order_total`]) and taken as the publisher's new position.
//! - **Outages.** When Redis goes away the reader logs it once (`warn`), retries with
//!   exponential back-off (100 ms doubling to 5 s), and the writer re-subscribes every topic
//!   on each new connection. The back-off is reset, and the recovery logged (`info`, once),
//!   only when a connection has stayed up for [`BackplaneConfig::stable_after`] (10 s): a
//!   Redis that answers `HELLO` and drops the link, or sends garbage, is retried at the
//!   back-off's pace with one `warn` for the whole outage. A protocol error (bytes that are
//!   not RESP3, a frame over the limits) is such an outage too, and counted in
//!   [`BackplaneStats::protocol_errors_total`]. Publishes made while Redis is away are
//!   dropped and counted ([`BackplaneStats::dropped_total`]); there is no replay (Redis
//!   pub/sub has none either). Local delivery is the caller's and is not affected.
//!
//! # Wiring into the loops
//! The server does this itself: see [`Server::with_backplane`](crate::Server::with_backplane)
//! (`src/server/backplane_hook.rs`). What it does, for another embedding:
//! make one [`Backplane`] per process, share it (`Arc`) between the loops. On a loop's first
//! local subscriber of a topic call [`Backplane::subscribe`], on its last
//! [`Backplane::unsubscribe`] (counts are kept per topic across the loops). On a local publish,
//! fan out locally as usual and call [`Backplane::publish`]. The sink runs on the reader
//! thread: it should hand each [`Incoming`] to every loop through the loops' cross-thread
//! handle (the `Arc`s make that one refcount bump per loop) and return.

mod config;
pub mod envelope;
mod link;
mod reader;
pub mod resp;
mod writer;

pub use config::{random_instance_id, BackplaneConfig, PASSWORD_ENV};

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A message another instance published, as Redis delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The topic (the channel name without the prefix). Shared with the backplane's topic
    /// table: cloning is a refcount bump.
    pub topic: Arc<str>,
    /// True for a text message (opcode 0x1), false for binary (0x2).
    pub text: bool,
    /// The message payload, shared so that several loops can take it without a copy.
    pub payload: Arc<[u8]>,
    /// Id of the instance that published it ([`Backplane::instance_id`] over there).
    pub from: u64,
}

/// Counters of one [`Backplane`], all since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackplaneStats {
    /// A Redis connection is up (answered `HELLO`).
    pub connected: bool,
    /// Connections established (the first one included).
    pub connects_total: u64,
    /// Connections established after a lost one.
    pub reconnects_total: u64,
    /// Publishes Redis accepted (answered with a receiver count).
    pub published_total: u64,
    /// Messages handed to the sink.
    pub received_total: u64,
    /// Publishes dropped: Redis away, the queue full, the payload over the limit, refused by
    /// Redis ([`BackplaneStats::refused_total`]), or written but unanswered when the link
    /// was lost (Redis may or may not have delivered those). Eventually every publish is
    /// counted once, in `published_total` or here.
    pub dropped_total: u64,
    /// Publishes Redis answered with an error (`-NOPERM`, `-ERR`...); also in
    /// `dropped_total`.
    pub refused_total: u64,
    /// Own messages Redis sent back, dropped (they were delivered locally already).
    pub own_echoes_total: u64,
    /// Messages older than the last one from the same publisher (should stay 0: a forged
    /// or replayed envelope, or a confused Redis); delivered anyway, see the module docs.
    pub out_of_order_total: u64,
    /// Exact repeats (same publisher, sequence number and contents) of one of the last
    /// messages of that publisher, dropped.
    pub duplicates_total: u64,
    /// Messages on our channels that are not wsloop envelopes, or text that is not UTF-8,
    /// dropped.
    pub malformed_total: u64,
    /// Messages over [`BackplaneConfig::max_payload`], dropped (never buffered whole).
    pub oversize_total: u64,
    /// Links given up because Redis sent bytes that are not RESP3 or a frame over the
    /// decoder's limits ([`resp::Limits`]).
    pub protocol_errors_total: u64,
    /// Channels the live connection is subscribed to, as Redis last confirmed (0 when down).
    pub subscriptions: u64,
    /// Topics with at least one local subscriber.
    pub topics: u64,
}

/// What the loops hand the writer thread.
enum Cmd {
    Publish {
        topic: Box<str>,
        text: bool,
        payload: Vec<u8>,
    },
    /// Look at the topic table / connection slot again (or stop, if shutting down).
    Wake,
}

/// The connection as the reader, the writer and the loops see it.
struct Link {
    /// Topic -> number of `subscribe` calls not yet undone.
    desired: HashMap<Arc<str>, usize>,
    /// Bumped on every established connection.
    epoch: u64,
    /// The reader holds a live connection of `epoch`.
    up: bool,
    /// The write half of the `epoch` connection, until the writer takes it.
    fresh: Option<link::Stream>,
    /// A handle on the live connection, to shut it down from `Drop`.
    current: Option<link::Stream>,
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    connects: AtomicU64,
    reconnects: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    own_echoes: AtomicU64,
    out_of_order: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    oversize: AtomicU64,
    protocol_errors: AtomicU64,
    subscriptions: AtomicU64,
}

/// What the writer wrote that expects an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This many `PUBLISH`es in a row: one reply each.
    Publish(u64),
    /// A `SUBSCRIBE` / `UNSUBSCRIBE` of this many channels: one push each, or one error.
    Subscribe(u64),
    /// A `PING`: one reply.
    Ping,
}

/// Most entries in [`Pending`]: past this the writer drops publishes instead of writing them
/// (Redis is not answering; the reader's stall check ends the link soon after).
const MAX_PENDING: usize = 4096;
/// A run of publishes is one entry only while its first one is younger than this, so the
/// front entry's age says how long Redis has been sitting on an answer.
const PENDING_MERGE: Duration = Duration::from_secs(1);

/// Commands written on connection `epoch` and not answered yet, oldest first.
struct Pending {
    epoch: u64,
    q: std::collections::VecDeque<(Expect, std::time::Instant)>,
}

impl Pending {
    /// Appends what one write carries, if it is for the live connection and fits; false
    /// otherwise (then the write must not happen).
    fn push(&mut self, epoch: u64, batch: &[Expect]) -> bool {
        if epoch != self.epoch || self.q.len() + batch.len() > MAX_PENDING {
            return false;
        }
        let now = std::time::Instant::now();
        for e in batch {
            match (self.q.back_mut(), e) {
                (Some((Expect::Publish(n), since)), Expect::Publish(m))
                    if now.duration_since(*since) < PENDING_MERGE =>
                {
                    *n += m
                }
                _ => self.q.push_back((*e, now)),
            }
        }
        true
    }

    /// Forgets everything (the connection ended, or a new one starts as `epoch`); returns
    /// the publishes that were never answered.
    fn reset(&mut self, epoch: u64) -> u64 {
        self.epoch = epoch;
        self.q
            .drain(..)
            .map(|(e, _)| match e {
                Expect::Publish(n) => n,
                _ => 0,
            })
            .sum()
    }
}

struct Shared {
    cfg: BackplaneConfig,
    /// For `rediss://`: the TLS client configuration, built once at start.
    tls: Option<Arc<rustls::ClientConfig>>,
    instance: u64,
    tag: String,
    link: Mutex<Link>,
    /// Written, not answered yet (the writer appends, the reader pops).
    pending: Mutex<Pending>,
    /// The topic table changed since the writer last reconciled.
    topics_dirty: AtomicBool,
    /// No outage is open: the link has not failed since it last stayed up for
    /// `stable_after` (true before the first failure).
    stable: AtomicBool,
    shutdown: AtomicBool,
    counters: Counters,
    /// Payload bytes in the queue.
    queued_bytes: AtomicUsize,
    tx: SyncSender<Cmd>,
    /// Lets `Drop` cut the reader's back-off sleep short.
    nap: (Mutex<()>, Condvar),
}

impl Shared {
    fn link(&self) -> MutexGuard<'_, Link> {
        // A panic elsewhere while holding the lock leaves counts that are still consistent.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nudges the writer; a full queue means it is busy and will look at the flags anyway.
    fn wake_writer(&self) {
        let _ = self.tx.try_send(Cmd::Wake);
    }

    /// Sleeps `d` unless shutting down.
    fn nap(&self, d: Duration) {
        let guard = self.nap.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .nap
            .1
            .wait_timeout_while(guard, d, |_| !self.shutdown.load(Relaxed));
    }
}

/// One process's link to Redis. `Send + Sync`: share it between loop threads in an `Arc`.
/// Dropping it closes the connection and joins its two threads (at most about
/// [`BackplaneConfig::io_timeout`] if one is inside a connect or a blocked write).
pub struct Backplane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Backplane {
    /// [`BackplaneConfig::from_url`] then [`Backplane::start`].
    pub fn connect(
        url: &str,
        sink: impl FnMut(Incoming) + Send + 'static,
    ) -> io::Result<Backplane> {
        Backplane::start(BackplaneConfig::from_url(url)?, sink)
    }

    /// Starts the reader and writer threads with [`BackplaneConfig::instance_id`] (a fresh
    /// random one if `None`). Returns at once:
    /// the connection is made in the background (so an instance starts, and serves locally,
    /// while Redis is down); watch [`BackplaneStats::connected`]. `sink` gets every message of
    /// another instance on a subscribed topic, on the reader thread; it must not own this
    /// `Backplane` (its threads would never be joined). Errors: spawning a thread failed, or
    /// (`rediss://`) no usable CA certificates ([`BackplaneConfig::tls_ca_file`]).
    pub fn start(
        config: BackplaneConfig,
        sink: impl FnMut(Incoming) + Send + 'static,
    ) -> io::Result<Backplane> {
        let instance = config.instance_id.unwrap_or_else(random_instance_id);
        let tls = match config.tls {
            true => Some(link::client_config(config.tls_ca_file.as_deref())?),
            false => None,
        };
        let (tx, rx) = sync_channel(config.queue_messages.max(1));
        let shared = Arc::new(Shared {
            tag: BackplaneConfig::instance_tag(instance),
            cfg: config,
            tls,
            instance,
            link: Mutex::new(Link {
                desired: HashMap::new(),
                epoch: 0,
                up: false,
                fresh: None,
                current: None,
            }),
            pending: Mutex::new(Pending {
                epoch: 0,
                q: std::collections::VecDeque::new(),
            }),
            topics_dirty: AtomicBool::new(false),
            stable: AtomicBool::new(true),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
            queued_bytes: AtomicUsize::new(0),
            tx,
            nap: (Mutex::new(()), Condvar::new()),
        });
        let mut bp = Backplane {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let w = shared.clone();
        bp.threads.push(
            std::thread::Builder::new()
                .name("wsloop-redis-w".into())
                .spawn(move || writer::run(w, rx))?,
        );
        let sink: Box<dyn FnMut(Incoming) + Send> = Box::new(sink);
        bp.threads.push(
            std::thread::Builder::new()
                .name("wsloop-redis-r".into())
                .spawn(move || reader::run(shared, sink))?,
        );
        Ok(bp)
    }

    /// This instance's random 64-bit id, carried in every message it publishes.
    pub fn instance_id(&self) -> u64 {
        self.shared.instance
    }

    /// Eight hex digits (the id's high 32 bits) to make names unique across instances, e.g.
    /// chat user `guest-7` becomes `guest-7-3fa9c1d2`. Needs no Redis round trip, so it works
    /// while Redis is down; two of n instances share a tag with probability about n²/2³³.
    pub fn instance_tag(&self) -> &str {
        &self.shared.tag
    }

    /// Counts one more local interest in `topic`; on the first, the writer sends `SUBSCRIBE`
    /// (now, or on the next connection). Takes a mutex, never waits on Redis.
    pub fn subscribe(&self, topic: &str) {
        let mut link = self.shared.link();
        if let Some(n) = link.desired.get_mut(topic) {
            *n += 1;
            return;
        }
        link.desired.insert(Arc::from(topic), 1);
        drop(link);
        self.shared.topics_dirty.store(true, Relaxed);
        self.shared.wake_writer();
    }

    /// Undoes one [`subscribe`](Backplane::subscribe); on the last, messages for `topic` stop
    /// reaching the sink at once and the writer sends `UNSUBSCRIBE`. An unsubscribe without a
    /// matching subscribe is ignored.
    pub fn unsubscribe(&self, topic: &str) {
        let mut link = self.shared.link();
        match link.desired.get_mut(topic) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                link.desired.remove(topic);
                drop(link);
                self.shared.topics_dirty.store(true, Relaxed);
                self.shared.wake_writer();
            }
            None => {}
        }
    }

    /// Queues `payload` for every other instance subscribed to `topic`; copies it once.
    /// Returns false, and counts a drop, if Redis is away, the queue is full or the payload is
    /// over [`BackplaneConfig::max_payload`]. Never blocks. True means queued, not
    /// delivered: it is counted published when Redis answers it, or dropped (and refused)
    /// when Redis answers an error or the link is lost first.
    pub fn publish(&self, topic: &str, text: bool, payload: &[u8]) -> bool {
        let s = &self.shared;
        let len = payload.len();
        let room = s.cfg.queue_bytes.saturating_sub(len);
        let fits = len <= s.cfg.max_payload
            && s.queued_bytes
                .fetch_update(Relaxed, Relaxed, |q| (q <= room).then_some(q + len))
                .is_ok();
        if !fits || !s.counters.connected.load(Relaxed) {
            if fits {
                s.queued_bytes.fetch_sub(len, Relaxed);
            }
            s.counters.dropped.fetch_add(1, Relaxed);
            return false;
        }
        let cmd = Cmd::Publish {
            topic: topic.into(),
            text,
            payload: payload.to_vec(),
        };
        match s.tx.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                s.queued_bytes.fetch_sub(len, Relaxed);
                s.counters.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// False from the moment the link fails until a connection has stayed up for
    /// [`BackplaneConfig::stable_after`]; true before the first failure. Lets a caller that
    /// logs its own drops log once per outage, not once per flap of a flapping link.
    pub fn link_stable(&self) -> bool {
        self.shared.stable.load(Relaxed)
    }

    /// A snapshot of the counters (for `/metrics`).
    pub fn stats(&self) -> BackplaneStats {
        let c = &self.shared.counters;
        BackplaneStats {
            connected: c.connected.load(Relaxed),
            connects_total: c.connects.load(Relaxed),
            reconnects_total: c.reconnects.load(Relaxed),
            published_total: c.published.load(Relaxed),
            received_total: c.received.load(Relaxed),
            dropped_total: c.dropped.load(Relaxed),
            refused_total: c.refused.load(Relaxed),
            own_echoes_total: c.own_echoes.load(Relaxed),
            out_of_order_total: c.out_of_order.load(Relaxed),
            duplicates_total: c.duplicates.load(Relaxed),
            malformed_total: c.malformed.load(Relaxed),
            oversize_total: c.oversize.load(Relaxed),
            protocol_errors_total: c.protocol_errors.load(Relaxed),
            subscriptions: c.subscriptions.load(Relaxed),
            topics: self.shared.link().desired.len() as u64,
        }
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        let s = &self.shared;
        s.shutdown.store(true, Relaxed);
        if let Some(conn) = s.link().current.take() {
            conn.shutdown();
        }
        {
            let _guard = s.nap.0.lock().unwrap_or_else(|e| e.into_inner());
            s.nap.1.notify_all();
        }
        s.wake_writer();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Backplane>();
};

//! The writer thread: every byte this instance sends to Redis.
//!
//! It drains the publish queue in batches (up to [`BATCH_BYTES`] per `write`), so a burst of
//! publishes costs one syscall per batch, not one per message; numbers each message (the
//! per-instance sequence in the envelope, assigned here because this is the one place that
//! sees them in wire order); keeps the connection's subscriptions equal to the topic table;
//! and sends `PING` when idle so the reader's read time-out notices a hung Redis. Before each
//! write it records what the write expects back ([`Pending`](super::Pending)), so that the
//! reader can tell which command a reply answers (a publish is counted published or refused
//! on its reply, not on its write).

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;

use log::debug;

use super::envelope::Header;
use super::resp::{push_command, push_publish};
use super::{Cmd, Expect, Shared};

/// Bytes gathered before one `write`.
const BATCH_BYTES: usize = 256 << 10;
/// Channels named in one `SUBSCRIBE`/`UNSUBSCRIBE` command.
const CHANNELS_PER_COMMAND: usize = 512;

/// The writer's view of one live connection.
struct Conn {
    stream: super::link::Stream,
    epoch: u64,
    /// Topics a `SUBSCRIBE` was written for on this connection (and not unsubscribed since).
    subscribed: HashSet<Arc<str>>,
}

pub(super) fn run(shared: Arc<Shared>, rx: Receiver<Cmd>) {
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(64 << 10);
    let mut expects: Vec<Expect> = Vec::new();
    loop {
        let first = match rx.recv_timeout(shared.cfg.keepalive) {
            Ok(cmd) => Some(cmd),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.shutdown.load(Relaxed) {
            return;
        }
        let idle = first.is_none();
        refresh(&shared, &mut conn, &mut out, &mut expects);
        let (mut sent, mut dropped) = (0u64, 0u64);
        let mut next = first;
        loop {
            if let Some(Cmd::Publish {
                topic,
                text,
                payload,
            }) = next.take()
            {
                shared.queued_bytes.fetch_sub(payload.len(), Relaxed);
                if conn.is_some() {
                    seq += 1;
                    let header = Header {
                        instance: shared.instance,
                        seq,
                        text,
                    };
                    push_publish(
                        &mut out,
                        &shared.cfg.channel_prefix,
                        &topic,
                        &header,
                        &payload,
                    );
                    sent += 1;
                    expects.push(Expect::Publish(1));
                } else {
                    dropped += 1;
                }
            }
            if out.len() >= BATCH_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(cmd) => next = Some(cmd),
                Err(_) => break,
            }
        }
        if let Some(c) = conn.as_mut() {
            if idle && out.is_empty() {
                push_command(&mut out, &[b"PING"]);
                expects.push(Expect::Ping);
            }
            // Recorded before the write: the answer can be read before `write_all` returns.
            // Not for the live connection (the reader moved on), or too much unanswered:
            // nothing is written and the publishes count as dropped.
            if !out.is_empty() && !shared.pending().push(c.epoch, &expects) {
                // A stale connection, or thousands of commands unanswered: either way this
                // one is done (and a SUBSCRIBE not written must not be taken as sent), so
                // give it up; the reader reconnects and everything is subscribed afresh.
                debug!("backplane: not writing to a stale or unanswering Redis connection");
                c.stream.shutdown();
                conn = None;
                dropped += sent;
            } else if !out.is_empty() {
                // Counted published (or refused) by the reader, on Redis's answer.
                match c.stream.write_all(&out) {
                    Ok(()) => {}
                    Err(e) => {
                        // The reader sees the shutdown, logs the outage and reconnects.
                        debug!("backplane: write to Redis failed: {e}");
                        c.stream.shutdown();
                        conn = None;
                        // Their `Pending` entries are counted dropped when the reader resets
                        // it for the lost connection.
                    }
                }
            }
        }
        shared.counters.dropped.fetch_add(dropped, Relaxed);
        out.clear();
        expects.clear();
        if out.capacity() > 4 * BATCH_BYTES {
            // One huge payload should not pin its buffer for the life of the process.
            out = Vec::with_capacity(64 << 10);
        }
    }
}

/// Follows the reader's connection changes and writes the commands that make the
/// connection's subscriptions match the topic table.
fn refresh(shared: &Shared, conn: &mut Option<Conn>, out: &mut Vec<u8>, expects: &mut Vec<Expect>) {
    let mut link = shared.link();
    if conn
        .as_ref()
        .is_some_and(|c| !link.up || c.epoch != link.epoch)
    {
        *conn = None;
    }
    let mut changed = shared.topics_dirty.swap(false, Relaxed);
    if let Some(stream) = link.fresh.take() {
        *conn = Some(Conn {
            stream,
            epoch: link.epoch,
            subscribed: HashSet::new(),
        });
        changed = true;
    }
    let Some(c) = conn.as_mut().filter(|_| changed) else {
        return;
    };
    let add: Vec<Arc<str>> = link
        .desired
        .keys()
        .filter(|t| !c.subscribed.contains(*t))
        .cloned()
        .collect();
    let remove: Vec<Arc<str>> = c
        .subscribed
        .iter()
        .filter(|t| !link.desired.contains_key(*t))
        .cloned()
        .collect();
    drop(link);
    let prefix = shared.cfg.channel_prefix.as_bytes();
    for (verb, topics) in [(&b"SUBSCRIBE"[..], &add), (&b"UNSUBSCRIBE"[..], &remove)] {
        for chunk in topics.chunks(CHANNELS_PER_COMMAND) {
            let names: Vec<Vec<u8>> = chunk
                .iter()
                .map(|t| [prefix, t.as_bytes()].concat())
                .collect();
            let mut args: Vec<&[u8]> = vec![verb];
            args.extend(names.iter().map(|n| n.as_slice()));
            push_command(out, &args);
            expects.push(Expect::Subscribe(chunk.len() as u64));
        }
    }
    for t in remove {
        c.subscribed.remove(&t);
    }
    c.subscribed.extend(add);
}

//! The reader thread: connects (with back-off), says `HELLO 3`, hands the connection's write
//! half to the writer, then reads: messages go to the sink, subscription counts to the stats.
//! When the connection ends it logs the outage once and starts over.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use log::{debug, info, warn};

use super::resp::{self, Inbound};
use super::{envelope, Incoming, Shared};

/// Bytes asked of each `read`.
const READ_CHUNK: usize = 64 << 10;
/// Publishers whose last sequence number is remembered; past this the table starts afresh
/// (an instance that restarts gets a new id, so old entries only accumulate).
const MAX_PUBLISHERS: usize = 4096;

type Sink = Box<dyn FnMut(Incoming) + Send>;

pub(super) fn run(shared: Arc<Shared>, mut sink: Sink) {
    let cfg = &shared.cfg;
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let mut backoff = cfg.backoff_min;
    let mut ever_up = false;
    let mut outage_logged = false;
    let mut last_seq: HashMap<u64, u64> = HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    while !shared.shutdown.load(Relaxed) {
        buf.clear();
        match connect(&shared, &mut buf) {
            Ok(stream) => {
                backoff = cfg.backoff_min;
                if !install(&shared, &stream) {
                    let _ = stream.shutdown(Shutdown::Both);
                    break;
                }
                let c = &shared.counters;
                c.connects.fetch_add(1, Relaxed);
                if ever_up {
                    c.reconnects.fetch_add(1, Relaxed);
                }
                if outage_logged {
                    info!("backplane: Redis at {addr} is back; re-subscribing");
                } else if !ever_up {
                    info!("backplane: connected to Redis at {addr}");
                }
                ever_up = true;
                shared.wake_writer();
                let why = read_loop(&shared, &stream, &mut buf, &mut sink, &mut last_seq);
                {
                    let mut link = shared.link();
                    link.up = false;
                    link.fresh = None;
                    link.current = None;
                    c.connected.store(false, Relaxed);
                    c.subscriptions.store(0, Relaxed);
                }
                let _ = stream.shutdown(Shutdown::Both);
                shared.wake_writer();
                if shared.shutdown.load(Relaxed) {
                    break;
                }
                warn!(
                    "backplane: lost Redis at {addr}: {why}; local delivery continues, \
                     publishes to other instances are dropped until it is back"
                );
                outage_logged = true;
            }
            Err(e) if !outage_logged => {
                warn!(
                    "backplane: cannot reach Redis at {addr}: {e}; retrying every {:?} at most",
                    cfg.backoff_max
                );
                outage_logged = true;
            }
            Err(e) => debug!("backplane: Redis at {addr} still away: {e}"),
        }
        shared.nap(backoff);
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// TCP connect and `HELLO 3` (with `AUTH` and a client name). Bytes after the answer stay in
/// `buf`.
fn connect(shared: &Shared, buf: &mut Vec<u8>) -> io::Result<TcpStream> {
    let cfg = &shared.cfg;
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
    let mut stream = stream.ok_or(last)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(cfg.io_timeout))?;
    stream.set_read_timeout(Some(cfg.io_timeout))?;
    let name = format!("wsloop-{}", shared.tag);
    let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
    if let Some((user, pass)) = &cfg.auth {
        args.extend([&b"AUTH"[..], user.as_bytes(), pass.as_bytes()]);
    }
    args.extend([&b"SETNAME"[..], name.as_bytes()]);
    let mut hello = Vec::new();
    resp::push_command(&mut hello, &args);
    stream.write_all(&hello)?;
    loop {
        match resp::decode(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))? {
            Some((Inbound::Error(msg), _)) => {
                return Err(io::Error::other(format!("HELLO 3 refused: {msg}")));
            }
            Some((_, used)) => {
                buf.drain(..used);
                break;
            }
            None if buf.len() > READ_CHUNK => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "HELLO answer too long",
                ));
            }
            None => read_more(&stream, buf)?,
        }
    }
    stream.set_read_timeout(Some(cfg.keepalive * 3))?;
    Ok(stream)
}

/// Publishes the new connection to the writer and to `Drop`; false if shutting down.
fn install(shared: &Shared, stream: &TcpStream) -> bool {
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
    shared.counters.connected.store(true, Relaxed);
    true
}

/// Appends up to [`READ_CHUNK`] bytes from `stream` to `buf`; end of stream is an error.
fn read_more(mut stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = buf.len();
    buf.resize(len + READ_CHUNK, 0);
    let got = loop {
        match stream.read(&mut buf[len..]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    buf.truncate(len + *got.as_ref().unwrap_or(&0));
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
                "no answer to keep-alive PINGs",
            ))
        }
        Err(e) => Err(e),
    }
}

/// Reads and dispatches until the connection fails; returns why.
fn read_loop(
    shared: &Shared,
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    sink: &mut Sink,
    last_seq: &mut HashMap<u64, u64>,
) -> io::Error {
    let limit = shared.cfg.max_payload + envelope::HEADER_LEN + 64 * 1024;
    loop {
        let mut start = 0;
        loop {
            match resp::decode(&buf[start..]) {
                Ok(Some((inbound, used))) => {
                    dispatch(shared, inbound, sink, last_seq);
                    start += used;
                }
                Ok(None) => break,
                Err(e) => return io::Error::new(io::ErrorKind::InvalidData, e.0),
            }
        }
        buf.drain(..start);
        if buf.capacity() > 16 * READ_CHUNK && buf.len() < READ_CHUNK {
            // One big message should not pin its buffer for the life of the connection.
            buf.shrink_to(2 * READ_CHUNK);
        }
        if buf.len() > limit {
            return io::Error::new(io::ErrorKind::InvalidData, "frame over the payload limit");
        }
        if let Err(e) = read_more(stream, buf) {
            return e;
        }
    }
}

fn dispatch(
    shared: &Shared,
    inbound: Inbound<'_>,
    sink: &mut Sink,
    last_seq: &mut HashMap<u64, u64>,
) {
    let c = &shared.counters;
    let (channel, data) = match inbound {
        Inbound::Message { channel, data } => (channel, data),
        Inbound::SubscriptionCount(n) => {
            c.subscriptions.store(n.max(0) as u64, Relaxed);
            return;
        }
        Inbound::Error(msg) => {
            warn!("backplane: Redis answered an error: {msg}");
            return;
        }
        Inbound::Other => return,
    };
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
    if last_seq.len() >= MAX_PUBLISHERS && !last_seq.contains_key(&header.instance) {
        last_seq.clear();
    }
    let last = last_seq.entry(header.instance).or_insert(0);
    if header.seq <= *last {
        c.out_of_order.fetch_add(1, Relaxed);
        return;
    }
    *last = header.seq;
    // Filtering here makes `unsubscribe` take effect at once, not when Redis confirms it.
    let Some(topic) = shared
        .link()
        .desired
        .get_key_value(topic)
        .map(|(k, _)| k.clone())
    else {
        return;
    };
    c.received.fetch_add(1, Relaxed);
    sink(Incoming {
        topic,
        text: header.text,
        payload: Arc::from(payload),
        from: header.instance,
    });
}

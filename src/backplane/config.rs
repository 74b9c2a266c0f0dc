//! Backplane settings, the `redis://` URL they start from, and the instance id.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

/// The environment variable `wsloop` reads the Redis password from (see
/// [`BackplaneConfig::password_from_env`]).
pub const PASSWORD_ENV: &str = "WSLOOP_REDIS_PASSWORD";
/// Longest password file read, bytes: a password is short, and a mistaken path (a log, a
/// device) must not be read whole.
const MAX_PASSWORD_FILE: u64 = 4096;

/// Settings of a [`Backplane`](super::Backplane). Build with [`BackplaneConfig::from_url`];
/// every bound has a default and a reason. `Debug` shows the password as `***`.
#[derive(Clone)]
pub struct BackplaneConfig {
    /// Redis host name or address.
    pub host: String,
    /// Redis TCP port (6379 when the URL has none).
    pub port: u16,
    /// TLS to Redis (`rediss://`), with rustls: the server's certificate must chain to
    /// [`BackplaneConfig::tls_ca_file`] (or the system's CA bundle) and name `host`.
    pub tls: bool,
    /// PEM file of the CA certificates trusted for `rediss://`; `None`: the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt` and the like).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// `(user, password)` from the URL (or [`BackplaneConfig::set_password`]), sent with
    /// `HELLO 3 AUTH`; user `default` when the URL gives only a password. No
    /// percent-decoding: use plain characters. A password in a URL on the command line is
    /// visible in `ps`: prefer a file or the environment.
    pub auth: Option<(String, String)>,
    /// Prefix of every Redis channel: topic `room` is channel `wsloop:room`. The prefix keeps
    /// wsloop's traffic apart from other users of the same Redis.
    pub channel_prefix: String,
    /// Publishes waiting for the Redis writer thread, at most (default 65 536). A publish that
    /// finds the queue full is dropped and counted, so a stalled Redis never costs the loops
    /// memory or time.
    pub queue_messages: usize,
    /// Payload bytes waiting for the writer, at most (default 64 MiB); same rule.
    pub queue_bytes: usize,
    /// Largest payload sent or accepted, bytes (default 16 MiB, the server's default message
    /// limit). Bigger publishes are dropped; a bigger message from Redis is dropped and
    /// counted ([`BackplaneStats::oversize_total`](super::BackplaneStats::oversize_total))
    /// without being buffered, and the link stays up. Set it to what this instance would
    /// accept from a client (`wsloop` uses the smaller of `--max-message-size` and
    /// `--max-backpressure`, the chat's per-message rule), so that a peer instance with
    /// bigger limits cannot send this one's subscribers what they could not take.
    pub max_payload: usize,
    /// First wait before reconnecting (default 100 ms); doubles per failed attempt...
    pub backoff_min: Duration,
    /// ...up to this (default 5 s).
    pub backoff_max: Duration,
    /// A connection counts as recovered (back-off reset, recovery logged) only after staying
    /// up this long (default 10 s); one that fails sooner (a Redis that answers `HELLO` and
    /// drops the link, or sends garbage) is part of the same outage and the back-off goes on
    /// growing. Checked when something is read, so at most about
    /// [`BackplaneConfig::keepalive`] late.
    pub stable_after: Duration,
    /// Bound on connecting, on the `HELLO` answer and on one blocked write (default 5 s).
    pub io_timeout: Duration,
    /// The writer sends `PING` after this long without writing (default 5 s); the reader gives
    /// the connection up after three times this without reading anything, so a Redis that
    /// hangs (rather than closes) is noticed.
    pub keepalive: Duration,
    /// This instance's id ([`Backplane::instance_id`](super::Backplane::instance_id)); `None`
    /// (the default) draws a fresh [`random_instance_id`] when the backplane starts. Set it
    /// to know the id (and [`BackplaneConfig::instance_tag`]) before starting, e.g. to name
    /// chat users; two running backplanes must never share one (each would drop the other's
    /// messages as its own echoes).
    pub instance_id: Option<u64>,
}

impl BackplaneConfig {
    /// Parses `redis://[[user]:password@]host[:port][/db]` or the same with `rediss://` (TLS)
    /// (the db number is ignored: pub/sub channels are global to a Redis server). Other
    /// schemes (`unix://`) are [`io::ErrorKind::InvalidInput`].
    pub fn from_url(url: &str) -> io::Result<BackplaneConfig> {
        // The URL may carry a password: errors name only its scheme and host part.
        let shown = match url.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => url.to_string(),
        };
        let bad =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {shown}"));
        let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad("only redis:// and rediss:// URLs are supported")),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((cred, hp)) => {
                let (user, pass) = cred.split_once(':').unwrap_or(("", cred));
                let user = if user.is_empty() { "default" } else { user };
                (Some((user.to_string(), pass.to_string())), hp)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (h, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                match tail.strip_prefix(':') {
                    Some(p) => (h, p.parse().map_err(|_| bad("bad port"))?),
                    None if tail.is_empty() => (h, 6379),
                    None => return Err(bad("junk after ]")),
                }
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
                None => (hostport, 6379),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(BackplaneConfig {
            host: host.to_string(),
            port,
            tls,
            tls_ca_file: None,
            auth,
            channel_prefix: "wsloop:".to_string(),
            queue_messages: 65_536,
            queue_bytes: 64 << 20,
            max_payload: 16 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
            io_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(5),
            instance_id: None,
        })
    }

    /// Sets the password sent with `HELLO 3 AUTH`, keeping the URL's user (`default` if it
    /// named none).
    pub fn set_password(&mut self, password: String) {
        let user = match self.auth.take() {
            Some((user, _)) => user,
            None => "default".to_string(),
        };
        self.auth = Some((user, password));
    }

    /// The URL carried a password (visible in `ps` if it came from the command line).
    pub fn url_has_password(&self) -> bool {
        self.auth.as_ref().is_some_and(|(_, p)| !p.is_empty())
    }

    /// Reads a password file: its content up to the first line end (a trailing `\n` or
    /// `\r\n` is not part of the password). Errors: unreadable, over 4 KiB, empty, or not
    /// UTF-8 ([`io::ErrorKind::InvalidData`]), each naming the file.
    pub fn read_password_file(path: &Path) -> io::Result<String> {
        use std::io::Read;
        let name = path.display();
        let mut raw = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PASSWORD_FILE + 1).read_to_end(&mut raw))
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {why}"));
        if raw.len() as u64 > MAX_PASSWORD_FILE {
            return Err(bad("longer than 4 KiB: not a password file"));
        }
        let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(bad("empty first line"));
        }
        Ok(line.to_string())
    }

    /// The password in [`PASSWORD_ENV`], if set and not empty. Errors: set but not UTF-8.
    pub fn password_from_env() -> io::Result<Option<String>> {
        match std::env::var(PASSWORD_ENV) {
            Ok(p) if p.is_empty() => Ok(None),
            Ok(p) => Ok(Some(p)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{PASSWORD_ENV} is not UTF-8"),
            )),
        }
    }

    /// The eight-hex-digit tag of an instance id (its high 32 bits), as
    /// [`Backplane::instance_tag`](super::Backplane::instance_tag) shows it.
    pub fn instance_tag(id: u64) -> String {
        format!("{:08x}", id >> 32)
    }
}

impl fmt::Debug for BackplaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = self.auth.as_ref().map(|(user, _)| (user, "***"));
        f.debug_struct("BackplaneConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("auth", &auth)
            .field("channel_prefix", &self.channel_prefix)
            .field("queue_messages", &self.queue_messages)
            .field("queue_bytes", &self.queue_bytes)
            .field("max_payload", &self.max_payload)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("stable_after", &self.stable_after)
            .field("io_timeout", &self.io_timeout)
            .field("keepalive", &self.keepalive)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

/// A random 64-bit instance id: 8 bytes of `/dev/urandom`; if that cannot be read, std's
/// `RandomState` (seeded from the OS) hashed with the pid and the time. Random rather than
/// configured so that instances started from one template never collide: for n instances the
/// chance of a clash is about n²/2⁶⁵. Zero is avoided so it can never look uninitialised.
pub fn random_instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    let mut b = [0u8; 8];
    let id = match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_ne_bytes(b),
        Err(_) => {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            h.write_u128(now.map(|d| d.as_nanos()).unwrap_or(0));
            h.finish()
        }
    };
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = BackplaneConfig::from_url("redis://127.0.0.1:6380/0").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.auth), ("127.0.0.1", 6380, None));
        let c = BackplaneConfig::from_url("redis://cache.local").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("cache.local", 6379));
        let c = BackplaneConfig::from_url("redis://:s3cret@h:1/").unwrap();
        assert_eq!(c.auth, Some(("default".into(), "s3cret".into())));
        let c = BackplaneConfig::from_url("redis://bob:pw@[::1]:7000").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 7000));
        assert_eq!(c.auth, Some(("bob".into(), "pw".into())));
        let c = BackplaneConfig::from_url("redis://[::1]").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 6379));
        let c = BackplaneConfig::from_url("rediss://:pw@cache.example:6380").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("cache.example", 6380, true)
        );
        assert!(!BackplaneConfig::from_url("redis://h").unwrap().tls);
        for bad in [
            "unix:///tmp/redis.sock",
            "http://h",
            "redis://",
            "redis://h:x",
            "redis://h:70000",
        ] {
            let e = BackplaneConfig::from_url(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn passwords_from_a_file_and_never_in_debug() {
        let dir = std::env::temp_dir().join(format!("wsloop-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3 cret\r\nignored\n").unwrap();
        let mut c = BackplaneConfig::from_url("redis://bob:@h").unwrap();
        assert!(!c.url_has_password());
        c.set_password(BackplaneConfig::read_password_file(&f).unwrap());
        assert_eq!(c.auth, Some(("bob".into(), "s3 cret".into())));
        assert!(!format!("{c:?}").contains("s3 cret"));
        let mut c = BackplaneConfig::from_url("redis://h").unwrap();
        c.set_password("x".into());
        assert_eq!(c.auth, Some(("default".into(), "x".into())));
        std::fs::write(&f, "\n").unwrap();
        assert!(BackplaneConfig::read_password_file(&f).is_err());
        std::fs::write(&f, vec![b'a'; 5000]).unwrap();
        assert!(BackplaneConfig::read_password_file(&f).is_err());
        assert!(BackplaneConfig::read_password_file(&dir.join("none")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn instance_ids_differ() {
        let ids: std::collections::HashSet<u64> = (0..64).map(|_| random_instance_id()).collect();
        assert_eq!(ids.len(), 64);
    }
}

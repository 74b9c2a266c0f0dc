//! Value parsers for the binary's flags: sizes with binary units, listen addresses in the
//! forms people type, and seconds as decimals. Each parser checks the same bounds as
//! [`Config::validate`](wsloop::server::config), so clap names the flag in the error
//! (`invalid value '0' for '--max-message-size <BYTES>': ...`) before a `Config` exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use wsloop::backplane::BackplaneConfig;
use wsloop::server::config::{
    MAX_BUFFER_LIMIT, MAX_CONNECTIONS, MAX_HEADER_SIZE, MAX_TIMEOUT, MIN_HEADER_SIZE, MIN_TIMEOUT,
};

/// Binary units only: `KB`/`MB` are refused because half the world reads them as 1000 and
/// the other half as 1024, and a limit should not depend on which half wrote it.
const UNITS: [(&str, u64); 4] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// `16MiB`, `1KiB`, `512 B`, `1GiB`, `4096` (bytes). Units are case-insensitive.
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit = unit.trim_start();
    if digits.is_empty() {
        return Err(format!(
            "expected a whole number of bytes with an optional unit B, KiB, MiB or GiB \
             (e.g. 16MiB), got '{s}'"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{digits}' is too large"))?;
    let mult = if unit.is_empty() {
        1
    } else {
        let lower = unit.to_ascii_lowercase();
        match UNITS.iter().find(|(u, _)| *u == lower) {
            Some((_, m)) => *m,
            None => {
                return Err(match lower.as_str() {
                    "k" | "kb" | "m" | "mb" | "g" | "gb" => format!(
                    "ambiguous unit '{unit}': use KiB, MiB or GiB (powers of 1024) or plain bytes"
                ),
                    _ => format!("unknown unit '{unit}': use B, KiB, MiB or GiB (e.g. 16MiB)"),
                })
            }
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `1024` → `1 KiB`, else plain bytes: for bounds in error messages.
fn show_size(n: u64) -> String {
    for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{} {unit}", n / m);
        }
    }
    format!("{n} B")
}

fn size_in(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n = size(s)?;
    if n < lo as u64 || n > hi as u64 {
        return Err(format!(
            "must be between {} and {}",
            show_size(lo as u64),
            show_size(hi as u64)
        ));
    }
    Ok(n as usize)
}

/// `--max-message-size`: 1 B ..= 1 GiB.
pub fn message_size(s: &str) -> Result<usize, String> {
    size_in(s, 1, MAX_BUFFER_LIMIT)
}

/// `--max-header-size`: 256 B ..= 1 MiB.
pub fn header_size(s: &str) -> Result<usize, String> {
    size_in(s, MIN_HEADER_SIZE, MAX_HEADER_SIZE)
}

/// `--max-backpressure`: 1 B ..= 1 GiB.
pub fn backpressure(s: &str) -> Result<usize, String> {
    size_in(s, 1, MAX_BUFFER_LIMIT)
}

/// `--max-mailbox-bytes`: 64 KiB ..= 1 GiB.
pub fn mailbox_size(s: &str) -> Result<usize, String> {
    size_in(
        s,
        wsloop::server::config::MIN_MAILBOX_BYTES,
        MAX_BUFFER_LIMIT,
    )
}

/// `--max-connections`: a plain count, 1 ..= 2^30.
pub fn connections(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got '{s}'"))?;
    if !(1..=MAX_CONNECTIONS).contains(&n) {
        return Err(format!("must be between 1 and {MAX_CONNECTIONS}"));
    }
    Ok(n)
}

/// `--listen`: `9000` (= `127.0.0.1:9000`), `0.0.0.0:9000`, `[::1]:9000`, or
/// `host:port` resolved by the system resolver (the first address it returns).
pub fn listen(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = t
            .parse()
            .map_err(|_| format!("port {t} is out of range 0..=65535"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let usage = "expected PORT, HOST:PORT or [IPv6]:PORT (e.g. 9000, localhost:9000, 0.0.0.0:9000, [::1]:9000)";
    if !t.contains(':') {
        return Err(format!("'{s}' has no port: {usage}"));
    }
    let mut addrs = t
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}' ({e}): {usage}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{s}' resolved to no address: {usage}"))
}

/// Timeouts in seconds: `10`, `2.5`, `0.1`; negative, NaN, infinite and values outside
/// 0.1 ..= 86400 s (what the timer wheel can hold) are refused.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds (e.g. 10 or 2.5), got '{s}'"))?;
    let (lo, hi) = (MIN_TIMEOUT.as_secs_f64(), MAX_TIMEOUT.as_secs_f64());
    // `!(..)` so NaN, which compares false with everything, is refused too.
    if !(v >= lo && v <= hi) {
        return Err(format!("must be between {lo} and {hi} seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// `--www`: an existing directory.
pub fn directory(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_dir() {
        return Err(if p.exists() {
            format!("'{s}' is not a directory")
        } else {
            format!("'{s}' does not exist")
        });
    }
    Ok(p)
}

/// The `--listen` suggestion when `addr` is taken: the next port up (or a free one).
pub fn busy_port_message(addr: SocketAddr) -> String {
    let mut next = addr;
    next.set_port(addr.port().checked_add(1).unwrap_or(0));
    format!(
        "{addr} is already in use; choose another address with --listen ADDR (e.g. --listen {next})"
    )
}

/// `--redis`: `redis://[[user]:password@]host[:port][/db]` or `rediss://...` (see
/// [`BackplaneConfig::from_url`]); other schemes are refused with the reason.
pub fn redis_url(s: &str) -> Result<BackplaneConfig, String> {
    BackplaneConfig::from_url(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_binary_units() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("16MiB"), Ok(16 << 20));
        assert_eq!(size("1KiB"), Ok(1024));
        assert_eq!(size("1 GiB"), Ok(1 << 30));
        assert_eq!(size("512B"), Ok(512));
        assert_eq!(size("2mib"), Ok(2 << 20));
        assert_eq!(size(" 0 "), Ok(0));
    }

    #[test]
    fn sizes_refuse_garbage_and_ambiguity() {
        for bad in ["", "MiB", "abc", "-1", "1.5MiB", "16 XB", "0x10"] {
            assert!(size(bad).is_err(), "{bad:?} accepted");
        }
        let e = size("64KB").unwrap_err();
        assert!(e.contains("ambiguous") && e.contains("KiB"), "{e}");
        assert!(size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(size("17179869184GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn per_flag_bounds() {
        assert_eq!(message_size("1GiB"), Ok(1 << 30));
        assert_eq!(
            message_size("0").unwrap_err(),
            "must be between 1 B and 1 GiB"
        );
        assert!(message_size("1025MiB").is_err());
        assert_eq!(header_size("8KiB"), Ok(8192));
        assert_eq!(
            header_size("255").unwrap_err(),
            "must be between 256 B and 1 MiB"
        );
        assert!(backpressure("0").is_err());
        assert_eq!(backpressure("1MiB"), Ok(1 << 20));
        assert_eq!(connections("100000"), Ok(100_000));
        assert!(connections("0").is_err());
        assert!(connections("1e5").is_err());
    }

    #[test]
    fn listen_forms() {
        assert_eq!(listen("9000"), Ok("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(listen("0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(listen("0.0.0.0:9000"), Ok("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(listen("[::1]:9000"), Ok("[::1]:9000".parse().unwrap()));
        let local = listen("localhost:9000").unwrap();
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 9000);
    }

    #[test]
    fn listen_refusals_say_what_is_expected() {
        assert!(listen("70000").unwrap_err().contains("out of range"));
        assert!(listen("localhost").unwrap_err().contains("no port"));
        assert!(listen("").is_err());
        assert!(listen("127.0.0.1:99999").is_err());
        let e = listen("no-such-host.invalid:9000").unwrap_err();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn seconds_bounds() {
        assert_eq!(seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(seconds("0.1"), Ok(Duration::from_millis(100)));
        assert_eq!(seconds("86400"), Ok(Duration::from_secs(86400)));
        for bad in [
            "-1",
            "0",
            "0.05",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "86400.5",
            "858993459.4",
            "x",
            "",
        ] {
            assert!(seconds(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            seconds("1e9").unwrap_err(),
            "must be between 0.1 and 86400 seconds"
        );
    }

    #[test]
    fn www_must_be_a_directory() {
        let dir = std::env::temp_dir();
        assert_eq!(directory(dir.to_str().unwrap()), Ok(dir.clone()));
        let exe = std::env::current_exe().unwrap();
        assert!(directory(exe.to_str().unwrap())
            .unwrap_err()
            .contains("not a directory"));
        assert!(directory("/no/such/wsloop/dir")
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn busy_port_suggests_the_next_port() {
        assert_eq!(
            busy_port_message("127.0.0.1:8001".parse().unwrap()),
            "127.0.0.1:8001 is already in use; choose another address with --listen ADDR \
             (e.g. --listen 127.0.0.1:8002)"
        );
        assert!(busy_port_message("[::1]:65535".parse().unwrap()).ends_with("--listen [::1]:0)"));
    }
}

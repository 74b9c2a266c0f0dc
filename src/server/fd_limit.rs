//! The process's open-file limit, and what the server does about it: clamp the connection
//! limit below it, and keep one spare descriptor so a client arriving at the limit still
//! gets an answer (503) instead of hanging in the listen backlog.

use std::fs::File;
use std::io::Write;

use mio::net::TcpListener;

/// Descriptors the loop needs besides connections: the listener, epoll, the waker, the
/// signal pipe, the spare descriptor, a file being streamed per download, stdio, logs.
pub const FD_RESERVE: u64 = 64;

/// Connections past `max_connections` are answered 503 while lingering; at most this many
/// at once (each holds a descriptor until the client has read the answer).
pub const REJECT_SLACK: usize = 1024;

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

/// The connection limit and refusal slack that `fd_limit` descriptors can serve:
/// `max` clamped to the limit minus [`FD_RESERVE`] and the slack, where the slack (503
/// refusals lingering at once) is [`REJECT_SLACK`] or an eighth of the budget on small
/// limits. `fd_limit == 0` (unknown) leaves `max` as is.
pub fn connection_budget(max: usize, fd_limit: u64) -> (usize, usize) {
    if fd_limit == 0 {
        return (max, REJECT_SLACK);
    }
    let budget = fd_limit.saturating_sub(FD_RESERVE) as usize;
    let slack = REJECT_SLACK.min(budget / 8);
    (max.min(budget - slack).max(1), slack)
}

/// One descriptor held open (on `/dev/null`) so that at EMFILE the loop can free it,
/// accept the waiting client, answer 503 and close, rather than leave the client hanging
/// in the backlog (the trick libev and nginx users know; uSockets leaves a TODO there).
pub struct SpareFd(Option<File>);

impl SpareFd {
    /// Opens the spare descriptor.
    pub fn new() -> Self {
        SpareFd(File::open("/dev/null").ok())
    }

    /// At EMFILE: frees the spare, accepts and refuses as many waiting clients as it can
    /// with one descriptor, then takes the spare back. Returns how many were refused.
    pub fn refuse_waiting(&mut self, listener: &TcpListener, response: &[u8]) -> usize {
        let mut refused = 0;
        while self.0.take().is_some() {
            // The descriptor just freed lets exactly one accept succeed.
            if let Ok((mut stream, _)) = listener.accept() {
                // Best effort: a fresh socket's send buffer takes a short answer whole.
                let _ = stream.write(response);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                refused += 1;
                drop(stream);
                self.0 = File::open("/dev/null").ok();
                if refused >= 64 {
                    break;
                }
            } else {
                self.0 = File::open("/dev/null").ok();
                break;
            }
        }
        refused
    }
}

impl Default for SpareFd {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exercises the `unsafe` getrlimit/setrlimit calls: afterwards the soft limit equals
    /// the hard limit that /proc reports.
    #[test]
    fn fd_limit_raised_to_hard_limit() {
        let got = raise_fd_limit();
        assert_eq!(fd_limit(), got);
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

    #[test]
    fn connections_fit_the_fd_limit() {
        assert_eq!(
            connection_budget(100_000, 20_000),
            (20_000 - 64 - 1024, 1024)
        );
        assert_eq!(connection_budget(500, 20_000), (500, 1024));
        assert_eq!(connection_budget(100_000, 1024), (960 - 120, 120));
        assert_eq!(connection_budget(100_000, 0), (100_000, 1024));
        for limit in [100, 1024, 4096, 20_000, 1 << 20] {
            let (max, slack) = connection_budget(usize::MAX, limit);
            assert!(
                (max + slack) as u64 + FD_RESERVE <= limit.max(FD_RESERVE + 1),
                "{limit}"
            );
        }
    }
}

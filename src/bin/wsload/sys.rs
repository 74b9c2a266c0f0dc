//! Operating-system helpers: the monotonic clock, the open-file limit and `/proc` readings
//! of the server process (CPU time, resident memory) and of wsload itself.

use std::fs;
use std::sync::OnceLock;

/// CLOCK_MONOTONIC in nanoseconds. `clock_gettime` goes through the vDSO: no syscall.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static EPOCH: OnceLock<u64> = OnceLock::new();

/// CLOCK_MONOTONIC at process start; broadcast timestamps are nanoseconds since this
/// (so they fit 48 bits: 78 hours).
pub fn epoch_ns() -> u64 {
    *EPOCH.get_or_init(now_ns)
}

/// Raises the open-file soft limit to the hard limit. Returns (soft, hard) after the change.
pub fn raise_nofile_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (1024, 1024);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a process in seconds (all threads), from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace();
    // After ')' comes field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck() as f64)
}

/// VmRSS of a process in KiB, from `/proc/PID/status`.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Whether a process exists.
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Busy CPU seconds of the whole machine (all cores; everything but idle and iowait),
/// from the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let busy: u64 = v.iter().sum::<u64>() - v[3] - v[4];
    Some(busy as f64 / clk_tck() as f64)
}

/// CPU time of the server (if a PID was given), of wsload itself and of the whole
/// machine at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    pub at_ns: u64,
    pub server_s: Option<f64>,
    pub own_s: Option<f64>,
    pub machine_s: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(server_pid: Option<u32>) -> Self {
        CpuSnapshot {
            at_ns: now_ns(),
            server_s: server_pid.and_then(cpu_seconds),
            own_s: cpu_seconds(std::process::id()),
            machine_s: machine_busy_seconds(),
        }
    }
}

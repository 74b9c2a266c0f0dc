//! wsload: the WebSocket load generator for wsloop (see `wsload --help`).
//!
//! Scenarios: `echo` (K messages in flight per connection, verified byte for byte),
//! `broadcast` (chat fan-out with per-publisher ordering checks) and `connect`
//! (handshakes per second, or idle connections held for a memory reading), `churn`
//! (short-lived connections ended every way, for soak runs).
//! Loopback only; every run is bounded by a duration or count and an overall deadline.

mod blocking;
mod broadcast;
mod churn;
mod cli;
mod conn;
mod connect;
mod deflate;
mod driver;
#[cfg(test)]
mod e2e;
mod echo;
mod link;
mod payload;
mod report;
mod stats;
mod sys;

use clap::Parser;
use cli::{BroadcastArgs, Cli, Command, Common, ConnectArgs, EchoArgs, Target};
use driver::{Controller, NetCfg, Phase, MAX_MESSAGE};
use report::{Report, J};
use stats::ErrorKind;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use sys::{rss_kb, CpuSnapshot};

/// Sockets kept back from the open-file limit for stdio, epoll, eventfds and /proc reads.
const FD_RESERVE: u64 = 64;

/// Per-run setup shared by the scenarios.
struct Env {
    target: Target,
    sources: Vec<IpAddr>,
    fd_soft: u64,
    fd_hard: u64,
    seed: u64,
}

impl Env {
    fn new(c: &Common) -> Result<Env, String> {
        let mut target = cli::parse_url(&c.url)?;
        match (&c.tls_ca, target.secure) {
            (Some(ca), true) => {
                target.tls = Some(link::TlsTarget::new(ca, &target.hostname)?);
            }
            (None, true) => return Err("wss:// needs --tls-ca FILE (the CA to trust)".into()),
            (Some(_), false) => return Err("--tls-ca is for wss:// URLs".into()),
            (None, false) => {}
        }
        let sources = match &c.source_ips {
            Some(s) => cli::parse_source_ips(s, &target.addr)?,
            None => Vec::new(),
        };
        if let Some(pid) = c.server_pid {
            if !sys::process_exists(pid) {
                return Err(format!("--server-pid {pid}: no such process"));
            }
        }
        let (fd_soft, fd_hard) = sys::raise_nofile_limit();
        let seed = sys::now_ns() ^ ((std::process::id() as u64) << 32);
        Ok(Env {
            target,
            sources,
            fd_soft,
            fd_hard,
            seed,
        })
    }

    /// Sockets this process can hold at once.
    fn fd_capacity(&self) -> u64 {
        self.fd_soft.saturating_sub(FD_RESERVE)
    }

    /// Connection settings for `want` simultaneously open connections (capped by the
    /// open-file limit, which is reported). Returns the config and whether it was capped.
    fn net(&self, c: &Common, want: u32, simultaneous: bool, rate: Option<f64>) -> (NetCfg, bool) {
        let cap = self.fd_capacity();
        let mut total = want;
        let mut capped = false;
        if simultaneous && want as u64 > cap {
            capped = true;
            total = cap as u32;
            eprintln!(
                "wsload: the open-file limit ({} soft, {} hard) caps this process at {} connections; \
                 {} requested. Run several wsload processes (with --source-ips) to open more.",
                self.fd_soft, self.fd_hard, total, want
            );
        }
        let threads = c.threads.min(total.max(1));
        let net = NetCfg {
            target: self.target.clone(),
            alt_target: None,
            sources: self.sources.clone(),
            threads,
            total,
            concurrency: c.connect_concurrency.min(cap as u32).max(1),
            fd_budget_per_thread: (cap / threads as u64).max(1) as usize,
            rate,
            seed: self.seed,
            busy_poll: c.busy_poll,
            deflate: c.deflate.then_some(if c.deflate_context_takeover {
                deflate::Offer::ContextTakeover
            } else {
                deflate::Offer::NoContextTakeover
            }),
        };
        (net, capped)
    }
}

/// What `--deflate` offered, and the bytes on the wire while measuring (frames both ways,
/// as read from and handed to the sockets), in and out, and per measured message.
fn wire_extra(c: &Common, stats: &stats::ThreadStats) -> Vec<(&'static str, J)> {
    let offer = match (c.deflate, c.deflate_context_takeover) {
        (false, _) => "off",
        (true, false) => "no context takeover",
        (true, true) => "context takeover",
    };
    let per = |b: u64| {
        if stats.msgs > 0 {
            J::F(b as f64 / stats.msgs as f64, 1)
        } else {
            J::Null
        }
    };
    vec![
        ("deflate", J::S(offer.into())),
        ("wire_in_bytes", J::U(stats.wire_in)),
        ("wire_out_bytes", J::U(stats.wire_out)),
        ("wire_in_per_msg", per(stats.wire_in)),
        ("wire_out_per_msg", per(stats.wire_out)),
    ]
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn check_secs(name: &str, v: f64) -> Result<(), String> {
    if (0.0..=86_400.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} must be between 0 and 86400 seconds"))
    }
}

/// Waits for every connection to open (or fail); after the timeout, gives up on the rest.
fn connect_all(ctl: &mut Controller, total: u32, timeout: Duration, notes: &mut Vec<String>) {
    let total = total as u64;
    let ok = ctl.wait(timeout, |s| {
        s.opened.load(Relaxed) + s.failed.load(Relaxed) >= total
    });
    if !ok {
        ctl.stop_connecting();
        let opened = ctl.shared.opened.load(Relaxed);
        notes.push(format!(
            "only {opened} of {total} connections open after {:.0} s; continuing with those",
            timeout.as_secs_f64()
        ));
        ctl.wait(Duration::from_millis(500), |s| {
            s.opened.load(Relaxed) + s.failed.load(Relaxed) >= total
        });
    }
}

/// Splits `count` over threads in proportion to their connections (ids t, t+T, ...).
fn thread_share(count: u64, total: u32, threads: u32, t: u32) -> u64 {
    let conns_of = |t: u32| ((total - t.min(total)) as u64).div_ceil(threads as u64);
    let base = count * conns_of(t) / total.max(1) as u64;
    if t == 0 {
        let assigned: u64 = (0..threads)
            .map(|u| count * conns_of(u) / total.max(1) as u64)
            .sum();
        base + (count - assigned)
    } else {
        base
    }
}

/// Warmup, then the measured window (duration or --messages); returns the CPU snapshots
/// bracketing it. Skipped (an empty window) when no connection opened.
fn measure_if_open(
    ctl: &mut Controller,
    c: &Common,
    warmup: f64,
    duration: Option<f64>,
    messages: Option<u64>,
    notes: &mut Vec<String>,
) -> (CpuSnapshot, CpuSnapshot) {
    if ctl.shared.opened.load(Relaxed) == 0 {
        notes.push("no connection opened: nothing measured".into());
        let now = CpuSnapshot::take(c.server_pid);
        return (now, now);
    }
    let threads = ctl.threads();
    ctl.set_phase(Phase::Warmup);
    ctl.sleep(secs(warmup));
    let cpu0 = CpuSnapshot::take(c.server_pid);
    ctl.set_phase(Phase::Measure);
    let mut cpu1;
    if messages.is_some() {
        ctl.wait(Duration::from_secs(86_400), |s| {
            s.threads_done.load(Relaxed) >= threads
        });
        cpu1 = CpuSnapshot::take(c.server_pid);
        let done = ctl.shared.done_at_ns.load(Relaxed);
        if ctl.shared.threads_done.load(Relaxed) >= threads && done > cpu0.at_ns {
            cpu1.at_ns = done;
        }
    } else {
        ctl.sleep(secs(duration.unwrap_or(5.0)));
        cpu1 = CpuSnapshot::take(c.server_pid);
    }
    (cpu0, cpu1)
}

fn run_echo(a: &EchoArgs) -> Result<Report, String> {
    let c = &a.common;
    let env = Env::new(c)?;
    if a.size > MAX_MESSAGE {
        return Err(format!("--size above {MAX_MESSAGE}"));
    }
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    check_secs("--warmup", a.warmup)?;
    check_secs("--duration", a.duration.unwrap_or(0.0))?;
    let (net, capped) = env.net(c, a.connections, true, None);
    let (total, threads) = (net.total, net.threads);
    let run_time = a
        .duration
        .unwrap_or(if a.messages.is_some() { 600.0 } else { 5.0 });
    let deadline = c
        .deadline
        .unwrap_or(c.connect_timeout + a.warmup + run_time + 30.0);
    let rss_before = c.server_pid.and_then(rss_kb);
    let (k, size, binary, json, seed, messages) =
        (a.inflight, a.size, a.binary, a.json, env.seed, a.messages);
    let mut ctl = driver::spawn(
        "echo",
        net,
        Phase::Connecting,
        secs(deadline),
        c.quiet,
        |t| {
            echo::Echo::new(
                k,
                size,
                binary,
                json,
                driver::thread_mask(seed, t),
                messages.map(|m| thread_share(m, total, threads, t)),
            )
        },
    )?;
    let mut notes = Vec::new();
    connect_all(&mut ctl, total, secs(c.connect_timeout), &mut notes);
    let (cpu0, cpu1) = measure_if_open(&mut ctl, c, a.warmup, a.duration, a.messages, &mut notes);
    ctl.set_phase(Phase::Drain);
    if !ctl.wait(Duration::from_secs(3), |s| s.inflight.load(Relaxed) <= 0) {
        let n = ctl.shared.inflight.load(Relaxed);
        notes.push(format!(
            "{n} messages still unanswered 3 s after the load stopped"
        ));
    }
    let connections = ctl.shared.opened.load(Relaxed);
    let mut stats = ctl.finish(Duration::from_secs(3));
    let unanswered = notes.iter().any(|n| n.contains("unanswered"));
    if unanswered {
        stats.error(ErrorKind::Missing, || "echoes never came back".into());
    }
    let rss_end = c.server_pid.and_then(rss_kb);
    Ok(Report {
        scenario: "echo",
        label: c.label.clone(),
        url: c.url.clone(),
        threads,
        requested: a.connections as u64,
        connections,
        fd_capped: capped,
        inflight: Some(a.inflight as u64),
        size: Some(a.size),
        binary: Some(a.binary),
        window_s: (cpu1.at_ns.saturating_sub(cpu0.at_ns)) as f64 / 1e9,
        msgs: stats.msgs,
        bytes: stats.bytes,
        handshake_latency: false,
        extra: [vec![("sent", J::U(stats.sent))], wire_extra(c, &stats)].concat(),
        stats,
        cpu0,
        cpu1,
        server_pid: c.server_pid,
        rss_before_kb: rss_before,
        rss_end_kb: rss_end,
        per_conn_bytes: None,
        notes,
    })
}

fn run_broadcast(a: &BroadcastArgs) -> Result<Report, String> {
    let c = &a.common;
    let env = Env::new(c)?;
    if a.size < broadcast::MIN_SIZE || a.size > MAX_MESSAGE {
        return Err(format!(
            "--size must be between {} (publisher id, sequence, timestamp) and {MAX_MESSAGE}",
            broadcast::MIN_SIZE
        ));
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err("--rate must be positive".into());
        }
    }
    check_secs("--warmup", a.warmup)?;
    check_secs("--duration", a.duration.unwrap_or(0.0))?;
    let want = a.subscribers.saturating_add(a.publishers);
    let (mut net, capped) = env.net(c, want, true, None);
    if let Some(u) = &a.subscriber_url {
        net.alt_target = Some((a.publishers, cli::parse_url(u)?));
    }
    let count_publishers = a.subscriber_url.is_none();
    if capped && net.total <= a.publishers {
        return Err("the open-file limit leaves no room for subscribers".into());
    }
    let (total, threads) = (net.total, net.threads);
    let run_time = a
        .duration
        .unwrap_or(if a.messages.is_some() { 600.0 } else { 5.0 });
    let deadline = c
        .deadline
        .unwrap_or(c.connect_timeout + a.warmup + run_time + 30.0);
    let rss_before = c.server_pid.and_then(rss_kb);
    let m = a.publishers;
    let per_pub = a.messages.map(|n| n.div_ceil(m as u64));
    let (window, size, binary, json, rate) = (a.window, a.size, a.binary, a.json, a.rate);
    let mut ctl = driver::spawn(
        "broadcast",
        net,
        Phase::Connecting,
        secs(deadline),
        c.quiet,
        |_| {
            broadcast::Broadcast::new(m, window, size, binary, json, rate, per_pub)
                .count_publishers(count_publishers)
        },
    )?;
    let mut notes = Vec::new();
    connect_all(&mut ctl, total, secs(c.connect_timeout), &mut notes);
    // Let the server finish registering the last joiners before anyone publishes.
    ctl.sleep(Duration::from_millis(100));
    let (cpu0, cpu1) = measure_if_open(&mut ctl, c, a.warmup, a.duration, a.messages, &mut notes);
    ctl.set_phase(Phase::Drain);
    if !ctl.wait(Duration::from_secs(3), |s| s.inflight.load(Relaxed) <= 0) {
        let n = ctl.shared.inflight.load(Relaxed);
        notes.push(format!(
            "{n} publishes unacknowledged 3 s after publishing stopped"
        ));
    }
    // Subscribers may trail the publishers' own copies a little: wait until quiet.
    let mut last = ctl.shared.msgs.load(Relaxed);
    for _ in 0..20 {
        ctl.sleep(Duration::from_millis(100));
        let now = ctl.shared.msgs.load(Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let connections = ctl.shared.opened.load(Relaxed);
    let mut stats = ctl.finish(Duration::from_secs(3));
    // Every connection still open must have seen every publish.
    let mut missing = 0u64;
    for (p, sent) in stats.pub_sent.iter().enumerate() {
        let got = stats.expected_sum.get(p).copied().unwrap_or(0);
        missing += (sent * stats.live_at_end).saturating_sub(got);
    }
    if missing > 0 {
        stats.errors[ErrorKind::Missing as usize] += missing;
        stats
            .error_samples
            .push(format!("missing: {missing} deliveries never arrived"));
    }
    let rss_end = c.server_pid.and_then(rss_kb);
    let window_s = (cpu1.at_ns.saturating_sub(cpu0.at_ns)) as f64 / 1e9;
    let per_s = |n: u64| {
        if window_s > 0.0 {
            J::F(n as f64 / window_s, 1)
        } else {
            J::Null
        }
    };
    let mut extra = vec![
        ("subscribers", J::U(a.subscribers as u64)),
        ("publishers", J::U(a.publishers as u64)),
        ("window", J::U(a.window as u64)),
        ("target_rate", J::opt_f(a.rate, 1)),
        ("publishes", J::U(stats.sent)),
        ("publishes_per_sec", per_s(stats.sent)),
        ("deliveries_per_sec", per_s(stats.msgs)),
        ("missing", J::U(missing)),
        ("rate_skipped", J::U(stats.rate_skipped)),
    ];
    extra.extend(wire_extra(c, &stats));
    Ok(Report {
        scenario: "broadcast",
        label: c.label.clone(),
        url: c.url.clone(),
        threads,
        requested: want as u64,
        connections,
        fd_capped: capped,
        inflight: Some(a.window as u64),
        size: Some(a.size),
        binary: Some(a.binary),
        window_s,
        msgs: stats.msgs,
        bytes: stats.bytes,
        handshake_latency: false,
        extra,
        stats,
        cpu0,
        cpu1,
        server_pid: c.server_pid,
        rss_before_kb: rss_before,
        rss_end_kb: rss_end,
        per_conn_bytes: None,
        notes,
    })
}

fn run_connect(a: &ConnectArgs) -> Result<Report, String> {
    let c = &a.common;
    let env = Env::new(c)?;
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err("--rate must be positive".into());
        }
    }
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    check_secs("--hold", a.hold.unwrap_or(0.0))?;
    let hold = a.hold.is_some();
    let (net, capped) = env.net(c, a.connections, hold, a.rate);
    let (total, threads) = (net.total, net.threads);
    let open_time = a.rate.map_or(total as f64 / 500.0, |r| total as f64 / r);
    let deadline = c
        .deadline
        .unwrap_or(c.connect_timeout + open_time + a.hold.unwrap_or(0.0) + 40.0);
    let rss_before = c.server_pid.and_then(rss_kb);
    let cpu0 = CpuSnapshot::take(c.server_pid);
    let mut ctl = driver::spawn(
        "connect",
        net,
        Phase::Measure,
        secs(deadline),
        c.quiet,
        |_| connect::Connect::new(hold),
    )?;
    ctl.unit = "conn/s";
    let mut notes = Vec::new();
    let mut extra = Vec::new();
    let (cpu1, rss_held, per_conn) = if let Some(h) = a.hold {
        connect_all(
            &mut ctl,
            total,
            secs(c.connect_timeout + a.rate.map_or(0.0, |r| total as f64 / r)),
            &mut notes,
        );
        let cpu1 = CpuSnapshot::take(c.server_pid);
        ctl.set_phase(Phase::Drain);
        ctl.sleep(secs(h));
        let held = ctl.shared.open.load(Relaxed).max(0) as u64;
        let rss_held = c.server_pid.and_then(rss_kb);
        ctl.set_phase(Phase::Check);
        ctl.wait(Duration::from_secs(5), |s| {
            s.answered.load(Relaxed) >= s.open.load(Relaxed).max(0) as u64
        });
        let answered = ctl.shared.answered.load(Relaxed);
        extra.push(("held", J::U(held)));
        extra.push(("answered", J::U(answered)));
        extra.push(("server_rss_held_kb", J::opt_u(rss_held)));
        let per_conn = match (rss_before, rss_held) {
            (Some(b), Some(h)) if held > 0 => Some((h as f64 - b as f64) * 1024.0 / held as f64),
            _ => None,
        };
        (cpu1, rss_held, per_conn)
    } else {
        ctl.wait(Duration::from_secs(86_400), |s| {
            s.opened.load(Relaxed) + s.failed.load(Relaxed) >= total as u64
        });
        (CpuSnapshot::take(c.server_pid), None, None)
    };
    let connections = ctl.shared.opened.load(Relaxed);
    let open_at_end = ctl.shared.open.load(Relaxed).max(0) as u64;
    let mut stats = ctl.finish(Duration::from_secs(3));
    if hold {
        let held = open_at_end;
        let answered = stats.answered;
        if answered < held {
            stats.errors[ErrorKind::NoPong as usize] += held - answered;
            stats.error_samples.push(format!(
                "no_pong: {} of {held} held connections did not answer the final ping",
                held - answered
            ));
        }
        let _ = rss_held;
    }
    let window_s = (cpu1.at_ns.saturating_sub(cpu0.at_ns)) as f64 / 1e9;
    extra.insert(
        0,
        (
            "handshakes_per_sec",
            J::F(
                if window_s > 0.0 {
                    stats.measured_handshakes as f64 / window_s
                } else {
                    0.0
                },
                1,
            ),
        ),
    );
    extra.insert(1, ("hold_s", J::opt_f(a.hold, 1)));
    Ok(Report {
        scenario: "connect",
        label: c.label.clone(),
        url: c.url.clone(),
        threads,
        requested: a.connections as u64,
        connections,
        fd_capped: capped,
        inflight: None,
        size: None,
        binary: None,
        window_s,
        msgs: stats.measured_handshakes,
        bytes: 0,
        handshake_latency: true,
        extra,
        stats,
        cpu0,
        cpu1,
        server_pid: c.server_pid,
        rss_before_kb: rss_before,
        rss_end_kb: c.server_pid.and_then(rss_kb),
        per_conn_bytes: per_conn,
        notes,
    })
}

fn main() {
    let cli = Cli::parse();
    sys::epoch_ns();
    let result = match &cli.cmd {
        Command::Echo(a) => run_echo(a),
        Command::Broadcast(a) => run_broadcast(a),
        Command::Connect(a) => run_connect(a),
        Command::Churn(a) => match churn::run(a) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(report) => {
            print!("{}", report.table());
            println!("{}", report.json());
            std::process::exit(if report.errors() > 0 { 1 } else { 0 });
        }
        Err(e) => {
            eprintln!("wsload: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (count, total, threads) in [(1000u64, 100u32, 3u32), (7, 10, 4), (5, 2, 2), (0, 3, 2)] {
            let sum: u64 = (0..threads)
                .map(|t| thread_share(count, total, threads, t))
                .sum();
            assert_eq!(sum, count);
        }
    }
}

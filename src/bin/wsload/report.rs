//! The results: a human table, then one JSON line (the last line on stdout).

use crate::stats::{ErrorKind, Histogram, ThreadStats};
use crate::sys::CpuSnapshot;
use std::fmt::Write as _;

/// A JSON value (just what wsload prints; no serde needed).
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    /// A float printed with this many decimals.
    F(f64, usize),
    S(String),
    A(Vec<J>),
    O(Vec<(String, J)>),
}

impl J {
    pub fn opt_f(v: Option<f64>, decimals: usize) -> J {
        match v {
            Some(x) if x.is_finite() => J::F(x, decimals),
            _ => J::Null,
        }
    }

    pub fn opt_u(v: Option<u64>) -> J {
        v.map_or(J::Null, J::U)
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::U(v) => {
                let _ = write!(out, "{v}");
            }
            J::I(v) => {
                let _ = write!(out, "{v}");
            }
            J::F(v, d) if v.is_finite() => {
                let _ = write!(out, "{v:.d$}");
            }
            J::F(..) => out.push_str("null"),
            J::S(s) => write_str(out, s),
            J::A(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::O(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Everything a scenario measured, ready to print.
pub struct Report {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub url: String,
    pub threads: u32,
    pub requested: u64,
    pub connections: u64,
    pub fd_capped: bool,
    pub inflight: Option<u64>,
    pub size: Option<usize>,
    pub binary: Option<bool>,
    /// The measured window.
    pub window_s: f64,
    pub msgs: u64,
    pub bytes: u64,
    /// Use the handshake histogram as "the" latency (connect).
    pub handshake_latency: bool,
    pub stats: ThreadStats,
    pub cpu0: CpuSnapshot,
    pub cpu1: CpuSnapshot,
    pub server_pid: Option<u32>,
    pub rss_before_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    pub per_conn_bytes: Option<f64>,
    /// Scenario-specific fields: (json key, value, table label, table text).
    pub extra: Vec<(&'static str, J)>,
    pub notes: Vec<String>,
}

struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    mean: f64,
    max: f64,
}

fn lat(h: &Histogram) -> Option<Lat> {
    if h.count() == 0 {
        return None;
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Some(Lat {
        p50: us(h.quantile(0.5)),
        p99: us(h.quantile(0.99)),
        p999: us(h.quantile(0.999)),
        mean: h.mean() / 1000.0,
        max: us(h.max()),
    })
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Report {
    /// Scenario notes plus a warning when wsload itself was close to a full core.
    fn all_notes(&self) -> Vec<String> {
        let mut n = self.notes.clone();
        if let Some(o) = self.other_cpu() {
            let pct = 100.0 * o / self.cpu_window();
            if pct >= 20.0 && self.window_s >= 0.5 {
                n.push(format!(
                    "other processes used {pct:.0} % of a core during the measurement: results are disturbed"
                ));
            }
        }
        if let Some(c) = self.own_cpu() {
            let pct = 100.0 * c / self.cpu_window() / self.threads as f64;
            if pct >= 90.0 && self.window_s >= 0.5 {
                n.push(format!(
                    "wsload used {pct:.0} % of each of its {} thread(s): it may be co-limiting (see --busy-poll; --threads needs spare cores)",
                    self.threads
                ));
            }
        }
        n
    }

    pub fn errors(&self) -> u64 {
        self.stats.error_count()
    }

    fn rate(&self, n: u64) -> f64 {
        if self.window_s > 0.0 {
            n as f64 / self.window_s
        } else {
            0.0
        }
    }

    fn server_cpu(&self) -> Option<f64> {
        Some(self.cpu1.server_s? - self.cpu0.server_s?)
    }

    fn own_cpu(&self) -> Option<f64> {
        Some(self.cpu1.own_s? - self.cpu0.own_s?)
    }

    /// CPU used during the window by everything except the server and wsload (other
    /// processes, interrupts not charged to either): a measurement on a busy machine.
    fn other_cpu(&self) -> Option<f64> {
        // With tick-based CPU accounting (no IRQ time accounting), softirq work done in a
        // process's context counts both in its utime/stime and in the machine's softirq
        // column, so machine - server - wsload leaves what other processes used.
        let machine = self.cpu1.machine_s? - self.cpu0.machine_s?;
        Some((machine - self.server_cpu().unwrap_or(0.0) - self.own_cpu()?).max(0.0))
    }

    fn cpu_window(&self) -> f64 {
        (self.cpu1.at_ns.saturating_sub(self.cpu0.at_ns)) as f64 / 1e9
    }

    pub fn json(&self) -> String {
        let hist = if self.handshake_latency {
            &self.stats.hs_hist
        } else {
            &self.stats.hist
        };
        let l = lat(hist);
        let mut f: Vec<(String, J)> = Vec::new();
        let mut put = |k: &str, v: J| f.push((k.to_string(), v));
        put("scenario", J::S(self.scenario.into()));
        put("label", self.label.clone().map_or(J::Null, J::S));
        put("url", J::S(self.url.clone()));
        put("threads", J::U(self.threads as u64));
        put("connections", J::U(self.connections));
        put("requested_connections", J::U(self.requested));
        put("fd_capped", J::Bool(self.fd_capped));
        put("inflight", J::opt_u(self.inflight));
        put("size", J::opt_u(self.size.map(|s| s as u64)));
        put("binary", self.binary.map_or(J::Null, J::Bool));
        put("duration_s", J::F(self.window_s, 3));
        put("msgs", J::U(self.msgs));
        put("msgs_per_sec", J::F(self.rate(self.msgs), 1));
        put("bytes_per_sec", J::F(self.rate(self.bytes), 1));
        put(
            "latency_us",
            match &l {
                Some(l) => J::O(vec![
                    ("p50".into(), J::F(l.p50, 1)),
                    ("p99".into(), J::F(l.p99, 1)),
                    ("p999".into(), J::F(l.p999, 1)),
                    ("mean".into(), J::F(l.mean, 1)),
                    ("max".into(), J::F(l.max, 1)),
                ]),
                None => J::O(vec![
                    ("p50".into(), J::Null),
                    ("p99".into(), J::Null),
                    ("p999".into(), J::Null),
                ]),
            },
        );
        put("errors", J::U(self.errors()));
        put(
            "error_kinds",
            J::O(
                ErrorKind::ALL
                    .iter()
                    .filter(|k| self.stats.errors[**k as usize] > 0)
                    .map(|k| (k.name().to_string(), J::U(self.stats.errors[*k as usize])))
                    .collect(),
            ),
        );
        put(
            "close_codes",
            J::O(
                self.stats
                    .close_codes
                    .iter()
                    .map(|(c, n)| (c.to_string(), J::U(*n)))
                    .collect(),
            ),
        );
        let scpu = self.server_cpu();
        put("server_pid", J::opt_u(self.server_pid.map(u64::from)));
        put("server_cpu_s", J::opt_f(scpu, 3));
        put(
            "server_cpu_pct",
            J::opt_f(scpu.map(|c| 100.0 * c / self.cpu_window()), 1),
        );
        put(
            "server_cpu_s_per_million_msgs",
            J::opt_f(
                scpu.filter(|_| self.msgs > 0)
                    .map(|c| c * 1e6 / self.msgs as f64),
                3,
            ),
        );
        put("server_rss_kb", J::opt_u(self.rss_end_kb));
        put("server_rss_before_kb", J::opt_u(self.rss_before_kb));
        put(
            "server_rss_delta_kb",
            match (self.rss_before_kb, self.rss_end_kb) {
                (Some(a), Some(b)) => J::I(b as i64 - a as i64),
                _ => J::Null,
            },
        );
        put("per_conn_bytes", J::opt_f(self.per_conn_bytes, 1));
        put(
            "client_cpu_pct",
            J::opt_f(self.own_cpu().map(|c| 100.0 * c / self.cpu_window()), 1),
        );
        put(
            "other_cpu_pct",
            J::opt_f(self.other_cpu().map(|c| 100.0 * c / self.cpu_window()), 1),
        );
        put(
            "client_cpu_s_per_million_msgs",
            J::opt_f(
                self.own_cpu()
                    .filter(|_| self.msgs > 0)
                    .map(|c| c * 1e6 / self.msgs as f64),
                3,
            ),
        );
        put(
            "handshake_latency_us",
            match lat(&self.stats.hs_hist) {
                Some(l) => J::O(vec![
                    ("p50".into(), J::F(l.p50, 1)),
                    ("p99".into(), J::F(l.p99, 1)),
                    ("max".into(), J::F(l.max, 1)),
                ]),
                None => J::Null,
            },
        );
        for (k, v) in &self.extra {
            put(k, v.clone());
        }
        put(
            "notes",
            J::A(self.all_notes().into_iter().map(J::S).collect()),
        );
        let mut out = String::new();
        J::O(f).write(&mut out);
        out
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<20} {v}");
        };
        let hist = if self.handshake_latency {
            &self.stats.hs_hist
        } else {
            &self.stats.hist
        };
        let mut conns = group(self.connections);
        if self.requested != self.connections {
            let _ = write!(conns, " (requested {})", group(self.requested));
        }
        if self.fd_capped {
            conns.push_str(" [capped by the open-file limit]");
        }
        row("connections", conns);
        if let (Some(k), Some(s)) = (self.inflight, self.size) {
            let kind = if self.binary == Some(true) {
                "binary"
            } else {
                "text"
            };
            row("in flight × size", format!("{k} × {s} B {kind}"));
        } else if let Some(s) = self.size {
            let kind = if self.binary == Some(true) {
                "binary"
            } else {
                "text"
            };
            row("size", format!("{s} B {kind}"));
        }
        row(
            "measured",
            format!(
                "{:.3} s, {} {}",
                self.window_s,
                group(self.msgs),
                if self.handshake_latency {
                    "handshakes"
                } else {
                    "msgs"
                }
            ),
        );
        row(
            "throughput",
            if self.handshake_latency {
                format!(
                    "{} handshakes/s",
                    group(self.rate(self.msgs).round() as u64)
                )
            } else {
                format!(
                    "{} msgs/s, {:.1} MB/s payload",
                    group(self.rate(self.msgs).round() as u64),
                    self.rate(self.bytes) / 1e6
                )
            },
        );
        if let Some(l) = lat(hist) {
            row(
                "latency µs",
                format!(
                    "p50 {:.1}  p99 {:.1}  p99.9 {:.1}  mean {:.1}  max {:.1}",
                    l.p50, l.p99, l.p999, l.mean, l.max
                ),
            );
        }
        if !self.handshake_latency {
            if let Some(l) = lat(&self.stats.hs_hist) {
                row(
                    "handshake µs",
                    format!("p50 {:.1}  p99 {:.1}  max {:.1}", l.p50, l.p99, l.max),
                );
            }
        }
        if let Some(c) = self.server_cpu() {
            let per = if self.msgs > 0 {
                format!(", {:.3} s per million msgs", c * 1e6 / self.msgs as f64)
            } else {
                String::new()
            };
            row(
                "server CPU",
                format!("{:.1} % of a core{per}", 100.0 * c / self.cpu_window()),
            );
        }
        if let Some(rss) = self.rss_end_kb {
            let delta = self
                .rss_before_kb
                .map(|b| format!(" ({:+} kB since start)", rss as i64 - b as i64))
                .unwrap_or_default();
            row("server RSS", format!("{} kB{delta}", group(rss)));
        }
        if let Some(p) = self.per_conn_bytes {
            row("server bytes/conn", format!("{p:.0}"));
        }
        if let Some(c) = self.own_cpu() {
            let per = if self.msgs > 0 {
                format!(", {:.3} s per million msgs", c * 1e6 / self.msgs as f64)
            } else {
                String::new()
            };
            row(
                "wsload CPU",
                format!(
                    "{:.1} % of a core ({} thread{}){per}",
                    100.0 * c / self.cpu_window(),
                    self.threads,
                    if self.threads == 1 { "" } else { "s" }
                ),
            );
        }
        if let Some(o) = self.other_cpu() {
            row(
                "other CPU",
                format!(
                    "{:.1} % of a core (other processes during the window)",
                    100.0 * o / self.cpu_window()
                ),
            );
        }
        for (k, v) in &self.extra {
            if matches!(v, J::Null) {
                continue;
            }
            let mut s = String::new();
            v.write(&mut s);
            row(k, s);
        }
        let kinds: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|k| self.stats.errors[**k as usize] > 0)
            .map(|k| format!("{} {}", k.name(), self.stats.errors[*k as usize]))
            .collect();
        row(
            "errors",
            if kinds.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", self.errors(), kinds.join(", "))
            },
        );
        let codes: Vec<String> = self
            .stats
            .close_codes
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect();
        row(
            "close codes",
            if codes.is_empty() {
                "-".into()
            } else {
                codes.join(" ")
            },
        );
        for n in self.all_notes() {
            row("note", n);
        }
        for s in &self.stats.error_samples {
            row("error", s.clone());
        }
        let label = self
            .label
            .as_ref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        format!("wsload {} {}{label}\n{t}", self.scenario, self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_nests() {
        let mut s = String::new();
        J::O(vec![
            ("a\"b".into(), J::S("x\ny".into())),
            ("n".into(), J::Null),
            ("f".into(), J::F(1.23456, 2)),
            ("o".into(), J::O(vec![("1000".into(), J::U(3))])),
            ("a".into(), J::A(vec![J::U(1), J::S("x".into())])),
        ])
        .write(&mut s);
        assert_eq!(
            s,
            r#"{"a\"b": "x\ny", "n": null, "f": 1.23, "o": {"1000": 3}, "a": [1, "x"]}"#
        );
    }
}

//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` per family,
//! one sample per line, label values escaped (`\\`, `\"`, `\n`).

use std::fmt::{Display, Write};
use std::sync::Arc;

use super::{
    LoopMetrics, LoopShared, CLOSE_CODES, ITERATION_BUCKETS_NS, REFUSAL_STATUSES, SCALARS,
};

pub(super) const PREFIX: &str = "wsloop_";
/// Per-loop families: `wsloop_loop_<what>{loop="N"}`.
const LOOP_PREFIX: &str = "wsloop_loop_";

/// Appends the metrics of `loops` (index = the `loop` label) to `out`: for each metric a
/// process-wide family summed over the loops (`wsloop_<what>`) and a per-loop family
/// (`wsloop_loop_<what>{loop="N"}`). Per-loop close-code and HTTP-status series with a zero
/// count are left out (the process-wide families list every code and status, so `rate()`
/// sees each series from its first increment).
pub fn render(loops: &[Arc<LoopShared>], out: &mut String) {
    let snaps: Vec<LoopMetrics> = loops.iter().map(|l| l.load()).collect();
    let mut total = LoopMetrics::default();
    for s in &snaps {
        total.add(s);
    }
    let loop_ids: Vec<String> = (0..snaps.len()).map(|i| i.to_string()).collect();

    for (kind, name, help, get) in SCALARS {
        header(out, PREFIX, name, kind.as_str(), help);
        sample(out, PREFIX, name, &[], get(&total));
        header(out, LOOP_PREFIX, name, kind.as_str(), &per_loop(help));
        for (id, s) in loop_ids.iter().zip(&snaps) {
            sample(out, LOOP_PREFIX, name, &[("loop", id)], get(s));
        }
    }

    let codes: Vec<String> = CLOSE_CODES
        .map(|c| c.to_string())
        .chain(["other".to_string()])
        .collect();
    let help = "Connections ended, by close code (1006: ended without a close frame).";
    labelled(
        out,
        "closed_total",
        help,
        "code",
        &codes,
        &total,
        &loop_ids,
        &snaps,
        |m| &m.closed_by_code,
    );
    let statuses: Vec<String> = REFUSAL_STATUSES
        .iter()
        .map(|s| s.to_string())
        .chain(["other".to_string()])
        .collect();
    let help = "HTTP requests answered with an error status instead of an upgrade, by status.";
    labelled(
        out,
        "handshake_refusals_total",
        help,
        "status",
        &statuses,
        &total,
        &loop_ids,
        &snaps,
        |m| &m.refused_by_status,
    );

    let help = "Event-loop iterations.";
    header(out, PREFIX, "iterations_total", "counter", help);
    sample(out, PREFIX, "iterations_total", &[], total.iterations());
    header(
        out,
        LOOP_PREFIX,
        "iterations_total",
        "counter",
        &per_loop(help),
    );
    for (id, s) in loop_ids.iter().zip(&snaps) {
        sample(
            out,
            LOOP_PREFIX,
            "iterations_total",
            &[("loop", id)],
            s.iterations(),
        );
    }

    let name = "iteration_duration_seconds";
    let help = "Time one event-loop iteration took (wait excluded: from wake-up to the next wait).";
    header(out, PREFIX, name, "histogram", help);
    histogram(out, PREFIX, name, None, &total);
    header(out, LOOP_PREFIX, name, "histogram", &per_loop(help));
    for (id, s) in loop_ids.iter().zip(&snaps) {
        histogram(out, LOOP_PREFIX, name, Some(id), s);
    }
}

fn per_loop(help: &str) -> String {
    format!("{help} Per event loop.")
}

pub(super) fn header(out: &mut String, prefix: &str, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {prefix}{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {prefix}{name} {kind}");
}

pub(super) fn sample(
    out: &mut String,
    prefix: &str,
    name: &str,
    labels: &[(&str, &str)],
    v: impl Display,
) {
    out.push_str(prefix);
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label(val, out);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

/// A counter family with one extra label (`key`), process-wide then per loop.
#[allow(clippy::too_many_arguments)]
fn labelled<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    key: &str,
    values: &[String],
    total: &LoopMetrics,
    loop_ids: &[String],
    snaps: &[LoopMetrics],
    get: impl Fn(&LoopMetrics) -> &[u64; N],
) {
    header(out, PREFIX, name, "counter", help);
    for (val, n) in values.iter().zip(get(total)) {
        sample(out, PREFIX, name, &[(key, val)], n);
    }
    header(out, LOOP_PREFIX, name, "counter", &per_loop(help));
    for (id, s) in loop_ids.iter().zip(snaps) {
        for (val, n) in values.iter().zip(get(s)) {
            if *n > 0 {
                sample(out, LOOP_PREFIX, name, &[("loop", id), (key, val)], n);
            }
        }
    }
}

/// `_bucket` lines with cumulative counts (the stored buckets are per-interval), then
/// `_sum` (seconds) and `_count`.
fn histogram(out: &mut String, prefix: &str, name: &str, loop_id: Option<&str>, m: &LoopMetrics) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    let bounds = ITERATION_BUCKETS_NS.iter().map(|ns| seconds(*ns));
    for (le, n) in bounds.chain(["+Inf".to_string()]).zip(&m.iteration_buckets) {
        cumulative += n;
        match loop_id {
            Some(id) => sample(
                out,
                prefix,
                &bucket,
                &[("loop", id), ("le", &le)],
                cumulative,
            ),
            None => sample(out, prefix, &bucket, &[("le", &le)], cumulative),
        }
    }
    let with_loop;
    let labels: &[(&str, &str)] = match loop_id {
        Some(id) => {
            with_loop = [("loop", id)];
            &with_loop
        }
        None => &[],
    };
    sample(
        out,
        prefix,
        &format!("{name}_sum"),
        labels,
        seconds(m.iteration_nanos),
    );
    sample(out, prefix, &format!("{name}_count"), labels, cumulative);
}

/// Nanoseconds as decimal seconds, exact for every u64 (no float rounding): `0.00001`.
fn seconds(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return s.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{s}.{}", digits.trim_end_matches('0'))
}

/// Label values: backslash, double quote and line feed are escaped (format 0.0.4).
pub(super) fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed are escaped (a quote needs none there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
pub(super) fn seconds_for_tests(ns: u64) -> String {
    seconds(ns)
}

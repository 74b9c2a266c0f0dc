//! The Prometheus exposition from `wsloop::server::metrics::render`, parsed back by the
//! reference parser (`prometheus_client.parser.text_string_to_metric_families`, Python):
//! every family and type it reports and every sample with its labels and value must match
//! what was rendered. Skipped with a notice when python3 or prometheus_client is missing
//! (`pip install -r tests/python/requirements.txt` installs it).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use wsloop::backplane::BackplaneStats;
use wsloop::server::metrics::{render, render_backplane, LoopMetrics, LoopShared};

const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    print("F\t%s\t%s" % (fam.name, fam.type))
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("S\t%s\t%s\t%s\t%r" % (fam.name, s.name, labels, s.value))
"#;

fn sample_text() -> String {
    let mut a = LoopMetrics::default();
    a.connections_open = 3;
    a.accepted = 10;
    a.messages_in = 1_000;
    a.messages_out = 2_000;
    a.bytes_in = 123_456;
    a.bytes_out = 654_321;
    a.publishes = 7;
    a.deliveries = 70;
    a.dropped_sends = 2;
    a.slow_subscribers_closed = 1;
    a.buffered_bytes = 4096;
    for code in [1000, 1000, 1001, 1006, 1009, 4001] {
        a.on_close(code);
    }
    for status in [400, 404, 426, 503, 503] {
        a.on_refused(status);
    }
    let mut b = LoopMetrics::default();
    b.connections_open = 40;
    b.accepted = 99;
    b.messages_in = 5;
    b.bytes_out = 1 << 40;
    b.on_close(1000);
    b.on_refused(431);
    for us in [3, 12, 40, 700, 20_000, 2_000_000] {
        a.on_iteration(Duration::from_micros(us));
        b.on_iteration(Duration::from_micros(us * 3));
    }
    let loops = vec![
        Arc::new(LoopShared::default()),
        Arc::new(LoopShared::default()),
    ];
    a.publish(&loops[0]);
    b.publish(&loops[1]);
    let mut out = String::new();
    render(&loops, &mut out);
    // What a server with a Redis backplane appends.
    let bp = BackplaneStats {
        connected: true,
        connects_total: 3,
        reconnects_total: 2,
        published_total: 500,
        received_total: 900,
        dropped_total: 7,
        own_echoes_total: 500,
        subscriptions: 4,
        topics: 4,
        ..BackplaneStats::default()
    };
    render_backplane(&bp, &mut out);
    out
}

/// `name{k=v,...}` (labels sorted) → value, and family → type, from the text itself.
fn own_parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            // The reference parser names a counter family without its `_total`.
            let fam = match kind {
                "counter" => name.strip_suffix("_total").unwrap_or(name),
                _ => name,
            };
            types.insert(fam.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    let mut kv: Vec<String> = l
                        .trim_end_matches('}')
                        .split(',')
                        .map(|kv| kv.replace('"', ""))
                        .collect();
                    kv.sort();
                    (n, kv.join(","))
                }
                None => (series, String::new()),
            };
            let v: f64 = value.parse().unwrap();
            assert!(samples.insert(format!("{name}{{{labels}}}"), v).is_none());
        }
    }
    (samples, types)
}

#[test]
fn prometheus_client_parses_the_exposition() {
    let text = sample_text();
    let path = std::env::temp_dir().join(format!("wsloop-metrics-{}.txt", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let run = Command::new("python3")
        .args(["-c", PARSER])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = match run {
        Err(e) => {
            eprintln!("SKIPPED: python3 not runnable ({e})");
            return;
        }
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("No module named 'prometheus_client'") {
                eprintln!("SKIPPED: prometheus_client not installed (pip install -r tests/python/requirements.txt)");
                return;
            }
            panic!("the reference parser refused the exposition:\n{err}\n---\n{text}");
        }
        Ok(o) => String::from_utf8(o.stdout).unwrap(),
    };

    let (want_samples, want_types) = own_parse(&text);
    let mut got_samples = BTreeMap::new();
    let mut got_types = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "F" => {
                got_types.insert(f[1].to_string(), f[2].to_string());
            }
            "S" => {
                let v: f64 = f[4].parse().unwrap();
                let key = format!("{}{{{}}}", f[2], f[3]);
                assert!(got_samples.insert(key, v).is_none(), "{line}");
            }
            _ => panic!("unexpected parser output {line}"),
        }
    }
    assert_eq!(got_types, want_types);
    assert_eq!(got_samples, want_samples);

    // And the values are the ones put in, summed over the two loops.
    let v = |k: &str| got_samples[k];
    assert_eq!(v("wsloop_accepted_total{}"), 109.0);
    assert_eq!(v("wsloop_loop_accepted_total{loop=1}"), 99.0);
    assert_eq!(v("wsloop_connections_open{}"), 43.0);
    assert_eq!(
        v("wsloop_sent_bytes_total{}"),
        (654_321u64 + (1 << 40)) as f64
    );
    assert_eq!(v("wsloop_closed_total{code=1000}"), 3.0);
    assert_eq!(v("wsloop_closed_total{code=other}"), 1.0);
    assert_eq!(v("wsloop_handshake_refusals_total{status=503}"), 2.0);
    assert_eq!(
        v("wsloop_loop_handshake_refusals_total{loop=1,status=431}"),
        1.0
    );
    assert_eq!(v("wsloop_iterations_total{}"), 12.0);
    assert_eq!(v("wsloop_iteration_duration_seconds_count{}"), 12.0);
    assert_eq!(v("wsloop_iteration_duration_seconds_bucket{le=+Inf}"), 12.0);
    // 3 µs (loop 0) and 9 µs (loop 1) fall under 10 µs.
    assert_eq!(
        v("wsloop_iteration_duration_seconds_bucket{le=0.00001}"),
        2.0
    );
    assert_eq!(
        v("wsloop_loop_iteration_duration_seconds_bucket{le=1,loop=0}"),
        5.0
    );
    let sum_s = 4.0 * (3 + 12 + 40 + 700 + 20_000 + 2_000_000) as f64 / 1e6;
    assert!((v("wsloop_iteration_duration_seconds_sum{}") - sum_s).abs() < 1e-9);
    assert_eq!(got_types["wsloop_iteration_duration_seconds"], "histogram");
    assert_eq!(got_types["wsloop_accepted"], "counter");
    assert_eq!(got_types["wsloop_buffered_bytes"], "gauge");
    assert_eq!(v("wsloop_backplane_up{}"), 1.0);
    assert_eq!(v("wsloop_backplane_reconnects_total{}"), 2.0);
    assert_eq!(v("wsloop_backplane_dropped_total{}"), 7.0);
    assert_eq!(v("wsloop_backplane_malformed_total{}"), 0.0);
    assert_eq!(got_types["wsloop_backplane_up"], "gauge");
    assert_eq!(got_types["wsloop_backplane_received"], "counter");
    assert_eq!(got_types["wsloop_backplane_subscriptions"], "gauge");
}

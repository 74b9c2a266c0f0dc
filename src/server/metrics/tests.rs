use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::render::{escape_label, seconds_for_tests};
use super::*;

/// `name{labels}` → value, and family → (type, label-name sets), from rendered text.
struct Parsed {
    samples: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    label_sets: BTreeMap<String, BTreeSet<Vec<String>>>,
}

fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).map(String::as_str) == Some("histogram") {
                return base;
            }
        }
    }
    name
}

fn parse(text: &str) -> Parsed {
    let mut p = Parsed {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
        label_sets: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let old = p.types.insert(name.to_string(), kind.to_string());
            assert!(old.is_none(), "two TYPE lines for {name}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let fam = family_of(name, &p.types).to_string();
        assert!(p.types.contains_key(&fam), "sample {name} before its TYPE");
        let mut keys: Vec<String> = series
            .split_once('{')
            .map(|(_, l)| {
                l.trim_end_matches('}')
                    .split(',')
                    .map(|kv| kv.split('=').next().unwrap().to_string())
                    .filter(|k| k != "le")
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        p.label_sets.entry(fam).or_default().insert(keys);
        let old = p.samples.insert(series.to_string(), value.to_string());
        assert!(old.is_none(), "duplicate series {series}");
    }
    p
}

fn get(p: &Parsed, series: &str) -> u64 {
    p.samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series}"))
        .parse()
        .unwrap()
}

fn two_loops() -> (LoopMetrics, LoopMetrics, Vec<Arc<LoopShared>>) {
    let mut a = LoopMetrics {
        connections_open: 3,
        accepted: 10,
        messages_in: 1_000,
        messages_out: 2_000,
        bytes_in: 123_456,
        bytes_out: 654_321,
        publishes: 7,
        deliveries: 70,
        dropped_sends: 2,
        slow_subscribers_closed: 1,
        buffered_bytes: 4096,
        ..LoopMetrics::default()
    };
    a.on_close(1000);
    a.on_close(1000);
    a.on_close(1006);
    a.on_refused(404);
    a.on_iteration(Duration::from_micros(5));
    a.on_iteration(Duration::from_micros(30));
    let mut b = LoopMetrics {
        connections_open: 4,
        accepted: 20,
        messages_in: 5,
        bytes_out: u64::MAX / 4,
        ..LoopMetrics::default()
    };
    b.on_close(1001);
    b.on_close(4000);
    b.on_refused(404);
    b.on_refused(503);
    b.on_refused(418);
    b.on_iteration(Duration::from_millis(2));
    b.on_iteration(Duration::from_secs(3));
    let shared = vec![
        Arc::new(LoopShared::default()),
        Arc::new(LoopShared::default()),
    ];
    a.publish(&shared[0]);
    b.publish(&shared[1]);
    (a, b, shared)
}

#[test]
fn close_codes_by_slot() {
    let mut m = LoopMetrics::default();
    for code in [1000, 1015, 999, 1016, 4000, 1000] {
        m.on_close(code);
    }
    assert_eq!(m.closed_by_code[0], 2);
    assert_eq!(m.closed_by_code[15], 1);
    assert_eq!(m.closed_by_code[CLOSE_SLOTS - 1], 3);
    assert_eq!(m.closed(), 6);
}

#[test]
fn refusals_by_status() {
    let mut m = LoopMetrics::default();
    for s in [400, 503, 503, 200, 418] {
        m.on_refused(s);
    }
    assert_eq!(m.refused_by_status[0], 1);
    assert_eq!(m.refused_by_status[8], 2);
    assert_eq!(m.refused_by_status[REFUSAL_SLOTS - 1], 2);
}

#[test]
fn iteration_buckets_are_upper_inclusive() {
    let mut m = LoopMetrics::default();
    m.on_iteration(Duration::ZERO);
    m.on_iteration(Duration::from_micros(10)); // exactly the first bound: first bucket
    m.on_iteration(Duration::from_nanos(10_001));
    m.on_iteration(Duration::from_secs(1));
    m.on_iteration(Duration::from_secs(2)); // past the last bound: +Inf
    assert_eq!(m.iteration_buckets[0], 2);
    assert_eq!(m.iteration_buckets[1], 1);
    assert_eq!(m.iteration_buckets[ITERATION_SLOTS - 2], 1);
    assert_eq!(m.iteration_buckets[ITERATION_SLOTS - 1], 1);
    assert_eq!(m.iterations(), 5);
    assert_eq!(m.iteration_nanos, 3_000_020_001);
}

#[test]
fn publish_then_load_round_trips() {
    let (a, b, shared) = two_loops();
    assert_eq!(shared[0].load(), a);
    assert_eq!(shared[1].load(), b);
    assert_ne!(a, b);
}

#[test]
fn render_sums_across_loops() {
    let (a, b, shared) = two_loops();
    let mut out = String::new();
    render(&shared, &mut out);
    let p = parse(&out);
    assert_eq!(get(&p, "wsloop_accepted_total"), 30);
    assert_eq!(get(&p, "wsloop_loop_accepted_total{loop=\"0\"}"), 10);
    assert_eq!(get(&p, "wsloop_loop_accepted_total{loop=\"1\"}"), 20);
    assert_eq!(get(&p, "wsloop_connections_open"), 7);
    assert_eq!(get(&p, "wsloop_received_messages_total"), 1_005);
    assert_eq!(get(&p, "wsloop_sent_bytes_total"), 654_321 + u64::MAX / 4);
    assert_eq!(get(&p, "wsloop_buffered_bytes"), 4096);
    assert_eq!(get(&p, "wsloop_closed_total{code=\"1000\"}"), 2);
    assert_eq!(get(&p, "wsloop_closed_total{code=\"1001\"}"), 1);
    assert_eq!(get(&p, "wsloop_closed_total{code=\"1006\"}"), 1);
    assert_eq!(get(&p, "wsloop_closed_total{code=\"other\"}"), 1);
    // Every code listed process-wide, zero or not; per loop only the ones that happened.
    assert_eq!(get(&p, "wsloop_closed_total{code=\"1002\"}"), 0);
    assert_eq!(
        get(&p, "wsloop_loop_closed_total{loop=\"0\",code=\"1000\"}"),
        2
    );
    assert!(!p
        .samples
        .contains_key("wsloop_loop_closed_total{loop=\"1\",code=\"1000\"}"));
    assert_eq!(
        get(&p, "wsloop_handshake_refusals_total{status=\"404\"}"),
        2
    );
    assert_eq!(
        get(&p, "wsloop_handshake_refusals_total{status=\"other\"}"),
        1
    );
    assert_eq!(
        get(
            &p,
            "wsloop_loop_handshake_refusals_total{loop=\"1\",status=\"503\"}"
        ),
        1
    );
    assert_eq!(
        get(&p, "wsloop_iterations_total"),
        a.iterations() + b.iterations()
    );
    assert_eq!(get(&p, "wsloop_loop_iterations_total{loop=\"1\"}"), 2);
    assert_eq!(p.types["wsloop_accepted_total"], "counter");
    assert_eq!(p.types["wsloop_connections_open"], "gauge");
    assert_eq!(p.types["wsloop_iteration_duration_seconds"], "histogram");
}

#[test]
fn no_family_mixes_label_sets() {
    let (_, _, shared) = two_loops();
    let mut out = String::new();
    render(&shared, &mut out);
    let p = parse(&out);
    for (fam, sets) in &p.label_sets {
        assert_eq!(sets.len(), 1, "{fam} mixes label sets {sets:?}");
        let has_loop = sets.iter().next().unwrap().contains(&"loop".to_string());
        assert_eq!(has_loop, fam.starts_with("wsloop_loop_"), "{fam}");
        assert!(fam.starts_with("wsloop_"));
        if p.types[fam] == "counter" {
            assert!(fam.ends_with("_total"), "{fam}");
        }
    }
    // Every family has a HELP line.
    for fam in p.types.keys() {
        assert!(out.contains(&format!("# HELP {fam} ")), "{fam}");
    }
}

#[test]
fn histograms_are_cumulative_and_consistent() {
    let (_, _, shared) = two_loops();
    let mut out = String::new();
    render(&shared, &mut out);
    let p = parse(&out);
    for (prefix, labels) in [
        ("wsloop_", String::new()),
        ("wsloop_loop_", "loop=\"0\",".to_string()),
        ("wsloop_loop_", "loop=\"1\",".to_string()),
    ] {
        let name = format!("{prefix}iteration_duration_seconds");
        let mut last = 0;
        let bounds = ITERATION_BUCKETS_NS
            .iter()
            .map(|ns| seconds_for_tests(*ns))
            .chain(["+Inf".to_string()]);
        for le in bounds {
            let n = get(&p, &format!("{name}_bucket{{{labels}le=\"{le}\"}}"));
            assert!(n >= last, "{name} {le}: {n} < {last}");
            last = n;
        }
        let bare = labels.trim_end_matches(',');
        let series = |s: &str| {
            if bare.is_empty() {
                format!("{name}_{s}")
            } else {
                format!("{name}_{s}{{{bare}}}")
            }
        };
        assert_eq!(get(&p, &series("count")), last);
    }
    let total = "wsloop_iteration_duration_seconds";
    assert_eq!(get(&p, &format!("{total}_bucket{{le=\"0.00001\"}}")), 1);
    assert_eq!(get(&p, &format!("{total}_bucket{{le=\"0.00005\"}}")), 2);
    assert_eq!(get(&p, &format!("{total}_bucket{{le=\"0.0025\"}}")), 3);
    assert_eq!(get(&p, &format!("{total}_bucket{{le=\"1\"}}")), 3);
    assert_eq!(get(&p, &format!("{total}_bucket{{le=\"+Inf\"}}")), 4);
    // 5 µs + 30 µs + 2 ms + 3 s, exactly.
    assert_eq!(p.samples[&format!("{total}_sum")], "3.002035");
}

#[test]
fn seconds_are_exact_decimals() {
    assert_eq!(seconds_for_tests(10_000), "0.00001");
    assert_eq!(seconds_for_tests(1_000_000_000), "1");
    assert_eq!(seconds_for_tests(2_500_000_000), "2.5");
    assert_eq!(seconds_for_tests(1), "0.000000001");
}

#[test]
fn label_values_are_escaped() {
    let mut out = String::new();
    escape_label("a\\b\"c\nd", &mut out);
    assert_eq!(out, "a\\\\b\\\"c\\nd");
}

#[test]
fn no_loops_renders_zero_totals() {
    let mut out = String::new();
    render(&[], &mut out);
    let p = parse(&out);
    assert_eq!(get(&p, "wsloop_accepted_total"), 0);
    assert!(!out.contains("loop=\""));
}

//! Cost of the metrics on and off the loop thread:
//!
//! * `publish`: `LoopMetrics::publish`, the relaxed stores a loop makes once per iteration;
//! * `on_iteration`: recording one iteration's time into the histogram;
//! * `render/2_loops`: one scrape of two loops into a reused `String`.
//!
//! Run with `nice -n 10 cargo bench --bench metrics`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Duration;
use wsloop::server::metrics::{render, LoopMetrics, LoopShared};

fn busy() -> LoopMetrics {
    let mut m = LoopMetrics::default();
    m.accepted = 1_000;
    m.messages_in = 123_456_789;
    m.bytes_out = 987_654_321;
    for code in [1000, 1001, 1006, 4000] {
        m.on_close(code);
    }
    m.on_refused(404);
    m.on_iteration(Duration::from_micros(42));
    m
}

fn metrics(c: &mut Criterion) {
    let mut m = busy();
    let shared = LoopShared::default();
    c.bench_function("publish", |b| {
        b.iter(|| {
            m.messages_in += 1;
            black_box(&m).publish(black_box(&shared));
        })
    });
    c.bench_function("on_iteration", |b| {
        b.iter(|| m.on_iteration(black_box(Duration::from_micros(42))))
    });
    let loops: Vec<Arc<LoopShared>> = (0..2).map(|_| Arc::new(LoopShared::default())).collect();
    for l in &loops {
        busy().publish(l);
    }
    let mut out = String::with_capacity(16 << 10);
    c.bench_function("render/2_loops", |b| {
        b.iter(|| {
            out.clear();
            render(black_box(&loops), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = metrics
}
criterion_main!(benches);

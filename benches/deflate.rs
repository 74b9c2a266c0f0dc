//! permessage-deflate backends compared on what a WebSocket server does per message:
//! compress one JSON-like text message (raw deflate, sync flush, level 6, 32 KiB window,
//! compressor reset per message = `server_no_context_takeover`) and inflate it back.
//!
//! * `zlib-rs`: wsloop's own `Compressor` / `Inflater` (zlib-rs's safe API);
//! * `zlib-c`: the system's C zlib through `flate2` (feature `zlib`);
//! * `miniz_oxide`: flate2's pure-Rust default backend, used directly.
//!
//! Sizes: 1 KiB and 16 KiB. Run with `nice -n 10 cargo bench --bench deflate`; see
//! BENCHMARKS.md for figures.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use wsloop::protocol::deflate::{Compressor, DeflateConfig, Inflater};

/// JSON-like chat/telemetry records: repetitive keys, varying values.
pub fn json_like(len: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0u32;
    let names = ["alice", "bob", "carol", "dave", "eve"];
    while s.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"ts\":{},\"text\":\"message number {} from the room\",\"score\":{}.{}}},",
            i % 100_000,
            names[(i >> 8) as usize % 5],
            1_700_000_000 + (i % 1_000_000),
            i % 977,
            i % 100,
            i % 10
        ));
    }
    let mut v = s.into_bytes();
    v.truncate(len);
    v
}

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

fn zlib_c_compress(c: &mut flate2::Compress, data: &[u8], out: &mut Vec<u8>) {
    c.reset();
    out.clear();
    out.reserve(data.len() + 64);
    c.compress_vec(data, out, flate2::FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - 4);
}

fn zlib_c_inflate(d: &mut flate2::Decompress, data: &[u8], out: &mut Vec<u8>, cap: usize) {
    d.reset(false);
    out.clear();
    out.reserve(cap);
    d.decompress_vec(data, out, flate2::FlushDecompress::Sync)
        .unwrap();
    d.decompress_vec(&TAIL, out, flate2::FlushDecompress::Sync)
        .unwrap();
}

fn miniz_compress(
    c: &mut miniz_oxide::deflate::core::CompressorOxide,
    data: &[u8],
    out: &mut Vec<u8>,
) {
    use miniz_oxide::deflate::core::{compress, TDEFLFlush, TDEFLStatus};
    c.reset();
    out.clear();
    out.resize(data.len() + 64, 0);
    let (st, _, n) = compress(c, data, out, TDEFLFlush::Sync);
    assert_eq!(st, TDEFLStatus::Okay);
    out.truncate(n - 4);
}

fn miniz_inflate(
    s: &mut miniz_oxide::inflate::stream::InflateState,
    data: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) {
    use miniz_oxide::inflate::stream::inflate;
    use miniz_oxide::{DataFormat, MZFlush};
    s.reset(DataFormat::Raw);
    out.clear();
    out.resize(cap, 0);
    let r = inflate(s, data, out, MZFlush::Sync);
    let n = r.bytes_written;
    let r2 = inflate(s, &TAIL, &mut out[n..], MZFlush::Sync);
    out.truncate(n + r2.bytes_written);
}

fn backends(c: &mut Criterion) {
    let cfg = DeflateConfig {
        min_compress_size: 0,
        ..DeflateConfig::default()
    };
    for size in [1024usize, 16 * 1024] {
        let data = json_like(size);
        let mut g = c.benchmark_group(format!("deflate_{}k", size / 1024));
        g.throughput(Throughput::Bytes(size as u64));

        // Check every backend round-trips, and print the compressed sizes once.
        let mut ours = Compressor::shared(15, &cfg);
        let mut inf = Inflater::shared();
        let mut zc = flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, 15);
        let mut zd = flate2::Decompress::new_with_window_bits(false, 15);
        let mut mc = miniz_oxide::deflate::core::CompressorOxide::new(
            miniz_oxide::deflate::core::create_comp_flags_from_zip_params(6, -15, 0),
        );
        let mut md =
            miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ours.compress(&data, &mut a);
        inf.inflate(&a, true, size, &mut b).unwrap();
        assert_eq!(b, data);
        let ours_len = a.len();
        zlib_c_compress(&mut zc, &data, &mut a);
        zlib_c_inflate(&mut zd, &a, &mut b, size);
        assert_eq!(b, data);
        let c_len = a.len();
        miniz_compress(&mut mc, &data, &mut a);
        miniz_inflate(&mut md, &a, &mut b, size);
        assert_eq!(b, data);
        eprintln!(
            "{size} B JSON-like → zlib-rs {ours_len} B, zlib-c {c_len} B, miniz_oxide {} B",
            a.len()
        );

        g.bench_function(BenchmarkId::new("compress", "zlib-rs"), |bch| {
            bch.iter(|| {
                a.clear();
                ours.compress(black_box(&data), &mut a);
            })
        });
        g.bench_function(BenchmarkId::new("compress", "zlib-c"), |bch| {
            bch.iter(|| zlib_c_compress(&mut zc, black_box(&data), &mut a))
        });
        g.bench_function(BenchmarkId::new("compress", "miniz_oxide"), |bch| {
            bch.iter(|| miniz_compress(&mut mc, black_box(&data), &mut a))
        });

        let mut z = Vec::new();
        ours.compress(&data, &mut z);
        g.bench_function(BenchmarkId::new("inflate", "zlib-rs"), |bch| {
            bch.iter(|| {
                inf.inflate(black_box(&z), true, size, &mut b).unwrap();
            })
        });
        g.bench_function(BenchmarkId::new("inflate", "zlib-c"), |bch| {
            bch.iter(|| zlib_c_inflate(&mut zd, black_box(&z), &mut b, size))
        });
        g.bench_function(BenchmarkId::new("inflate", "miniz_oxide"), |bch| {
            bch.iter(|| miniz_inflate(&mut md, black_box(&z), &mut b, size))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = backends
}
criterion_main!(benches);

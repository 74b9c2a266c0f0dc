//! Heap held by one deflate context, measured with a counting global allocator (zlib-rs is
//! built without its C allocator, so its allocations go through Rust's). One test only: the
//! counter is process-wide. Prints the table BENCHMARKS.md quotes
//! (`cargo test --test deflate_memory -- --nocapture`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use wsloop::protocol::deflate::{Compressor, DeflateConfig, Inflater};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn held<T>(make: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let t = make();
    (t, LIVE.load(Ordering::Relaxed) - before)
}

#[test]
fn memory_per_context() {
    let msg: Vec<u8> = (0..4096u32)
        .flat_map(|i| format!("{{\"n\":{}}}", i % 97).into_bytes())
        .collect();
    println!("context                      bytes");
    let mut compressors = Vec::new();
    for bits in [9u8, 12, 15] {
        for mem_level in [1u8, 4, 8] {
            let cfg = DeflateConfig {
                mem_level,
                ..DeflateConfig::default()
            };
            let mut scratch = Vec::with_capacity(msg.len() * 2);
            let (c, bytes) = held(|| {
                let mut c = Compressor::new(bits, &cfg, false);
                c.compress(&msg, &mut scratch);
                c
            });
            println!("compressor w{bits:<2} mem{mem_level}       {bytes:>8}");
            compressors.push(((bits, mem_level), bytes));
            drop(c);
        }
    }
    let mut inflaters = Vec::new();
    for bits in [9u8, 12, 15] {
        let mut z = Vec::new();
        let cfg = DeflateConfig::default();
        Compressor::new(bits, &cfg, false).compress(&msg, &mut z);
        let mut out = Vec::with_capacity(msg.len() * 2);
        let (inf, bytes) = held(|| {
            let mut inf = Inflater::dedicated(bits);
            inf.inflate(&z, false, msg.len(), &mut out).unwrap();
            inf
        });
        println!("inflater   w{bits:<2}            {bytes:>8}");
        inflaters.push(bytes);
        drop(inf);
    }
    // The other backends, for the comparison (flate2 fixes memLevel 8 for C zlib; miniz_oxide
    // has one fixed-size compressor whatever the window).
    for bits in [9u8, 15] {
        let (c, bytes) = held(|| {
            let mut c =
                flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, bits);
            let mut out = Vec::with_capacity(msg.len() * 2);
            c.compress_vec(&msg, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            (c, out)
        });
        let bytes = bytes - c.1.capacity();
        println!("zlib-c compressor w{bits:<2} mem8 {bytes:>8}");
        assert!(bytes > 0);
        let (d, bytes) = held(|| {
            let mut d = flate2::Decompress::new_with_window_bits(false, bits);
            let mut out = Vec::with_capacity(msg.len() * 2);
            d.decompress_vec(&c.1, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            (d, out)
        });
        let bytes = bytes - d.1.capacity();
        println!("zlib-c inflater   w{bits:<2}      {bytes:>8}");
    }
    let (_mc, bytes) = held(|| {
        Box::new(miniz_oxide::deflate::core::CompressorOxide::new(
            miniz_oxide::deflate::core::create_comp_flags_from_zip_params(6, -15, 0),
        ))
    });
    println!("miniz compressor  w15      {bytes:>8}");
    let (_md, bytes) = held(|| {
        miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw)
    });
    println!("miniz inflater    w15      {bytes:>8}");
    let get = |k| compressors.iter().find(|(kk, _)| *kk == k).unwrap().1;
    // A smaller window and memory level must cost less; the smallest is well under the
    // default (what a dedicated-context deployment would pick).
    assert!(get((9, 1)) < get((9, 8)) && get((9, 8)) < get((15, 8)));
    assert!(get((9, 1)) * 2 < get((15, 8)), "{compressors:?}");
    // zlib-rs allocates an inflater's window at full size whatever the window bits, so a
    // dedicated inflater costs the same at every window: under 64 KiB.
    assert!(inflaters.iter().all(|&b| b < 64 * 1024), "{inflaters:?}");
}

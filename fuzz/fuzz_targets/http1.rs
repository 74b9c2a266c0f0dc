//! A stream of pipelined HTTP/1.1 requests → `find_head_end` → `parse_request` →
//! `BodyReader` (Content-Length and chunked), fed whole, a byte at a time and cut at
//! fuzzer-chosen points; every delivery must agree. Byte 0 picks the head and body limits,
//! byte 1 a cut stride, then up to 16 cut points ended by 0xff. The checks live in
//! `tests/common/fuzz_http1.rs`, shared with `tests/fuzz_corpus_replay.rs`.
#![no_main]

#[path = "../../tests/common/fuzz_checks.rs"]
mod fuzz_checks;
#[path = "../../tests/common/fuzz_http1.rs"]
mod fuzz_http1;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_http1::check_http1(data);
});

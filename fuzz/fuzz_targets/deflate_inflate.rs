//! permessage-deflate inflation: byte 0 picks text/binary, shared/dedicated, window and limit;
//! the rest is one compressed message. The checks are `check_deflate_inflate` in
//! `tests/common/fuzz_checks.rs`, shared with `tests/fuzz_corpus_replay.rs`.
#![no_main]

#[path = "../../tests/common/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_deflate_inflate(data);
});

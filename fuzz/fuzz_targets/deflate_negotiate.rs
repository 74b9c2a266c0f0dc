//! permessage-deflate negotiation: byte 0 picks the server settings, the rest are header
//! values split at `\n`. The checks are `check_deflate_negotiate` in
//! `tests/common/fuzz_checks.rs`, shared with `tests/fuzz_corpus_replay.rs`.
#![no_main]

#[path = "../../tests/common/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_deflate_negotiate(data);
});

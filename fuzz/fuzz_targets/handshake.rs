//! Bytes → `find_head_end` (whole, byte at a time, in chunks; limit and chunk size from
//! byte 0) → `parse_request` → `validate_upgrade`. The checks live in
//! `tests/common/fuzz_checks.rs`, shared with `tests/fuzz_corpus_replay.rs`.
#![no_main]

#[path = "../../tests/common/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_handshake(data);
});

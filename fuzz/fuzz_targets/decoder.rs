//! Bytes → `Decoder` in both roles with a small `max_message` (byte 0), fed whole and in
//! two pieces (split point from byte 1), checked against the reference decoder and the
//! decoder's per-call contract. The checks live in `tests/common/fuzz_checks.rs`, shared
//! with `tests/fuzz_corpus_replay.rs`.
#![no_main]

#[path = "../../tests/common/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_decoder(data);
});

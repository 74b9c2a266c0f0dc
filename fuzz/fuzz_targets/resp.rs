//! Bytes from "Redis" → the backplane's RESP3 `Decoder` (limits from byte 0, a cut point
//! from byte 1), fed whole, cut, and a byte at a time, checked against a reference decoder
//! and the buffer bound. The checks live in `tests/common/fuzz_resp.rs`, shared with
//! `tests/fuzz_corpus_replay.rs`. Seeds in `fuzz/corpus/resp/` are real Redis traffic
//! (`fuzz/capture_redis.py`).
#![no_main]

#[path = "../../tests/common/fuzz_resp.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_resp(data);
});

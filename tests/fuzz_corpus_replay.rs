//! Replays every checked-in fuzz corpus file through the same checks the fuzz targets run
//! (`tests/common/fuzz_checks.rs`), deterministically, as part of `cargo test`.

#[path = "common/fuzz_checks.rs"]
mod fuzz_checks;
#[path = "common/fuzz_http1.rs"]
mod fuzz_http1;
#[path = "common/fuzz_resp.rs"]
mod fuzz_resp;

use std::fs;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let data = fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} failed", path.display());
    }
}

#[test]
fn decoder_corpus_replays_clean() {
    replay("decoder", fuzz_checks::check_decoder);
}

#[test]
fn handshake_corpus_replays_clean() {
    replay("handshake", fuzz_checks::check_handshake);
}

#[test]
fn deflate_negotiate_corpus_replays_clean() {
    replay("deflate_negotiate", fuzz_checks::check_deflate_negotiate);
}

#[test]
fn deflate_inflate_corpus_replays_clean() {
    replay("deflate_inflate", fuzz_checks::check_deflate_inflate);
}

#[test]
fn http1_corpus_replays_clean() {
    replay("http1", fuzz_http1::check_http1);
}

#[test]
fn resp_corpus_replays_clean() {
    replay("resp", fuzz_resp::check_resp);
}

//! `wsload churn` against the real server (the soak's churn, seconds instead of hours):
//! connections ended every way leave nothing behind, and a burst past the open-file limit
//! is refused cleanly and leaves the server serving, with its fds back to the baseline.

mod common;

use common::ServerProc;
use std::process::Command;
use std::time::{Duration, Instant};

fn www() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/www").to_string()
}

/// Runs wsload with `args`; returns its exit code and its last stdout line (the JSON).
fn wsload(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(args)
        .output()
        .expect("run wsload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    (out.status.code().unwrap_or(-1), last)
}

/// The number after `"key":` in a flat JSON object.
fn field(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// Waits (bounded) until the server's fd count is at most `want`; returns the last count.
fn settle_fds(server: &ServerProc, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = server.fd_count();
        if n <= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn churn_verifies_everything_and_leaves_no_fd_behind() {
    let www = www();
    let server = ServerProc::start(
        "demo",
        &["--threads", "2", "--handshake-timeout", "1", "--www", &www],
    );
    std::thread::sleep(Duration::from_millis(200));
    let base = server.fd_count();
    let url = server.url();
    let (code, json) = wsload(&[
        "churn",
        "--url",
        &url,
        "-d",
        "3",
        "--workers",
        "2",
        "--pause-ms",
        "5",
        "--slow-readers",
        "0",
        "--handshake-timeout",
        "1",
    ]);
    assert_eq!(code, 0, "{json}");
    for key in ["clean", "rst", "http", "half_parked", "messages_verified"] {
        assert!(field(&json, key) > 0, "no {key}: {json}");
    }
    assert_eq!(field(&json, "broken"), 0, "{json}");
    assert_eq!(field(&json, "refused"), 0, "{json}");
    // Every abandoned half-open head was closed by the server, not by us.
    assert_eq!(
        field(&json, "half_closed_by_server"),
        field(&json, "half_parked"),
        "{json}"
    );
    let after = settle_fds(&server, base);
    assert_eq!(after, base, "fds before {base}, after {after}");
}

#[test]
fn burst_past_the_fd_limit_is_refused_and_the_server_recovers() {
    let www = www();
    // The server under a low open-file limit, so the burst is cheap.
    let server = ServerProc::start_wrapped(
        &["prlimit", "--nofile=128:128", "--"],
        "echo",
        &["--threads", "1", "--www", &www],
    );
    std::thread::sleep(Duration::from_millis(200));
    let base = server.fd_count();
    let url = server.url();
    let (code, json) = wsload(&[
        "churn",
        "--url",
        &url,
        "--echo-path",
        "/",
        "--burst",
        "300",
        "--burst-hold",
        "0.5",
    ]);
    // Exit 0 includes the echo checked after the burst.
    assert_eq!(code, 0, "{json}");
    assert!(field(&json, "burst_open") > 0, "{json}");
    assert!(field(&json, "burst_refused") > 0, "{json}");
    assert_eq!(field(&json, "broken"), 0, "{json}");
    let after = settle_fds(&server, base);
    assert_eq!(after, base, "fds before {base}, after {after}");
}

/// Found by the soak (churn with resets): an echo large enough for the direct `writev`
/// path, written to a socket the client had already reset, set the connection to wait for
/// WRITABLE (which a dead socket never reports) while the write had consumed the socket's
/// error; the next read then saw a plain EOF and the connection lingered with its unsent
/// echo until the close timeout. Under reset churn that held thousands of connections and
/// tens of MB. With an hour-long close timeout, only a prompt release gets the fd back.
#[test]
fn echo_to_a_reset_socket_releases_the_connection_at_once() {
    use std::io::Write;
    let server = ServerProc::start(
        "echo",
        &["--threads", "1", "--no-www", "--close-timeout", "3600"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let base = server.fd_count();
    for _ in 0..5 {
        let mut s = common::raw_ws(server.addr);
        // Stop the server so the message and the reset are both queued before it reads:
        // it reads the message (20 KB: within the receive window, and past the direct-write
        // threshold), then its echo meets the reset.
        signal(server.pid(), "STOP");
        s.write_all(&common::client_frame(true, 2, &vec![7u8; 20_000]))
            .unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        signal(server.pid(), "CONT");
    }
    let after = settle_fds(&server, base);
    assert_eq!(
        after, base,
        "fds before {base}, after {after}: a connection lingers"
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

//! Signals as an operator's tools send them (issue 21, cases 1-3): SIGHUP never kills the
//! server (with or without TLS), a second SIGTERM exits at once with every loop count,
//! and the shutdown log counts the clients it cut at the deadline. Verdicts rest on exit
//! statuses and log lines, read as they come; the deadlines only bound a hang.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// `wsloop <args>` with its stderr lines (RUST_LOG=info) delivered on a channel.
fn start(args: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--no-www"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsloop");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("start-up line");
    let addr = startup_addr(&line);
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, addr, rx)
}

/// Waits for a log line containing `what` (or fails at 30 s).
fn await_log(logs: &mpsc::Receiver<String>, what: &str) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match logs.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(e) => panic!("no log line with {what:?}: {e}"),
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the process to exit (or fails at `within`).
fn exit_status(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the server did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_does_not_kill_a_server_without_tls() {
    for threads in ["1", "2"] {
        let (mut child, addr, logs) = start(&["echo", "--threads", threads]);
        signal(&child, "-HUP");
        await_log(&logs, "SIGHUP");
        // Still serving, and still a process.
        assert_alive(addr);
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP ended the server"
        );
        signal(&child, "-TERM");
        assert_eq!(
            exit_status(&mut child, Duration::from_secs(30)).code(),
            Some(0)
        );
    }
}

/// A client that never answers the close frame keeps the drain going until the close
/// timeout (30 s here); a second SIGTERM must end it at once (status 130).
#[test]
fn a_second_sigterm_exits_at_once_with_two_loops() {
    let (mut child, addr, logs) = start(&["echo", "--threads", "2", "--close-timeout", "30"]);
    // Clients on both loops (the kernel spreads them), none of which answers a close.
    let clients: Vec<_> = (0..16).map(|_| raw_ws(addr)).collect();
    signal(&child, "-TERM");
    await_log(&logs, "signal received");
    signal(&child, "-TERM");
    let st = exit_status(&mut child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "the second signal exits at once");
    drop(clients);
}

#[test]
fn the_shutdown_log_counts_the_clients_cut_at_the_deadline() {
    let (mut child, addr, logs) = start(&["echo", "--threads", "1", "--close-timeout", "1"]);
    let mut silent = raw_ws(addr);
    signal(&child, "-TERM");
    // It gets our close frame and never answers.
    let (_, op, _) = read_frame(&mut silent);
    assert_eq!(op, 8);
    let line = await_log(&logs, "shutdown complete");
    assert!(
        line.contains("(1 connections dropped at the deadline)"),
        "{line}"
    );
    assert_eq!(
        exit_status(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
    let _ = silent.write_all(b"");
}

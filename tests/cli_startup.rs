//! The binary's start-up checks, run as a user would: bad flag values name the flag and
//! exit 2, a busy port names itself and an alternative and exits 1, and the short
//! `--listen` and size forms start a server.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

fn wsloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run wsloop")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn busy_port_says_which_and_how_to_choose_another() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let port = addr.port().to_string();
    // The bare-port form, so the message shows the address it expanded to.
    let o = wsloop(&["echo", "--listen", &port, "--no-www"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let next = format!("127.0.0.1:{}", addr.port() + 1);
    assert!(
        err.contains(&format!(
            "error: {addr} is already in use; choose another address with --listen ADDR (e.g. --listen {next})"
        )),
        "{err}"
    );
    drop(taken);
}

#[test]
fn bad_values_name_the_flag_and_exit_2() {
    let exe = env!("CARGO_BIN_EXE_wsloop");
    let cases: [(&[&str], &str); 6] = [
        (&["--www", exe], "--www <DIR>"),
        (&["--www", "/no/such/wsloop/dir"], "--www <DIR>"),
        (&["--idle-timeout", "858993459.4"], "--idle-timeout <SECS>"),
        (&["--close-timeout=-1"], "--close-timeout <SECS>"),
        (&["--max-message-size", "64KB"], "--max-message-size <SIZE>"),
        (&["--max-connections", "0"], "--max-connections <N>"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["echo", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let o = wsloop(&args);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{flags:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{flags:?} started a server");
    }
}

#[test]
fn short_forms_start_a_server() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args(["echo", "--listen", "0", "--no-www"])
        .args(["--max-message-size", "1MiB", "--max-backpressure", "256KiB"])
        .args(["--idle-timeout", "2.5", "--max-header-size", "4KiB"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wsloop");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("wsloop echo listening on 127.0.0.1:"),
        "{line:?}"
    );
}

/// Starts `wsloop demo` with `flags`; returns the child and its address.
fn demo(flags: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args(["demo", "--listen", "127.0.0.1:0", "--no-www"])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wsloop");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("wsloop demo listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (child, addr)
}

/// The status line of an upgrade to `/echo` sent with `Origin: origin`.
fn upgrade_status(addr: &str, origin: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Origin: {origin}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.lines().next().unwrap_or("").to_string()
}

#[test]
fn demo_accepts_browsers_unless_an_allow_list_says_otherwise() {
    // Without --allow-origin every Origin may upgrade (a browser on the demo page sends one).
    let (mut child, addr) = demo(&[]);
    let page = format!("http://{addr}");
    let status = upgrade_status(&addr, &page);
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.starts_with("HTTP/1.1 101"), "{status:?}");
    // With an allow-list, only the listed origins.
    let (mut child, addr) = demo(&["--allow-origin", "http://good.example"]);
    let good = upgrade_status(&addr, "http://good.example");
    let bad = upgrade_status(&addr, "http://evil.example");
    let _ = child.kill();
    let _ = child.wait();
    assert!(good.starts_with("HTTP/1.1 101"), "{good:?}");
    assert!(bad.starts_with("HTTP/1.1 403"), "{bad:?}");
}

//! `rediss://`: the backplane over TLS to Debian's `redis-server` started with `--tls-port`
//! and a throwaway test CA made by `scripts/test-cert.sh` (openssl), with a password
//! (`--requirepass`) sent over the encrypted link. Without `redis-server` or `openssl` on
//! the PATH these tests fail, on purpose (`scripts/test.sh` installs redis-server).
//!
//! Waits poll for a condition under a generous deadline; nothing asserts on time.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use wsloop::backplane::{Backplane, BackplaneConfig, Incoming};

const DEADLINE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "tls-and-a-password";

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh directory with `ca.pem`, `cert.pem`, `key.pem` (localhost, 127.0.0.1).
fn test_certs(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsloop-rediss-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-cert.sh");
    let ok = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .status()
        .expect("run scripts/test-cert.sh (needs openssl)");
    assert!(ok.success(), "scripts/test-cert.sh failed");
    dir
}

/// `redis-server` with TLS only (`--port 0`), killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl TlsRedis {
    fn start(certs: &Path) -> TlsRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = certs.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &p("cert.pem"),
                "--tls-key-file",
                &p("key.pem"),
            ])
            .args([
                "--tls-ca-cert-file",
                &p("ca.pem"),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): apt-get install -y redis-server")
            });
        // Ready when it logs that it accepts connections (TLS: a plain PING cannot tell).
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(DEADLINE)
            .expect("redis-server --tls-port never became ready");
        TlsRedis { port, child, dir }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn instance(url: &str, ca: &Path) -> (Backplane, Receiver<Incoming>) {
    let mut cfg = BackplaneConfig::from_url(url).unwrap();
    assert!(cfg.tls);
    cfg.tls_ca_file = Some(ca.to_path_buf());
    cfg.set_password(PASSWORD.to_string());
    let (tx, rx) = channel();
    let bp = Backplane::start(cfg, move |m| {
        let _ = tx.send(m);
    })
    .unwrap();
    (bp, rx)
}

#[test]
fn rediss_two_instances_exchange_messages_over_tls() {
    let certs = test_certs("pair");
    let redis = TlsRedis::start(&certs);
    let ca = certs.join("ca.pem");
    let (a, a_rx) = instance(&redis.url(), &ca);
    let (b, b_rx) = instance(&redis.url(), &ca);
    a.subscribe("room");
    b.subscribe("room");
    for bp in [&a, &b] {
        wait_until("connected and subscribed over TLS", || {
            let s = bp.stats();
            s.connected && s.subscriptions == 1
        });
    }
    // Bigger than rustls's plaintext buffers both ways, with every byte value.
    let big: Vec<u8> = (0..(1 << 20) + 13).map(|i| (i * 7 % 251) as u8).collect();
    assert!(a.publish("room", false, &big));
    for i in 0..100 {
        assert!(a.publish("room", true, format!("a{i}").as_bytes()));
        assert!(b.publish("room", true, format!("b{i}").as_bytes()));
    }
    let first = b_rx.recv_timeout(DEADLINE).expect("the big message");
    assert_eq!(
        (first.payload.len(), first.payload[..] == big[..]),
        (big.len(), true)
    );
    for i in 0..100 {
        let m = b_rx.recv_timeout(DEADLINE).expect("a's message at b");
        assert_eq!(&m.payload[..], format!("a{i}").as_bytes());
        let m = a_rx.recv_timeout(DEADLINE).expect("b's message at a");
        assert_eq!(&m.payload[..], format!("b{i}").as_bytes());
    }
    wait_until("every publish answered", || {
        a.stats().published_total == 101 && b.stats().published_total == 100
    });
    for s in [a.stats(), b.stats()] {
        assert_eq!(
            (s.dropped_total, s.protocol_errors_total, s.connects_total),
            (0, 0, 1)
        );
    }
}

#[test]
fn rediss_untrusted_certificate_is_refused() {
    let certs = test_certs("server");
    let other = test_certs("other-ca");
    let redis = TlsRedis::start(&certs);
    let (bp, _rx) = instance(&redis.url(), &other.join("ca.pem"));
    wait_until("two refused handshakes", || {
        bp.stats().protocol_errors_total >= 2
    });
    let s = bp.stats();
    assert_eq!((s.connected, s.connects_total), (false, 0), "{s:?}");
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn rediss_from_the_command_line_with_a_password_file() {
    let certs = test_certs("cli");
    let redis = TlsRedis::start(&certs);
    let pw = certs.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let ca = certs.join("ca.pem");
    let server = common::ServerProc::start(
        "echo",
        &[
            "--metrics",
            "--redis",
            &redis.url(),
            "--redis-ca",
            ca.to_str().unwrap(),
            "--redis-password-file",
            pw.to_str().unwrap(),
        ],
    );
    wait_until("wsloop_backplane_up 1", || {
        let mut s = common::raw_connect(server.addr);
        let host = server.addr;
        std::io::Write::write_all(
            &mut s,
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let r = common::read_http_response(&mut s);
        String::from_utf8_lossy(&r.body).contains("\nwsloop_backplane_up 1\n")
    });
}

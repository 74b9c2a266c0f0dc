//! Plain HTTP on the WebSocket port: the demo pages and any static file, never outside
//! the directory, big files streamed with backpressure.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

struct Site {
    dir: PathBuf,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = std::env::temp_dir().join(format!("wsloop-www-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(www.join("app.js"), "console.log(1)").unwrap();
        std::fs::write(www.join("style.css"), "body{}").unwrap();
        std::fs::write(www.join("data.json"), "{}").unwrap();
        std::fs::write(www.join("pic.svg"), "<svg/>").unwrap();
        std::fs::write(www.join("img.png"), [0x89, b'P', b'N', b'G']).unwrap();
        std::fs::write(www.join("sub/index.html"), "sub").unwrap();
        let big: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(www.join("big.bin"), big).unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("escape.txt")).unwrap();
        Site { dir }
    }
    fn www(&self) -> String {
        self.dir.join("www").display().to_string()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Reads one response; the body by Content-Length (none for HEAD).
fn read_resp(s: &mut TcpStream, head_only: bool) -> Resp {
    let head = read_http_head(s);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut r = Resp {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    if !head_only {
        r.body = vec![0; len];
        s.read_exact(&mut r.body).unwrap();
    }
    r
}

fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> Resp {
    let mut s = raw_connect(addr);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_resp(&mut s, method == "HEAD")
}

#[test]
fn serves_files_with_content_types() {
    let site = Site::new("types");
    let server = ServerProc::start("chat", &["--www", &site.www()]);
    for (path, ctype, body) in [
        ("/", "text/html", &b"<h1>hi</h1>"[..]),
        ("/index.html", "text/html", b"<h1>hi</h1>"),
        ("/app.js", "text/javascript", b"console.log(1)"),
        ("/style.css", "text/css", b"body{}"),
        ("/data.json", "application/json", b"{}"),
        ("/pic.svg", "image/svg+xml", b"<svg/>"),
        ("/img.png", "image/png", &[0x89, b'P', b'N', b'G']),
        ("/sub/", "text/html", b"sub"),
    ] {
        let r = get(server.addr, "GET", path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(ctype),
            "{path}"
        );
        assert_eq!(r.body, body, "{path}");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
    }
    let r = get(server.addr, "HEAD", "/app.js");
    assert_eq!(
        (r.status, r.header("content-length").as_deref()),
        (200, Some("14"))
    );
}

#[test]
fn errors_and_no_escape_from_the_directory() {
    let site = Site::new("escape");
    let server = ServerProc::start("echo", &["--www", &site.www()]);
    assert_eq!(get(server.addr, "GET", "/missing.html").status, 404);
    assert_eq!(get(server.addr, "POST", "/index.html").status, 405);
    assert_eq!(get(server.addr, "DELETE", "/").status, 405);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2fsecret.txt",
        "/sub/../../secret.txt",
        "/escape.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
    ] {
        let r = get(server.addr, "GET", path);
        assert!(matches!(r.status, 400 | 403 | 404), "{path}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{path}"
        );
    }
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let site = Site::new("keepalive");
    let server = ServerProc::start("echo", &["--www", &site.www()]);
    let mut s = raw_connect(server.addr);
    // Two pipelined requests, then a third after the answers.
    s.write_all(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let a = read_resp(&mut s, false);
    assert_eq!((a.status, &a.body[..]), (200, &b"console.log(1)"[..]));
    assert_eq!(a.header("connection").as_deref(), Some("keep-alive"));
    assert_eq!(read_resp(&mut s, false).status, 404);
    s.write_all(b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let c = read_resp(&mut s, false);
    assert_eq!((c.status, &c.body[..]), (200, &b"body{}"[..]));
    assert!(reads_to_eof(&mut s), "closed after Connection: close");
}

#[test]
fn big_file_streams_with_backpressure_and_the_loop_keeps_serving() {
    let site = Site::new("big");
    let server = ServerProc::start("echo", &["--www", &site.www()]);
    let rss_before = server.rss_kb();
    // Two slow readers of an 8 MiB file: the server must not buffer the file in memory.
    let mut slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = raw_connect(server.addr);
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile a WebSocket client on the same port is served.
    let mut ws = raw_ws(server.addr);
    ws.write_all(&client_frame(true, 1, b"still served"))
        .unwrap();
    assert_eq!(read_frame(&mut ws).2, b"still served");
    let rss_mid = server.rss_kb();
    assert!(
        rss_mid < rss_before + 4096,
        "RSS grew from {rss_before} to {rss_mid} KiB while streaming"
    );
    for s in slow.iter_mut() {
        let r = read_resp(s, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 8 << 20);
        assert!(r
            .body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
    }
}

#[test]
fn no_www_means_426_for_plain_http() {
    let server = ServerProc::start("echo", &["--no-www"]);
    let r = get(server.addr, "GET", "/");
    assert_eq!(r.status, 426);
    assert_eq!(r.header("upgrade").as_deref(), Some("websocket"));
}

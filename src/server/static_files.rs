//! Plain HTTP GET/HEAD on the WebSocket port: static files from one directory, never
//! outside it. Demo-grade on purpose (no ranges, no conditional requests), but exact:
//! `Content-Length` always, no body on a HEAD response, errors with the status they mean.
//!
//! Disk reads are blocking and happen on the loop thread. That is acceptable only because
//! each is bounded: a file is opened and read in steps of at most [`CHUNK`] (64 KiB), one
//! step each time the connection's previous step has been taken by the kernel, so one
//! download costs the loop one 64 KiB read per socket write, never a whole file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::protocol::http1::{write_response, write_response_head, Persist};
use crate::protocol::Request;

/// A file body still to be sent.
#[derive(Debug)]
pub struct FileBody {
    pub file: File,
    /// Bytes of the file still to be read and queued.
    pub remaining: u64,
}

/// Bytes of file read into the write buffer per refill.
pub const CHUNK: usize = 64 << 10;

/// The response to queue: a head (plus a small body), and maybe a file body to stream.
pub struct Response {
    pub bytes: Vec<u8>,
    pub body: Option<FileBody>,
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Percent-decodes a path; `None` for bad escapes or a NUL byte.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Maps a request path to a file under `root`, refusing anything that could leave it:
/// `..` (also percent-encoded), absolute paths, and symlinks pointing outside.
fn resolve(root: &Path, request_path: &str) -> Result<PathBuf, u16> {
    let decoded = percent_decode(request_path).ok_or(400u16)?;
    if !decoded.starts_with('/') {
        return Err(400);
    }
    let mut rel = PathBuf::new();
    for comp in Path::new(&decoded[1..]).components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            Component::CurDir => {}
            _ => return Err(404),
        }
    }
    let root = root.canonicalize().map_err(|_| 404u16)?;
    let mut path = root.join(&rel);
    if path.is_dir() {
        path.push("index.html");
    }
    // Resolve symlinks and check the real path is still inside the root.
    let real = path.canonicalize().map_err(|_| 404u16)?;
    if !real.starts_with(&root) {
        return Err(404);
    }
    if !real.is_file() {
        return Err(404);
    }
    Ok(real)
}

/// Builds the response for a non-upgrade request; `persist` is what the response says
/// about the connection (the caller closes it after a `Persist::Close` response).
pub fn respond(req: &Request<'_>, root: Option<&Path>, persist: Persist) -> Response {
    let head_only = req.is_head();
    let error = |status: u16, body: &str, extra: &[(&str, &str)]| {
        let mut bytes = Vec::new();
        write_response(
            &mut bytes,
            status,
            extra,
            body.as_bytes(),
            persist,
            head_only,
        );
        Response { bytes, body: None }
    };
    let Some(root) = root else {
        return error(
            426,
            "this is a WebSocket endpoint\n",
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
        );
    };
    if !matches!(req.method, "GET" | "HEAD") {
        return error(405, "method not allowed\n", &[("Allow", "GET, HEAD")]);
    }
    let path = match resolve(root, req.path) {
        Ok(p) => p,
        Err(400) => return error(400, "bad request\n", &[]),
        Err(_) => return error(404, "not found\n", &[]),
    };
    let opened = File::open(&path).and_then(|f| {
        let len = f.metadata()?.len();
        Ok((f, len))
    });
    let (mut file, len) = match opened {
        Ok(x) => x,
        Err(_) => return error(404, "not found\n", &[]),
    };
    let mut bytes = Vec::new();
    let headers = [
        ("Content-Type", content_type(&path)),
        ("Cache-Control", "no-cache"),
    ];
    write_response_head(&mut bytes, 200, &headers, len, persist);
    if head_only || len == 0 {
        return Response { bytes, body: None };
    }
    // Small files go out with the head in one write.
    if len <= CHUNK as u64 {
        let start = bytes.len();
        bytes.resize(start + len as usize, 0);
        if file.read_exact(&mut bytes[start..]).is_err() {
            return error(404, "not found\n", &[]);
        }
        return Response { bytes, body: None };
    }
    Response {
        bytes,
        body: Some(FileBody {
            file,
            remaining: len,
        }),
    }
}

impl FileBody {
    /// Appends the next chunk of the file to `out`. A file that shrank under us ends the
    /// response early (the connection is then closed, as the length can't be honoured).
    pub fn refill(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let n = (self.remaining as usize).min(CHUNK);
        let start = out.len();
        out.resize(start + n, 0);
        let got = self.file.read(&mut out[start..])?;
        out.truncate(start + got);
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= got as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        let dir = std::env::temp_dir().join(format!("wsloop-static-{}", std::process::id()));
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "hi").unwrap();
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let _ = std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("link.txt"));
        assert!(resolve(&www, "/").is_ok());
        assert!(resolve(&www, "/index.html").is_ok());
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "//etc/passwd",
            "/link.txt",
            "/nope.html",
        ] {
            assert!(resolve(&www, bad).is_err(), "{bad}");
        }
        assert_eq!(resolve(&www, "/%zz"), Err(400));
        assert_eq!(resolve(&www, "/a%00b"), Err(400));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

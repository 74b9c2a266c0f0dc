//! A `redis-server` child for the backplane tests: Debian's package (`scripts/test.sh`
//! installs it), started on a free loopback port, killed on drop. Without `redis-server` on
//! the PATH the tests that use it fail with a message saying so, on purpose: a skipped test
//! would hide a missing install step.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer its first PING.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A `redis-server` child on a free port, killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        // Bind port 0 for a free port, close it, hand it to redis. Another process could take
        // it in between; on loopback in a test run that is rare and shows up as a clear panic.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a probe socket")
            .port();
        let dir = std::env::temp_dir().join(format!("wsloop-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir for redis");
        let mut server = RedisServer {
            port,
            child: None,
            dir,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis running").id()
    }

    /// Starts redis-server on `self.port` (again) and waits for it to answer PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): these tests need Debian's redis-server \
                     (apt-get install -y redis-server; scripts/test.sh installs it)"
                )
            });
        self.child = Some(child);
        let end = Instant::now() + START_DEADLINE;
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(Instant::now() < end, "redis-server never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("redis running");
        child.kill().expect("kill redis-server");
        child.wait().expect("reap redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut got).is_ok() && &got == b"+PONG\r\n"
}

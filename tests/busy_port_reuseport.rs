//! A port already served by a multi-loop wsloop must be refused as busy, like any other
//! busy port. With `threads > 1` every listener sets SO_REUSEPORT, and Linux lets a second
//! process (same user) join that port silently: the kernel then splits connections
//! between two unrelated servers. Only `Config::reuse_port` should allow that.

use wsloop::apps::echo::Echo;
use wsloop::{Config, Server};

fn config(listen: std::net::SocketAddr, threads: usize) -> Config {
    Config {
        listen,
        threads,
        handle_signals: false,
        ..Config::default()
    }
}

#[test]
fn second_multi_loop_server_on_a_busy_port_is_refused() {
    let first = Server::bind(config("127.0.0.1:0".parse().unwrap(), 2), Echo::default())
        .expect("first bind");
    let addr = first.local_addr();
    let second = Server::bind(config(addr, 2), Echo::default());
    let err = second.err().expect(
        "a second server (reuse_port off) bound a port the first still listens on; \
         connections would be split between them",
    );
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    drop(first);
}

#[test]
fn reuse_port_still_lets_two_servers_share_on_purpose() {
    let mut c = config("127.0.0.1:0".parse().unwrap(), 2);
    c.reuse_port = true;
    let first = Server::bind(c.clone(), Echo::default()).expect("first bind");
    let mut c2 = c;
    c2.listen = first.local_addr();
    Server::bind(c2, Echo::default()).expect("reuse_port: second bind allowed");
}

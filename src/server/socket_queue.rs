//! What the kernel still holds for the peer: bytes written by us (the kernel took them)
//! but not yet acknowledged by the client. A large response can sit there for seconds
//! after the loop has handed over its last byte; deadlines that blame the client for
//! silence must not run while it is still receiving.

use std::os::fd::AsRawFd;

use mio::net::TcpStream;

/// Bytes in the socket's send queue (`SIOCOUTQ`), or `None` if the kernel won't say.
pub fn unsent_bytes(stream: &TcpStream) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: `TIOCOUTQ` (alias `SIOCOUTQ` for sockets) writes exactly one `c_int` through
    // the pointer, which points to a live, aligned `c_int` on our stack; the descriptor
    // is valid for the duration of the call because `stream` is borrowed.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0 && n >= 0).then_some(n as u32)
}

/// Whether the client is still receiving an earlier response: bytes are queued, and
/// fewer than at the last look (`before`, `u32::MAX` for the first look), so they move.
/// Returns the bytes queued now if so.
pub fn still_receiving(stream: &TcpStream, before: u32) -> Option<u32> {
    unsent_bytes(stream).filter(|&q| q > 0 && q < before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Exercises the `unsafe` ioctl: bytes written to a peer that does not read are
    /// reported as queued, and none once the peer has read (and acknowledged) them all.
    #[test]
    fn queued_bytes_are_reported_until_the_peer_reads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut server = TcpStream::from_std(server);
        let data = vec![7u8; 1 << 20];
        let mut written = 0;
        while written < data.len() {
            match server.write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(written > 0);
        let queued = unsent_bytes(&server).expect("SIOCOUTQ on a TCP socket");
        assert!(
            queued > 0,
            "nothing queued after writing {written} bytes unread"
        );
        assert!(still_receiving(&server, u32::MAX).is_some());
        let mut got = vec![0u8; written];
        client.read_exact(&mut got).unwrap();
        // The ACKs are in flight on loopback; bounded wait for the queue to empty.
        for _ in 0..200 {
            if unsent_bytes(&server) == Some(0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(unsent_bytes(&server), Some(0));
        assert!(still_receiving(&server, u32::MAX).is_none());
    }
}

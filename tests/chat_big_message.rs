//! One chat message bigger than `--max-backpressure` must not let its sender empty the
//! room: every subscriber would still have most of it unsent when the next message comes
//! (no client reads megabytes instantly), so `publish_frame` would close them all with
//! 1008 as slow. The chat refuses such a message with 1009 to its sender instead, and the
//! readers stay. (Found by a newcomer's attack: an 8 MiB message then a small one.)

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_message_bigger_than_the_per_reader_buffer_closes_its_sender_not_the_room() {
    let server = ServerProc::start("chat", &["--threads", "1"]);
    let mut reader = raw_ws(server.addr);
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(read_frame(&mut reader).2, b"user1 come in!");
    let mut publisher = raw_ws(server.addr);
    publisher
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(read_frame(&mut reader).2, b"user2 come in!");
    assert_eq!(read_frame(&mut publisher).2, b"user2 come in!");

    // 8 MiB: half the default message limit, eight times the backpressure limit.
    let big = vec![b'a'; 8 << 20];
    let mut bytes = text_frame(&big);
    bytes.extend_from_slice(&text_frame(b"small"));
    let sending = send_in_background(&publisher, bytes);
    let (_, opcode, payload) = read_frame(&mut publisher);
    assert_eq!(opcode, 8, "the sender is closed");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    let _ = sending.join();
    drop(publisher);
    // The reader saw neither message and is still in the room.
    assert_eq!(read_frame(&mut reader).2, b"user2 left");
    let mut other = raw_ws(server.addr);
    other
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(read_frame(&mut reader).2, b"user3 come in!");
    assert_eq!(read_frame(&mut other).2, b"user3 come in!");
}

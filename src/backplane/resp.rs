//! The RESP3 side of the Redis link: commands out, replies and pushes in.
//!
//! Decoding uses the `redis-protocol` crate (`resp3::decode::complete::decode_range`), which
//! returns ranges into our read buffer: no allocation per frame, and "need more bytes" on a
//! partial frame. Commands are arrays of bulk strings, written here straight into the
//! writer's batch buffer so a publish costs no frame object.
//!
//! Only RESP3 is spoken (`HELLO 3`, Redis 6 or newer): on a RESP3 connection a subscribed
//! client may still run ordinary commands, so one connection carries both the subscriptions
//! and this instance's publishes (one FIFO: order per publisher holds by construction), and
//! pushes (`>`) are told apart from replies by type rather than by guessing.

use redis_protocol::resp3::decode::complete::decode_range;
use redis_protocol::resp3::types::RangeFrame;

use super::envelope::Header;

/// Appends one command (an array of bulk strings) to `out`.
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_len(out, b'*', args.len());
    for arg in args {
        push_bulk(out, &[arg]);
    }
}

/// Appends `PUBLISH <prefix><topic> <header><payload>` to `out`, the message argument built in
/// place from its parts.
pub fn push_publish(out: &mut Vec<u8>, prefix: &str, topic: &str, header: &Header, payload: &[u8]) {
    push_len(out, b'*', 3);
    push_bulk(out, &[b"PUBLISH"]);
    push_bulk(out, &[prefix.as_bytes(), topic.as_bytes()]);
    push_len(out, b'$', super::envelope::HEADER_LEN + payload.len());
    header.write_to(out);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

fn push_len(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    push_len(out, b'$', parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// What one frame from Redis means to the backplane.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A pub/sub message push: `> message <channel> <data>`.
    Message {
        /// Full channel name, prefix included.
        channel: &'a [u8],
        /// The message bytes (an envelope, if a wsloop instance sent it).
        data: &'a [u8],
    },
    /// A `subscribe` / `unsubscribe` confirmation push; the number of channels this
    /// connection is now subscribed to.
    SubscriptionCount(i64),
    /// An error reply (`-ERR ...` or a blob error), as text for the log.
    Error(String),
    /// Anything else: the `HELLO` map, `PUBLISH`'s receiver count, `PONG`.
    Other,
}

/// Redis sent bytes that are not RESP3.
#[derive(Debug)]
pub struct ProtocolError(pub String);

/// Decodes the first frame of `buf`: `Ok(None)` when the frame is not complete yet,
/// otherwise the frame's meaning and how many bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Inbound<'_>, usize)>, ProtocolError> {
    let (frame, used) = match decode_range(buf) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ProtocolError(e.to_string())),
    };
    let bytes = |f: &RangeFrame| match f {
        RangeFrame::BlobString { data, .. } | RangeFrame::SimpleString { data, .. } => {
            Some(&buf[data.0..data.1])
        }
        _ => None,
    };
    let meaning = match &frame {
        RangeFrame::Push { data, .. } => match (data.first().and_then(bytes), data.len()) {
            (Some(b"message"), 3) => match (bytes(&data[1]), bytes(&data[2])) {
                (Some(channel), Some(data)) => Inbound::Message { channel, data },
                _ => Inbound::Other,
            },
            (Some(b"subscribe" | b"unsubscribe"), 3) => match data[2] {
                RangeFrame::Number { data: n, .. } => Inbound::SubscriptionCount(n),
                _ => Inbound::Other,
            },
            _ => Inbound::Other,
        },
        RangeFrame::SimpleError { data, .. } | RangeFrame::BlobError { data, .. } => {
            Inbound::Error(String::from_utf8_lossy(&buf[data.0..data.1]).into_owned())
        }
        _ => Inbound::Other,
    };
    Ok(Some((meaning, used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::envelope;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        push_command(&mut out, &[b"SUBSCRIBE", b"wsloop:a", b""]);
        assert_eq!(
            out,
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$8\r\nwsloop:a\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn publish_carries_envelope_and_payload() {
        let mut out = Vec::new();
        let h = Header {
            instance: 7,
            seq: 9,
            text: true,
        };
        push_publish(&mut out, "wsloop:", "room", &h, b"hi\r\n");
        let mut expect = b"*3\r\n$7\r\nPUBLISH\r\n$11\r\nwsloop:room\r\n$24\r\n".to_vec();
        h.write_to(&mut expect);
        expect.extend_from_slice(b"hi\r\n\r\n");
        assert_eq!(out, expect);
        // What Redis would push back for it decodes to the same envelope.
        let mut push = b">3\r\n$7\r\nmessage\r\n$11\r\nwsloop:room\r\n$24\r\n".to_vec();
        push.extend_from_slice(&expect[expect.len() - 26..]);
        match decode(&push).unwrap() {
            Some((Inbound::Message { channel, data }, used)) => {
                assert_eq!(used, push.len());
                assert_eq!(channel, b"wsloop:room");
                assert_eq!(envelope::decode(data).unwrap(), (h, &b"hi\r\n"[..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partial_frames_need_more() {
        let push = b">3\r\n$9\r\nsubscribe\r\n$8\r\nwsloop:a\r\n:2\r\n";
        for cut in 0..push.len() {
            assert!(decode(&push[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (got, used) = decode(push).unwrap().unwrap();
        assert_eq!((got, used), (Inbound::SubscriptionCount(2), push.len()));
    }

    #[test]
    fn errors_replies_and_garbage() {
        let (got, _) = decode(b"-ERR unknown command 'HELLO'\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(got, Inbound::Error("ERR unknown command 'HELLO'".into()));
        assert_eq!(decode(b":1\r\n").unwrap().unwrap(), (Inbound::Other, 4));
        assert_eq!(decode(b"+PONG\r\n").unwrap().unwrap(), (Inbound::Other, 7));
        assert!(decode(b"?what\r\n").is_err());
    }
}

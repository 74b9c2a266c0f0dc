//! permessage-deflate negotiation (RFC 7692 §5, §7.1) over `Sec-WebSocket-Extensions`.
//!
//! Offers are read in order across all header lines (RFC 6455 §9.1 grammar: a comma
//! separated list of `token *( ";" param )`, `param = token [ "=" (token / quoted-string) ]`,
//! RFC 7230 §3.2.6). The first `permessage-deflate` offer that is valid and acceptable wins;
//! an invalid one is declined and the next considered, never repaired. Parsing allocates
//! nothing and is linear in the header bytes (bounded by the request head limit).

use super::{usable_window_bits, DeflateConfig};
use crate::protocol::http1::Request;

/// The permessage-deflate parameters in force on a connection, exactly as answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The server compresses each message from a fresh state (shared compressor).
    pub server_no_context_takeover: bool,
    /// The client compresses each message from a fresh state (shared inflater).
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N` as answered (9..=15); `None`: not answered, window 15.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits=N` as answered (8..=15: 8 only when the client offered 8);
    /// `None`: not answered (the client
    /// did not offer the parameter, or may use 15), window 15.
    pub client_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The LZ77 window (log2 bytes) the server compresses with.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// The largest window (log2 bytes) the client may compress with: what an inflater kept
    /// across messages needs.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(15)
    }

    /// Appends `Sec-WebSocket-Extensions: permessage-deflate; ...\r\n` with exactly the
    /// agreed parameters, for the 101 response (RFC 7692 §5).
    pub fn write_response_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate");
        if self.server_no_context_takeover {
            out.extend_from_slice(b"; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.extend_from_slice(b"; client_no_context_takeover");
        }
        let mut bits = |name: &[u8], v: Option<u8>| {
            if let Some(v) = v {
                out.extend_from_slice(b"; ");
                out.extend_from_slice(name);
                out.push(b'=');
                if v >= 10 {
                    out.push(b'1');
                }
                out.push(b'0' + v % 10);
            }
        };
        bits(b"server_max_window_bits", self.server_max_window_bits);
        bits(b"client_max_window_bits", self.client_max_window_bits);
        out.extend_from_slice(b"\r\n");
    }
}

/// Negotiates from the request's `Sec-WebSocket-Extensions` lines, in order.
pub fn negotiate_request(req: &Request<'_>, cfg: &DeflateConfig) -> Option<Agreed> {
    negotiate(
        req.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| *v),
        cfg,
    )
}

/// Picks the first acceptable `permessage-deflate` offer among the `Sec-WebSocket-Extensions`
/// header values (each may hold several comma-separated offers) and returns what to answer,
/// or `None` to answer without the extension.
///
/// An offer is declined (RFC 7692 §7.1) if it has a parameter twice, an unknown parameter, a
/// value on `server_no_context_takeover` / `client_no_context_takeover`, no value on
/// `server_max_window_bits`, a window-bits value that is not 8..=15 in decimal without
/// leading zeros, or malformed syntax. `server_max_window_bits=8` is also declined: zlib
/// cannot compress with an 8-bit window, and answering 9 would break the client's limit.
pub fn negotiate<'a, I>(values: I, cfg: &DeflateConfig) -> Option<Agreed>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    for value in values {
        let mut p = Parser { s: value, i: 0 };
        loop {
            p.ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    // Empty list elements are allowed (RFC 7230 §7).
                    p.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            if let Ok(Some(offer)) = p.extension() {
                if let Some(agreed) = accept(&offer, cfg) {
                    return Some(agreed);
                }
            }
            p.skip_element();
        }
    }
    None
}

/// One `permessage-deflate` offer's parameters as given.
#[derive(Debug, Default)]
struct Offer {
    /// A parameter was repeated, unknown, or had an invalid value.
    invalid: bool,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// A parameter value, unescaped; long values are only remembered as invalid.
#[derive(Debug, Clone, Copy)]
enum Value {
    Absent,
    Short([u8; 2], u8),
    TooLong,
}

impl Value {
    /// Window bits: "8" … "15", decimal without leading zeros (RFC 7692 §7.1.2.1).
    fn window_bits(self) -> Option<u8> {
        match self {
            Value::Short([d, _], 1) if (b'8'..=b'9').contains(&d) => Some(d - b'0'),
            Value::Short([b'1', d], 2) if (b'0'..=b'5').contains(&d) => Some(10 + d - b'0'),
            _ => None,
        }
    }
}

impl Offer {
    fn param(&mut self, name: &[u8], value: Value) {
        let ok = match name {
            b"server_no_context_takeover" => {
                !std::mem::replace(&mut self.server_no_context_takeover, true)
                    && matches!(value, Value::Absent)
            }
            b"client_no_context_takeover" => {
                !std::mem::replace(&mut self.client_no_context_takeover, true)
                    && matches!(value, Value::Absent)
            }
            b"server_max_window_bits" => {
                let first = self.server_max_window_bits.is_none();
                let bits = value.window_bits();
                self.server_max_window_bits = bits.or(Some(0));
                first && bits.is_some()
            }
            b"client_max_window_bits" => {
                let first = self.client_max_window_bits.is_none();
                match value {
                    Value::Absent => {
                        self.client_max_window_bits = Some(None);
                        first
                    }
                    v => {
                        let bits = v.window_bits();
                        self.client_max_window_bits = Some(bits.or(Some(0)));
                        first && bits.is_some()
                    }
                }
            }
            _ => false,
        };
        self.invalid |= !ok;
    }
}

/// The answer to one valid offer, or `None` to decline it.
fn accept(offer: &Offer, cfg: &DeflateConfig) -> Option<Agreed> {
    if offer.invalid {
        return None;
    }
    let cfg_server = usable_window_bits(cfg.server_max_window_bits);
    let cfg_client = usable_window_bits(cfg.client_max_window_bits);
    // The client's server_max_window_bits is a limit the server must honour (§7.1.2.1).
    let server_max_window_bits = match offer.server_max_window_bits {
        Some(8) => return None,
        Some(n) => Some(n.min(cfg_server)),
        None if cfg_server < 15 => Some(cfg_server),
        None => None,
    };
    // client_max_window_bits may only be answered if offered (§7.1.2.2); an offered value
    // is the client's own limit, which we may lower further but never raise: an offered 8
    // is answered 8 (our inflater, at least 9 bits, reads what an 8-bit window produces).
    let client_max_window_bits = match offer.client_max_window_bits {
        None => None,
        Some(Some(offered)) => Some(offered.min(cfg_client)),
        Some(None) => (cfg_client < 15).then_some(cfg_client),
    };
    Some(Agreed {
        server_no_context_takeover: offer.server_no_context_takeover
            || cfg.server_no_context_takeover,
        // Answered when the client said it will not use takeover anyway, so the server
        // knows for certain it may reset the inflater per message.
        client_no_context_takeover: offer.client_no_context_takeover
            || cfg.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}

/// A cursor over one header value.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// RFC 7230 §3.2.6 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<&[u8], ()> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(());
        }
        Ok(&self.s[start..self.i])
    }

    /// A quoted-string, unescaped (RFC 7230 §3.2.6); the opening quote is next.
    fn quoted(&mut self) -> Result<Value, ()> {
        self.i += 1;
        let mut buf = [0u8; 2];
        let mut len = 0usize;
        loop {
            let b = match self.peek() {
                None => return Err(()),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || b >= 0x20 && b != 0x7f => b,
                        _ => return Err(()),
                    }
                }
                Some(b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => b,
                Some(_) => return Err(()),
            };
            self.i += 1;
            if len < buf.len() {
                buf[len] = b;
            }
            len += 1;
        }
        // After unescaping the value must be a token (RFC 6455 §9.1).
        let v = &buf[..len.min(2)];
        if len == 0 || !v.iter().all(|&b| is_tchar(b)) {
            return Ok(Value::TooLong);
        }
        Ok(if len > 2 {
            Value::TooLong
        } else {
            Value::Short(buf, len as u8)
        })
    }

    /// One list element: `Ok(Some)` for a syntactically valid `permessage-deflate` offer,
    /// `Ok(None)` for another extension, `Err` for bad syntax. Stops at `,` or the end.
    fn extension(&mut self) -> Result<Option<Offer>, ()> {
        let ours = self.token()? == b"permessage-deflate";
        let mut offer = Offer::default();
        loop {
            self.ows();
            match self.peek() {
                None | Some(b',') => return Ok(ours.then_some(offer)),
                Some(b';') => self.i += 1,
                Some(_) => return Err(()),
            }
            self.ows();
            let name_start = self.i;
            self.token()?;
            let name_end = self.i;
            self.ows();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.ows();
                if self.peek() == Some(b'"') {
                    self.quoted()?
                } else {
                    let t = self.token()?;
                    match t.len() {
                        1 => Value::Short([t[0], 0], 1),
                        2 => Value::Short([t[0], t[1]], 2),
                        _ => Value::TooLong,
                    }
                }
            } else {
                Value::Absent
            };
            if ours {
                offer.param(&self.s[name_start..name_end], value);
            }
        }
    }

    /// Moves past the next `,` that is outside a quoted string (or to the end).
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'\\' if quoted => self.i += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..DeflateConfig::default()
        }
    }

    fn neg(values: &[&str], cfg: &DeflateConfig) -> Option<String> {
        negotiate(values.iter().map(|v| v.as_bytes()), cfg).map(|a| {
            let mut out = Vec::new();
            a.write_response_header(&mut out);
            let s = String::from_utf8(out).unwrap();
            s.strip_prefix("Sec-WebSocket-Extensions: ")
                .unwrap()
                .strip_suffix("\r\n")
                .unwrap()
                .to_owned()
        })
    }

    fn one(v: &str) -> Option<String> {
        neg(&[v], &cfg())
    }

    const PMD: &str = "permessage-deflate";

    #[test]
    fn plain_offer_and_browser_offer() {
        assert_eq!(one("permessage-deflate").as_deref(), Some(PMD));
        // Chromium / Firefox.
        assert_eq!(
            one("permessage-deflate; client_max_window_bits").as_deref(),
            Some(PMD)
        );
        assert_eq!(one("x-webkit-deflate-frame"), None);
        assert_eq!(one(""), None);
    }

    #[test]
    fn every_parameter_echoed_in_force() {
        assert_eq!(
            one("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
                .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            one("permessage-deflate; server_max_window_bits=10").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            one("permessage-deflate; client_max_window_bits=9").as_deref(),
            Some("permessage-deflate; client_max_window_bits=9")
        );
    }

    #[test]
    fn server_config_forces_and_requests() {
        let c = DeflateConfig {
            server_max_window_bits: 12,
            client_max_window_bits: 10,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..cfg()
        };
        // Without client_max_window_bits in the offer the server must not send it.
        assert_eq!(
            neg(&[PMD], &c).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12")
        );
        // With it (no value), the server picks its own limit.
        assert_eq!(
            neg(&["permessage-deflate; client_max_window_bits"], &c).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10")
        );
        // A client limit below the server's stays; above, the server's applies.
        let a = negotiate(
            [&b"permessage-deflate; client_max_window_bits=9; server_max_window_bits=14"[..]],
            &c,
        )
        .unwrap();
        assert_eq!(
            (a.client_max_window_bits, a.server_max_window_bits),
            (Some(9), Some(12))
        );
        assert_eq!((a.client_window_bits(), a.server_window_bits()), (9, 12));
    }

    #[test]
    fn requested_server_window_is_honoured() {
        for n in 9..=15u8 {
            let a = negotiate(
                [format!("permessage-deflate; server_max_window_bits={n}").as_bytes()],
                &cfg(),
            )
            .unwrap();
            assert_eq!(a.server_max_window_bits, Some(n));
            assert!(a.server_window_bits() <= n);
        }
        // 8 cannot be honoured by zlib: declined, the next offer wins.
        assert_eq!(
            one("permessage-deflate; server_max_window_bits=8, permessage-deflate").as_deref(),
            Some(PMD)
        );
    }

    #[test]
    fn window_bits_eight_in_config_acts_as_nine() {
        let c = DeflateConfig {
            server_max_window_bits: 8,
            client_max_window_bits: 8,
            ..cfg()
        };
        assert_eq!(
            neg(&["permessage-deflate; client_max_window_bits"], &c).as_deref(),
            Some("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9")
        );
        // A client offering an 8-bit window of its own is fine: the answer never exceeds
        // the offered value (§7.1.2.2), and we inflate with 9.
        let a = negotiate(
            [&b"permessage-deflate; client_max_window_bits=8"[..]],
            &cfg(),
        )
        .unwrap();
        assert_eq!(a.client_max_window_bits, Some(8));
        let mut line = Vec::new();
        a.write_response_header(&mut line);
        assert!(line.ends_with(b"; client_max_window_bits=8\r\n"));
        let mut inf = crate::protocol::deflate::Inflater::dedicated(a.client_window_bits());
        let mut out = Vec::new();
        // "Hello" (RFC 7692 §7.2.3.1) inflates with the dedicated inflater.
        assert!(inf
            .inflate(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                100,
                &mut out
            )
            .is_ok());
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_accepted() {
        let bad = [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1O",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=100000000000000000009",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; unknown_param",
            "permessage-deflate; mux",
            "permessage-deflate; Server_No_Context_Takeover",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=10 10",
            "permessage-deflate server_no_context_takeover",
        ];
        for b in bad {
            assert_eq!(one(b), None, "{b}");
            // The following offer is still considered, in the same line or the next.
            let next = "permessage-deflate; client_no_context_takeover";
            let want = Some("permessage-deflate; client_no_context_takeover");
            if !b.contains("=\"10") {
                // (An unterminated quoted string runs to the end of its line.)
                assert_eq!(one(&format!("{b}, {next}")).as_deref(), want, "{b}");
            }
            assert_eq!(neg(&[b, next], &cfg()).as_deref(), want, "{b}");
        }
    }

    #[test]
    fn quoted_values_and_whitespace() {
        assert_eq!(
            one("permessage-deflate ;\tserver_max_window_bits = \"11\" ; client_max_window_bits=\"1\\2\"")
                .as_deref(),
            Some("permessage-deflate; server_max_window_bits=11; client_max_window_bits=12")
        );
        // A comma inside a quoted string of another extension does not split the list.
        assert_eq!(
            one("foo; bar=\"a, permessage-deflate\", permessage-deflate; server_max_window_bits=9")
                .as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        // ... nor inside a declined offer of ours.
        assert_eq!(
            one("permessage-deflate; x=\"a,permessage-deflate\", permessage-deflate").as_deref(),
            Some(PMD)
        );
        // Empty list elements.
        assert_eq!(one(" , ,permessage-deflate ,").as_deref(), Some(PMD));
    }

    #[test]
    fn first_acceptable_offer_in_order_wins() {
        let v = "permessage-deflate; server_max_window_bits=10, permessage-deflate";
        assert_eq!(
            one(v).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            neg(
                &["foo", "permessage-deflate; server_max_window_bits=9", PMD],
                &cfg()
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
    }

    #[test]
    fn from_a_request() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Extensions: foo\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let req = crate::protocol::http1::parse_request(head).unwrap();
        let a = negotiate_request(&req, &DeflateConfig::default()).unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
        assert_eq!(a.client_max_window_bits, None);
    }
}

//! The Redis backplane's counters in the exposition (only when the server has one):
//! `wsloop_backplane_*`, process-wide (the backplane is one per process, not per loop).

use super::render::{header, sample, PREFIX};
use crate::backplane::BackplaneStats;

/// Appends the `wsloop_backplane_*` families for `s` to `out`.
pub fn render_backplane(s: &BackplaneStats, out: &mut String) {
    let families: [(&str, &str, &str, u64); 15] = [
        ("backplane_up", "gauge", "1 while a Redis connection is up (answered HELLO), else 0.", u64::from(s.connected)),
        ("backplane_connects_total", "counter", "Redis connections established, the first included.", s.connects_total),
        ("backplane_reconnects_total", "counter", "Redis connections established after a lost one.", s.reconnects_total),
        ("backplane_published_total", "counter", "Local publishes Redis accepted for the other instances (answered with a receiver count).", s.published_total),
        ("backplane_received_total", "counter", "Messages from other instances delivered locally.", s.received_total),
        ("backplane_dropped_total", "counter", "Local publishes that did not reach the other instances (Redis away, queue full, too large, refused, or unanswered when the link was lost); local delivery unaffected.", s.dropped_total),
        ("backplane_refused_total", "counter", "Local publishes Redis answered with an error (e.g. NOPERM); also in dropped_total.", s.refused_total),
        ("backplane_own_echoes_total", "counter", "This instance's own messages Redis sent back, dropped.", s.own_echoes_total),
        ("backplane_out_of_order_total", "counter", "Messages older than the last from their publisher (forged, replayed or a confused Redis), delivered and counted.", s.out_of_order_total),
        ("backplane_duplicates_total", "counter", "Exact repeats of a recent message of the same publisher, dropped.", s.duplicates_total),
        ("backplane_malformed_total", "counter", "Messages on wsloop channels that are not wsloop envelopes, or text that is not UTF-8, dropped.", s.malformed_total),
        ("backplane_oversize_total", "counter", "Messages from other instances over this instance's payload limit, dropped unbuffered.", s.oversize_total),
        ("backplane_protocol_errors_total", "counter", "Redis links given up for bytes that are not RESP3 or a frame over the decoder's limits.", s.protocol_errors_total),
        ("backplane_subscriptions", "gauge", "Redis channels subscribed on the live connection (0 while Redis is away).", s.subscriptions),
        ("backplane_topics", "gauge", "Topics with at least one local subscriber (the channels wanted).", s.topics),
    ];
    for (name, kind, help, v) in families {
        header(out, PREFIX, name, kind, help);
        sample(out, PREFIX, name, &[], v);
    }
}

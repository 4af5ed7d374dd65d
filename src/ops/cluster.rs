//! The cluster's part of `/status` and `/metrics`: this instance's name, whether Redis is
//! reachable and since when, and what was shared.

use serde_json::{json, Value};

use super::metrics::Exposition;
use crate::cluster::ClusterStatus;

/// `/status` `cluster`: `null` when nothing is shared.
pub fn status_json(status: Option<&ClusterStatus>) -> Value {
    let Some(c) = status else {
        return Value::Null;
    };
    json!({
        "node": c.node,
        "redis": if c.redis_up { "up" } else { "down" },
        "since": humantime::format_rfc3339_seconds(c.since).to_string(),
        "last_error": c.last_error,
        "imported": c.imported,
        "written": c.written,
        "replays_refused": c.replays_refused,
        "counted_calls": c.counted_calls,
    })
}

/// The cluster's metric families (none when nothing is shared).
pub fn write_metrics(e: &mut Exposition, status: Option<&ClusterStatus>) {
    let Some(c) = status else {
        return;
    };
    let node = [("node", c.node.as_str())];
    let families: [(&str, &str, &str, f64); 4] = [
        (
            "trunkgate_cluster_redis_up",
            "gauge",
            "1 while Redis is reachable (shared state), 0 while the instance serves alone.",
            f64::from(u8::from(c.redis_up)),
        ),
        (
            "trunkgate_cluster_imported_total",
            "counter",
            "Facts (registrations, bans) taken from the other instances.",
            c.imported as f64,
        ),
        (
            "trunkgate_cluster_written_total",
            "counter",
            "Facts written for the other instances.",
            c.written as f64,
        ),
        (
            "trunkgate_cluster_replays_refused_total",
            "counter",
            "INVITEs refused because another instance had seen their nonce count.",
            c.replays_refused as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        e.family(name, kind, help);
        e.sample(name, &node, value);
    }
}

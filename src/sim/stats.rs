//! Simulator-wide counters shown by the control API's `GET /stats`: requests by method and
//! path template, refusals, and notifications sent or dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::state::lock;

#[derive(Debug, Default)]
pub struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    pub unauthorized: AtomicU64,
    pub unavailable_sent: AtomicU64,
    pub bad_requests: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_dropped: AtomicU64,
    pub ws_connections: AtomicU64,
    pub ws_refused: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// `"{METHOD} {path template}"` → count, e.g. `"PUT /rest/version/1/user/{user}/subscription/{id}"`.
    pub requests: BTreeMap<String, u64>,
    pub unauthorized: u64,
    pub unavailable_sent: u64,
    pub bad_requests: u64,
    pub notifications_sent: u64,
    pub notifications_dropped: u64,
    pub ws_connections: u64,
    pub ws_refused: u64,
}

impl Stats {
    pub fn count_request(&self, method: &str, path: &str) {
        let key = format!("{method} {}", path_template(path));
        *lock(&self.requests).entry(key).or_insert(0) += 1;
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn view(&self) -> StatsView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsView {
            requests: lock(&self.requests).clone(),
            unauthorized: get(&self.unauthorized),
            unavailable_sent: get(&self.unavailable_sent),
            bad_requests: get(&self.bad_requests),
            notifications_sent: get(&self.notifications_sent),
            notifications_dropped: get(&self.notifications_dropped),
            ws_connections: get(&self.ws_connections),
            ws_refused: get(&self.ws_refused),
        }
    }
}

/// Replaces the variable segments of a REST path (user, subscription, session, channel ids)
/// with placeholders so the counters stay few.
pub fn path_template(path: &str) -> String {
    let mut out = Vec::new();
    let mut prev = "";
    for seg in path.split('/') {
        let templ = match prev {
            "user" => "{user}",
            "subscription" => "{id}",
            "callSessions" => "{session}",
            "websocket" => "{channel}",
            _ => seg,
        };
        out.push(templ);
        prev = seg;
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(
            path_template("/rest/version/1/user/gw/subscription/abc"),
            "/rest/version/1/user/{user}/subscription/{id}"
        );
        assert_eq!(
            path_template("/rest/version/1/user/gw/callControl/callSessions/S1"),
            "/rest/version/1/user/{user}/callControl/callSessions/{session}"
        );
        assert_eq!(
            path_template("/rest/version/1/user/gw/callControl"),
            "/rest/version/1/user/{user}/callControl"
        );
    }
}

//! Faults a test switches on through the control API (`POST /faults`): the armed state, and
//! the request that changes it. The one-shot actions (drop the WebSocket, send `gone`) are
//! carried out by `control`; this module only holds what later requests consult.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What is armed now.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// WebSocket upgrades are answered 503 until then.
    pub refuse_ws_until: Option<Instant>,
    /// The next this-many subscribe/refresh requests get 503.
    pub fail_subscribe: u32,
    /// `retryAfter` (ms) in those 503 bodies.
    pub fail_subscribe_retry_after_ms: u64,
    /// Send the delay as an HTTP `Retry-After` header (seconds, rounded up) instead of the body.
    pub fail_subscribe_header: bool,
    /// Every refresh (PUT subscription) is answered this much later.
    pub refresh_delay: Duration,
    /// Every notification is sent twice with the same `eventId`.
    pub duplicate_notifications: bool,
    /// The next `startCallUpdate` is refused with statusCode 49.
    pub glare_next_update: bool,
    pub glare_retry_after_ms: u64,
}

/// `POST /faults`: every field optional; absent fields leave the fault as it is.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultRequest {
    /// Drop live WebSockets now, abnormally (no close frame).
    pub drop_websocket: Option<bool>,
    /// With or without `drop_websocket`: refuse WebSocket upgrades (HTTP 503) for this long.
    pub refuse_ws_ms: Option<u64>,
    pub fail_subscribe: Option<u32>,
    pub fail_subscribe_retry_after_ms: Option<u64>,
    pub fail_subscribe_header: Option<bool>,
    pub refresh_delay_ms: Option<u64>,
    /// Send `gone` on the live subscriptions and delete them.
    pub send_gone: Option<bool>,
    /// `retryAfter` (ms) in the `gone` notification.
    pub gone_retry_after_ms: Option<u64>,
    pub duplicate_notifications: Option<bool>,
    pub glare_next_update: Option<bool>,
    pub glare_retry_after_ms: Option<u64>,
    /// Limit `drop_websocket` and `send_gone` to this user's subscriptions.
    pub username: Option<String>,
}

/// What `GET /faults` and `POST /faults` report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FaultsView {
    pub refuse_ws_ms_left: u64,
    pub fail_subscribe: u32,
    pub fail_subscribe_retry_after_ms: u64,
    pub fail_subscribe_header: bool,
    pub refresh_delay_ms: u64,
    pub duplicate_notifications: bool,
    pub glare_next_update: bool,
    pub glare_retry_after_ms: u64,
}

impl Faults {
    /// Arms the persistent parts of a request (the one-shot actions are the caller's).
    pub fn apply(&mut self, r: &FaultRequest, now: Instant) {
        if let Some(ms) = r.refuse_ws_ms {
            self.refuse_ws_until = (ms > 0).then(|| now + Duration::from_millis(ms));
        }
        if let Some(n) = r.fail_subscribe {
            self.fail_subscribe = n;
        }
        if let Some(ms) = r.fail_subscribe_retry_after_ms {
            self.fail_subscribe_retry_after_ms = ms;
        }
        if let Some(h) = r.fail_subscribe_header {
            self.fail_subscribe_header = h;
        }
        if let Some(ms) = r.refresh_delay_ms {
            self.refresh_delay = Duration::from_millis(ms);
        }
        if let Some(d) = r.duplicate_notifications {
            self.duplicate_notifications = d;
        }
        if let Some(g) = r.glare_next_update {
            self.glare_next_update = g;
        }
        if let Some(ms) = r.glare_retry_after_ms {
            self.glare_retry_after_ms = ms;
        }
    }

    pub fn ws_refused(&self, now: Instant) -> bool {
        self.refuse_ws_until.is_some_and(|t| now < t)
    }

    /// Consumes one armed subscribe failure: `Some((retry_after_ms, as_header))`.
    pub fn take_subscribe_failure(&mut self) -> Option<(u64, bool)> {
        if self.fail_subscribe == 0 {
            return None;
        }
        self.fail_subscribe -= 1;
        Some((
            self.fail_subscribe_retry_after_ms,
            self.fail_subscribe_header,
        ))
    }

    /// Consumes the armed glare: `Some(retry_after_ms)`.
    pub fn take_glare(&mut self) -> Option<u64> {
        if !self.glare_next_update {
            return None;
        }
        self.glare_next_update = false;
        Some(self.glare_retry_after_ms)
    }

    pub fn view(&self, now: Instant) -> FaultsView {
        FaultsView {
            refuse_ws_ms_left: self
                .refuse_ws_until
                .map(|t| t.saturating_duration_since(now).as_millis() as u64)
                .unwrap_or(0),
            fail_subscribe: self.fail_subscribe,
            fail_subscribe_retry_after_ms: self.fail_subscribe_retry_after_ms,
            fail_subscribe_header: self.fail_subscribe_header,
            refresh_delay_ms: self.refresh_delay.as_millis() as u64,
            duplicate_notifications: self.duplicate_notifications,
            glare_next_update: self.glare_next_update,
            glare_retry_after_ms: self.glare_retry_after_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_failures_are_counted_down() {
        let now = Instant::now();
        let mut f = Faults::default();
        let req: FaultRequest =
            serde_json::from_str(r#"{"fail_subscribe":2,"fail_subscribe_retry_after_ms":1500}"#)
                .unwrap();
        f.apply(&req, now);
        assert_eq!(f.take_subscribe_failure(), Some((1500, false)));
        assert_eq!(f.take_subscribe_failure(), Some((1500, false)));
        assert_eq!(f.take_subscribe_failure(), None);
    }

    #[test]
    fn glare_is_one_shot_and_ws_refusal_expires() {
        let now = Instant::now();
        let mut f = Faults::default();
        f.apply(
            &FaultRequest {
                glare_next_update: Some(true),
                glare_retry_after_ms: Some(250),
                refuse_ws_ms: Some(100),
                ..FaultRequest::default()
            },
            now,
        );
        assert_eq!(f.take_glare(), Some(250));
        assert_eq!(f.take_glare(), None);
        assert!(f.ws_refused(now));
        assert!(!f.ws_refused(now + Duration::from_millis(101)));
    }

    #[test]
    fn unknown_fault_fields_are_refused() {
        assert!(serde_json::from_str::<FaultRequest>(r#"{"drop_socket":true}"#).is_err());
    }
}

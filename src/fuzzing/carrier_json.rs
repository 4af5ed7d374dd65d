//! Fuzz target `carrier_json`: every carrier wire type (REST bodies, WebSocket frames) and the
//! pure interpretation of notifications; whatever parses must survive serialising and parsing
//! back.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::carrier::events::{classify, CallEvent, Classified, Dedup};
use crate::carrier::lifecycle::{Backoff, Lifecycle, Outcome, Step};
use crate::carrier::protocol::{
    self, CallControlRequest, CallControlRequestBody, CallControlResponseBody,
    CallDispositionRequestBody, ClientPing, ConnAckFrame, ConnCheckFrame, NotificationFrame,
    NotificationMessage, ServerFrame, SubscribeRequestBody, SubscribeResponse,
    SubscribeResponseBody, SubscriptionParams,
};

use super::origin;

/// A body or frame from (or to) the carrier, read as every wire type and as a frame; what
/// parses must serialise and parse back, and notifications must classify sensibly.
pub fn carrier_json(data: &[u8]) {
    // serde_json::Value holds floats, which do not round-trip bit-exactly: parse back only.
    let value = round_trip::<serde_json::Value>(data, false);
    round_trip::<SubscribeRequestBody>(data, true);
    let subscribe = round_trip::<SubscribeResponseBody>(data, true);
    round_trip::<SubscriptionParams>(data, true);
    round_trip::<CallControlRequestBody>(data, true);
    round_trip::<CallControlRequest>(data, true);
    round_trip::<Option<CallControlResponseBody>>(data, true);
    round_trip::<CallDispositionRequestBody>(data, true);
    round_trip::<ClientPing>(data, true);
    round_trip::<ConnCheckFrame>(data, true);
    round_trip::<ConnAckFrame>(data, false);
    let frame = round_trip::<NotificationFrame>(data, true);
    round_trip::<NotificationMessage>(data, true);

    if let Some(v) = &value {
        for envelope in [
            "subscribeResponse",
            "callControlResponse",
            "callDispositionResponse",
        ] {
            let _ = crate::carrier::rest::envelope_fields(v, envelope);
        }
    }
    if let Some(body) = subscribe {
        subscription_outcome(&body.subscribe_response);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = protocol::parse_client_frame(text);
    if let Ok(ServerFrame::Notification(msg)) = protocol::parse_server_frame(text) {
        notification(&msg);
    }
    if let Some(f) = frame {
        notification(&f.notification_message);
    }
}

/// Parses `data` as `T`; when it parses, serialising it and parsing that back must work (and,
/// with `exact`, give the same value).
fn round_trip<T>(data: &[u8], exact: bool) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_slice(data).ok()?;
    let bytes = serde_json::to_vec(&v)
        .unwrap_or_else(|e| panic!("{} does not serialise: {e}: {v:?}", type_name::<T>()));
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}: {}",
            type_name::<T>(),
            String::from_utf8_lossy(&bytes)
        )
    });
    if exact {
        assert_eq!(back, v, "{} changed on the way back", type_name::<T>());
    }
    Some(v)
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
}

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        multiplier: 2.0,
    }
}

/// A subscribe answer through the account's lifecycle, as the account reads it.
fn subscription_outcome(r: &SubscribeResponse) {
    let now = origin();
    let params = r.subscription_params.clone().unwrap_or_default();
    let outcome = if protocol::code::is_success(r.status_code) {
        Outcome::Granted {
            expires: Duration::from_secs(u64::from(params.expires.unwrap_or(3600))),
        }
    } else if r.status_code == protocol::code::UNAVAILABLE {
        Outcome::Overloaded {
            retry_after: r.retry_after.map(Duration::from_millis),
        }
    } else if r.status_code == protocol::code::NO_SUBSCRIPTION {
        Outcome::Gone { retry_after: None }
    } else {
        Outcome::Failed
    };
    let mut lc = Lifecycle::new(now, backoff(), 11);
    assert_eq!(lc.poll(now), Step::Subscribe);
    lc.on_outcome(now, outcome);
    lifecycle_steps(&mut lc, now);
    if let Some(turn) = &params.turn_credentials {
        let urls = [
            "stun:stun.example.com".to_string(),
            "turns:turn.example.com:443".to_string(),
        ];
        let servers = crate::carrier::ice_servers(&urls, Some(turn));
        assert_eq!(servers.len(), 2);
        assert!(servers[0].username.is_none() && servers[0].credential.is_none());
        assert_eq!(servers[1].username.as_deref(), Some(turn.username.as_str()));
    }
}

/// Polls a lifecycle a few times; waits never go back in time.
fn lifecycle_steps(lc: &mut Lifecycle, mut now: Instant) {
    for _ in 0..3 {
        match lc.poll(now) {
            // Not in flight here, so a wait is always a wait into the future.
            Step::Wait(at) => {
                assert!(at > now, "a wait that is already over: {lc:?}");
                now = at;
            }
            Step::Subscribe | Step::Refresh => lc.on_outcome(now, Outcome::Failed),
            Step::Stopped => return,
        }
    }
}

/// A notification as the account handles it: dedup by event id, classify, lifecycle on `gone`.
fn notification(msg: &NotificationMessage) {
    if let Some(id) = &msg.event_id {
        let mut dedup = Dedup::new(2);
        assert!(dedup.first_time(id));
        assert!(!dedup.first_time(id));
    }
    for answered in [false, true] {
        match classify(msg, |_| answered) {
            Classified::Gone { retry_after } => {
                assert_eq!(msg.event_type, "gone");
                let now = origin();
                let mut lc = Lifecycle::new(now, backoff(), 5);
                lc.on_gone(now, retry_after);
                match lc.poll(now) {
                    Step::Subscribe => {
                        assert!(retry_after.unwrap_or_default().is_zero());
                        lc.on_outcome(now, Outcome::Failed);
                    }
                    Step::Wait(at) => assert_eq!(Some(at - now), retry_after),
                    other => panic!("after gone: {other:?}"),
                }
                lifecycle_steps(&mut lc, now);
            }
            Classified::Overridden => assert_eq!(msg.event_type, "websocketOverridden"),
            Classified::IncomingCall(call) => {
                assert_eq!(msg.event_type, "call");
                assert!(!call.session.is_empty());
                assert!(call.offer.is_none_or(|s| !s.trim().is_empty()));
            }
            Classified::ForCall { session, event } => {
                assert!(!session.is_empty());
                // The first answer is `Answered`, every later one `UpdateAnswered`.
                match &event {
                    CallEvent::Answered { .. } => assert!(!answered),
                    CallEvent::UpdateAnswered { .. } => assert!(answered),
                    _ => {}
                }
                match event {
                    CallEvent::Progress { sdp }
                    | CallEvent::Answered { sdp }
                    | CallEvent::UpdateAnswered { sdp }
                    | CallEvent::RemoteUpdate { sdp } => assert!(!sdp.trim().is_empty()),
                    _ => {}
                }
            }
            Classified::Ignored(_) => {}
        }
    }
}

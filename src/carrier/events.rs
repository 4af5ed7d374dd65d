//! Typed carrier events and the pure part of notification handling: classifying a
//! `notificationMessage` (CARRIER.md sections 2-5) and dropping duplicate `eventId`s.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use super::protocol::NotificationMessage;

/// Why the carrier side of a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The carrier sent `callEnd`.
    Remote,
    /// An audit was answered with `statusCode` 42: the session no longer exists.
    AuditFailed,
    /// After a WebSocket reconnect, get-state said 47 (not found).
    LostOnResync,
}

/// One thing that happened to one call on the carrier side.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    Trying,
    Ringing,
    /// Early media: a provisional answer.
    Progress {
        sdp: String,
    },
    /// The far end answered; the final answer SDP.
    Answered {
        sdp: String,
    },
    /// The answer to our own `startCallUpdate`.
    UpdateAnswered {
        sdp: String,
    },
    /// Glare on our update: retry after the delay.
    UpdateGlare {
        retry_after: Duration,
    },
    /// The carrier re-offers (hold, ICE restart): answer with `respond_update`.
    RemoteUpdate {
        sdp: String,
    },
    /// The caller of an inbound call gave up before answer.
    Cancelled,
    Ended {
        /// SIP status code from the carrier, when it gave one.
        code: Option<i64>,
        reason: Option<String>,
        cause: EndCause,
    },
    /// After a WebSocket reconnect: what get-state said (the call module checks that nothing
    /// was missed, e.g. an answer while the socket was down).
    Resynced {
        answered: bool,
    },
}

/// What a notification means to the account.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// The subscription is gone: subscribe again after `retry_after`.
    Gone { retry_after: Option<Duration> },
    /// Another client took our channel.
    Overridden,
    /// A new inbound call.
    IncomingCall(IncomingCall),
    /// An event for an existing call.
    ForCall { session: String, event: CallEvent },
    /// Unknown or incomplete; logged at debug.
    Ignored(String),
}

/// The offer and identities of a carrier-originated call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IncomingCall {
    pub session: String,
    /// `None` for a "slow start" call without an offer (we only answer offers).
    pub offer: Option<String>,
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    pub callee_number: Option<String>,
}

/// Classifies a notification; `answered` says whether the call it names has been answered
/// (the first `respondCallUpdate` with SDP is the answer, later ones answer our updates).
pub fn classify(msg: &NotificationMessage, answered: impl Fn(&str) -> bool) -> Classified {
    let sp = msg.session_params.clone().unwrap_or_default();
    let retry_after = sp
        .retry_after
        .or(msg.retry_after)
        .map(Duration::from_millis);
    match msg.event_type.as_str() {
        "gone" => return Classified::Gone { retry_after },
        "websocketOverridden" => return Classified::Overridden,
        _ => {}
    }
    let Some(session) = sp.session_data.clone().filter(|s| !s.is_empty()) else {
        return Classified::Ignored(format!("{} without sessionData", msg.event_type));
    };
    let sdp = sp.sdp.clone().filter(|s| !s.trim().is_empty());
    let code = sp.status_code.or(msg.status_code);
    let reason = sp.reason_text.clone().or_else(|| msg.reason_text.clone());
    let event = match msg.event_type.as_str() {
        "call" => {
            let cp = msg.call_notification_params.clone().unwrap_or_default();
            return Classified::IncomingCall(IncomingCall {
                session,
                offer: sdp,
                caller_name: cp.caller_name,
                caller_number: cp.caller_display_number,
                callee_number: cp.callee_display_number,
            });
        }
        "trying" => CallEvent::Trying,
        "ringing" => CallEvent::Ringing,
        "sessionProgress" => match sdp {
            Some(sdp) => CallEvent::Progress { sdp },
            // Progress without SDP carries no media: ringing is the closest meaning.
            None => CallEvent::Ringing,
        },
        "respondCallUpdate" => match (sdp, code) {
            (_, Some(49)) => CallEvent::UpdateGlare {
                retry_after: retry_after.unwrap_or(Duration::from_millis(500)),
            },
            (Some(sdp), _) if !answered(&session) => CallEvent::Answered { sdp },
            (Some(sdp), _) => CallEvent::UpdateAnswered { sdp },
            (None, _) => {
                return Classified::Ignored("respondCallUpdate without sdp".into());
            }
        },
        "startCallUpdate" => match sdp {
            Some(sdp) => CallEvent::RemoteUpdate { sdp },
            None => return Classified::Ignored("startCallUpdate without sdp".into()),
        },
        "callCancel" => CallEvent::Cancelled,
        "callEnd" => CallEvent::Ended {
            code,
            reason,
            cause: EndCause::Remote,
        },
        other => return Classified::Ignored(format!("event {other:?}")),
    };
    Classified::ForCall { session, event }
}

/// Remembers the last `capacity` event ids; `first_time` is false for a repeat.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::protocol::{parse_server_frame, ServerFrame};

    fn msg(json: &str) -> NotificationMessage {
        match parse_server_frame(json).unwrap() {
            ServerFrame::Notification(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_respond_call_update_is_the_answer_later_ones_answer_updates() {
        let m = msg(
            r#"{"notificationMessage":{"eventType":"respondCallUpdate","eventId":"1",
               "sessionParams":{"sessionData":"S","sdp":"v=0"}}}"#,
        );
        assert_eq!(
            classify(&m, |_| false),
            Classified::ForCall {
                session: "S".into(),
                event: CallEvent::Answered { sdp: "v=0".into() }
            }
        );
        assert_eq!(
            classify(&m, |_| true),
            Classified::ForCall {
                session: "S".into(),
                event: CallEvent::UpdateAnswered { sdp: "v=0".into() }
            }
        );
    }

    #[test]
    fn call_end_carries_code_and_reason_from_either_place() {
        let inner = msg(
            r#"{"notificationMessage":{"eventType":"callEnd","eventId":"2",
               "sessionParams":{"sessionData":"S","statusCode":486,"reasonText":"Busy Here"}}}"#,
        );
        let outer = msg(
            r#"{"notificationMessage":{"eventType":"callEnd","eventId":"3","statusCode":603,
               "sessionParams":{"sessionData":"S"}}}"#,
        );
        assert_eq!(
            classify(&inner, |_| false),
            Classified::ForCall {
                session: "S".into(),
                event: CallEvent::Ended {
                    code: Some(486),
                    reason: Some("Busy Here".into()),
                    cause: EndCause::Remote
                }
            }
        );
        match classify(&outer, |_| false) {
            Classified::ForCall {
                event: CallEvent::Ended { code, .. },
                ..
            } => assert_eq!(code, Some(603)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inbound_call_and_subscription_events() {
        let m = msg(r#"{"notificationMessage":{"eventType":"call","eventId":"4",
               "sessionParams":{"sessionData":"IN1","sdp":"v=0","actions":["reject"]},
               "callNotificationParams":{"callerName":"Ali","callerDisplayNumber":"+971501111111",
               "calleeDisplayNumber":"+97143456789"}}}"#);
        match classify(&m, |_| false) {
            Classified::IncomingCall(c) => {
                assert_eq!(c.session, "IN1");
                assert_eq!(c.offer.as_deref(), Some("v=0"));
                assert_eq!(c.caller_number.as_deref(), Some("+971501111111"));
                assert_eq!(c.callee_number.as_deref(), Some("+97143456789"));
            }
            other => panic!("{other:?}"),
        }
        let gone =
            msg(r#"{"notificationMessage":{"eventType":"gone","eventId":"5","retryAfter":2000}}"#);
        assert_eq!(
            classify(&gone, |_| false),
            Classified::Gone {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let glare = msg(
            r#"{"notificationMessage":{"eventType":"respondCallUpdate","eventId":"6",
               "sessionParams":{"sessionData":"S","statusCode":49,"retryAfter":300}}}"#,
        );
        assert_eq!(
            classify(&glare, |_| true),
            Classified::ForCall {
                session: "S".into(),
                event: CallEvent::UpdateGlare {
                    retry_after: Duration::from_millis(300)
                }
            }
        );
        let stray = msg(r#"{"notificationMessage":{"eventType":"ringing","eventId":"7"}}"#);
        assert!(matches!(
            classify(&stray, |_| false),
            Classified::Ignored(_)
        ));
    }

    #[test]
    fn dedup_drops_repeats_and_forgets_old_ids() {
        let mut d = Dedup::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("a"), "a fell out of the window");
        assert!(!d.first_time("c"));
    }
}

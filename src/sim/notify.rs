//! Sending notifications: every `notificationMessage` goes through here, gets its `eventId`,
//! is duplicated when that fault is armed, and is delivered to the user's newest live
//! subscription's socket, or dropped and counted when there is none (the client resyncs).

use crate::carrier::protocol::{
    CallNotificationParams, NotificationFrame, NotificationMessage, SessionParams,
};

use super::state::{lock, Sim};
use super::stats::Stats;
use super::subscriptions::WsOut;

/// A call event with `sessionParams.sessionData` (and optionally the SDP).
pub fn call_event(event_type: &str, session: &str, sdp: Option<String>) -> NotificationMessage {
    NotificationMessage {
        event_type: event_type.into(),
        session_params: Some(SessionParams {
            session_data: Some(session.into()),
            sdp,
            ..SessionParams::default()
        }),
        ..NotificationMessage::default()
    }
}

/// A `callEnd` with the outcome inside `sessionParams`.
pub fn call_end_event(session: &str, code: Option<i64>, reason: &str) -> NotificationMessage {
    let mut m = call_event("callEnd", session, None);
    if let Some(sp) = m.session_params.as_mut() {
        sp.status_code = code;
        sp.reason_text = Some(reason.into());
    }
    m
}

/// The inbound `call` notification (section 4).
pub fn incoming_call_event(
    session: &str,
    offer: String,
    caller_name: Option<String>,
    from: &str,
    to: &str,
) -> NotificationMessage {
    let mut m = call_event("call", session, Some(offer));
    if let Some(sp) = m.session_params.as_mut() {
        sp.actions = Some(vec!["ringing".into(), "callAnswer".into(), "reject".into()]);
    }
    m.call_notification_params = Some(CallNotificationParams {
        caller_name,
        caller_display_number: Some(from.into()),
        callee_display_number: Some(to.into()),
    });
    m
}

impl Sim {
    /// Sends to the user's current subscription; false when dropped.
    pub fn notify_user(&self, username: &str, msg: NotificationMessage) -> bool {
        let sub_id = lock(&self.subs).current_mut(username).map(|s| s.id.clone());
        match sub_id {
            Some(id) => self.notify_subscription(&id, msg),
            None => {
                tracing::debug!(username, event = %msg.event_type, "no subscription: notification dropped");
                Stats::inc(&self.stats.notifications_dropped);
                false
            }
        }
    }

    /// Sends to one subscription's socket; false when dropped.
    pub fn notify_subscription(&self, sub_id: &str, mut msg: NotificationMessage) -> bool {
        msg.event_id = Some(self.next_event_id());
        let event = msg.event_type.clone();
        let text = match serde_json::to_string(&NotificationFrame {
            notification_message: msg,
        }) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot serialise a notification: {e}");
                return false;
            }
        };
        let copies = if lock(&self.faults).duplicate_notifications {
            2
        } else {
            1
        };
        let mut subs = lock(&self.subs);
        let Some(sub) = subs.get_mut(sub_id) else {
            Stats::inc(&self.stats.notifications_dropped);
            return false;
        };
        let sent = match &sub.ws {
            Some(slot) => (0..copies).all(|_| slot.tx.send(WsOut::Text(text.clone())).is_ok()),
            None => false,
        };
        if sent {
            sub.notifications_sent += 1;
            Stats::inc(&self.stats.notifications_sent);
            tracing::debug!(subscription = sub_id, %event, "notification sent");
        } else {
            sub.notifications_dropped += 1;
            Stats::inc(&self.stats.notifications_dropped);
            tracing::info!(subscription = sub_id, %event, "WebSocket down: notification dropped");
        }
        sent
    }
}

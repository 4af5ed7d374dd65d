//! The Kandy Link wire format (`shared/design/CARRIER.md`): REST request and response bodies,
//! WebSocket frames and the URL paths, as serde types. Shared by the client and the simulator so
//! both ends speak exactly the same field names.
//!
//! Everything the carrier sends is parsed leniently: unknown fields are ignored and fields the
//! public material does not guarantee are `Option`, because a carrier adding a field must never
//! break a call.

use serde::{Deserialize, Serialize};

/// The REST prefix of one user (account): `/rest/version/1/user/{username}`.
pub fn user_prefix(username: &str) -> String {
    format!("/rest/version/1/user/{username}")
}

pub fn subscription_path(username: &str) -> String {
    format!("{}/subscription", user_prefix(username))
}

pub fn call_control_path(username: &str) -> String {
    format!("{}/callControl", user_prefix(username))
}

pub fn call_session_path(username: &str, session: &str) -> String {
    format!(
        "{}/callControl/callSessions/{session}",
        user_prefix(username)
    )
}

pub fn call_disposition_path(username: &str) -> String {
    format!("{}/calldisposition", user_prefix(username))
}

/// Status codes of the error envelope (CARRIER.md section 6).
pub mod code {
    pub const OK: i64 = 0;
    pub const OK_ALT: i64 = 2;
    pub const BAD_BODY: i64 = 5;
    pub const NO_SUBSCRIPTION: i64 = 39;
    pub const AUDIT_NO_SESSION: i64 = 42;
    pub const STATE_NOT_FOUND: i64 = 47;
    pub const GLARE: i64 = 49;
    pub const UNAVAILABLE: i64 = 503;
    pub const BAD_REQUEST: i64 = 1004;

    pub fn is_success(code: i64) -> bool {
        code == OK || code == OK_ALT
    }
}

// ---- subscription -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequestBody {
    pub subscribe_request: SubscribeRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    pub expires: u32,
    pub service: Vec<String>,
    #[serde(default)]
    pub localization: String,
    #[serde(default)]
    pub use_turn: bool,
    #[serde(default)]
    pub notification_type: String,
    #[serde(default)]
    pub supported: Vec<String>,
    /// A string "true"/"false" on the wire, as the SDK sends it.
    #[serde(default)]
    pub force_log_out: String,
    #[serde(default)]
    pub client_correlator: String,
}

impl SubscribeRequest {
    pub fn new(expires: u32, client_correlator: &str) -> Self {
        SubscribeRequest {
            expires,
            service: vec!["call".into()],
            localization: "English_US".into(),
            use_turn: true,
            notification_type: "WebSocket".into(),
            supported: vec!["RingingFeedback".into()],
            force_log_out: "false".into(),
            client_correlator: client_correlator.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeResponseBody {
    pub subscribe_response: SubscribeResponse,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeResponse {
    pub status_code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_params: Option<SubscriptionParams>,
    /// Milliseconds, on 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionParams {
    #[serde(default)]
    pub service: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_credentials: Option<TurnCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

// ---- call control -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallControlRequestBody {
    pub call_control_request: CallControlRequest,
}

/// Every `callControlRequest` type (sections 3-5), tagged by `type` as on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum CallControlRequest {
    CallStart {
        from: String,
        to: String,
        sdp: String,
        #[serde(default)]
        supported: Vec<String>,
    },
    Audit,
    Ringing,
    CallAnswer {
        sdp: String,
    },
    StartCallUpdate {
        sdp: String,
    },
    RespondCallUpdate {
        sdp: String,
    },
}

impl CallControlRequest {
    pub fn into_body(self) -> CallControlRequestBody {
        CallControlRequestBody {
            call_control_request: self,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallControlResponseBody {
    pub call_control_response: CallControlResponse,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallControlResponse {
    pub status_code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_data: Option<String>,
    /// `RINGING` or `ANSWERED` on get-state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
    /// Milliseconds (glare, overload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallDispositionRequestBody {
    pub call_disposition_request: CallDispositionRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallDispositionRequest {
    pub action: String,
    pub session_data: String,
}

// ---- notification channel -----------------------------------------------------------------

/// The client's keepalive frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientPing {
    pub message_type: String,
}

impl ClientPing {
    pub fn new() -> Self {
        ClientPing {
            message_type: "ping".into(),
        }
    }
}

impl Default for ClientPing {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnCheckFrame {
    pub conn_check: ConnCheck,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnAckFrame {
    pub conn_ack: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationFrame {
    pub notification_message: NotificationMessage,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationMessage {
    pub event_type: String,
    /// A string on the wire; numbers are tolerated.
    #[serde(default, deserialize_with = "lenient_id")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_params: Option<SessionParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_notification_params: Option<CallNotificationParams>,
    /// Some carriers put the outcome at the top level rather than in `sessionParams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallNotificationParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_display_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_display_number: Option<String>,
}

fn lenient_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// One frame from the server, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    ConnCheck(ConnCheck),
    Notification(Box<NotificationMessage>),
    /// Valid JSON we do not know; ignored (and logged at debug).
    Other,
}

/// One frame from the client, classified (the simulator's view).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Ping,
    ConnAck,
    Other,
}

pub fn parse_server_frame(text: &str) -> Result<ServerFrame, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    if let Some(c) = v.get("connCheck") {
        return Ok(ServerFrame::ConnCheck(serde_json::from_value(c.clone())?));
    }
    if let Some(n) = v.get("notificationMessage") {
        return Ok(ServerFrame::Notification(Box::new(serde_json::from_value(
            n.clone(),
        )?)));
    }
    Ok(ServerFrame::Other)
}

pub fn parse_client_frame(text: &str) -> Result<ClientFrame, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    if v.get("message_type").and_then(|m| m.as_str()) == Some("ping") {
        return Ok(ClientFrame::Ping);
    }
    if v.get("connAck").is_some() {
        return Ok(ClientFrame::ConnAck);
    }
    Ok(ClientFrame::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_request_has_the_documented_field_names() {
        let body = SubscribeRequestBody {
            subscribe_request: SubscribeRequest::new(3600, "tg-1"),
        };
        let v = serde_json::to_value(&body).unwrap();
        let r = &v["subscribeRequest"];
        assert_eq!(r["expires"], 3600);
        assert_eq!(r["service"][0], "call");
        assert_eq!(r["useTurn"], true);
        assert_eq!(r["notificationType"], "WebSocket");
        assert_eq!(r["supported"][0], "RingingFeedback");
        assert_eq!(r["forceLogOut"], "false");
        assert_eq!(r["clientCorrelator"], "tg-1");
        assert_eq!(r["localization"], "English_US");
    }

    #[test]
    fn subscribe_response_from_carrier_md_parses() {
        let text = r#"{"subscribeResponse":{"statusCode":0,
          "subscription":"/rest/version/1/user/u/subscription/s1",
          "subscriptionParams":{"service":["call"],"expires":3600,
            "notificationChannel":"/rest/version/1/user/u/websocket/w1",
            "turnCredentials":{"username":"tu","password":"tp"},"sessionId":"x"}}}"#;
        let r: SubscribeResponseBody = serde_json::from_str(text).unwrap();
        let p = r.subscribe_response.subscription_params.unwrap();
        assert_eq!(
            p.notification_channel.as_deref(),
            Some("/rest/version/1/user/u/websocket/w1")
        );
        assert_eq!(p.turn_credentials.unwrap().password, "tp");
        let overload: SubscribeResponseBody =
            serde_json::from_str(r#"{"subscribeResponse":{"statusCode":503,"retryAfter":1500}}"#)
                .unwrap();
        assert_eq!(overload.subscribe_response.retry_after, Some(1500));
    }

    #[test]
    fn call_control_requests_are_tagged_by_type() {
        let start = CallControlRequest::CallStart {
            from: "sip:u".into(),
            to: "sip:+971501234567@d".into(),
            sdp: "v=0".into(),
            supported: vec!["earlymedia".into()],
        }
        .into_body();
        let v = serde_json::to_value(&start).unwrap();
        assert_eq!(v["callControlRequest"]["type"], "callStart");
        assert_eq!(v["callControlRequest"]["supported"][0], "earlymedia");
        let audit = serde_json::to_string(&CallControlRequest::Audit.into_body()).unwrap();
        assert_eq!(audit, r#"{"callControlRequest":{"type":"audit"}}"#);
        for (req, ty) in [
            (CallControlRequest::Ringing, "ringing"),
            (
                CallControlRequest::CallAnswer { sdp: "a".into() },
                "callAnswer",
            ),
            (
                CallControlRequest::StartCallUpdate { sdp: "a".into() },
                "startCallUpdate",
            ),
            (
                CallControlRequest::RespondCallUpdate { sdp: "a".into() },
                "respondCallUpdate",
            ),
        ] {
            let v = serde_json::to_value(req.into_body()).unwrap();
            assert_eq!(v["callControlRequest"]["type"], ty);
        }
    }

    #[test]
    fn frames_are_classified() {
        assert_eq!(
            parse_server_frame(r#"{"connCheck":{"interval":30}}"#).unwrap(),
            ServerFrame::ConnCheck(ConnCheck { interval: Some(30) })
        );
        let n = parse_server_frame(
            r#"{"notificationMessage":{"eventType":"ringing","eventId":17,
               "sessionParams":{"sessionData":"S1"}}}"#,
        )
        .unwrap();
        match n {
            ServerFrame::Notification(m) => {
                assert_eq!(m.event_type, "ringing");
                assert_eq!(m.event_id.as_deref(), Some("17"));
                assert_eq!(m.session_params.unwrap().session_data.unwrap(), "S1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_server_frame(r#"{"somethingNew":1}"#).unwrap(),
            ServerFrame::Other
        );
        assert!(parse_server_frame("not json").is_err());
        assert_eq!(
            parse_client_frame(r#"{"message_type":"ping"}"#).unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            parse_client_frame(&serde_json::to_string(&ConnAckFrame::default()).unwrap()).unwrap(),
            ClientFrame::ConnAck
        );
    }

    #[test]
    fn turn_password_is_not_in_debug_output() {
        let t = TurnCredentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}

//! The REST answer envelope (CARRIER.md section 6): success bodies, the error type every REST
//! handler returns, and body parsing that turns malformed input into statusCode 5 or 1004
//! instead of a panic or a framework error page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::carrier::protocol::{
    code, CallControlResponse, CallControlResponseBody, SubscribeResponse, SubscribeResponseBody,
};

/// Which envelope an answer is wrapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `subscribeResponse` (subscription paths).
    Subscribe,
    /// `callControlResponse` (everything else).
    CallControl,
}

impl Envelope {
    /// The envelope of a REST path.
    pub fn of_path(path: &str) -> Envelope {
        if path.contains("/subscription") {
            Envelope::Subscribe
        } else {
            Envelope::CallControl
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub http: StatusCode,
    pub envelope: Envelope,
    pub code: i64,
    pub reason: String,
    /// Milliseconds, in the body.
    pub retry_after_ms: Option<u64>,
    /// Seconds, as an HTTP `Retry-After` header.
    pub retry_after_header_s: Option<u64>,
    /// `WWW-Authenticate: Basic` on a 401.
    pub challenge: bool,
}

impl ApiError {
    pub fn new(http: StatusCode, envelope: Envelope, code: i64, reason: impl Into<String>) -> Self {
        ApiError {
            http,
            envelope,
            code,
            reason: reason.into(),
            retry_after_ms: None,
            retry_after_header_s: None,
            challenge: false,
        }
    }

    pub fn bad_body(envelope: Envelope, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, envelope, code::BAD_BODY, reason)
    }

    pub fn bad_request(envelope: Envelope, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, envelope, code::BAD_REQUEST, reason)
    }

    pub fn no_subscription() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Envelope::Subscribe,
            code::NO_SUBSCRIPTION,
            "subscription does not exist",
        )
    }

    pub fn no_session() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Envelope::CallControl,
            code::AUDIT_NO_SESSION,
            "session does not exist",
        )
    }

    pub fn state_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Envelope::CallControl,
            code::STATE_NOT_FOUND,
            "session not found",
        )
    }

    pub fn unauthorized(envelope: Envelope) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            envelope,
            401,
            "authentication failed",
        );
        e.challenge = true;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = Some(self.reason);
        let retry_after = self.retry_after_ms;
        let mut resp = match self.envelope {
            Envelope::Subscribe => (
                self.http,
                Json(SubscribeResponseBody {
                    subscribe_response: SubscribeResponse {
                        status_code: self.code,
                        reason_text: reason,
                        retry_after,
                        ..SubscribeResponse::default()
                    },
                }),
            )
                .into_response(),
            Envelope::CallControl => (
                self.http,
                Json(CallControlResponseBody {
                    call_control_response: CallControlResponse {
                        status_code: self.code,
                        reason_text: reason,
                        retry_after,
                        ..CallControlResponse::default()
                    },
                }),
            )
                .into_response(),
        };
        if let Some(s) = self.retry_after_header_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"trunkgate-sim\""),
            );
        }
        resp
    }
}

/// A 200 `callControlResponse`.
pub fn call_ok(resp: CallControlResponse) -> Response {
    (
        StatusCode::OK,
        Json(CallControlResponseBody {
            call_control_response: resp,
        }),
    )
        .into_response()
}

/// Parses a request body: empty, not JSON or without the envelope key → statusCode 5;
/// the envelope present but with a wrong shape → 1004.
pub fn parse_body<T: DeserializeOwned>(
    envelope: Envelope,
    key: &str,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_body(envelope, "missing request body"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(envelope, format!("invalid JSON: {e}")))?;
    if value.get(key).is_none() {
        return Err(ApiError::bad_body(envelope, format!("missing {key}")));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(envelope, format!("bad {key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::protocol::CallControlRequestBody;

    fn parse(body: &str) -> Result<CallControlRequestBody, ApiError> {
        parse_body(Envelope::CallControl, "callControlRequest", body.as_bytes())
    }

    #[test]
    fn malformed_bodies_get_5_or_1004() {
        assert_eq!(parse("").unwrap_err().code, 5);
        assert_eq!(parse("{not json").unwrap_err().code, 5);
        assert_eq!(parse("{}").unwrap_err().code, 5);
        assert_eq!(
            parse(r#"{"callControlRequest":{"type":"fly"}}"#)
                .unwrap_err()
                .code,
            1004
        );
        assert_eq!(
            parse(r#"{"callControlRequest":{"type":"callAnswer"}}"#)
                .unwrap_err()
                .code,
            1004
        );
        assert!(parse(r#"{"callControlRequest":{"type":"audit"}}"#).is_ok());
    }
}

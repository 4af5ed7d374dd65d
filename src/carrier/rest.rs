//! Typed Kandy Link REST operations of one account (CARRIER.md sections 1 and 3-5) over one
//! pooled HTTPS client. Every answer is either the success body or a `RestError` carrying the
//! HTTP status, the carrier `statusCode`, its reason and any retry hint.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use super::protocol::*;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum RestError {
    /// The carrier answered with an error status or a failing `statusCode`.
    #[error("carrier refused: HTTP {http}, statusCode {code:?}{}", reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default())]
    Refused {
        http: u16,
        code: Option<i64>,
        reason: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("carrier unreachable: {0}")]
    Transport(String),
    #[error("carrier answered something unreadable: {0}")]
    Decode(String),
}

impl RestError {
    pub fn carrier_code(&self) -> Option<i64> {
        match self {
            RestError::Refused { code, .. } => *code,
            _ => None,
        }
    }
    pub fn http(&self) -> Option<u16> {
        match self {
            RestError::Refused { http, .. } => Some(*http),
            _ => None,
        }
    }
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RestError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
    /// 401/403 on subscribe: the account's credentials are wrong.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.http(), Some(401 | 403))
    }
}

/// A subscription as granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    /// Path of the subscription resource, for refresh and delete.
    pub subscription: String,
    pub expires: Duration,
    pub notification_channel: Option<String>,
    pub turn: Option<TurnCredentials>,
}

/// Result of get-state on a call session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCallState {
    Ringing,
    Answered,
    Other(String),
}

pub struct RestClient {
    http: reqwest::Client,
    base: String,
    username: String,
    /// `Basic ...`, replaceable on reload (a new carrier password applies to the next request).
    authorization: std::sync::RwLock<HeaderValue>,
    /// Requests that failed: transport, decoding, or refused by the carrier (for metrics).
    errors: std::sync::atomic::AtomicU64,
}

fn basic(username: &str, password: &str) -> Result<HeaderValue, RestError> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut auth = HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|e| RestError::Transport(e.to_string()))?;
    auth.set_sensitive(true);
    Ok(auth)
}

impl RestClient {
    pub fn new(
        base_url: &str,
        username: &str,
        password: &str,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, RestError> {
        let auth = basic(username, password)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("trunkgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Transport(e.to_string()))?;
        Ok(RestClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            username: username.to_string(),
            authorization: std::sync::RwLock::new(auth),
            errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A new password for the next requests (configuration reload).
    pub fn set_password(&self, password: &str) -> Result<(), RestError> {
        let auth = basic(&self.username, password)?;
        *self
            .authorization
            .write()
            .unwrap_or_else(|p| p.into_inner()) = auth;
        Ok(())
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Requests that failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        ok: impl Fn(&R) -> Option<i64>,
        err_code: impl Fn(&serde_json::Value) -> (Option<i64>, Option<String>, Option<u64>),
    ) -> Result<R, RestError> {
        let r = self.send_once(method, path, body, ok, err_code).await;
        if r.is_err() {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    async fn send_once<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        ok: impl Fn(&R) -> Option<i64>,
        err_code: impl Fn(&serde_json::Value) -> (Option<i64>, Option<String>, Option<u64>),
    ) -> Result<R, RestError> {
        let url = format!("{}{}", self.base, path);
        let auth = self
            .authorization
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut req = self.http.request(method, &url).header(AUTHORIZATION, auth);
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| RestError::Decode(e.to_string()))?;
            req = req.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RestError::Transport(describe(&e)))?;
        let status = resp.status();
        let header_retry = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RestError::Transport(describe(&e)))?;
        if status.is_success() {
            if bytes.is_empty() {
                // Some operations (delete) may answer 2xx with no body.
                return serde_json::from_slice(b"{}")
                    .or_else(|_| serde_json::from_slice(b"null"))
                    .map_err(|e| RestError::Decode(e.to_string()));
            }
            let parsed: R =
                serde_json::from_slice(&bytes).map_err(|e| RestError::Decode(e.to_string()))?;
            match ok(&parsed) {
                Some(c) if !code::is_success(c) => Err(RestError::Refused {
                    http: status.as_u16(),
                    code: Some(c),
                    reason: None,
                    retry_after: header_retry,
                }),
                _ => Ok(parsed),
            }
        } else {
            let (code, reason, retry_ms) = serde_json::from_slice::<serde_json::Value>(&bytes)
                .map(|v| err_code(&v))
                .unwrap_or((None, None, None));
            Err(RestError::Refused {
                http: status.as_u16(),
                code,
                reason,
                retry_after: retry_ms.map(Duration::from_millis).or(header_retry),
            })
        }
    }

    async fn subscription_op(
        &self,
        method: Method,
        path: &str,
        request: &SubscribeRequest,
    ) -> Result<Granted, RestError> {
        let body = SubscribeRequestBody {
            subscribe_request: request.clone(),
        };
        let r: SubscribeResponseBody = self
            .send(
                method,
                path,
                Some(&body),
                |r: &SubscribeResponseBody| Some(r.subscribe_response.status_code),
                |v| envelope_fields(v, "subscribeResponse"),
            )
            .await?;
        let r = r.subscribe_response;
        let params = r.subscription_params.unwrap_or_default();
        let expires = params.expires.unwrap_or(request.expires);
        Ok(Granted {
            subscription: r.subscription.unwrap_or_else(|| path.to_string()),
            expires: Duration::from_secs(u64::from(expires)),
            notification_channel: params.notification_channel,
            turn: params.turn_credentials,
        })
    }

    pub async fn subscribe(&self, request: &SubscribeRequest) -> Result<Granted, RestError> {
        self.subscription_op(Method::POST, &subscription_path(&self.username), request)
            .await
    }

    pub async fn refresh(
        &self,
        subscription: &str,
        request: &SubscribeRequest,
    ) -> Result<Granted, RestError> {
        self.subscription_op(Method::PUT, subscription, request)
            .await
    }

    pub async fn unsubscribe(&self, subscription: &str) -> Result<(), RestError> {
        self.send::<(), serde_json::Value>(
            Method::DELETE,
            subscription,
            None,
            |_| None,
            |v| envelope_fields(v, "subscribeResponse"),
        )
        .await
        .map(|_| ())
    }

    async fn call_op(
        &self,
        method: Method,
        path: &str,
        body: Option<&CallControlRequestBody>,
    ) -> Result<CallControlResponse, RestError> {
        let r: Option<CallControlResponseBody> = self
            .send(
                method,
                path,
                body,
                |r: &Option<CallControlResponseBody>| {
                    r.as_ref().map(|b| b.call_control_response.status_code)
                },
                |v| envelope_fields(v, "callControlResponse"),
            )
            .await?;
        Ok(r.map(|b| b.call_control_response).unwrap_or_default())
    }

    /// `callStart`: returns the session name (`sessionData`).
    pub async fn call_start(&self, from: &str, to: &str, sdp: &str) -> Result<String, RestError> {
        let body = CallControlRequest::CallStart {
            from: from.into(),
            to: to.into(),
            sdp: sdp.into(),
            supported: vec!["earlymedia".into()],
        }
        .into_body();
        let r = self
            .call_op(
                Method::POST,
                &call_control_path(&self.username),
                Some(&body),
            )
            .await?;
        r.session_data
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RestError::Decode("callStart answer has no sessionData".into()))
    }

    async fn put_session(
        &self,
        session: &str,
        request: CallControlRequest,
    ) -> Result<CallControlResponse, RestError> {
        self.call_op(
            Method::PUT,
            &call_session_path(&self.username, session),
            Some(&request.into_body()),
        )
        .await
    }

    pub async fn audit(&self, session: &str) -> Result<(), RestError> {
        self.put_session(session, CallControlRequest::Audit)
            .await
            .map(|_| ())
    }

    pub async fn ringing(&self, session: &str) -> Result<(), RestError> {
        self.put_session(session, CallControlRequest::Ringing)
            .await
            .map(|_| ())
    }

    pub async fn answer(&self, session: &str, sdp: &str) -> Result<(), RestError> {
        self.put_session(session, CallControlRequest::CallAnswer { sdp: sdp.into() })
            .await
            .map(|_| ())
    }

    pub async fn start_update(&self, session: &str, sdp: &str) -> Result<(), RestError> {
        self.put_session(
            session,
            CallControlRequest::StartCallUpdate { sdp: sdp.into() },
        )
        .await
        .map(|_| ())
    }

    pub async fn respond_update(&self, session: &str, sdp: &str) -> Result<(), RestError> {
        self.put_session(
            session,
            CallControlRequest::RespondCallUpdate { sdp: sdp.into() },
        )
        .await
        .map(|_| ())
    }

    pub async fn end(&self, session: &str, reason: Option<&str>) -> Result<(), RestError> {
        let mut path = call_session_path(&self.username, session);
        if let Some(r) = reason {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("reasonText", r)
                .finish();
            path = format!("{path}?{q}");
        }
        self.call_op(Method::DELETE, &path, None).await.map(|_| ())
    }

    pub async fn state(&self, session: &str) -> Result<RemoteCallState, RestError> {
        let r = self
            .call_op(
                Method::GET,
                &call_session_path(&self.username, session),
                None,
            )
            .await?;
        Ok(match r.state.as_deref() {
            Some("RINGING") => RemoteCallState::Ringing,
            Some("ANSWERED") => RemoteCallState::Answered,
            Some(other) => RemoteCallState::Other(other.to_string()),
            None => RemoteCallState::Other(String::new()),
        })
    }

    pub async fn reject(&self, session: &str) -> Result<(), RestError> {
        let body = CallDispositionRequestBody {
            call_disposition_request: CallDispositionRequest {
                action: "reject".into(),
                session_data: session.into(),
            },
        };
        self.send::<_, serde_json::Value>(
            Method::POST,
            &call_disposition_path(&self.username),
            Some(&body),
            |_| None,
            |v| envelope_fields(v, "callDispositionResponse"),
        )
        .await
        .map(|_| ())
    }
}

/// `statusCode`, `reasonText`, `retryAfter` from an error envelope (any envelope name tolerated).
pub(crate) fn envelope_fields(
    v: &serde_json::Value,
    name: &str,
) -> (Option<i64>, Option<String>, Option<u64>) {
    let inner = v
        .get(name)
        .or_else(|| {
            v.as_object()
                .and_then(|o| o.values().find(|x| x.get("statusCode").is_some()))
        })
        .unwrap_or(v);
    (
        inner.get("statusCode").and_then(|c| c.as_i64()),
        inner
            .get("reasonText")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        inner.get("retryAfter").and_then(|c| c.as_u64()),
    )
}

/// A transport error in one line, without the URL's credentials (there are none in our URLs,
/// but the chain of causes is what an operator needs).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connect failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

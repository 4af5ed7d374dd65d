//! The control API (plain HTTP JSON, loopback only): what the simulator saw (subscriptions,
//! calls, counters) and what a test makes it do (originate, cancel, hang up, faults).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::call_ops::{EndNotice, Ending};
use super::calls::CallState;
use super::faults::FaultRequest;
use super::inbound::{InboundError, OriginateRequest};
use super::state::{lock, Sim};
use super::subscriptions::WsOut;
use crate::media::Direction;

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/subscriptions", get(subscriptions))
        .route("/calls", get(calls))
        .route("/calls/{session}", get(call))
        .route("/calls/{session}/cancel", post(cancel))
        .route("/calls/{session}/hangup", post(hangup))
        .route("/calls/{session}/reoffer", post(reoffer))
        .route("/originate", post(originate))
        .route("/faults", get(faults).post(set_faults))
        .route("/stats", get(stats))
        .with_state(sim)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An empty body counts as `{}`; anything unparsable is an error text for a 400.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

async fn subscriptions(State(sim): State<Arc<Sim>>) -> Response {
    Json(lock(&sim.subs).views(sim.started)).into_response()
}

async fn calls(State(sim): State<Arc<Sim>>) -> Response {
    Json(lock(&sim.calls).views()).into_response()
}

async fn call(State(sim): State<Arc<Sim>>, Path(session): Path<String>) -> Response {
    match lock(&sim.calls).view(&session) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such call"),
    }
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.stats.view()).into_response()
}

async fn faults(State(sim): State<Arc<Sim>>) -> Response {
    Json(lock(&sim.faults).view(Instant::now())).into_response()
}

async fn originate(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: OriginateRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match sim.originate(req).await {
        Ok(r) => Json(r).into_response(),
        Err(e @ (InboundError::UnknownUser(_) | InboundError::NoUser)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Optional body of cancel / hang-up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EndRequest {
    code: Option<i64>,
    reason: Option<String>,
}

async fn cancel(State(sim): State<Arc<Sim>>, Path(session): Path<String>, body: Bytes) -> Response {
    let req: EndRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match sim.with_live_call(&session, |c| c.state) {
        None => return error(StatusCode::NOT_FOUND, "no such live call"),
        Some(CallState::Answered) => {
            return error(
                StatusCode::CONFLICT,
                "answered: hang up instead of cancelling",
            )
        }
        Some(_) => {}
    }
    end(
        &sim,
        &session,
        EndNotice::CallCancel,
        req.code,
        req.reason,
        "Caller cancelled",
    )
    .await
}

/// Body of a carrier-side re-offer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReofferRequest {
    /// "sendrecv", "sendonly", "recvonly" or "inactive".
    direction: String,
}

async fn reoffer(
    State(sim): State<Arc<Sim>>,
    Path(session): Path<String>,
    body: Bytes,
) -> Response {
    let req: ReofferRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let direction = match req.direction.as_str() {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown direction {other:?}"),
            )
        }
    };
    match sim.reoffer(&session, direction).await {
        Ok(()) => Json(json!({ "session": session, "direction": req.direction })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn hangup(State(sim): State<Arc<Sim>>, Path(session): Path<String>, body: Bytes) -> Response {
    let req: EndRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(state) = sim.with_live_call(&session, |c| c.state) else {
        return error(StatusCode::NOT_FOUND, "no such live call");
    };
    // Before answer the hang-up is a failure with a SIP code; after, a plain BYE.
    let code = req.code.or((state != CallState::Answered).then_some(480));
    let default_reason = if state == CallState::Answered {
        "Normal Clearing"
    } else {
        "Temporarily Unavailable"
    };
    end(
        &sim,
        &session,
        EndNotice::CallEnd,
        code,
        req.reason,
        default_reason,
    )
    .await
}

async fn end(
    sim: &Sim,
    session: &str,
    notice: EndNotice,
    code: Option<i64>,
    reason: Option<String>,
    default_reason: &str,
) -> Response {
    let ended = sim
        .end_call(
            session,
            Ending {
                by: "control",
                code,
                reason: reason.unwrap_or_else(|| default_reason.into()),
                notice,
                stop_script: true,
            },
        )
        .await;
    if !ended {
        return error(StatusCode::NOT_FOUND, "no such live call");
    }
    match lock(&sim.calls).view(session) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such call"),
    }
}

async fn set_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: FaultRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = Instant::now();
    lock(&sim.faults).apply(&req, now);
    tracing::info!(?req, "faults set");
    let user = req.username.as_deref();
    if req.send_gone == Some(true) {
        let ids = lock(&sim.subs).live_ids(user);
        for id in ids {
            let mut m = crate::carrier::protocol::NotificationMessage {
                event_type: "gone".into(),
                ..Default::default()
            };
            m.retry_after = req.gone_retry_after_ms;
            sim.notify_subscription(&id, m);
            if let Some(slot) = lock(&sim.subs).delete(&id, "gone") {
                let _ = slot.tx.send(WsOut::Close {
                    code: 1000,
                    reason: "gone",
                });
            }
        }
    }
    if req.drop_websocket == Some(true) {
        let ids = lock(&sim.subs).live_ids(user);
        let mut subs = lock(&sim.subs);
        for id in ids {
            if let Some(slot) = subs.get_mut(&id).and_then(|s| s.ws.take()) {
                let _ = slot.tx.send(WsOut::Abort);
            }
        }
    }
    Json(lock(&sim.faults).view(now)).into_response()
}

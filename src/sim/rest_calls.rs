//! REST: call control — `callStart` (section 3), the per-session PUT (audit, ringing,
//! callAnswer, startCallUpdate, respondCallUpdate), get-state, hang-up/cancel (DELETE) and the
//! call disposition (reject) — sections 3 to 5.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::carrier::protocol::{
    code, CallControlRequest, CallControlRequestBody, CallControlResponse,
    CallDispositionRequestBody,
};

use super::api::{call_ok, parse_body, ApiError, Envelope};
use super::call_ops::{EndNotice, Ending};
use super::calls::{CallState, NewCall};
use super::inbound::InboundError;
use super::outbound::start_script;
use super::script::{behaviour_for, outbound_steps};
use super::state::{lock, new_id, Sim};
use crate::carrier::CallDirection;

const KEY: &str = "callControlRequest";
const CC: Envelope = Envelope::CallControl;

fn ok() -> CallControlResponse {
    CallControlResponse {
        status_code: code::OK,
        ..CallControlResponse::default()
    }
}

/// `POST .../callControl` with a `callStart`.
pub async fn call_start(
    State(sim): State<Arc<Sim>>,
    Path(username): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CallControlRequestBody = parse_body(CC, KEY, &body)?;
    let CallControlRequest::CallStart { from, to, sdp, .. } = req.call_control_request else {
        return Err(ApiError::bad_request(
            CC,
            "only callStart is posted to callControl",
        ));
    };
    if sdp.trim().is_empty() {
        return Err(ApiError::bad_request(CC, "callStart without an SDP offer"));
    }
    let b = &sim.cfg.behaviour;
    let behaviour = behaviour_for(b, &to);
    let steps = outbound_steps(behaviour, b.ring_delay, b.answer_delay);
    let session = new_id("S");
    lock(&sim.calls).insert(
        NewCall {
            session: session.clone(),
            username: username.clone(),
            direction: CallDirection::Outbound,
            from,
            to: to.clone(),
            caller_name: None,
        },
        sim.started,
        Instant::now(),
    );
    tracing::info!(%session, username, %to, ?behaviour, "callStart");
    start_script(&sim, &session, &username, sdp, steps);
    Ok(call_ok(CallControlResponse {
        session_data: Some(session),
        ..ok()
    }))
}

/// `PUT .../callSessions/{S}`.
pub async fn session_put(
    State(sim): State<Arc<Sim>>,
    Path((username, session)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CallControlRequestBody = parse_body(CC, KEY, &body)?;
    let now = Instant::now();
    let started = sim.started;
    // Every request on a session first needs the session to be live and this user's.
    let (direction, state) = {
        let mut calls = lock(&sim.calls);
        let call = calls
            .live_mut(&username, &session)
            .ok_or_else(ApiError::no_session)?;
        (call.direction, call.state)
    };
    match req.call_control_request {
        CallControlRequest::Audit => {
            let mut calls = lock(&sim.calls);
            let call = calls
                .live_mut(&username, &session)
                .ok_or_else(ApiError::no_session)?;
            call.audits += 1;
            call.last_audit = now;
            Ok(call_ok(ok()))
        }
        CallControlRequest::Ringing => {
            if direction != CallDirection::Inbound || state != CallState::Trying {
                return Err(ApiError::bad_request(
                    CC,
                    "ringing is for an unanswered inbound call",
                ));
            }
            sim.with_live_call(&session, |c| c.set_state(CallState::Ringing, started, now));
            Ok(call_ok(ok()))
        }
        CallControlRequest::CallAnswer { sdp } => {
            match sim.accept_inbound_answer(&username, &session, &sdp).await {
                Ok(()) => Ok(call_ok(ok())),
                Err(InboundError::Media(e)) => {
                    Err(ApiError::bad_request(CC, format!("answer SDP: {e}")))
                }
                Err(e) => Err(ApiError::bad_request(CC, e.to_string())),
            }
        }
        CallControlRequest::StartCallUpdate { sdp } => {
            if let Some(ms) = lock(&sim.faults).take_glare() {
                tracing::info!(%session, retry_after_ms = ms, "glare fault: 49");
                let mut e = ApiError::new(StatusCode::CONFLICT, CC, code::GLARE, "glare");
                e.retry_after_ms = Some(ms);
                return Err(e);
            }
            if sim.answer_update(&session, sdp) {
                Ok(call_ok(ok()))
            } else {
                Err(ApiError::bad_request(
                    CC,
                    "no media session to update (not answered)",
                ))
            }
        }
        CallControlRequest::RespondCallUpdate { sdp } => {
            sim.accept_update_answer(&session, &sdp).await;
            Ok(call_ok(ok()))
        }
        CallControlRequest::CallStart { .. } => Err(ApiError::bad_request(
            CC,
            "callStart is posted to callControl, not to a session",
        )),
    }
}

/// `GET .../callSessions/{S}`: the resync state.
pub async fn session_get(
    State(sim): State<Arc<Sim>>,
    Path((username, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let state = lock(&sim.calls)
        .live_mut(&username, &session)
        .and_then(|c| c.state.wire_state())
        .ok_or_else(ApiError::state_not_found)?;
    Ok(call_ok(CallControlResponse {
        state: Some(state.into()),
        ..ok()
    }))
}

/// `DELETE .../callSessions/{S}[?reasonText=...]`: the client's hang-up or cancel.
pub async fn session_delete(
    State(sim): State<Arc<Sim>>,
    Path((username, session)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if lock(&sim.calls).live_mut(&username, &session).is_none() {
        return Err(ApiError::no_session());
    }
    let reason = query
        .get("reasonText")
        .cloned()
        .unwrap_or_else(|| "client hang-up".into());
    sim.end_call(
        &session,
        Ending {
            by: "client",
            code: None,
            reason,
            notice: EndNotice::None,
            stop_script: true,
        },
    )
    .await;
    Ok(call_ok(ok()))
}

/// `POST .../calldisposition` `{"callDispositionRequest":{"action":"reject",...}}`.
pub async fn disposition(
    State(sim): State<Arc<Sim>>,
    Path(username): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CallDispositionRequestBody = parse_body(CC, "callDispositionRequest", &body)?;
    let req = req.call_disposition_request;
    if !req.action.eq_ignore_ascii_case("reject") {
        return Err(ApiError::bad_request(
            CC,
            format!("unsupported action {:?}", req.action),
        ));
    }
    let answerable = {
        let mut calls = lock(&sim.calls);
        let call = calls
            .live_mut(&username, &req.session_data)
            .ok_or_else(ApiError::no_session)?;
        call.direction == CallDirection::Inbound && call.state != CallState::Answered
    };
    if !answerable {
        return Err(ApiError::bad_request(
            CC,
            "reject is for an unanswered inbound call",
        ));
    }
    sim.end_call(
        &req.session_data,
        Ending {
            by: "client",
            code: Some(603),
            reason: "Decline".into(),
            notice: EndNotice::None,
            stop_script: true,
        },
    )
    .await;
    Ok(call_ok(ok()))
}

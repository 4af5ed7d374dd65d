//! REST: subscribe (POST), refresh (PUT), unsubscribe (DELETE) — CARRIER.md section 1 — with
//! the overload and slow-refresh faults applied.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::carrier::protocol::{
    code, SubscribeRequestBody, SubscribeResponse, SubscribeResponseBody, SubscriptionParams,
    TurnCredentials,
};

use super::api::{parse_body, ApiError, Envelope};
use super::state::{lock, new_id, Sim};
use super::stats::Stats;
use super::subscriptions::{Subscription, WsOut};

const KEY: &str = "subscribeRequest";

pub async fn subscribe(
    State(sim): State<Arc<Sim>>,
    Path(username): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    overload_fault(&sim)?;
    let req: SubscribeRequestBody = parse_body(Envelope::Subscribe, KEY, &body)?;
    let req = req.subscribe_request;
    let expires = granted(&sim, req.expires);
    let force = req.force_log_out.eq_ignore_ascii_case("true");
    let now = Instant::now();
    let mut closed = Vec::new();
    let body = {
        let mut subs = lock(&sim.subs);
        if force {
            for id in subs.live_ids(Some(&username)) {
                closed.extend(subs.delete(&id, "force_log_out"));
            }
        }
        let sub = subs.create(new_id("sub-"), new_id("ws-"), &username, expires, now);
        tracing::info!(username, subscription = %sub.id, expires, "subscribed");
        success(&sim, sub)
    };
    for slot in closed {
        let _ = slot.tx.send(WsOut::Close {
            code: 1000,
            reason: "logged out",
        });
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn refresh(
    State(sim): State<Arc<Sim>>,
    Path((username, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let delay = lock(&sim.faults).refresh_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    overload_fault(&sim)?;
    let req: SubscribeRequestBody = parse_body(Envelope::Subscribe, KEY, &body)?;
    let expires = granted(&sim, req.subscribe_request.expires);
    let mut subs = lock(&sim.subs);
    let sub = subs
        .live_mut(&username, &id)
        .ok_or_else(ApiError::no_subscription)?;
    sub.refreshes += 1;
    sub.last_refresh = Instant::now();
    sub.expires = expires;
    tracing::debug!(username, subscription = %id, expires, "refreshed");
    let body = success(&sim, sub);
    Ok((StatusCode::OK, Json(body)).into_response())
}

pub async fn unsubscribe(
    State(sim): State<Arc<Sim>>,
    Path((username, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let slot = {
        let mut subs = lock(&sim.subs);
        if subs.live_mut(&username, &id).is_none() {
            return Err(ApiError::no_subscription());
        }
        subs.delete(&id, "unsubscribed")
    };
    if let Some(slot) = slot {
        let _ = slot.tx.send(WsOut::Close {
            code: 1000,
            reason: "unsubscribed",
        });
    }
    tracing::info!(username, subscription = %id, "unsubscribed");
    let body = SubscribeResponseBody {
        subscribe_response: SubscribeResponse {
            status_code: code::OK,
            ..SubscribeResponse::default()
        },
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// The armed overload fault, if any: a 503 with `retryAfter` (ms) or `Retry-After` (s).
fn overload_fault(sim: &Sim) -> Result<(), ApiError> {
    let Some((ms, as_header)) = lock(&sim.faults).take_subscribe_failure() else {
        return Ok(());
    };
    Stats::inc(&sim.stats.unavailable_sent);
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        Envelope::Subscribe,
        code::UNAVAILABLE,
        "service unavailable",
    );
    if as_header {
        e.retry_after_header_s = Some(ms.div_ceil(1000));
    } else {
        e.retry_after_ms = Some(ms);
    }
    tracing::info!(retry_after_ms = ms, as_header, "overload fault: 503");
    Err(e)
}

fn granted(sim: &Sim, asked: u32) -> u32 {
    let cap = sim.cfg.subscription_expires;
    if asked == 0 {
        cap
    } else {
        asked.min(cap)
    }
}

fn success(sim: &Sim, sub: &Subscription) -> SubscribeResponseBody {
    SubscribeResponseBody {
        subscribe_response: SubscribeResponse {
            status_code: code::OK,
            subscription: Some(sub.path()),
            subscription_params: Some(SubscriptionParams {
                service: vec!["call".into()],
                expires: Some(sub.expires),
                notification_channel: Some(sub.channel_path()),
                turn_credentials: Some(TurnCredentials {
                    username: sim.cfg.turn_username.clone(),
                    password: sim.cfg.turn_password.expose().to_string(),
                }),
                session_id: Some(sub.id.clone()),
            }),
            ..SubscribeResponse::default()
        },
    }
}

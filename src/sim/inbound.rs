//! Calls from the carrier to the client (CARRIER.md section 4): origination on request of the
//! control API (an offer, then a `call` notification), and the client's answer to it.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::calls::{CallState, NewCall};
use super::media::{self, MediaError, MediaMode};
use super::notify::incoming_call_event;
use super::state::{lock, new_id, Sim};
use crate::carrier::CallDirection;

/// `POST /originate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginateRequest {
    /// Called number, shown as `calleeDisplayNumber`.
    pub to: String,
    /// Calling number, shown as `callerDisplayNumber`.
    pub from: String,
    #[serde(default)]
    pub caller_name: Option<String>,
    /// The account the call is for; default: the only user, else the newest subscriber.
    #[serde(default)]
    pub username: Option<String>,
    /// What the simulated caller sends once answered (default echo).
    #[serde(default)]
    pub mode: Option<MediaMode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginateResponse {
    pub session: String,
    pub username: String,
    /// False when the `call` notification was dropped (no live WebSocket).
    pub delivered: bool,
}

#[derive(Debug, Error)]
pub enum InboundError {
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("no user to call: give \"username\" (no live subscription to choose from)")]
    NoUser,
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("the session is not an inbound call waiting for an answer")]
    NotAnswerable,
}

impl Sim {
    pub async fn originate(
        self: &Arc<Self>,
        req: OriginateRequest,
    ) -> Result<OriginateResponse, InboundError> {
        let username = match &req.username {
            Some(u) if self.has_user(u) => u.clone(),
            Some(u) => return Err(InboundError::UnknownUser(u.clone())),
            None => match self.sole_user() {
                Some(u) => u.to_string(),
                None => lock(&self.subs)
                    .newest_live_user()
                    .ok_or(InboundError::NoUser)?,
            },
        };
        let mode = req.mode.unwrap_or(MediaMode::Echo);
        let session = new_id("in-");
        let stats = {
            let mut calls = lock(&self.calls);
            let call = calls.insert(
                NewCall {
                    session: session.clone(),
                    username: username.clone(),
                    direction: CallDirection::Inbound,
                    from: req.from.clone(),
                    to: req.to.clone(),
                    caller_name: req.caller_name.clone(),
                },
                self.started,
                Instant::now(),
            );
            call.stats.clone()
        };
        let (offer, pending) =
            match media::make_offer(mode, stats, self.cfg.media_ip, self.cfg.media_batch_window)
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    self.with_live_call(&session, |c| {
                        c.set_state(CallState::Ended, self.started, Instant::now());
                        c.ended_by = Some("media_error");
                    });
                    return Err(e.into());
                }
            };
        self.with_live_call(&session, |c| c.pending_offer = Some(pending));
        tracing::info!(%session, %username, to = %req.to, from = %req.from, "originating an inbound call");
        let delivered = self.notify_user(
            &username,
            incoming_call_event(&session, offer, req.caller_name, &req.from, &req.to),
        );
        Ok(OriginateResponse {
            session,
            username,
            delivered,
        })
    }

    /// The client's `callAnswer` on an inbound call.
    pub async fn accept_inbound_answer(
        &self,
        username: &str,
        session: &str,
        sdp: &str,
    ) -> Result<(), InboundError> {
        let pending = {
            let mut calls = lock(&self.calls);
            calls
                .live_mut(username, session)
                .filter(|c| c.direction == CallDirection::Inbound)
                .and_then(|c| c.pending_offer.take())
        };
        let pending = pending.ok_or(InboundError::NotAnswerable)?;
        let leg = pending.accept_answer(sdp).await?;
        let mut leg = Some(leg);
        self.with_live_call(session, |c| {
            c.media = leg.take();
            c.answer_sdp = Some(sdp.to_string());
            c.set_state(CallState::Answered, self.started, Instant::now());
        });
        if let Some(leg) = leg {
            leg.close().await;
            return Err(InboundError::NotAnswerable);
        }
        Ok(())
    }
}

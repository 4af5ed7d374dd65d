//! The call registry: every call the simulator has seen (outbound `callStart`s and inbound
//! originations), its state history, audits, how it ended and its media. Ended calls stay in
//! the registry for the control API but are invisible to the REST side, so an audit on one
//! gets statusCode 42 and a get-state gets 47.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::task::AbortHandle;

use crate::carrier::CallDirection;

use super::media::{CallMediaStats, MediaSession, MediaStatsView, PendingOffer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallState {
    /// Outbound: accepted (`trying` sent). Inbound: `call` sent, no answer from the client yet.
    Trying,
    Ringing,
    EarlyMedia,
    Answered,
    Ended,
}

impl CallState {
    /// The get-state answer (CARRIER.md section 5): `RINGING` before answer, `ANSWERED` after.
    pub fn wire_state(self) -> Option<&'static str> {
        match self {
            CallState::Trying | CallState::Ringing | CallState::EarlyMedia => Some("RINGING"),
            CallState::Answered => Some("ANSWERED"),
            CallState::Ended => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub state: CallState,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

#[derive(Debug)]
pub struct Call {
    pub session: String,
    pub username: String,
    pub direction: CallDirection,
    pub from: String,
    pub to: String,
    pub caller_name: Option<String>,
    pub state: CallState,
    pub history: Vec<StateChange>,
    pub audits: u64,
    pub last_audit: Instant,
    pub updates: u64,
    pub ended_by: Option<&'static str>,
    pub end_code: Option<i64>,
    pub end_reason: Option<String>,
    pub stats: Arc<CallMediaStats>,
    pub media: Option<MediaSession>,
    pub pending_offer: Option<PendingOffer>,
    /// We sent a `startCallUpdate` and wait for the client's `respondCallUpdate`.
    pub reoffer_pending: bool,
    /// The SDP answer already given (early media), reused by the final answer.
    pub answer_sdp: Option<String>,
    /// The outbound script task, aborted when the call ends another way.
    pub script: Option<AbortHandle>,
    seq: u64,
}

impl Call {
    pub fn is_alive(&self) -> bool {
        self.state != CallState::Ended
    }

    pub fn set_state(&mut self, state: CallState, started: Instant, now: Instant) {
        if self.state == state && !self.history.is_empty() {
            return;
        }
        self.state = state;
        self.history.push(StateChange {
            state,
            at_ms: now.saturating_duration_since(started).as_millis() as u64,
        });
    }
}

/// A new call's identity; the rest starts empty.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub session: String,
    pub username: String,
    pub direction: CallDirection,
    pub from: String,
    pub to: String,
    pub caller_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    pub session: String,
    pub username: String,
    pub direction: CallDirection,
    pub from: String,
    pub to: String,
    pub caller_name: Option<String>,
    pub state: CallState,
    pub history: Vec<StateChange>,
    pub audits: u64,
    pub updates: u64,
    /// `client` (DELETE, reject), `script` (busy/reject), `control` (cancel/hangup API),
    /// `audit_timeout`.
    pub ended_by: Option<String>,
    pub end_code: Option<i64>,
    pub end_reason: Option<String>,
    pub media: MediaStatsView,
}

#[derive(Debug, Default)]
pub struct Calls {
    map: HashMap<String, Call>,
    seq: u64,
}

impl Calls {
    pub fn insert(&mut self, c: NewCall, started: Instant, now: Instant) -> &mut Call {
        self.seq += 1;
        let mut call = Call {
            session: c.session.clone(),
            username: c.username,
            direction: c.direction,
            from: c.from,
            to: c.to,
            caller_name: c.caller_name,
            state: CallState::Trying,
            history: Vec::new(),
            audits: 0,
            last_audit: now,
            updates: 0,
            ended_by: None,
            end_code: None,
            end_reason: None,
            stats: Arc::default(),
            media: None,
            pending_offer: None,
            reoffer_pending: false,
            answer_sdp: None,
            script: None,
            seq: self.seq,
        };
        call.set_state(CallState::Trying, started, now);
        self.map.entry(c.session).or_insert(call)
    }

    /// A live call of this user: what the REST side may act on.
    pub fn live_mut(&mut self, username: &str, session: &str) -> Option<&mut Call> {
        self.map
            .get_mut(session)
            .filter(|c| c.is_alive() && c.username == username)
    }

    /// Any call, live or ended: what the control API acts on.
    pub fn get_mut(&mut self, session: &str) -> Option<&mut Call> {
        self.map.get_mut(session)
    }

    /// Live calls whose last audit (or start) is older than `timeout`.
    pub fn unaudited(&self, now: Instant, timeout: std::time::Duration) -> Vec<String> {
        self.map
            .values()
            .filter(|c| c.is_alive() && now.saturating_duration_since(c.last_audit) >= timeout)
            .map(|c| c.session.clone())
            .collect()
    }

    pub fn view(&self, session: &str) -> Option<CallView> {
        self.map.get(session).map(view_of)
    }

    pub fn views(&self) -> Vec<CallView> {
        let mut calls: Vec<&Call> = self.map.values().collect();
        calls.sort_by_key(|c| c.seq);
        calls.into_iter().map(view_of).collect()
    }
}

fn view_of(c: &Call) -> CallView {
    CallView {
        session: c.session.clone(),
        username: c.username.clone(),
        direction: c.direction,
        from: c.from.clone(),
        to: c.to.clone(),
        caller_name: c.caller_name.clone(),
        state: c.state,
        history: c.history.clone(),
        audits: c.audits,
        updates: c.updates,
        ended_by: c.ended_by.map(str::to_string),
        end_code: c.end_code,
        end_reason: c.end_reason.clone(),
        media: c.stats.view(),
    }
}

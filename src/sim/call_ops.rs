//! Operations on one call shared by the REST handlers, the scripts, the control API and the
//! audit sweeper: ending a call (with or without a notification) and mid-call updates.

use std::sync::Arc;
use std::time::Instant;

use super::calls::{Call, CallState};
use super::notify::{call_end_event, call_event};
use super::state::{lock, Sim};
use crate::media::Direction;

/// Which notification, if any, tells the client that the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndNotice {
    /// The client ended it itself (DELETE, reject): nothing to send.
    None,
    CallEnd,
    CallCancel,
}

/// How a call ends: who, the SIP code and reason, what to send.
#[derive(Debug, Clone)]
pub struct Ending {
    pub by: &'static str,
    pub code: Option<i64>,
    pub reason: String,
    pub notice: EndNotice,
    /// False when the call's own script ends it (a task must not abort itself).
    pub stop_script: bool,
}

impl Sim {
    /// Runs `f` on a live call (any user); `None` when it is unknown or ended.
    pub fn with_live_call<R>(&self, session: &str, f: impl FnOnce(&mut Call) -> R) -> Option<R> {
        let mut calls = lock(&self.calls);
        calls.get_mut(session).filter(|c| c.is_alive()).map(f)
    }

    /// Moves a live call to `state`, recording the transition.
    pub fn set_call_state(&self, session: &str, state: CallState) -> bool {
        let started = self.started;
        self.with_live_call(session, |c| c.set_state(state, started, Instant::now()))
            .is_some()
    }

    /// Ends a live call; false when it was not live.
    pub async fn end_call(&self, session: &str, ending: Ending) -> bool {
        let started = self.started;
        let taken = self.with_live_call(session, |c| {
            c.set_state(CallState::Ended, started, Instant::now());
            c.ended_by = Some(ending.by);
            c.end_code = ending.code;
            c.end_reason = Some(ending.reason.clone());
            if ending.stop_script {
                if let Some(h) = c.script.take() {
                    h.abort();
                }
            }
            c.pending_offer = None;
            (c.username.clone(), c.media.take())
        });
        let Some((username, media)) = taken else {
            return false;
        };
        tracing::info!(
            session,
            by = ending.by,
            code = ?ending.code,
            reason = %ending.reason,
            "call ended"
        );
        match ending.notice {
            EndNotice::None => {}
            EndNotice::CallEnd => {
                self.notify_user(
                    &username,
                    call_end_event(session, ending.code, &ending.reason),
                );
            }
            EndNotice::CallCancel => {
                let mut m = call_event("callCancel", session, None);
                if let Some(sp) = m.session_params.as_mut() {
                    sp.reason_text = Some(ending.reason.clone());
                }
                self.notify_user(&username, m);
            }
        }
        if let Some(m) = media {
            m.close().await;
        }
        true
    }

    /// Answers a client's `startCallUpdate` offer in the background: the answer goes out as a
    /// `respondCallUpdate` notification. False when the call has no media leg yet.
    pub fn answer_update(self: &Arc<Self>, session: &str, offer: String) -> bool {
        let Some((username, Some(mut media))) =
            self.with_live_call(session, |c| (c.username.clone(), c.media.take()))
        else {
            return false;
        };
        let sim = Arc::clone(self);
        let session = session.to_string();
        tokio::spawn(async move {
            let result = media.update(&offer).await;
            let back = sim.with_live_call(&session, |c| {
                c.updates += 1;
                c.media = Some(media);
            });
            if back.is_none() {
                return;
            }
            match result {
                Ok(sdp) => {
                    sim.notify_user(
                        &username,
                        call_event("respondCallUpdate", &session, Some(sdp)),
                    );
                }
                Err(e) => {
                    tracing::info!(%session, "re-offer refused: {e}");
                    let mut m = call_event("respondCallUpdate", &session, None);
                    if let Some(sp) = m.session_params.as_mut() {
                        sp.status_code = Some(488);
                        sp.reason_text = Some(e.to_string());
                    }
                    sim.notify_user(&username, m);
                }
            }
        });
        true
    }

    /// The far end re-offers (hold/resume from the carrier side): `startCallUpdate` with our
    /// offer goes to the client, whose `respondCallUpdate` completes it.
    pub async fn reoffer(
        self: &Arc<Self>,
        session: &str,
        direction: Direction,
    ) -> Result<(), String> {
        let Some((username, Some(media))) =
            self.with_live_call(session, |c| (c.username.clone(), c.media.take()))
        else {
            return Err("no answered call with media".into());
        };
        let result = media.reoffer(direction).await;
        self.with_live_call(session, |c| {
            c.media = Some(media);
            c.reoffer_pending = result.is_ok();
        });
        let sdp = result.map_err(|e| e.to_string())?;
        self.notify_user(&username, call_event("startCallUpdate", session, Some(sdp)));
        Ok(())
    }

    /// The client's answer to our re-offer; without one pending the answer is only counted.
    pub async fn accept_update_answer(self: &Arc<Self>, session: &str, sdp: &str) {
        let Some(Some(media)) = self.with_live_call(session, |c| {
            c.updates += 1;
            if std::mem::take(&mut c.reoffer_pending) {
                c.media.take()
            } else {
                None
            }
        }) else {
            return;
        };
        if let Err(e) = media.accept_update_answer(sdp).await {
            tracing::info!(%session, "answer to our re-offer refused: {e}");
        }
        self.with_live_call(session, |c| c.media = Some(media));
    }
}

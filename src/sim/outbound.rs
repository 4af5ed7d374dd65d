//! Runs an outbound call's script (from `script`): one task per call that sleeps between
//! steps, stops as soon as the call is no longer live, and turns each step into a state change
//! and a notification. The media answer is made here, through `media`.

use std::sync::Arc;

use super::call_ops::{EndNotice, Ending};
use super::calls::CallState;
use super::media::{self, MediaMode};
use super::notify::call_event;
use super::script::{Action, Step};
use super::state::Sim;

/// Spawns the script of a call that was just inserted.
pub fn start_script(
    sim: &Arc<Sim>,
    session: &str,
    username: &str,
    offer: String,
    steps: Vec<Step>,
) {
    let task = tokio::spawn(run(
        Arc::clone(sim),
        session.to_string(),
        username.to_string(),
        offer,
        steps,
    ));
    let abort = task.abort_handle();
    sim.with_live_call(session, |c| c.script = Some(abort));
}

async fn run(sim: Arc<Sim>, session: String, username: String, offer: String, steps: Vec<Step>) {
    for step in steps {
        if !step.delay.is_zero() {
            tokio::time::sleep(step.delay).await;
        }
        if sim.with_live_call(&session, |_| ()).is_none() {
            return;
        }
        tracing::debug!(%session, action = ?step.action, "script step");
        match step.action {
            Action::Trying => {
                sim.notify_user(&username, call_event("trying", &session, None));
            }
            Action::Ringing => {
                sim.set_call_state(&session, CallState::Ringing);
                sim.notify_user(&username, call_event("ringing", &session, None));
            }
            Action::SessionProgress => {
                let Some(sdp) = answer_sdp(&sim, &session, &offer, MediaMode::Echo).await else {
                    return;
                };
                sim.set_call_state(&session, CallState::EarlyMedia);
                sim.notify_user(
                    &username,
                    call_event("sessionProgress", &session, Some(sdp)),
                );
            }
            Action::Answer(mode) => {
                let Some(sdp) = answer_sdp(&sim, &session, &offer, mode).await else {
                    return;
                };
                sim.set_call_state(&session, CallState::Answered);
                sim.notify_user(
                    &username,
                    call_event("respondCallUpdate", &session, Some(sdp)),
                );
            }
            Action::End { code, reason } => {
                sim.end_call(
                    &session,
                    Ending {
                        by: "script",
                        code: Some(code),
                        reason: reason.into(),
                        notice: EndNotice::CallEnd,
                        stop_script: false,
                    },
                )
                .await;
                return;
            }
        }
    }
}

/// The call's answer SDP: the early one if there was one, else a new media leg. `None` (and the
/// call ended with 488) when the offer cannot be answered, or when the call ended meanwhile.
async fn answer_sdp(sim: &Arc<Sim>, session: &str, offer: &str, mode: MediaMode) -> Option<String> {
    let (existing, stats) =
        sim.with_live_call(session, |c| (c.answer_sdp.clone(), c.stats.clone()))?;
    if existing.is_some() {
        return existing;
    }
    match media::answer_call(
        offer,
        mode,
        stats,
        sim.cfg.media_ip,
        sim.cfg.media_batch_window,
    )
    .await
    {
        Ok((sdp, leg)) => {
            let mut leg = Some(leg);
            let stored = sim.with_live_call(session, |c| {
                c.media = leg.take();
                c.answer_sdp = Some(sdp.clone());
            });
            if let Some(leg) = leg {
                leg.close().await;
            }
            stored.map(|_| sdp)
        }
        Err(e) => {
            tracing::info!(session, "cannot answer the offer: {e}");
            sim.end_call(
                session,
                Ending {
                    by: "script",
                    code: Some(488),
                    reason: format!("Not Acceptable Here: {e}"),
                    notice: EndNotice::CallEnd,
                    stop_script: false,
                },
            )
            .await;
            None
        }
    }
}

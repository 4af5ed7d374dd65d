//! A confirmed call, either direction: hang-up from either side, hold and resume from the PBX
//! (re-INVITE → `startCallUpdate`), carrier re-offers (→ re-INVITE), RFC 4028 refreshes and
//! expiry, carrier audit failures, and a WebRTC leg that fails.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::pbx_leg::{pbx_media, PbxLeg};
use super::record::{CallRecord, EndedBy};
use super::session_timer::{self, SessionAgreement, SessionTimer, TimerAction};
use crate::carrier::events::{CallEvent, EndCause};
use crate::carrier::CarrierCall;
use crate::media::engine::MediaCall;
use crate::media::pbx_sdp::{self, MediaLine};
use crate::media::{AudioFormat, Direction, PeerState};
use crate::sip::tu::{DialogEvent, OwnRequest, Reply};

/// Where the PBX side's offer/answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxFlow {
    Answered,
    /// We sent an offer in a 2xx (offerless INVITE or re-INVITE): the answer comes in the ACK.
    AwaitingAckAnswer,
}

pub struct Bridge<'a> {
    pub leg: &'a mut PbxLeg,
    pub carrier: CarrierCall,
    pub peer: MediaCall,
    pub format: AudioFormat,
    pub timer: Option<SessionTimer>,
    pub timer_negotiated: Option<SessionAgreement>,
    pub flow: PbxFlow,
    /// The PBX's current direction (what its last SDP said, after c=0.0.0.0 is read as hold).
    pub pbx_direction: Direction,
}

/// Why our own re-INVITE was sent, to know what its answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnReinvite {
    Refresh,
    /// A carrier re-offer carried to the PBX.
    CarrierOffer,
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

impl Bridge<'_> {
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<DialogEvent>,
        record: &mut CallRecord,
    ) {
        let mut peer_state = self.peer.peer_state();
        let mut own: Option<OwnReinvite> = None;
        // RFC 3261 14.1: after a 491 the re-INVITE is tried again 2.1-4 s later (we own no Call-ID
        // ordering, so the random wait of the non-owner side applies either way).
        let mut reinvite_retry: Option<(Instant, OwnReinvite)> = None;
        // RTP inactivity: checked every second; a direction change restarts the wait
        let mut media_check = tokio::time::interval(Duration::from_secs(1));
        let mut expecting_since = Instant::now();
        let mut direction_seen = self.pbx_direction;
        let mut glare_retry: Option<(Instant, Direction)> = None;
        loop {
            let timer_at = self.timer.as_ref().and_then(|t| t.poll_timeout());
            let glare_at = glare_retry.map(|(at, _)| at);
            let retry_at = reinvite_retry.map(|(at, _)| at);
            tokio::select! {
                ev = self.carrier.next_event() => match ev {
                    Some(CallEvent::Ended { code, reason, cause }) => {
                        let reason = reason.unwrap_or_default();
                        record.carrier_code = code;
                        record.carrier_reason = Some(reason.clone());
                        record.ended_by = EndedBy::Carrier;
                        info!(carrier_code = ?code, %reason, ?cause, "carrier ended the call");
                        let why = match cause {
                            EndCause::Remote => crate::sip::tu::reason_header("Q.850", 16, &reason),
                            _ => "Q.850;cause=41;text=\"carrier session lost\"".to_string(),
                        };
                        self.leg.bye(Some(why));
                        break;
                    }
                    Some(CallEvent::Cancelled) | None => {
                        record.ended_by = EndedBy::Carrier;
                        self.leg.bye(None);
                        break;
                    }
                    Some(CallEvent::RemoteUpdate { sdp }) => {
                        if let Err(e) = self.carrier_reoffer(&sdp).await {
                            warn!(error = %e, "carrier re-offer failed");
                        } else {
                            own = Some(OwnReinvite::CarrierOffer);
                        }
                    }
                    Some(CallEvent::UpdateAnswered { sdp }) => {
                        match self.peer.accept_answer(&sdp).await {
                            Ok(f) => self.format = f,
                            Err(e) => warn!(error = %e, "carrier answer to our update unusable"),
                        }
                    }
                    Some(CallEvent::UpdateGlare { retry_after }) => {
                        let wait = retry_after.max(Duration::from_millis(100));
                        glare_retry = Some((Instant::now() + wait, self.pbx_direction));
                    }
                    Some(other) => debug!(event = ?other, "carrier event ignored in a confirmed call"),
                },
                msg = rx.recv() => match msg {
                    Some(DialogEvent::Bye) | None => {
                        record.ended_by = EndedBy::Pbx;
                        info!("the PBX hung up");
                        self.end_carrier("hangup").await;
                        break;
                    }
                    Some(DialogEvent::Shutdown) => {
                        record.ended_by = EndedBy::Gateway;
                        info!("stopping: ending the call");
                        self.leg.bye(Some("Q.850;cause=41;text=\"gateway shutting down\"".into()));
                        self.end_carrier("gateway shutting down").await;
                        break;
                    }
                    Some(DialogEvent::NoAck) => {
                        record.ended_by = EndedBy::Gateway;
                        self.leg.bye(Some("SIP;cause=408;text=\"no ACK\"".into()));
                        self.end_carrier("no ACK from the PBX").await;
                        break;
                    }
                    Some(DialogEvent::Ack { sdp }) => {
                        if self.flow == PbxFlow::AwaitingAckAnswer {
                            self.flow = PbxFlow::Answered;
                            match sdp {
                                Some(s) => self.apply_pbx_sdp(&s),
                                None => warn!("ACK without the answer to our offer"),
                            }
                        }
                    }
                    Some(DialogEvent::Reinvite { sdp, timer }) => {
                        if !self.on_reinvite(sdp, timer).await {
                            continue;
                        }
                    }
                    Some(DialogEvent::Response { request: OwnRequest::Reinvite, code, sdp, timer, .. }) => {
                        let why = own.take();
                        match code {
                            200..=299 => {
                                if let (Some(OwnReinvite::CarrierOffer), Some(s)) = (why, sdp) {
                                    self.apply_pbx_sdp(&s);
                                }
                                if let Some(n) = session_timer::on_2xx(timer.session_expires.as_deref()) {
                                    self.timer_negotiated = Some(n);
                                }
                                if let Some(t) = self.timer.as_mut() {
                                    t.on_refreshed(Instant::now());
                                }
                            }
                            408 | 481 => {
                                warn!(code, "re-INVITE failed: the dialog is gone");
                                record.ended_by = EndedBy::Gateway;
                                self.leg.bye(None);
                                self.end_carrier("PBX dialog gone").await;
                                break;
                            }
                            491 => {
                                if let Some(w) = why {
                                    let wait = Duration::from_millis(2100 + rand::random::<u64>() % 1900);
                                    debug!(?wait, "re-INVITE glare (491): trying again");
                                    reinvite_retry = Some((Instant::now() + wait, w));
                                }
                            }
                            _ => debug!(code, "re-INVITE refused; the session continues"),
                        }
                    }
                    Some(other) => debug!(event = ?other, "SIP event ignored in a confirmed call"),
                },
                _ = sleep_until(timer_at) => {
                    let action = self.timer.as_mut().and_then(|t| t.handle_timeout(Instant::now()));
                    match action {
                        Some(TimerAction::SendRefresh) => {
                            if let Some(line) = self.leg.line {
                                let body = self.leg.render(line);
                                let headers = self.refresh_headers();
                                self.leg.ctx.send(crate::sip::tu::DialogCommand::Reinvite(self.leg.call, body, headers));
                                own = Some(OwnReinvite::Refresh);
                            }
                        }
                        Some(TimerAction::Expired) => {
                            warn!("session timer expired: no refresh");
                            record.ended_by = EndedBy::Gateway;
                            self.leg.bye(Some("SIP;cause=408;text=\"session expired\"".into()));
                            self.end_carrier("session expired").await;
                            break;
                        }
                        None => {}
                    }
                }
                _ = sleep_until(retry_at) => {
                    if let (Some((_, w)), Some(line)) = (reinvite_retry.take(), self.leg.line) {
                        let body = self.leg.render(line);
                        let headers = self.refresh_headers();
                        self.leg.ctx.send(crate::sip::tu::DialogCommand::Reinvite(self.leg.call, body, headers));
                        own = Some(w);
                    }
                }
                _ = sleep_until(glare_at) => {
                    if let Some((_, dir)) = glare_retry.take() {
                        self.update_carrier(dir).await;
                    }
                }
                _ = media_check.tick() => {
                    // read on each check: a reload reaches calls already up
                    let rtp_timeout = self.leg.ctx.settings.current().calls.rtp_timeout;
                    if rtp_timeout.is_zero() {
                        continue;
                    }
                    if self.pbx_direction != direction_seen {
                        direction_seen = self.pbx_direction;
                        expecting_since = Instant::now();
                    }
                    let pbx_sends = matches!(self.pbx_direction, Direction::SendRecv | Direction::SendOnly);
                    let last = self.peer.last_from_pbx().map_or(expecting_since, |t| t.max(expecting_since));
                    if pbx_sends && last.elapsed() >= rtp_timeout {
                        warn!(silent_s = last.elapsed().as_secs(), "no RTP from the PBX: ending the call");
                        record.ended_by = EndedBy::Gateway;
                        self.leg.bye(Some("Q.850;cause=41;text=\"RTP timeout\"".into()));
                        self.end_carrier("RTP timeout").await;
                        break;
                    }
                }
                changed = peer_state.changed() => {
                    let state = if changed.is_ok() { *peer_state.borrow_and_update() } else { PeerState::Closed };
                    if matches!(state, PeerState::Failed | PeerState::Closed) {
                        warn!(?state, "WebRTC leg lost");
                        record.ended_by = EndedBy::Gateway;
                        self.leg.bye(Some("Q.850;cause=41;text=\"media failure\"".into()));
                        self.end_carrier("media failure").await;
                        break;
                    }
                }
            }
        }
        record.take_counters(self.peer.counters());
        record.quality = Some(self.peer.quality());
        self.peer.close();
    }

    async fn end_carrier(&mut self, reason: &str) {
        if let Err(e) = self.carrier.end(Some(reason)).await {
            warn!(error = %e, "carrier session delete failed");
        }
    }

    fn refresh_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Supported", "timer".to_string())];
        if let Some(n) = &self.timer_negotiated {
            h.push(("Session-Expires", n.session_expires_value()));
        }
        h
    }

    /// A PBX re-INVITE: hold, resume, a new address, or a session refresh. Returns false when
    /// it was refused (nothing changed).
    async fn on_reinvite(
        &mut self,
        sdp: Option<String>,
        timer: crate::sip::tu::TimerHeaders,
    ) -> bool {
        let decision = session_timer::on_request(
            &session_timer::TimerRequest {
                session_expires: timer.session_expires.as_deref(),
                min_se: timer.min_se.as_deref(),
                timer_supported: timer.supports_timer,
            },
            &self.leg.ctx.settings.current().timer,
        );
        let timer_headers = match decision {
            Ok(session_timer::UasDecision::Reject422 { min_se }) => {
                self.leg
                    .respond_reinvite(Reply::new(422).header("Min-SE", min_se.to_string()));
                return false;
            }
            Ok(session_timer::UasDecision::Accept(n)) => {
                // Whoever sent this re-INVITE is the UAS of the new negotiation's view: we are.
                let we_refresh = n.we_refresh(true);
                match self.timer.as_mut() {
                    Some(t) => t.renegotiate(&n, we_refresh, Instant::now()),
                    None => self.timer = Some(SessionTimer::new(&n, we_refresh, Instant::now())),
                }
                self.timer_negotiated = Some(n);
                n.response_headers()
            }
            Ok(session_timer::UasDecision::NoTimer) => {
                if let Some(t) = self.timer.as_mut() {
                    t.on_refreshed(Instant::now());
                }
                Vec::new()
            }
            Err(e) => {
                self.leg
                    .respond_reinvite(Reply::new(400).reason(e.to_string()));
                return false;
            }
        };
        let body = match sdp {
            None => {
                // RFC 3261 14.2: offer in the 200, answer in the ACK. Offer everything we do.
                self.flow = PbxFlow::AwaitingAckAnswer;
                let line = self.leg.line.map(|l| MediaLine {
                    direction: Direction::SendRecv,
                    ..l
                });
                match line {
                    Some(l) => self.leg.render(l),
                    None => {
                        self.leg.respond_reinvite(Reply::new(500));
                        return false;
                    }
                }
            }
            Some(s) => match self.answer_pbx_offer(&s).await {
                Ok(body) => body,
                Err(code) => {
                    self.leg.respond_reinvite(Reply::new(code));
                    return false;
                }
            },
        };
        let mut reply = Reply::new(200).sdp(body);
        for (n, v) in timer_headers {
            reply = reply.header(n, v);
        }
        self.leg.respond_reinvite(reply);
        true
    }

    /// Our answer to a PBX offer in a re-INVITE; carries a direction change to the carrier.
    async fn answer_pbx_offer(&mut self, sdp: &str) -> Result<String, u16> {
        let offer = pbx_sdp::parse(sdp).map_err(|e| {
            warn!(error = %e, "re-INVITE SDP refused");
            488u16
        })?;
        let neg = pbx_sdp::negotiate(&offer).ok_or(488u16)?;
        let media = pbx_media(&offer, self.format.codec).ok_or_else(|| {
            warn!(codec = ?self.format.codec, "re-INVITE drops the call's codec");
            488u16
        })?;
        self.peer.update_pbx(media);
        self.leg.pbx = Some(media);
        let direction = offer.effective_direction();
        let answer = pbx_sdp::answer_direction(direction);
        let line = PbxLeg::answer_line(&neg, &self.format, answer);
        let body = self.leg.render(line);
        if direction != self.pbx_direction {
            info!(from = ?self.pbx_direction, to = ?direction, "PBX media direction changed (hold/resume)");
            self.pbx_direction = direction;
            self.update_carrier(direction).await;
        }
        Ok(body)
    }

    /// `startCallUpdate` with our direction toward the carrier mirroring the PBX's.
    async fn update_carrier(&mut self, pbx_direction: Direction) {
        match self.peer.create_reoffer(pbx_direction).await {
            Ok(offer) => {
                if let Err(e) = self.carrier.update(&offer).await {
                    warn!(error = %e, "carrier update refused");
                }
            }
            Err(e) => warn!(error = %e, "WebRTC re-offer failed"),
        }
    }

    /// A carrier re-offer: answer it on the WebRTC leg, tell the carrier, and offer the PBX the
    /// matching direction in a re-INVITE.
    async fn carrier_reoffer(&mut self, sdp: &str) -> Result<(), String> {
        let (answer, format) = self
            .peer
            .answer_reoffer(sdp)
            .await
            .map_err(|e| e.to_string())?;
        self.format = format;
        self.carrier
            .respond_update(&answer)
            .await
            .map_err(|e| e.to_string())?;
        let carrier_dir = crate::media::sdp_direction(sdp);
        let Some(line) = self.leg.line else {
            return Err("no SDP sent to the PBX yet".into());
        };
        let body = self.leg.render(MediaLine {
            direction: carrier_dir,
            ..line
        });
        let headers = self.refresh_headers();
        self.leg.ctx.send(crate::sip::tu::DialogCommand::Reinvite(
            self.leg.call,
            body,
            headers,
        ));
        Ok(())
    }

    /// The PBX's answer (in an ACK or a re-INVITE's 2xx) to our offer.
    fn apply_pbx_sdp(&mut self, sdp: &str) {
        let Ok(answer) = pbx_sdp::parse(sdp) else {
            warn!("PBX answer SDP unusable");
            return;
        };
        if let Some(media) = pbx_media(&answer, self.format.codec) {
            self.peer.update_pbx(media);
            self.leg.pbx = Some(media);
        } else {
            warn!("PBX answer without the call's codec");
        }
    }
}

//! An outbound call (PBX → carrier) from the accepted INVITE to the confirmed bridge: SDP
//! checks, the session timer, capacity, the WebRTC offer and `callStart`, then the carrier's
//! progress mapped onto the PBX's INVITE (CARRIER.md section 3), CANCEL and the no-answer timer.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::bridge::{Bridge, PbxFlow};
use super::context::CallContext;
use super::pbx_leg::{pbx_media, PbxLeg};
use super::record::{CallDirection, CallRecord, EndedBy};
use super::registry::CallPhase;
use super::session_timer::{self, SessionTimer, TimerRequest, UasDecision};
use crate::carrier::events::CallEvent;
use crate::carrier::rest::RestError;
use crate::carrier::Unavailable;
use crate::media::engine::{FarEnd, MediaCall};
use crate::media::pbx_sdp::{self, AudioOffer, Negotiated};
use crate::media::relay::PbxMedia;
use crate::media::{Codec, Direction};
use crate::sip::tu::{AdmittedInvite, CallRef, DialogEvent, Reply};

/// Runs one outbound call to its end; always reports `Done` and one record.
pub async fn run(
    ctx: Arc<CallContext>,
    call: CallRef,
    inv: AdmittedInvite,
    rx: mpsc::UnboundedReceiver<DialogEvent>,
) {
    let span = tracing::info_span!("call", call = call.0, call_id = %inv.call_id, session = tracing::field::Empty);
    async move {
        let mut record = CallRecord::new(call, CallDirection::Outbound, inv.dialled.clone());
        record.sip_call_id = Some(inv.call_id.clone());
        record.trunk = Some(inv.trunk.clone());
        record.called = Some(inv.destination.e164.clone());
        record.caller = inv.caller.number.clone();
        record.caller_raw = Some(inv.from_uri.clone());
        let mut leg = PbxLeg::new(ctx.clone(), call, 0);
        outbound(&ctx, &mut leg, inv, rx, &mut record).await;
        record.ended = SystemTime::now();
        info!(code = record.sip_code, ended_by = ?record.ended_by,
              from_pbx = record.rtp_packets_from_pbx, to_pbx = record.rtp_packets_to_pbx,
              "call ended");
        ctx.done(call);
        ctx.records.record(record);
    }
    .instrument(span)
    .await
}

/// Refuses the INVITE with `reply`, noting it in the record.
fn refuse(leg: &PbxLeg, record: &mut CallRecord, reply: Reply) {
    record.sip_code = reply.code;
    record.sip_reason = reply
        .reason
        .clone()
        .unwrap_or_else(|| crate::sip::message::reason_phrase(reply.code).into());
    leg.respond(reply);
}

/// A carrier `callEnd` before answer as the PBX's final response: SIP codes pass through,
/// anything else is 503 so the PBX fails over (CARRIER.md section 3).
pub fn map_failure(code: i64) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| (400..=699).contains(c))
        .unwrap_or(503)
}

async fn outbound(
    ctx: &Arc<CallContext>,
    leg: &mut PbxLeg,
    inv: AdmittedInvite,
    mut rx: mpsc::UnboundedReceiver<DialogEvent>,
    record: &mut CallRecord,
) {
    let conf = ctx.settings.current();
    // The PBX's offer (or none: then we offer in the 200 and it answers in the ACK).
    let offer: Option<(AudioOffer, Negotiated)> = match inv.sdp.as_deref().map(pbx_sdp::parse) {
        None => None,
        Some(Err(e)) => {
            warn!(error = %e, "PBX offer refused");
            return refuse(
                leg,
                record,
                Reply::new(488).header("Warning", format!("399 trunkgate \"{e}\"")),
            );
        }
        Some(Ok(o)) => match pbx_sdp::negotiate(&o) {
            Some(n) => Some((o, n)),
            None => {
                warn!("no common codec: the PBX offers no PCMU or PCMA");
                return refuse(
                    leg,
                    record,
                    Reply::new(488).header("Warning", "305 trunkgate \"PCMU or PCMA required\""),
                );
            }
        },
    };
    let timer = match session_timer::on_request(
        &TimerRequest {
            session_expires: inv.timer.session_expires.as_deref(),
            min_se: inv.timer.min_se.as_deref(),
            timer_supported: inv.timer.supports_timer,
        },
        &conf.timer,
    ) {
        Ok(UasDecision::Reject422 { min_se }) => {
            return refuse(
                leg,
                record,
                Reply::new(422).header("Min-SE", min_se.to_string()),
            );
        }
        Ok(UasDecision::Accept(n)) => Some(n),
        Ok(UasDecision::NoTimer) => None,
        Err(e) => return refuse(leg, record, Reply::new(400).reason(e.to_string())),
    };
    let Some(carrier) = ctx.carrier.clone() else {
        return refuse(
            leg,
            record,
            Reply::new(503)
                .reason("No Carrier Available")
                .header("Retry-After", "30"),
        );
    };
    // An emergency call goes out even over the carrier accounts' max_calls, as it does over ours.
    let emergency = inv.destination.special == Some(crate::numbers::Special::Emergency);
    let reserved = if emergency {
        carrier.reserve_emergency()
    } else {
        carrier.reserve()
    };
    let reservation = match reserved {
        Ok(r) => r,
        Err(e) => {
            warn!(reason = %e, "no carrier capacity");
            let retry = if e == Unavailable::AtCapacity {
                "5"
            } else {
                "30"
            };
            return refuse(
                leg,
                record,
                Reply::new(503)
                    .reason("No Carrier Available")
                    .header("Retry-After", retry),
            );
        }
    };
    record.carrier_account = Some(reservation.account().to_string());
    let codecs: Vec<Codec> = match &offer {
        Some((o, _)) => pbx_sdp::codecs_in_order(o),
        None => vec![Codec::Pcmu, Codec::Pcma],
    };
    let rtp = match ctx.ports.allocate() {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "no RTP port for the call");
            return refuse(leg, record, Reply::new(503).header("Retry-After", "5"));
        }
    };
    leg.rtp_port = rtp.port;
    let mut settings = ctx.peer.clone();
    settings.ice_servers = reservation.ice_servers().to_vec();
    let e164 = inv.destination.e164.clone();
    let setup = async {
        let (peer, offer_sdp) = ctx
            .media
            .offer(&settings, &codecs, FarEnd::Pbx)
            .await
            .map_err(|e| format!("WebRTC offer: {e}"))?;
        let carrier = reservation
            .start_call(&e164, &offer_sdp)
            .await
            .map_err(|e| match &e {
                RestError::Refused { code, .. } => format!("callStart refused ({code:?}): {e}"),
                _ => format!("callStart: {e}"),
            })?;
        Ok::<_, String>((peer, carrier))
    };
    // The PBX may give up while the carrier leg is set up.
    let setup = tokio::select! {
        r = setup => r,
        ev = wait_cancel(&mut rx) => {
            if matches!(ev, Some(DialogEvent::Shutdown)) {
                record.ended_by = EndedBy::Gateway;
                return refuse(leg, record, Reply::new(503).reason("Shutting Down").header("Retry-After", "60"));
            }
            record.ended_by = EndedBy::Pbx;
            record.sip_code = 487;
            record.sip_reason = "Request Terminated".into();
            info!(event = ?ev, "cancelled by the PBX during set-up");
            return;
        }
    };
    let (mut carrier, peer) = match setup {
        Ok((peer, carrier)) => (carrier, peer),
        Err(e) => {
            warn!(error = %e, "carrier leg failed");
            return refuse(leg, record, Reply::new(503).header("Retry-After", "5"));
        }
    };
    let session = carrier.session().to_string();
    tracing::Span::current().record("session", session.as_str());
    record.carrier_session = Some(session.clone());
    ctx.registry
        .update(leg.call, |a| a.carrier_session = Some(session));
    info!(destination = %e164, account = %carrier.account(), "carrier call started");

    // The PBX's sockets go to the engine now: audio it sends before the WebRTC leg can carry
    // it is held there, not lost.
    let first = codecs.first().copied().unwrap_or(Codec::Pcmu);
    let initial = offer
        .as_ref()
        .and_then(|(o, _)| pbx_media(o, first))
        .map(|m| PbxMedia {
            receives: false,
            ..m
        })
        .unwrap_or(PbxMedia {
            addr: None,
            audio_pt: first.payload_type(),
            event_pt: None,
            receives: false,
        });
    if let Err(e) = peer.attach_pbx(rtp, initial) {
        warn!(error = %e, "media engine refused the call");
        let _ = carrier.end(Some("media failure")).await;
        return refuse(leg, record, Reply::new(503).header("Retry-After", "5"));
    }
    let mut early_started = false;
    let mut ringing_sent = false;
    let no_answer = tokio::time::sleep(conf.calls.no_answer_timeout);
    tokio::pin!(no_answer);
    // Early phase: until the carrier answers, fails, or the PBX gives up.
    let answer_sdp = loop {
        tokio::select! {
            ev = carrier.next_event() => match ev {
                Some(CallEvent::Ringing) if !ringing_sent => {
                    ringing_sent = true;
                    ctx.registry.update(leg.call, |a| a.phase = CallPhase::Ringing);
                    leg.respond(Reply::new(180));
                }
                Some(CallEvent::Progress { sdp }) => {
                    // Early media: answer the PBX provisionally and relay at once.
                    match early_media(leg, &peer, &sdp, &offer).await {
                        Ok(our) => {
                            ringing_sent = true;
                            early_started = true;
                            leg.respond(Reply::new(183).sdp(our));
                        }
                        Err(e) => warn!(error = %e, "early media SDP unusable; waiting for the answer"),
                    }
                }
                Some(CallEvent::Answered { sdp }) => break sdp,
                Some(CallEvent::Ended { code, reason, .. }) => {
                    let reason = reason.unwrap_or_default();
                    let sip = map_failure(code.unwrap_or(0));
                    record.carrier_code = code;
                    record.carrier_reason = Some(reason.clone());
                    record.ended_by = EndedBy::Carrier;
                    info!(carrier_code = ?code, %reason, sip, "carrier call failed");
                    return refuse(leg, record, Reply::new(sip).header(
                        "Reason", crate::sip::tu::reason_header("SIP", sip, &reason)));
                }
                Some(CallEvent::Cancelled) | None => {
                    record.ended_by = EndedBy::Carrier;
                    return refuse(leg, record, Reply::new(503).header("Retry-After", "5"));
                }
                Some(_) => {}
            },
            msg = rx.recv() => match msg {
                Some(DialogEvent::Cancelled) | None => {
                    record.ended_by = EndedBy::Pbx;
                    record.sip_code = 487;
                    record.sip_reason = "Request Terminated".into();
                    if let Err(e) = carrier.end(Some("cancelled")).await {
                        warn!(error = %e, "carrier session delete failed");
                    }
                    return;
                }
                Some(DialogEvent::Shutdown) => {
                    record.ended_by = EndedBy::Gateway;
                    let _ = carrier.end(Some("shutting down")).await;
                    return refuse(leg, record, Reply::new(503).reason("Shutting Down").header("Retry-After", "60"));
                }
                Some(_) => {}
            },
            _ = &mut no_answer => {
                info!("no answer in time: 480");
                record.ended_by = EndedBy::Gateway;
                if let Err(e) = carrier.end(Some("no answer")).await {
                    warn!(error = %e, "carrier session delete failed");
                }
                return refuse(leg, record, Reply::new(480).reason("No Answer"));
            }
        }
    };

    // Answered: the carrier's SDP completes the WebRTC leg (unless early media did).
    let format = match peer.format() {
        Some(f) if early_started => f,
        _ => match peer.accept_answer(&answer_sdp).await {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "carrier answer unusable");
                let _ = carrier.end(Some("unusable answer")).await;
                record.ended_by = EndedBy::Gateway;
                return refuse(leg, record, Reply::new(503).header("Retry-After", "5"));
            }
        },
    };
    let mut flow = PbxFlow::Answered;
    let body = match &offer {
        Some((o, n)) => {
            let Some(media) = pbx_media(o, format.codec) else {
                let _ = carrier.end(Some("codec mismatch")).await;
                return refuse(leg, record, Reply::new(488));
            };
            leg.pbx = Some(media);
            let direction = pbx_sdp::answer_direction(o.effective_direction());
            let line = PbxLeg::answer_line(n, &format, direction);
            leg.render(line)
        }
        None => {
            // Offerless INVITE: our offer goes in the 200, the answer comes in the ACK.
            flow = PbxFlow::AwaitingAckAnswer;
            let line = crate::media::pbx_sdp::MediaLine {
                codec: format.codec,
                audio_pt: format.codec.payload_type(),
                event_pt: format
                    .telephone_event_pt
                    .map(|_| crate::media::TELEPHONE_EVENT_PT),
                direction: Direction::SendRecv,
                alternative: None,
            };
            leg.render(line)
        }
    };
    match leg.pbx {
        Some(p) => peer.update_pbx(p),
        None => peer.update_pbx(PbxMedia {
            addr: None,
            audio_pt: format.codec.payload_type(),
            event_pt: None,
            receives: false,
        }),
    }
    let mut reply = Reply::new(200).sdp(body);
    if let Some(t) = &timer {
        for (n, v) in t.response_headers() {
            reply = reply.header(n, v);
        }
    }
    leg.respond(reply);
    record.answered_now();
    let view = peer.view();
    ctx.registry.update(leg.call, |a| {
        a.phase = CallPhase::Answered;
        a.media = Some(view);
    });
    info!(codec = ?format.codec, "answered");
    let session_timer = timer.map(|t| SessionTimer::new(&t, t.we_refresh(true), Instant::now()));
    let bridge = Bridge {
        leg,
        carrier,
        peer,
        format,
        timer: session_timer,
        timer_negotiated: timer,
        flow,
        pbx_direction: offer
            .as_ref()
            .map_or(Direction::SendRecv, |(o, _)| o.effective_direction()),
    };
    bridge.run(rx, record).await;
}

/// Waits for the PBX to cancel, the daemon to stop, or the channel to close; other messages
/// cannot come yet.
async fn wait_cancel(rx: &mut mpsc::UnboundedReceiver<DialogEvent>) -> Option<DialogEvent> {
    loop {
        match rx.recv().await {
            Some(e @ (DialogEvent::Cancelled | DialogEvent::Shutdown)) => return Some(e),
            None => return None,
            Some(_) => {}
        }
    }
}

/// Applies a `sessionProgress` SDP as the WebRTC answer, points the relay at the PBX and
/// returns our provisional SDP for the 183.
async fn early_media(
    leg: &mut PbxLeg,
    peer: &MediaCall,
    sdp: &str,
    offer: &Option<(AudioOffer, Negotiated)>,
) -> Result<String, String> {
    let Some((o, n)) = offer else {
        return Err("offerless INVITE: early media needs the PBX's offer".into());
    };
    let format = peer.accept_answer(sdp).await.map_err(|e| e.to_string())?;
    let media = pbx_media(o, format.codec).ok_or("codec mismatch")?;
    leg.pbx = Some(media);
    peer.update_pbx(media);
    let direction = pbx_sdp::answer_direction(o.effective_direction());
    Ok(leg.render(PbxLeg::answer_line(n, &format, direction)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn carrier_failures_map_to_sip_or_503() {
        for (carrier, sip) in [(486, 486), (603, 603), (404, 404), (480, 480)] {
            assert_eq!(super::map_failure(carrier), sip);
        }
        for odd in [0, 42, 200, 302, 700, -1, i64::MAX] {
            assert_eq!(super::map_failure(odd), 503, "{odd}");
        }
    }
}

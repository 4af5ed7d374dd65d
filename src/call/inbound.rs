//! An inbound call (carrier → PBX): the DID routed to a trunk, the WebRTC answer prepared, an
//! INVITE to the trunk's registered contact, the PBX's progress mapped onto the carrier
//! (`ringing`, `callAnswer`, `reject`), and the carrier's `callCancel` as CANCEL.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::bridge::{Bridge, PbxFlow};
use super::context::CallContext;
use super::pbx_leg::{pbx_media, PbxLeg};
use super::record::{CallDirection, CallRecord, EndedBy};
use super::registry::{CallPhase, LiveCall};
use super::session_timer::{self, SessionTimer};
use crate::carrier::events::CallEvent;
use crate::carrier::CarrierCall;
use crate::media::engine::FarEnd;
use crate::media::pbx_sdp::{self, MediaLine};
use crate::media::{g711_in_sdp, Direction, TELEPHONE_EVENT_PT};
use crate::sip::tu::{CallRef, DialogCommand, DialogEvent, InviteToPbx, OwnRequest};

/// Runs one carrier call toward the PBX to its end; always reports `Done` and one record.
pub async fn run(ctx: Arc<CallContext>, call: CallRef, carrier: CarrierCall) {
    let span = tracing::info_span!("call", call = call.0, session = %carrier.session());
    async move {
        let incoming = carrier.incoming().cloned().unwrap_or_default();
        let called_raw = incoming.callee_number.clone().unwrap_or_default();
        let mut record = CallRecord::new(call, CallDirection::Inbound, called_raw.clone());
        record.carrier_session = Some(carrier.session().to_string());
        record.carrier_account = Some(carrier.account().to_string());
        record.caller_raw = incoming.caller_number.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut view = LiveCall::new(
            CallDirection::Inbound,
            called_raw.clone(),
            incoming.caller_number.clone(),
        );
        view.carrier_session = Some(carrier.session().to_string());
        ctx.registry.insert(call, tx, view);
        let mut leg = PbxLeg::new(ctx.clone(), call, 0);
        inbound(&ctx, &mut leg, carrier, rx, &mut record).await;
        record.ended = SystemTime::now();
        info!(code = record.sip_code, ended_by = ?record.ended_by, "call ended");
        ctx.done(call);
        ctx.records.record(record);
    }
    .instrument(span)
    .await
}

async fn reject(carrier: &mut CarrierCall, record: &mut CallRecord, code: u16, why: &str) {
    record.sip_code = code;
    record.sip_reason = why.to_string();
    if let Err(e) = carrier.reject().await {
        warn!(error = %e, "carrier reject failed");
    }
}

async fn inbound(
    ctx: &Arc<CallContext>,
    leg: &mut PbxLeg,
    mut carrier: CarrierCall,
    mut rx: mpsc::UnboundedReceiver<DialogEvent>,
    record: &mut CallRecord,
) {
    let conf = ctx.settings.current();
    let incoming = carrier.incoming().cloned().unwrap_or_default();
    let callee = incoming.callee_number.clone().unwrap_or_default();
    let did_e164 = conf
        .numbers
        .reformat(&callee, crate::numbers::OutputFormat::E164)
        .unwrap_or_else(|| callee.clone());
    record.called = Some(did_e164.clone());
    let caller = incoming
        .caller_number
        .as_deref()
        .and_then(|n| conf.numbers.reformat(n, conf.inbound.caller_format));
    record.caller = caller.clone();
    let Some(trunk) = conf.route(&did_e164).map(str::to_owned) else {
        warn!(did = %did_e164, "inbound carrier call rejected: no trunk to route it to");
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 404, "No Route").await;
    };
    record.trunk = Some(trunk.clone());
    ctx.registry
        .update(leg.call, |a| a.trunk = Some(trunk.clone()));
    if ctx.is_draining() {
        info!("inbound carrier call rejected: stopping");
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 503, "Shutting Down").await;
    }
    let Some(offer) = incoming.offer.clone() else {
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 488, "No Offer").await;
    };
    let Some(service) = ctx.carrier.clone() else {
        return;
    };
    let rtp = match ctx.ports.allocate() {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "inbound carrier call rejected: no RTP port");
            record.ended_by = EndedBy::Gateway;
            return reject(&mut carrier, record, 503, "No RTP Port").await;
        }
    };
    leg.rtp_port = rtp.port;
    let mut settings = ctx.peer.clone();
    settings.ice_servers = service.ice_servers_for(&carrier);
    // The PBX chooses between the G.711 codecs the carrier offered; the WebRTC answer follows
    // its choice once it answers, so no codec is forced on either side.
    let offered = g711_in_sdp(&offer);
    let Some(first) = offered.first().copied() else {
        warn!("inbound carrier call rejected: its offer has no PCMU or PCMA");
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 488, "No G.711").await;
    };
    let offer_line = MediaLine {
        codec: first,
        audio_pt: first.payload_type(),
        event_pt: offer
            .to_ascii_lowercase()
            .contains("telephone-event/8000")
            .then_some(TELEPHONE_EVENT_PT),
        direction: Direction::SendRecv,
        alternative: offered.get(1).copied(),
    };
    let our_offer = leg.render(offer_line);
    let did = conf
        .numbers
        .reformat(&did_e164, conf.inbound.did_format)
        .unwrap_or_else(|| did_e164.clone());
    ctx.send(DialogCommand::Invite(
        leg.call,
        Box::new(InviteToPbx {
            trunk: trunk.clone(),
            did,
            caller_number: if caller.is_some() {
                caller.clone()
            } else {
                None
            },
            caller_name: incoming.caller_name.clone(),
            sdp: our_offer,
            headers: session_timer::request_headers(&conf.timer),
        }),
    ));
    let mut ringing = false;
    let mut cancelled = false;
    let no_answer = tokio::time::sleep(conf.calls.no_answer_timeout);
    tokio::pin!(no_answer);
    let (pbx_sdp_text, timer_headers) = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(DialogEvent::Response { request: OwnRequest::Invite, code, reason, sdp, timer }) => match code {
                    180..=183 if !ringing && !cancelled => {
                        ringing = true;
                        ctx.registry.update(leg.call, |a| a.phase = CallPhase::Ringing);
                        if let Err(e) = carrier.ringing().await {
                            warn!(error = %e, "carrier ringing failed");
                        }
                    }
                    100..=199 => {}
                    200..=299 if cancelled => {
                        // the answer crossed our CANCEL: the core hangs up with BYE
                        record.sip_code = code;
                        record.ended_by = EndedBy::Carrier;
                        return;
                    }
                    200..=299 => break (sdp, timer),
                    _ => {
                        if cancelled {
                            record.sip_code = code;
                            record.sip_reason = reason;
                            return;
                        }
                        match code {
                            480 if reason.contains("Not Registered") => {
                                warn!(%trunk, "inbound carrier call rejected: trunk is not registered")
                            }
                            _ => info!(code, %reason, "the PBX refused the call"),
                        }
                        record.ended_by = EndedBy::Pbx;
                        return reject(&mut carrier, record, code, &reason).await;
                    }
                },
                Some(DialogEvent::Shutdown) if !cancelled => {
                    record.ended_by = EndedBy::Gateway;
                    record.sip_code = 487;
                    cancelled = true;
                    ctx.send(DialogCommand::Cancel(leg.call));
                    if let Err(e) = carrier.reject().await {
                        warn!(error = %e, "carrier reject failed");
                    }
                }
                Some(_) => {}
                None => return,
            },
            ev = carrier.next_event(), if !cancelled => match ev {
                Some(CallEvent::Cancelled) | Some(CallEvent::Ended { .. }) | None => {
                    info!("the carrier caller gave up: CANCEL");
                    record.ended_by = EndedBy::Carrier;
                    record.sip_code = 487;
                    cancelled = true;
                    ctx.send(DialogCommand::Cancel(leg.call));
                }
                Some(_) => {}
            },
            _ = &mut no_answer, if !cancelled => {
                info!("the PBX did not answer in time");
                record.ended_by = EndedBy::Gateway;
                record.sip_code = 480;
                cancelled = true;
                ctx.send(DialogCommand::Cancel(leg.call));
                if let Err(e) = carrier.reject().await {
                    warn!(error = %e, "carrier reject failed");
                }
            }
        }
    };
    let Some(answer) = pbx_sdp_text.as_deref().and_then(|s| pbx_sdp::parse(s).ok()) else {
        warn!("the PBX answered without a usable SDP");
        leg.bye(Some("SIP;cause=488;text=\"no usable SDP\"".into()));
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 488, "No Usable Answer").await;
    };
    let Some(codec) = pbx_sdp::negotiate(&answer)
        .map(|n| n.codec)
        .filter(|c| offered.contains(c))
    else {
        warn!("the PBX answered with no codec we offered");
        leg.bye(Some("SIP;cause=488;text=\"codec\"".into()));
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 488, "Codec Mismatch").await;
    };
    let (peer, answer_sdp, format) = match ctx
        .media
        .answer(&settings, &offer, Some(codec), FarEnd::Pbx)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "WebRTC answer failed");
            leg.bye(Some("Q.850;cause=41;text=\"media failure\"".into()));
            record.ended_by = EndedBy::Gateway;
            return reject(&mut carrier, record, 503, "Media Failure").await;
        }
    };
    let Some(media) = pbx_media(&answer, format.codec) else {
        leg.bye(Some("SIP;cause=488;text=\"codec\"".into()));
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 488, "Codec Mismatch").await;
    };
    // What is now agreed with the PBX: one codec, its payload types.
    leg.line = Some(MediaLine {
        codec: format.codec,
        audio_pt: media.audio_pt,
        event_pt: media
            .event_pt
            .filter(|_| format.telephone_event_pt.is_some()),
        direction: Direction::SendRecv,
        alternative: None,
    });
    leg.pbx = Some(media);
    if let Err(e) = peer.attach_pbx(rtp, media) {
        warn!(error = %e, "media engine refused the call");
        leg.bye(Some("Q.850;cause=41;text=\"media failure\"".into()));
        record.ended_by = EndedBy::Gateway;
        return reject(&mut carrier, record, 503, "Media Failure").await;
    }
    if let Err(e) = carrier.answer(&answer_sdp).await {
        warn!(error = %e, "carrier callAnswer failed");
        leg.bye(Some("Q.850;cause=41;text=\"carrier answer failed\"".into()));
        record.ended_by = EndedBy::Gateway;
        record.sip_code = 200;
        return;
    }
    record.answered_now();
    let view = peer.view();
    ctx.registry.update(leg.call, |a| {
        a.phase = CallPhase::Answered;
        a.media = Some(view);
    });
    info!(%trunk, codec = ?format.codec, "answered by the PBX");
    let negotiated = session_timer::on_2xx(timer_headers.session_expires.as_deref());
    let timer = negotiated.map(|n| SessionTimer::new(&n, n.we_refresh(false), Instant::now()));
    let bridge = Bridge {
        leg,
        carrier,
        peer,
        format,
        timer,
        timer_negotiated: negotiated,
        flow: PbxFlow::Answered,
        pbx_direction: answer.effective_direction(),
    };
    bridge.run(rx, record).await;
}

//! The task that runs one call: it holds what the call's machine cannot (the carrier session,
//! the WebRTC leg, the RTP port, the channels) and does what the machine asks, one output at a
//! time in order, handing each result back; between outputs it waits for the SIP core, the
//! carrier, the WebRTC leg's state or the machine's next deadline. It decides nothing about
//! the call. Every call ends here with one record and `done`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};
use tracing::{info, Instrument};

use super::context::CallContext;
use super::facts::CallFacts;
use super::io::{CarrierOp, Done, EffectError, Input, MediaOp, Output};
use super::machine::{CallMachine, CallStart};
use crate::carrier::{CarrierCall, Reservation};
use crate::cluster::{Claim, Cluster, Slot};
use crate::media::engine::{FarEnd, MediaCall};
use crate::media::rtp_leg::RtpLeg;
use crate::media::PeerState;
use crate::sip::shared::NonceUse;
use crate::sip::tu::{AdmittedInvite, CallRef, DialogEvent};

/// Runs a PBX's admitted INVITE (already in the registry as `facts` say) to its end.
pub async fn run_outbound(
    ctx: Arc<CallContext>,
    facts: CallFacts,
    inv: AdmittedInvite,
    rx: mpsc::UnboundedReceiver<DialogEvent>,
) {
    let call = facts.call;
    let span = tracing::info_span!("call", call = call.0, call_id = %inv.call_id, session = tracing::field::Empty);
    async move {
        let machine = CallMachine::outbound(start(&ctx, facts), &inv);
        let mut driver = Driver::new(ctx, call, rx, None);
        driver.nonce = inv.nonce.clone();
        driver.run(machine).await;
    }
    .instrument(span)
    .await
}

/// Runs a carrier's call toward the PBX to its end.
pub async fn run_inbound(ctx: Arc<CallContext>, call: CallRef, carrier: CarrierCall) {
    let span = tracing::info_span!("call", call = call.0, session = %carrier.session());
    async move {
        let incoming = carrier.incoming().cloned().unwrap_or_default();
        let facts = CallFacts::inbound(
            call,
            &incoming,
            carrier.session(),
            carrier.account(),
            Instant::now(),
            SystemTime::now(),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        ctx.registry.insert(call, tx, facts.live(None));
        let machine = CallMachine::inbound(start(&ctx, facts), &incoming, ctx.is_draining());
        Driver::new(ctx, call, rx, Some(carrier)).run(machine).await;
    }
    .instrument(span)
    .await
}

fn start(ctx: &CallContext, facts: CallFacts) -> CallStart {
    CallStart {
        facts,
        sdp_ip: ctx.sdp_ip,
        settings: ctx.settings.clone(),
        rng: StdRng::from_entropy(),
    }
}

/// What one call holds while it runs.
struct Driver {
    ctx: Arc<CallContext>,
    call: CallRef,
    dialog: Option<mpsc::UnboundedReceiver<DialogEvent>>,
    carrier: Option<CarrierCall>,
    /// The carrier session still has events to read.
    carrier_open: bool,
    reservation: Option<Reservation>,
    rtp: Option<RtpLeg>,
    media: Option<MediaCall>,
    peer_state: Option<watch::Receiver<PeerState>>,
    /// A PBX INVITE's digest nonce use, spent cluster-wide at admission.
    nonce: Option<NonceUse>,
    /// Where the call is counted across the cluster: released when it ends.
    slot: Option<(Cluster, String, String)>,
}

impl Driver {
    fn new(
        ctx: Arc<CallContext>,
        call: CallRef,
        dialog: mpsc::UnboundedReceiver<DialogEvent>,
        carrier: Option<CarrierCall>,
    ) -> Driver {
        Driver {
            ctx,
            call,
            dialog: Some(dialog),
            carrier_open: carrier.is_some(),
            carrier,
            reservation: None,
            rtp: None,
            media: None,
            peer_state: None,
            nonce: None,
            slot: None,
        }
    }

    async fn run(mut self, mut machine: CallMachine) {
        loop {
            while let Some(out) = machine.poll_output() {
                if let Output::Finished = out {
                    return self.finish(&machine);
                }
                if let Some(input) = self.execute(out, &machine).await {
                    machine.handle(input, Instant::now());
                }
            }
            let deadline = machine.poll_timeout();
            let Driver {
                dialog,
                carrier,
                carrier_open,
                peer_state,
                ..
            } = &mut self;
            let input = tokio::select! {
                input = next_dialog(dialog) => input,
                input = next_carrier(carrier, carrier_open) => input,
                input = next_peer(peer_state) => input,
                () = sleep_until(deadline) => {
                    machine.handle_timeout(Instant::now());
                    continue;
                }
            };
            machine.handle(input, Instant::now());
        }
    }

    /// Does `out`; its result, if it has one.
    async fn execute(&mut self, out: Output, machine: &CallMachine) -> Option<Input> {
        let result = match out {
            Output::Sip(cmd) => {
                self.ctx.send(cmd);
                Ok(None)
            }
            Output::Publish => {
                let live = machine
                    .facts()
                    .live(self.media.as_ref().map(MediaCall::view));
                self.ctx.registry.update(self.call, |v| *v = live);
                Ok(None)
            }
            Output::Admit { emergency } => self.admit(emergency, machine).await.map(Some),
            Output::Reserve { emergency } => self.reserve(emergency).map(Some),
            Output::AllocatePort => match self.ctx.ports.allocate() {
                Ok(leg) => {
                    let port = leg.port;
                    self.rtp = Some(leg);
                    Ok(Some(Done::PortReady { port }))
                }
                Err(e) => Err(EffectError::Port(e)),
            },
            Output::StartCall { e164, sdp } => self.start_call(&e164, &sdp).await.map(Some),
            Output::Carrier(op) => self.carrier_op(op).await.map(Some),
            Output::Media(op) => self.media_op(op).await,
            Output::Finished => Ok(None),
        };
        match result {
            Ok(done) => done.map(Input::Done),
            Err(e) => Some(Input::Failed(e)),
        }
    }

    /// The call counted against its trunk on every instance, and a PBX INVITE's nonce use
    /// spent cluster-wide. Redis unreachable: the local checks the SIP core made stand.
    async fn admit(&mut self, emergency: bool, machine: &CallMachine) -> Result<Done, EffectError> {
        let Some(cluster) = self.ctx.cluster.clone() else {
            return Ok(Done::Admitted);
        };
        let Some(trunk) = machine.facts().trunk.clone() else {
            return Ok(Done::Admitted);
        };
        if let Some(nonce) = &self.nonce {
            match cluster.claim_nonce(nonce).await {
                Claim::Replayed => return Err(EffectError::Replayed),
                Claim::Unknown => {
                    tracing::debug!("nonce use not checked across the cluster: Redis unreachable")
                }
                Claim::Fresh => {}
            }
        }
        let max = self.ctx.settings.current().trunk_max_calls(&trunk);
        let key = self.call.0.to_string();
        match cluster
            .acquire_call(&trunk, &key, max.filter(|_| !emergency))
            .await
        {
            Slot::Full => Err(EffectError::TrunkFull(max.unwrap_or(0))),
            Slot::Granted | Slot::Unknown => {
                self.slot = Some((cluster, trunk, key));
                Ok(Done::Admitted)
            }
        }
    }

    fn reserve(&mut self, emergency: bool) -> Result<Done, EffectError> {
        let carrier = self.ctx.carrier.as_ref().ok_or(EffectError::NoCarrier)?;
        let reserved = if emergency {
            carrier.reserve_emergency()
        } else {
            carrier.reserve()
        };
        let r = reserved.map_err(EffectError::Capacity)?;
        let account = r.account().to_owned();
        self.reservation = Some(r);
        Ok(Done::Reserved { account })
    }

    async fn start_call(&mut self, e164: &str, sdp: &str) -> Result<Done, EffectError> {
        let reservation = self
            .reservation
            .take()
            .ok_or(EffectError::Missing("the carrier reservation"))?;
        let carrier = reservation
            .start_call(e164, sdp)
            .await
            .map_err(EffectError::StartCall)?;
        let session = carrier.session().to_owned();
        let account = carrier.account().to_owned();
        tracing::Span::current().record("session", session.as_str());
        self.carrier = Some(carrier);
        self.carrier_open = true;
        Ok(Done::CarrierStarted { session, account })
    }

    async fn carrier_op(&mut self, op: CarrierOp) -> Result<Done, EffectError> {
        let step = op.step();
        let c = self
            .carrier
            .as_mut()
            .ok_or(EffectError::Missing("the carrier session"))?;
        let r = match op {
            CarrierOp::Ringing => c.ringing().await,
            CarrierOp::Answer { sdp } => c.answer(&sdp).await,
            CarrierOp::Reject => c.reject().await,
            CarrierOp::End { reason } => c.end(Some(reason)).await,
            CarrierOp::Update { sdp } => c.update(&sdp).await,
            CarrierOp::RespondUpdate { sdp } => c.respond_update(&sdp).await,
        };
        r.map(|()| Done::Carrier(step))
            .map_err(|e| EffectError::Carrier(step, e))
    }

    async fn media_op(&mut self, op: MediaOp) -> Result<Option<Done>, EffectError> {
        match op {
            MediaOp::Offer { codecs } => {
                let mut settings = self.ctx.peer.clone();
                settings.ice_servers = self
                    .reservation
                    .as_ref()
                    .ok_or(EffectError::Missing("the carrier reservation"))?
                    .ice_servers()
                    .to_vec();
                let (media, sdp) = self
                    .ctx
                    .media
                    .offer(&settings, &codecs, FarEnd::Pbx)
                    .await
                    .map_err(EffectError::Offer)?;
                self.watch(media);
                return Ok(Some(Done::Offered { sdp }));
            }
            MediaOp::Answer { offer, codec } => {
                let service = self.ctx.carrier.as_ref().ok_or(EffectError::NoCarrier)?;
                let carrier = self
                    .carrier
                    .as_ref()
                    .ok_or(EffectError::Missing("the carrier session"))?;
                let mut settings = self.ctx.peer.clone();
                settings.ice_servers = service.ice_servers_for(carrier);
                let (media, sdp, format) = self
                    .ctx
                    .media
                    .answer(&settings, &offer, Some(codec), FarEnd::Pbx)
                    .await
                    .map_err(EffectError::MediaAnswer)?;
                self.watch(media);
                return Ok(Some(Done::MediaAnswered { sdp, format }));
            }
            _ => {}
        }
        let media = self
            .media
            .as_ref()
            .ok_or(EffectError::Missing("the WebRTC leg"))?;
        Ok(Some(match op {
            MediaOp::AcceptAnswer { sdp } => Done::AnswerAccepted(
                media
                    .accept_answer(&sdp)
                    .await
                    .map_err(EffectError::AcceptAnswer)?,
            ),
            MediaOp::AttachPbx(pbx) => {
                let rtp = self
                    .rtp
                    .take()
                    .ok_or(EffectError::Missing("the RTP port"))?;
                media.attach_pbx(rtp, pbx).map_err(EffectError::Attach)?;
                Done::Attached
            }
            MediaOp::UpdatePbx(pbx) => {
                media.update_pbx(pbx);
                return Ok(None);
            }
            MediaOp::Reoffer(direction) => Done::Reoffered {
                sdp: media
                    .create_reoffer(direction)
                    .await
                    .map_err(EffectError::Reoffer)?,
            },
            MediaOp::AnswerReoffer { sdp } => {
                let (sdp, format) = media
                    .answer_reoffer(&sdp)
                    .await
                    .map_err(EffectError::AnswerReoffer)?;
                Done::ReofferAnswered { sdp, format }
            }
            MediaOp::ReadActivity => Done::Activity {
                last_from_pbx: media.last_from_pbx(),
            },
            MediaOp::Offer { .. } | MediaOp::Answer { .. } => return Ok(None),
        }))
    }

    /// The WebRTC leg exists: its state changes are watched from now on.
    fn watch(&mut self, media: MediaCall) {
        self.peer_state = Some(media.peer_state());
        self.media = Some(media);
    }

    /// The call's record, and the call forgotten.
    fn finish(self, machine: &CallMachine) {
        let view = self.media.as_ref().map(MediaCall::view);
        let record = machine.facts().record(Instant::now(), view.as_ref());
        if let Some(m) = &self.media {
            m.close();
        }
        info!(code = record.sip_code, ended_by = ?record.ended_by,
              from_pbx = record.rtp_packets_from_pbx, to_pbx = record.rtp_packets_to_pbx,
              "call ended");
        if let Some((cluster, trunk, key)) = &self.slot {
            cluster.release_call(trunk, key);
        }
        self.ctx.done(self.call);
        self.ctx.records.record(record);
    }
}

/// The SIP core's next word; once it is gone, [`Input::DialogGone`] and then silence.
async fn next_dialog(rx: &mut Option<mpsc::UnboundedReceiver<DialogEvent>>) -> Input {
    let Some(events) = rx.as_mut() else {
        return std::future::pending().await;
    };
    match events.recv().await {
        Some(e) => Input::Dialog(e),
        None => {
            *rx = None;
            Input::DialogGone
        }
    }
}

/// The carrier's next event; once they end, [`Input::CarrierGone`] and then silence.
async fn next_carrier(carrier: &mut Option<CarrierCall>, open: &mut bool) -> Input {
    let Some(c) = carrier.as_mut().filter(|_| *open) else {
        return std::future::pending().await;
    };
    match c.next_event().await {
        Some(e) => Input::Carrier(e),
        None => {
            *open = false;
            Input::CarrierGone
        }
    }
}

/// The WebRTC leg's next state; a leg whose state can no longer change is closed.
async fn next_peer(rx: &mut Option<watch::Receiver<PeerState>>) -> Input {
    let Some(state) = rx.as_mut() else {
        return std::future::pending().await;
    };
    match state.changed().await {
        Ok(()) => Input::Peer(*state.borrow_and_update()),
        Err(_) => {
            *rx = None;
            Input::Peer(PeerState::Closed)
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

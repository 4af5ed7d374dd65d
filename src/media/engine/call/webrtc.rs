//! A call's WebRTC leg: datagrams into str0m (with the early DTLS flight kept for a retry),
//! str0m driven until it wants time to pass, what it transmits sent (through TURN, the call's
//! own socket or the shared port's batch), its events turned into the call's state, and the
//! offer/answer exchange.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};

use super::super::demux::Drop as DemuxDrop;
use super::{Call, Io, CONNECT_TIMEOUT, DISCONNECTED_LIMIT};
use crate::media::turn::{classify, PacketKind};
use crate::media::{AudioFormat, Codec, PeerError, PeerState};

/// An early DTLS flight kept for a retry.
pub(super) struct EarlyDtls {
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

/// Largest early DTLS datagram kept (a flight's datagrams fit str0m's MTU).
const EARLY_DTLS_MAX: usize = 1500;

impl Call {
    /// A datagram for this call's WebRTC leg (shared port or its own socket).
    pub fn on_webrtc_datagram(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        now: Instant,
        io: &mut Io<'_>,
    ) {
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
            io.demux_counters.count(DemuxDrop::Garbage);
            return;
        };
        let input = Input::Receive(now, recv);
        if !self.peer.rtc().accepts(&input) {
            // A DTLS flight from the far end can overtake our ICE checks (its side nominated
            // first): dropped, it would cost a DTLS retransmission timeout (~1 s of audio).
            // Keep the latest one until ICE accepts its source.
            if !self.connected && classify(data) == PacketKind::Dtls && data.len() <= EARLY_DTLS_MAX
            {
                let buf = self.early_dtls.get_or_insert_with(|| EarlyDtls {
                    source,
                    destination,
                    data: Vec::with_capacity(EARLY_DTLS_MAX),
                });
                buf.source = source;
                buf.destination = destination;
                buf.data.clear();
                buf.data.extend_from_slice(data);
            }
            io.demux_counters.count(DemuxDrop::Refused);
            return;
        }
        let is_stun = classify(data) == PacketKind::Stun;
        if let Err(e) = self.peer.rtc().handle_input(input) {
            tracing::debug!(error = %e, "WebRTC input refused");
            io.demux_counters.count(DemuxDrop::Refused);
        } else {
            io.demux_counters.delivered.fetch_add(1, Ordering::Relaxed);
            if is_stun && !self.connected {
                self.retry_early_dtls(now);
            }
        }
        self.drive(now, io);
    }

    /// Gives a held early DTLS flight another chance once ICE has moved on.
    fn retry_early_dtls(&mut self, now: Instant) {
        let Some(held) = self.early_dtls.as_ref() else {
            return;
        };
        let Ok(recv) = Receive::new(Protocol::Udp, held.source, held.destination, &held.data)
        else {
            self.early_dtls = None;
            return;
        };
        let input = Input::Receive(now, recv);
        let rtc = self.peer.rtc();
        if rtc.accepts(&input) {
            let _ = rtc.handle_input(input);
            self.early_dtls = None;
        }
    }

    /// Drives str0m after a write, so written packets leave now.
    pub(super) fn poke(&mut self, now: Instant, io: &mut Io<'_>) {
        if let Err(e) = self.peer.rtc().handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "WebRTC timeout handling failed");
        }
        self.drive(now, io);
    }

    /// The SDP exchange is done: the format is published, and ICE and DTLS run against the
    /// clock from now (a re-negotiation of a connected leg leaves the clock alone).
    fn negotiated(&mut self, format: AudioFormat, now: Instant) {
        self.shared.set_format(format);
        if !self.connected && self.connect_by.is_none() {
            self.connect_by = Some(now + CONNECT_TIMEOUT);
            self.negotiated_at = Some(now);
        }
    }

    /// Runs str0m until it wants time to pass: datagrams out, events handled.
    pub fn drive(&mut self, now: Instant, io: &mut Io<'_>) {
        // Echoed packets and flushed early audio are written while draining: drive again so
        // they leave in this pass (bounded: a pass writes at most what it drained).
        for _ in 0..4 {
            let mut wrote = false;
            loop {
                match self.peer.rtc().poll_output() {
                    Ok(Output::Timeout(t)) => {
                        self.next_rtc = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        self.transmit(t.source, t.destination, t.contents.into(), now, io)
                    }
                    Ok(Output::Event(e)) => wrote |= self.on_event(e, now, io),
                    Err(e) => {
                        self.span
                            .in_scope(|| tracing::warn!(error = %e, "WebRTC leg failed"));
                        self.set_state(PeerState::Failed);
                        self.next_rtc = now + Duration::from_secs(3600);
                        return;
                    }
                }
            }
            if !wrote {
                return;
            }
            if let Err(e) = self.peer.rtc().handle_input(Input::Timeout(now)) {
                tracing::debug!(error = %e, "WebRTC timeout handling failed");
            }
        }
    }

    fn transmit(
        &mut self,
        source: SocketAddr,
        dest: SocketAddr,
        data: Vec<u8>,
        now: Instant,
        io: &mut Io<'_>,
    ) {
        if let Some(link) = self.turns.iter_mut().find(|l| l.relayed() == Some(source)) {
            link.send_to(dest, &data, now, io.registry);
            return;
        }
        if let Some(s) = &self.own_socket {
            let _ = s.send_to(&data, dest);
            return;
        }
        if !self.addrs.contains(&dest) {
            if io.demux.learn_addr(dest, self.key) {
                self.addrs.push(dest);
            } else {
                let _in = self.span.enter();
                tracing::warn!(
                    %dest,
                    "the far end uses one address for two calls on this port: the second cannot \
                     connect (set [media] webrtc_port_per_call = true for this carrier)"
                );
            }
        }
        io.batch.push(dest, data);
    }

    /// Returns true when it wrote RTP that needs another drive.
    fn on_event(&mut self, e: Event, now: Instant, io: &mut Io<'_>) -> bool {
        match e {
            Event::Connected => {
                self.connected = true;
                self.early_dtls = None;
                self.connect_by = None;
                let after = self.negotiated_at.map(|t| now.saturating_duration_since(t));
                self.span.in_scope(|| {
                    tracing::debug!(after_ms = ?after.map(|d| d.as_millis()), "WebRTC leg connected")
                });
                self.set_state(PeerState::Connected);
                return self.flush_early(now, io);
            }
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Checking => self.set_state(PeerState::Connecting),
                IceConnectionState::Disconnected if self.connected => {
                    self.connect_by.get_or_insert(now + DISCONNECTED_LIMIT);
                    self.set_state(PeerState::Disconnected)
                }
                IceConnectionState::Connected | IceConnectionState::Completed if self.connected => {
                    self.connect_by = None;
                    self.set_state(PeerState::Connected)
                }
                _ => {}
            },
            Event::RtpPacket(p) => return self.on_rtp(&p, now, io),
            Event::MediaIngressStats(s) => self.quality.on_ingress(&s),
            Event::MediaEgressStats(s) => self.quality.on_egress(&s),
            Event::Closed => self.set_state(PeerState::Closed),
            _ => {}
        }
        false
    }

    /// A packet from the far end: to the PBX, or to the local far end. True when it wrote RTP
    /// that needs another drive (an echo).
    fn on_rtp(&mut self, p: &str0m::rtp::RtpPacket, now: Instant, io: &mut Io<'_>) -> bool {
        if self.pbx.is_some() {
            self.rtp_to_pbx(p, now, io);
            return false;
        }
        self.rtp_to_far(p, now)
    }

    /// The remote's answer to our offer: permissions for its candidates first, then str0m.
    pub fn accept_answer(
        &mut self,
        sdp: &str,
        now: Instant,
        registry: &mio::Registry,
    ) -> Result<AudioFormat, PeerError> {
        self.permit_remote(sdp, now, registry);
        let format = self.peer.accept_answer(sdp)?;
        self.negotiated(format, now);
        Ok(format)
    }

    /// The remote's offer (first or re-offer); permissions for its candidates are the caller's
    /// (before gathering for a first offer, with [`Self::permit_remote`]).
    pub fn accept_offer(
        &mut self,
        sdp: &str,
        codec: Option<Codec>,
        now: Instant,
    ) -> Result<(String, AudioFormat), PeerError> {
        let (answer, format) = self.peer.accept_offer(sdp, codec)?;
        self.negotiated(format, now);
        Ok((answer, format))
    }
}

//! A call's PBX side: its RTP and RTCP sockets and the relay. The PBX's RTP goes (or, before
//! the WebRTC leg is up, is held and later flushed) toward the carrier, the carrier's toward
//! the PBX; both streams are counted in the call's receive statistics, and the PBX's RTCP and
//! our reports to it feed and carry the quality figures.

use std::net::SocketAddr;
use std::time::Instant;

use super::super::call_quality::QualityTracker;
use super::super::peer::WebRtcPeer;
use super::{Call, Io};
use crate::media::relay::{FromPbx, PbxMedia, Relay, RelayCounters};

/// The PBX side: its RTP and RTCP sockets and the relay.
pub struct PbxSide {
    pub rtp: mio::net::UdpSocket,
    /// quinn-udp's state for batched reads of the RTP socket.
    pub rtp_state: quinn_udp::UdpSocketState,
    pub rtcp: mio::net::UdpSocket,
    pub relay: Relay,
}

/// Datagrams per `recvmmsg` on a PBX RTP socket, and their largest size.
pub const PBX_BATCH: usize = 8;
pub const PBX_DATAGRAM: usize = 1500;

impl Call {
    /// The PBX's RTP socket is readable: relay (or hold) everything queued on it.
    pub fn on_pbx_rtp(&mut self, now: Instant, io: &mut Io<'_>) {
        let Some(pbx) = self.pbx.as_mut() else { return };
        let mut wrote = false;
        loop {
            let mut metas = [quinn_udp::RecvMeta::default(); PBX_BATCH];
            let n = {
                let mut it = io.pbx_bufs.iter_mut();
                let mut slices: [std::io::IoSliceMut<'_>; PBX_BATCH] = std::array::from_fn(|_| {
                    std::io::IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..]))
                });
                match pbx.rtp_state.recv(
                    quinn_udp::UdpSockRef::from(&pbx.rtp),
                    &mut slices,
                    &mut metas,
                ) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // ICMP port unreachable from an earlier send surfaces here: not fatal.
                    Err(_) => continue,
                }
            };
            let c = &self.shared.counters;
            let format = self.peer.format();
            for (buf, meta) in io.pbx_bufs.iter().zip(&metas).take(n) {
                // GRO may join several datagrams of one source in a buffer, `stride` apart.
                for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                    if !self.connected {
                        pbx.relay.hold(meta.addr, datagram, c, now);
                        continue;
                    }
                    if let Some(p) = pbx.relay.from_pbx(meta.addr, datagram, format, c, now) {
                        wrote |= up(&mut self.peer, &mut self.quality, p, datagram, c, now);
                    }
                }
            }
            // Edge-triggered readiness: a short batch means the socket was drained.
            if n < PBX_BATCH {
                break;
            }
        }
        if wrote {
            self.poke(now, io);
        }
    }

    /// The PBX's RTCP socket is readable: its reports feed the quality figures.
    pub fn on_pbx_rtcp(&mut self, now: Instant, io: &mut Io<'_>) {
        let Some(pbx) = self.pbx.as_mut() else { return };
        loop {
            let n = match pbx.rtcp.recv_from(io.scratch) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            self.quality.on_pbx_rtcp(
                &io.scratch[..n],
                pbx.relay.down_ssrc(),
                &self.shared.counters,
                now,
            );
        }
    }

    /// The WebRTC leg connected: the audio held for it goes now, oldest first (true: written,
    /// drive again).
    pub(super) fn flush_early(&mut self, now: Instant, io: &mut Io<'_>) -> bool {
        let Some(pbx) = self.pbx.as_mut() else {
            return false;
        };
        let format = self.peer.format();
        let mut wrote = false;
        let c = &self.shared.counters;
        while let Some(n) = pbx.relay.take_held(io.scratch, c, now) {
            let datagram = &io.scratch[..n];
            if let Some(p) = pbx.relay.from_pbx_checked(datagram, format, c) {
                wrote |= up(&mut self.peer, &mut self.quality, p, datagram, c, now);
            }
        }
        wrote
    }

    /// A packet from the carrier on a PBX call: counted, and relayed to the PBX when it can go.
    pub(super) fn rtp_to_pbx(&mut self, p: &str0m::rtp::RtpPacket, now: Instant, io: &mut Io<'_>) {
        let Some(pbx) = self.pbx.as_mut() else {
            return;
        };
        let pt = *p.header.payload_type;
        let (seq, ts, marker, ssrc) = (
            p.header.sequence_number,
            p.header.timestamp,
            p.header.marker,
            *p.header.ssrc,
        );
        let format = self.peer.format();
        let c = &self.shared.counters;
        self.quality.on_carrier_packet(ssrc, seq, ts, c, now);
        if let Some((len, dest)) = pbx
            .relay
            .to_pbx(pt, marker, seq, ts, ssrc, &p.payload, format, c, io.scratch)
        {
            match pbx.rtp.send_to(&io.scratch[..len], dest) {
                Ok(_) => {
                    RelayCounters::add(&c.to_pbx_packets, 1);
                    RelayCounters::add(&c.to_pbx_bytes, p.payload.len() as u64);
                    // the timestamp as renumbered toward the PBX, for our sender reports
                    let sent_ts = u32::from_be_bytes([
                        io.scratch[4],
                        io.scratch[5],
                        io.scratch[6],
                        io.scratch[7],
                    ]);
                    self.quality.on_sent_to_pbx(sent_ts, p.payload.len(), now);
                }
                Err(e) => tracing::trace!(%dest, error = %e, "RTP toward the PBX not sent"),
            }
        }
    }

    /// The statistics interval or our RTCP report is due: the report goes to the PBX's RTCP
    /// port (a call without a PBX only refreshes its figures), and the figures are published.
    pub(super) fn reports_due(&mut self, now: Instant, io: &mut Io<'_>) {
        if let Some(pbx) = self.pbx.as_mut() {
            let dest = pbx.relay.pbx_destination();
            if let Some(len) = self.quality.pbx_report(
                io.scratch,
                pbx.relay.down_ssrc(),
                &self.shared.counters,
                now,
            ) {
                if let Some(d) = dest {
                    let rtcp = SocketAddr::new(d.ip(), d.port().wrapping_add(1));
                    let _ = pbx.rtcp.send_to(&io.scratch[..len], rtcp);
                }
            }
        } else {
            self.quality.skip_report(&self.shared.counters, now);
        }
        self.shared.set_quality(self.quality.snapshot());
    }

    /// The PBX's sockets arrive (or are replaced).
    pub fn attach_pbx(&mut self, side: PbxSide) {
        self.pbx = Some(side);
    }

    pub fn update_pbx(&mut self, pbx: PbxMedia) {
        if let Some(side) = self.pbx.as_mut() {
            side.relay.update(pbx);
        }
    }
}

/// An RTP packet of the PBX's stream (`datagram`, as the relay read it into `p`): counted in the
/// receive statistics, and written toward the carrier when the relay mapped it. True when
/// written.
fn up(
    peer: &mut WebRtcPeer,
    quality: &mut QualityTracker,
    p: FromPbx,
    datagram: &[u8],
    c: &RelayCounters,
    now: Instant,
) -> bool {
    quality.on_pbx_packet(p.ssrc, p.sequence, p.timestamp, c, now);
    let Some(m) = p.forward else {
        return false;
    };
    let Some(payload) = datagram.get(m.payload.0..m.payload.1) else {
        return false;
    };
    peer.write_rtp(
        m.payload_type,
        m.sequence,
        m.timestamp,
        m.marker,
        payload,
        now,
    )
}

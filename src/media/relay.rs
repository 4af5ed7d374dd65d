//! The relay of one call between the PBX's plain RTP and the carrier's WebRTC stream, sans-IO:
//! payload-type mapping between the legs' numbers, sequence/timestamp continuity toward each
//! side (`rtp::Continuity`), symmetric-RTP latching onto the address the PBX's RTP really comes
//! from, the early-audio hold (what the PBX sends before the WebRTC leg can carry it is kept,
//! bounded, and sent once it can be), and the call's packet counters. The media thread feeds it
//! datagrams and reads what to send; nothing here allocates per packet. The streams' sequence
//! and loss facts are not kept here: the call's receive statistics own them
//! (`quality::ReceiveStats`, fed with the header fields the relay hands back).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::rtp::{write_header, Continuity, RtpHeader};
use super::AudioFormat;

/// What the call has negotiated with the PBX; replaced on every offer/answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbxMedia {
    /// Where the PBX's SDP says to send (None: port 0 or `c=0.0.0.0`).
    pub addr: Option<SocketAddr>,
    /// The PBX's payload type numbers for the audio codec and telephone-event.
    pub audio_pt: u8,
    pub event_pt: Option<u8>,
    /// The PBX's SDP lets it receive (not `sendonly`/`inactive`).
    pub receives: bool,
}

/// Packet counters of one call (read for records and metrics; written by the media thread
/// with relaxed atomics, never locked).
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub from_pbx_packets: AtomicU64,
    pub from_pbx_bytes: AtomicU64,
    pub to_pbx_packets: AtomicU64,
    pub to_pbx_bytes: AtomicU64,
    /// From another source once latched, not RTP, or a payload type with no mapping.
    pub dropped: AtomicU64,
    /// Packets lost from the PBX's and from the carrier's stream: RFC 3550's cumulative lost
    /// (expected minus received, over every SSRC and restart) as the call's receive statistics
    /// count it, published as its highest value so far (a late packet never takes a count back).
    pub lost_from_pbx: AtomicU64,
    pub lost_from_carrier: AtomicU64,
    /// What the PBX's RTCP receiver reports say it lost of what we sent (the latest cumulative
    /// count).
    pub lost_reported_by_pbx: AtomicU64,
    /// Early packets from the PBX held until the WebRTC leg could carry them, and those
    /// dropped because they were too old or too many by then.
    pub early_held: AtomicU64,
    pub early_dropped: AtomicU64,
    /// Milliseconds after the call started at which the PBX's last RTP packet arrived (0: none).
    pub last_from_pbx_ms: AtomicU64,
}

impl RelayCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises `counter` to `value` when that is higher: a count derived from a figure that may
    /// go back (RFC 3550's cumulative lost) still only grows, as a metric counter must.
    pub fn raise(counter: &AtomicU64, value: u64) {
        counter.fetch_max(value, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How long early audio is kept for the WebRTC leg, and how many packets of it (20 ms each).
pub const EARLY_HOLD: Duration = Duration::from_millis(300);
const EARLY_SLOTS: usize = 16;
/// Largest early datagram kept (a G.711 packet of 20 ms is 172 bytes; 60 ms is 492).
const EARLY_SLOT_BYTES: usize = 512;

/// A bounded ring of early PBX datagrams, allocated once per call.
struct EarlyBuffer {
    data: Box<[[u8; EARLY_SLOT_BYTES]; EARLY_SLOTS]>,
    meta: [(u16, Instant); EARLY_SLOTS],
    head: usize,
    len: usize,
}

impl EarlyBuffer {
    fn new(now: Instant) -> Self {
        EarlyBuffer {
            data: Box::new([[0; EARLY_SLOT_BYTES]; EARLY_SLOTS]),
            meta: [(0, now); EARLY_SLOTS],
            head: 0,
            len: 0,
        }
    }

    /// Keeps a copy; the oldest goes when full. False when it does not fit a slot.
    fn push(&mut self, datagram: &[u8], now: Instant) -> (bool, bool) {
        if datagram.len() > EARLY_SLOT_BYTES {
            return (false, false);
        }
        let evicted = self.len == EARLY_SLOTS;
        let at = (self.head + self.len) % EARLY_SLOTS;
        self.data[at][..datagram.len()].copy_from_slice(datagram);
        self.meta[at] = (datagram.len() as u16, now);
        if evicted {
            self.head = (self.head + 1) % EARLY_SLOTS;
        } else {
            self.len += 1;
        }
        (true, evicted)
    }

    fn pop(&mut self) -> Option<(&[u8], Instant)> {
        if self.len == 0 {
            return None;
        }
        let at = self.head;
        self.head = (self.head + 1) % EARLY_SLOTS;
        self.len -= 1;
        let (len, when) = self.meta[at];
        Some((&self.data[at][..usize::from(len)], when))
    }
}

/// An RTP packet of the PBX's stream as the relay read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromPbx {
    /// The PBX stream's own header fields, for the receive statistics (every RTP packet of the
    /// latched source counts there, relayed or not).
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    /// What to write toward the carrier; None: dropped and counted (no mapping for its payload
    /// type, or no format negotiated yet).
    pub forward: Option<ToCarrier>,
}

/// A packet for the carrier: its header fields toward the carrier and where its payload sits
/// in the datagram that was fed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToCarrier {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: (usize, usize),
}

/// The relay of one call.
pub struct Relay {
    pbx: PbxMedia,
    latched: Option<SocketAddr>,
    up: Continuity,
    down: Continuity,
    /// Our SSRC toward the PBX.
    down_ssrc: u32,
    early: EarlyBuffer,
    started: Instant,
}

impl Relay {
    pub fn new(pbx: PbxMedia, down_ssrc: u32, now: Instant) -> Self {
        Relay {
            pbx,
            latched: None,
            up: Continuity::default(),
            down: Continuity::default(),
            down_ssrc,
            early: EarlyBuffer::new(now),
            started: now,
        }
    }

    /// New PBX-side parameters (re-INVITE, hold); a changed address re-opens latching.
    pub fn update(&mut self, pbx: PbxMedia) {
        if pbx.addr != self.pbx.addr {
            self.latched = None;
        }
        self.pbx = pbx;
    }

    pub fn down_ssrc(&self) -> u32 {
        self.down_ssrc
    }

    /// Where packets for the PBX go: the latched source, else its SDP address.
    pub fn pbx_destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.pbx.addr)
    }

    /// A datagram from the PBX's RTP socket while the WebRTC leg cannot carry it yet: checked
    /// like any other and held.
    pub fn hold(&mut self, src: SocketAddr, datagram: &[u8], c: &RelayCounters, now: Instant) {
        if !self.accept_source(src) || RtpHeader::parse(datagram).is_none() {
            RelayCounters::add(&c.dropped, 1);
            return;
        }
        self.mark_pbx_alive(c, now);
        match self.early.push(datagram, now) {
            (true, evicted) => {
                RelayCounters::add(&c.early_held, 1);
                if evicted {
                    RelayCounters::add(&c.early_dropped, 1);
                }
            }
            (false, _) => RelayCounters::add(&c.early_dropped, 1),
        }
    }

    /// Held datagrams still young enough to send, oldest first, each copied into `buf`; the
    /// caller forwards each with [`Self::from_pbx_checked`].
    pub fn take_held(&mut self, buf: &mut [u8], c: &RelayCounters, now: Instant) -> Option<usize> {
        while let Some((d, when)) = self.early.pop() {
            if now.saturating_duration_since(when) > EARLY_HOLD || d.len() > buf.len() {
                RelayCounters::add(&c.early_dropped, 1);
                continue;
            }
            buf[..d.len()].copy_from_slice(d);
            return Some(d.len());
        }
        None
    }

    fn accept_source(&mut self, src: SocketAddr) -> bool {
        match self.latched {
            Some(l) if l != src => false,
            Some(_) => true,
            None => {
                self.latched = Some(src);
                tracing::debug!(%src, "PBX RTP source latched");
                true
            }
        }
    }

    fn mark_pbx_alive(&self, c: &RelayCounters, now: Instant) {
        // max(1) keeps 0 meaning "nothing yet"
        let ms = (now.saturating_duration_since(self.started).as_millis() as u64).max(1);
        c.last_from_pbx_ms.store(ms, Ordering::Relaxed);
    }

    /// A datagram from the PBX: the RTP packet it holds, or None (not RTP, or from another
    /// source than the latched one: dropped and counted).
    // "from the PBX", "to the PBX": directions of a packet, not conversions
    #[allow(clippy::wrong_self_convention)]
    pub fn from_pbx(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        format: Option<AudioFormat>,
        c: &RelayCounters,
        now: Instant,
    ) -> Option<FromPbx> {
        if !self.accept_source(src) {
            RelayCounters::add(&c.dropped, 1);
            return None;
        }
        self.mark_pbx_alive(c, now);
        self.from_pbx_checked(datagram, format, c)
    }

    /// As [`Self::from_pbx`] for a datagram whose source was already accepted (a held one).
    #[allow(clippy::wrong_self_convention)]
    pub fn from_pbx_checked(
        &mut self,
        datagram: &[u8],
        format: Option<AudioFormat>,
        c: &RelayCounters,
    ) -> Option<FromPbx> {
        let Some(h) = RtpHeader::parse(datagram) else {
            RelayCounters::add(&c.dropped, 1);
            return None;
        };
        Some(FromPbx {
            ssrc: h.ssrc,
            sequence: h.sequence,
            timestamp: h.timestamp,
            forward: self.for_carrier(&h, format, c),
        })
    }

    /// The packet as it goes to the carrier, renumbered, or None (dropped and counted).
    fn for_carrier(
        &mut self,
        h: &RtpHeader,
        format: Option<AudioFormat>,
        c: &RelayCounters,
    ) -> Option<ToCarrier> {
        let format = format?;
        let pt = if h.payload_type == self.pbx.audio_pt {
            format.codec.payload_type()
        } else if Some(h.payload_type) == self.pbx.event_pt && format.telephone_event_pt.is_some() {
            format.telephone_event_pt.unwrap_or_default()
        } else {
            RelayCounters::add(&c.dropped, 1);
            return None;
        };
        let (sequence, timestamp, new_source) = self.up.map(h.ssrc, h.sequence, h.timestamp);
        RelayCounters::add(&c.from_pbx_packets, 1);
        RelayCounters::add(&c.from_pbx_bytes, (h.payload_end - h.payload_start) as u64);
        Some(ToCarrier {
            payload_type: pt,
            marker: h.marker || new_source,
            sequence,
            timestamp,
            payload: (h.payload_start, h.payload_end),
        })
    }

    /// A packet from the carrier: writes the RTP datagram for the PBX into `out` and returns
    /// its length and destination, or None (not for the PBX now, or unmappable).
    #[allow(clippy::too_many_arguments, clippy::wrong_self_convention)]
    pub fn to_pbx(
        &mut self,
        payload_type: u8,
        marker: bool,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &[u8],
        format: Option<AudioFormat>,
        c: &RelayCounters,
        out: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        let dest = self.pbx_destination()?;
        if !self.pbx.receives {
            return None;
        }
        let format = format?;
        let pt = if payload_type == format.codec.payload_type() {
            self.pbx.audio_pt
        } else if Some(payload_type) == format.telephone_event_pt && self.pbx.event_pt.is_some() {
            self.pbx.event_pt.unwrap_or_default()
        } else {
            RelayCounters::add(&c.dropped, 1);
            return None;
        };
        let len = 12 + payload.len();
        if len > out.len() {
            RelayCounters::add(&c.dropped, 1);
            return None;
        }
        let (sequence, timestamp, new_source) = self.down.map(ssrc, sequence, timestamp);
        write_header(
            out,
            marker || new_source,
            pt,
            sequence,
            timestamp,
            self.down_ssrc,
        );
        out[12..len].copy_from_slice(payload);
        Some((len, dest))
    }

    /// When the PBX's last RTP packet arrived (None: nothing yet).
    pub fn last_from_pbx(c: &RelayCounters, started: Instant) -> Option<Instant> {
        match c.last_from_pbx_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(started + Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, pt: u8) -> [u8; 172] {
        let mut b = [0u8; 172];
        write_header(&mut b, false, pt, seq, ts, 0x1234);
        b[12] = seq as u8;
        b
    }

    fn pbx() -> PbxMedia {
        PbxMedia {
            addr: Some("127.0.0.1:4000".parse().unwrap()),
            audio_pt: 0,
            event_pt: Some(101),
            receives: true,
        }
    }

    const FORMAT: Option<AudioFormat> = Some(AudioFormat {
        codec: super::super::Codec::Pcmu,
        telephone_event_pt: Some(101),
    });

    #[test]
    fn early_audio_is_held_in_order_and_bounded_by_age() {
        let t0 = Instant::now();
        let c = RelayCounters::default();
        let mut r = Relay::new(pbx(), 7, t0);
        let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for i in 0..20u16 {
            r.hold(
                src,
                &rtp(i, u32::from(i) * 160, 0),
                &c,
                t0 + Duration::from_millis(20 * u64::from(i)),
            );
        }
        // 16 slots: the first four went; at 400 ms the packets older than 300 ms go too
        let now = t0 + Duration::from_millis(400);
        let mut buf = [0u8; 1500];
        let mut got = Vec::new();
        while let Some(n) = r.take_held(&mut buf, &c, now) {
            let m = r
                .from_pbx_checked(&buf[..n], FORMAT, &c)
                .unwrap()
                .forward
                .unwrap();
            got.push(buf[m.payload.0]);
        }
        assert_eq!(got, (5..20).collect::<Vec<u8>>());
        assert_eq!(RelayCounters::get(&c.early_dropped), 5);
    }

    #[test]
    fn latching_drops_other_sources_and_maps_payload_types() {
        let t0 = Instant::now();
        let c = RelayCounters::default();
        let mut r = Relay::new(pbx(), 7, t0);
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        let forwarded = |p: Option<FromPbx>| p.and_then(|p| p.forward).is_some();
        assert!(forwarded(r.from_pbx(a, &rtp(1, 160, 0), FORMAT, &c, t0)));
        assert!(r.from_pbx(b, &rtp(2, 320, 0), FORMAT, &c, t0).is_none());
        // from the latched source but with no mapping: dropped, its header still handed back
        let p = r.from_pbx(a, &rtp(3, 480, 96), FORMAT, &c, t0);
        assert_eq!(p.map(|p| (p.sequence, p.forward)), Some((3, None)));
        assert_eq!(RelayCounters::get(&c.dropped), 2);
        let mut out = [0u8; 1500];
        let (n, dest) = r
            .to_pbx(101, true, 9, 99, 5, &[1, 2, 3, 4], FORMAT, &c, &mut out)
            .unwrap();
        assert_eq!((n, dest), (16, a));
        assert_eq!(out[1], 0x80 | 101);
    }
}

//! First-byte demultiplexing (RFC 7983 section 7) of a datagram arriving on a media socket:
//! is it STUN (ICE checks, Binding/TURN responses, TURN Data indications), TURN ChannelData,
//! DTLS or RTP/RTCP. Reads at most one byte and the length; never parses or allocates.

/// What a datagram is, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// 0..=3, and long enough for a STUN header.
    Stun,
    /// 64..=79 (TURN channel numbers 0x4000..=0x4FFF), with a full ChannelData header.
    ChannelData,
    /// 20..=63.
    Dtls,
    /// 128..=191 (RTP and RTCP).
    Rtp,
    /// Anything else, or too short to be what its first byte says.
    Other,
}

/// Classifies one datagram.
pub fn classify(datagram: &[u8]) -> PacketKind {
    let Some(&first) = datagram.first() else {
        return PacketKind::Other;
    };
    match first {
        0..=3 if datagram.len() >= 20 => PacketKind::Stun,
        20..=63 => PacketKind::Dtls,
        64..=79 if datagram.len() >= 4 => PacketKind::ChannelData,
        128..=191 => PacketKind::Rtp,
        _ => PacketKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges() {
        let mut stun = [0u8; 20];
        assert_eq!(classify(&stun), PacketKind::Stun);
        stun[0] = 1;
        assert_eq!(classify(&stun), PacketKind::Stun);
        assert_eq!(classify(&stun[..19]), PacketKind::Other);
        assert_eq!(classify(&[0x40, 0, 0, 0]), PacketKind::ChannelData);
        assert_eq!(
            classify(&[0x4f, 0xff, 0, 4, 1, 2, 3, 4]),
            PacketKind::ChannelData
        );
        assert_eq!(classify(&[0x40, 0, 0]), PacketKind::Other);
        assert_eq!(classify(&[0x50, 0, 0, 0]), PacketKind::Other);
        assert_eq!(classify(&[22, 254, 253]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 0, 0, 1]), PacketKind::Rtp);
        assert_eq!(classify(&[0xbf]), PacketKind::Rtp);
        assert_eq!(classify(&[0xc0]), PacketKind::Other);
        assert_eq!(classify(&[16]), PacketKind::Other);
        assert_eq!(classify(&[]), PacketKind::Other);
    }
}

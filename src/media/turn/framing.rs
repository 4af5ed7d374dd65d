//! Cuts the byte stream from a TURN server over TCP or TLS into whole STUN messages and
//! ChannelData frames (RFC 8656 12.5: over a stream, ChannelData is padded to 4 bytes).
//!
//! Why not leave this to `turn-client-proto`'s own TCP buffer: that buffer does not skip the
//! padding, and once it holds bytes it cannot parse it keeps appending every later chunk to
//! them, growing without bound. Handing the crate exactly one frame at a time keeps its buffer
//! empty, and a stream that is not STUN/ChannelData framed is detected here and ends the
//! allocation. The buffer holds at most one incomplete frame (the length field is 16 bits) plus
//! the last chunk pushed.

use std::ops::Range;

use stun_proto::types::message::{MessageHeader, StunParseError};

/// The stream is not framed as STUN/ChannelData (or a frame header is malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Desync;

#[derive(Debug, Default)]
pub(super) struct StreamFramer {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out as a frame.
    start: usize,
}

impl StreamFramer {
    /// Drops what was handed out, so the buffer only ever holds the incomplete tail.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Room for `n` more bytes at the end, for a reader to fill; `commit` says how many it did.
    pub(super) fn spare(&mut self, n: usize) -> &mut [u8] {
        self.compact();
        let len = self.buf.len();
        self.buf.resize(len + n, 0);
        &mut self.buf[len..]
    }

    /// After `spare(n)`: keeps the first `used` of those `n` bytes.
    pub(super) fn commit(&mut self, n: usize, used: usize) {
        let keep = self.buf.len().saturating_sub(n) + used.min(n);
        self.buf.truncate(keep);
    }

    /// The next whole frame (its unpadded bytes, as a range for [`Self::frame`]), `Ok(None)` when
    /// more bytes are needed.
    pub(super) fn next_frame(&mut self) -> Result<Option<Range<usize>>, Desync> {
        let data = &self.buf[self.start..];
        let Some(&first) = data.first() else {
            return Ok(None);
        };
        let (len, consumed) = match first {
            0..=0x3f => match MessageHeader::from_bytes(data) {
                Ok(header) => {
                    let len = MessageHeader::LENGTH + usize::from(header.data_length());
                    (len, len)
                }
                Err(StunParseError::Truncated { .. }) => return Ok(None),
                Err(_) => return Err(Desync),
            },
            // RFC 8656 12: channel numbers 0x4000..=0x4FFF.
            0x40..=0x4f => {
                if data.len() < 4 {
                    return Ok(None);
                }
                let len = 4 + usize::from(u16::from_be_bytes([data[2], data[3]]));
                (len, (len + 3) & !3)
            }
            _ => return Err(Desync),
        };
        if data.len() < consumed {
            return Ok(None);
        }
        let frame = self.start..self.start + len;
        self.start += consumed;
        Ok(Some(frame))
    }

    pub(super) fn frame(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or(&[])
    }

    /// Bytes held that are not yet a whole frame.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(len: u16, fill: u8) -> Vec<u8> {
        let mut m = vec![0x01, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
        m.extend_from_slice(&[fill; 12]);
        m.extend(std::iter::repeat_n(fill, usize::from(len)));
        m
    }

    fn channel(data: &[u8]) -> Vec<u8> {
        let mut c = vec![0x40, 0x01];
        c.extend_from_slice(&(data.len() as u16).to_be_bytes());
        c.extend_from_slice(data);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    fn frames(f: &mut StreamFramer) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(r) = f.next_frame().unwrap() {
            out.push(f.frame(r).to_vec());
        }
        out
    }

    #[test]
    fn cuts_frames_at_any_chunking_and_strips_channel_padding() {
        let a = stun(8, 7);
        let b = channel(&[1, 2, 3, 4, 5]);
        let c = stun(0, 9);
        let stream: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        for chunk in 1..=stream.len() {
            let mut f = StreamFramer::default();
            let mut got = vec![];
            for piece in stream.chunks(chunk) {
                f.push(piece);
                got.extend(frames(&mut f));
            }
            assert_eq!(
                got,
                vec![a.clone(), b[..9].to_vec(), c.clone()],
                "chunk {chunk}"
            );
            assert_eq!(f.pending(), 0);
        }
    }

    #[test]
    fn spare_and_commit_feed_the_same_way() {
        let a = stun(4, 1);
        let mut f = StreamFramer::default();
        let room = f.spare(64);
        room[..a.len()].copy_from_slice(&a);
        f.commit(64, a.len());
        assert_eq!(frames(&mut f), vec![a]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn garbage_is_a_desync_not_a_growing_buffer() {
        let mut f = StreamFramer::default();
        f.push(&[0x80, 1, 2, 3]);
        assert_eq!(f.next_frame(), Err(Desync));
        let mut f = StreamFramer::default();
        // STUN-looking first byte, wrong magic cookie.
        f.push(&[0, 1, 0, 0, 1, 2, 3, 4]);
        assert_eq!(f.next_frame(), Err(Desync));
        let mut f = StreamFramer::default();
        f.push(&[0x50, 0, 0, 0]);
        assert_eq!(f.next_frame(), Err(Desync));
    }
}

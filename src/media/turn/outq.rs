//! Bytes waiting to be written toward the TURN server: whole datagrams (UDP) or one contiguous
//! byte stream (TCP, TLS records). Datagram buffers are recycled, and the stream is one growing
//! buffer, so steady relaying does not allocate per packet. Media is refused once a bound is
//! reached (the engine is not draining the socket); control messages are always accepted, they
//! are few and small.

use std::collections::VecDeque;

const MAX_DATAGRAMS: usize = 256;
const MAX_STREAM_BYTES: usize = 256 * 1024;
const POOL: usize = 32;
/// Consumed stream bytes are dropped from the front once this many have piled up.
const STREAM_COMPACT: usize = 64 * 1024;

#[derive(Debug)]
pub(super) enum OutQueue {
    Datagrams {
        queue: VecDeque<Vec<u8>>,
        pool: Vec<Vec<u8>>,
    },
    Stream {
        buf: Vec<u8>,
        start: usize,
    },
}

impl OutQueue {
    pub(super) fn datagrams() -> Self {
        OutQueue::Datagrams {
            queue: VecDeque::new(),
            pool: Vec::new(),
        }
    }

    pub(super) fn stream() -> Self {
        OutQueue::Stream {
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Whether media may be queued.
    pub(super) fn has_room(&self) -> bool {
        match self {
            OutQueue::Datagrams { queue, .. } => queue.len() < MAX_DATAGRAMS,
            OutQueue::Stream { buf, start } => buf.len() - start < MAX_STREAM_BYTES,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            OutQueue::Datagrams { queue, .. } => queue.is_empty(),
            OutQueue::Stream { buf, start } => buf.len() == *start,
        }
    }

    /// `len` bytes at the back of the queue (one datagram, or the end of the stream) for the
    /// caller to fill completely.
    pub(super) fn slot(&mut self, len: usize) -> &mut [u8] {
        match self {
            OutQueue::Datagrams { queue, pool } => {
                let mut d = pool.pop().unwrap_or_default();
                d.clear();
                d.resize(len, 0);
                queue.push_back(d);
                match queue.back_mut() {
                    Some(d) => d.as_mut_slice(),
                    None => &mut [],
                }
            }
            OutQueue::Stream { buf, .. } => {
                let at = buf.len();
                buf.resize(at + len, 0);
                &mut buf[at..]
            }
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.slot(bytes.len()).copy_from_slice(bytes);
    }

    /// The stream itself, for writers such as rustls' `write_tls`.
    pub(super) fn stream_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            OutQueue::Stream { buf, .. } => Some(buf),
            OutQueue::Datagrams { .. } => None,
        }
    }

    /// Moves the next datagram (or as much of the stream as fits) into `out`. A datagram larger
    /// than `out` cannot be split; it is dropped with a warning ([`super::MAX_TRANSMIT`] bytes
    /// always suffice).
    pub(super) fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        match self {
            OutQueue::Datagrams { queue, pool } => {
                while let Some(d) = queue.pop_front() {
                    let fits = d.len() <= out.len();
                    if fits {
                        out[..d.len()].copy_from_slice(&d);
                    } else {
                        tracing::warn!(
                            len = d.len(),
                            room = out.len(),
                            "TURN datagram larger than the caller's buffer dropped"
                        );
                    }
                    let len = d.len();
                    if pool.len() < POOL {
                        pool.push(d);
                    }
                    if fits {
                        return Some(len);
                    }
                }
                None
            }
            OutQueue::Stream { buf, start } => {
                let n = (buf.len() - *start).min(out.len());
                if n == 0 {
                    return None;
                }
                out[..n].copy_from_slice(&buf[*start..*start + n]);
                *start += n;
                if *start == buf.len() {
                    buf.clear();
                    *start = 0;
                } else if *start >= STREAM_COMPACT {
                    buf.drain(..*start);
                    *start = 0;
                }
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_keep_boundaries_and_oversized_ones_are_dropped() {
        let mut q = OutQueue::datagrams();
        q.push(&[1, 2, 3]);
        q.push(&[9; 40]);
        q.push(&[4]);
        let mut out = [0u8; 16];
        assert_eq!(q.pop_into(&mut out), Some(3));
        assert_eq!(&out[..3], &[1, 2, 3]);
        // The 40-byte datagram does not fit a 16-byte buffer: skipped, next one returned.
        assert_eq!(q.pop_into(&mut out), Some(1));
        assert_eq!(out[0], 4);
        assert_eq!(q.pop_into(&mut out), None);
        assert!(q.is_empty());
    }

    #[test]
    fn stream_is_split_across_small_buffers_in_order() {
        let mut q = OutQueue::stream();
        q.push(&[1, 2, 3, 4, 5]);
        q.stream_mut().unwrap().extend_from_slice(&[6, 7]);
        let mut out = [0u8; 3];
        let mut got = vec![];
        while let Some(n) = q.pop_into(&mut out) {
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7]);
        assert!(q.is_empty());
    }

    #[test]
    fn media_is_refused_past_the_bound() {
        let mut q = OutQueue::datagrams();
        for _ in 0..MAX_DATAGRAMS {
            assert!(q.has_room());
            q.push(&[0; 10]);
        }
        assert!(!q.has_room());
        let mut q = OutQueue::stream();
        q.push(&vec![0; MAX_STREAM_BYTES]);
        assert!(!q.has_room());
    }
}

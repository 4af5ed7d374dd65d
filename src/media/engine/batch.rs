//! Batched sending on a media thread's shared WebRTC socket: datagrams gathered during one pass
//! of the poll loop leave in `sendmmsg(2)` calls of up to [`MAX_BATCH`] (quinn-udp batches
//! receives with `recvmmsg`, but sends one `sendmsg` per destination). The system call is
//! rustix's safe wrapper; the buffers are the ones str0m produced, nothing is copied.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

/// Datagrams per `sendmmsg` call.
pub const MAX_BATCH: usize = 64;

/// Datagrams waiting for the next flush.
pub struct SendBatch {
    queue: Vec<(SocketAddrAny, Vec<u8>)>,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    pub sent: usize,
    pub failed: usize,
    pub syscalls: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            queue: Vec::with_capacity(MAX_BATCH * 4),
        }
    }
}

impl SendBatch {
    pub fn push(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        self.queue.push((SocketAddrAny::from(dest), datagram));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends everything queued on `socket`. A datagram the kernel refuses (no buffer space, an
    /// unreachable destination) is dropped and counted: media is not retransmitted.
    pub fn flush(&mut self, socket: &impl AsFd) -> Flushed {
        let mut done = Flushed::default();
        let mut start = 0;
        while start < self.queue.len() {
            let end = (start + MAX_BATCH).min(self.queue.len());
            let chunk = &self.queue[start..end];
            // Stack arrays and one header vector per call: rustix's headers borrow the
            // buffers, so they cannot outlive one flush.
            let iovs: [IoSlice<'_>; MAX_BATCH] = std::array::from_fn(|i| {
                IoSlice::new(chunk.get(i).map_or(&[][..], |(_, d)| &d[..]))
            });
            let mut controls: [SendAncillaryBuffer<'_, '_, '_>; MAX_BATCH] =
                std::array::from_fn(|_| SendAncillaryBuffer::default());
            let mut hdrs: Vec<MMsgHdr<'_>> = chunk
                .iter()
                .zip(&iovs)
                .zip(&mut controls)
                .map(|(((addr, _), iov), control)| {
                    MMsgHdr::new_with_addr(addr, std::slice::from_ref(iov), control)
                })
                .collect();
            done.syscalls += 1;
            match sendmmsg(socket, &mut hdrs, SendFlags::empty()) {
                Err(Errno::INTR) => continue,
                // The first datagram failed (e.g. ICMP unreachable reported): skip it.
                Err(_) | Ok(0) => {
                    done.failed += 1;
                    start += 1;
                }
                Ok(n) => {
                    done.sent += n;
                    start += n;
                }
            }
        }
        self.queue.clear();
        done
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reaches_several_destinations_in_one_call() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut b = SendBatch::default();
        for (i, r) in rx.iter().enumerate() {
            b.push(r.local_addr().unwrap(), vec![i as u8; 10 + i]);
        }
        let f = b.flush(&tx);
        assert_eq!((f.sent, f.failed, f.syscalls), (3, 0, 1));
        for (i, r) in rx.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 64];
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &vec![i as u8; 10 + i][..]);
        }
        assert!(b.is_empty());
    }
}

//! Batched sending on a media thread's shared WebRTC socket: datagrams gathered during one pass
//! of the poll loop leave in `sendmmsg(2)` calls of up to [`MAX_BATCH`] (quinn-udp batches
//! receives with `recvmmsg`, but sends one `sendmsg` per destination). The buffers are the ones
//! str0m produced; nothing is copied.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// Datagrams per `sendmmsg` call.
pub const MAX_BATCH: usize = 64;

/// Datagrams waiting for the next flush.
pub struct SendBatch {
    queue: Vec<(SockAddr, Vec<u8>)>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flushed {
    pub sent: usize,
    pub failed: usize,
    pub syscalls: usize,
}

// SAFETY: `iov` and `hdrs` hold raw pointers only while `flush` runs (they are rebuilt from
// `queue` on every call and point nowhere else), so moving the batch to its thread is sound.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch {
            queue: Vec::with_capacity(MAX_BATCH * 4),
            iov: Vec::with_capacity(MAX_BATCH),
            hdrs: Vec::with_capacity(MAX_BATCH),
        }
    }
}

impl SendBatch {
    pub fn push(&mut self, dest: SocketAddr, datagram: Vec<u8>) {
        self.queue.push((SockAddr::from(dest), datagram));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends everything queued on `socket`. A datagram the kernel refuses (no buffer space, an
    /// unreachable destination) is dropped and counted: media is not retransmitted.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let mut done = Flushed::default();
        let fd = socket.as_raw_fd();
        let mut start = 0;
        while start < self.queue.len() {
            let end = (start + MAX_BATCH).min(self.queue.len());
            self.iov.clear();
            self.hdrs.clear();
            for (_, data) in &self.queue[start..end] {
                self.iov.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                });
            }
            for (i, (addr, _)) in self.queue[start..end].iter().enumerate() {
                // SAFETY: a zeroed msghdr is a valid "no control data, no flags" header.
                let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
                hdr.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                hdr.msg_hdr.msg_namelen = addr.len();
                hdr.msg_hdr.msg_iov = &mut self.iov[i] as *mut libc::iovec;
                hdr.msg_hdr.msg_iovlen = 1;
                self.hdrs.push(hdr);
            }
            // SAFETY: every header points into `self.iov` and `self.queue`, which outlive the
            // call and are not touched until it returns.
            let n =
                unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), self.hdrs.len() as u32, 0) };
            done.syscalls += 1;
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram failed (e.g. ICMP unreachable reported): skip it.
                done.failed += 1;
                start += 1;
                continue;
            }
            let n = n as usize;
            done.sent += n;
            start += n.max(1);
            if n == 0 {
                done.failed += 1;
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

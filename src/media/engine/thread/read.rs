//! What the thread's sockets bring: the shared WebRTC port read in `recvmmsg` batches and
//! routed to its calls (or to a reflexive-address binding), and a call's own sockets (PBX RTP
//! and RTCP, its WebRTC port, its TURN links) handed to the call.

use std::io::IoSliceMut;
use std::sync::atomic::Ordering;
use std::time::Instant;

use quinn_udp::{RecvMeta, UdpSockRef};

use super::super::demux::Drop as DemuxDrop;
use super::super::CallKey;
use super::{MediaThread, KIND_OWN, KIND_RTCP, KIND_RTP, KIND_TURN0, RECV_BATCH};
use crate::media::turn::{classify, PacketKind};

impl MediaThread {
    /// The shared WebRTC port is readable: everything queued on it, in batches.
    pub(super) fn read_shared(&mut self, now: Instant) {
        loop {
            let mut metas = [RecvMeta::default(); RECV_BATCH];
            let n = {
                let mut slices: [IoSliceMut<'_>; RECV_BATCH] = {
                    let mut it = self.recv_bufs.iter_mut();
                    std::array::from_fn(|_| {
                        IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..]))
                    })
                };
                match self
                    .udp_state
                    .recv(UdpSockRef::from(&self.shared), &mut slices, &mut metas)
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            };
            self.counters.recv_syscalls.fetch_add(1, Ordering::Relaxed);
            let MediaThread {
                lend,
                recv_bufs,
                calls,
                counters,
                shared_addr,
                touched,
                srflx,
                ..
            } = self;
            for (i, meta) in metas.iter().enumerate().take(n) {
                // GRO may pack several datagrams of one source in a buffer: `stride` apart.
                let buf = &recv_bufs[i][..meta.len];
                let stride = meta.stride.max(1);
                for datagram in buf.chunks(stride) {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if classify(datagram) == PacketKind::Stun {
                        if let Some(s) = srflx.iter_mut().find(|s| s.awaits(meta.addr)) {
                            s.on_input(meta.addr, datagram, now, calls, touched);
                            continue;
                        }
                    }
                    let key = match lend.demux.route(meta.addr, datagram) {
                        Ok(k) => k,
                        Err(d) => {
                            counters.demux.count(d);
                            continue;
                        }
                    };
                    let Some(Some(call)) = calls.get_mut(key.slot as usize) else {
                        counters.demux.count(DemuxDrop::UnknownSource);
                        continue;
                    };
                    if call.key != key {
                        counters.demux.count(DemuxDrop::UnknownSource);
                        continue;
                    }
                    let mut io = lend.io(counters);
                    call.on_webrtc_datagram(meta.addr, *shared_addr, datagram, now, &mut io);
                    touched.push(key.slot);
                }
            }
            // Edge-triggered readiness: a short batch means the socket was drained.
            let drained = n < RECV_BATCH;
            self.after_touched();
            if drained {
                return;
            }
        }
    }

    /// One of a call's own sockets (`kind`) is readable.
    pub(super) fn on_call_socket(&mut self, slot: u32, kind: usize, now: Instant) {
        let Some(key) = self.current_key(slot) else {
            return;
        };
        if kind == KIND_OWN {
            self.read_own_socket(key, now);
        } else if let Some((call, mut io)) = self.call_mut_split(key) {
            match kind {
                KIND_RTP => call.on_pbx_rtp(now, &mut io),
                KIND_RTCP => call.on_pbx_rtcp(now, &mut io),
                k if k >= KIND_TURN0 => call.on_turn_ready(k - KIND_TURN0, now, &mut io),
                _ => {}
            }
        }
        self.touched.push(slot);
        self.after_touched();
    }

    /// A call's own WebRTC socket is readable. Datagrams are read into the shared port's first
    /// receive buffer (idle outside `read_shared`), so the call keeps its scratch buffer for
    /// what it sends.
    fn read_own_socket(&mut self, key: CallKey, now: Instant) {
        let MediaThread {
            lend,
            calls,
            counters,
            recv_bufs,
            ..
        } = self;
        let Some(Some(call)) = calls.get_mut(key.slot as usize) else {
            return;
        };
        let mut io = lend.io(counters);
        let buf = &mut recv_bufs[0];
        let local = call.local_addr;
        while let Some(sock) = call.own_socket.as_ref() {
            let (n, src) = match sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            call.on_webrtc_datagram(src, local, &buf[..n], now, &mut io);
        }
    }
}

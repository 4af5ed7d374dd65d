//! The media engine: a few threads (one per core by default) that own the media of every call,
//! sharded across them. Each thread runs one poll loop over its calls' WebRTC state (str0m,
//! sans-IO), their PBX RTP sockets and a shared WebRTC UDP port, with batched I/O and a timer
//! heap (`thread`). The async side (calls, the simulator) holds a [`MediaCall`] per call and
//! talks to the call's thread through a command queue; what comes back is a connection-state
//! watch, counters and quality figures written in place, and digits for local far ends. No
//! task, channel, lock or allocation of ours per packet.

mod batch;
mod call;
mod call_quality;
pub mod demux;
pub mod local;
mod peer;
mod servers;
mod thread;
mod turn_link;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use self::call::CallShared;
pub use self::call_quality::CallQuality;
pub use self::demux::DemuxCounters;
pub use self::local::{tone_payload, LocalMode, LocalStats};
use super::relay::{PbxMedia, Relay, RelayCounters};
use super::rtp_leg::RtpLeg;
use super::{AudioFormat, Codec, Direction, PeerError, PeerSettings, PeerState};

/// A call's place in its thread: slot and generation (a reused slot gets a new generation,
/// so a late command for an ended call touches nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub slot: u32,
    pub generation: u32,
}

/// What sits at the far side of the WebRTC leg inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarEnd {
    /// The PBX: plain RTP sockets attached with [`MediaCall::attach_pbx`].
    Pbx,
    /// A simulated far end (echo or tone), for the carrier simulator.
    Local(LocalMode),
}

enum Role {
    Offer {
        codecs: Vec<Codec>,
        reply: oneshot::Sender<Result<String, PeerError>>,
    },
    Answer {
        sdp: String,
        codec: Option<Codec>,
        reply: oneshot::Sender<Result<(String, AudioFormat), PeerError>>,
    },
}

struct CallSpec {
    /// The call task's span (`call_id`, `session`): the media thread logs about the call in it.
    span: tracing::Span,
    settings: PeerSettings,
    gathering: servers::Gathering,
    role: Role,
    far_end: FarEnd,
    /// A WebRTC socket of the call's own instead of the thread's shared port.
    own_port: bool,
}

enum Command {
    Create {
        spec: CallSpec,
        shared: Arc<CallShared>,
        digits: Option<mpsc::UnboundedSender<char>>,
        key_reply: oneshot::Sender<Result<CallKey, PeerError>>,
    },
    AcceptAnswer {
        key: CallKey,
        sdp: String,
        reply: oneshot::Sender<Result<AudioFormat, PeerError>>,
    },
    Reoffer {
        key: CallKey,
        direction: Direction,
        reply: oneshot::Sender<Result<String, PeerError>>,
    },
    AnswerReoffer {
        key: CallKey,
        sdp: String,
        reply: oneshot::Sender<Result<(String, AudioFormat), PeerError>>,
    },
    AttachPbx {
        key: CallKey,
        rtp: std::net::UdpSocket,
        rtcp: std::net::UdpSocket,
        pbx: PbxMedia,
    },
    UpdatePbx {
        key: CallKey,
        pbx: PbxMedia,
    },
    Close {
        key: CallKey,
    },
    /// The engine handle is gone: the thread ends.
    Shutdown,
}

/// Engine-wide counters (metrics).
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub calls: AtomicU64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub recv_syscalls: AtomicU64,
    pub send_syscalls: AtomicU64,
    pub demux: DemuxCounters,
}

struct Shard {
    commands: Sender<Command>,
    waker: mio::Waker,
    #[cfg(test)]
    addr: SocketAddr,
}

impl Shard {
    fn send(&self, cmd: Command) -> Result<(), PeerError> {
        self.commands.send(cmd).map_err(|_| PeerError::EngineGone)?;
        self.waker.wake().map_err(|e| PeerError::Io(e.to_string()))
    }
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        for s in &self.shards {
            let _ = s.send(Command::Shutdown);
        }
    }
}

/// How the engine is started.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Media threads (0: one per available core).
    pub threads: usize,
    /// Where the shared WebRTC ports are bound (port 0: chosen by the OS).
    pub bind: SocketAddr,
    /// Every call gets a WebRTC socket of its own instead of sharing its thread's port (the
    /// simulator: a far end that looks like one browser per call).
    pub port_per_call: bool,
    /// Trust for `turns:` servers (the carrier's TLS configuration); None: TLS TURN unusable.
    pub turn_tls: Option<Arc<rustls::ClientConfig>>,
    /// While media flows, a media thread handles what arrived in this window in one pass
    /// instead of waking for every packet (zero: wake per packet). Adds at most this much
    /// latency per pass through the relay.
    pub batch_window: Duration,
}

/// The running engine; cheap to clone. The threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct MediaEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    shards: Vec<Shard>,
    next: AtomicUsize,
    counters: Arc<EngineCounters>,
    port_per_call: bool,
}

impl MediaEngine {
    pub fn start(config: &EngineConfig) -> std::io::Result<MediaEngine> {
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let counters = Arc::new(EngineCounters::default());
        let mut shards = Vec::with_capacity(threads);
        for i in 0..threads {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), thread::WAKER)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let addr = match config.bind.port() {
                0 => config.bind,
                p => SocketAddr::new(config.bind.ip(), p.saturating_add(i as u16)),
            };
            let std = bind_shared(addr)?;
            let socket = mio::net::UdpSocket::from_std(std);
            let t = thread::MediaThread::new(
                poll,
                rx,
                socket,
                Arc::clone(&counters),
                config.turn_tls.clone(),
                config.batch_window,
            )?;
            #[cfg(test)]
            let addr = t.shared_addr;
            std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || t.run())?;
            shards.push(Shard {
                commands: tx,
                waker,
                #[cfg(test)]
                addr,
            });
        }
        Ok(MediaEngine {
            inner: Arc::new(EngineInner {
                shards,
                next: AtomicUsize::new(0),
                counters,
                port_per_call: config.port_per_call,
            }),
        })
    }

    /// Engine-wide counters.
    pub fn counters(&self) -> &Arc<EngineCounters> {
        &self.inner.counters
    }

    #[cfg(test)]
    /// The shared WebRTC ports, one per thread.
    pub fn shared_ports(&self) -> Vec<SocketAddr> {
        self.inner.shards.iter().map(|s| s.addr).collect()
    }

    fn pick(&self) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.shards.len()
    }

    async fn create(
        &self,
        settings: &PeerSettings,
        role: Role,
        far_end: FarEnd,
    ) -> Result<MediaCall, PeerError> {
        let shard = self.pick();
        let shared = Arc::new(CallShared::new(Instant::now()));
        let (digits_tx, digits_rx) = match far_end {
            FarEnd::Local(_) => {
                let (t, r) = mpsc::unbounded_channel();
                (Some(t), Some(r))
            }
            FarEnd::Pbx => (None, None),
        };
        let gathering =
            servers::resolve_servers(&settings.ice_servers, settings.bind_ip, settings.relay_only)
                .await;
        let (key_tx, key_rx) = oneshot::channel();
        let spec = CallSpec {
            span: tracing::Span::current(),
            gathering,
            settings: settings.clone(),
            role,
            far_end,
            own_port: self.inner.port_per_call,
        };
        self.inner.shards[shard].send(Command::Create {
            spec,
            shared: Arc::clone(&shared),
            digits: digits_tx,
            key_reply: key_tx,
        })?;
        let key = key_rx.await.map_err(|_| PeerError::EngineGone)??;
        Ok(MediaCall {
            engine: self.clone(),
            shard,
            key,
            shared,
            digits: digits_rx,
            closed: AtomicBool::new(false),
        })
    }

    /// Offering side: a call whose complete offer (every candidate gathered) is returned.
    pub async fn offer(
        &self,
        settings: &PeerSettings,
        codecs: &[Codec],
        far_end: FarEnd,
    ) -> Result<(MediaCall, String), PeerError> {
        if codecs.is_empty() {
            return Err(PeerError::NoCommonCodec);
        }
        let (tx, rx) = oneshot::channel();
        let role = Role::Offer {
            codecs: codecs.to_vec(),
            reply: tx,
        };
        let call = self.create(settings, role, far_end).await?;
        let sdp = rx.await.map_err(|_| PeerError::EngineGone)??;
        Ok((call, sdp))
    }

    /// Answering side: takes a remote offer; `codec` picks the call's codec when the offer has
    /// it (None: the offer's first G.711).
    pub async fn answer(
        &self,
        settings: &PeerSettings,
        offer: &str,
        codec: Option<Codec>,
        far_end: FarEnd,
    ) -> Result<(MediaCall, String, AudioFormat), PeerError> {
        let offered = super::sdp_text::g711_in_sdp(offer);
        match codec {
            Some(c) if !offered.contains(&c) => return Err(PeerError::NoCommonCodec),
            None if offered.is_empty() => return Err(PeerError::NoCommonCodec),
            _ => {}
        }
        let (tx, rx) = oneshot::channel();
        let role = Role::Answer {
            sdp: offer.to_owned(),
            codec,
            reply: tx,
        };
        let call = self.create(settings, role, far_end).await?;
        let (sdp, format) = rx.await.map_err(|_| PeerError::EngineGone)??;
        Ok((call, sdp, format))
    }
}

fn bind_shared(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = match addr.ip() {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Bursts of many calls' packets: room for a few hundred milliseconds of them.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A read-only view of one call's media figures for status and metrics (cheap to clone).
#[derive(Clone)]
pub struct MediaView(Arc<CallShared>);

impl std::fmt::Debug for MediaView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaView")
    }
}

impl MediaView {
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.0.counters
    }

    pub fn quality(&self) -> CallQuality {
        self.0.quality()
    }
}

/// One call's handle on the async side. Dropping it ends the call's media.
pub struct MediaCall {
    engine: MediaEngine,
    shard: usize,
    key: CallKey,
    shared: Arc<CallShared>,
    digits: Option<mpsc::UnboundedReceiver<char>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for MediaCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCall")
            .field("shard", &self.shard)
            .field("key", &self.key)
            .finish()
    }
}

impl MediaCall {
    fn send(&self, cmd: Command) -> Result<(), PeerError> {
        self.engine.inner.shards[self.shard].send(cmd)
    }

    /// Applies the remote answer (to the first offer or a re-offer).
    pub async fn accept_answer(&self, sdp: &str) -> Result<AudioFormat, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::AcceptAnswer {
            key: self.key,
            sdp: sdp.to_owned(),
            reply: tx,
        })?;
        rx.await.map_err(|_| PeerError::EngineGone)?
    }

    /// A re-offer with `direction` (hold: `SendOnly`/`Inactive`; resume: `SendRecv`).
    pub async fn create_reoffer(&self, direction: Direction) -> Result<String, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reoffer {
            key: self.key,
            direction,
            reply: tx,
        })?;
        rx.await.map_err(|_| PeerError::EngineGone)?
    }

    /// Answers a re-offer from the remote; our direction follows RFC 3264 from theirs.
    pub async fn answer_reoffer(&self, sdp: &str) -> Result<(String, AudioFormat), PeerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::AnswerReoffer {
            key: self.key,
            sdp: sdp.to_owned(),
            reply: tx,
        })?;
        rx.await.map_err(|_| PeerError::EngineGone)?
    }

    /// Hands the PBX's RTP/RTCP sockets to the engine: the relay starts (audio the PBX sends
    /// before the WebRTC leg is up is held, bounded, and sent once it is).
    pub fn attach_pbx(&self, leg: RtpLeg, pbx: PbxMedia) -> Result<(), PeerError> {
        let (rtp, rtcp) = leg.into_sockets();
        self.send(Command::AttachPbx {
            key: self.key,
            rtp,
            rtcp,
            pbx,
        })
    }

    /// New PBX-side parameters (re-INVITE, hold); a changed address re-opens latching.
    pub fn update_pbx(&self, pbx: PbxMedia) {
        let _ = self.send(Command::UpdatePbx { key: self.key, pbx });
    }

    /// When the PBX's last RTP packet arrived (None: nothing yet).
    pub fn last_from_pbx(&self) -> Option<Instant> {
        Relay::last_from_pbx(&self.shared.counters, self.shared.started)
    }

    #[cfg(test)]
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.shared.counters
    }

    pub fn view(&self) -> MediaView {
        MediaView(Arc::clone(&self.shared))
    }

    pub fn local_stats(&self) -> &Arc<LocalStats> {
        &self.shared.local
    }

    /// The negotiated format, once negotiated.
    #[cfg(test)]
    pub fn format(&self) -> Option<AudioFormat> {
        self.shared.format()
    }

    pub fn peer_state(&self) -> watch::Receiver<PeerState> {
        self.shared.state.subscribe()
    }

    #[cfg(test)]
    /// Waits until the WebRTC leg is connected; fails with the state that ended the wait.
    pub async fn wait_connected(&self) -> Result<(), PeerState> {
        let mut rx = self.peer_state();
        let s = rx
            .wait_for(|s| {
                matches!(
                    s,
                    PeerState::Connected | PeerState::Failed | PeerState::Closed
                )
            })
            .await
            .map(|s| *s)
            .unwrap_or(PeerState::Closed);
        match s {
            PeerState::Connected => Ok(()),
            other => Err(other),
        }
    }

    /// Digits (RFC 4733) a local far end received; `None` for PBX calls.
    pub fn take_digits(&mut self) -> Option<mpsc::UnboundedReceiver<char>> {
        self.digits.take()
    }

    /// Ends the call's media (idempotent; also on drop).
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.send(Command::Close { key: self.key });
        }
    }
}

impl Drop for MediaCall {
    fn drop(&mut self) {
        self.close();
    }
}

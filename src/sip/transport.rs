//! The UDP edge of the SIP endpoint: receives datagrams, feeds them and the clock to the
//! `Endpoint`, and sends what it asks for; it also carries the calls' commands into the
//! endpoint and its dialog events out to the transaction user, and the daemon's and
//! operator's requests to the endpoint (`Control`). No protocol logic lives here.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::endpoint::Endpoint;
use super::security::Source;
use super::shared::SharedFact;
use super::tu::{DialogCommand, TransactionUser};
use crate::config::Config;

/// Largest datagram read; anything longer is truncated by the kernel and then refused by the
/// parser's size limit (which is below this).
const RECV_BUF: usize = 65_536;
/// Datagrams handled per wake-up before timers and sends get their turn.
const BATCH: usize = 64;
/// The loop wakes at least this often, so its `LoopHealth` stamp stays fresh while it works.
const TICK: Duration = Duration::from_secs(1);

/// What the daemon and the operator ask of the SIP endpoint.
#[derive(Debug)]
pub enum Control {
    /// Stopping: new INVITEs are refused with 503 and Retry-After.
    Drain,
    /// A reloaded, validated configuration.
    Reconfigure(Arc<Config>),
    /// Whether some carrier account is subscribed (OPTIONS answers 503 while none is).
    CarrierReady(bool),
    /// A fact from another instance of the cluster (a trunk's registration, a ban).
    Import(SharedFact),
    /// Lift a ban (the operator, through the status endpoint); the answer says whether there
    /// was one.
    Unban {
        /// The banned source.
        source: Source,
        /// Where the answer goes.
        reply: oneshot::Sender<bool>,
    },
}

/// What the SIP loop publishes about itself on every wake-up: when it last ran (the systemd
/// watchdog pings only while this is recent) and how many server transactions are live.
#[derive(Debug)]
pub struct LoopHealth {
    origin: Instant,
    /// Milliseconds after `origin` of the latest wake-up.
    beat_ms: AtomicU64,
    server_transactions: AtomicUsize,
}

impl Default for LoopHealth {
    fn default() -> Self {
        LoopHealth {
            origin: Instant::now(),
            beat_ms: AtomicU64::new(0),
            server_transactions: AtomicUsize::new(0),
        }
    }
}

impl LoopHealth {
    /// Stamps a wake-up.
    pub fn beat(&self, server_transactions: usize) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.beat_ms.store(ms, Ordering::Relaxed);
        self.server_transactions
            .store(server_transactions, Ordering::Relaxed);
    }

    /// Live server transactions, as of the latest wake-up.
    pub fn server_transactions(&self) -> usize {
        self.server_transactions.load(Ordering::Relaxed)
    }

    /// Time since the latest wake-up (since creation before the first).
    pub fn age(&self) -> Duration {
        let beat = Duration::from_millis(self.beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(beat)
    }
}

/// What the loop is connected to besides its socket.
pub struct Links<T> {
    /// The calls' commands.
    pub commands: mpsc::UnboundedReceiver<DialogCommand>,
    /// The daemon's and operator's requests.
    pub control: mpsc::UnboundedReceiver<Control>,
    /// Where dialog events go.
    pub tu: T,
    /// Where the facts shared with the other instances go (the cluster room); `None` alone.
    pub shared: Option<mpsc::UnboundedSender<SharedFact>>,
    /// Stamped on every wake-up.
    pub health: Arc<LoopHealth>,
    /// The loop ends when this turns true.
    pub shutdown: watch::Receiver<bool>,
}

/// Runs until `shutdown` turns true. Returns the endpoint so the caller can inspect it.
pub async fn serve<T: TransactionUser>(
    socket: UdpSocket,
    mut endpoint: Endpoint,
    links: Links<T>,
) -> Endpoint {
    let Links {
        mut commands,
        mut control,
        mut tu,
        shared,
        health,
        mut shutdown,
    } = links;
    let mut buf = vec![0u8; RECV_BUF];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = endpoint.poll_timeout();
        tokio::select! {
            ready = socket.readable() => {
                if let Err(e) = ready {
                    warn!(error = %e, "SIP socket not readable");
                    continue;
                }
                for _ in 0..BATCH {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, src)) => endpoint.handle_datagram(&buf[..n], src, Instant::now()),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors from earlier sends surface here on Linux; they are not fatal
                        Err(e) => { tracing::debug!(error = %e, "recv error"); break; }
                    }
                }
            }
            _ = sleep_until(deadline) => endpoint.handle_timeout(Instant::now()),
            Some(cmd) = commands.recv() => {
                let now = Instant::now();
                endpoint.handle_command(cmd, now);
                // drain what else is queued, so a burst of calls costs one wake-up
                while let Ok(cmd) = commands.try_recv() {
                    endpoint.handle_command(cmd, now);
                }
            }
            Some(c) = control.recv() => match c {
                Control::Drain => endpoint.drain(),
                Control::Reconfigure(config) => endpoint.reconfigure(&config),
                Control::CarrierReady(ready) => endpoint.set_carrier_ready(ready),
                Control::Import(fact) => endpoint.import(fact, Instant::now()),
                Control::Unban { source, reply } => {
                    let _ = reply.send(endpoint.unban(source, Instant::now()));
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            _ = tick.tick() => {}
        }
        dispatch(&mut endpoint, &mut tu);
        while let Some(fact) = endpoint.poll_shared() {
            if let Some(out) = &shared {
                let _ = out.send(fact);
            }
        }
        flush(&socket, &mut endpoint).await;
        health.beat(endpoint.server_transactions());
    }
    flush(&socket, &mut endpoint).await;
    endpoint
}

/// Dialog events to the transaction user; a dialog no call takes is forgotten.
fn dispatch(endpoint: &mut Endpoint, tu: &mut impl TransactionUser) {
    while let Some((call, event)) = endpoint.poll_event() {
        if !tu.deliver(call, event) {
            endpoint.handle_command(DialogCommand::Forget(call), Instant::now());
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn flush(socket: &UdpSocket, endpoint: &mut Endpoint) {
    while let Some(t) = endpoint.poll_transmit() {
        let sent = match socket.try_send_to(&t.bytes, t.dest) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => socket.send_to(&t.bytes, t.dest).await,
            other => other,
        };
        if let Err(e) = sent {
            tracing::debug!(dest = %t.dest, error = %e, "send failed");
        }
    }
}

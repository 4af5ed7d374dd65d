//! The UDP edge of the SIP endpoint: receives datagrams, feeds them and the clock to the
//! `Endpoint`, and sends what it asks for; it also carries commands from call tasks into the
//! endpoint and the endpoint's call events out to them (`CallRouter`), and the operator's
//! commands to the edge (`EdgeCommand`). No protocol logic lives here.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::endpoint::Endpoint;
use super::security::Source;
use crate::call::router::CallRouter;
use crate::call::signal::CallCmd;

/// Largest datagram read; anything longer is truncated by the kernel and then refused by the
/// parser's size limit (which is below this).
const RECV_BUF: usize = 65_536;
/// Datagrams handled per wake-up before timers and sends get their turn.
const BATCH: usize = 64;
/// The loop wakes at least this often, so its `LoopHealth` stamp stays fresh while it works.
const TICK: Duration = Duration::from_secs(1);

/// What the operator asks of the SIP edge (through the status endpoint).
#[derive(Debug)]
pub enum EdgeCommand {
    /// Lift a ban; the answer says whether there was one.
    Unban {
        source: Source,
        reply: oneshot::Sender<bool>,
    },
}

/// What the SIP loop publishes about itself on every wake-up: when it last ran (the systemd
/// watchdog pings only while this is recent), how many calls have a dialog and how many server
/// transactions are live.
#[derive(Debug)]
pub struct LoopHealth {
    origin: Instant,
    /// Milliseconds after `origin` of the latest wake-up.
    beat_ms: AtomicU64,
    active_calls: AtomicUsize,
    server_transactions: AtomicUsize,
}

impl Default for LoopHealth {
    fn default() -> Self {
        LoopHealth {
            origin: Instant::now(),
            beat_ms: AtomicU64::new(0),
            active_calls: AtomicUsize::new(0),
            server_transactions: AtomicUsize::new(0),
        }
    }
}

impl LoopHealth {
    /// Stamps a wake-up.
    pub fn beat(&self, active_calls: usize, server_transactions: usize) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.beat_ms.store(ms, Ordering::Relaxed);
        self.active_calls.store(active_calls, Ordering::Relaxed);
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

    /// Calls with a dialog, as of the latest wake-up.
    pub fn active_calls(&self) -> usize {
        self.active_calls.load(Ordering::Relaxed)
    }
}

/// Runs until `shutdown` turns true, stamping `health` on every wake-up. Returns the endpoint
/// so the caller can inspect it.
pub async fn serve(
    socket: UdpSocket,
    mut endpoint: Endpoint,
    mut shutdown: watch::Receiver<bool>,
    mut cmds: mpsc::UnboundedReceiver<CallCmd>,
    mut edge: mpsc::UnboundedReceiver<EdgeCommand>,
    mut router: CallRouter,
    health: Arc<LoopHealth>,
) -> Endpoint {
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
            Some(cmd) = cmds.recv() => {
                let now = Instant::now();
                if let Some(cmd) = router.command(cmd) {
                    endpoint.handle_call_command(cmd, now);
                }
                // drain what else is queued, so a burst of calls costs one wake-up
                while let Ok(cmd) = cmds.try_recv() {
                    if let Some(cmd) = router.command(cmd) {
                        endpoint.handle_call_command(cmd, now);
                    }
                }
            }
            Some(cmd) = edge.recv() => match cmd {
                EdgeCommand::Unban { source, reply } => {
                    let _ = reply.send(endpoint.unban(source, Instant::now()));
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            _ = tick.tick() => {}
        }
        dispatch(&mut endpoint, &mut router);
        flush(&socket, &mut endpoint).await;
        health.beat(endpoint.active_calls(), endpoint.server_transactions());
    }
    flush(&socket, &mut endpoint).await;
    endpoint
}

/// Call events to their tasks; refused attempts' records to the sink.
fn dispatch(endpoint: &mut Endpoint, router: &mut CallRouter) {
    while let Some((call, event)) = endpoint.poll_call_event() {
        if let Some(done) = router.deliver(call, event) {
            endpoint.handle_call_command(done, Instant::now());
        }
    }
    while let Some(record) = endpoint.poll_record() {
        router.context().records.record(record);
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` branch that never fires).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
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

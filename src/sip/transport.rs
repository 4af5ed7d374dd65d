//! The UDP edge of the SIP endpoint: receives datagrams, feeds them and the clock to the
//! `Endpoint`, and sends what it asks for; it also carries commands from call tasks into the
//! endpoint and the endpoint's call events out to them (`CallRouter`). No protocol logic
//! lives here.

use std::io::ErrorKind;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::endpoint::Endpoint;
use crate::call::router::CallRouter;
use crate::call::signal::CallCmd;

/// Largest datagram read; anything longer is truncated by the kernel and then refused by the
/// parser's size limit (which is below this).
const RECV_BUF: usize = 65_536;
/// Datagrams handled per wake-up before timers and sends get their turn.
const BATCH: usize = 64;

/// Runs until `shutdown` turns true. Returns the endpoint so the caller can inspect it.
pub async fn serve(
    socket: UdpSocket,
    mut endpoint: Endpoint,
    mut shutdown: watch::Receiver<bool>,
    mut cmds: mpsc::UnboundedReceiver<CallCmd>,
    mut router: CallRouter,
) -> Endpoint {
    let mut buf = vec![0u8; RECV_BUF];
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
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
        }
        dispatch(&mut endpoint, &mut router);
        flush(&socket, &mut endpoint).await;
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

//! Wiring of the running daemon: binds the SIP socket, starts the endpoint, and stops cleanly on
//! SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::sip::endpoint::Endpoint;
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;
use crate::sip::transport;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(config.sip.listen).await.with_context(|| {
        format!(
            "cannot bind SIP socket udp {} (sip.listen)",
            config.sip.listen
        )
    })?;
    let local = socket.local_addr()?;
    let registrations = Registrations::default();
    let stats = Arc::new(SipStats::default());
    // The first number parse loads libphonenumber metadata (tens of ms): not on a call's path.
    crate::numbers::warm_up();
    let endpoint = Endpoint::new(&config, registrations, stats, Instant::now())?;
    info!(listen = %local, "trunkgate {} ready: {}", env!("CARGO_PKG_VERSION"), config.summary());

    let (stop_tx, stop_rx) = watch::channel(false);
    let sip = tokio::spawn(transport::serve(socket, endpoint, stop_rx));
    wait_for_stop_signal().await?;
    info!("stopping");
    let _ = stop_tx.send(true);
    let _ = sip.await;
    info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

//! Wiring of the running daemon: binds the SIP socket, starts the endpoint and the carrier client
//! (with the in-process simulator when `carrier.simulate` is set), and stops cleanly on SIGTERM
//! or SIGINT: the SIP loop ends, carrier subscriptions are deleted.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::carrier::{Carrier, CarrierCall, Overrides};
use crate::config::{CarrierAccount, CarrierConfig, Config, Secret};
use crate::sim::{SimConfig, SimHandle, SimUser};
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
    let carrier = match &config.carrier {
        Some(c) => Some(start_carrier(c).await?),
        None => {
            warn!("no [carrier] configured: calls cannot leave (INVITEs get 503)");
            None
        }
    };
    wait_for_stop_signal().await?;
    info!("stopping");
    let _ = stop_tx.send(true);
    let _ = sip.await;
    if let Some((carrier, sim, inbound)) = carrier {
        carrier.shutdown().await;
        inbound.abort();
        if let Some(sim) = sim {
            sim.stop().await;
        }
    }
    info!("stopped");
    Ok(())
}

type CarrierParts = (Carrier, Option<SimHandle>, tokio::task::JoinHandle<()>);

/// Starts the carrier client, and first the simulator when `simulate` is set.
async fn start_carrier(cfg: &CarrierConfig) -> anyhow::Result<CarrierParts> {
    let mut cfg = cfg.clone();
    let mut overrides = Overrides::default();
    let mut sim = None;
    if cfg.simulate {
        if cfg.accounts.is_empty() {
            cfg.accounts.push(CarrierAccount {
                name: "simulator".into(),
                base_url: None,
                username: "demo-gateway".into(),
                password: Secret::new(format!("{:032x}", rand::random::<u128>())),
                domain: "sim.invalid".into(),
                max_calls: 100,
            });
        }
        let sim_cfg = SimConfig {
            listen: "127.0.0.1:0".parse()?,
            control_listen: "127.0.0.1:0".parse()?,
            users: cfg
                .accounts
                .iter()
                .map(|a| SimUser::new(&a.username, a.password.expose()))
                .collect(),
            ..SimConfig::default()
        };
        let handle = crate::sim::start(sim_cfg)
            .await
            .context("cannot start the in-process carrier simulator")?;
        info!(
            rest = %handle.base_url(),
            control = %handle.control_url(),
            "carrier simulator running in-process (carrier.simulate = true)"
        );
        overrides = Overrides {
            base_url: Some(handle.base_url()),
            extra_ca_pem: Some(handle.cert_pem().to_string()),
        };
        sim = Some(handle);
    }
    let (carrier, inbound) =
        Carrier::start(&cfg, overrides).context("cannot start the carrier client")?;
    let inbound = tokio::spawn(refuse_inbound(inbound));
    Ok((carrier, sim, inbound))
}

/// Until calls are bridged, a carrier-originated call is rejected at the carrier, visibly.
async fn refuse_inbound(mut inbound: tokio::sync::mpsc::Receiver<CarrierCall>) {
    while let Some(mut call) = inbound.recv().await {
        let from = call
            .incoming()
            .and_then(|c| c.caller_number.clone())
            .unwrap_or_default();
        warn!(session = %call.session(), %from, "inbound carrier call rejected: no call bridge in this build");
        if let Err(e) = call.reject().await {
            warn!(session = %call.session(), "reject failed: {e}");
        }
    }
}

pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

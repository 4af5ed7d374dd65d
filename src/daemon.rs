//! Wiring of the running daemon: binds the SIP socket, starts the carrier client (with the
//! in-process simulator when `carrier.simulate` is set), the call context the call tasks share,
//! and the endpoint; carrier-originated calls become inbound call tasks. Stops cleanly on
//! SIGTERM or SIGINT: the SIP loop ends, carrier subscriptions are deleted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::call::context::CallContext;
use crate::call::record::{RecordSink, Records};
use crate::call::router::CallRouter;
use crate::call::settings::{CallSettings, LiveSettings};
use crate::carrier::{Carrier, CarrierCall, Overrides};
use crate::cluster::Cluster;
use crate::config::{CarrierAccount, CarrierConfig, Config, Secret};
use crate::media::engine::{EngineConfig, MediaEngine};
use crate::media::rtp_leg::PortPool;
use crate::media::PeerSettings;
use crate::ops::cdr::{CdrWriter, Fanout};
use crate::ops::http::OpsState;
use crate::ops::metrics::CallMetrics;
use crate::ops::systemd::{self as sd, Notifier};
use crate::sim::{SimConfig, SimHandle, SimUser};
use crate::sip::endpoint::Endpoint;
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;
use crate::sip::transport::{self, Control};

/// Runs the daemon on `config` until SIGTERM or SIGINT: binds the SIP socket and the status
/// endpoint, starts the carrier client, serves calls, and re-reads `path` on SIGHUP. Returns once
/// calls have drained and the carrier subscriptions are deleted; fails if a socket cannot be
/// bound or a component cannot start.
pub async fn run(config: Config, path: std::path::PathBuf) -> anyhow::Result<()> {
    // Caught before anything answers: a SIGHUP or SIGTERM that arrives while starting must be
    // handled, not kill the process with the default action.
    let mut signals = Signals::catch()?;
    let socket = UdpSocket::bind(config.sip.listen).await.with_context(|| {
        format!(
            "cannot bind SIP socket udp {} (sip.listen)",
            config.sip.listen
        )
    })?;
    let local = socket.local_addr()?;
    widen_receive_buffer(&socket);
    let advertise = SocketAddr::new(advertised_ip(&config, local)?, local.port());
    let status_listener = tokio::net::TcpListener::bind(config.status.listen)
        .await
        .with_context(|| {
            format!(
                "cannot bind the status endpoint tcp {} (status.listen)",
                config.status.listen
            )
        })?;
    let cdr = Arc::new(CdrWriter::start(&config.cdr.path)?);
    let call_metrics = Arc::new(CallMetrics::default());
    let records: Records = Arc::new(Fanout(vec![
        cdr.clone() as Arc<dyn RecordSink>,
        call_metrics.clone() as Arc<dyn RecordSink>,
    ]));
    let registrations = Registrations::default();
    let stats = Arc::new(SipStats::default());
    // The first number parse loads libphonenumber metadata (tens of ms): not on a call's path.
    crate::numbers::warm_up();
    let mut endpoint = Endpoint::new(
        &config,
        registrations.clone(),
        stats.clone(),
        Instant::now(),
    )?;
    endpoint.set_advertise(advertise);

    let carrier = match &config.carrier {
        Some(c) => Some(start_carrier(c).await?),
        None => {
            warn!("no [carrier] configured: calls cannot leave (INVITEs get 503)");
            None
        }
    };
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (facts_tx, facts_rx) = mpsc::unbounded_channel();
    let node = config
        .cluster
        .node_name(config.sip.listen, config.sip.advertise);
    let cluster = Cluster::start(&config.cluster, &node, control_tx.clone(), facts_rx)?;
    let ctx = Arc::new(call_context(
        &config,
        advertise.ip(),
        (carrier.as_ref().map(|c| c.0.clone()), cluster.clone()),
        cmd_tx,
        endpoint.call_refs(),
        records,
    )?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = Arc::new(transport::LoopHealth::default());
    let ops = Arc::new(OpsState {
        started: Instant::now(),
        stats,
        traffic: endpoint.traffic().clone(),
        registrations: registrations.clone(),
        settings: ctx.settings.clone(),
        carrier: ctx.carrier.clone(),
        calls: ctx.registry.clone(),
        metrics: call_metrics,
        draining: ctx.draining.clone(),
        security: endpoint.security().clone(),
        control: control_tx.clone(),
        sip_loop: health.clone(),
        cluster: cluster.clone(),
        media: ctx.media.counters().clone(),
    });
    let status_addr = status_listener.local_addr()?;
    let http = tokio::spawn(crate::ops::http::serve(
        status_listener,
        ops,
        stop_rx.clone(),
    ));
    info!(listen = %local, advertise = %advertise, status = %status_addr, cdr = %config.cdr.path.display(),
          "trunkgate {} ready: {}", env!("CARGO_PKG_VERSION"), config.summary());

    if let Some(c) = ctx.carrier.clone() {
        tokio::spawn(watch_carrier(c, control_tx.clone(), stop_rx.clone()));
    }
    let router = CallRouter::new(ctx.clone());
    let sip = tokio::spawn(transport::serve(
        socket,
        endpoint,
        transport::Links {
            commands: cmd_rx,
            control: control_rx,
            tu: router,
            shared: cluster.is_some().then_some(facts_tx),
            health: health.clone(),
            shutdown: stop_rx,
        },
    ));
    let (carrier, sim, inbound) = match carrier {
        Some((carrier, sim, calls)) => (
            Some(carrier),
            sim,
            Some(tokio::spawn(accept_inbound(ctx.clone(), calls))),
        ),
        None => (None, None, None),
    };
    // systemd: READY=1 now that the SIP socket is bound and the carrier subscription started
    let notifier = Notifier::from_env();
    let ready_status = || {
        let trunks = &ctx.settings.current().trunks;
        format!(
            "listening udp {local}; {}",
            sd::status_line(trunks, &registrations, ctx.registry.len())
        )
    };
    notifier.ready(&ready_status());
    let supervisor = sd::supervise(
        notifier.clone(),
        health,
        ctx.registry.clone(),
        registrations.clone(),
        ctx.settings.clone(),
    );
    let mut running = config.clone();
    while let Signal::Reload = signals.next().await {
        notifier.reloading();
        info!(config = %path.display(), "SIGHUP: reloading the configuration, reopening the call record file");
        cdr.reopen();
        match Config::load(&path) {
            Err(e) => {
                tracing::error!("reload refused, the running configuration stays: {e}");
            }
            Ok(new) => match CallSettings::new(&new) {
                Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                Ok(settings) => {
                    for setting in needs_restart(&running, &new) {
                        warn!(
                            setting,
                            "changed in the file, but applies only after a restart"
                        );
                    }
                    let _ = control_tx.send(Control::Reconfigure(Arc::new(new.clone())));
                    ctx.settings.replace(settings);
                    if let (Some(c), Some(k)) = (&ctx.carrier, &new.carrier) {
                        for name in c.set_passwords(&k.accounts) {
                            warn!(account = %name, "carrier account not applied: it needs a restart");
                        }
                    }
                    running = new;
                    info!("configuration reloaded: trunks, secrets, number policies, limits, call settings");
                }
            },
        }
        notifier.ready(&ready_status());
    }
    info!("stopping");
    notifier.stopping();
    drain(&ctx, &control_tx, running.calls.drain_grace, &mut signals).await;
    let _ = stop_tx.send(true);
    let _ = sip.await;
    if let Some(cluster) = &ctx.cluster {
        cluster.stop().await;
    }
    let _ = http.await;
    if let Some(inbound) = inbound {
        inbound.abort();
    }
    cdr.flush();
    drop(ctx);
    if let Some(carrier) = carrier {
        carrier.shutdown().await;
    }
    if let Some(sim) = sim {
        sim.stop().await;
    }
    if let Some(supervisor) = supervisor {
        supervisor.abort();
    }
    info!("stopped");
    Ok(())
}

/// SIGTERM/SIGINT: new calls are refused (503 with Retry-After, inbound rejected at the
/// carrier), calls up continue for `grace`, then every call still up is ended on both legs and
/// its record written.
async fn drain(
    ctx: &Arc<CallContext>,
    control: &mpsc::UnboundedSender<Control>,
    grace: std::time::Duration,
    signals: &mut Signals,
) {
    ctx.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = control.send(Control::Drain);
    let active = ctx.registry.len();
    info!(
        active,
        grace_s = grace.as_secs(),
        "stopping: new calls refused, draining calls"
    );
    let deadline = tokio::time::Instant::now() + grace;
    while !ctx.registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = signals.stop() => {
                warn!("second stop signal: ending calls now");
                break;
            }
        }
    }
    if !ctx.registry.is_empty() {
        info!(
            left = ctx.registry.len(),
            "grace period over: ending the remaining calls"
        );
        ctx.registry.hangup_all();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !ctx.registry.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The settings a reload cannot apply to a running daemon, by key.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut v = Vec::new();
    if old.sip.listen != new.sip.listen {
        v.push("sip.listen");
    }
    if old.sip.advertise != new.sip.advertise {
        v.push("sip.advertise");
    }
    if (old.sip.t1, old.sip.t2, old.sip.t4) != (new.sip.t1, new.sip.t2, new.sip.t4) {
        v.push("sip.t1/t2/t4");
    }
    if old.sip.nonce_lifetime != new.sip.nonce_lifetime {
        v.push("sip.nonce_lifetime");
    }
    if differs(&old.media, &new.media) {
        v.push("media (rtp_ports, rtp_bind, webrtc_bind)");
    }
    if old.status.listen != new.status.listen {
        v.push("status.listen");
    }
    if old.cdr.path != new.cdr.path {
        v.push("cdr.path");
    }
    // Passwords print as *** in Debug, so this ignores them: they are applied on reload.
    let carrier = |c: &Config| c.carrier.as_ref().map(|k| format!("{k:?}"));
    if carrier(old) != carrier(new) {
        v.push("carrier (accounts other than their passwords, ICE servers, timers)");
    }
    if differs(&old.log, &new.log) {
        v.push("log");
    }
    v
}

enum Signal {
    Reload,
    Stop,
}

/// SIGHUP, SIGTERM and SIGINT, caught from creation on.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
        }
    }

    /// The next SIGTERM or SIGINT (a SIGHUP while stopping only reopens nothing).
    async fn stop(&mut self) {
        while let Signal::Reload = self.next().await {}
    }
}

/// The address PBXs reach us at: `sip.advertise`, else the bound address, else (bound to all
/// interfaces) the source address the routing table picks for a public destination. The
/// lookup is a `connect` on an unbound UDP socket: no packet is sent.
/// What the SIP socket asks the kernel to queue: a burst of 30,000 datagrams/s (a flood, or
/// every PBX re-registering after an outage) outruns the default ~208 KiB while bans are being
/// decided, and what the kernel drops is lost before the guard can count it.
const SIP_RECEIVE_BUFFER: usize = 4 << 20;

fn widen_receive_buffer(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(SIP_RECEIVE_BUFFER) {
        warn!(error = %e, "cannot set the SIP socket's receive buffer");
        return;
    }
    // Linux caps the request at net.core.rmem_max and reports double what it grants.
    match sock.recv_buffer_size() {
        Ok(got) if got < SIP_RECEIVE_BUFFER => info!(
            bytes = got,
            wanted = SIP_RECEIVE_BUFFER,
            "SIP receive buffer capped by net.core.rmem_max; raise it for flood headroom"
        ),
        _ => {}
    }
}

fn advertised_ip(config: &Config, local: SocketAddr) -> anyhow::Result<IpAddr> {
    if let Some(ip) = config.sip.advertise {
        return Ok(ip);
    }
    if !local.ip().is_unspecified() {
        return Ok(local.ip());
    }
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
    probe.connect("192.0.2.1:9").context(
        "sip.listen binds all interfaces and no route exists to pick an address: set sip.advertise",
    )?;
    let ip = probe.local_addr()?.ip();
    warn!(%ip, "sip.advertise not set: advertising the default route's address");
    Ok(ip)
}

fn call_context(
    config: &Config,
    sdp_ip: IpAddr,
    (carrier, cluster): (Option<Arc<Carrier>>, Option<Cluster>),
    cmds: mpsc::UnboundedSender<crate::sip::tu::DialogCommand>,
    refs: Arc<crate::sip::tu::CallRefs>,
    records: Records,
) -> anyhow::Result<CallContext> {
    let (first, last) = config
        .media
        .port_range()
        .map_err(|e| anyhow::anyhow!("media.rtp_ports: {e}"))?;
    let listen_ip = config.sip.listen.ip();
    let rtp_ip = config.media.rtp_bind.unwrap_or(listen_ip);
    let webrtc_ip = config
        .media
        .webrtc_bind
        .unwrap_or(if listen_ip.is_unspecified() {
            sdp_ip
        } else {
            listen_ip
        });
    let mut peer = PeerSettings::new(webrtc_ip);
    peer.relay_only = carrier.as_ref().is_some_and(|c| c.relay_only());
    let media = MediaEngine::start(&EngineConfig {
        threads: config.media.threads,
        bind: std::net::SocketAddr::new(webrtc_ip, config.media.webrtc_port),
        port_per_call: config.media.webrtc_port_per_call,
        turn_tls: carrier.as_ref().map(|c| c.tls_config()),
        batch_window: config.media.batch_window,
    })
    .map_err(|e| anyhow::anyhow!("media engine (media.webrtc_bind / media.webrtc_port): {e}"))?;
    Ok(CallContext {
        media,
        carrier,
        ports: PortPool::new(rtp_ip, first, last),
        sdp_ip,
        peer,
        cmds,
        records,
        settings: LiveSettings::new(CallSettings::new(config)?),
        refs,
        registry: Arc::new(crate::call::registry::Registry::default()),
        draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        cluster,
    })
}

type CarrierParts = (
    Arc<Carrier>,
    Option<SimHandle>,
    tokio::sync::mpsc::Receiver<CarrierCall>,
);

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
    Ok((Arc::new(carrier), sim, inbound))
}

/// Each carrier-originated call becomes an inbound call task.
/// Tells the SIP loop whether some carrier account is subscribed, so its OPTIONS answer the
/// dispatcher truthfully (503 while no call could leave).
async fn watch_carrier(
    carrier: Arc<Carrier>,
    control: mpsc::UnboundedSender<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let mut told = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let ready = carrier.subscribed();
        if told != Some(ready) {
            if ready {
                info!("a carrier account is subscribed: OPTIONS answer 200");
            } else if told == Some(true) {
                warn!("no carrier account subscribed any more: OPTIONS answer 503 until one is");
            }
            told = Some(ready);
            if control.send(Control::CarrierReady(ready)).is_err() {
                return;
            }
        }
    }
}

async fn accept_inbound(ctx: Arc<CallContext>, mut inbound: mpsc::Receiver<CarrierCall>) {
    while let Some(call) = inbound.recv().await {
        let id = ctx.refs.next();
        tokio::spawn(crate::call::driver::run_inbound(ctx.clone(), id, call));
    }
}

/// Waits for SIGTERM or SIGINT (for processes that are not the daemon, such as `trunkgate sim`).
pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    stop_signal()?.await;
    Ok(())
}

/// Catches SIGTERM and SIGINT from now on; the future completes at the first of them.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

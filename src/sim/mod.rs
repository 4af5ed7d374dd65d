//! The Kandy Link carrier simulator (CARRIER.md, "The simulator (model)"): the REST paths and
//! the notification WebSocket over TLS, Basic credentials, scripted far ends per dialled
//! number, inbound origination, faults, and a plain-HTTP control API on loopback that reports
//! what it saw. Used in-process by the demo and the tests, and by `trunkgate sim`.
//!
//! It shares its wire types with the client (`carrier::protocol`) and keeps all media behind
//! `media` (an SDP-only placeholder for now). It must not depend on the daemon's other modules.

mod api;
mod auth;
mod call_ops;
mod calls;
pub(crate) mod config;
mod control;
mod faults;
mod inbound;
pub mod media;
mod notify;
mod outbound;
mod rest_calls;
mod rest_subscription;
mod routes;
mod script;
mod state;
mod stats;
mod subscriptions;
mod sweeper;
pub(crate) mod tls;
mod ws;

#[cfg(test)]
pub(crate) mod test_client;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{SimConfig, SimConfigError, SimUser};
// What the in-process tests observe the simulator through.
#[cfg(test)]
pub(crate) use calls::{CallState, CallView};
#[cfg(test)]
pub(crate) use config::BehaviourConfig;
#[cfg(test)]
pub(crate) use stats::StatsView;
#[cfg(test)]
pub(crate) use subscriptions::SubscriptionView;

use state::{lock, Sim};
use subscriptions::WsOut;

/// Why the simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] SimConfigError),
    /// The certificate could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The certificate could not be written to `cert_out`.
    #[error("cannot write the certificate to {path}: {source}")]
    CertOut {
        /// The `cert_out` path.
        path: String,
        /// The I/O error writing it.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address it tried to listen on.
        addr: SocketAddr,
        /// The I/O error binding it.
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it stops it too; `stop` waits for the listeners to close.
pub struct SimHandle {
    /// The REST and WebSocket (TLS) listener's address, the ephemeral port resolved.
    pub rest_addr: SocketAddr,
    /// The plain-HTTP control API's address, the ephemeral port resolved.
    pub control_addr: SocketAddr,
    cert_pem: String,
    sim: Arc<Sim>,
    server: axum_server::Handle<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// `https://127.0.0.1:{port}` (the certificate names 127.0.0.1 and localhost).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.rest_addr)
    }

    /// `http://127.0.0.1:{port}` of the control API.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// The certificate served, PEM (trust it to talk to the simulator).
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A rustls client configuration trusting only this simulator's certificate.
    #[cfg(test)]
    pub(crate) fn client_tls_config(&self) -> Result<rustls::ClientConfig, tls::TlsError> {
        tls::client_config(&self.cert_pem)
    }

    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> Vec<SubscriptionView> {
        lock(&self.sim.subs).views(self.sim.started)
    }

    #[cfg(test)]
    pub(crate) fn calls(&self) -> Vec<CallView> {
        lock(&self.sim.calls).views()
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> StatsView {
        self.sim.stats.view()
    }

    /// Stops both listeners and drops every WebSocket.
    pub async fn stop(mut self) {
        self.halt();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        tracing::info!("simulator stopped");
    }

    fn halt(&mut self) {
        self.server.shutdown();
        let _ = self.shutdown.send(true);
        let ids = lock(&self.sim.subs).live_ids(None);
        let mut subs = lock(&self.sim.subs);
        for id in ids {
            if let Some(slot) = subs.get_mut(&id).and_then(|s| s.ws.take()) {
                let _ = slot.tx.send(WsOut::Abort);
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.halt();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Validates the configuration, makes the certificate, binds both listeners and starts serving.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    cfg.validate()?;
    let material = tls::load_or_generate(&cfg)?;
    if let Some(path) = &cfg.cert_out {
        std::fs::write(path, &material.cert_pem).map_err(|source| SimError::CertOut {
            path: path.display().to_string(),
            source,
        })?;
    }
    let listen_err = |addr| move |source| SimError::Listen { addr, source };
    let rest_listener = std::net::TcpListener::bind(cfg.listen).map_err(listen_err(cfg.listen))?;
    rest_listener
        .set_nonblocking(true)
        .map_err(listen_err(cfg.listen))?;
    let rest_addr = rest_listener.local_addr().map_err(listen_err(cfg.listen))?;
    let control_listener = tokio::net::TcpListener::bind(cfg.control_listen)
        .await
        .map_err(listen_err(cfg.control_listen))?;
    let control_addr = control_listener
        .local_addr()
        .map_err(listen_err(cfg.control_listen))?;

    let sim = Arc::new(Sim::new(cfg));
    let server = axum_server::Handle::new();
    let tls = RustlsConfig::from_config(material.server_config);
    let rest = axum_server::from_tcp_rustls(rest_listener, tls)
        .map_err(listen_err(rest_addr))?
        .handle(server.clone());
    let app = routes::router(sim.clone());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = rest.serve(app.into_make_service()).await {
            tracing::error!("simulator REST listener failed: {e}");
        }
    }));

    let (shutdown, mut stopped) = watch::channel(false);
    let control = control::router(sim.clone());
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(control_listener, control).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!("simulator control listener failed: {e}");
        }
    }));
    let sweeper = tokio::spawn(sweeper::run(sim.clone()));
    let sweeper_abort = sweeper.abort_handle();
    let mut stop_rx = shutdown.subscribe();
    tasks.push(tokio::spawn(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
        sweeper_abort.abort();
    }));
    tasks.push(sweeper);
    tracing::info!(%rest_addr, %control_addr, "carrier simulator listening");
    Ok(SimHandle {
        rest_addr,
        control_addr,
        cert_pem: material.cert_pem,
        sim,
        server,
        shutdown,
        tasks,
    })
}

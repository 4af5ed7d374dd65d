//! The carrier leg: the Kandy Link client (CARRIER.md) that the call module uses to reach the
//! WebRTC carrier. It owns the accounts' subscriptions and notification channels, chooses an
//! account with free capacity for each call, and gives each call a typed handle
//! ([`CarrierCall`]) with its own event stream.
//!
//! `protocol` is the wire format, `lifecycle` the I/O-free subscription rules, `events` the pure
//! notification classification; `account`, `websocket` and `call` are the async edges.

pub mod account;
pub mod call;
pub mod events;
pub mod lifecycle;
pub mod protocol;
pub mod rest;
pub mod tls;
mod websocket;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tracing::info;

pub use account::{AccountStatus, ClientSettings};
pub use call::{CallDirection, CarrierCall};
pub use lifecycle::Backoff;
pub use rest::RestError;

use crate::config::{CarrierConfig, IceTransportPolicy};
pub(crate) use crate::media::IceServer;
use account::Account;

#[derive(Debug, Error)]
pub enum CarrierError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("carrier account {account}: {source}")]
    Account { account: String, source: RestError },
    #[error("carrier account {0} has no base_url")]
    NoBaseUrl(String),
}

/// Why no account could take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Unavailable {
    #[error("no carrier account is subscribed")]
    NotSubscribed,
    #[error("every carrier account is at max_calls")]
    AtCapacity,
}

/// Capacity on one account, held from before the WebRTC offer is built until the call ends.
pub struct Reservation {
    account: Arc<Account>,
    /// `None` only for an emergency call admitted over the account's `max_calls`.
    permit: Option<OwnedSemaphorePermit>,
    ice_servers: Vec<IceServer>,
}

impl Reservation {
    pub fn account(&self) -> &str {
        &self.account.name
    }

    /// The ICE servers for this call's peer connection (TURN credentials applied).
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// `callStart` to an E.164 number (`+9715...`) with a complete offer.
    pub async fn start_call(self, e164: &str, offer_sdp: &str) -> Result<CarrierCall, RestError> {
        let from = format!("sip:{}", self.account.rest.username());
        let to = format!("sip:{e164}@{}", self.account.domain);
        let session = self.account.rest.call_start(&from, &to, offer_sdp).await?;
        Ok(CarrierCall::new(
            self.account,
            session,
            CallDirection::Outbound,
            self.permit,
        ))
    }
}

pub struct Carrier {
    accounts: Vec<Arc<Account>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    ice_urls: Vec<String>,
    relay_only: bool,
    tls: Arc<rustls::ClientConfig>,
}

/// Where the accounts point when the in-process simulator stands in for the carrier.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub base_url: Option<String>,
    /// PEM certificate(s) to trust besides the system roots and `ca_file`.
    pub extra_ca_pem: Option<String>,
}

impl Carrier {
    /// Starts every account's subscription. Inbound calls arrive on the returned receiver.
    pub fn start(
        cfg: &CarrierConfig,
        overrides: Overrides,
    ) -> Result<(Carrier, mpsc::Receiver<CarrierCall>), CarrierError> {
        let tls = tls::client_config(cfg.ca_file.as_deref(), overrides.extra_ca_pem.as_deref())?;
        let settings = Arc::new(ClientSettings {
            tls,
            ping_interval: cfg.ping_interval,
            subscription_expires: cfg.subscription_expires,
            backoff: Backoff {
                initial: cfg.reconnect_initial,
                max: cfg.reconnect_max,
                multiplier: cfg.reconnect_multiplier,
            },
            audit_interval: cfg.audit_interval,
            client_correlator: format!(
                "trunkgate-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
        });
        let (inbound_tx, inbound_rx) = mpsc::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let mut accounts = Vec::new();
        let mut tasks = Vec::new();
        for a in &cfg.accounts {
            let base = overrides
                .base_url
                .clone()
                .or_else(|| a.base_url.clone())
                .ok_or_else(|| CarrierError::NoBaseUrl(a.name.clone()))?;
            let rest = rest::RestClient::new(
                &base,
                &a.username,
                a.password.expose(),
                settings.tls.clone(),
                cfg.request_timeout,
            )
            .map_err(|source| CarrierError::Account {
                account: a.name.clone(),
                source,
            })?;
            let (account, signals) = Account::new(
                a.name.clone(),
                a.domain.clone(),
                rest,
                settings.clone(),
                a.max_calls,
                inbound_tx.clone(),
            );
            info!(account = %a.name, base = %base, max_calls = a.max_calls, "carrier account starting");
            tasks.push(tokio::spawn(account::run(
                account.clone(),
                signals,
                stop_rx.clone(),
            )));
            accounts.push(account);
        }
        Ok((
            Carrier {
                accounts,
                tasks: std::sync::Mutex::new(tasks),
                stop,
                ice_urls: cfg.ice_servers.clone(),
                relay_only: cfg.ice_transport_policy == IceTransportPolicy::Relay,
                tls: settings.tls.clone(),
            },
            inbound_rx,
        ))
    }

    pub fn relay_only(&self) -> bool {
        self.relay_only
    }

    /// The TLS trust the carrier's servers are checked with (system roots plus `ca_file`): the
    /// media engine checks `turns:` servers with it too.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// Some account is subscribed: calls can leave.
    pub fn subscribed(&self) -> bool {
        self.accounts.iter().any(|a| a.usable())
    }

    /// Takes capacity on the subscribed account with the most room.
    pub fn reserve(&self) -> Result<Reservation, Unavailable> {
        let mut usable: Vec<&Arc<Account>> = self.accounts.iter().filter(|a| a.usable()).collect();
        if usable.is_empty() {
            return Err(Unavailable::NotSubscribed);
        }
        usable.sort_by_key(|a| std::cmp::Reverse(a.capacity.available_permits()));
        for account in usable {
            if let Ok(permit) = account.capacity.clone().try_acquire_owned() {
                return Ok(self.reservation(account, Some(permit)));
            }
        }
        Err(Unavailable::AtCapacity)
    }

    /// `reserve` for an emergency call: when every account is at its `max_calls`, the call
    /// still goes out on the first usable one, over the limit (and is not counted in it).
    pub fn reserve_emergency(&self) -> Result<Reservation, Unavailable> {
        match self.reserve() {
            Err(Unavailable::AtCapacity) => self
                .accounts
                .iter()
                .find(|a| a.usable())
                .map(|a| self.reservation(a, None))
                .ok_or(Unavailable::NotSubscribed),
            other => other,
        }
    }

    fn reservation(
        &self,
        account: &Arc<Account>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Reservation {
        let turn = account.turn_credentials();
        Reservation {
            ice_servers: ice_servers(&self.ice_urls, turn.as_ref()),
            account: account.clone(),
            permit,
        }
    }

    /// ICE servers of an account for an inbound call's answer.
    pub fn ice_servers_for(&self, call: &CarrierCall) -> Vec<IceServer> {
        let turn = self
            .accounts
            .iter()
            .find(|a| a.name == call.account())
            .and_then(|a| a.turn_credentials());
        ice_servers(&self.ice_urls, turn.as_ref())
    }

    /// Applies new passwords of accounts that are otherwise unchanged (same name, username and
    /// URL) to their next requests; an account in the `unauthorized` state retries with it at
    /// its next attempt. Returns the names of accounts whose other settings changed (those need a
    /// restart).
    pub fn set_passwords(&self, accounts: &[crate::config::CarrierAccount]) -> Vec<String> {
        let mut not_applied = Vec::new();
        for new in accounts {
            match self.accounts.iter().find(|a| a.name == new.name) {
                Some(a) if a.rest.username() == new.username => {
                    if let Err(e) = a.rest.set_password(new.password.expose()) {
                        tracing::warn!(account = %a.name, error = %e, "new carrier password refused");
                    }
                }
                _ => not_applied.push(new.name.clone()),
            }
        }
        not_applied
    }

    pub fn status(&self) -> Vec<AccountStatus> {
        self.accounts.iter().map(|a| a.status()).collect()
    }

    /// Stops every account: sockets closed with 1000, subscriptions deleted (bounded wait).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// The configured URLs with TURN credentials applied to every turn:/turns: entry.
pub fn ice_servers(urls: &[String], turn: Option<&protocol::TurnCredentials>) -> Vec<IceServer> {
    urls.iter()
        .map(|u| {
            let is_turn = u.starts_with("turn:") || u.starts_with("turns:");
            IceServer {
                urls: vec![u.clone()],
                username: turn.filter(|_| is_turn).map(|t| t.username.clone()),
                credential: turn.filter(|_| is_turn).map(|t| t.password.clone()),
            }
        })
        .collect()
}

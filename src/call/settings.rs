//! What calls read from the configuration, compiled once per load (the number plan, the
//! session-timer bounds) and swapped whole on reload: a call takes the settings current when
//! it starts, and a confirmed call reads the media timeout again on each check, so a reload
//! reaches calls without a restart.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::session_timer::{self, SessionTimerConfig};
use crate::config::{CallsConfig, Config, InboundConfig};
use crate::numbers::{NumberPolicy, NumbersError};

/// A configuration the call layer cannot use (validation refuses both earlier; kept as types so
/// the daemon says which key is wrong).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `[numbers]` does not make a policy.
    #[error("numbers: {0}")]
    Numbers(#[from] NumbersError),
    /// `calls.session_expires` / `calls.min_se` break RFC 4028.
    #[error("calls.session_expires / calls.min_se: {0}")]
    SessionTimer(#[from] session_timer::ConfigError),
}

/// The call layer's part of one configuration.
#[derive(Debug)]
pub struct CallSettings {
    /// `[calls]`.
    pub calls: CallsConfig,
    /// The RFC 4028 bounds from `[calls]`.
    pub timer: SessionTimerConfig,
    /// `[inbound]`: routing carrier calls to trunks.
    pub inbound: InboundConfig,
    /// Trunk names in configuration order (the inbound default is the first).
    pub trunks: Vec<String>,
    /// The global number plan, for writing carrier numbers toward the PBX.
    pub numbers: NumberPolicy,
    /// Each trunk's `max_calls`, held across the cluster.
    trunk_limits: Vec<(String, Option<usize>)>,
}

impl CallSettings {
    /// The call layer's settings of `config`.
    pub fn new(config: &Config) -> Result<CallSettings, SettingsError> {
        Ok(CallSettings {
            calls: config.calls.clone(),
            timer: SessionTimerConfig::new(config.calls.session_expires, config.calls.min_se)?,
            inbound: config.inbound.clone(),
            trunks: config.trunks.iter().map(|t| t.name.clone()).collect(),
            numbers: NumberPolicy::new(&config.numbers)?,
            trunk_limits: config
                .trunks
                .iter()
                .map(|t| (t.name.clone(), t.max_calls))
                .collect(),
        })
    }

    /// The trunk's `max_calls`, if it has one.
    pub fn trunk_max_calls(&self, trunk: &str) -> Option<usize> {
        self.trunk_limits
            .iter()
            .find(|(name, _)| name == trunk)
            .and_then(|(_, max)| *max)
    }

    /// The trunk a carrier call to `did` (E.164) goes to.
    pub fn route(&self, did: &str) -> Option<&str> {
        self.inbound
            .routes
            .iter()
            .find(|r| r.matches(did))
            .map(|r| r.trunk.as_str())
            .or(self.inbound.default_trunk.as_deref())
            .or(self.trunks.first().map(String::as_str))
    }
}

/// The current settings, replaced whole on reload; clones share them, so every call holds a
/// handle and sees a reload at its next read.
#[derive(Debug, Clone)]
pub struct LiveSettings(Arc<ArcSwap<CallSettings>>);

impl LiveSettings {
    /// Starts with `settings`.
    pub fn new(settings: CallSettings) -> LiveSettings {
        LiveSettings(Arc::new(ArcSwap::from_pointee(settings)))
    }

    /// The settings now.
    pub fn current(&self) -> Arc<CallSettings> {
        self.0.load_full()
    }

    /// From now on, `settings`.
    pub fn replace(&self, settings: CallSettings) {
        self.0.store(Arc::new(settings));
    }
}

//! The systemd service protocol (sd_notify): readiness, status text, watchdog pings, reload
//! and stop notifications. Everything is a no-op when `NOTIFY_SOCKET` is unset (not started
//! by systemd, or not `Type=notify`).
//!
//! The watchdog pings are tied to the SIP loop's health: the loop stamps a `LoopHealth` on
//! every wake-up (at least once a second) and `supervise` pings only while that stamp is
//! recent, so a hung loop stops the pings and systemd restarts the service.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::call::registry::Registry;
use crate::call::settings::LiveSettings;
use crate::sip::registrar::Registrations;
use crate::sip::transport::LoopHealth;

/// A SIP loop stamp older than this counts as hung: the loop wakes at least once a second.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// How often the `STATUS=` line is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Sends notifications to the service manager.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
    /// (the watchdog applies to us when `WATCHDOG_PID` is absent or our pid).
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        Notifier {
            enabled,
            watchdog: enabled
                .then(sd_notify::watchdog_enabled)
                .flatten()
                .filter(|d| !d.is_zero()),
        }
    }

    /// A notifier that never sends anything.
    #[cfg(test)]
    pub fn disabled() -> Notifier {
        Notifier {
            enabled: false,
            watchdog: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How often to send `WATCHDOG=1`: half the `WatchdogSec=` systemd asks for; `None` when
    /// no watchdog is configured.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// `READY=1` with a status line: start-up (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// `STATUS=`: free-form text `systemctl status` shows.
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(&one_line(text))]);
    }

    /// `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (what `Type=notify-reload` in systemd 253 and later
    /// requires; `Type=notify` accepts it as well). Send `ready` when the reload is done.
    pub fn reloading(&self) {
        if !self.enabled {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`: shutdown (or drain) has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
        }
    }
}

/// A status line carries no newline (the protocol is one `KEY=value` per line).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The `STATUS=` text: registered trunks out of those configured, and active calls.
pub fn status_line(
    trunks: &[String],
    registrations: &Registrations,
    active_calls: usize,
) -> String {
    let all = registrations.all();
    let registered: Vec<&str> = trunks
        .iter()
        .filter(|t| all.get(*t).is_some_and(|r| r.is_registered()))
        .map(String::as_str)
        .collect();
    let mut s = format!(
        "{}/{} trunk{} registered",
        registered.len(),
        trunks.len(),
        if trunks.len() == 1 { "" } else { "s" }
    );
    if !registered.is_empty() {
        s.push_str(&format!(" ({})", registered.join(", ")));
    }
    s.push_str(&format!(
        ", {active_calls} active call{}",
        if active_calls == 1 { "" } else { "s" }
    ));
    s
}

/// Keeps systemd informed until aborted: `WATCHDOG=1` every half watchdog period while the SIP
/// loop is responsive, and the `STATUS=` line every few seconds. Returns `None` (no task) when
/// systemd is not listening.
pub fn supervise(
    notifier: Notifier,
    health: Arc<LoopHealth>,
    calls: Arc<Registry>,
    registrations: Registrations,
    settings: LiveSettings,
) -> Option<JoinHandle<()>> {
    if !notifier.enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ping_every = notifier.watchdog_interval();
        let mut ping = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = String::new();
        let mut hung = false;
        loop {
            tokio::select! {
                _ = ping.tick(), if ping_every.is_some() => {
                    let age = health.age();
                    if age <= STALE_AFTER {
                        if hung {
                            warn!("SIP loop responsive again: watchdog pings resume");
                            hung = false;
                        }
                        notifier.watchdog();
                    } else if !hung {
                        warn!(age_ms = age.as_millis() as u64, "SIP loop unresponsive: watchdog pings stop");
                        hung = true;
                    }
                }
                _ = status.tick() => {
                    let line = status_line(&settings.current().trunks, &registrations, calls.len());
                    if line != last {
                        debug!(status = %line, "systemd status");
                        notifier.status(&line);
                        last = line;
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_counts_trunks_and_calls() {
        let regs = Registrations::default();
        let trunks = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            status_line(&trunks, &regs, 0),
            "0/2 trunks registered, 0 active calls"
        );
        assert_eq!(
            status_line(&trunks[..1], &regs, 1),
            "0/1 trunk registered, 1 active call"
        );
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn loop_health_ages_until_the_next_beat() {
        let h = LoopHealth::default();
        h.beat(3);
        assert!(h.age() < STALE_AFTER);
        assert_eq!(h.server_transactions(), 3);
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.age() >= Duration::from_millis(30));
        h.beat(0);
        assert!(h.age() < Duration::from_millis(30));
    }

    #[test]
    fn disabled_notifier_has_no_watchdog() {
        let n = Notifier::disabled();
        assert!(!n.enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready("x");
        n.watchdog();
        n.reloading();
        n.stopping();
    }
}

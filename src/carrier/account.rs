//! One carrier account at run time: the task that drives its subscription lifecycle, the call
//! table that routes notifications to calls, and the status others read.
//!
//! The WebSocket side lives in `websocket`; the per-call handle in `call`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn, Instrument};

use super::call::{CallDirection, CarrierCall};
use super::events::{classify, CallEvent, Classified, Dedup, EndCause};
use super::lifecycle::{Backoff, Lifecycle, Outcome, Phase, Step};
use super::protocol::{NotificationMessage, SubscribeRequest, TurnCredentials};
use super::rest::{Granted, RestClient, RestError};
use super::websocket;

/// Settings shared by all accounts (from `[carrier]`).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub tls: Arc<rustls::ClientConfig>,
    pub ping_interval: Duration,
    pub subscription_expires: u32,
    pub backoff: Backoff,
    pub audit_interval: Duration,
    pub client_correlator: String,
}

/// A snapshot for status pages and logs.
#[derive(Debug, Clone)]
pub struct AccountStatus {
    pub name: String,
    pub username: String,
    pub phase: Phase,
    pub websocket_connected: bool,
    pub websocket_reconnects: u64,
    pub last_error: Option<String>,
    /// REST requests that failed (transport, decoding, refusals).
    pub rest_errors: u64,
    pub active_calls: u32,
    pub max_calls: u32,
}

/// Subscription-level signals from the notification channel to the driver.
#[derive(Debug)]
pub(crate) enum Signal {
    Gone(Option<Duration>),
    Overridden,
}

#[derive(Default)]
struct Shared {
    phase: Option<Phase>,
    last_error: Option<String>,
    granted: Option<Granted>,
    ws_connected: bool,
    ws_reconnects: u64,
}

pub(crate) struct CallEntry {
    pub(crate) tx: mpsc::UnboundedSender<CallEvent>,
    pub(crate) answered: bool,
}

/// Notifications that arrive before `callStart`'s answer names their session are held briefly.
const ORPHAN_TTL: Duration = Duration::from_secs(10);
const ORPHAN_MAX: usize = 256;

pub struct Account {
    pub(crate) name: String,
    pub(crate) domain: String,
    pub(crate) rest: RestClient,
    pub(crate) settings: Arc<ClientSettings>,
    pub(crate) max_calls: u32,
    pub(crate) capacity: Arc<Semaphore>,
    shared: Mutex<Shared>,
    pub(crate) calls: Mutex<HashMap<String, CallEntry>>,
    orphans: Mutex<HashMap<String, (Instant, Vec<CallEvent>)>>,
    dedup: Mutex<Dedup>,
    signals: mpsc::UnboundedSender<Signal>,
    inbound: mpsc::Sender<CarrierCall>,
}

impl Account {
    pub(crate) fn new(
        name: String,
        domain: String,
        rest: RestClient,
        settings: Arc<ClientSettings>,
        max_calls: u32,
        inbound: mpsc::Sender<CarrierCall>,
    ) -> (Arc<Account>, mpsc::UnboundedReceiver<Signal>) {
        let (signals, rx) = mpsc::unbounded_channel();
        let account = Arc::new(Account {
            name,
            domain,
            rest,
            settings,
            max_calls,
            capacity: Arc::new(Semaphore::new(max_calls as usize)),
            shared: Mutex::new(Shared::default()),
            calls: Mutex::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            dedup: Mutex::new(Dedup::new(1024)),
            signals,
            inbound,
        });
        (account, rx)
    }

    pub fn status(&self) -> AccountStatus {
        let s = lock(&self.shared);
        AccountStatus {
            name: self.name.clone(),
            username: self.rest.username().to_string(),
            phase: s.phase.unwrap_or(Phase::Subscribing),
            websocket_connected: s.ws_connected,
            websocket_reconnects: s.ws_reconnects,
            last_error: s.last_error.clone(),
            rest_errors: self.rest.errors(),
            active_calls: self.max_calls - self.capacity.available_permits() as u32,
            max_calls: self.max_calls,
        }
    }

    pub(crate) fn usable(&self) -> bool {
        lock(&self.shared).phase.is_some_and(Phase::usable)
    }

    pub(crate) fn turn_credentials(&self) -> Option<TurnCredentials> {
        lock(&self.shared)
            .granted
            .as_ref()
            .and_then(|g| g.turn.clone())
    }

    pub(crate) fn set_ws_connected(&self, connected: bool) {
        let mut s = lock(&self.shared);
        if !connected && s.ws_connected {
            s.ws_reconnects += 1;
        }
        s.ws_connected = connected;
    }

    /// Records an error; logs it only when it differs from the last one (no log storm while a
    /// fault persists).
    fn note_error(&self, what: &str, err: Option<&RestError>) {
        let text = err.map(|e| format!("{what}: {e}"));
        let mut s = lock(&self.shared);
        if s.last_error != text {
            match &text {
                Some(t) => warn!(account = %self.name, "{t}"),
                None => {
                    if s.last_error.is_some() {
                        info!(account = %self.name, "carrier account recovered");
                    }
                }
            }
            s.last_error = text;
        }
    }

    fn set_phase(&self, phase: Phase) {
        lock(&self.shared).phase = Some(phase);
    }

    /// Registers a call so its notifications reach it; replays any that arrived early.
    pub(crate) fn register_call(
        self: &Arc<Self>,
        session: &str,
        answered: bool,
    ) -> mpsc::UnboundedReceiver<CallEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some((_, early)) = lock(&self.orphans).remove(session) {
            for e in early {
                let _ = tx.send(e);
            }
        }
        lock(&self.calls).insert(session.to_string(), CallEntry { tx, answered });
        rx
    }

    pub(crate) fn forget_call(&self, session: &str) {
        lock(&self.calls).remove(session);
    }

    /// Sends an event to a call (ending events also unregister it).
    pub(crate) fn deliver(&self, session: &str, event: CallEvent) {
        let mut calls = lock(&self.calls);
        let ends = matches!(event, CallEvent::Ended { .. } | CallEvent::Cancelled);
        match calls.get_mut(session) {
            Some(entry) => {
                if matches!(event, CallEvent::Answered { .. }) {
                    entry.answered = true;
                }
                let _ = entry.tx.send(event);
                if ends {
                    calls.remove(session);
                }
            }
            None => {
                drop(calls);
                let now = Instant::now();
                let mut orphans = lock(&self.orphans);
                orphans.retain(|_, (t, _)| now.duration_since(*t) < ORPHAN_TTL);
                if orphans.len() < ORPHAN_MAX {
                    orphans
                        .entry(session.to_string())
                        .or_insert_with(|| (now, Vec::new()))
                        .1
                        .push(event);
                }
            }
        }
    }

    /// One notification from the WebSocket.
    pub(crate) fn on_notification(self: &Arc<Self>, msg: NotificationMessage) {
        if let Some(id) = &msg.event_id {
            if !lock(&self.dedup).first_time(id) {
                debug!(account = %self.name, event_id = %id, "duplicate notification dropped");
                return;
            }
        }
        let classified = {
            let calls = lock(&self.calls);
            classify(&msg, |s| calls.get(s).is_some_and(|c| c.answered))
        };
        match classified {
            Classified::Gone { retry_after } => {
                warn!(account = %self.name, "carrier says the subscription is gone");
                let _ = self.signals.send(Signal::Gone(retry_after));
            }
            Classified::Overridden => {
                error!(account = %self.name, "another client took this account's notification channel");
                let _ = self.signals.send(Signal::Overridden);
            }
            Classified::IncomingCall(c) => self.on_incoming(c),
            Classified::ForCall { session, event } => {
                debug!(account = %self.name, session = %session, ?event, "carrier event");
                self.deliver(&session, event);
            }
            Classified::Ignored(what) => {
                debug!(account = %self.name, "ignored notification: {what}")
            }
        }
    }

    fn on_incoming(self: &Arc<Self>, c: super::events::IncomingCall) {
        let session = c.session.clone();
        let refuse = |why: &str| {
            warn!(account = %self.name, session = %session, "inbound call rejected: {why}");
            let me = self.clone();
            let s = session.clone();
            tokio::spawn(async move {
                if let Err(e) = me.rest.reject(&s).await {
                    warn!(account = %me.name, session = %s, "reject failed: {e}");
                }
            });
        };
        if c.offer.is_none() {
            return refuse("no SDP offer (slow start is not supported)");
        }
        let Ok(permit) = self.capacity.clone().try_acquire_owned() else {
            return refuse("account at max_calls");
        };
        let call = CarrierCall::new(
            self.clone(),
            session.clone(),
            CallDirection::Inbound,
            Some(permit),
        )
        .with_incoming(c);
        if let Err(e) = self.inbound.try_send(call) {
            // The returned call is dropped here, which unregisters it; reject explicitly.
            drop(e);
            refuse("no call handler is taking inbound calls");
        }
    }

    /// After a WebSocket (re)connect: ask the carrier about every live call.
    pub(crate) async fn resync(self: &Arc<Self>) {
        let sessions: Vec<String> = lock(&self.calls).keys().cloned().collect();
        if sessions.is_empty() {
            return;
        }
        info!(account = %self.name, calls = sessions.len(), "resyncing live calls");
        for s in sessions {
            match self.rest.state(&s).await {
                Ok(state) => self.deliver(
                    &s,
                    CallEvent::Resynced {
                        answered: state == super::rest::RemoteCallState::Answered,
                    },
                ),
                Err(e) if e.carrier_code() == Some(super::protocol::code::STATE_NOT_FOUND) => self
                    .deliver(
                        &s,
                        CallEvent::Ended {
                            code: None,
                            reason: Some("session not found on resync".into()),
                            cause: EndCause::LostOnResync,
                        },
                    ),
                Err(e) => warn!(account = %self.name, session = %s, "resync failed: {e}"),
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock must not take the carrier leg down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn outcome_of(result: &Result<Granted, RestError>) -> Outcome {
    match result {
        Ok(g) => Outcome::Granted { expires: g.expires },
        Err(e) if e.is_unauthorized() => Outcome::Unauthorized,
        Err(e) if e.http() == Some(503) || e.carrier_code() == Some(503) => Outcome::Overloaded {
            retry_after: e.retry_after(),
        },
        Err(e)
            if e.carrier_code() == Some(super::protocol::code::NO_SUBSCRIPTION)
                || e.http() == Some(404) =>
        {
            Outcome::Gone { retry_after: None }
        }
        Err(_) => Outcome::Failed,
    }
}

/// The account's driver: subscribe, refresh, keep the notification channel, unsubscribe at stop.
pub(crate) async fn run(
    account: Arc<Account>,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    mut stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("carrier", account = %account.name);
    async move {
        let seed = rand::random::<u64>();
        let mut lc = Lifecycle::new(Instant::now(), account.settings.backoff, seed);
        let request = SubscribeRequest::new(
            account.settings.subscription_expires,
            &account.settings.client_correlator,
        );
        let mut ws: Option<(String, JoinHandle<()>)> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            let step = lc.poll(Instant::now());
            let (result, was) = match step {
                Step::Stopped => break,
                Step::Wait(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        sig = signals.recv() => {
                            // Either way the subscription is dead: subscribe again.
                            let retry = match sig {
                                Some(Signal::Gone(retry)) => retry,
                                Some(Signal::Overridden) => None,
                                None => break,
                            };
                            lc.on_gone(Instant::now(), retry);
                            account.set_phase(lc.phase());
                            lock(&account.shared).granted = None;
                            stop_ws(&mut ws);
                        }
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                Step::Subscribe => {
                    account.set_phase(lc.phase());
                    let r = tokio::select! {
                        r = account.rest.subscribe(&request) => r,
                        _ = stop.changed() => break,
                    };
                    (r, "subscribe")
                }
                Step::Refresh => {
                    let Some(sub) = lock(&account.shared)
                        .granted
                        .as_ref()
                        .map(|g| g.subscription.clone())
                    else {
                        lc.on_outcome(Instant::now(), Outcome::Gone { retry_after: None });
                        continue;
                    };
                    let r = tokio::select! {
                        r = account.rest.refresh(&sub, &request) => r,
                        _ = stop.changed() => break,
                    };
                    (r, "refresh")
                }
            };
            let outcome = outcome_of(&result);
            lc.on_outcome(Instant::now(), outcome);
            account.set_phase(lc.phase());
            match result {
                Ok(granted) => {
                    account.note_error(was, None);
                    info!(
                        expires_s = granted.expires.as_secs(),
                        "carrier subscription {}",
                        if was == "subscribe" {
                            "created"
                        } else {
                            "refreshed"
                        }
                    );
                    let channel = granted.notification_channel.clone().or_else(|| {
                        lock(&account.shared)
                            .granted
                            .as_ref()
                            .and_then(|g| g.notification_channel.clone())
                    });
                    let mut merged = granted;
                    merged.notification_channel = channel.clone();
                    if merged.turn.is_none() {
                        merged.turn = account.turn_credentials();
                    }
                    lock(&account.shared).granted = Some(merged);
                    match channel {
                        Some(ch) if ws.as_ref().map(|(c, _)| c != &ch).unwrap_or(true) => {
                            stop_ws(&mut ws);
                            let task = tokio::spawn(websocket::run(
                                account.clone(),
                                ch.clone(),
                                stop.clone(),
                            ));
                            ws = Some((ch, task));
                        }
                        Some(_) => {}
                        None => warn!("subscription has no notificationChannel: no call events"),
                    }
                }
                Err(e) => {
                    if matches!(outcome, Outcome::Gone { .. } | Outcome::Unauthorized) {
                        lock(&account.shared).granted = None;
                        stop_ws(&mut ws);
                    }
                    account.note_error(was, Some(&e));
                }
            }
        }
        lc.stop();
        account.set_phase(Phase::Stopped);
        if let Some((_, task)) = ws.take() {
            // The socket task sees the same stop signal and closes with 1000.
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let granted = lock(&account.shared).granted.take();
        if let Some(g) = granted {
            match account.rest.unsubscribe(&g.subscription).await {
                Ok(()) => info!("carrier subscription deleted"),
                Err(e) => warn!("unsubscribe failed: {e}"),
            }
        }
    }
    .instrument(span)
    .await
}

fn stop_ws(ws: &mut Option<(String, JoinHandle<()>)>) {
    if let Some((_, task)) = ws.take() {
        task.abort();
    }
}

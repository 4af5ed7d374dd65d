//! The call module's handle on one carrier session: its typed operations (CARRIER.md sections
//! 3-5), its stream of events, the audit loop that proves it is alive, and the capacity permit
//! it holds on its account. Dropping a handle that was never ended deletes the session, so no
//! carrier session outlives its call.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::account::Account;
use super::events::{CallEvent, EndCause, IncomingCall};
use super::protocol::code;
use super::rest::RestError;

/// Which way a call goes, as the carrier sees it (and as records and the simulator write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// From the gateway to the carrier (`callStart`): the PBX called out.
    Outbound,
    /// From the carrier to the gateway (a `call` notification): a call for the PBX.
    Inbound,
}

pub struct CarrierCall {
    account: Arc<Account>,
    session: String,
    direction: CallDirection,
    events: mpsc::UnboundedReceiver<CallEvent>,
    incoming: Option<IncomingCall>,
    audit: Option<AbortHandle>,
    finished: bool,
    /// Capacity on the account, given back when the call is finished.
    permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for CarrierCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarrierCall")
            .field("account", &self.account.name)
            .field("session", &self.session)
            .field("direction", &self.direction)
            .finish()
    }
}

impl CarrierCall {
    pub(crate) fn new(
        account: Arc<Account>,
        session: String,
        direction: CallDirection,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        // Inbound calls are "answered" from the carrier's view once we send callAnswer; any
        // later respondCallUpdate answers our own update.
        let events = account.register_call(&session, direction == CallDirection::Inbound);
        let audit = tokio::spawn(audit_loop(account.clone(), session.clone())).abort_handle();
        CarrierCall {
            account,
            session,
            direction,
            events,
            incoming: None,
            audit: Some(audit),
            finished: false,
            permit,
        }
    }

    pub(crate) fn with_incoming(mut self, c: IncomingCall) -> Self {
        self.incoming = Some(c);
        self
    }

    /// The carrier's name for the call (`sessionData`).
    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn account(&self) -> &str {
        &self.account.name
    }

    #[cfg(test)]
    pub fn direction(&self) -> CallDirection {
        self.direction
    }

    /// For inbound calls: the offer and who is calling whom.
    pub fn incoming(&self) -> Option<&IncomingCall> {
        self.incoming.as_ref()
    }

    /// The next event; `None` once the call has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        let e = self.events.recv().await;
        if matches!(e, Some(CallEvent::Ended { .. } | CallEvent::Cancelled)) {
            self.finish();
        }
        e
    }

    /// Our hang-up (or CANCEL before answer): deletes the session.
    pub async fn end(&mut self, reason: Option<&str>) -> Result<(), RestError> {
        self.finish();
        self.account.rest.end(&self.session, reason).await
    }

    pub async fn ringing(&self) -> Result<(), RestError> {
        self.account.rest.ringing(&self.session).await
    }

    pub async fn answer(&self, sdp: &str) -> Result<(), RestError> {
        self.account.rest.answer(&self.session, sdp).await
    }

    /// Rejects an inbound call (`calldisposition`).
    pub async fn reject(&mut self) -> Result<(), RestError> {
        self.finish();
        self.account.rest.reject(&self.session).await
    }

    /// A mid-call offer (hold, resume); the answer comes as `UpdateAnswered` or `UpdateGlare`.
    /// A glare answered synchronously (statusCode 49) is returned as the error.
    pub async fn update(&self, sdp: &str) -> Result<(), RestError> {
        self.account.rest.start_update(&self.session, sdp).await
    }

    pub async fn respond_update(&self, sdp: &str) -> Result<(), RestError> {
        self.account.rest.respond_update(&self.session, sdp).await
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.account.forget_call(&self.session);
            self.permit = None;
            if let Some(a) = self.audit.take() {
                a.abort();
            }
        }
    }
}

impl Drop for CarrierCall {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finish();
        // A call dropped without an end (an error path): do not leave the session to time out.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let account = self.account.clone();
            let session = std::mem::take(&mut self.session);
            rt.spawn(async move {
                if let Err(e) = account.rest.end(&session, Some("gateway error")).await {
                    debug!(account = %account.name, session = %session, "delete after drop: {e}");
                }
            });
        }
    }
}

/// `audit` every interval from the start of the call; a 42 ends the call.
async fn audit_loop(account: Arc<Account>, session: String) {
    let period = account.settings.audit_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match account.rest.audit(&session).await {
            Ok(()) => {}
            Err(e) if e.carrier_code() == Some(code::AUDIT_NO_SESSION) => {
                warn!(account = %account.name, session = %session, "audit: carrier session is gone");
                account.deliver(
                    &session,
                    CallEvent::Ended {
                        code: None,
                        reason: Some("carrier session no longer exists (audit)".into()),
                        cause: EndCause::AuditFailed,
                    },
                );
                return;
            }
            // Transient: the next audit decides.
            Err(e) => warn!(account = %account.name, session = %session, "audit failed: {e}"),
        }
    }
}

//! The live calls, the one place that knows which calls are up: from a call's first moment
//! to its record, its entry holds the channel its dialog events go to and what status,
//! metrics, drain and the systemd status line show about it. Each call updates its own entry
//! at set-up, answer and end (never per packet), so the one lock here is off the media path.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;

use super::record::CallDirection;
use crate::media::engine::MediaView;
use crate::sip::tu::{CallRef, DialogEvent};

/// Where a live call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// Being set up.
    Setup,
    /// The called side is ringing.
    Ringing,
    /// Answered.
    Answered,
}

impl CallPhase {
    /// The name status shows.
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Setup => "setup",
            CallPhase::Ringing => "ringing",
            CallPhase::Answered => "answered",
        }
    }
}

/// What status and metrics show about a live call.
#[derive(Debug, Clone)]
pub struct LiveCall {
    /// Which way it goes.
    pub direction: CallDirection,
    /// The trunk, once known.
    pub trunk: Option<String>,
    /// The called number.
    pub called: String,
    /// The calling number.
    pub caller: Option<String>,
    /// The PBX dialog's Call-ID, once known.
    pub sip_call_id: Option<String>,
    /// The carrier session, once known.
    pub carrier_session: Option<String>,
    /// Where it stands.
    pub phase: CallPhase,
    /// When it started.
    pub started: Instant,
    /// The call's media figures once it is answered.
    pub media: Option<MediaView>,
}

struct Entry {
    events: mpsc::UnboundedSender<DialogEvent>,
    view: LiveCall,
}

/// The live calls.
#[derive(Default)]
pub struct Registry(Mutex<HashMap<CallRef, Entry>>);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<CallRef, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call starts: its dialog events go to `events` from now on.
    pub fn insert(
        &self,
        call: CallRef,
        events: mpsc::UnboundedSender<DialogEvent>,
        view: LiveCall,
    ) {
        self.lock().insert(call, Entry { events, view });
    }

    /// Changes what status shows about `call`.
    pub fn update(&self, call: CallRef, f: impl FnOnce(&mut LiveCall)) {
        if let Some(e) = self.lock().get_mut(&call) {
            f(&mut e.view);
        }
    }

    /// The call is over.
    pub fn remove(&self, call: CallRef) {
        self.lock().remove(&call);
    }

    /// Hands `event` to `call`; `false` when no live call will take it.
    pub fn deliver(&self, call: CallRef, event: DialogEvent) -> bool {
        let mut calls = self.lock();
        let sent = calls.get(&call).map(|e| e.events.send(event).is_ok());
        match sent {
            Some(true) => true,
            Some(false) => {
                calls.remove(&call);
                false
            }
            None => false,
        }
    }

    /// Every live call hears [`DialogEvent::Shutdown`].
    pub fn hangup_all(&self) {
        for e in self.lock().values() {
            let _ = e.events.send(DialogEvent::Shutdown);
        }
    }

    /// The live calls in call order.
    pub fn snapshot(&self) -> Vec<(CallRef, LiveCall)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, e)| (*k, e.view.clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// How many calls are up.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No call is up.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! The calls up right now, as status and metrics see them: who, where, which state, since
//! when, and their relay counters. Each call updates its own entry at set-up, answer and end
//! (never per packet), so the one lock here is off the media path.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::record::CallDirection;
use super::signal::CallRef;
use crate::media::engine::MediaView;

#[derive(Debug, Clone)]
pub struct ActiveCall {
    pub direction: CallDirection,
    pub trunk: Option<String>,
    pub called: String,
    pub caller: Option<String>,
    pub sip_call_id: Option<String>,
    pub carrier_session: Option<String>,
    /// `setup`, `ringing`, `answered`.
    pub state: &'static str,
    pub started: Instant,
    /// The call's media figures once it is answered.
    pub media: Option<MediaView>,
}

#[derive(Debug, Default)]
pub struct ActiveCalls(Mutex<HashMap<CallRef, ActiveCall>>);

impl ActiveCalls {
    fn lock(&self) -> MutexGuard<'_, HashMap<CallRef, ActiveCall>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, call: CallRef, entry: ActiveCall) {
        self.lock().insert(call, entry);
    }

    pub fn update(&self, call: CallRef, f: impl FnOnce(&mut ActiveCall)) {
        if let Some(e) = self.lock().get_mut(&call) {
            f(e);
        }
    }

    pub fn remove(&self, call: CallRef) {
        self.lock().remove(&call);
    }

    pub fn snapshot(&self) -> Vec<(CallRef, ActiveCall)> {
        let mut v: Vec<_> = self.lock().iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

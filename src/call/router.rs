//! The call layer as the SIP core's transaction user: a new call from the PBX becomes a call
//! task, a refused one a record, and every other dialog event goes to its live call.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use super::context::CallContext;
use super::facts::CallFacts;
use super::record::CallRecord;
use crate::sip::tu::{CallRef, DialogEvent, TransactionUser};

/// Routes the SIP core's dialog events to the calls.
pub struct CallRouter {
    ctx: Arc<CallContext>,
}

impl CallRouter {
    /// A router spawning calls with `ctx`.
    pub fn new(ctx: Arc<CallContext>) -> CallRouter {
        CallRouter { ctx }
    }
}

impl TransactionUser for CallRouter {
    fn deliver(&mut self, call: CallRef, event: DialogEvent) -> bool {
        match event {
            DialogEvent::Admitted(invite) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let facts = CallFacts::outbound(call, &invite, Instant::now(), SystemTime::now());
                self.ctx.registry.insert(call, tx, facts.live(None));
                tokio::spawn(super::driver::run_outbound(
                    self.ctx.clone(),
                    facts,
                    *invite,
                    rx,
                ));
                true
            }
            DialogEvent::Refused(refused) => {
                self.ctx.records.record(CallRecord::refused(call, &refused));
                true
            }
            other => self.ctx.registry.deliver(call, other),
        }
    }
}

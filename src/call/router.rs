//! The call layer as the SIP core's transaction user: a new call from the PBX becomes a call
//! task, a refused one a record, and every other dialog event goes to its live call.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::context::CallContext;
use super::record::{CallDirection, CallRecord};
use super::registry::LiveCall;
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
                let mut view = LiveCall::new(
                    CallDirection::Outbound,
                    invite.destination.e164.clone(),
                    invite.caller.number.clone(),
                );
                view.trunk = Some(invite.trunk.clone());
                view.sip_call_id = Some(invite.call_id.clone());
                self.ctx.registry.insert(call, tx, view);
                tokio::spawn(super::outbound::run(self.ctx.clone(), call, *invite, rx));
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

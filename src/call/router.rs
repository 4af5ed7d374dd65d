//! The edge between the SIP core's loop and the call tasks: delivers each `ToCall` to its
//! call's channel, spawns a task for each new outbound call, and hands refused attempts'
//! records to the sink.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::context::CallContext;
use super::signal::{CallCmd, CallRef, ToCall};

pub struct CallRouter {
    ctx: Arc<CallContext>,
    calls: HashMap<CallRef, mpsc::UnboundedSender<ToCall>>,
}

impl CallRouter {
    pub fn new(ctx: Arc<CallContext>) -> CallRouter {
        CallRouter {
            ctx,
            calls: HashMap::new(),
        }
    }

    pub fn context(&self) -> &Arc<CallContext> {
        &self.ctx
    }

    /// A command from a call: `Attach` and `Done` are the router's; the rest go to the core.
    pub fn command(&mut self, cmd: CallCmd) -> Option<CallCmd> {
        match cmd {
            CallCmd::Attach(call, tx) => {
                self.calls.insert(call, tx);
                None
            }
            CallCmd::Done(call) => {
                self.calls.remove(&call);
                Some(CallCmd::Done(call))
            }
            CallCmd::HangupAll => {
                for tx in self.calls.values() {
                    let _ = tx.send(ToCall::Shutdown);
                }
                None
            }
            other => Some(other),
        }
    }

    /// An event from the core. Returns `Done` for the core when the call's task is gone.
    pub fn deliver(&mut self, call: CallRef, event: ToCall) -> Option<CallCmd> {
        if let ToCall::Outbound(inv) = event {
            let (tx, rx) = mpsc::unbounded_channel();
            self.calls.insert(call, tx);
            tokio::spawn(super::outbound::run(self.ctx.clone(), call, *inv, rx));
            return None;
        }
        let sent = self.calls.get(&call).map(|tx| tx.send(event).is_ok());
        match sent {
            Some(true) => None,
            Some(false) => {
                self.calls.remove(&call);
                Some(CallCmd::Done(call))
            }
            None => None,
        }
    }

    pub fn active(&self) -> usize {
        self.calls.len()
    }
}

//! What the endpoint shares with the other instances of a cluster and takes from them: trunk
//! registrations and bans, as plain facts (carrying them is the cluster room's business).

use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, warn};

use super::Endpoint;
use crate::sip::shared::{unix_ms, NonceUse, SharedFact};

impl Endpoint {
    /// A fact from another instance: a trunk's registration, a ban.
    pub fn import(&mut self, fact: SharedFact, now: Instant) {
        let wall = SystemTime::now();
        match fact {
            SharedFact::Registration(reg) => {
                if self.registrar.import(&reg, now, wall) {
                    self.sync_qualify(&reg.trunk, now);
                    debug!(trunk = %reg.trunk, node = %reg.node, bindings = reg.bindings.len(),
                           "registration taken from another instance");
                }
            }
            SharedFact::Revert(reg) => {
                warn!(trunk = %reg.trunk, "a REGISTER taken here was a replay of one another instance saw: \
                      the trunk's registration is put back as it was");
                self.registrar.replace(&reg, now, wall);
                self.sync_qualify(&reg.trunk, now);
            }
            SharedFact::NonceSpent { .. } => {}
            SharedFact::Ban { ip, until_unix_ms } => {
                let left = until_unix_ms.saturating_sub(unix_ms(wall));
                if left > 0 {
                    self.guard
                        .import_ban(ip, now + Duration::from_millis(left), now);
                }
            }
        }
    }

    /// The next fact to share with the other instances.
    pub fn poll_shared(&mut self) -> Option<SharedFact> {
        let started = self.guard.take_started();
        if self.sharing && !started.is_empty() {
            let wall = SystemTime::now();
            for (source, length) in started {
                self.shared_out.push_back(SharedFact::Ban {
                    ip: source.ip(),
                    until_unix_ms: unix_ms(wall + length),
                });
            }
        }
        self.shared_out.pop_front()
    }

    /// A REGISTER changed `trunk`'s registration: its nonce use (a replay elsewhere reverts
    /// it) and the registration itself go to the other instances.
    pub(super) fn share_registration(&mut self, trunk: &str, nonce: Option<NonceUse>) {
        if !self.sharing {
            return;
        }
        if let Some(nonce) = nonce {
            self.shared_out.push_back(SharedFact::NonceSpent {
                trunk: trunk.to_string(),
                nonce,
            });
        }
        let reg = self.registrar.shared(trunk, &self.node);
        self.shared_out.push_back(SharedFact::Registration(reg));
    }
}

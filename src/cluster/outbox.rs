//! What this instance has to write to Redis, kept while Redis cannot take it: the latest
//! registration of each trunk (an older one is worth nothing once a newer exists) and the bans,
//! bounded so an outage under attack cannot grow memory without limit.

use std::collections::{BTreeMap, VecDeque};

use crate::sip::shared::{SharedFact, SharedRegistration};

/// Bans kept while Redis is away; the oldest go first (they also end first).
const MAX_BANS: usize = 10_000;

/// Facts waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    registrations: BTreeMap<String, SharedRegistration>,
    bans: VecDeque<SharedFact>,
    /// Bans let go for the bound.
    pub dropped_bans: u64,
}

impl Outbox {
    pub fn push(&mut self, fact: SharedFact) {
        match fact {
            SharedFact::Registration(reg) => {
                let newer = self
                    .registrations
                    .get(&reg.trunk)
                    .is_none_or(|r| r.updated_unix_ms <= reg.updated_unix_ms);
                if newer {
                    self.registrations.insert(reg.trunk.clone(), reg);
                }
            }
            ban @ SharedFact::Ban { .. } => {
                if self.bans.len() >= MAX_BANS {
                    self.bans.pop_front();
                    self.dropped_bans += 1;
                }
                self.bans.push_back(ban);
            }
            // Checked as they come, while Redis is there; never kept for later.
            SharedFact::NonceSpent { .. } | SharedFact::Revert(_) => {}
        }
    }

    /// Everything waiting, registrations first; the outbox is empty afterwards.
    pub fn take(&mut self) -> Vec<SharedFact> {
        let mut out: Vec<SharedFact> = std::mem::take(&mut self.registrations)
            .into_values()
            .map(SharedFact::Registration)
            .collect();
        out.extend(self.bans.drain(..));
        out
    }

    /// Puts back what could not be written (Redis went away mid-way), unless newer is there.
    pub fn restore(&mut self, facts: Vec<SharedFact>) {
        for f in facts {
            self.push(f);
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty() && self.bans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(trunk: &str, updated: u64) -> SharedFact {
        SharedFact::Registration(SharedRegistration {
            trunk: trunk.into(),
            node: "a".into(),
            updated_unix_ms: updated,
            bindings: Vec::new(),
        })
    }

    #[test]
    fn keeps_the_latest_registration_per_trunk_and_every_ban_within_bounds() {
        let mut o = Outbox::default();
        o.push(reg("t", 5));
        o.push(reg("t", 3));
        o.push(reg("u", 1));
        o.push(reg("t", 7));
        for i in 0..(MAX_BANS as u64 + 2) {
            o.push(SharedFact::Ban {
                ip: "192.0.2.1".parse().unwrap(),
                until_unix_ms: i,
            });
        }
        assert_eq!(o.dropped_bans, 2);
        let out = o.take();
        assert!(o.is_empty());
        assert_eq!(out[..2], [reg("t", 7), reg("u", 1)]);
        assert_eq!(out.len(), 2 + MAX_BANS);
        assert!(matches!(
            out[2],
            SharedFact::Ban {
                until_unix_ms: 2,
                ..
            }
        ));
        // put back after a failed write: a newer one that came meanwhile wins
        o.push(reg("t", 9));
        o.restore(out);
        assert_eq!(o.take()[0], reg("t", 9));
    }
}

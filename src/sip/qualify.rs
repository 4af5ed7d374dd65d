//! Qualifying registered PBX contacts (the OPTIONS keepalive): which contact is asked when,
//! one OPTIONS in flight per contact, and what the answers (or their absence) say, as an
//! I/O-free schedule fed with `Instant`s. Any response, even 404 or 405, proves the PBX is
//! there; only a transaction timeout marks it unreachable. A new contact is asked at once, then
//! every interval, each contact at its own phase so they do not all go at the same instant.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::transaction::TxId;

/// What the last OPTIONS to a contact found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Not asked yet (counts as reachable: a PBX that just registered is there).
    Unknown,
    /// It answered, after this round trip.
    Reachable {
        /// The OPTIONS' round trip.
        rtt: Duration,
    },
    /// It did not answer, since this wall-clock time.
    Unreachable {
        /// When it first stopped answering.
        since: SystemTime,
    },
}

impl Reach {
    /// `false` only when known not to answer.
    pub fn usable(self) -> bool {
        !matches!(self, Reach::Unreachable { .. })
    }
}

/// A contact: (trunk, Contact URI).
pub(crate) type ContactKey = (String, String);

#[derive(Debug)]
struct Contact {
    next: Instant,
    in_flight: Option<(TxId, Instant)>,
    reach: Reach,
}

/// The schedule of every registered contact.
#[derive(Debug)]
pub(crate) struct Qualifier {
    interval: Duration,
    contacts: HashMap<ContactKey, Contact>,
    by_tx: HashMap<TxId, ContactKey>,
}

impl Qualifier {
    /// `interval` zero: no contact is ever asked.
    pub fn new(interval: Duration) -> Qualifier {
        Qualifier {
            interval,
            contacts: HashMap::new(),
            by_tx: HashMap::new(),
        }
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// `trunk`'s contacts are now `uris`: new ones are due at once (spread by a few ms each),
    /// gone ones forgotten with their transactions.
    pub fn sync(&mut self, trunk: &str, uris: &[String], now: Instant) {
        self.contacts
            .retain(|(t, u), _| t != trunk || uris.iter().any(|x| x == u));
        self.by_tx.retain(|_, key| self.contacts.contains_key(key));
        for (i, uri) in uris.iter().enumerate() {
            let key = (trunk.to_string(), uri.clone());
            self.contacts.entry(key).or_insert(Contact {
                next: now + Duration::from_millis(20 * i as u64),
                in_flight: None,
                reach: Reach::Unknown,
            });
        }
    }

    /// When the next contact is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        self.contacts
            .values()
            .filter(|c| c.in_flight.is_none())
            .map(|c| c.next)
            .min()
    }

    /// The contacts due at `now`; each is then counted as asked (the caller sends the OPTIONS
    /// and tells `sent`), next due an interval later.
    pub fn due(&mut self, now: Instant) -> Vec<ContactKey> {
        if self.interval.is_zero() {
            return Vec::new();
        }
        let interval = self.interval;
        let mut out = Vec::new();
        for (key, c) in self.contacts.iter_mut() {
            if c.in_flight.is_none() && c.next <= now {
                c.next = now + interval;
                out.push(key.clone());
            }
        }
        out.sort();
        out
    }

    /// The OPTIONS for `key` went out in transaction `tx`.
    pub fn sent(&mut self, key: ContactKey, tx: TxId, now: Instant) {
        if let Some(c) = self.contacts.get_mut(&key) {
            c.in_flight = Some((tx, now));
            self.by_tx.insert(tx, key);
        }
    }

    /// Whether `tx` is one of ours.
    pub fn owns(&self, tx: TxId) -> bool {
        self.by_tx.contains_key(&tx)
    }

    /// An answer to `tx`: the contact is reachable. The contact, its reach (with this round
    /// trip, to publish: the last one is the one worth showing) and whether it was not
    /// reachable before (worth a log line).
    pub fn answered(&mut self, tx: TxId, now: Instant) -> Option<(ContactKey, Reach, bool)> {
        let key = self.by_tx.remove(&tx)?;
        let c = self.contacts.get_mut(&key)?;
        let (_, sent) = c.in_flight.take()?;
        let was = c.reach;
        c.reach = Reach::Reachable {
            rtt: now.saturating_duration_since(sent),
        };
        let news = !matches!(was, Reach::Reachable { .. });
        Some((key, c.reach, news))
    }

    /// `tx` timed out: the contact is unreachable. The contact, when its reach changed.
    pub fn timed_out(&mut self, tx: TxId, wall: SystemTime) -> Option<(ContactKey, Reach)> {
        let key = self.by_tx.remove(&tx)?;
        let c = self.contacts.get_mut(&key)?;
        c.in_flight = None;
        if matches!(c.reach, Reach::Unreachable { .. }) {
            return None;
        }
        c.reach = Reach::Unreachable { since: wall };
        Some((key, c.reach))
    }

    /// Every contact's reach, for publishing.
    pub fn reach(&self, key: &ContactKey) -> Reach {
        self.contacts.get(key).map_or(Reach::Unknown, |c| c.reach)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: &str) -> ContactKey {
        ("pbx".into(), u.into())
    }

    #[test]
    fn new_contacts_are_asked_at_once_then_every_interval_one_at_a_time() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(Duration::from_secs(30));
        q.sync("pbx", &["sip:a@h".into(), "sip:b@h".into()], t0);
        assert_eq!(q.poll_timeout(), Some(t0));
        assert_eq!(q.due(t0), vec![key("sip:a@h")]);
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(q.due(t1), vec![key("sip:b@h")]);
        q.sent(key("sip:a@h"), TxId(1), t0);
        q.sent(key("sip:b@h"), TxId(2), t1);
        // in flight: not due again, whatever the time
        assert!(q.due(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(q.poll_timeout(), None);
        let got = q.answered(TxId(1), t0 + Duration::from_millis(7));
        let rtt = |ms| Reach::Reachable {
            rtt: Duration::from_millis(ms),
        };
        assert_eq!(got, Some((key("sip:a@h"), rtt(7), true)));
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        // an answer again: no news, but the newer round trip
        q.sent(key("sip:a@h"), TxId(3), t0 + Duration::from_secs(30));
        let again = q.answered(TxId(3), t0 + Duration::from_millis(30_012));
        assert_eq!(again, Some((key("sip:a@h"), rtt(12), false)));
        assert_eq!(q.answered(TxId(99), t0), None);
    }

    #[test]
    fn a_timeout_is_unreachable_until_an_answer_and_gone_contacts_are_forgotten() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let mut q = Qualifier::new(Duration::from_secs(5));
        q.sync("pbx", &["sip:a@h".into()], t0);
        q.due(t0);
        q.sent(key("sip:a@h"), TxId(1), t0);
        let down = Reach::Unreachable { since: wall };
        assert_eq!(q.timed_out(TxId(1), wall), Some((key("sip:a@h"), down)));
        assert!(!q.reach(&key("sip:a@h")).usable());
        assert_eq!(q.due(t0 + Duration::from_secs(5)), vec![key("sip:a@h")]);
        q.sent(key("sip:a@h"), TxId(2), t0 + Duration::from_secs(5));
        assert_eq!(q.timed_out(TxId(2), wall), None, "still down: nothing new");
        q.due(t0 + Duration::from_secs(10));
        q.sent(key("sip:a@h"), TxId(3), t0 + Duration::from_secs(10));
        assert!(q.answered(TxId(3), t0 + Duration::from_secs(10)).is_some());
        assert!(q.reach(&key("sip:a@h")).usable());
        // unregistered: forgotten, and its transaction no longer ours
        q.due(t0 + Duration::from_secs(15));
        q.sent(key("sip:a@h"), TxId(4), t0 + Duration::from_secs(15));
        q.sync("pbx", &[], t0 + Duration::from_secs(16));
        assert!(!q.owns(TxId(4)));
        assert_eq!(q.reach(&key("sip:a@h")), Reach::Unknown);
        assert_eq!(q.poll_timeout(), None);
    }

    #[test]
    fn interval_zero_asks_nobody() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(Duration::ZERO);
        q.sync("pbx", &["sip:a@h".into()], t0);
        assert_eq!(q.poll_timeout(), None);
        assert!(q.due(t0 + Duration::from_secs(3600)).is_empty());
    }
}

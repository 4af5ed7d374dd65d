//! Server transactions: INVITE (17.2.1 plus RFC 6026) and non-INVITE (17.2.2), over UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::timers::TransactionTimers;
use super::{Transmit, TxEvent, TxId, TxKey};
use crate::sip::deadlines::DeadlineHeap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// non-INVITE before any response (Trying) or INVITE before any (Proceeding without a 1xx)
    Trying,
    Proceeding,
    /// Final response sent; INVITE waits for ACK (Timers G, H), non-INVITE waits out Timer J.
    Completed,
    /// INVITE: ACK received, absorbing ACK retransmissions (Timer I).
    Confirmed,
    /// INVITE: 2xx sent (RFC 6026 Timer L); ACKs and retransmissions go to the TU / are absorbed.
    Accepted,
}

#[derive(Debug)]
struct ServerTx {
    key: TxKey,
    invite: bool,
    state: State,
    last_response: Option<Arc<[u8]>>,
    dest: Option<SocketAddr>,
    /// The deadline this transaction is waiting for; heap entries with another time are stale.
    deadline: Option<Instant>,
    /// Timer G's current interval.
    retransmit_interval: Duration,
    /// Timer H's absolute deadline while Completed (INVITE).
    give_up_at: Option<Instant>,
}

/// What the caller does with an incoming request after the transaction layer has seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRx {
    /// A new transaction: hand the request to the TU and answer through `respond`. Only the
    /// one-step `on_request` (tests) yields it: the endpoint opens with `open` after `lookup`.
    #[cfg_attr(not(test), allow(dead_code))]
    New(TxId),
    /// A retransmission: send this (the last response) again, or nothing if none yet.
    Retransmission(Option<Transmit>),
    /// An ACK that matched a non-2xx INVITE transaction: consumed here.
    AckAbsorbed,
    /// An ACK with no transaction to absorb it (ACK for a 2xx): the TU's.
    AckForTu,
}

/// All server transactions of one endpoint.
#[derive(Debug, Default)]
pub struct ServerTransactions {
    timers: TransactionTimers,
    by_key: HashMap<TxKey, TxId>,
    txs: HashMap<TxId, ServerTx>,
    heap: DeadlineHeap<TxId>,
    next_id: TxId,
}

impl ServerTransactions {
    pub fn new(timers: TransactionTimers) -> Self {
        ServerTransactions {
            timers,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Matches a request (its key computed with `TxKey::for_request`), opening a transaction
    /// for a new one. The endpoint looks up and opens in two steps (it may answer statelessly
    /// in between); this one-step form serves the tests.
    #[cfg(test)]
    pub fn on_request(&mut self, key: TxKey, is_ack: bool, now: Instant) -> ServerRx {
        match self.lookup(&key, is_ack, now) {
            Some(rx) => rx,
            None if is_ack => ServerRx::AckForTu,
            None => ServerRx::New(self.open(key)),
        }
    }

    /// What an existing transaction makes of a request: `None` when none matches (a new
    /// request, or an ACK that no transaction absorbs). Opens nothing, so a request can be
    /// answered statelessly after this.
    pub fn lookup(&mut self, key: &TxKey, is_ack: bool, now: Instant) -> Option<ServerRx> {
        let id = self.by_key.get(key).copied()?;
        let timers = self.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return Some(ServerRx::Retransmission(None));
        };
        if is_ack {
            return Some(match tx.state {
                State::Completed if tx.invite => {
                    tx.state = State::Confirmed;
                    tx.give_up_at = None;
                    let at = now + timers.t4;
                    tx.deadline = Some(at);
                    self.heap.push(at, id);
                    ServerRx::AckAbsorbed
                }
                State::Confirmed => ServerRx::AckAbsorbed,
                _ => ServerRx::AckForTu,
            });
        }
        Some(match tx.state {
            State::Trying => ServerRx::Retransmission(None),
            // RFC 6026: in Accepted the 2xx is the TU's to retransmit; absorb the INVITE.
            State::Accepted | State::Confirmed => ServerRx::Retransmission(None),
            State::Proceeding | State::Completed => ServerRx::Retransmission(
                tx.last_response
                    .clone()
                    .zip(tx.dest)
                    .map(|(bytes, dest)| Transmit { dest, bytes }),
            ),
        })
    }

    /// Opens a transaction for a new request the TU will answer.
    pub fn open(&mut self, key: TxKey) -> TxId {
        let id = self.next_id;
        self.next_id = self.next_id.next();
        let invite = matches!(&key, TxKey::Rfc3261 { method, .. } | TxKey::Rfc2543 { method, .. } if method == "INVITE");
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            ServerTx {
                key,
                invite,
                state: if invite {
                    State::Proceeding
                } else {
                    State::Trying
                },
                last_response: None,
                dest: None,
                deadline: None,
                retransmit_interval: self.timers.t1,
                give_up_at: None,
            },
        );
        id
    }

    /// Looks up a live transaction (e.g. the INVITE a CANCEL names).
    pub fn find(&self, key: &TxKey) -> Option<TxId> {
        self.by_key.get(key).copied()
    }

    /// True while an INVITE transaction has not sent a final response (CANCEL can still act).
    pub fn is_pending_invite(&self, id: TxId) -> bool {
        self.txs
            .get(&id)
            .is_some_and(|t| t.invite && t.state == State::Proceeding)
    }

    /// The TU answers: returns the datagram to send now (None when the transaction is gone or
    /// already final, in which case nothing may be sent by the transaction).
    pub fn respond(
        &mut self,
        id: TxId,
        code: u16,
        bytes: Arc<[u8]>,
        dest: SocketAddr,
        now: Instant,
    ) -> Option<Transmit> {
        let timers = self.timers;
        let tx = self.txs.get_mut(&id)?;
        if !matches!(tx.state, State::Trying | State::Proceeding) {
            return None;
        }
        tx.last_response = Some(bytes.clone());
        tx.dest = Some(dest);
        if code < 200 {
            tx.state = State::Proceeding;
        } else if tx.invite && code < 300 {
            tx.state = State::Accepted;
            let at = now + timers.t64();
            tx.deadline = Some(at);
            self.heap.push(at, id);
        } else if tx.invite {
            tx.state = State::Completed;
            tx.retransmit_interval = timers.t1;
            tx.give_up_at = Some(now + timers.t64());
            let at = now + timers.t1;
            tx.deadline = Some(at);
            self.heap.push(at, id);
        } else {
            tx.state = State::Completed;
            let at = now + timers.t64();
            tx.deadline = Some(at);
            self.heap.push(at, id);
        }
        Some(Transmit { dest, bytes })
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek()
    }

    /// Fires every timer due at `now`, appending what must happen to `out`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        let timers = self.timers;
        while let Some((at, id)) = self.heap.pop_due(now) {
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.deadline != Some(at) {
                continue;
            }
            match tx.state {
                State::Completed if tx.invite => {
                    if tx.give_up_at.is_some_and(|g| at >= g) {
                        out.push(TxEvent::ServerNoAck { id });
                        self.remove(id);
                        continue;
                    }
                    // Timer G: retransmit, double up to T2, never past Timer H
                    if let (Some(bytes), Some(dest)) = (tx.last_response.clone(), tx.dest) {
                        out.push(TxEvent::Transmit(Transmit { dest, bytes }));
                    }
                    tx.retransmit_interval = (tx.retransmit_interval * 2).min(timers.t2);
                    let mut next = at + tx.retransmit_interval;
                    if let Some(g) = tx.give_up_at {
                        next = next.min(g);
                    }
                    tx.deadline = Some(next);
                    self.heap.push(next, id);
                }
                // Timer I, J, L: the transaction ends quietly
                _ => self.remove(id),
            }
        }
    }

    fn remove(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            if self.by_key.get(&tx.key) == Some(&id) {
                self.by_key.remove(&tx.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(branch: &str, method: &str) -> TxKey {
        TxKey::Rfc3261 {
            branch: branch.into(),
            sent_by: "10.0.0.1:5060".into(),
            method: method.into(),
        }
    }

    fn dest() -> SocketAddr {
        "127.0.0.1:5062".parse().unwrap()
    }

    fn bytes(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn non_invite_retransmission_gets_last_response_until_timer_j() {
        let t0 = Instant::now();
        let mut st = ServerTransactions::new(TransactionTimers::default());
        let ServerRx::New(id) = st.on_request(key("z9hG4bK1", "REGISTER"), false, t0) else {
            panic!("expected new")
        };
        // retransmission before the TU answered: absorbed silently
        assert_eq!(
            st.on_request(key("z9hG4bK1", "REGISTER"), false, t0),
            ServerRx::Retransmission(None)
        );
        let sent = st.respond(id, 401, bytes("401"), dest(), t0).unwrap();
        assert_eq!(&*sent.bytes, b"401");
        // a second answer to the same transaction is refused
        assert!(st.respond(id, 200, bytes("200"), dest(), t0).is_none());
        let later = t0 + Duration::from_secs(31);
        match st.on_request(key("z9hG4bK1", "REGISTER"), false, later) {
            ServerRx::Retransmission(Some(t)) => assert_eq!(&*t.bytes, b"401"),
            other => panic!("{other:?}"),
        }
        let mut out = vec![];
        st.handle_timeout(t0 + Duration::from_secs(32), &mut out);
        assert!(out.is_empty());
        assert!(st.is_empty());
        // after Timer J the same branch is a new transaction
        assert!(matches!(
            st.on_request(key("z9hG4bK1", "REGISTER"), false, later),
            ServerRx::New(_)
        ));
    }

    #[test]
    fn invite_non2xx_retransmits_on_timer_g_schedule_until_ack() {
        let t0 = Instant::now();
        let mut st = ServerTransactions::new(TransactionTimers::default());
        let ServerRx::New(id) = st.on_request(key("z9hG4bKi", "INVITE"), false, t0) else {
            panic!()
        };
        st.respond(id, 407, bytes("407"), dest(), t0).unwrap();
        // Timer G fires at 0.5, 1.5, 3.5, 7.5, 11.5 ... (interval doubles, capped at T2 = 4 s)
        let mut fired = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_secs(12) {
            now += Duration::from_millis(100);
            let mut out = vec![];
            st.handle_timeout(now, &mut out);
            if !out.is_empty() {
                fired.push((now - t0).as_millis());
            }
        }
        assert_eq!(fired, vec![500, 1500, 3500, 7500, 11500]);
        assert_eq!(
            st.on_request(key("z9hG4bKi", "INVITE"), true, now),
            ServerRx::AckAbsorbed
        );
        let mut out = vec![];
        st.handle_timeout(now + Duration::from_secs(4), &mut out);
        assert!(out.is_empty(), "no retransmission once confirmed");
        assert_eq!(
            st.on_request(key("z9hG4bKi", "INVITE"), true, now),
            ServerRx::AckAbsorbed
        );
        st.handle_timeout(now + Duration::from_secs(6), &mut out);
        assert!(st.is_empty(), "Timer I ended it");
    }

    #[test]
    fn invite_without_ack_reports_timer_h() {
        let t0 = Instant::now();
        let mut st = ServerTransactions::new(TransactionTimers::default());
        let ServerRx::New(id) = st.on_request(key("z9hG4bKh", "INVITE"), false, t0) else {
            panic!()
        };
        st.respond(id, 486, bytes("486"), dest(), t0);
        let mut out = vec![];
        let mut now = t0;
        while !out.iter().any(|e| matches!(e, TxEvent::ServerNoAck { .. })) {
            now += Duration::from_millis(250);
            st.handle_timeout(now, &mut out);
            assert!(now < t0 + Duration::from_secs(40));
        }
        assert_eq!(now - t0, Duration::from_secs(32));
        let retransmits = out
            .iter()
            .filter(|e| matches!(e, TxEvent::Transmit(_)))
            .count();
        // 0.5 1.5 3.5 7.5 then every 4 s up to 31.5: 4 + 6 = 10
        assert_eq!(retransmits, 10);
        assert!(st.is_empty());
    }

    #[test]
    fn invite_2xx_enters_accepted_and_passes_acks_to_tu() {
        let t0 = Instant::now();
        let mut st = ServerTransactions::new(TransactionTimers::default());
        let ServerRx::New(id) = st.on_request(key("z9hG4bKa", "INVITE"), false, t0) else {
            panic!()
        };
        st.respond(id, 100, bytes("100"), dest(), t0);
        match st.on_request(key("z9hG4bKa", "INVITE"), false, t0) {
            ServerRx::Retransmission(Some(t)) => assert_eq!(&*t.bytes, b"100"),
            other => panic!("{other:?}"),
        }
        assert!(st.is_pending_invite(id));
        st.respond(id, 200, bytes("200"), dest(), t0);
        assert!(!st.is_pending_invite(id));
        assert_eq!(
            st.on_request(key("z9hG4bKa", "INVITE"), false, t0),
            ServerRx::Retransmission(None)
        );
        assert_eq!(
            st.on_request(key("z9hG4bKa", "INVITE"), true, t0),
            ServerRx::AckForTu
        );
        let mut out = vec![];
        st.handle_timeout(t0 + Duration::from_secs(32), &mut out);
        assert!(out.is_empty() && st.is_empty(), "Timer L");
    }

    #[test]
    fn ack_without_transaction_goes_to_tu() {
        let mut st = ServerTransactions::new(TransactionTimers::default());
        assert_eq!(
            st.on_request(key("z9hG4bKx", "INVITE"), true, Instant::now()),
            ServerRx::AckForTu
        );
        assert!(st.is_empty());
    }
}

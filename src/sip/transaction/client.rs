//! Client transactions: INVITE (17.1.1 plus RFC 6026 Timer M) and non-INVITE (17.1.2), over UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::timers::TransactionTimers;
use super::{Transmit, TxEvent, TxId, TxKey};
use crate::sip::deadlines::DeadlineHeap;

/// How long past Timer B an INVITE in Proceeding may wait for its final response (the TU's
/// own no-answer timer normally ends it first).
const PROCEEDING_LIMIT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calling (INVITE) or Trying (non-INVITE): retransmitting (Timer A / E).
    Calling,
    Proceeding,
    /// Final non-2xx received; INVITE resends its ACK on retransmitted finals (Timer D / K).
    Completed,
    /// INVITE got a 2xx: further 2xx retransmissions still go to the TU (Timer M).
    Accepted,
}

#[derive(Debug)]
struct ClientTx {
    key: TxKey,
    invite: bool,
    state: State,
    request: Arc<[u8]>,
    dest: SocketAddr,
    ack: Option<Arc<[u8]>>,
    deadline: Option<Instant>,
    interval: Duration,
    /// Timer B / F.
    give_up_at: Instant,
}

/// What the caller does with a received response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRx {
    /// Pass it to the TU (provisional, final, or a 2xx retransmission in Accepted).
    Deliver(TxId),
    /// A first non-2xx final response to an INVITE: pass it to the TU, which must build the ACK
    /// (17.1.1.3) and hand it over with `set_ack`; it is sent now and on every retransmission.
    DeliverNeedsAck(TxId),
    /// A retransmitted final: resend this ACK, if any, and do nothing else.
    Absorbed(Option<Transmit>),
    /// Matches no transaction: a stray response, dropped by the core (RFC 3261 18.1.2).
    Stray,
}

#[derive(Debug, Default)]
pub struct ClientTransactions {
    timers: TransactionTimers,
    by_key: HashMap<TxKey, TxId>,
    txs: HashMap<TxId, ClientTx>,
    heap: DeadlineHeap<TxId>,
    next_id: TxId,
}

impl ClientTransactions {
    pub fn new(timers: TransactionTimers) -> Self {
        ClientTransactions {
            timers,
            ..Default::default()
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Starts a transaction for a request we built (key from our own branch). Returns its id and
    /// the first transmission.
    pub fn send(
        &mut self,
        key: TxKey,
        invite: bool,
        request: Arc<[u8]>,
        dest: SocketAddr,
        now: Instant,
    ) -> (TxId, Transmit) {
        let id = self.next_id;
        self.next_id = self.next_id.next();
        let t = self.timers;
        let first = now + t.t1;
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            ClientTx {
                key,
                invite,
                state: State::Calling,
                request: request.clone(),
                dest,
                ack: None,
                deadline: Some(first),
                interval: t.t1,
                give_up_at: now + t.t64(),
            },
        );
        self.heap.push(first, id);
        (
            id,
            Transmit {
                dest,
                bytes: request,
            },
        )
    }

    pub fn on_response(&mut self, key: &TxKey, code: u16, now: Instant) -> ClientRx {
        let Some(id) = self.by_key.get(key).copied() else {
            return ClientRx::Stray;
        };
        let t = self.timers;
        let Some(tx) = self.txs.get_mut(&id) else {
            return ClientRx::Stray;
        };
        match (tx.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if tx.invite {
                    // Timer A stops; Timer B still bounds the wait for a final response (17.1.1.2
                    // leaves Proceeding open-ended; the TU's own no-answer timer ends it).
                    // Still on the heap, at the bound below: a deadline only in the lazy
                    // `poll_timeout` fallback stayed due after Timer B and made the loop spin.
                    let at = tx.give_up_at + PROCEEDING_LIMIT;
                    if tx.deadline != Some(at) {
                        tx.deadline = Some(at);
                        self.heap.push(at, id);
                    }
                } else if tx.state == State::Calling {
                    // Timer E continues, at T2 (17.1.2.2)
                    tx.interval = t.t2;
                }
                tx.state = State::Proceeding;
                ClientRx::Deliver(id)
            }
            (State::Calling | State::Proceeding, 200..=299) if tx.invite => {
                tx.state = State::Accepted;
                let at = now + t.t64();
                tx.deadline = Some(at);
                self.heap.push(at, id);
                ClientRx::Deliver(id)
            }
            (State::Calling | State::Proceeding, _) => {
                tx.state = State::Completed;
                let at = now + if tx.invite { t.timer_d() } else { t.t4 };
                tx.deadline = Some(at);
                self.heap.push(at, id);
                if tx.invite {
                    ClientRx::DeliverNeedsAck(id)
                } else {
                    ClientRx::Deliver(id)
                }
            }
            (State::Accepted, 200..=299) => ClientRx::Deliver(id),
            (State::Completed, _) => ClientRx::Absorbed(tx.ack.clone().map(|bytes| Transmit {
                dest: tx.dest,
                bytes,
            })),
            _ => ClientRx::Absorbed(None),
        }
    }

    /// The ACK for a non-2xx final response; returns the transmission to make now.
    pub fn set_ack(&mut self, id: TxId, ack: Arc<[u8]>) -> Option<Transmit> {
        let tx = self.txs.get_mut(&id)?;
        tx.ack = Some(ack.clone());
        Some(Transmit {
            dest: tx.dest,
            bytes: ack,
        })
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.heap.peek();
        // Timer B/F deadlines for transactions whose retransmit timer stopped (INVITE Proceeding)
        // are not in the heap; they are checked lazily on the next heap entry or sweep.
        if next.is_none() && !self.txs.is_empty() {
            next = self.txs.values().map(|t| t.give_up_at).min();
        }
        next
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<TxEvent>) {
        let t = self.timers;
        while let Some((at, id)) = self.heap.pop_due(now) {
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.deadline != Some(at) {
                continue;
            }
            match tx.state {
                State::Calling | State::Proceeding => {
                    if at >= tx.give_up_at {
                        out.push(TxEvent::ClientTimeout { id });
                        self.remove(id);
                        continue;
                    }
                    out.push(TxEvent::Transmit(Transmit {
                        dest: tx.dest,
                        bytes: tx.request.clone(),
                    }));
                    // Timer A doubles without bound; Timer E doubles up to T2
                    tx.interval = if tx.invite {
                        tx.interval * 2
                    } else {
                        (tx.interval * 2).min(t.t2)
                    };
                    let next = (at + tx.interval).min(tx.give_up_at);
                    tx.deadline = Some(next);
                    self.heap.push(next, id);
                }
                State::Completed | State::Accepted => self.remove(id),
            }
        }
        // INVITE transactions in Proceeding have no heap entry; they end with the TU's choice,
        // but never outlive a generous bound (3 minutes) so a vanished peer cannot leak them.
        if self.txs.len() > self.heap.len() {
            let stale: Vec<TxId> = self
                .txs
                .iter()
                .filter(|(_, tx)| {
                    tx.invite
                        && tx.state == State::Proceeding
                        && now >= tx.give_up_at + PROCEEDING_LIMIT
                })
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                out.push(TxEvent::ClientTimeout { id });
                self.remove(id);
            }
        }
    }

    /// The TU is done with a transaction early (e.g. after CANCEL's 487 and ACK).
    pub fn remove(&mut self, id: TxId) {
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

    fn key(m: &str) -> TxKey {
        TxKey::Rfc3261 {
            branch: "z9hG4bKc1".into(),
            sent_by: "127.0.0.1:5060".into(),
            method: m.into(),
        }
    }

    fn run(ct: &mut ClientTransactions, from: Instant, until: Duration) -> Vec<(u128, TxEvent)> {
        let mut log = vec![];
        let mut now = from;
        while now < from + until {
            now += Duration::from_millis(50);
            let mut out = vec![];
            ct.handle_timeout(now, &mut out);
            log.extend(out.into_iter().map(|e| ((now - from).as_millis(), e)));
        }
        log
    }

    #[test]
    fn non_invite_retransmits_per_timer_e_and_times_out_with_f() {
        let t0 = Instant::now();
        let mut ct = ClientTransactions::new(TransactionTimers::default());
        let dest = "127.0.0.1:5062".parse().unwrap();
        let (id, first) = ct.send(key("OPTIONS"), false, Arc::from(&b"OPT"[..]), dest, t0);
        assert_eq!(first.dest, dest);
        let log = run(&mut ct, t0, Duration::from_secs(33));
        let times: Vec<u128> = log
            .iter()
            .filter(|(_, e)| matches!(e, TxEvent::Transmit(_)))
            .map(|(t, _)| *t)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s until 32 s
        assert_eq!(
            times,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(log.last().unwrap(), &(32000, TxEvent::ClientTimeout { id }));
        assert!(ct.is_empty());
    }

    #[test]
    fn invite_timer_a_doubles_and_b_times_out() {
        let t0 = Instant::now();
        let mut ct = ClientTransactions::new(TransactionTimers::default());
        let dest = "127.0.0.1:5062".parse().unwrap();
        let (id, _) = ct.send(key("INVITE"), true, Arc::from(&b"INV"[..]), dest, t0);
        let log = run(&mut ct, t0, Duration::from_secs(33));
        let times: Vec<u128> = log
            .iter()
            .filter(|(_, e)| matches!(e, TxEvent::Transmit(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(log.last().unwrap().1, TxEvent::ClientTimeout { id });
    }

    #[test]
    fn provisional_stops_timer_a_and_final_needs_ack_once() {
        let t0 = Instant::now();
        let mut ct = ClientTransactions::new(TransactionTimers::default());
        let dest = "127.0.0.1:5062".parse().unwrap();
        let (id, _) = ct.send(key("INVITE"), true, Arc::from(&b"INV"[..]), dest, t0);
        assert_eq!(
            ct.on_response(&key("INVITE"), 180, t0),
            ClientRx::Deliver(id)
        );
        let log = run(&mut ct, t0, Duration::from_secs(5));
        assert!(log.is_empty(), "no retransmission after a provisional");
        assert_eq!(
            ct.on_response(&key("INVITE"), 486, t0),
            ClientRx::DeliverNeedsAck(id)
        );
        let ack = ct.set_ack(id, Arc::from(&b"ACK"[..])).unwrap();
        assert_eq!(&*ack.bytes, b"ACK");
        match ct.on_response(&key("INVITE"), 486, t0) {
            ClientRx::Absorbed(Some(t)) => assert_eq!(&*t.bytes, b"ACK"),
            other => panic!("{other:?}"),
        }
        run(&mut ct, t0, Duration::from_secs(33));
        assert!(ct.is_empty(), "Timer D");
    }

    #[test]
    fn invite_2xx_retransmissions_reach_tu_until_timer_m() {
        let t0 = Instant::now();
        let mut ct = ClientTransactions::new(TransactionTimers::default());
        let dest = "127.0.0.1:5062".parse().unwrap();
        let (id, _) = ct.send(key("INVITE"), true, Arc::from(&b"INV"[..]), dest, t0);
        assert_eq!(
            ct.on_response(&key("INVITE"), 200, t0),
            ClientRx::Deliver(id)
        );
        assert_eq!(
            ct.on_response(&key("INVITE"), 200, t0),
            ClientRx::Deliver(id)
        );
        run(&mut ct, t0, Duration::from_secs(33));
        assert!(ct.is_empty());
        assert_eq!(ct.on_response(&key("INVITE"), 200, t0), ClientRx::Stray);
    }

    #[test]
    fn non_invite_final_then_timer_k() {
        let t0 = Instant::now();
        let mut ct = ClientTransactions::new(TransactionTimers::default());
        let dest = "127.0.0.1:5062".parse().unwrap();
        let (id, _) = ct.send(key("BYE"), false, Arc::from(&b"BYE"[..]), dest, t0);
        assert_eq!(ct.on_response(&key("BYE"), 200, t0), ClientRx::Deliver(id));
        assert_eq!(
            ct.on_response(&key("BYE"), 200, t0),
            ClientRx::Absorbed(None)
        );
        let log = run(&mut ct, t0, Duration::from_secs(6));
        assert!(log.is_empty());
        assert!(ct.is_empty());
    }
}

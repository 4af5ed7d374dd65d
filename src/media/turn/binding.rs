//! One STUN Binding transaction (RFC 5389 7.2.1) to learn our server-reflexive address for a
//! srflx candidate: a request with a random transaction id, retransmitted on its own timer, and
//! the XOR-MAPPED-ADDRESS of the success response that matches it. Retransmission is
//! `stun-proto`'s agent; the schedule is shortened from the RFC's ~39.5 s because a call is
//! waiting: sends at 0, 0.5, 1.5, 3.5 and 7.5 s, given up 2 s after the last.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun_proto::agent::{StunAgent, StunAgentPollRet};
use stun_proto::types::attribute::{ErrorCode, XorMappedAddress};
use stun_proto::types::message::{
    Message, MessageClass, MessageWrite, MessageWriteExt, MessageWriteVec, TransactionId, BINDING,
};
use stun_proto::types::TransportType;

use super::clock::Clock;

/// Transmissions of the request, the first included (RFC 5389's Rc is 7).
pub const BINDING_TRANSMISSIONS: u32 = 5;
/// The wait after the last transmission before giving up.
pub const BINDING_FINAL_WAIT: Duration = Duration::from_secs(2);
const INITIAL_RTO: Duration = Duration::from_millis(500);

/// Where a binding stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingResult {
    /// Requests are out, no answer yet.
    Pending,
    /// Our address as the server saw it.
    Mapped(SocketAddr),
    /// No usable answer, and why.
    Failed(String),
}

/// One STUN Binding transaction (RFC 8489) toward a `stun:` server, sans-IO: it learns our
/// server-reflexive address.
#[derive(Debug)]
pub struct StunBinding {
    agent: StunAgent,
    server: SocketAddr,
    clock: Clock,
    transaction: TransactionId,
    result: BindingResult,
    /// The request, until it is first handed out; then the last retransmission handed out.
    out: Vec<u8>,
    first_pending: bool,
    wake: Option<Instant>,
}

impl StunBinding {
    /// A Binding request toward `server` from the socket bound to `local`; the request is
    /// ready from [`Self::poll_transmit`] at once.
    pub fn new(local: SocketAddr, server: SocketAddr, now: Instant) -> Self {
        let mut agent = StunAgent::builder(TransportType::Udp, local)
            .request_retransmits(
                INITIAL_RTO,
                Duration::MAX,
                BINDING_TRANSMISSIONS,
                BINDING_FINAL_WAIT,
            )
            .build();
        let clock = Clock::new(now);
        let mut request = Message::builder_request(BINDING, MessageWriteVec::new());
        let transaction = request.transaction_id();
        // FINGERPRINT tells it apart from media on a shared socket (RFC 5389 7.3); a request
        // without it is still valid, so a failure here is no reason to give up.
        let _ = request.add_fingerprint();
        let request = request.finish();
        let result = match agent.send_request(&request, server, clock.proto_of(now)) {
            Ok(_) => BindingResult::Pending,
            Err(e) => BindingResult::Failed(format!("STUN request not built: {e}")),
        };
        let mut binding = StunBinding {
            agent,
            server,
            clock,
            transaction,
            result,
            out: request,
            first_pending: true,
            wake: Some(now),
        };
        binding.update(now);
        binding
    }

    /// The STUN server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Where the binding stands.
    pub fn result(&self) -> &BindingResult {
        &self.result
    }

    /// The request (first send or a retransmission) when one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        if self.result != BindingResult::Pending {
            return None;
        }
        if std::mem::take(&mut self.first_pending) {
            self.update(now);
            return Some(&self.out);
        }
        let t = self.clock.proto_of(now);
        let due = match self.agent.poll_transmit(t) {
            Some(transmit) => {
                self.out.clear();
                self.out.extend_from_slice(transmit.data);
                true
            }
            None => false,
        };
        self.update(now);
        due.then_some(self.out.as_slice())
    }

    /// When a retransmission or the final wait is due (none once settled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.result != BindingResult::Pending {
            return None;
        }
        self.wake
    }

    /// Retransmits or gives up, as due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.update(now);
    }

    /// A datagram that arrived from `from`; the mapped address if it is the success response
    /// to this request (then the binding is done). Anything else is ignored.
    pub fn handle_input(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Option<SocketAddr> {
        if self.result != BindingResult::Pending || from != self.server {
            return None;
        }
        let msg = Message::from_bytes(bytes).ok()?;
        if !msg.is_response()
            || msg.transaction_id() != self.transaction
            || !msg.has_method(BINDING)
            || !self
                .agent
                .handle_stun_message_with_time(&msg, from, self.clock.proto_of(now))
        {
            return None;
        }
        if msg.has_class(MessageClass::Error) {
            let reason = msg
                .attribute::<ErrorCode>()
                .map(|e| format!("{} {}", e.code(), e.reason()))
                .unwrap_or_else(|_| "an error without a code".to_owned());
            self.result = BindingResult::Failed(format!("{} answered {reason}", self.server));
            return None;
        }
        match msg.attribute::<XorMappedAddress>() {
            Ok(mapped) => {
                let addr = mapped.addr(self.transaction);
                self.result = BindingResult::Mapped(addr);
                Some(addr)
            }
            Err(_) => {
                self.result = BindingResult::Failed(format!(
                    "{}'s response has no XOR-MAPPED-ADDRESS",
                    self.server
                ));
                None
            }
        }
    }

    fn update(&mut self, now: Instant) {
        if self.result != BindingResult::Pending {
            return;
        }
        if self.first_pending {
            self.wake = Some(now);
            return;
        }
        match self.agent.poll(self.clock.proto_of(now)) {
            StunAgentPollRet::WaitUntil(at) => self.wake = Some(self.clock.std_of(at)),
            StunAgentPollRet::TransactionTimedOut(_)
            | StunAgentPollRet::TransactionCancelled(_) => {
                self.result = BindingResult::Failed(format!(
                    "no answer from {} to {BINDING_TRANSMISSIONS} Binding requests",
                    self.server
                ));
                self.wake = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_proto::types::attribute::AttributeWrite;
    use stun_proto::types::message::MessageHeader;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn response(request: &[u8], attr: Option<&dyn AttributeWrite>, class: MessageClass) -> Vec<u8> {
        let req = Message::from_bytes(request).unwrap();
        let mut b = match class {
            MessageClass::Success => Message::builder_success(&req, MessageWriteVec::new()),
            _ => Message::builder_error(&req, MessageWriteVec::new()),
        };
        if let Some(attr) = attr {
            b.add_attribute(attr).unwrap();
        }
        b.finish()
    }

    #[test]
    fn request_then_matching_response_gives_the_mapped_address() {
        let now = Instant::now();
        let server = addr("127.0.0.1:3478");
        let mut b = StunBinding::new(addr("127.0.0.1:5000"), server, now);
        let request = b.poll_transmit(now).unwrap().to_vec();
        let msg = Message::from_bytes(&request).unwrap();
        assert!(msg.has_class(MessageClass::Request) && msg.has_method(BINDING));
        assert_eq!(b.poll_transmit(now), None, "sent once until its timer");

        let mapped = addr("203.0.113.7:40000");
        let xor = XorMappedAddress::new(mapped, msg.transaction_id());
        let ok = response(&request, Some(&xor), MessageClass::Success);
        // From elsewhere, or someone else's transaction: ignored.
        assert_eq!(b.handle_input(addr("127.0.0.1:9"), &ok, now), None);
        let mut other = ok.clone();
        other[10] ^= 0xff;
        assert_eq!(b.handle_input(server, &other, now), None);
        assert_eq!(b.result(), &BindingResult::Pending);

        assert_eq!(b.handle_input(server, &ok, now), Some(mapped));
        assert_eq!(b.result(), &BindingResult::Mapped(mapped));
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.poll_transmit(now + Duration::from_secs(5)), None);
    }

    #[test]
    fn transaction_ids_are_random() {
        let now = Instant::now();
        let server = addr("127.0.0.1:3478");
        let mut a = StunBinding::new(addr("127.0.0.1:5000"), server, now);
        let mut b = StunBinding::new(addr("127.0.0.1:5000"), server, now);
        let ta = MessageHeader::from_bytes(a.poll_transmit(now).unwrap()).unwrap();
        let tb = MessageHeader::from_bytes(b.poll_transmit(now).unwrap()).unwrap();
        assert_ne!(ta.transaction_id(), tb.transaction_id());
    }

    #[test]
    fn retransmits_on_its_timer_then_gives_up() {
        let start = Instant::now();
        let mut b = StunBinding::new(addr("127.0.0.1:5000"), addr("127.0.0.1:3478"), start);
        let mut now = start;
        let mut sends = vec![];
        for _ in 0..100 {
            if b.poll_transmit(now).is_some() {
                sends.push(now - start);
            }
            match b.poll_timeout() {
                Some(at) => now = at.max(now),
                None => break,
            }
            b.handle_timeout(now);
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 500, 1500, 3500, 7500]);
        assert!(
            matches!(b.result(), BindingResult::Failed(_)),
            "{:?}",
            b.result()
        );
        assert_eq!((now - start).as_millis(), 9500);
    }

    #[test]
    fn error_response_fails_the_binding() {
        let now = Instant::now();
        let server = addr("127.0.0.1:3478");
        let mut b = StunBinding::new(addr("127.0.0.1:5000"), server, now);
        let request = b.poll_transmit(now).unwrap().to_vec();
        let code = ErrorCode::builder(ErrorCode::BAD_REQUEST).build().unwrap();
        let err = response(&request, Some(&code), MessageClass::Error);
        assert_eq!(b.handle_input(server, &err, now), None);
        assert!(
            matches!(b.result(), BindingResult::Failed(r) if r.contains("400")),
            "{:?}",
            b.result()
        );
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let now = Instant::now();
        let server = addr("127.0.0.1:3478");
        let mut b = StunBinding::new(addr("127.0.0.1:5000"), server, now);
        let request = b.poll_transmit(now).unwrap().to_vec();
        for i in 0..5000 {
            let len = rng.gen_range(0..200);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if i % 2 == 0 && buf.len() >= 20 {
                // A plausible header with our transaction id, random body.
                buf[..20].copy_from_slice(&request[..20]);
                buf[0] = 0x01;
                buf[1] = 0x01;
                let body = (buf.len() - 20) as u16 & !3;
                buf[2..4].copy_from_slice(&body.to_be_bytes());
            }
            let _ = b.handle_input(server, &buf, now);
        }
    }
}

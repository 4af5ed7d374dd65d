//! Watches the STUN error responses from the TURN server, because `turn-client-proto` logs them
//! but its events do not carry them: keeps the last one for failure reasons ("486 Allocation
//! Quota Reached"), and spots a 401 answering an Allocate that carried credentials. The crate
//! ignores that 401 and waits ~30 s for the transaction to time out; it means the credentials
//! were rejected, so the allocation fails at once. Matching on our own transaction ids keeps an
//! off-path sender from failing the allocation with a forged 401.

use stun_proto::types::attribute::{
    AttributeStaticType, ErrorCode, MessageIntegrity, MessageIntegritySha256,
};
use stun_proto::types::message::{Message, MessageClass, MessageHeader, TransactionId};
use turn_client_proto::types::message::ALLOCATE;

/// Longest server reason text kept.
const MAX_REASON: usize = 120;
/// Authenticated Allocates remembered (the crate sends a handful at most).
const MAX_ALLOCATES: usize = 16;

#[derive(Debug, Default)]
pub(super) struct ErrorWatch {
    last: Option<String>,
    authenticated_allocates: Vec<TransactionId>,
    credentials_rejected: bool,
}

impl ErrorWatch {
    /// A control message we are about to send (only looked at while allocating).
    pub(super) fn outgoing(&mut self, bytes: &[u8]) {
        let Ok(header) = MessageHeader::from_bytes(bytes) else {
            return;
        };
        let mtype = header.get_type();
        if !mtype.has_class(MessageClass::Request) || mtype.method() != ALLOCATE {
            return;
        }
        let Ok(msg) = Message::from_bytes(bytes) else {
            return;
        };
        let signed = msg.has_attribute(MessageIntegrity::TYPE)
            || msg.has_attribute(MessageIntegritySha256::TYPE);
        if signed && self.authenticated_allocates.len() < MAX_ALLOCATES {
            self.authenticated_allocates.push(header.transaction_id());
        }
    }

    /// A message from the server; only error responses are parsed past the header.
    pub(super) fn incoming(&mut self, frame: &[u8]) {
        let Ok(header) = MessageHeader::from_bytes(frame) else {
            return;
        };
        if !header.get_type().has_class(MessageClass::Error) {
            return;
        }
        let Ok(msg) = Message::from_bytes(frame) else {
            return;
        };
        let Ok(code) = msg.attribute::<ErrorCode>() else {
            return;
        };
        let reason: String = code
            .reason()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        self.last = Some(format!("{} {reason}", code.code()));
        if code.code() == ErrorCode::UNAUTHORIZED
            && self
                .authenticated_allocates
                .contains(&header.transaction_id())
        {
            self.credentials_rejected = true;
        }
    }

    pub(super) fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    pub(super) fn credentials_rejected(&self) -> bool {
        self.credentials_rejected
    }

    /// After the allocation is granted: earlier errors (the 401 challenge) explain nothing later.
    pub(super) fn granted(&mut self) {
        self.last = None;
        self.authenticated_allocates = Vec::new();
    }
}

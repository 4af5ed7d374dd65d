//! Transaction matching keys (RFC 3261 17.1.3 and 17.2.3).

use crate::sip::grammar::{CSeq, Via};
use crate::sip::message::Method;

/// The key of a transaction. RFC 3261 branches (`z9hG4bK...`) match on branch, sent-by and
/// method; older RFC 2543 peers are matched on the request's identifying fields instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: String,
    },
    Rfc2543 {
        call_id: String,
        cseq: u32,
        from_tag: String,
        via: String,
        method: String,
    },
}

const MAGIC_COOKIE: &str = "z9hG4bK";

/// ACK belongs to the INVITE transaction it acknowledges (17.2.3).
fn match_method(method: &Method) -> String {
    match method {
        Method::Ack => "INVITE".to_string(),
        m => m.as_str().to_string(),
    }
}

impl TxKey {
    /// Key of a received request.
    pub fn for_request(
        method: &Method,
        via: &Via,
        call_id: &str,
        cseq: &CSeq,
        from_tag: Option<&str>,
    ) -> TxKey {
        match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len() => {
                TxKey::Rfc3261 {
                    branch: b.to_string(),
                    sent_by: via.sent_by(),
                    method: match_method(method),
                }
            }
            _ => TxKey::Rfc2543 {
                call_id: call_id.to_string(),
                cseq: cseq.seq,
                from_tag: from_tag.unwrap_or_default().to_string(),
                via: format!("{}{:?}", via.sent_by(), via.branch()),
                method: match_method(method),
            },
        }
    }

    /// Key a response is matched on for client transactions: our own branch and CSeq method.
    pub fn for_response(via: &Via, cseq: &CSeq) -> Option<TxKey> {
        let branch = via.branch()?;
        Some(TxKey::Rfc3261 {
            branch: branch.to_string(),
            sent_by: via.sent_by(),
            method: match cseq.method.as_str() {
                "ACK" => "INVITE".to_string(),
                m => m.to_string(),
            },
        })
    }
}

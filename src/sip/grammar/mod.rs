//! The RFC 3261 section 25 grammar for the header values trunkgate reads: URIs, name-addr /
//! addr-spec (From, To, Contact, P-Asserted-Identity), generic parameters, Via and CSeq.
//!
//! Tolerant where the RFC allows linear white space (around `;`, `=`, `/`), strict where it
//! does not (inside `<...>`, in unquoted display names, empty parameters), so that the RFC 4475
//! torture messages are accepted or refused as the RFC says. Every function returns an error
//! instead of panicking: these parse attacker-controlled bytes.
//!
//! The lexical pieces shared by the parsers are here; parameter lists are `params`, URIs and
//! their equivalence `uri`, the header values built on them (name-addr, Via, CSeq) `headers`.

mod headers;
mod params;
mod uri;

use thiserror::Error;

pub use self::headers::{CSeq, NameAddr, Via};
pub use self::params::{parse_params, Params};
pub use self::uri::{Scheme, Uri};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed {what}")]
pub struct GrammarError {
    pub what: &'static str,
}

fn err<T>(what: &'static str) -> Result<T, GrammarError> {
    Err(GrammarError { what })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

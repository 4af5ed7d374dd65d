//! The kinds of authentication failure the edge tells apart, for the counters, the summary line
//! and the decision to ban.

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    UnknownUser,
    WrongPassword,
    WrongRealm,
    EmptyResponse,
    /// Our nonce, past its lifetime: ordinary protocol flow.
    Stale,
    /// A no-qop nonce used twice, or an nc that did not grow: a captured header, or a client
    /// re-using its last nonce; answered with a fresh `stale=true` challenge.
    Replay,
    /// The digest `uri` names another resource than the Request-URI.
    UriMismatch,
    Algorithm,
    /// A nonce we did not issue, or issued to another address.
    InvalidNonce,
    /// Digest credentials that do not parse.
    Malformed,
    /// A source no trunk's `allowed_sources` admits.
    SourceNotAllowed,
}

impl FailureKind {
    pub const ALL: [FailureKind; 11] = [
        FailureKind::UnknownUser,
        FailureKind::WrongPassword,
        FailureKind::WrongRealm,
        FailureKind::EmptyResponse,
        FailureKind::Stale,
        FailureKind::Replay,
        FailureKind::UriMismatch,
        FailureKind::Algorithm,
        FailureKind::InvalidNonce,
        FailureKind::Malformed,
        FailureKind::SourceNotAllowed,
    ];

    /// The metrics label and the word in log lines.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::UnknownUser => "unknown_user",
            FailureKind::WrongPassword => "wrong_password",
            FailureKind::WrongRealm => "wrong_realm",
            FailureKind::EmptyResponse => "empty_response",
            FailureKind::Stale => "stale",
            FailureKind::Replay => "replay",
            FailureKind::UriMismatch => "uri_mismatch",
            FailureKind::Algorithm => "algorithm",
            FailureKind::InvalidNonce => "invalid_nonce",
            FailureKind::Malformed => "malformed",
            FailureKind::SourceNotAllowed => "source_not_allowed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether it counts toward a ban. A stale nonce is the protocol's own flow, and a replayed
    /// one is what a PBX re-using its last nonce sends: both get a fresh challenge and are
    /// harmless, while a guessed password or user is what a ban is for.
    pub fn counts_toward_ban(self) -> bool {
        !matches!(self, FailureKind::Stale | FailureKind::Replay)
    }
}

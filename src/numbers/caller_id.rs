//! The caller's number toward the carrier, and whether it is withheld.
//!
//! This module owns choosing the calling number among the identity headers a PBX sends:
//! P-Asserted-Identity first (the PBX vouches for it), then Remote-Party-ID (older
//! Asterisk and 3CX setups), then From (where 3CX puts the trunk's Authentication ID
//! unless told otherwise, hence last), then the trunk's default caller id. Each is
//! normalised like a destination but is not subject to the destination policy: any
//! valid number of any country is a usable caller id; an invalid one (an
//! authentication id, `anonymous`, an extension) is skipped. Withholding is decided
//! separately, from every privacy signal present, and does not erase the number, so
//! call records can keep it.

use super::normalize::{header_values, split_name_addr, user_part};
use super::policy::NumberPolicy;

/// The identity headers of an INVITE, as received (whole header values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerIdInput<'a> {
    pub p_asserted_identity: Option<&'a str>,
    pub remote_party_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub privacy: Option<&'a str>,
}

/// Where the caller id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerIdSource {
    Pai,
    Rpid,
    From,
    /// The trunk's default caller id.
    Default,
    /// No usable number anywhere.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerId {
    /// Canonical, in the configured output format.
    pub number: Option<String>,
    /// The caller asked for their identity to be withheld toward the carrier.
    pub withheld: bool,
    pub source: CallerIdSource,
}

/// `Privacy: id` (RFC 3325) or `user` (RFC 3323) in the header's `;`-separated list,
/// any case. `header`, `session` and `critical` alone do not hide the number, and
/// `none` asks for nothing.
fn privacy_withholds(privacy: &str) -> bool {
    privacy
        .split([';', ','])
        .map(str::trim)
        .any(|v| v.eq_ignore_ascii_case("id") || v.eq_ignore_ascii_case("user"))
}

/// The `name=value` header parameters after a name-addr, names lower-cased.
fn params(value: &str) -> Vec<(String, String)> {
    let Ok((_, params)) = split_name_addr(value) else {
        return Vec::new();
    };
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// Remote-Party-ID values describe the caller unless `party=called`.
fn rpid_is_calling(params: &[(String, String)]) -> bool {
    !params
        .iter()
        .any(|(k, v)| k == "party" && v.eq_ignore_ascii_case("called"))
}

/// RPID's own `privacy=full` or `privacy=uri` hides the number (`name` hides only the
/// display name, `off` nothing).
fn rpid_withholds(params: &[(String, String)]) -> bool {
    params.iter().any(|(k, v)| {
        k == "privacy" && (v.eq_ignore_ascii_case("full") || v.eq_ignore_ascii_case("uri"))
    })
}

/// A From of `anonymous` is the RFC 3323 way of asking for privacy without a header.
fn is_anonymous(value: &str) -> bool {
    split_name_addr(value)
        .and_then(|(uri, _)| user_part(uri))
        .is_ok_and(|part| part.number.eq_ignore_ascii_case("anonymous"))
}

impl NumberPolicy {
    /// The caller id to present to the carrier for a call with these headers.
    pub(crate) fn caller_id(
        &self,
        input: &CallerIdInput,
        default_caller_id: Option<&str>,
    ) -> CallerId {
        let mut withheld = input.privacy.is_some_and(privacy_withholds);
        let mut found: Option<(CallerIdSource, String)> = None;
        let sources = [
            (CallerIdSource::Pai, input.p_asserted_identity),
            (CallerIdSource::Rpid, input.remote_party_id),
            (CallerIdSource::From, input.from),
        ];
        for (source, header) in sources {
            // Each header may hold several values (PAI: a sip and a tel URI); all are
            // read so that a privacy request in any of them is seen.
            for value in header.map(header_values).unwrap_or_default() {
                match source {
                    CallerIdSource::Rpid => {
                        let params = params(value);
                        if !rpid_is_calling(&params) {
                            continue;
                        }
                        withheld |= rpid_withholds(&params);
                    }
                    CallerIdSource::From => withheld |= is_anonymous(value),
                    _ => {}
                }
                if found.is_none() {
                    if let Ok((_, canonical)) = self.normalize(value) {
                        found = Some((source, canonical));
                    }
                }
            }
        }
        if found.is_none() {
            found = default_caller_id
                .and_then(|d| self.normalize(d).ok())
                .map(|(_, canonical)| (CallerIdSource::Default, canonical));
        }
        match found {
            Some((source, number)) => CallerId {
                number: Some(number),
                withheld,
                source,
            },
            None => CallerId {
                number: None,
                withheld,
                source: CallerIdSource::None,
            },
        }
    }
}

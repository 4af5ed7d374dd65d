//! The destination policy: which numbers may be sent to the carrier, and why not.
//!
//! This module owns the verdict types and [`NumberPolicy`], built once from a validated
//! [`NumbersConfig`]; [`NumberPolicy::check`] is the one gate every dialled number goes
//! through before anything reaches the carrier. Toll fraud through an open trunk is the
//! costliest failure a trunk operator can have, so the policy is an allow-list at every
//! level: a number must be valid, of an allowed country and an allowed type, match no
//! blocked prefix, and match an allowed prefix when such a list is set.

use super::normalize::{self, NormalizeError, Parsed};
use crate::config::{NumberKind, NumbersConfig};
use phonenumber::country::Id;
use phonenumber::metadata::{Metadata, DATABASE};
use std::fmt;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumbersError {
    /// The configuration failed [`NumbersConfig::validate`]: (key, message) pairs.
    #[error("invalid numbers configuration: {}", describe(.0))]
    InvalidConfig(Vec<(String, String)>),
}

fn describe(errors: &[(String, String)]) -> String {
    let parts: Vec<String> = errors.iter().map(|(k, m)| format!("{k}: {m}")).collect();
    parts.join("; ")
}

/// Emergency number or other short code, passed on as dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// One of `emergency_numbers`.
    Emergency,
    /// One of `short_codes`.
    ShortCode,
}

/// An allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// In the configured output format (a short code: as dialled).
    pub canonical: String,
    /// Always `+E.164`, or the short code as dialled.
    pub e164: String,
    /// The number's type (`Unknown` for emergency numbers and short codes).
    pub kind: NumberKind,
    /// ISO region, `001` for non-geographic numbers; the home region for short codes.
    pub region: String,
    /// Set when the number is an emergency number or short code, not a number of the plan.
    pub special: Option<Special>,
}

/// What a refusal is about, with a fixed set of values: a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCause {
    /// Not a number, or not a valid one (484).
    InvalidNumber,
    /// Matches one of `blocked_prefixes`.
    BlockedPrefix,
    /// Its region is not in `allowed_countries`.
    CountryNotAllowed,
    /// Its type is not in `allowed_types`.
    TypeNotAllowed,
    /// `allowed_prefixes` is set and the number matches none of them.
    NotInAllowedPrefixes,
    /// An emergency number on a trunk with `allow_emergency = false`.
    EmergencyNotAllowed,
    /// A short code while `allow_short_codes = false`.
    ShortCodeNotAllowed,
}

impl RefusalCause {
    /// The metrics label, e.g. `blocked_prefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidNumber => "invalid_number",
            Self::BlockedPrefix => "blocked_prefix",
            Self::CountryNotAllowed => "country_not_allowed",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::NotInAllowedPrefixes => "not_in_allowed_prefixes",
            Self::EmergencyNotAllowed => "emergency_not_allowed",
            Self::ShortCodeNotAllowed => "short_code_not_allowed",
        }
    }
}

/// A refused destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 484 (not a valid number) or 403 (valid, not allowed).
    pub code: u16,
    /// Short, human, ASCII, never quoting the input: for a SIP Warning/Reason header
    /// and the log, e.g. "premium-rate destinations are not allowed".
    pub reason: String,
    /// The number in output format, when it was valid.
    pub canonical: Option<String>,
    /// The number's type, when it was valid.
    pub kind: Option<NumberKind>,
    /// The number's ISO region (the home region for emergency numbers and short codes), when
    /// known.
    pub region: Option<String>,
    /// The reason as a fixed label, for counting.
    pub cause: RefusalCause,
}

/// The policy's answer for one dialled string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The call may go to this destination.
    Allowed(Destination),
    /// The call is refused, and why.
    Refused(Refusal),
}

/// A validated `[numbers]` configuration ready to judge numbers. Immutable after
/// [`NumberPolicy::new`]; share it behind an `Arc` across tasks.
#[derive(Clone)]
pub struct NumberPolicy {
    cfg: NumbersConfig,
    region: Id,
    home: &'static Metadata,
    /// The prefixes without their `+`, matched on E.164 digits.
    blocked: Vec<String>,
    allowed: Vec<String>,
}

impl fmt::Debug for NumberPolicy {
    // The home plan is libphonenumber metadata: not worth printing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumberPolicy")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl NumberPolicy {
    /// Validates `cfg` and builds the policy; every configuration error is reported at once.
    pub fn new(cfg: &NumbersConfig) -> Result<NumberPolicy, NumbersError> {
        let errors = cfg.validate();
        let region = cfg.region.parse::<Id>().ok();
        let home = DATABASE.by_id(cfg.region.as_str());
        let (Some(region), Some(home), true) = (region, home, errors.is_empty()) else {
            return Err(NumbersError::InvalidConfig(errors));
        };
        normalize::warm_region(home);
        let digits = |list: &[String]| {
            list.iter()
                .map(|p| p.trim_start_matches('+').to_owned())
                .collect()
        };
        Ok(NumberPolicy {
            cfg: cfg.clone(),
            region,
            home,
            blocked: digits(&cfg.blocked_prefixes),
            allowed: digits(&cfg.allowed_prefixes),
        })
    }

    /// Any number (bare, URI or header value) in `format`, read in the home plan; `None` when
    /// it is not a number. No policy applies: this is for numbers the carrier gives us.
    pub(crate) fn reformat(&self, number: &str, format: super::OutputFormat) -> Option<String> {
        let parsed = normalize::normalize(number, self.region).ok()?;
        Some(parsed.format(format, self.home))
    }

    /// Full check of a dialled string (a bare number or a URI / header value).
    pub fn check(&self, dialled: &str) -> Verdict {
        match self.judge(dialled) {
            Ok(destination) => Verdict::Allowed(destination),
            Err(refusal) => Verdict::Refused(refusal),
        }
    }

    /// Normalises `input` as a number (not a short code), in the configured output
    /// format; no destination policy. Caller ids go through this.
    pub(crate) fn normalize(&self, input: &str) -> Result<(Parsed, String), NormalizeError> {
        let parsed = normalize::normalize(input, self.region)?;
        let canonical = parsed.format(self.cfg.output_format, self.home);
        Ok((parsed, canonical))
    }

    fn invalid(&self, e: NormalizeError) -> Refusal {
        Refusal {
            code: 484,
            reason: e.to_string(),
            canonical: None,
            kind: None,
            region: None,
            cause: RefusalCause::InvalidNumber,
        }
    }

    fn judge(&self, input: &str) -> Result<Destination, Refusal> {
        let part = normalize::extract(input).map_err(|e| self.invalid(e))?;
        let dialled = normalize::clean(&part.number).map_err(|e| self.invalid(e))?;
        if !dialled.plus {
            if let Some(special) = self.special(&dialled.digits) {
                return self.judge_special(special, dialled.digits);
            }
        }
        if let Some(code) = self.emergency_behind_country_code(&dialled) {
            return self.judge_special(Special::Emergency, code);
        }
        let parsed = normalize::parse(&dialled, self.region, part.context.as_deref())
            .map_err(|e| self.invalid(e))?;
        let canonical = parsed.format(self.cfg.output_format, self.home);
        let refuse = |cause, reason: String| Refusal {
            code: 403,
            reason,
            canonical: Some(canonical.clone()),
            kind: Some(parsed.kind),
            region: Some(parsed.region.clone()),
            cause,
        };
        let e164 = parsed.e164();
        let digits = &e164[1..];
        if let Some(p) = self.blocked.iter().find(|p| digits.starts_with(p.as_str())) {
            let reason = format!("destination prefix +{p} is blocked");
            return Err(refuse(RefusalCause::BlockedPrefix, reason));
        }
        if !self.cfg.allowed_countries.contains(&parsed.region) {
            let reason = if parsed.region == crate::config::NON_GEOGRAPHIC {
                format!(
                    "non-geographic destinations (+{}) are not allowed",
                    parsed.cc
                )
            } else {
                format!("destinations in {} are not allowed", parsed.region)
            };
            return Err(refuse(RefusalCause::CountryNotAllowed, reason));
        }
        if !self.kind_allowed(parsed.kind) {
            let reason = format!("{} destinations are not allowed", parsed.kind.human());
            return Err(refuse(RefusalCause::TypeNotAllowed, reason));
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| digits.starts_with(p.as_str()))
        {
            let reason = "destination is not in the allowed prefixes".to_owned();
            return Err(refuse(RefusalCause::NotInAllowedPrefixes, reason));
        }
        Ok(Destination {
            canonical,
            kind: parsed.kind,
            region: parsed.region,
            special: None,
            e164,
        })
    }

    fn kind_allowed(&self, kind: NumberKind) -> bool {
        let listed = |k| self.cfg.allowed_types.contains(&k);
        listed(kind)
            || (kind == NumberKind::FixedLineOrMobile
                && listed(NumberKind::FixedLine)
                && listed(NumberKind::Mobile))
    }

    fn special(&self, digits: &str) -> Option<Special> {
        if self.cfg.emergency_numbers.iter().any(|e| e == digits) {
            Some(Special::Emergency)
        } else if self.cfg.short_codes.iter().any(|s| s == digits) {
            Some(Special::ShortCode)
        } else {
            None
        }
    }

    /// An emergency number that a PBX dial rule wrapped in the home country code
    /// (`+971999`, `00971999`): no such number exists, so refusing it would only fail
    /// an emergency call. It is sent as the bare code. Short codes are not unwrapped.
    fn emergency_behind_country_code(&self, dialled: &normalize::Dialled) -> Option<String> {
        let cc = self.home.country_code().to_string();
        let rest = if dialled.plus {
            dialled.digits.strip_prefix(&cc)
        } else {
            let idd = normalize::idd(self.home)?;
            dialled.digits.strip_prefix(idd)?.strip_prefix(&cc)
        }?;
        let listed = self.cfg.emergency_numbers.iter().any(|e| e == rest);
        listed.then(|| rest.to_owned())
    }

    /// Emergency numbers and short codes are never prefixed or reformatted: they go
    /// out exactly as dialled, or not at all. Prefix lists do not apply to them.
    fn judge_special(&self, special: Special, digits: String) -> Result<Destination, Refusal> {
        let (allowed, cause, reason) = match special {
            Special::Emergency => (
                self.cfg.allow_emergency,
                RefusalCause::EmergencyNotAllowed,
                "emergency calls are not allowed on this trunk",
            ),
            Special::ShortCode => (
                self.cfg.allow_short_codes,
                RefusalCause::ShortCodeNotAllowed,
                "short codes are not allowed",
            ),
        };
        if !allowed {
            return Err(Refusal {
                code: 403,
                reason: reason.to_owned(),
                canonical: Some(digits),
                kind: None,
                region: Some(self.cfg.region.clone()),
                cause,
            });
        }
        Ok(Destination {
            canonical: digits.clone(),
            e164: digits,
            kind: NumberKind::Unknown,
            region: self.cfg.region.clone(),
            special: Some(special),
        })
    }
}

//! The `[numbers]` configuration: what the admin writes, and whether it makes sense.
//!
//! This module owns the section's types (with the serde spelling of output formats and
//! number types), the defaults, the per-trunk override and the semantic checks run
//! after deserialisation. The policy built from it lives in `crate::numbers`.

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use serde::{Deserialize, Serialize};
use std::fmt;

/// libphonenumber's region code for non-geographic numbers (+800, +881...).
pub const NON_GEOGRAPHIC: &str = "001";

/// How numbers are written toward the carrier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `+971501234567`
    #[default]
    E164,
    /// `971501234567`
    Digits,
    /// `0501234567`; numbers of another country code get the international prefix
    /// (`00447911123456`).
    National,
}

/// A number's type, as libphonenumber's metadata classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberKind {
    /// Mobile numbers (in the UAE, 05x).
    Mobile,
    /// Geographic landline numbers (in the UAE, 02, 03, 04, 06, 07, 09).
    FixedLine,
    /// Plans that cannot tell the two apart (NANP). Allowed when listed, or when both
    /// `mobile` and `fixed_line` are.
    FixedLineOrMobile,
    /// Free to the caller (in the UAE, 800...).
    TollFree,
    /// Universal access numbers (UAE 600...).
    Uan,
    /// The call's cost is split between caller and called party.
    SharedCost,
    /// Charged above normal rates: the classic toll-fraud destination.
    PremiumRate,
    /// Ranges assigned to IP telephony services.
    Voip,
    /// Follow-me numbers, routed to wherever the subscriber is.
    PersonalNumber,
    /// Paging services.
    Pager,
    /// Direct access to voicemail boxes.
    Voicemail,
    /// Not a known range: never the kind of a valid number; used for short codes.
    Unknown,
}

impl NumberKind {
    /// The configuration spelling, e.g. `premium_rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::FixedLine => "fixed_line",
            Self::FixedLineOrMobile => "fixed_line_or_mobile",
            Self::TollFree => "toll_free",
            Self::Uan => "uan",
            Self::SharedCost => "shared_cost",
            Self::PremiumRate => "premium_rate",
            Self::Voip => "voip",
            Self::PersonalNumber => "personal_number",
            Self::Pager => "pager",
            Self::Voicemail => "voicemail",
            Self::Unknown => "unknown",
        }
    }

    /// The words used in refusal reasons, e.g. `premium-rate`.
    pub(crate) fn human(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::FixedLine => "fixed-line",
            Self::FixedLineOrMobile => "fixed-line or mobile",
            Self::TollFree => "toll-free",
            Self::Uan => "UAN",
            Self::SharedCost => "shared-cost",
            Self::PremiumRate => "premium-rate",
            Self::Voip => "VoIP",
            Self::PersonalNumber => "personal-number",
            Self::Pager => "pager",
            Self::Voicemail => "voicemail",
            Self::Unknown => "unclassified",
        }
    }
}

impl fmt::Display for NumberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[numbers]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumbersConfig {
    /// Region numbers are dialled from (national prefix, `00`, country code): ISO code.
    pub region: String,
    /// How the checked number is written toward the carrier.
    pub output_format: OutputFormat,
    /// Number types that may be called; every other type is refused.
    pub allowed_types: Vec<NumberKind>,
    /// ISO regions; `001` stands for all non-geographic codes (+800, +870, +881, +882,
    /// +883...: satellite and international networks, a classic fraud destination).
    pub allowed_countries: Vec<String>,
    /// Matched on the E.164 form, `+` optional: `+97190`.
    pub blocked_prefixes: Vec<String>,
    /// Matched on the E.164 form; empty means no allow-list. When set, a number must
    /// match one of them as well as pass every other rule.
    pub allowed_prefixes: Vec<String>,
    /// Digits as dialled; passed on unchanged when `allow_emergency`. Also recognised
    /// behind the home country code (`+971999`, `00971999`), sent as the bare code.
    pub emergency_numbers: Vec<String>,
    /// Defaults to `true`: a PBX trunk is usually the site's only way out, and a
    /// gateway that refuses 999 can cost a life, while an emergency call costs
    /// the customer nothing and is no toll-fraud risk. Set to `false` only for a trunk
    /// that is known not to be the emergency route.
    pub allow_emergency: bool,
    /// Digits as dialled; passed on unchanged when `allow_short_codes`.
    pub short_codes: Vec<String>,
    /// Defaults to `false`: short codes can be charged services.
    pub allow_short_codes: bool,
}

impl Default for NumbersConfig {
    fn default() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        NumbersConfig {
            region: "AE".to_owned(),
            output_format: OutputFormat::E164,
            allowed_types: vec![
                NumberKind::Mobile,
                NumberKind::FixedLine,
                NumberKind::TollFree,
                NumberKind::Uan,
                NumberKind::SharedCost,
            ],
            allowed_countries: strings(&["AE"]),
            blocked_prefixes: Vec::new(),
            allowed_prefixes: Vec::new(),
            // Police, ambulance, civil defence, coast guard, electricity and water
            // emergencies, and the GSM emergency number.
            emergency_numbers: strings(&["999", "998", "997", "996", "991", "112"]),
            allow_emergency: true,
            // Police non-emergency line.
            short_codes: strings(&["901"]),
            allow_short_codes: false,
        }
    }
}

/// A per-trunk `[trunks.numbers]` table: any field set replaces the section's.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumbersOverride {
    /// This trunk's `region`, instead of the section's.
    pub region: Option<String>,
    /// This trunk's `output_format`, instead of the section's.
    pub output_format: Option<OutputFormat>,
    /// This trunk's `allowed_types`, instead of the section's.
    pub allowed_types: Option<Vec<NumberKind>>,
    /// This trunk's `allowed_countries`, instead of the section's.
    pub allowed_countries: Option<Vec<String>>,
    /// This trunk's `blocked_prefixes`, instead of the section's.
    pub blocked_prefixes: Option<Vec<String>>,
    /// This trunk's `allowed_prefixes`, instead of the section's.
    pub allowed_prefixes: Option<Vec<String>>,
    /// This trunk's `emergency_numbers`, instead of the section's.
    pub emergency_numbers: Option<Vec<String>>,
    /// This trunk's `allow_emergency`, instead of the section's.
    pub allow_emergency: Option<bool>,
    /// This trunk's `short_codes`, instead of the section's.
    pub short_codes: Option<Vec<String>>,
    /// This trunk's `allow_short_codes`, instead of the section's.
    pub allow_short_codes: Option<bool>,
}

/// Why a prefix is unusable, if it is.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    let digits = prefix.strip_prefix('+').unwrap_or(prefix);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        Some("a prefix is digits with an optional leading +, e.g. \"+97190\"")
    } else if digits.starts_with('0') {
        Some("prefixes are matched on the E.164 form (+971...), so one starting with 0 never matches")
    } else if digits.len() > 15 {
        Some("longer than any E.164 number")
    } else {
        None
    }
}

/// Why a region code is unusable, if it is (`allow_non_geographic` for "001").
fn region_problem(region: &str, allow_non_geographic: bool) -> Option<String> {
    let known = if region == NON_GEOGRAPHIC {
        allow_non_geographic
    } else {
        region.parse::<Id>().is_ok() && DATABASE.by_id(region).is_some()
    };
    if known {
        return None;
    }
    let upper = region.to_ascii_uppercase();
    Some(
        if upper != region && region_problem(&upper, allow_non_geographic).is_none() {
            format!("unknown region {region:?}: region codes are upper case ({upper:?})")
        } else if allow_non_geographic {
            format!("unknown region {region:?}: use ISO 3166 codes such as \"AE\", or \"001\" for non-geographic numbers")
        } else {
            format!("unknown region {region:?}: use an ISO 3166 code such as \"AE\"")
        },
    )
}

impl NumbersConfig {
    /// This configuration with every field the override sets replaced.
    pub fn with_override(&self, o: &NumbersOverride) -> NumbersConfig {
        fn pick<T: Clone>(base: &T, over: &Option<T>) -> T {
            over.as_ref().unwrap_or(base).clone()
        }
        NumbersConfig {
            region: pick(&self.region, &o.region),
            output_format: pick(&self.output_format, &o.output_format),
            allowed_types: pick(&self.allowed_types, &o.allowed_types),
            allowed_countries: pick(&self.allowed_countries, &o.allowed_countries),
            blocked_prefixes: pick(&self.blocked_prefixes, &o.blocked_prefixes),
            allowed_prefixes: pick(&self.allowed_prefixes, &o.allowed_prefixes),
            emergency_numbers: pick(&self.emergency_numbers, &o.emergency_numbers),
            allow_emergency: pick(&self.allow_emergency, &o.allow_emergency),
            short_codes: pick(&self.short_codes, &o.short_codes),
            allow_short_codes: pick(&self.allow_short_codes, &o.allow_short_codes),
        }
    }

    /// Semantic checks after deserialisation: unknown region, a prefix that is not
    /// `+`/digits, ...; each error = (key path relative to the section, e.g.
    /// `"allowed_countries[1]"`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Some(problem) = region_problem(&self.region, false) {
            errors.push(("region".to_owned(), problem));
        }
        for (i, c) in self.allowed_countries.iter().enumerate() {
            if let Some(problem) = region_problem(c, true) {
                errors.push((format!("allowed_countries[{i}]"), problem));
            }
        }
        for (key, list) in [
            ("blocked_prefixes", &self.blocked_prefixes),
            ("allowed_prefixes", &self.allowed_prefixes),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Some(problem) = prefix_problem(p) {
                    errors.push((format!("{key}[{i}]"), problem.to_owned()));
                }
            }
        }
        for (key, list) in [
            ("emergency_numbers", &self.emergency_numbers),
            ("short_codes", &self.short_codes),
        ] {
            for (i, code) in list.iter().enumerate() {
                if !(2..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
                    let msg = "2 to 8 digits, as dialled (no +, no separators)";
                    errors.push((format!("{key}[{i}]"), msg.to_owned()));
                }
            }
        }
        for (i, code) in self.short_codes.iter().enumerate() {
            if self.emergency_numbers.contains(code) {
                let msg = format!("{code:?} is also listed in emergency_numbers");
                errors.push((format!("short_codes[{i}]"), msg));
            }
        }
        errors
    }
}

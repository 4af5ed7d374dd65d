//! Number validity and type, decided on libphonenumber metadata with full matches.
//!
//! This module owns the question "is this national significant number (NSN) a real
//! number of that country, and what kind". `phonenumber` 0.3 answers it too, but
//! loosely: its pattern check only requires a match that *starts* at the first digit
//! (so `+971 400 123 456 789`, a toll-free range with three digits too many, comes out
//! valid), it picks the region of a shared country code with that same prefix test, and
//! it drops leading zeros before typing (so Italian fixed lines come out invalid). Here
//! every pattern must match the whole NSN, as libphonenumber itself requires, and the
//! type order is libphonenumber's, premium rate first. A number is valid exactly when
//! its type is known.

use crate::config::{NumberKind, NON_GEOGRAPHIC};
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};

/// True when `pattern` (a metadata pattern, written for whitespace-insensitive mode)
/// matches all of `nsn`.
///
/// The anchored copy is compiled once into the crate's own regex cache, the same cache
/// and lock every `phonenumber` pattern goes through, so no second cache exists and
/// nothing here needs the `regex` crate by name.
fn matches_whole(pattern: &str, nsn: &str) -> bool {
    let source = format!("^(?x:{pattern})$");
    let cache = DATABASE.cache();
    // A panic elsewhere while the lock was held leaves the cache itself intact: keep going.
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .compile(&source)
        .map(|re| re.is_match(nsn))
        .unwrap_or(false)
}

/// Whether `desc` describes `nsn`: a possible length (the descriptor's own, or the
/// general one when it lists none) and a whole-number pattern match.
fn describes(desc: &Descriptor, general: &Descriptor, nsn: &str) -> bool {
    let lengths = if desc.possible_length().is_empty() {
        general.possible_length()
    } else {
        desc.possible_length()
    };
    let len = u16::try_from(nsn.len()).unwrap_or(u16::MAX);
    if !lengths.is_empty() && !lengths.contains(&len) {
        return false;
    }
    matches_whole(desc.national_number().as_str(), nsn)
}

/// The type of `nsn` in `meta`'s numbering plan; `Unknown` means not a valid number.
pub(crate) fn classify(meta: &Metadata, nsn: &str) -> NumberKind {
    let d = meta.descriptors();
    let general = d.general();
    if !describes(general, general, nsn) {
        return NumberKind::Unknown;
    }
    let is = |desc: Option<&Descriptor>| desc.is_some_and(|desc| describes(desc, general, nsn));
    // libphonenumber's order: the costly and special ranges are looked for before the
    // geographic ones, so a range listed twice is reported as the more expensive kind.
    let ordered = [
        (d.premium_rate(), NumberKind::PremiumRate),
        (d.toll_free(), NumberKind::TollFree),
        (d.shared_cost(), NumberKind::SharedCost),
        (d.voip(), NumberKind::Voip),
        (d.personal_number(), NumberKind::PersonalNumber),
        (d.pager(), NumberKind::Pager),
        (d.uan(), NumberKind::Uan),
        (d.voicemail(), NumberKind::Voicemail),
    ];
    if let Some((_, kind)) = ordered.into_iter().find(|(desc, _)| is(*desc)) {
        return kind;
    }
    let same_pattern = match (d.fixed_line(), d.mobile()) {
        (Some(f), Some(m)) => f.national_number().as_str() == m.national_number().as_str(),
        _ => false,
    };
    if is(d.fixed_line()) {
        if same_pattern || is(d.mobile()) {
            return NumberKind::FixedLineOrMobile;
        }
        return NumberKind::FixedLine;
    }
    if !same_pattern && is(d.mobile()) {
        return NumberKind::Mobile;
    }
    NumberKind::Unknown
}

/// The numbering plans that share country code `cc`, the main one first.
pub(crate) fn plans_for_code(cc: u16) -> Vec<&'static Metadata> {
    let db: &'static phonenumber::metadata::Database = &DATABASE;
    match db.region(&cc) {
        // Non-geographic codes each have their own plan under the one id "001", so
        // they can only be found by code.
        Some(ids) if ids.first() == Some(&NON_GEOGRAPHIC) => db.by_code(&cc).unwrap_or_default(),
        Some(ids) => ids.into_iter().filter_map(|id| db.by_id(id)).collect(),
        None => Vec::new(),
    }
}

/// The plan `nsn` belongs to among those sharing `cc` (libphonenumber's rule: the first
/// whose leading digits match, or, for a plan without leading digits, that knows the
/// number), and its type there.
pub(crate) fn resolve(cc: u16, nsn: &str) -> Option<(&'static Metadata, NumberKind)> {
    let plans = plans_for_code(cc);
    if let [only] = plans.as_slice() {
        return Some((*only, classify(only, nsn)));
    }
    for meta in plans {
        match meta.leading_digits() {
            Some(lead) => {
                if lead.find(nsn).is_some_and(|m| m.start() == 0) {
                    return Some((meta, classify(meta, nsn)));
                }
            }
            None => {
                let kind = classify(meta, nsn);
                if kind != NumberKind::Unknown {
                    return Some((meta, kind));
                }
            }
        }
    }
    None
}

/// The shortest and longest NSN any number type of `meta` allows, when it says.
pub(crate) fn length_range(meta: &Metadata) -> Option<(usize, usize)> {
    let d = meta.descriptors();
    let all = [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    let lengths = all
        .into_iter()
        .flatten()
        .flat_map(|desc| desc.possible_length().iter().copied());
    let (min, max) = lengths.fold((u16::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
    (min <= max).then_some((usize::from(min), usize::from(max)))
}

/// How a plan is named in messages: its ISO region, or `+CC` for non-geographic codes.
pub(crate) fn plan_label(meta: &Metadata) -> String {
    if meta.id() == NON_GEOGRAPHIC {
        format!("+{}", meta.country_code())
    } else {
        meta.id().to_owned()
    }
}

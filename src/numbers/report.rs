//! The `trunkgate number` admin command's output.
//!
//! This module owns turning verdicts into the lines an admin reads when testing a dial
//! plan: one line per input with the input (quoted, so spaces and odd characters are
//! visible), the canonical form in the configured output format, the number type and
//! region, and the verdict, `allowed` or `refused <SIP code> <reason>`. Columns are
//! aligned across the inputs; a field that does not apply is `-`.

use super::policy::{NumberPolicy, RefusalCause, Special, Verdict};
use std::io::{self, Write};

/// One line's fields: input, canonical, type, region, verdict.
fn row(policy: &NumberPolicy, input: &str) -> ([String; 4], String, bool) {
    let dash = || "-".to_owned();
    let quoted = format!("{input:?}");
    match policy.check(input) {
        Verdict::Allowed(d) => {
            let kind = match d.special {
                Some(Special::Emergency) => "emergency".to_owned(),
                Some(Special::ShortCode) => "short_code".to_owned(),
                None => d.kind.to_string(),
            };
            (
                [quoted, d.canonical, kind, d.region],
                "allowed".to_owned(),
                true,
            )
        }
        Verdict::Refused(r) => {
            let kind = match (r.kind, r.cause) {
                (Some(k), _) => k.to_string(),
                (None, RefusalCause::EmergencyNotAllowed) => "emergency".to_owned(),
                (None, RefusalCause::ShortCodeNotAllowed) => "short_code".to_owned(),
                (None, _) => dash(),
            };
            let fields = [
                quoted,
                r.canonical.unwrap_or_else(dash),
                kind,
                r.region.unwrap_or_else(dash),
            ];
            (fields, format!("refused {} {}", r.code, r.reason), false)
        }
    }
}

/// Prints one line per input; returns true when every input is allowed.
pub fn report(policy: &NumberPolicy, inputs: &[String], out: &mut dyn Write) -> io::Result<bool> {
    let rows: Vec<_> = inputs.iter().map(|i| row(policy, i)).collect();
    let mut widths = [0usize; 4];
    for (fields, _, _) in &rows {
        for (w, f) in widths.iter_mut().zip(fields) {
            *w = (*w).max(f.chars().count());
        }
    }
    let mut all_allowed = true;
    for (fields, verdict, allowed) in &rows {
        for (f, w) in fields.iter().zip(widths) {
            write!(out, "{f:<w$}  ")?;
        }
        writeln!(out, "{verdict}")?;
        all_allowed &= allowed;
    }
    Ok(all_allowed)
}

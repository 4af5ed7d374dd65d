//! From what a PBX wrote in a SIP header to one validated, canonical number.
//!
//! This module owns the text side of numbers: taking the user part out of `sip:`,
//! `sips:` and `tel:` URIs and of name-addr header values (`"Alice" <sip:...>;tag=x`),
//! cleaning visual separators, deciding how the digits are read (national, `+` or `00`
//! international, or the home country code dialled without `+`), and formatting the
//! result. Only digits, one leading `+` and the separators ` - . ( )` are accepted:
//! `phonenumber` itself would read letters as keypad digits and `x...` as an extension,
//! which is not something a trunk should guess about. Validity and type come from
//! [`super::classify`]; nothing invalid ever leaves this module as a number.

use super::classify;
use crate::config::{NumberKind, OutputFormat};
use phonenumber::country::{Id, Source};
use phonenumber::metadata::{Metadata, DATABASE};
use phonenumber::{Mode, PhoneNumber};
use std::borrow::Cow;

/// Longest input looked at, in bytes: header values past this are refused unread.
const MAX_INPUT: usize = 512;
/// Most digits a dialled number can have: 15 (E.164) plus a long international prefix.
const MAX_DIGITS: usize = 20;

/// Why a dialled string is not a usable number (a 484 when it is a destination).
/// The messages never quote the input, so they are safe in a SIP Warning header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("empty number")]
    Empty,
    #[error("not a SIP or tel URI")]
    UnsupportedScheme,
    #[error("malformed address")]
    Malformed,
    #[error("no user part in the URI")]
    NoUserPart,
    #[error("not a number: only digits, a leading + and visual separators are accepted")]
    NotANumber,
    #[error("number too short")]
    TooShort,
    #[error("number too long")]
    TooLong,
    #[error("unknown country code")]
    UnknownCountryCode,
    /// The digits fit no number range of that country (or `+CC` plan).
    #[error("not a valid {0} number")]
    Invalid(String),
}

/// The number-bearing part of an address: the URI user part or a bare number, with the
/// `phone-context` of a local tel number when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserPart<'a> {
    pub number: Cow<'a, str>,
    pub context: Option<Cow<'a, str>>,
}

/// A cleaned dialled string: whether it began with `+`, and its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dialled {
    pub plus: bool,
    pub digits: String,
}

/// A valid number: country code, national significant number, type and plan.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub number: PhoneNumber,
    pub cc: u16,
    pub nsn: String,
    pub kind: NumberKind,
    /// ISO region, or "001" for non-geographic codes.
    pub region: String,
}

/// Splits a header value into its comma-separated values, ignoring commas inside
/// quoted display names and `<...>`.
pub(crate) fn header_values(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped, mut angle) = (0, false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// The URI of one header value and the header parameters after it: `"A" <uri>;p=1`
/// gives (`uri`, `;p=1`); a bare addr-spec or number is returned whole.
pub(crate) fn split_name_addr(value: &str) -> Result<(&str, &str), NormalizeError> {
    let value = value.trim();
    let mut rest = value;
    let mut offset = 0;
    if let Some(quoted) = value.strip_prefix('"') {
        // Skip the quoted display name so a '<' inside it is not taken for the URI.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            '"' => Some(i),
            _ => None,
        });
        let end = end.ok_or(NormalizeError::Malformed)?;
        offset = end + 2;
        rest = &value[offset..];
    }
    match rest.find('<') {
        Some(open) => {
            let inner = &value[offset + open + 1..];
            let close = inner.find('>').ok_or(NormalizeError::Malformed)?;
            Ok((inner[..close].trim(), &inner[close + 1..]))
        }
        None if offset > 0 => Err(NormalizeError::Malformed),
        None => Ok((rest, "")),
    }
}

/// The user part of a URI (or a bare number), percent-decoded, with its phone-context.
pub(crate) fn user_part(uri: &str) -> Result<UserPart<'_>, NormalizeError> {
    let uri = uri.trim();
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, uri),
    };
    let subscriber = match scheme {
        Some(s) if s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips") => {
            let (user, _host) = rest.split_once('@').ok_or(NormalizeError::NoUserPart)?;
            // "user:password@host": the password is not part of the number.
            user.split_once(':').map_or(user, |(user, _)| user)
        }
        Some(s) if s.eq_ignore_ascii_case("tel") => rest,
        Some(_) => return Err(NormalizeError::UnsupportedScheme),
        // A bare number, maybe written as "number@host" by a sloppy client.
        None => rest.split_once('@').map_or(rest, |(user, _)| user),
    };
    // telephone-subscriber: number;param=value;... (isub, ext, postd are not routed
    // and are dropped; phone-context says which country a local number belongs to).
    let mut parts = subscriber.split(';');
    let number = parts.next().unwrap_or_default();
    let context = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("phone-context"))
        .map(|(_, v)| percent_decode(v.trim()))
        .transpose()?;
    Ok(UserPart {
        number: percent_decode(number)?,
        context,
    })
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<Cow<'_, str>, NormalizeError> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |at: usize| {
                bytes
                    .get(at)
                    .and_then(|b| char::from(*b).to_digit(16))
                    .ok_or(NormalizeError::Malformed)
            };
            // Two hex digits each below 16: the value fits a byte.
            out.push(u8::try_from(hex(i + 1)? * 16 + hex(i + 2)?).unwrap_or(0));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| NormalizeError::Malformed)
}

/// Takes the number-bearing part out of a bare number, a URI or a header value (the
/// first value of a list).
pub(crate) fn extract(input: &str) -> Result<UserPart<'_>, NormalizeError> {
    if input.len() > MAX_INPUT {
        return Err(NormalizeError::TooLong);
    }
    let first = header_values(input)
        .into_iter()
        .next()
        .ok_or(NormalizeError::Empty)?;
    let (uri, _params) = split_name_addr(first)?;
    user_part(uri)
}

/// Strips visual separators; refuses anything but digits and one leading `+`.
pub(crate) fn clean(number: &str) -> Result<Dialled, NormalizeError> {
    let mut plus = false;
    let mut digits = String::with_capacity(number.len());
    for c in number.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\t' | '-' | '.' | '(' | ')' => {}
            '+' if !plus && digits.is_empty() => plus = true,
            _ => return Err(NormalizeError::NotANumber),
        }
    }
    if digits.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if digits.len() > MAX_DIGITS {
        return Err(NormalizeError::TooLong);
    }
    Ok(Dialled { plus, digits })
}

/// The main region of country code `cc`, when it is a geographic one.
fn main_region(cc: u16) -> Option<Id> {
    DATABASE
        .region(&cc)
        .and_then(|ids| ids.first().and_then(|id| id.parse().ok()))
}

/// Which region a local number is dialled in: `home`, or the country of a
/// `phone-context=+CC...` (a domain-name context means "this PBX", i.e. home). Digits
/// after the country code (`+1-212`) are not used: a number that needs them is then
/// invalid and refused rather than guessed at.
fn dialling_region(home: Id, context: Option<&str>) -> Result<Id, NormalizeError> {
    let Some(digits) = context.and_then(|c| c.trim().strip_prefix('+')) else {
        return Ok(home);
    };
    let digits: String = digits.chars().filter(char::is_ascii_digit).collect();
    // Country codes are prefix-free: the first known one is the one.
    (1..=digits.len().min(3))
        .filter_map(|len| digits[..len].parse().ok())
        .find_map(main_region)
        .ok_or(NormalizeError::UnknownCountryCode)
}

fn parse_error(e: phonenumber::ParseError) -> NormalizeError {
    use phonenumber::ParseError as P;
    match e {
        P::NoNumber | P::TooShortNsn | P::TooShortAfterIdd => NormalizeError::TooShort,
        P::TooLong => NormalizeError::TooLong,
        P::InvalidCountryCode => NormalizeError::UnknownCountryCode,
        P::MalformedInteger(_) => NormalizeError::NotANumber,
    }
}

/// Validates and classifies a parsed number; `Err` explains why it is not valid.
fn validate(number: PhoneNumber) -> Result<Parsed, NormalizeError> {
    let cc = number.code().value();
    let nsn = number.national().to_string();
    let plans = classify::plans_for_code(cc);
    let Some(main) = plans.first() else {
        return Err(NormalizeError::UnknownCountryCode);
    };
    match classify::resolve(cc, &nsn) {
        Some((meta, kind)) if kind != NumberKind::Unknown => Ok(Parsed {
            number,
            cc,
            nsn,
            kind,
            region: meta.id().to_owned(),
        }),
        found => {
            let meta = found.map_or(*main, |(meta, _)| meta);
            Err(match classify::length_range(meta) {
                Some((min, _)) if nsn.len() < min => NormalizeError::TooShort,
                Some((_, max)) if nsn.len() > max => NormalizeError::TooLong,
                _ => NormalizeError::Invalid(classify::plan_label(meta)),
            })
        }
    }
}

fn parse_international(digits: &str) -> Result<Parsed, NormalizeError> {
    validate(phonenumber::parse(None, format!("+{digits}")).map_err(parse_error)?)
}

/// Reads cleaned digits as a number, `home` being the region dialled from.
///
/// `+` and the region's international prefix (`00` for AE) mean international. Other
/// digits are read nationally first (national prefix optional: `0501234567` and
/// `501234567` are the same), and only when that is not a valid number and they start
/// with the home country code are they read as international without the `+`
/// (`971501234567`). National first is libphonenumber's own precedence and keeps
/// digits that are valid both ways local: `97180012` is the Fujairah line
/// 09 718 0012, not the toll-free +971 80012.
pub(crate) fn parse(
    dialled: &Dialled,
    home: Id,
    context: Option<&str>,
) -> Result<Parsed, NormalizeError> {
    if dialled.plus {
        return parse_international(&dialled.digits);
    }
    let region = dialling_region(home, context)?;
    let number = phonenumber::parse(Some(region), &dialled.digits).map_err(parse_error)?;
    let cc = number.code().value();
    let national = match number.code().source() {
        Source::Plus | Source::Idd => return validate(number),
        Source::Default => validate(number),
        // The crate took a leading country code off by itself; read the digits as a
        // whole national number first all the same.
        Source::Number => parse_international(&format!("{cc}{}", dialled.digits)),
    };
    if national.is_err() && dialled.digits.starts_with(&cc.to_string()) {
        if let Ok(international) = parse_international(&dialled.digits) {
            return Ok(international);
        }
    }
    national
}

/// Full normalisation of a number-bearing string (bare number, URI or header value)
/// for use as a number, without any short-code handling.
pub(crate) fn normalize(input: &str, home: Id) -> Result<Parsed, NormalizeError> {
    let part = extract(input)?;
    let dialled = clean(&part.number)?;
    parse(&dialled, home, part.context.as_deref())
}

/// The international prefix to write before a foreign number in national output
/// (`00` for AE), when the plan has a plain one.
pub(crate) fn idd(home: &Metadata) -> Option<&str> {
    home.preferred_international_prefix().or_else(|| {
        home.international_prefix()
            .map(|re| re.as_str().trim())
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl Parsed {
    /// `+` country code, national number.
    pub fn e164(&self) -> String {
        format!("+{}{}", self.cc, self.nsn)
    }

    /// The number in `format`, `home` being the plan of the region dialled from.
    /// National form is only meaningful for the home country code; foreign numbers get
    /// the home international prefix instead (`0044...` from AE).
    pub fn format(&self, format: OutputFormat, home: &Metadata) -> String {
        match format {
            OutputFormat::E164 => self.e164(),
            OutputFormat::Digits => format!("{}{}", self.cc, self.nsn),
            OutputFormat::National if self.cc == home.country_code() => {
                use std::fmt::Write;
                let mut text = String::new();
                // Written with `write!` rather than `to_string()`: the crate's Display
                // may return an error, which `to_string()` would turn into a panic.
                match write!(text, "{}", self.number.format().mode(Mode::National)) {
                    Ok(()) => text.retain(|c| c.is_ascii_digit()),
                    Err(_) => {
                        text = format!("{}{}", home.national_prefix().unwrap_or(""), self.nsn)
                    }
                }
                text
            }
            OutputFormat::National => match idd(home) {
                Some(idd) => format!("{idd}{}{}", self.cc, self.nsn),
                None => self.e164(),
            },
        }
    }
}

/// Loads the `phonenumber` metadata and compiles the patterns the default (AE) policy
/// uses, so the first call does not pay for it (about a third of a second in a debug
/// build). Call once at daemon start; later calls are cheap.
pub fn warm_up() {
    if let Some(ae) = DATABASE.by_id("AE") {
        for n in [
            "+971501234567",
            "043456789",
            "800123",
            "00971501234567",
            "+447911123456",
        ] {
            if let Ok(parsed) = normalize(n, Id::AE) {
                for f in [OutputFormat::E164, OutputFormat::National] {
                    let _ = parsed.format(f, ae);
                }
            }
        }
    }
}

/// Compiles the patterns of one more home region (`NumberPolicy::new` calls it).
pub(crate) fn warm_region(meta: &Metadata) {
    let examples = [meta.descriptors().fixed_line(), meta.descriptors().mobile()];
    for example in examples.into_iter().flatten().filter_map(|d| d.example()) {
        if let Ok(parsed) = parse_international(&format!("{}{example}", meta.country_code())) {
            let _ = parsed.format(OutputFormat::National, meta);
        }
    }
}

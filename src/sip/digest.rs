//! Server side of SIP/HTTP digest authentication (RFC 2617, RFC 7616, RFC 8760 as used by
//! RFC 3261): parsing `Authorization` / `Proxy-Authorization` values, computing and checking the
//! `response`, and formatting the `WWW-Authenticate` / `Proxy-Authenticate` challenge.
//!
//! Pure logic only. Nonce issuing and `nc` replay tracking live in `sip::nonce`; deciding which
//! realm, nonce and user are acceptable is the caller's job. Only `MD5` and `SHA-256` with no qop
//! or `qop=auth` are supported: `-sess` variants need per-session state and `auth-int` needs the
//! message body, neither of which SIP trunks in the field actually use.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

/// Header values come from the network unauthenticated, so every parameter value is capped to
/// keep parsing and hashing work bounded; no legitimate value is anywhere near this long.
pub const MAX_VALUE_LEN: usize = 1024;

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617), what most PBXs use.
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// `"MD5"` or `"SHA-256"`, ASCII case-insensitive. Everything else, including the `-sess`
    /// variants and `SHA-512-256`, is `None`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The token as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Length of the lowercase hex digest, used to reject an HA1 of the wrong algorithm.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Hashes `parts` joined with `:` without building the joined string first.
    fn hex_digest(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut hasher = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    hasher.update(b":");
                }
                hasher.update(part.as_bytes());
            }
            hex::encode(hasher.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// Digest credentials as received in an `Authorization` / `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The digest username (a trunk's `auth_username`).
    pub username: String,
    /// The realm the client hashed with.
    pub realm: String,
    /// The nonce of the challenge being answered.
    pub nonce: String,
    /// The digest URI the client hashed (normally the Request-URI).
    pub uri: String,
    /// As sent (hex); compared case-insensitively.
    pub response: String,
    /// `Md5` when the parameter is absent, as RFC 2617 specifies.
    pub algorithm: Algorithm,
    /// E.g. `"auth"`, whether it was quoted or not on the wire.
    pub qop: Option<String>,
    /// Exactly as sent (normally 8 hex digits such as `"0000000a"`); hashed as sent.
    pub nc: Option<String>,
    /// The client's nonce, present with a qop.
    pub cnonce: Option<String>,
    /// Echoed from the challenge, when it had one.
    pub opaque: Option<String>,
}

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The header's scheme is not `Digest`.
    #[error("authorization scheme is not Digest")]
    NotDigest,
    /// The header cannot be read or lacks a required parameter; says what is wrong.
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    /// An algorithm other than MD5 or SHA-256 (the `-sess` variants included).
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// Well-formed but `response=""`: what a scanner probing for unprotected users sends.
    #[error("empty digest response")]
    EmptyResponse,
}

impl Credentials {
    /// `nc` as a number (hex), `None` when absent or not 1..=8 hex digits.
    pub fn nc_value(&self) -> Option<u32> {
        let nc = self.nc.as_deref()?;
        // from_str_radix alone would also accept a leading '+'.
        if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }
}

/// Parses the value of an `Authorization` / `Proxy-Authorization` header
/// (`Digest username="bob", realm=...`).
///
/// # Errors
/// `NotDigest` for another scheme; `UnsupportedAlgorithm` for an algorithm other than MD5 or
/// SHA-256; `Malformed` for bad syntax, a duplicated known parameter, a value over 1024 bytes, or
/// a missing or empty username, realm, nonce, uri or response. Unknown parameters are ignored.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let mut cur = Cursor { s: value, pos: 0 };
    cur.skip_lws();
    let scheme = cur.token();
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    if !(cur.at_end() || cur.at_lws()) {
        return Err(DigestError::Malformed("no whitespace after scheme"));
    }

    let mut fields = Fields::default();
    loop {
        cur.skip_lws();
        // RFC 2616 #rule lets list elements be empty, so stray commas are tolerated.
        if cur.eat(b',') {
            continue;
        }
        if cur.at_end() {
            break;
        }
        let name = cur.token();
        if name.is_empty() {
            return Err(DigestError::Malformed("expected parameter name"));
        }
        if name.len() > MAX_VALUE_LEN {
            return Err(DigestError::Malformed("parameter name too long"));
        }
        cur.skip_lws();
        if !cur.eat(b'=') {
            return Err(DigestError::Malformed("expected '=' after parameter name"));
        }
        cur.skip_lws();
        let value = cur.value()?;
        fields.set(name, value)?;
        cur.skip_lws();
        if !(cur.at_end() || cur.eat(b',')) {
            return Err(DigestError::Malformed("expected ',' between parameters"));
        }
    }
    fields.into_credentials()
}

/// HA1 = H(username:realm:password), lowercase hex.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex_digest(&[username, realm, password])
}

/// The response the client should have sent, lowercase hex. Without qop: H(HA1:nonce:HA2);
/// qop=auth: H(HA1:nonce:nc:cnonce:qop:HA2); HA2 = H(method:uri). `ha1_hex` is lowercased first.
///
/// # Errors
/// `UnsupportedAlgorithm` when `alg` differs from `creds.algorithm` (the stored HA1 is
/// for another algorithm); `Malformed` when `ha1_hex` is not a hex digest of `alg`'s length (so a
/// missing or empty stored secret can never be "matched"), when qop is not `auth`, or when
/// qop=auth comes without `nc` or `cnonce`.
pub fn expected_response(
    alg: Algorithm,
    ha1_hex: &str,
    method: &str,
    creds: &Credentials,
) -> Result<String, DigestError> {
    if alg != creds.algorithm {
        return Err(DigestError::UnsupportedAlgorithm);
    }
    if ha1_hex.len() != alg.hex_len() || !ha1_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::Malformed(
            "HA1 is not a hex digest of this algorithm",
        ));
    }
    let ha1 = ha1_hex.to_ascii_lowercase();
    let ha2 = alg.hex_digest(&[method, &creds.uri]);
    match creds.qop.as_deref() {
        None => Ok(alg.hex_digest(&[&ha1, &creds.nonce, &ha2])),
        Some("auth") => {
            let (Some(nc), Some(cnonce)) = (creds.nc.as_deref(), creds.cnonce.as_deref()) else {
                return Err(DigestError::Malformed("qop=auth without nc or cnonce"));
            };
            Ok(alg.hex_digest(&[&ha1, &creds.nonce, nc, cnonce, "auth", &ha2]))
        }
        Some(_) => Err(DigestError::Malformed("unsupported qop")),
    }
}

/// Whether `creds.response` matches the expected response for `method` and `ha1_hex`, compared
/// in constant time. qop other than `auth`, or qop=auth without a well-formed `nc` or without a
/// `cnonce`, is `false`.
///
/// This checks the hash only: the caller still has to check `realm`, the nonce (freshness), and
/// `nc` (replay) itself.
pub fn verify(creds: &Credentials, method: &str, ha1_hex: &str) -> bool {
    if creds.qop.is_some() && (creds.nc_value().is_none() || creds.cnonce.is_none()) {
        return false;
    }
    let Ok(expected) = expected_response(creds.algorithm, ha1_hex, method, creds) else {
        return false;
    };
    let got = creds.response.to_ascii_lowercase();
    got.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` header value:
/// `Digest realm="R", nonce="N", algorithm=MD5[, qop="auth"][, stale=true]`.
///
/// `realm` and `nonce` are quoted with `"` and `\` escaped; control characters (CR, LF, ...)
/// are dropped because a quoted-string cannot carry them and they would split the header.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, offer_qop: bool, stale: bool) -> String {
    let mut out = String::with_capacity(64 + realm.len() + nonce.len());
    out.push_str("Digest realm=");
    push_quoted(&mut out, realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, nonce);
    out.push_str(", algorithm=");
    out.push_str(alg.as_str());
    if offer_qop {
        out.push_str(", qop=\"auth\"");
    }
    if stale {
        out.push_str(", stale=true");
    }
    out
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3261 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Byte cursor over the header value. It only ever stops on ASCII bytes, so every slice it
/// takes lies on UTF-8 boundaries; slicing still goes through `get` so a bug cannot panic.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// CR and LF count as whitespace so a header that still carries line folding
    /// (RFC 3261 LWS) parses the same as an unfolded one.
    fn at_lws(&self) -> bool {
        matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n'))
    }

    fn skip_lws(&mut self) {
        while self.at_lws() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str, DigestError> {
        self.s
            .get(start..end)
            .ok_or(DigestError::Malformed("invalid character boundary"))
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_token_char) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn value(&mut self) -> Result<Cow<'a, str>, DigestError> {
        if self.eat(b'"') {
            self.quoted()
        } else {
            self.bare().map(Cow::Borrowed)
        }
    }

    /// Unquoted value. Deliberately wider than `token`: some user agents send things like
    /// `uri=sip:host` unquoted, and the value is covered by the hash anyway.
    fn bare(&mut self) -> Result<&'a str, DigestError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b',' => break,
                b'"' => return Err(DigestError::Malformed("stray quote in unquoted value")),
                b if b < 0x20 || b == 0x7f => {
                    return Err(DigestError::Malformed("control character in value"))
                }
                _ => {}
            }
            self.pos += 1;
            if self.pos - start > MAX_VALUE_LEN {
                return Err(DigestError::Malformed("parameter value too long"));
            }
        }
        if self.pos == start {
            return Err(DigestError::Malformed("empty unquoted value"));
        }
        self.slice(start, self.pos)
    }

    /// Body of a quoted-string, opening quote already consumed. Borrows unless escapes
    /// force a copy.
    fn quoted(&mut self) -> Result<Cow<'a, str>, DigestError> {
        let start = self.pos;
        let mut unescaped: Option<Vec<u8>> = None;
        loop {
            if self.pos - start > MAX_VALUE_LEN {
                return Err(DigestError::Malformed("parameter value too long"));
            }
            let Some(b) = self.peek() else {
                return Err(DigestError::Malformed("unterminated quoted string"));
            };
            match b {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return match unescaped {
                        None => self.slice(start, end).map(Cow::Borrowed),
                        Some(bytes) => String::from_utf8(bytes)
                            .map(Cow::Owned)
                            .map_err(|_| DigestError::Malformed("invalid UTF-8 in value")),
                    };
                }
                b'\\' => {
                    let escaped = self.s.as_bytes().get(self.pos + 1).copied();
                    // quoted-pair covers ASCII only, and an escaped CR/LF would smuggle a line
                    // break into whatever logs or echoes the value.
                    let c = match escaped {
                        Some(c) if c.is_ascii() && c != b'\r' && c != b'\n' => c,
                        Some(_) => return Err(DigestError::Malformed("invalid escape")),
                        None => return Err(DigestError::Malformed("unterminated quoted string")),
                    };
                    let buf = unescaped.get_or_insert_with(|| {
                        self.s
                            .as_bytes()
                            .get(start..self.pos)
                            .unwrap_or(&[])
                            .to_vec()
                    });
                    buf.push(c);
                    self.pos += 2;
                }
                b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                    return Err(DigestError::Malformed("control character in value"));
                }
                _ => {
                    if let Some(buf) = unescaped.as_mut() {
                        buf.push(b);
                    }
                    self.pos += 1;
                }
            }
        }
    }
}

/// Parameters collected so far; tracks duplicates of the ones we use.
#[derive(Default)]
struct Fields {
    username: Option<String>,
    realm: Option<String>,
    nonce: Option<String>,
    uri: Option<String>,
    response: Option<String>,
    algorithm: Option<Algorithm>,
    qop: Option<String>,
    nc: Option<String>,
    cnonce: Option<String>,
    opaque: Option<String>,
}

impl Fields {
    fn set(&mut self, name: &str, value: Cow<'_, str>) -> Result<(), DigestError> {
        const NAMES: [&str; 10] = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
        ];
        let Some(known) = NAMES.iter().find(|n| n.eq_ignore_ascii_case(name)) else {
            // Unknown parameters (userhash, auth-param extensions, ...) are ignored as RFC 7616
            // requires.
            return Ok(());
        };
        if *known == "algorithm" {
            if self.algorithm.is_some() {
                return Err(DigestError::Malformed("duplicate parameter"));
            }
            self.algorithm =
                Some(Algorithm::parse(&value).ok_or(DigestError::UnsupportedAlgorithm)?);
            return Ok(());
        }
        let slot = match *known {
            "username" => &mut self.username,
            "realm" => &mut self.realm,
            "nonce" => &mut self.nonce,
            "uri" => &mut self.uri,
            "response" => &mut self.response,
            "qop" => &mut self.qop,
            "nc" => &mut self.nc,
            "cnonce" => &mut self.cnonce,
            _ => &mut self.opaque,
        };
        if slot.is_some() {
            return Err(DigestError::Malformed("duplicate parameter"));
        }
        *slot = Some(value.into_owned());
        Ok(())
    }

    fn into_credentials(self) -> Result<Credentials, DigestError> {
        fn required(v: Option<String>, what: &'static str) -> Result<String, DigestError> {
            match v {
                Some(s) if !s.is_empty() => Ok(s),
                _ => Err(DigestError::Malformed(what)),
            }
        }
        Ok(Credentials {
            username: required(self.username, "missing or empty username")?,
            realm: required(self.realm, "missing or empty realm")?,
            nonce: required(self.nonce, "missing or empty nonce")?,
            uri: required(self.uri, "missing or empty uri")?,
            response: match self.response {
                Some(r) if r.is_empty() => return Err(DigestError::EmptyResponse),
                r => required(r, "missing response")?,
            },
            algorithm: self.algorithm.unwrap_or(Algorithm::Md5),
            qop: self.qop,
            nc: self.nc,
            cnonce: self.cnonce,
            opaque: self.opaque,
        })
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;

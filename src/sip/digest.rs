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
const MAX_VALUE_LEN: usize = 1024;

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
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
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// As sent (hex); compared case-insensitively.
    pub response: String,
    /// `Md5` when the parameter is absent, as RFC 2617 specifies.
    pub algorithm: Algorithm,
    /// E.g. `"auth"`, whether it was quoted or not on the wire.
    pub qop: Option<String>,
    /// Exactly as sent (normally 8 hex digits such as `"0000000a"`); hashed as sent.
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("authorization scheme is not Digest")]
    NotDigest,
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
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
            response: required(self.response, "missing or empty response")?,
            algorithm: self.algorithm.unwrap_or(Algorithm::Md5),
            qop: self.qop,
            nc: self.nc,
            cnonce: self.cnonce,
            opaque: self.opaque,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// One row of shared/testdata/digest-vectors.md.
    struct Vector {
        alg: Algorithm,
        user: &'static str,
        realm: &'static str,
        password: &'static str,
        method: &'static str,
        uri: &'static str,
        nonce: &'static str,
        qop: Option<(&'static str, &'static str)>, // (nc, cnonce); qop is always "auth"
        response: &'static str,
    }

    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const SIP_NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

    const VECTORS: [Vector; 6] = [
        Vector {
            alg: Algorithm::Md5,
            user: "Mufasa",
            realm: "testrealm@host.com",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: SIP_NONCE,
            qop: Some(("00000001", "0a4f113b")),
            response: "6629fae49393a05397450978507c4ef1",
        },
        Vector {
            alg: Algorithm::Md5,
            user: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: RFC7616_NONCE,
            qop: Some(("00000001", RFC7616_CNONCE)),
            response: "8ca523f5e9506fed4657c9700eebdbec",
        },
        Vector {
            alg: Algorithm::Sha256,
            user: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: RFC7616_NONCE,
            qop: Some(("00000001", RFC7616_CNONCE)),
            response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        },
        Vector {
            alg: Algorithm::Md5,
            user: "bob",
            realm: "biloxi.com",
            password: "zanzibar",
            method: "INVITE",
            uri: "sip:bob@biloxi.com",
            nonce: SIP_NONCE,
            qop: None,
            response: "bf57e4e0d0bffc0fbaedce64d59add5e",
        },
        Vector {
            alg: Algorithm::Md5,
            user: "bob",
            realm: "biloxi.com",
            password: "zanzibar",
            method: "INVITE",
            uri: "sip:bob@biloxi.com",
            nonce: SIP_NONCE,
            qop: Some(("00000001", "0a4f113b")),
            response: "89eb0059246c02b2f6ee02c7961d5ea3",
        },
        Vector {
            alg: Algorithm::Md5,
            user: "bob",
            realm: "biloxi.com",
            password: "zanzibar",
            method: "REGISTER",
            uri: "sip:biloxi.com",
            nonce: SIP_NONCE,
            qop: None,
            response: "4441045a8075db3ead543693997e2a0e",
        },
    ];

    fn creds_of(v: &Vector) -> Credentials {
        Credentials {
            username: v.user.into(),
            realm: v.realm.into(),
            nonce: v.nonce.into(),
            uri: v.uri.into(),
            response: v.response.into(),
            algorithm: v.alg,
            qop: v.qop.map(|_| "auth".into()),
            nc: v.qop.map(|(nc, _)| nc.into()),
            cnonce: v.qop.map(|(_, c)| c.into()),
            opaque: None,
        }
    }

    fn header_of(v: &Vector) -> String {
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            v.user,
            v.realm,
            v.nonce,
            v.uri,
            v.response,
            v.alg.as_str()
        );
        if let Some((nc, cnonce)) = v.qop {
            h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        h
    }

    fn ha1_of(v: &Vector) -> String {
        ha1(v.alg, v.user, v.realm, v.password)
    }

    #[test]
    fn every_vector_response_is_reproduced() {
        for v in &VECTORS {
            let creds = creds_of(v);
            let got = expected_response(v.alg, &ha1_of(v), v.method, &creds).unwrap();
            assert_eq!(got, v.response, "vector {} {}", v.user, v.realm);
            assert!(verify(&creds, v.method, &ha1_of(v)));
        }
    }

    #[test]
    fn every_vector_verifies_through_the_parser() {
        for v in &VECTORS {
            let creds = parse_credentials(&header_of(v)).unwrap();
            assert_eq!(creds, creds_of(v));
            assert!(verify(&creds, v.method, &ha1_of(v)));
        }
    }

    #[test]
    fn known_ha1_values() {
        // HA1 values published alongside the RFC 2617 and RFC 7616 examples.
        assert_eq!(
            ha1(
                Algorithm::Md5,
                "Mufasa",
                "testrealm@host.com",
                "Circle Of Life"
            ),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(ha1(Algorithm::Md5, "", "", "").len(), 32);
        assert_eq!(ha1(Algorithm::Sha256, "", "", "").len(), 64);
    }

    #[test]
    fn uppercase_ha1_and_response_are_accepted() {
        let v = &VECTORS[3];
        let mut creds = creds_of(v);
        creds.response = creds.response.to_ascii_uppercase();
        assert!(verify(&creds, v.method, &ha1_of(v).to_ascii_uppercase()));
        assert_eq!(
            expected_response(v.alg, &ha1_of(v).to_ascii_uppercase(), v.method, &creds).unwrap(),
            v.response
        );
    }

    #[test]
    fn tampered_response_is_refused() {
        for v in &VECTORS {
            let ha1 = ha1_of(v);
            for i in 0..v.response.len() {
                let mut creds = creds_of(v);
                let mut bytes = creds.response.into_bytes();
                bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
                creds.response = String::from_utf8(bytes).unwrap();
                assert!(!verify(&creds, v.method, &ha1));
            }
            let mut creds = creds_of(v);
            creds.response.pop();
            assert!(!verify(&creds, v.method, &ha1));
            let mut creds = creds_of(v);
            creds.response.push('0');
            assert!(!verify(&creds, v.method, &ha1));
        }
    }

    #[test]
    fn wrong_method_uri_password_nonce_or_nc_is_refused() {
        for v in &VECTORS {
            let ha1 = ha1_of(v);
            let creds = creds_of(v);
            assert!(!verify(&creds, "BYE", &ha1));
            assert!(!verify(&creds, &v.method.to_ascii_lowercase(), &ha1));
            assert!(!verify(
                &creds,
                v.method,
                &super::ha1(v.alg, v.user, v.realm, "wrong")
            ));

            let mut c = creds.clone();
            c.uri.push_str(":5060");
            assert!(!verify(&c, v.method, &ha1));

            let mut c = creds.clone();
            c.nonce.push('x');
            assert!(!verify(&c, v.method, &ha1));

            if v.qop.is_some() {
                let mut c = creds.clone();
                c.nc = Some("00000002".into());
                assert!(!verify(&c, v.method, &ha1));
                let mut c = creds.clone();
                c.cnonce = Some("other".into());
                assert!(!verify(&c, v.method, &ha1));
            }
        }
    }

    #[test]
    fn qop_rules_in_verify() {
        let v = &VECTORS[4];
        let ha1 = ha1_of(v);
        let base = creds_of(v);

        let mut c = base.clone();
        c.nc = None;
        assert!(!verify(&c, v.method, &ha1));
        assert_eq!(
            expected_response(v.alg, &ha1, v.method, &c),
            Err(DigestError::Malformed("qop=auth without nc or cnonce"))
        );

        let mut c = base.clone();
        c.cnonce = None;
        assert!(!verify(&c, v.method, &ha1));

        for qop in ["auth-int", "auth,auth-int", "AUTH", ""] {
            let mut c = base.clone();
            c.qop = Some(qop.into());
            assert!(!verify(&c, v.method, &ha1), "qop {qop:?}");
        }

        // Stripping qop from a qop=auth request must not yield a valid no-qop request.
        let mut c = base.clone();
        c.qop = None;
        assert!(!verify(&c, v.method, &ha1));
    }

    #[test]
    fn qop_list_in_credentials_parses_but_never_verifies() {
        let h = "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n\", uri=\"sip:biloxi.com\", \
                 response=\"89eb0059246c02b2f6ee02c7961d5ea3\", qop=\"auth,auth-int\", nc=00000001, cnonce=\"c\"";
        let c = parse_credentials(h).unwrap();
        assert_eq!(c.qop.as_deref(), Some("auth,auth-int"));
        let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
        assert!(!verify(&c, "REGISTER", &ha1));
    }

    #[test]
    fn bad_ha1_is_refused() {
        let v = &VECTORS[3];
        let creds = creds_of(v);
        for bad in ["", "00", &"0".repeat(64), &"g".repeat(32)] {
            assert!(expected_response(v.alg, bad, v.method, &creds).is_err());
            assert!(!verify(&creds, v.method, bad));
        }
        // An MD5 HA1 offered for SHA-256 credentials (and vice versa).
        let mut sha = creds.clone();
        sha.algorithm = Algorithm::Sha256;
        assert!(!verify(&sha, v.method, &ha1_of(v)));
        assert_eq!(
            expected_response(Algorithm::Sha256, &ha1_of(v), v.method, &creds),
            Err(DigestError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn algorithm_parse_and_as_str() {
        assert_eq!(Algorithm::parse("MD5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse("SHA-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
        for bad in [
            "MD5-sess",
            "SHA-256-sess",
            "SHA-512-256",
            "SHA256",
            "",
            " MD5",
            "AKAv1-MD5",
        ] {
            assert_eq!(Algorithm::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Algorithm::Md5.as_str(), "MD5");
        assert_eq!(Algorithm::Sha256.as_str(), "SHA-256");
    }

    #[test]
    fn parses_3cx_style_no_qop() {
        let h = "Digest username=\"10001\",realm=\"asterisk\",nonce=\"414d535c00c9a4ea\",\
                 uri=\"sip:10.0.0.1:5060\",response=\"4441045a8075db3ead543693997e2a0e\",algorithm=MD5";
        let c = parse_credentials(h).unwrap();
        assert_eq!(c.username, "10001");
        assert_eq!(c.uri, "sip:10.0.0.1:5060");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!((c.qop, c.nc, c.cnonce, c.opaque), (None, None, None, None));
    }

    #[test]
    fn parses_asterisk_style_with_qop() {
        let h = "Digest username=\"bob\", realm=\"biloxi.com\", algorithm=MD5, \
                 uri=\"sip:bob@biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
                 response=\"89eb0059246c02b2f6ee02c7961d5ea3\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", \
                 qop=auth, cnonce=\"0a4f113b\", nc=00000001";
        let c = parse_credentials(h).unwrap();
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc_value(), Some(1));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
        assert!(verify(&c, "INVITE", &ha1));
        assert!(!verify(&c, "REGISTER", &ha1));
    }

    #[test]
    fn quoted_and_unquoted_algorithm_and_qop() {
        let base =
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"";
        for (extra, alg) in [
            ("", Algorithm::Md5),
            (", algorithm=MD5", Algorithm::Md5),
            (", algorithm=\"MD5\"", Algorithm::Md5),
            (", algorithm=md5", Algorithm::Md5),
            (", algorithm=SHA-256", Algorithm::Sha256),
            (", algorithm=\"sha-256\"", Algorithm::Sha256),
        ] {
            let c = parse_credentials(&format!("{base}{extra}")).unwrap();
            assert_eq!(c.algorithm, alg, "{extra}");
        }
        for extra in [
            ", algorithm=MD5-sess",
            ", algorithm=\"SHA-256-sess\"",
            ", algorithm=SHA-512-256",
            ", algorithm=\"\"",
        ] {
            assert_eq!(
                parse_credentials(&format!("{base}{extra}")),
                Err(DigestError::UnsupportedAlgorithm),
                "{extra}"
            );
        }
        let q = parse_credentials(&format!("{base}, qop=\"auth\"")).unwrap();
        let u = parse_credentials(&format!("{base}, qop=auth")).unwrap();
        assert_eq!(q.qop.as_deref(), Some("auth"));
        assert_eq!(q, u);
    }

    #[test]
    fn weird_whitespace_case_and_escapes() {
        let h = " \tdIgEsT\t \r\n  USERNAME\t=  \"b\\\"o\\\\b\" ,Realm=\"biloxi.com\"  ,, \
                 NONCE =dcd98b7102dd2f0e8b11d0f600bfb0c093,uri\t=\t\"sip:bob@biloxi.com\", \
                 Response= \"BF57E4E0D0BFFC0FBAEDCE64D59ADD5E\" , unknown-param=\"x, y\", ext=tok ,";
        let c = parse_credentials(h).unwrap();
        assert_eq!(c.username, "b\"o\\b");
        assert_eq!(c.realm, "biloxi.com");
        assert_eq!(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(c.uri, "sip:bob@biloxi.com");

        let plain = "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
                     uri=\"sip:bob@biloxi.com\", response=\"BF57E4E0D0BFFC0FBAEDCE64D59ADD5E\"";
        let c = parse_credentials(plain).unwrap();
        let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
        assert!(verify(&c, "INVITE", &ha1));

        // Escapes and non-ASCII are unescaped, not mangled.
        let c = parse_credentials(
            "Digest username=\"J\\ürgen \\\"JJ\\\"\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"",
        );
        assert_eq!(c, Err(DigestError::Malformed("invalid escape")));
        let c = parse_credentials(
            "Digest username=\"Jürgen \\\"JJ\\\"\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"",
        )
        .unwrap();
        assert_eq!(c.username, "Jürgen \"JJ\"");
    }

    #[test]
    fn rejects_other_schemes() {
        for h in [
            "NoOneKnowsThisScheme opaque-data=here",
            "Basic Ym9iOnphbnppYmFy",
            "",
            "   ",
            "Digestive username=\"bob\"",
            "\"Digest\" username=\"bob\"",
        ] {
            assert_eq!(parse_credentials(h), Err(DigestError::NotDigest), "{h:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let ok = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"";
        assert!(parse_credentials(ok).is_ok());
        let cases = [
            "Digest",
            "Digest ",
            "Digest=x",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"",
            "Digest username=\"\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"\"",
            "Digest username=\"u\", USERNAME=\"v\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", nc=1, nc=2",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", algorithm=MD5, algorithm=MD5",
            "Digest username=\"u\" realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\\",
            "Digest username=u\"x\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest =\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\u{0}\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\\\r\n\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\r\n\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"; x=y",
        ];
        for h in cases {
            assert!(
                matches!(parse_credentials(h), Err(DigestError::Malformed(_))),
                "{h:?} gave {:?}",
                parse_credentials(h)
            );
        }
    }

    #[test]
    fn long_values_are_refused() {
        let long = "a".repeat(MAX_VALUE_LEN + 1);
        let fits = "a".repeat(MAX_VALUE_LEN);
        let mk = |u: &str| {
            format!(
                "Digest username=\"{u}\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\""
            )
        };
        assert!(parse_credentials(&mk(&fits)).is_ok());
        assert_eq!(
            parse_credentials(&mk(&long)),
            Err(DigestError::Malformed("parameter value too long"))
        );
        let unquoted =
            format!("Digest username=u, realm=r, nonce=n, uri=sip:r, response=00, x={long}");
        assert_eq!(
            parse_credentials(&unquoted),
            Err(DigestError::Malformed("parameter value too long"))
        );
        let escaped = format!("Digest username=\"{}\"", "\\a".repeat(MAX_VALUE_LEN));
        assert!(matches!(
            parse_credentials(&escaped),
            Err(DigestError::Malformed(_))
        ));
    }

    #[test]
    fn nc_value_parsing() {
        let mut c = creds_of(&VECTORS[0]);
        for (nc, want) in [
            (Some("0000000a"), Some(10)),
            (Some("0000000A"), Some(10)),
            (Some("00000001"), Some(1)),
            (Some("ffffffff"), Some(u32::MAX)),
            (Some("1"), Some(1)),
            (Some("00000000"), Some(0)),
            (Some("000000001"), None),
            (Some("+0000001"), None),
            (Some("-1"), None),
            (Some(""), None),
            (Some("0000000g"), None),
            (Some(" 0000001"), None),
            (None, None),
        ] {
            c.nc = nc.map(Into::into);
            assert_eq!(c.nc_value(), want, "{nc:?}");
        }
        let h = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", \
                 qop=auth, nc=0000000a, cnonce=\"c\"";
        let c = parse_credentials(h).unwrap();
        assert_eq!(c.nc.as_deref(), Some("0000000a"));
        assert_eq!(c.nc_value(), Some(10));
    }

    #[test]
    fn nc_is_hashed_as_sent() {
        let v = &VECTORS[4];
        let mut c = creds_of(v);
        c.nc = Some("1".into()); // same number, different spelling
        assert!(!verify(&c, v.method, &ha1_of(v)));
        let resp = expected_response(v.alg, &ha1_of(v), v.method, &c).unwrap();
        c.response = resp;
        assert!(verify(&c, v.method, &ha1_of(v)));
    }

    #[test]
    fn qop_auth_with_malformed_nc_never_verifies() {
        let v = &VECTORS[4];
        let mut c = creds_of(v);
        c.nc = Some("zz".into());
        c.response = expected_response(v.alg, &ha1_of(v), v.method, &c).unwrap();
        assert!(!verify(&c, v.method, &ha1_of(v)));
    }

    #[test]
    fn challenge_format() {
        assert_eq!(
            challenge(Algorithm::Md5, "biloxi.com", "abc", false, false),
            "Digest realm=\"biloxi.com\", nonce=\"abc\", algorithm=MD5"
        );
        assert_eq!(
            challenge(Algorithm::Sha256, "biloxi.com", "abc", true, true),
            "Digest realm=\"biloxi.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\", stale=true"
        );
        assert_eq!(
            challenge(Algorithm::Md5, "a\"b\\c\r\nX-Evil: 1", "n", true, false),
            "Digest realm=\"a\\\"b\\\\cX-Evil: 1\", nonce=\"n\", algorithm=MD5, qop=\"auth\""
        );
    }

    #[test]
    fn challenge_round_trips_through_a_client_answer() {
        // Simulate a client: take realm/nonce from our challenge, answer, and verify.
        let ch = challenge(Algorithm::Sha256, "trunk \"1\"", "Zm9v-YmFy_", true, false);
        let realm = "trunk \"1\"";
        let ha1 = ha1(Algorithm::Sha256, "alice", realm, "pw");
        let mut c = Credentials {
            username: "alice".into(),
            realm: realm.into(),
            nonce: "Zm9v-YmFy_".into(),
            uri: "sip:gw.example:5060".into(),
            response: String::new(),
            algorithm: Algorithm::Sha256,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("xyz".into()),
            opaque: None,
        };
        c.response = expected_response(Algorithm::Sha256, &ha1, "REGISTER", &c).unwrap();
        let header = format!(
            "Digest username=\"alice\", realm=\"trunk \\\"1\\\"\", nonce=\"Zm9v-YmFy_\", \
             uri=\"sip:gw.example:5060\", response=\"{}\", algorithm=SHA-256, qop=auth, \
             nc=00000001, cnonce=\"xyz\"",
            c.response
        );
        assert!(ch.contains("realm=\"trunk \\\"1\\\"\""));
        let parsed = parse_credentials(&header).unwrap();
        assert_eq!(parsed, c);
        assert!(verify(&parsed, "REGISTER", &ha1));
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        let mut inputs: Vec<String> = VECTORS.iter().map(header_of).collect();
        inputs.push(
            " dIgEsT  USERNAME=\"b\\\"ob\" ,realm=\"r\",nonce=n,uri=\"sip:x\",response=\"ab\", qop=\"auth\", nc=0000000a, cnonce=\"ü\""
                .into(),
        );
        for full in inputs.clone() {
            for (i, _) in full.char_indices() {
                let prefix = &full[..i];
                let r = parse_credentials(prefix);
                if let Ok(c) = r {
                    let _ = c.nc_value();
                    let _ = verify(&c, "INVITE", "");
                }
            }
            // Every single-byte deletion too.
            let bytes = full.as_bytes();
            for i in 0..bytes.len() {
                let mut b = bytes.to_vec();
                b.remove(i);
                let s = String::from_utf8_lossy(&b);
                if let Ok(c) = parse_credentials(&s) {
                    let ha1 = ha1(c.algorithm, &c.username, &c.realm, "x");
                    let _ = verify(&c, "INVITE", &ha1);
                    let _ = expected_response(c.algorithm, &ha1, "INVITE", &c);
                }
            }
        }

        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7472_756e_6b67_6174);
        let alphabet = b"Digest \t\r\n,=\"\\abcnu0123456789-;:";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..200);
            let bytes: Vec<u8> = if rng.gen_bool(0.5) {
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut b = b"Digest ".to_vec();
                b.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
                b
            };
            let s = String::from_utf8_lossy(&bytes);
            if let Ok(c) = parse_credentials(&s) {
                let _ = verify(&c, "INVITE", &"0".repeat(32));
            }
        }
    }
}

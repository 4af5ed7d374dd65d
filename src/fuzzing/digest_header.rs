//! Fuzz target `digest_header`: the digest credential parser, `nc`, verification against a
//! fixed HA1, and the client side that answers a PBX's challenge.

use crate::sip::client_auth;
use crate::sip::digest::{self, Algorithm, Credentials};

/// Arbitrary stored HA1s (one per algorithm) that parsed credentials are verified against.
pub(super) const FIXED_HA1_MD5: &str = "0d1cf2e3c1d2bb1f0c1a5b4fd2a7c7e1";
pub(super) const FIXED_HA1_SHA256: &str =
    "5f1e0a46ee8b7a3f0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6";

/// One header value, read both as credentials (`Authorization`) and as a challenge from the PBX
/// (`WWW-Authenticate`, answered by the client side).
pub fn digest_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(creds) = digest::parse_credentials(&text) {
        check_credentials(&creds);
        // Our own challenge built from the realm and nonce just read, answered by our client
        // side and checked by our server side: the three must agree.
        // Ours are always answerable: a configured realm has no quotes or backslashes, a nonce
        // is base64url.
        let plain = |s: &str| !s.contains(|c: char| c.is_control() || c == '"' || c == '\\');
        let ours = plain(&creds.realm) && plain(&creds.nonce);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            for qop in [false, true] {
                let challenge = digest::challenge(alg, &creds.realm, &creds.nonce, qop, false);
                answer_challenge(&challenge, ours);
            }
        }
    }
    answer_challenge(&text, false);
}

/// Invariants of parsed credentials.
fn check_credentials(c: &Credentials) {
    let fields = [&c.username, &c.realm, &c.nonce, &c.uri, &c.response]
        .into_iter()
        .chain(c.qop.iter())
        .chain(c.nc.iter())
        .chain(c.cnonce.iter())
        .chain(c.opaque.iter());
    for f in fields {
        assert!(
            !f.contains(['\r', '\n']),
            "a credential field carries a line break: {f:?} in {c:?}"
        );
    }
    for required in [&c.username, &c.realm, &c.nonce, &c.uri, &c.response] {
        assert!(!required.is_empty(), "an empty required field in {c:?}");
    }
    if let Some(n) = c.nc_value() {
        let nc = c.nc.as_deref().unwrap_or_default();
        assert!(
            (1..=8).contains(&nc.len()) && u32::from_str_radix(nc, 16) == Ok(n),
            "nc {nc:?} read as {n}"
        );
    }
    for ha1 in [FIXED_HA1_MD5, FIXED_HA1_SHA256] {
        for method in ["REGISTER", "INVITE"] {
            let ok = digest::verify(c, method, ha1);
            let Ok(expected) = digest::expected_response(c.algorithm, ha1, method, c) else {
                assert!(!ok, "verified without a computable response: {c:?}");
                continue;
            };
            if ok {
                assert!(c.response.eq_ignore_ascii_case(&expected));
            }
            // The right response (in either case) verifies exactly when nc and cnonce are usable.
            let usable = c.qop.is_none() || (c.nc_value().is_some() && c.cnonce.is_some());
            let mut good = c.clone();
            good.response = expected.to_ascii_uppercase();
            assert_eq!(digest::verify(&good, method, ha1), usable, "{good:?}");
        }
    }
}

/// Answers `challenge` as the client side does for a challenged INVITE; what it writes must
/// parse and verify with our own server side. `must_answer`: the challenge is one of ours, so
/// the client side must be able to answer it.
fn answer_challenge(challenge: &str, must_answer: bool) {
    // The client side only sees header values from our parser: never a CR or LF.
    if challenge.contains(['\r', '\n']) {
        return;
    }
    let uri = "sip:100@pbx.example.com";
    let Some(value) = client_auth::authorization(challenge, "gw", "secret", "INVITE", uri) else {
        assert!(
            !must_answer,
            "our own challenge is not answerable: {challenge:?}"
        );
        return;
    };
    assert!(
        !value.contains(['\r', '\n']),
        "our Authorization carries a line break: {value:?}"
    );
    // The client side refuses what it could not write back as a plain quoted-string (empty,
    // over-long, control characters, quotes, backslashes), so whatever it answers must parse
    // and verify with our own server side.
    let creds = match digest::parse_credentials(&value) {
        Ok(c) => c,
        Err(e) => panic!("our Authorization {value:?} (for {challenge:?}) does not parse: {e}"),
    };
    check_credentials(&creds);
    assert_eq!(creds.username, "gw");
    assert_eq!(creds.uri, uri);
    let ha1 = digest::ha1(creds.algorithm, "gw", &creds.realm, "secret");
    assert!(
        digest::verify(&creds, "INVITE", &ha1),
        "our Authorization {value:?} (for {challenge:?}) does not verify"
    );
}

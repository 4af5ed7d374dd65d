//! Answering a digest challenge from the PBX (RFC 3261 22.2, RFC 7616): when 3CX cannot tell
//! which trunk our INVITE is for, it challenges, and we answer with the trunk's outbound
//! credentials.

use crate::sip::digest::{self, Algorithm, Credentials};
use crate::sip::grammar::parse_params;

/// The `Authorization` / `Proxy-Authorization` value for `challenge`, or `None` when it is not
/// a digest challenge we can answer (unknown algorithm, a qop other than `auth`).
pub fn authorization(
    challenge: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Option<String> {
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut algorithm = Algorithm::Md5;
    let mut qop_auth = false;
    for (name, value) in challenge_params(challenge)? {
        match name.as_str() {
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "opaque" => opaque = Some(value),
            "algorithm" => algorithm = Algorithm::parse(&value)?,
            "qop" => {
                qop_auth = value
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"));
                if !qop_auth {
                    return None;
                }
            }
            _ => {}
        }
    }
    // What we cannot write back as a plain quoted-string, we do not answer: a PBX's challenge
    // must not put a control character, a quote or a quoted-pair into our request's header.
    let realm = realm.filter(|r| quotable(r))?;
    let nonce = nonce.filter(|n| quotable(n))?;
    if opaque
        .as_deref()
        .is_some_and(|o| !o.is_empty() && !quotable(o))
    {
        return None;
    }
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let creds = Credentials {
        username: username.to_string(),
        realm: realm.clone(),
        nonce: nonce.clone(),
        uri: uri.to_string(),
        response: String::new(),
        algorithm,
        qop: qop_auth.then(|| "auth".to_string()),
        nc: qop_auth.then(|| "00000001".to_string()),
        cnonce: qop_auth.then(|| cnonce.clone()),
        opaque: opaque.clone(),
    };
    let ha1 = digest::ha1(algorithm, username, &realm, password);
    let response = digest::expected_response(algorithm, &ha1, method, &creds).ok()?;
    let mut v = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}",
        algorithm.as_str()
    );
    if qop_auth {
        v.push_str(&format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    Some(v)
}

/// The parameters of a `Digest` challenge in order, names lowercased and values unquoted;
/// `None` for another scheme or a parameter that does not parse.
pub fn challenge_params(challenge: &str) -> Option<Vec<(String, String)>> {
    let rest = challenge.trim().strip_prefix("Digest")?.trim_start();
    // Challenge parameters are comma-separated; parse each as a one-item ';' list.
    split_commas(rest)
        .into_iter()
        .map(|item| {
            let params = parse_params(&format!(";{}", item.trim())).ok()?;
            let (name, value) = params.0.into_iter().next()?;
            let value = value.unwrap_or_default();
            Some((
                name.to_ascii_lowercase(),
                value.trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// Non-empty, no longer than a digest parameter may be, and nothing that needs escaping inside
/// a quoted-string (RFC 3261 25.1).
fn quotable(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= digest::MAX_VALUE_LEN
        && !v.chars().any(|c| c.is_control() || c == '"' || c == '\\')
}

/// Splits at commas outside quotes.
fn split_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{parse_credentials, verify};

    #[test]
    fn answers_md5_with_and_without_qop() {
        for challenge in [
            r#"Digest realm="3CX", nonce="abc123", algorithm=MD5"#,
            r#"Digest realm="3CX", nonce="abc123", qop="auth,auth-int", opaque="xyz""#,
        ] {
            let v = authorization(challenge, "gw", "secret", "INVITE", "sip:100@pbx").unwrap();
            let creds = parse_credentials(&v).unwrap();
            let ha1 = digest::ha1(Algorithm::Md5, "gw", "3CX", "secret");
            assert!(verify(&creds, "INVITE", &ha1), "{v}");
            assert_eq!(creds.realm, "3CX");
        }
    }

    #[test]
    fn refuses_a_challenge_it_could_not_write_back_safely() {
        for challenge in [
            "Digest realm=\"\", nonce=\"n\"",
            "Digest realm=\"r\", nonce=\"\"",
            "Digest realm=\"a\\\\\"b\", nonce=\"n\"",
            "Digest realm=\"r\", nonce=\"n\u{1}x\"",
            "Digest realm=\"r\", nonce=\"n\", opaque=\"o\\\\x\"",
        ] {
            assert!(
                authorization(challenge, "u", "p", "INVITE", "sip:a@b").is_none(),
                "{challenge:?}"
            );
        }
        let long = format!("Digest realm=\"r\", nonce=\"{}\"", "n".repeat(2000));
        assert!(authorization(&long, "u", "p", "INVITE", "sip:a@b").is_none());
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert!(authorization("Basic realm=x", "u", "p", "INVITE", "sip:a@b").is_none());
        assert!(authorization(r#"Digest realm="r""#, "u", "p", "INVITE", "sip:a@b").is_none());
        assert!(authorization(
            r#"Digest realm="r", nonce="n", qop="auth-int""#,
            "u",
            "p",
            "INVITE",
            "sip:a@b"
        )
        .is_none());
    }
}

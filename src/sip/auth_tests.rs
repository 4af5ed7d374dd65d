//! Unit tests of `sip::auth`: what the authenticator challenges with, which credentials it
//! takes (bound to the request's method and Request-URI, once per no-qop nonce, with growing
//! nonce counts) and why it refuses the others; trunk source restrictions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::sip::client_auth;
use crate::sip::digest::{parse_credentials, Credentials};
use crate::sip::parse::{parse, Parsed};

const REALM: &str = "gw.test";
const PBX: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const URI: &str = "sip:0501234567@gw.example";

/// Trunk `main` (`pbx` / `secret`), with `sip` lines (algorithms, qop) and `more` after it
/// (more trunks, lines of the last one).
fn config(sip: &str, more: &str) -> Config {
    config_with("secret", sip, more)
}

/// [`config`] with another password for `main`.
fn config_with(password: &str, sip: &str, more: &str) -> Config {
    let text = format!(
        "[sip]\nrealm = \"{REALM}\"\nnonce_lifetime = \"30s\"\n{sip}\n\n\
         [[trunks]]\nname = \"main\"\nauth_username = \"pbx\"\npassword = \"{password}\"\n\n{more}"
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// Trunk `hashed`: `sha-only` with a SHA-256 HA1 only (for a daemon offering only SHA-256).
fn hashed_trunk() -> String {
    let sha = digest::ha1(Algorithm::Sha256, "sha-only", REALM, "hashed-secret");
    format!("[[trunks]]\nname = \"hashed\"\nauth_username = \"sha-only\"\nha1_sha256 = \"{sha}\"\n")
}

const SHA256_ONLY: &str = "digest_algorithms = [\"SHA-256\"]";
const BOTH: &str = "digest_algorithms = [\"SHA-256\", \"MD5\"]";

/// A request carrying `auth` (header name, value) if given.
fn request(method: &str, uri: &str, auth: Option<(&str, &str)>) -> (Request, Uri) {
    let auth = auth.map_or(String::new(), |(n, v)| format!("{n}: {v}\r\n"));
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKa\r\n\
         From: <sip:100@pbx>;tag=1\r\nTo: <{uri}>\r\nCall-ID: a@pbx\r\nCSeq: 1 {method}\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    );
    match parse(text.as_bytes(), 65_535) {
        Ok(Parsed::Request(r, info)) => (r, info.request_uri),
        other => panic!("{other:?}\n{text}"),
    }
}

/// `auth` checks `method` to `uri` with `header: value` from the PBX at `now`.
fn check(
    auth: &mut Authenticator,
    (method, uri): (&str, &str),
    header: (&str, &str),
    now: Instant,
) -> AuthOutcome {
    let (req, ruri) = request(method, uri, Some(header));
    auth.check(&req, &ruri, PBX, now)
}

/// The first challenge `auth` issues to the PBX now, and the answer of the crate's digest
/// client to it as `user` / `password` for `method` and `uri`.
fn answer(
    auth: &Authenticator,
    now: Instant,
    (user, password): (&str, &str),
    (method, uri): (&str, &str),
) -> String {
    let challenge = &auth.challenges(now, PBX, false)[0];
    client_auth::authorization(challenge, user, password, method, uri)
        .unwrap_or_else(|| panic!("the digest client does not answer {challenge}"))
}

/// A header value for `c` (response computed for `password` and `method`).
fn header_for(mut c: Credentials, password: &str, method: &str) -> String {
    let ha1 = digest::ha1(c.algorithm, &c.username, &c.realm, password);
    c.response = digest::expected_response(c.algorithm, &ha1, method, &c).expect("a response");
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        c.username,
        c.realm,
        c.nonce,
        c.uri,
        c.response,
        c.algorithm.as_str()
    );
    if let (Some(nc), Some(cnonce)) = (&c.nc, &c.cnonce) {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    v
}

fn challenged(failure: AuthFailure, stale: bool) -> AuthOutcome {
    AuthOutcome::Challenge { failure, stale }
}

const MAIN: AuthOutcome = AuthOutcome::Authenticated { trunk: 0 };

#[test]
fn challenges_follow_the_configured_algorithms_with_one_fresh_nonce() {
    let now = Instant::now();
    for (sip, algs, qop) in [
        (BOTH, vec![Algorithm::Sha256, Algorithm::Md5], true),
        (
            "digest_algorithms = [\"MD5\"]\ndigest_qop = false",
            vec![Algorithm::Md5],
            false,
        ),
    ] {
        let auth = Authenticator::new(&config(sip, ""), now);
        for stale in [false, true] {
            let chs = auth.challenges(now, PBX, stale);
            let params = client_auth::challenge_params(&chs[0]).expect("a Digest challenge");
            let nonce = &params
                .iter()
                .find(|(n, _)| n == "nonce")
                .expect("a nonce")
                .1;
            let want: Vec<String> = algs
                .iter()
                .map(|a| digest::challenge(*a, REALM, nonce, qop, stale))
                .collect();
            assert_eq!(chs, want, "{sip}");
        }
        assert_ne!(
            auth.challenges(now, PBX, false),
            auth.challenges(now, PBX, false),
            "every challenge has a nonce of its own"
        );
    }
}

#[test]
fn credentials_are_accepted_in_either_header_for_the_trunk_they_name() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    for header in ["Authorization", "Proxy-Authorization"] {
        for method in ["REGISTER", "INVITE"] {
            let creds = answer(&auth, now, ("pbx", "secret"), (method, URI));
            assert_eq!(check(&mut auth, (method, URI), (header, &creds), now), MAIN);
        }
    }
    let mut auth = Authenticator::new(&config(SHA256_ONLY, &hashed_trunk()), now);
    let creds = answer(&auth, now, ("sha-only", "hashed-secret"), ("INVITE", URI));
    assert_eq!(
        check(&mut auth, ("INVITE", URI), ("Authorization", &creds), now),
        AuthOutcome::Authenticated { trunk: 1 }
    );
}

#[test]
fn credentials_are_bound_to_their_method_and_request_uri() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let h = "Proxy-Authorization";
    // made for a REGISTER, presented on an INVITE: the hash covers the method
    let creds = answer(&auth, now, ("pbx", "secret"), ("REGISTER", URI));
    assert_eq!(
        check(&mut auth, ("INVITE", URI), (h, &creds), now),
        challenged(AuthFailure::WrongPassword("pbx".into()), false)
    );
    // made for another Request-URI: refused outright, not re-challenged
    let other = "sip:0509999999@gw.example";
    let creds = answer(&auth, now, ("pbx", "secret"), ("INVITE", other));
    assert_eq!(
        check(&mut auth, ("INVITE", URI), (h, &creds), now),
        AuthOutcome::Refuse {
            failure: AuthFailure::UriMismatch("pbx".into()),
            code: 400
        }
    );
    // a digest uri that is no URI at all must be the Request-URI's very text
    let creds = answer(&auth, now, ("pbx", "secret"), ("INVITE", "gw.example"));
    assert!(matches!(
        check(&mut auth, ("INVITE", URI), (h, &creds), now),
        AuthOutcome::Refuse { code: 400, .. }
    ));
    // an equivalent URI (RFC 3261 19.1.4: the host is case-insensitive) is the same resource
    let creds = answer(
        &auth,
        now,
        ("pbx", "secret"),
        ("INVITE", "sip:0501234567@GW.Example"),
    );
    assert_eq!(check(&mut auth, ("INVITE", URI), (h, &creds), now), MAIN);
}

#[test]
fn why_credentials_are_refused() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let h = "Authorization";
    let mut refused = |creds: &str| check(&mut auth, ("REGISTER", URI), (h, creds), now);
    let no_creds = challenged(AuthFailure::NoCredentials, false);
    assert_eq!(refused("Basic cGJ4OnNlY3JldA=="), no_creds);
    assert_eq!(
        refused("Digest username=\"pbx\", realm="),
        challenged(AuthFailure::Malformed, false)
    );
    let valid = |user: &str| Credentials {
        username: user.into(),
        realm: REALM.into(),
        nonce: "n".into(),
        uri: URI.into(),
        response: "0".repeat(32),
        algorithm: Algorithm::Md5,
        qop: None,
        nc: None,
        cnonce: None,
        opaque: None,
    };
    let empty = format!(
        "Digest username=\"pbx\", realm=\"{REALM}\", nonce=\"n\", uri=\"{URI}\", response=\"\""
    );
    assert_eq!(
        refused(&empty),
        challenged(AuthFailure::EmptyResponse, false)
    );
    let other_realm = Credentials {
        realm: "elsewhere".into(),
        ..valid("pbx")
    };
    assert_eq!(
        refused(&header_for(other_realm, "secret", "REGISTER")),
        challenged(AuthFailure::WrongRealm, false)
    );
    let sess = header_for(valid("pbx"), "secret", "REGISTER").replace("=MD5", "=MD5-sess");
    assert_eq!(
        refused(&sess),
        challenged(AuthFailure::UnsupportedAlgorithm(String::new()), false)
    );
    assert_eq!(
        refused(&header_for(valid("nobody"), "secret", "REGISTER")),
        challenged(AuthFailure::UnknownUser("nobody".into()), false)
    );
    // a nonce we never issued
    assert_eq!(
        refused(&header_for(valid("pbx"), "secret", "REGISTER")),
        challenged(AuthFailure::BadNonce("pbx".into()), false)
    );
}

#[test]
fn wrong_password_and_algorithms_the_trunk_cannot_check() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let h = "Authorization";
    let creds = answer(&auth, now, ("pbx", "not-it"), ("REGISTER", URI));
    assert_eq!(
        check(&mut auth, ("REGISTER", URI), (h, &creds), now),
        challenged(AuthFailure::WrongPassword("pbx".into()), false)
    );
    // The SHA-256-only trunk answering an MD5 challenge: no MD5 HA1 to check it against. The
    // configuration check refuses MD5 next to such a trunk; the authenticator holds anyway.
    let mut c = config(SHA256_ONLY, &hashed_trunk());
    c.sip.digest_algorithms.push("MD5".into());
    let mut mixed = Authenticator::new(&c, now);
    let md5 = &mixed.challenges(now, PBX, false)[1];
    let creds = client_auth::authorization(md5, "sha-only", "hashed-secret", "REGISTER", URI)
        .expect("an answer");
    assert_eq!(
        check(&mut mixed, ("REGISTER", URI), (h, &creds), now),
        challenged(AuthFailure::UnsupportedAlgorithm("sha-only".into()), false)
    );
    // SHA-256 credentials to a daemon that only offers MD5
    let mut md5_only = Authenticator::new(&config("digest_algorithms = [\"MD5\"]", ""), now);
    let challenge = md5_only.challenges(now, PBX, false)[0].replace("=MD5", "=SHA-256");
    let creds = client_auth::authorization(&challenge, "pbx", "secret", "REGISTER", URI)
        .expect("an answer");
    assert_eq!(
        check(&mut md5_only, ("REGISTER", URI), (h, &creds), now),
        challenged(AuthFailure::UnsupportedAlgorithm("pbx".into()), false)
    );
}

#[test]
fn a_nonce_is_bound_to_its_client_and_goes_stale_after_its_lifetime() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let creds = answer(&auth, now, ("pbx", "secret"), ("REGISTER", URI));
    let (req, ruri) = request("REGISTER", URI, Some(("Authorization", &creds)));
    let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    assert_eq!(
        auth.check(&req, &ruri, elsewhere, now),
        challenged(AuthFailure::BadNonce("pbx".into()), false)
    );
    let later = now + Duration::from_secs(31);
    assert_eq!(
        auth.check(&req, &ruri, PBX, later),
        challenged(AuthFailure::StaleNonce, true)
    );
    assert_eq!(
        auth.check(&req, &ruri, PBX, now + Duration::from_secs(29)),
        MAIN
    );
}

#[test]
fn a_no_qop_nonce_answers_one_request_and_nonce_counts_must_grow() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let h = "Proxy-Authorization";
    // without qop (as 3CX answers): once, then stale so that the PBX fetches a fresh nonce
    let challenge = auth.challenges(now, PBX, false)[1].replace(", qop=\"auth\"", "");
    let creds =
        client_auth::authorization(&challenge, "pbx", "secret", "INVITE", URI).expect("an answer");
    assert!(!creds.contains("qop"), "{creds}");
    assert_eq!(check(&mut auth, ("INVITE", URI), (h, &creds), now), MAIN);
    assert_eq!(
        check(&mut auth, ("INVITE", URI), (h, &creds), now),
        challenged(AuthFailure::ReplayedNonce("pbx".into()), true)
    );

    // with qop: nc 1, then 1 again (a replay), then 2
    let creds = answer(&auth, now, ("pbx", "secret"), ("INVITE", URI));
    assert_eq!(check(&mut auth, ("INVITE", URI), (h, &creds), now), MAIN);
    assert_eq!(
        check(&mut auth, ("INVITE", URI), (h, &creds), now),
        challenged(AuthFailure::ReplayedNonce("pbx".into()), false)
    );
    let mut next = parse_credentials(&creds).expect("the digest client's value");
    next.nc = Some("00000002".into());
    let next = header_for(next, "secret", "INVITE");
    assert_eq!(check(&mut auth, ("INVITE", URI), (h, &next), now), MAIN);
    // an nc that is no count at all never verifies (digest::verify), whatever was hashed
    let mut bad = parse_credentials(&creds).expect("the digest client's value");
    bad.nc = Some("zz".into());
    let bad = header_for(bad, "secret", "INVITE");
    assert_eq!(
        check(&mut auth, ("INVITE", URI), (h, &bad), now),
        challenged(AuthFailure::WrongPassword("pbx".into()), false)
    );
}

#[test]
fn a_reload_changes_secrets_and_keeps_the_nonces_handed_out() {
    let now = Instant::now();
    let mut auth = Authenticator::new(&config(BOTH, ""), now);
    let before = answer(&auth, now, ("pbx", "rotated"), ("REGISTER", URI));
    let old = answer(&auth, now, ("pbx", "secret"), ("REGISTER", URI));
    auth.reload(&config_with("rotated", BOTH, ""));
    assert_eq!(
        auth.trunks()[0].password.as_ref().map(|p| p.expose()),
        Some("rotated")
    );
    assert_eq!(
        check(&mut auth, ("REGISTER", URI), ("Authorization", &old), now),
        challenged(AuthFailure::WrongPassword("pbx".into()), false)
    );
    assert_eq!(
        check(
            &mut auth,
            ("REGISTER", URI),
            ("Authorization", &before),
            now
        ),
        MAIN,
        "a nonce issued before the reload, answered with the new password"
    );
}

#[test]
fn sources_are_checked_against_the_trunks_allowed_sources() {
    let restricted = "allowed_sources = [\"192.0.2.0/28\", \"2001:db8::/32\"]\n";
    let second = format!("{}{restricted}", hashed_trunk());
    let c = config(SHA256_ONLY, &second);
    let hashed = &c.trunks[1];
    let inside = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        "2001:db8::7".parse().expect("an address"),
        // an IPv4 peer seen through a dual-stack socket
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
    ];
    let outside = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 16)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped()),
    ];
    for ip in inside {
        assert!(source_allowed(hashed, ip), "{ip}");
    }
    for ip in outside {
        assert!(!source_allowed(hashed, ip), "{ip}");
        // the unrestricted trunk takes anyone, so no source is refused before authentication
        assert!(source_allowed(&c.trunks[0], ip), "{ip}");
    }
    let auth = Authenticator::new(&c, Instant::now());
    assert!(outside.iter().all(|ip| auth.source_possible(*ip)));

    // with every trunk restricted, only their sources are possible
    let mut all = c.clone();
    all.trunks[0].allowed_sources = all.trunks[1].allowed_sources.clone();
    let auth = Authenticator::new(&all, Instant::now());
    assert!(inside.iter().all(|ip| auth.source_possible(*ip)));
    assert!(!outside.iter().any(|ip| auth.source_possible(*ip)));
}

#[test]
fn only_the_first_credential_less_request_is_no_failure() {
    assert_eq!(AuthFailure::NoCredentials.kind(), None);
    for (failure, kind) in [
        (AuthFailure::StaleNonce, FailureKind::Stale),
        (
            AuthFailure::UnknownUser("u".into()),
            FailureKind::UnknownUser,
        ),
        (AuthFailure::BadNonce("u".into()), FailureKind::InvalidNonce),
        (
            AuthFailure::WrongPassword("u".into()),
            FailureKind::WrongPassword,
        ),
        (AuthFailure::ReplayedNonce("u".into()), FailureKind::Replay),
        (
            AuthFailure::UriMismatch("u".into()),
            FailureKind::UriMismatch,
        ),
        (AuthFailure::Malformed, FailureKind::Malformed),
    ] {
        assert_eq!(failure.kind(), Some(kind), "{failure}");
    }
}

/// The HA1 a trunk's stored secret gives.
mod stored_ha1 {
    use super::super::{stored_ha1, Algorithm};
    use crate::config::{Secret, TrunkConfig};

    fn trunk(toml: &str) -> TrunkConfig {
        let text = format!(
            "[sip]\nrealm = \"x\"\n[[trunks]]\nname = \"t\"\nauth_username = \"u\"\n{toml}"
        );
        crate::config::Config::from_toml(&text)
            .expect("config")
            .trunks
            .remove(0)
    }

    #[test]
    fn a_stored_ha1_is_used_lowercased_and_only_for_its_algorithm() {
        let t = trunk("ha1 = \"0123456789ABCDEF0123456789abcdef\"");
        assert_eq!(
            stored_ha1(&t, Algorithm::Md5, "x").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(stored_ha1(&t, Algorithm::Sha256, "x").is_none());
    }

    #[test]
    fn a_password_gives_the_ha1_of_every_algorithm() {
        let mut t = trunk("password = \"s3cret\"");
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let want = crate::sip::digest::ha1(alg, "u", "r.test", "s3cret");
            assert_eq!(stored_ha1(&t, alg, "r.test"), Some(want));
        }
        t.password = Some(Secret::new("other".to_string()));
        assert_ne!(
            stored_ha1(&t, Algorithm::Md5, "r.test"),
            Some(crate::sip::digest::ha1(
                Algorithm::Md5,
                "u",
                "r.test",
                "s3cret"
            ))
        );
    }
}

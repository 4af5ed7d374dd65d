//! SHA-256 digest (RFC 7616 / RFC 8760) end to end, with the raw SIP client (sipp 3.6 only does
//! MD5): challenge order, qop=auth with nc replay detection, MD5 fallback, a trunk that stores
//! only a SHA-256 HA1, Proxy-Authorization on INVITE, source restrictions and tampered nonces.

use trunkgate::sip::digest::{self, Algorithm};

use crate::harness::{tail, trunk, Daemon, REALM};
use crate::sip_client::{
    challenges, first_line, header_values, status_code, Challenge, Request, SipClient,
};

/// The digest username (differs from the From/To user, as with 3CX).
const USER: &str = "pbx-auth-id";
const PASSWORD: &str = "Sha256-secret";
const FROM_USER: &str = "0501234567";
const BOTH: &str = "digest_algorithms = [\"SHA-256\", \"MD5\"]";

/// The PBX's REGISTER answering `ch` as `user` / `password` with nonce count `nc`.
fn register(ua: &SipClient, ch: &Challenge, (user, password): (&str, &str), nc: u32) -> Request {
    let creds = ch.answer_nc(user, password, "REGISTER", &ua.register_uri(), nc);
    ua.register(FROM_USER, &[("Authorization", &creds)])
}

/// Asserts a 401 with challenges and returns them.
fn expect_401(resp: &str, what: &str, d: &Daemon) -> Vec<Challenge> {
    assert_eq!(
        status_code(resp),
        401,
        "{what}: expected 401, got {:?}\n{resp}\ndaemon log (tail):\n{}",
        first_line(resp),
        tail(&d.log(), 20)
    );
    let chs = challenges(resp, "WWW-Authenticate");
    assert!(
        !chs.is_empty(),
        "{what}: 401 without WWW-Authenticate:\n{resp}"
    );
    chs
}

fn expect_200_with_contact(ua: &SipClient, resp: &str, what: &str, d: &Daemon) {
    assert_eq!(
        status_code(resp),
        200,
        "{what}: expected 200, got {:?}\n{resp}\ndaemon log (tail):\n{}",
        first_line(resp),
        tail(&d.log(), 20)
    );
    let want = format!("<{}>", ua.contact(FROM_USER));
    assert!(
        header_values(resp, "Contact")
            .iter()
            .any(|c| c.starts_with(&want)),
        "{what}: 200 does not list our contact {want}:\n{resp}"
    );
}

/// `resp` must be `code` and carry no `header`: a challenge that does not belong there.
fn expect_without(resp: &str, (code, header): (u16, &str), what: &str) {
    assert_eq!(
        status_code(resp),
        code,
        "{what}: {:?}\n{resp}",
        first_line(resp)
    );
    assert!(
        header_values(resp, header).is_empty(),
        "{what}: {code} carries {header}:\n{resp}"
    );
}

/// An INVITE from `ua` to [`DIALLED`] with `headers`; its final response, ACKed.
fn invite(ua: &SipClient, headers: &[(&str, &str)]) -> String {
    ua.exchange_invite(&ua.invite(DIALLED, headers))
        .expect("an answer to the INVITE")
}

/// Both algorithms offered, the trunk restricted to `source`.
fn daemon_allowing(source: &str) -> Daemon {
    let t = format!(
        "{}allowed_sources = [\"{source}\"]\n",
        trunk("t0", USER, PASSWORD)
    );
    Daemon::start(BOTH, &t)
}

fn daemon_both() -> Daemon {
    Daemon::start(BOTH, &trunk("t0", USER, PASSWORD))
}

/// The unauthenticated REGISTER's challenges.
fn challenged(ua: &SipClient, d: &Daemon) -> Vec<Challenge> {
    let resp = ua.request(&ua.register(FROM_USER, &[]));
    expect_401(&resp, "unauthenticated REGISTER", d)
}

const TRUNK: (&str, &str) = (USER, PASSWORD);
/// What the INVITEs dial: an allowed number, which meets the missing carrier (503).
const DIALLED: &str = "+971501234567";

#[test]
fn sha256_challenges_come_first_and_qop_register_succeeds() {
    let d = daemon_both();
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    assert_eq!(
        chs.len(),
        2,
        "expected a SHA-256 and an MD5 challenge, got {chs:?}"
    );
    assert_eq!(
        chs[0].algorithm,
        Algorithm::Sha256,
        "first challenge must be SHA-256 (RFC 8760): {chs:?}"
    );
    assert_eq!(
        chs[1].algorithm,
        Algorithm::Md5,
        "second challenge must be MD5: {chs:?}"
    );
    assert_eq!(
        chs[0].nonce, chs[1].nonce,
        "both challenges carry the same nonce"
    );
    for c in &chs {
        assert_eq!(c.realm, REALM, "realm: {c:?}");
        assert!(c.offers_auth(), "qop=\"auth\" not offered: {c:?}");
        assert!(c.stale.is_none(), "a first challenge is not stale: {c:?}");
    }
    let r = register(&ua, &chs[0], TRUNK, 1);
    assert!(r.text.contains("algorithm=SHA-256") && r.text.contains("nc=00000001"));
    let resp = ua.request(&r);
    expect_200_with_contact(&ua, &resp, "SHA-256 qop=auth REGISTER", &d);
}

#[test]
fn sha256_wrong_password_is_challenged_again() {
    let d = daemon_both();
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    let r = register(&ua, &chs[0], (USER, "not-the-password"), 1);
    let resp = ua.request(&r);
    let again = expect_401(&resp, "SHA-256 REGISTER with the wrong password", &d);
    assert_eq!(
        again[0].algorithm,
        Algorithm::Sha256,
        "re-challenge order: {again:?}"
    );
    d.assert_logged_without_secret("wrong password", "not-the-password");
    // the same nonce with the right password (next nc) still works: only the password was wrong
    let r = register(&ua, &chs[0], TRUNK, 2);
    let resp = ua.request(&r);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER with the right password", &d);
}

#[test]
fn sha256_nonce_count_replay_is_refused_and_next_count_accepted() {
    let d = daemon_both();
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    let first = register(&ua, &chs[0], TRUNK, 1);
    let resp = ua.request(&first);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER nc=00000001", &d);

    // the very same bytes as a new transaction: same nonce, same nc
    let replay = first.with_new_branch();
    assert_ne!(replay.text, first.text);
    let resp = ua.request(&replay);
    let again = expect_401(
        &resp,
        "replayed SHA-256 REGISTER (same nonce, same nc, new branch)",
        &d,
    );
    assert_eq!(
        again[0].algorithm,
        Algorithm::Sha256,
        "re-challenge order: {again:?}"
    );
    assert!(
        d.log().contains("replayed nonce count"),
        "the replay was not logged as one:\n{}",
        tail(&d.log(), 20)
    );

    // the next nonce count on the same nonce is fine
    let next = register(&ua, &chs[0], TRUNK, 2);
    assert!(next.text.contains("nc=00000002"));
    let resp = ua.request(&next);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER nc=00000002", &d);
}

#[test]
fn md5_only_client_uses_the_second_challenge() {
    let d = daemon_both();
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    // a client that only knows MD5 takes the first challenge it understands
    let pos = chs
        .iter()
        .position(|c| c.algorithm == Algorithm::Md5)
        .unwrap_or_else(|| panic!("no MD5 challenge offered: {chs:?}"));
    assert_eq!(pos, 1, "MD5 should be the second challenge: {chs:?}");
    let r = register(&ua, &chs[pos], TRUNK, 1);
    assert!(r.text.contains("algorithm=MD5"));
    let resp = ua.request(&r);
    expect_200_with_contact(
        &ua,
        &resp,
        "MD5 qop=auth REGISTER on a SHA-256-first daemon",
        &d,
    );
}

#[test]
fn trunk_with_only_a_sha256_ha1_registers_with_sha256_but_not_md5() {
    let ha1 = digest::ha1(Algorithm::Sha256, USER, REALM, PASSWORD);
    assert_eq!(ha1.len(), 64);
    let trunks =
        format!("[[trunks]]\nname = \"h0\"\nauth_username = \"{USER}\"\nha1_sha256 = \"{ha1}\"\n");
    let d = Daemon::start("digest_algorithms = [\"SHA-256\"]", &trunks);
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    assert_eq!(chs.len(), 1, "only SHA-256 is configured: {chs:?}");
    assert_eq!(chs[0].algorithm, Algorithm::Sha256, "{chs:?}");
    let r = register(&ua, &chs[0], TRUNK, 1);
    let resp = ua.request(&r);
    expect_200_with_contact(
        &ua,
        &resp,
        "SHA-256 REGISTER against a stored ha1_sha256",
        &d,
    );

    // MD5 with the right password on the same, valid nonce: not offered, no MD5 HA1
    let md5 = Challenge {
        algorithm: Algorithm::Md5,
        ..chs[0].clone()
    };
    let r = register(&ua, &md5, TRUNK, 2);
    let resp = ua.request(&r);
    let again = expect_401(&resp, "MD5 REGISTER for a SHA-256-only trunk", &d);
    assert!(
        again.iter().all(|c| c.algorithm == Algorithm::Sha256),
        "re-challenge offers MD5: {again:?}"
    );
    // MD5 without qop either
    let md5_plain = Challenge {
        algorithm: Algorithm::Md5,
        ..again[0].without_qop()
    };
    let r = register(&ua, &md5_plain, TRUNK, 1);
    let resp = ua.request(&r);
    expect_401(&resp, "MD5 (no qop) REGISTER for a SHA-256-only trunk", &d);
}

#[test]
fn invite_is_challenged_with_407_and_proxy_authorization_is_accepted() {
    let d = daemon_both();
    let ua = SipClient::new(d.sip);
    let resp = invite(&ua, &[]);
    expect_without(&resp, (407, "WWW-Authenticate"), "unauthenticated INVITE");
    let chs = challenges(&resp, "Proxy-Authenticate");
    assert_eq!(
        chs.len(),
        2,
        "expected SHA-256 and MD5 Proxy-Authenticate: {chs:?}"
    );
    assert_eq!(chs[0].algorithm, Algorithm::Sha256, "{chs:?}");
    assert_eq!(chs[1].algorithm, Algorithm::Md5, "{chs:?}");
    assert_eq!(chs[0].nonce, chs[1].nonce);

    for (ch, nc) in [(&chs[0], 1), (&chs[1], 2)] {
        let alg = ch.algorithm;
        let creds = ch.answer_nc(USER, PASSWORD, "INVITE", &ua.invite_uri(DIALLED), nc);
        let resp = invite(&ua, &[("Proxy-Authorization", &creds)]);
        let code = status_code(&resp);
        assert!(
            !matches!(code, 401 | 403 | 407),
            "{} Proxy-Authorization was not accepted: {:?}\ndaemon log (tail):\n{}",
            alg.as_str(),
            first_line(&resp),
            tail(&d.log(), 20)
        );
        assert_eq!(
            code,
            503,
            "authenticated INVITE ({}): expected 503 (no carrier leg yet), got {:?}",
            alg.as_str(),
            first_line(&resp)
        );
        assert!(
            first_line(&resp).contains("No Carrier Available"),
            "503 reason: {:?}",
            first_line(&resp)
        );
    }
}

#[test]
fn source_outside_allowed_sources_gets_403_without_a_challenge() {
    let d = daemon_allowing("127.0.0.2/32");
    let ua = SipClient::new(d.sip);
    let resp = ua.request(&ua.register(FROM_USER, &[]));
    expect_without(&resp, (403, "WWW-Authenticate"), "REGISTER from 127.0.0.1");

    // credentials (on a made-up nonce) change nothing
    let made_up = Challenge {
        algorithm: Algorithm::Sha256,
        realm: REALM.to_string(),
        nonce: "A".repeat(32),
        qop: Some("auth".to_string()),
        stale: None,
    };
    let r = register(&ua, &made_up, TRUNK, 1);
    let resp = ua.request(&r);
    assert_eq!(
        status_code(&resp),
        403,
        "REGISTER with credentials: {:?}",
        first_line(&resp)
    );

    let resp = invite(&ua, &[]);
    expect_without(&resp, (403, "Proxy-Authenticate"), "INVITE from 127.0.0.1");
}

#[test]
fn source_inside_allowed_sources_registers() {
    let d = daemon_allowing("127.0.0.1/32");
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    let r = register(&ua, &chs[0], TRUNK, 1);
    let resp = ua.request(&r);
    expect_200_with_contact(&ua, &resp, "REGISTER from an allowed source", &d);
}

#[test]
fn restricted_trunk_credentials_from_another_source_get_403() {
    // t0 may register from anywhere, t1 only from 127.0.0.2: the request is challenged (t0 is
    // possible), but t1's valid credentials from 127.0.0.1 are refused.
    let t = format!(
        "{}\n{}allowed_sources = [\"127.0.0.2/32\"]\n",
        trunk("t0", USER, PASSWORD),
        trunk("t1", "restricted-id", PASSWORD)
    );
    let d = Daemon::start(BOTH, &t);
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    let r = register(&ua, &chs[0], ("restricted-id", PASSWORD), 1);
    let resp = ua.request(&r);
    assert_eq!(
        status_code(&resp),
        403,
        "restricted trunk from 127.0.0.1: {:?}\n{resp}",
        first_line(&resp)
    );
    let r = register(&ua, &chs[0], TRUNK, 2);
    let resp = ua.request(&r);
    expect_200_with_contact(&ua, &resp, "unrestricted trunk from 127.0.0.1", &d);
}

/// `nonce` with the character at `at` replaced by another base64url character.
fn tamper(nonce: &str, at: usize) -> String {
    let mut b = nonce.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ASCII nonce")
}

#[test]
fn tampered_nonce_gets_a_fresh_challenge() {
    let d = Daemon::start(
        &format!("{BOTH}\nnonce_lifetime = \"10s\""),
        &trunk("t0", USER, PASSWORD),
    );
    let ua = SipClient::new(d.sip);
    let chs = challenged(&ua, &d);
    let nonce = chs[0].nonce.clone();
    assert!(nonce.len() > 4, "nonce too short to tamper with: {nonce:?}");
    // first, middle and last character: the timestamp and the MAC part of the nonce
    for at in [0, nonce.len() / 2, nonce.len() - 1] {
        let bad_nonce = tamper(&nonce, at);
        assert_ne!(bad_nonce, nonce);
        let tampered = Challenge {
            nonce: bad_nonce.clone(),
            ..chs[0].clone()
        };
        let r = register(&ua, &tampered, TRUNK, 1);
        let resp = ua.request(&r);
        let fresh = expect_401(
            &resp,
            &format!("REGISTER with the nonce changed at {at}"),
            &d,
        );
        assert_eq!(fresh[0].algorithm, Algorithm::Sha256, "{fresh:?}");
        assert_ne!(
            fresh[0].nonce, bad_nonce,
            "the tampered nonce was handed back"
        );
        assert!(
            fresh.iter().all(|c| c.stale.is_none()),
            "a forged nonce must not be called stale: {fresh:?}"
        );
    }
    // the genuine nonce is still good afterwards
    let r = register(&ua, &chs[0], TRUNK, 1);
    let resp = ua.request(&r);
    expect_200_with_contact(&ua, &resp, "REGISTER with the genuine nonce", &d);
}

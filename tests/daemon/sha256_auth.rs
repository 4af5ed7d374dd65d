//! SHA-256 digest (RFC 7616 / RFC 8760) end to end, with a small UDP client of our own (sipp
//! 3.6 only does MD5): challenge order, qop=auth with nc replay detection, MD5 fallback, a trunk
//! that stores only a SHA-256 HA1, Proxy-Authorization on INVITE, source restrictions and
//! tampered nonces.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use trunkgate::sip::digest::{self, Algorithm};

use crate::harness::{
    ack, assert_logged_without_secret, challenges, credentials, header_values, rand_u64,
    status_code, tail, top_branch, trunk, Auth, Challenge, Daemon, SipClient, REALM,
};

/// The digest username (differs from the From/To user, as with 3CX).
const USER: &str = "pbx-auth-id";
const PASSWORD: &str = "Sha256-secret";
const FROM_USER: &str = "0501234567";
const BOTH: &str = "digest_algorithms = [\"SHA-256\", \"MD5\"]";
const FINAL_WAIT: Duration = Duration::from_secs(3);

fn first_line(s: &str) -> &str {
    s.split("\r\n").next().unwrap_or("")
}

/// A sent request: its bytes and its branch.
struct Sent {
    text: String,
    branch: String,
}

/// A minimal PBX: one Call-ID, increasing CSeq, a new branch per request.
struct Ua {
    client: SipClient,
    daemon: SocketAddr,
    call_id: String,
    tag: String,
    cseq: u32,
}

impl Ua {
    fn new(daemon: &Daemon) -> Ua {
        Ua {
            client: SipClient::new(),
            daemon: daemon.sip,
            call_id: format!("{:x}@sha256-test", rand_u64()),
            tag: format!("{:x}", rand_u64()),
            cseq: 0,
        }
    }

    fn new_branch() -> String {
        format!("z9hG4bK-sha-{:x}", rand_u64())
    }

    fn register_uri(&self) -> String {
        format!("sip:{}", self.daemon)
    }

    fn invite_uri(&self) -> String {
        format!("sip:+971501234567@{}", self.daemon)
    }

    fn contact(&self) -> String {
        format!("sip:{FROM_USER}@{};rinstance=sha256", self.client.addr())
    }

    /// A REGISTER, with `(header, value)` credentials if given.
    fn register(&mut self, auth: Option<(&str, &Auth)>) -> Sent {
        self.cseq += 1;
        let branch = Ua::new_branch();
        let uri = self.register_uri();
        let auth_line = auth
            .map(|(h, a)| format!("{h}: {}\r\n", credentials(a, "REGISTER", &uri)))
            .unwrap_or_default();
        let text = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{FROM_USER}@{d}>;tag={tag}\r\nTo: <sip:{FROM_USER}@{d}>\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n{auth_line}\
             User-Agent: sha256-test\r\nContent-Length: 0\r\n\r\n",
            me = self.client.addr(),
            d = self.daemon,
            tag = self.tag,
            cid = self.call_id,
            cseq = self.cseq,
            contact = self.contact(),
        );
        Sent { text, branch }
    }

    /// An INVITE with an SDP offer, with `(header, value)` credentials if given. Each INVITE
    /// starts a new call (new Call-ID and From tag).
    fn invite(&mut self, auth: Option<(&str, &Auth)>) -> Sent {
        self.cseq += 1;
        self.call_id = format!("{:x}@sha256-invite", rand_u64());
        self.tag = format!("{:x}", rand_u64());
        let branch = Ua::new_branch();
        let uri = self.invite_uri();
        let auth_line = auth
            .map(|(h, a)| format!("{h}: {}\r\n", credentials(a, "INVITE", &uri)))
            .unwrap_or_default();
        let me = self.client.addr();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n",
            ip = me.ip()
        );
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{FROM_USER}@{d}>;tag={tag}\r\nTo: <sip:+97141234567@{d}>\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:{FROM_USER}@{me}>\r\n{auth_line}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            d = self.daemon,
            tag = self.tag,
            cid = self.call_id,
            cseq = self.cseq,
            len = sdp.len(),
        );
        Sent { text, branch }
    }

    /// Sends `text` and returns the first final response of the transaction `branch`
    /// (retransmitted answers to earlier transactions are skipped).
    fn send(&self, text: &str, branch: &str) -> String {
        self.client.send(text.as_bytes(), self.daemon);
        let deadline = Instant::now() + FINAL_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(r) = self.client.recv(left) else {
                break;
            };
            if !r.starts_with("SIP/2.0 1") && top_branch(&r).as_deref() == Some(branch) {
                return r;
            }
        }
        panic!("no final response within {FINAL_WAIT:?} to:\n{text}");
    }

    fn exchange(&self, req: &Sent) -> String {
        self.send(&req.text, &req.branch)
    }

    /// ACK for a non-2xx final answer to an INVITE, so the daemon stops retransmitting it.
    fn ack(&self, invite: &Sent, resp: &str) {
        let uri = invite.text.split(' ').nth(1).expect("Request-URI");
        ack(&self.client, self.daemon, resp, uri);
    }
}

fn cnonce() -> String {
    format!("{:016x}", rand_u64())
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

fn expect_200_with_contact(ua: &Ua, resp: &str, what: &str, d: &Daemon) {
    assert_eq!(
        status_code(resp),
        200,
        "{what}: expected 200, got {:?}\n{resp}\ndaemon log (tail):\n{}",
        first_line(resp),
        tail(&d.log(), 20)
    );
    let want = format!("<{}>", ua.contact());
    assert!(
        header_values(resp, "Contact")
            .iter()
            .any(|c| c.starts_with(&want)),
        "{what}: 200 does not list our contact {want}:\n{resp}"
    );
}

fn daemon_both() -> Daemon {
    Daemon::start(BOTH, &trunk("t0", USER, PASSWORD))
}

/// The unauthenticated REGISTER's challenges.
fn challenged(ua: &mut Ua, d: &Daemon) -> Vec<Challenge> {
    let r = ua.register(None);
    let resp = ua.exchange(&r);
    expect_401(&resp, "unauthenticated REGISTER", d)
}

#[test]
fn sha256_challenges_come_first_and_qop_register_succeeds() {
    let d = daemon_both();
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    assert_eq!(
        chs.len(),
        2,
        "expected a SHA-256 and an MD5 challenge, got {chs:?}"
    );
    assert_eq!(
        chs[0].algorithm(),
        Algorithm::Sha256,
        "first challenge must be SHA-256 (RFC 8760): {chs:?}"
    );
    assert_eq!(
        chs[1].algorithm(),
        Algorithm::Md5,
        "second challenge must be MD5: {chs:?}"
    );
    assert_eq!(
        chs[0].nonce(),
        chs[1].nonce(),
        "both challenges carry the same nonce"
    );
    for c in &chs {
        assert_eq!(c.realm.as_deref(), Some(REALM), "realm: {c:?}");
        assert!(c.offers_auth(), "qop=\"auth\" not offered: {c:?}");
        assert!(c.stale.is_none(), "a first challenge is not stale: {c:?}");
    }
    let cn = cnonce();
    let auth = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: chs[0].nonce(),
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &auth)));
    assert!(r.text.contains("algorithm=SHA-256") && r.text.contains("nc=00000001"));
    let resp = ua.exchange(&r);
    expect_200_with_contact(&ua, &resp, "SHA-256 qop=auth REGISTER", &d);
}

#[test]
fn sha256_wrong_password_is_challenged_again() {
    let d = daemon_both();
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    let nonce = chs[0].nonce().to_string();
    let cn = cnonce();
    let bad = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: "not-the-password",
        nonce: &nonce,
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &bad)));
    let resp = ua.exchange(&r);
    let again = expect_401(&resp, "SHA-256 REGISTER with the wrong password", &d);
    assert_eq!(
        again[0].algorithm(),
        Algorithm::Sha256,
        "re-challenge order: {again:?}"
    );
    assert_logged_without_secret(&d, "wrong password", "not-the-password");
    // the same nonce with the right password (next nc) still works: only the password was wrong
    let good = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((2, &cn)),
    };
    let r = ua.register(Some(("Authorization", &good)));
    let resp = ua.exchange(&r);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER with the right password", &d);
}

#[test]
fn sha256_nonce_count_replay_is_refused_and_next_count_accepted() {
    let d = daemon_both();
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    let nonce = chs[0].nonce().to_string();
    let cn = cnonce();
    let auth = |nc| Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((nc, &cn)),
    };
    let first = ua.register(Some(("Authorization", &auth(1))));
    let resp = ua.exchange(&first);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER nc=00000001", &d);

    // the very same bytes as a new transaction: same nonce, same nc
    let replay_branch = Ua::new_branch();
    let replay = first.text.replacen(&first.branch, &replay_branch, 1);
    assert_ne!(replay, first.text);
    let resp = ua.send(&replay, &replay_branch);
    let again = expect_401(
        &resp,
        "replayed SHA-256 REGISTER (same nonce, same nc, new branch)",
        &d,
    );
    assert_eq!(
        again[0].algorithm(),
        Algorithm::Sha256,
        "re-challenge order: {again:?}"
    );
    assert!(
        d.log().contains("replayed nonce count"),
        "the replay was not logged as one:\n{}",
        tail(&d.log(), 20)
    );

    // the next nonce count on the same nonce is fine
    let next = ua.register(Some(("Authorization", &auth(2))));
    assert!(next.text.contains("nc=00000002"));
    let resp = ua.exchange(&next);
    expect_200_with_contact(&ua, &resp, "SHA-256 REGISTER nc=00000002", &d);
}

#[test]
fn md5_only_client_uses_the_second_challenge() {
    let d = daemon_both();
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    // a client that only knows MD5 takes the first challenge it understands
    let pos = chs
        .iter()
        .position(|c| c.algorithm() == Algorithm::Md5)
        .unwrap_or_else(|| panic!("no MD5 challenge offered: {chs:?}"));
    assert_eq!(pos, 1, "MD5 should be the second challenge: {chs:?}");
    let cn = cnonce();
    let auth = Auth {
        alg: Algorithm::Md5,
        user: USER,
        password: PASSWORD,
        nonce: chs[pos].nonce(),
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &auth)));
    assert!(r.text.contains("algorithm=MD5"));
    let resp = ua.exchange(&r);
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
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    assert_eq!(chs.len(), 1, "only SHA-256 is configured: {chs:?}");
    assert_eq!(chs[0].algorithm(), Algorithm::Sha256, "{chs:?}");
    let nonce = chs[0].nonce().to_string();
    let cn = cnonce();
    let sha = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &sha)));
    let resp = ua.exchange(&r);
    expect_200_with_contact(
        &ua,
        &resp,
        "SHA-256 REGISTER against a stored ha1_sha256",
        &d,
    );

    // MD5 with the right password on the same, valid nonce: not offered, no MD5 HA1
    let md5 = Auth {
        alg: Algorithm::Md5,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((2, &cn)),
    };
    let r = ua.register(Some(("Authorization", &md5)));
    let resp = ua.exchange(&r);
    let again = expect_401(&resp, "MD5 REGISTER for a SHA-256-only trunk", &d);
    assert!(
        again.iter().all(|c| c.algorithm() == Algorithm::Sha256),
        "re-challenge offers MD5: {again:?}"
    );
    // MD5 without qop either
    let md5_plain = Auth {
        alg: Algorithm::Md5,
        user: USER,
        password: PASSWORD,
        nonce: again[0].nonce(),
        qop: None,
    };
    let r = ua.register(Some(("Authorization", &md5_plain)));
    let resp = ua.exchange(&r);
    expect_401(&resp, "MD5 (no qop) REGISTER for a SHA-256-only trunk", &d);
}

#[test]
fn invite_is_challenged_with_407_and_proxy_authorization_is_accepted() {
    let d = daemon_both();
    let mut ua = Ua::new(&d);
    let inv = ua.invite(None);
    let resp = ua.exchange(&inv);
    ua.ack(&inv, &resp);
    assert_eq!(
        status_code(&resp),
        407,
        "unauthenticated INVITE: {:?}\n{resp}",
        first_line(&resp)
    );
    assert!(
        header_values(&resp, "WWW-Authenticate").is_empty(),
        "407 carries WWW-Authenticate:\n{resp}"
    );
    let chs = challenges(&resp, "Proxy-Authenticate");
    assert_eq!(
        chs.len(),
        2,
        "expected SHA-256 and MD5 Proxy-Authenticate: {chs:?}"
    );
    assert_eq!(chs[0].algorithm(), Algorithm::Sha256, "{chs:?}");
    assert_eq!(chs[1].algorithm(), Algorithm::Md5, "{chs:?}");
    assert_eq!(chs[0].nonce(), chs[1].nonce());
    let nonce = chs[0].nonce().to_string();
    let cn = cnonce();

    for (alg, nc) in [(Algorithm::Sha256, 1), (Algorithm::Md5, 2)] {
        let auth = Auth {
            alg,
            user: USER,
            password: PASSWORD,
            nonce: &nonce,
            qop: Some((nc, &cn)),
        };
        let inv = ua.invite(Some(("Proxy-Authorization", &auth)));
        let resp = ua.exchange(&inv);
        ua.ack(&inv, &resp);
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
    let t = format!(
        "{}allowed_sources = [\"127.0.0.2/32\"]\n",
        trunk("t0", USER, PASSWORD)
    );
    let d = Daemon::start(BOTH, &t);
    let mut ua = Ua::new(&d);
    let r = ua.register(None);
    let resp = ua.exchange(&r);
    assert_eq!(
        status_code(&resp),
        403,
        "REGISTER from 127.0.0.1: {:?}\n{resp}",
        first_line(&resp)
    );
    assert!(
        header_values(&resp, "WWW-Authenticate").is_empty(),
        "403 carries a challenge:\n{resp}"
    );

    // credentials (on a made-up nonce) change nothing
    let cn = cnonce();
    let auth = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &auth)));
    let resp = ua.exchange(&r);
    assert_eq!(
        status_code(&resp),
        403,
        "REGISTER with credentials: {:?}",
        first_line(&resp)
    );

    let inv = ua.invite(None);
    let resp = ua.exchange(&inv);
    ua.ack(&inv, &resp);
    assert_eq!(
        status_code(&resp),
        403,
        "INVITE from 127.0.0.1: {:?}",
        first_line(&resp)
    );
    assert!(
        header_values(&resp, "Proxy-Authenticate").is_empty(),
        "403 carries a challenge:\n{resp}"
    );
}

#[test]
fn source_inside_allowed_sources_registers() {
    let t = format!(
        "{}allowed_sources = [\"127.0.0.1/32\"]\n",
        trunk("t0", USER, PASSWORD)
    );
    let d = Daemon::start(BOTH, &t);
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    let cn = cnonce();
    let auth = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: chs[0].nonce(),
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &auth)));
    let resp = ua.exchange(&r);
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
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    let nonce = chs[0].nonce().to_string();
    let cn = cnonce();
    let restricted = Auth {
        alg: Algorithm::Sha256,
        user: "restricted-id",
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &restricted)));
    let resp = ua.exchange(&r);
    assert_eq!(
        status_code(&resp),
        403,
        "restricted trunk from 127.0.0.1: {:?}\n{resp}",
        first_line(&resp)
    );
    let open = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((2, &cn)),
    };
    let r = ua.register(Some(("Authorization", &open)));
    let resp = ua.exchange(&r);
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
    let mut ua = Ua::new(&d);
    let chs = challenged(&mut ua, &d);
    let nonce = chs[0].nonce().to_string();
    assert!(nonce.len() > 4, "nonce too short to tamper with: {nonce:?}");
    // first, middle and last character: the timestamp and the MAC part of the nonce
    for at in [0, nonce.len() / 2, nonce.len() - 1] {
        let bad_nonce = tamper(&nonce, at);
        assert_ne!(bad_nonce, nonce);
        let cn = cnonce();
        let auth = Auth {
            alg: Algorithm::Sha256,
            user: USER,
            password: PASSWORD,
            nonce: &bad_nonce,
            qop: Some((1, &cn)),
        };
        let r = ua.register(Some(("Authorization", &auth)));
        let resp = ua.exchange(&r);
        let fresh = expect_401(
            &resp,
            &format!("REGISTER with the nonce changed at {at}"),
            &d,
        );
        assert_eq!(fresh[0].algorithm(), Algorithm::Sha256, "{fresh:?}");
        assert_ne!(
            fresh[0].nonce(),
            bad_nonce,
            "the tampered nonce was handed back"
        );
        assert!(
            fresh.iter().all(|c| c.stale.is_none()),
            "a forged nonce must not be called stale: {fresh:?}"
        );
    }
    // the genuine nonce is still good afterwards
    let cn = cnonce();
    let auth = Auth {
        alg: Algorithm::Sha256,
        user: USER,
        password: PASSWORD,
        nonce: &nonce,
        qop: Some((1, &cn)),
    };
    let r = ua.register(Some(("Authorization", &auth)));
    let resp = ua.exchange(&r);
    expect_200_with_contact(&ua, &resp, "REGISTER with the genuine nonce", &d);
}

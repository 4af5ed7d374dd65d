//! REGISTER and OPTIONS with sipp as the PBX: digest MD5 with and without qop, wrong password,
//! an auth username that differs from the From user, refresh, expiry, re-registration,
//! unregistration, and 10 % packet loss.

use std::time::Duration;

use crate::harness::*;
use crate::sip_client::{header_values, status_code, SipClient};
use crate::sipp::{auth_csv, Scenario, SippRun};

/// `scenario` against `d` for `from_user`, answering challenges as `auth_user` / `password`
/// (with sipp arguments `extra` after them).
fn register(d: &Daemon, scenario: &str, login: (&str, &str, &str), extra: &[&str]) -> SippRun {
    let csv = auth_csv(d.dir.path(), login.0, login.1, login.2);
    Scenario::uac(scenario, d.sip)
        .args(&["-inf", &csv])
        .args(extra)
        .run(Duration::from_secs(65))
}

/// [`register`] without more arguments, which must succeed (`what` it is).
fn register_ok(d: &Daemon, scenario: &str, login: (&str, &str, &str), what: &str) {
    d.assert_sipp_ok(&register(d, scenario, login, &[]), what);
}

const TRUNK: (&str, &str, &str) = ("user0", "user0", "secret");

#[test]
fn register_md5_with_qop() {
    let d = Daemon::start_default();
    register_ok(&d, "reg_auth.xml", TRUNK, "MD5 qop=auth registration");
    assert!(
        d.log().contains("registered"),
        "daemon log shows no registration"
    );
}

#[test]
fn register_md5_without_qop_like_3cx() {
    let d = Daemon::start("digest_qop = false", &trunk("t0", "user0", "secret"));
    register_ok(&d, "reg_auth.xml", TRUNK, "MD5 no-qop registration");
}

#[test]
fn auth_username_may_differ_from_from_user() {
    let d = Daemon::start_default();
    // 3CX: From/To carry the trunk's number, the digest username is the Authentication ID
    let login = ("0501234567", "user0", "secret");
    register_ok(&d, "reg_auth.xml", login, "a different auth username");
}

#[test]
fn wrong_password_is_challenged_again_and_counted() {
    let d = Daemon::start_default();
    let wrong = ("user0", "user0", "not-the-password");
    register_ok(&d, "reg_wrong_password.xml", wrong, "wrong password: 401");
    d.assert_logged_without_secret("wrong password", "not-the-password");
    // and the right password still works afterwards
    register_ok(&d, "reg_auth.xml", TRUNK, "registration after a failure");
}

#[test]
fn unknown_user_is_refused() {
    let d = Daemon::start_default();
    let unknown = ("user9", "user9", "secret");
    register_ok(&d, "reg_wrong_password.xml", unknown, "unknown user: 401");
    let run = register(&d, "reg_auth.xml", unknown, &[]);
    assert!(
        !run.success,
        "registration of an unknown user unexpectedly succeeded"
    );
}

#[test]
fn refresh_expiry_reregistration_and_unregister() {
    let d = Daemon::start("min_expires = 1", &trunk("t0", "user0", "secret"));
    register_ok(&d, "reg_lifecycle.xml", TRUNK, "registration lifecycle");
    assert!(
        d.log().contains("registration bindings expired"),
        "expiry not logged"
    );
}

#[test]
fn every_registration_completes_under_ten_percent_loss() {
    let d = Daemon::start_default();
    // 40 registrations, 4 at a time; sipp drops 10 % of what it sends and receives, and
    // retransmits on its 500 ms timer: the daemon's transactions absorb the retransmissions.
    let loss = [
        "-m",
        "40",
        "-l",
        "4",
        "-r",
        "20",
        "-lost",
        "10",
        "-max_retrans",
        "10",
    ];
    let run = register(&d, "reg_auth.xml", TRUNK, &loss);
    d.assert_sipp_ok(&run, "registrations under 10 % loss");
}

#[test]
fn options_is_answered_without_authentication() {
    let d = Daemon::start_default();
    let run = Scenario::uac("options.xml", d.sip)
        .args(&["-m", "3"])
        .run(Duration::from_secs(65));
    d.assert_sipp_ok(&run, "OPTIONS");
}

#[test]
fn invite_without_credentials_is_challenged_with_407() {
    let d = Daemon::start_default();
    let c = SipClient::new(d.sip);
    let invite = c.invite("0501234567", &[]);
    let r = c.request(&invite);
    assert_eq!(status_code(&r), 407, "{r}");
    assert!(
        header_values(&r, "Proxy-Authenticate")[0].starts_with("Digest realm=\"trunkgate.test\"")
    );
    // The challenge is stateless (nothing kept for an unauthenticated source): the
    // retransmitted INVITE gets a 407 of its own with the same To tag, and a fresh nonce.
    let again = c.request(&invite);
    let without_nonce = |r: &str| {
        r.lines()
            .filter(|l| !l.starts_with("Proxy-Authenticate"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_nonce(&r), without_nonce(&again));
    // and nothing more: no Timer G retransmission of a 407 that nobody ACKs
    assert_eq!(c.recv(Duration::from_millis(1200)), None);
}

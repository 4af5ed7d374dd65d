//! REGISTER and OPTIONS with sipp as the PBX: digest MD5 with and without qop, wrong password,
//! an auth username that differs from the From user, refresh, expiry, re-registration,
//! unregistration, and 10 % packet loss.

use crate::harness::*;

fn creds_csv(daemon: &Daemon, from_user: &str, auth_user: &str, password: &str) -> String {
    let p = write_csv(
        daemon.dir.path(),
        &format!("{from_user}-{auth_user}.csv"),
        &format!(
            "SEQUENTIAL\n{from_user};[authentication username={auth_user} password={password}]\n"
        ),
    );
    p.to_string_lossy().into_owned()
}

#[test]
fn register_md5_with_qop() {
    let d = Daemon::start_default();
    let csv = creds_csv(&d, "user0", "user0", "secret");
    let out = sipp("reg_auth.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "MD5 qop=auth registration");
    assert!(
        d.log().contains("registered"),
        "daemon log shows no registration"
    );
}

#[test]
fn register_md5_without_qop_like_3cx() {
    let d = Daemon::start("digest_qop = false", &trunk("t0", "user0", "secret"));
    let csv = creds_csv(&d, "user0", "user0", "secret");
    let out = sipp("reg_auth.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "MD5 no-qop registration");
}

#[test]
fn auth_username_may_differ_from_from_user() {
    let d = Daemon::start_default();
    // 3CX: From/To carry the trunk's number, the digest username is the Authentication ID
    let csv = creds_csv(&d, "0501234567", "user0", "secret");
    let out = sipp("reg_auth.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "registration with a different auth username");
}

#[test]
fn wrong_password_is_challenged_again_and_counted() {
    let d = Daemon::start_default();
    let csv = creds_csv(&d, "user0", "user0", "not-the-password");
    let out = sipp("reg_wrong_password.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "wrong password gets 401");
    assert_logged_without_secret(&d, "wrong password", "not-the-password");
    // and the right password still works afterwards
    let good = creds_csv(&d, "user0", "user0", "secret");
    let out = sipp("reg_auth.xml", d.sip, &["-inf", &good, "-m", "1"]);
    assert_sipp_ok(&out, &d, "registration after a failure");
}

#[test]
fn unknown_user_is_refused() {
    let d = Daemon::start_default();
    let csv = creds_csv(&d, "user9", "user9", "secret");
    let out = sipp("reg_wrong_password.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "unknown user gets 401");
    let out = sipp("reg_auth.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_fails(&out, "registration of an unknown user");
}

#[test]
fn refresh_expiry_reregistration_and_unregister() {
    let d = Daemon::start("min_expires = 1", &trunk("t0", "user0", "secret"));
    let csv = creds_csv(&d, "user0", "user0", "secret");
    let out = sipp("reg_lifecycle.xml", d.sip, &["-inf", &csv, "-m", "1"]);
    assert_sipp_ok(&out, &d, "registration lifecycle");
    assert!(
        d.log().contains("registration bindings expired"),
        "expiry not logged"
    );
}

#[test]
fn every_registration_completes_under_ten_percent_loss() {
    let d = Daemon::start_default();
    let csv = creds_csv(&d, "user0", "user0", "secret");
    // 40 registrations, 4 at a time; sipp drops 10 % of what it sends and receives, and
    // retransmits on its 500 ms timer: the daemon's transactions absorb the retransmissions.
    let out = sipp(
        "reg_auth.xml",
        d.sip,
        &[
            "-inf",
            &csv,
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
        ],
    );
    assert_sipp_ok(&out, &d, "registrations under 10 % loss");
}

#[test]
fn options_is_answered_without_authentication() {
    let d = Daemon::start_default();
    let out = sipp("options.xml", d.sip, &["-m", "3"]);
    assert_sipp_ok(&out, &d, "OPTIONS");
}

#[test]
fn invite_without_credentials_is_challenged_with_407() {
    let d = Daemon::start_default();
    let c = SipClient::new();
    let me = c.addr();
    let to = d.sip;
    let invite = format!(
        "INVITE sip:0501234567@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=a1\r\nTo: <sip:0501234567@{to}>\r\n\
         Call-ID: inv1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    let r = c.request(&invite, to);
    assert_eq!(status_code(&r), 407, "{r}");
    assert!(
        header_values(&r, "Proxy-Authenticate")[0].starts_with("Digest realm=\"trunkgate.test\"")
    );
    // The challenge is stateless (nothing kept for an unauthenticated source): the
    // retransmitted INVITE gets a 407 of its own with the same To tag, and a fresh nonce.
    let again = c.request(&invite, to);
    let without_nonce = |r: &str| {
        r.lines()
            .filter(|l| !l.starts_with("Proxy-Authenticate"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_nonce(&r), without_nonce(&again));
    // and nothing more: no Timer G retransmission of a 407 that nobody ACKs
    assert_eq!(c.recv(std::time::Duration::from_millis(1200)), None);
}

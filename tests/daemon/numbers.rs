//! The destination policy applied to authenticated INVITEs by the running daemon, and the
//! `number` admin command.

use crate::harness::*;
use crate::sip_client::{header_values, status_code, SipClient};

fn refusal(resp: &str) -> (u16, String) {
    (status_code(resp), header_values(resp, "Warning").join(" "))
}

#[test]
fn invalid_and_disallowed_numbers_are_refused_before_the_carrier() {
    let d = Daemon::start_default();
    let c = SipClient::new(d.sip);
    let (code, warning) = refusal(&c.authenticated_invite("12345", "user0", "secret"));
    assert_eq!(code, 484, "{warning}");
    assert!(warning.contains("not a valid AE number"), "{warning}");
    let (code, warning) = refusal(&c.authenticated_invite("00447400123456", "user0", "secret"));
    assert_eq!(code, 403, "{warning}");
    assert!(warning.contains("GB"), "{warning}");
    let (code, _) = refusal(&c.authenticated_invite("900012345", "user0", "secret"));
    assert_eq!(code, 403, "premium rate must be refused by default");
    // an allowed UAE mobile passes the policy (and then meets the missing carrier leg: 503)
    let (code, _) = refusal(&c.authenticated_invite("0501234567", "user0", "secret"));
    assert_eq!(code, 503);
    let log = d.log();
    assert!(
        log.contains("destination=+971501234567"),
        "{}",
        tail(&log, 10)
    );
    assert_eq!(
        log.matches("dialled number refused").count(),
        3,
        "{}",
        tail(&log, 20)
    );
}

#[test]
fn per_trunk_override_allows_international_for_one_trunk_only() {
    let trunks = format!(
        "{}{}[trunks.numbers]\nallowed_countries = [\"AE\", \"GB\"]\n",
        trunk("local", "user0", "secret"),
        trunk("intl", "user1", "secret")
    );
    let d = Daemon::start("", &trunks);
    let c = SipClient::new(d.sip);
    let r = c.authenticated_invite("+447400123456", "user0", "secret");
    assert_eq!(status_code(&r), 403, "{r}");
    let r = c.authenticated_invite("+447400123456", "user1", "secret");
    assert_eq!(status_code(&r), 503, "intl trunk passes the policy: {r}");
}

fn number_cmd(args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = trunkgate(&[&["number"], args].concat());
    (code, stdout)
}

#[test]
fn number_command_reports_each_input_and_exit_status() {
    let conf = repo_root().join("conf/trunkgate.toml");
    let conf = conf.to_str().expect("path");
    let (code, out) = number_cmd(&[
        "--config",
        conf,
        "0501234567",
        "00971501234567",
        "043456789",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("+971501234567").count(), 2, "{out}");
    assert!(
        out.contains("fixed_line") && out.contains("allowed"),
        "{out}"
    );
    let (code, out) = number_cmd(&["--config", conf, "0501234567", "+447400123456"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused 403"), "{out}");
}

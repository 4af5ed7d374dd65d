//! The daemon's carrier leg as separate processes: `trunkgate run` against `trunkgate sim`
//! over real TLS and WebSocket on loopback; and the demo's in-process simulator.

use crate::harness::*;
use crate::http::http_json;
use crate::sim_process::SimProcess;
use crate::sip_client::{status_code, SipClient};

const CARRIER_USER: &str = "gw@sim.test";
const CARRIER_PASS: &str = "carrier-secret-5d1f";

#[test]
fn daemon_subscribes_at_start_and_unsubscribes_on_sigterm() {
    let sim = SimProcess::start(CARRIER_USER, CARRIER_PASS);
    let mut daemon = Daemon::start(
        "",
        &format!(
            "{}\n{}",
            trunk("t0", "user0", "secret"),
            sim.carrier_toml(CARRIER_USER, CARRIER_PASS)
        ),
    );
    sim.wait_subscriptions("one live subscription with its socket", |s| {
        s.len() == 1 && s[0]["ws_connected"] == true && s[0]["deleted"] == false
    });
    daemon.wait_log("notification channel connected");
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    let subs = sim.subscriptions();
    assert_eq!(subs[0]["deleted"], true, "{subs:?}");
    daemon.assert_logged_without_secret("carrier subscription created", CARRIER_PASS);
}

#[test]
fn wrong_carrier_password_is_logged_once_and_the_daemon_keeps_serving() {
    let sim = SimProcess::start(CARRIER_USER, CARRIER_PASS);
    let daemon = Daemon::start(
        "",
        &format!(
            "{}\n{}",
            trunk("t0", "user0", "secret"),
            sim.carrier_toml(CARRIER_USER, "not-the-password")
        ),
    );
    daemon.wait_log("HTTP 401");
    // Several retries (100 ms backoff doubling to 400 ms) within this second...
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (_, stats) = http_json(sim.control, "GET", "/stats", None);
    assert!(stats["unauthorized"].as_u64().unwrap_or(0) >= 3, "{stats}");
    // ... but one log line for the unchanged error, and no secret in it.
    let log = daemon.log();
    assert_eq!(log.matches("HTTP 401").count(), 1, "{}", tail(&log, 30));
    assert!(!log.contains("not-the-password"));
    assert!(sim.subscriptions().is_empty());
    // SIP still served, and OPTIONS tells a dispatcher no call could leave now.
    let client = SipClient::new(daemon.sip);
    let r = client.request(&client.options(&[]));
    assert_eq!(status_code(&r), 503, "{r}");
    assert!(r.contains("No Carrier Subscribed"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");
}

#[test]
fn demo_style_config_runs_the_simulator_in_process() {
    let daemon = Daemon::start(
        "",
        &format!(
            "{}\n[carrier]\nsimulate = true\n",
            trunk("t0", "user0", "secret")
        ),
    );
    daemon.wait_log("notification channel connected");
    // The simulator's control API is named in the log; ask it to call us.
    let log = daemon.log();
    let control = log
        .split("control=http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("control address in the log")
        .parse()
        .expect("socket address");
    let (code, v) = http_json(
        control,
        "POST",
        "/originate",
        Some(r#"{"to":"+97142001000","from":"+971509990000"}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["delivered"], true, "{v}");
    let session = v["session"].as_str().expect("session").to_string();
    // No call bridge yet: the daemon rejects it at the carrier, and says so.
    daemon.wait_log("inbound carrier call rejected");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, call) = http_json(control, "GET", &format!("/calls/{session}"), None);
        if call["state"] == "ENDED" {
            assert_eq!(call["ended_by"], "client", "{call}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{call}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

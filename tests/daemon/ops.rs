//! Operations against the real daemon: `/metrics` as Prometheus text whose counters follow the
//! traffic, `/status` and `/healthz`, call records that survive `kill -9` and follow a rotation
//! on SIGHUP, and SIGTERM draining a call (new INVITEs 503, BYE on both legs after the grace
//! period, records written, exit 0).

use std::time::{Duration, Instant};

use crate::call_support::*;
use crate::harness::*;
use crate::http::{http_get, metric, parse_prometheus};
use crate::sim_process::SimProcess;
use crate::sip_client::{header_values, status_code, SipClient};

#[test]
fn metrics_status_and_healthz_follow_the_traffic() {
    let d = Daemon::start_default();
    let status = d.status_addr();
    assert!(status.ip().is_loopback());
    let (code, text) = http_get(status, "/metrics");
    assert_eq!(code, 200, "{text}");
    let before = parse_prometheus(&text);
    let client = SipClient::new(d.sip);
    for _ in 0..3 {
        let r = client.request(&client.options(&[]));
        assert_eq!(status_code(&r), 200);
    }
    let r = client.authenticated_invite("12", "user0", "secret");
    assert_eq!(status_code(&r), 484, "{r}");
    let (_, text) = http_get(status, "/metrics");
    let after = parse_prometheus(&text);
    let delta = |s: &str| metric(&after, s) - metric(&before, s);
    assert_eq!(
        delta("trunkgate_sip_requests_total{method=\"OPTIONS\"}"),
        3.0,
        "{text}"
    );
    assert_eq!(
        delta("trunkgate_sip_requests_total{method=\"INVITE\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(
        delta("trunkgate_sip_responses_total{code=\"407\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        delta("trunkgate_sip_responses_total{code=\"484\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &after,
            "trunkgate_calls_total{direction=\"outbound\",outcome=\"invalid_number\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(delta("trunkgate_sip_number_refusals_total"), 1.0, "{text}");

    let (code, body) = http_get(status, "/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["trunks"][0]["name"], "t0");
    assert_eq!(v["trunks"][0]["registered"], false);
    assert!(
        v["active_calls"].as_array().is_some_and(|a| a.is_empty()),
        "{v}"
    );
    let (code, body) = http_get(status, "/healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
}

#[test]
fn records_survive_kill_9_and_follow_rotation_on_sighup() {
    let b = Bridge::start();
    let client = SipClient::new(b.daemon.sip);
    let r = client.authenticated_invite("12", TRUNK_USER, TRUNK_PASS);
    assert_eq!(status_code(&r), 484, "{r}");
    // an answered call the carrier hangs up
    let sipp = b.held_call();
    std::thread::sleep(Duration::from_millis(1500));
    let session = b.session(0);
    b.carrier_does(&session, "hangup", None);
    let run = sipp.wait();
    b.assert_sipp_ok(&run, "call_wait_bye.xml");
    // the record is written when the call ends: poll (bounded), then kill -9
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.daemon.cdrs().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut b = b;
    b.daemon.signal(libc::SIGKILL);
    b.daemon.wait_exit(Duration::from_secs(10)).expect("killed");
    let cdrs = b.daemon.cdrs();
    b.check(cdrs.len() == 2, || {
        format!("expected 2 records after kill -9, got {cdrs:#?}")
    });
    let refused = &cdrs[0];
    assert_eq!(refused["sip_code"], 484, "{refused}");
    assert_eq!(refused["direction"], "outbound");
    assert_eq!(refused["called_raw"], "12");
    assert!(refused["answered"].is_null());
    let call = &cdrs[1];
    assert_eq!(call["sip_code"], 200, "{call}");
    assert_eq!(call["ended_by"], "carrier", "{call}");
    assert_eq!(call["called"], ANSWER_E164, "{call}");
    assert_eq!(call["carrier_session"], session.as_str(), "{call}");
    assert_eq!(call["trunk"], TRUNK);
    assert!(
        call["answered"]
            .as_u64()
            .is_some_and(|a| a >= call["started"].as_u64().unwrap_or(u64::MAX)),
        "{call}"
    );
    assert!(
        call["ended"].as_u64() >= call["answered"].as_u64(),
        "{call}"
    );
    assert!(
        call["rtp_packets_from_pbx"]
            .as_u64()
            .is_some_and(|n| n > 20),
        "{call}"
    );
    assert!(
        call["rtp_packets_to_pbx"].as_u64().is_some_and(|n| n > 20),
        "{call}"
    );
}

#[test]
fn sighup_reopens_the_record_file_after_rotation() {
    let d = Daemon::start_default();
    let client = SipClient::new(d.sip);
    let attempt = || {
        let r = client.authenticated_invite("12", "user0", "secret");
        assert_eq!(status_code(&r), 484, "{r}");
    };
    attempt();
    let rotated = d.dir.path().join("cdr.jsonl.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.cdrs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(d.cdr_path(), &rotated).expect("rotate");
    d.signal(libc::SIGHUP);
    d.wait_log("call record file reopened");
    attempt();
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.cdrs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "rotated file: {old}");
    assert_eq!(d.cdrs().len(), 1, "new file after SIGHUP");
    assert!(d.log().contains("SIGHUP"), "the reload is logged");
}

#[test]
fn sigterm_drains_a_call_refuses_new_ones_and_exits_0() {
    let b = Bridge::start_with("", "drain_grace = \"3s\"");
    let sipp = b.held_call();
    let mut b = b;
    let stopped_at = Instant::now();
    b.daemon.signal(libc::SIGTERM);
    b.daemon.wait_log("draining calls");
    // a new call while draining: 503 with Retry-After, never reaching the carrier
    let client = SipClient::new(b.daemon.sip);
    let r = client.authenticated_invite(ANSWER_DIALLED, TRUNK_USER, TRUNK_PASS);
    b.check(status_code(&r) == 503, || {
        format!("expected 503 while draining, got:\n{r}")
    });
    b.check(!header_values(&r, "Retry-After").is_empty(), || {
        format!("503 without Retry-After:\n{r}")
    });
    // the call up continues for the grace period, then gets BYE
    let run = sipp.wait();
    b.assert_sipp_ok(&run, "call_wait_bye.xml (BYE from the draining daemon)");
    let status = b
        .daemon
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon exits after the drain");
    let took = stopped_at.elapsed();
    b.check(status.success(), || format!("exit status {status:?}"));
    b.check(took >= Duration::from_millis(2500), || {
        format!("the call was ended after {took:?}, before the 3 s grace")
    });
    let calls = b.calls();
    b.check(
        calls.len() == 1 && calls[0]["state"] == "ENDED" && calls[0]["ended_by"] == "client",
        || {
            format!(
                "expected one carrier call, ended by the gateway: {}",
                pretty(&calls)
            )
        },
    );
    let cdrs = b.daemon.cdrs();
    b.check(cdrs.len() == 2, || {
        format!("expected the drained call and the refused one: {cdrs:#?}")
    });
    let drained = cdrs
        .iter()
        .find(|r| r["sip_code"] == 200)
        .expect("the answered call's record");
    assert_eq!(drained["ended_by"], "gateway", "{drained}");
    let refused = cdrs
        .iter()
        .find(|r| r["sip_code"] == 503)
        .expect("the refused call's record");
    assert!(refused["answered"].is_null());
    b.sim
        .wait_subscriptions("the subscription deleted at exit", |s| {
            s.iter().all(|s| s["deleted"] == true)
        });
}

#[test]
fn sighup_applies_a_new_password_while_a_call_is_up() {
    let b = Bridge::start();
    let sipp = b.held_call();
    let path = b.daemon.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let old = format!("password = \"{TRUNK_PASS}\"");
    assert!(text.contains(&old), "the trunk's password line in:\n{text}");
    std::fs::write(
        &path,
        text.replace(&old, "password = \"rotated-secret-77\""),
    )
    .unwrap();
    b.daemon.signal(libc::SIGHUP);
    b.daemon.wait_log("configuration reloaded");
    let client = SipClient::new(b.daemon.sip);
    let r = client.authenticated_invite("12", TRUNK_USER, TRUNK_PASS);
    b.check(status_code(&r) == 407, || {
        format!("the old password must fail after the reload:\n{r}")
    });
    let r = client.authenticated_invite("12", TRUNK_USER, "rotated-secret-77");
    b.check(status_code(&r) == 484, || {
        format!("the new password must pass (then 484 for \"12\"):\n{r}")
    });
    // the call set up before the reload is still up, and ends normally
    let calls = b.calls();
    b.check(calls.len() == 1 && calls[0]["state"] == "ANSWERED", || {
        format!("the call must survive the reload: {}", pretty(&calls))
    });
    b.carrier_does(&b.session(0), "hangup", None);
    let run = sipp.wait();
    b.assert_sipp_ok(&run, "call_wait_bye.xml across a reload");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_configuration() {
    let d = Daemon::start_default();
    let path = d.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("realm = ", "realm = 42\nrelm = ")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("reload refused");
    let log = d.log();
    assert!(
        log.contains("sip.realm") || log.contains("relm"),
        "the error names the key:\n{}",
        tail(&log, 10)
    );
    let client = SipClient::new(d.sip);
    let r = client.authenticated_invite("12", "user0", "secret");
    assert_eq!(
        status_code(&r),
        484,
        "the running configuration still authenticates:\n{r}"
    );
    let r = client.request(&client.options(&[]));
    assert_eq!(status_code(&r), 200);
}

#[test]
fn sighup_applies_a_new_carrier_password() {
    let sim = SimProcess::start("gw@reload.test", "the-right-one-5521");
    let d = Daemon::start(
        "",
        &format!(
            "{}\n{}",
            trunk("t0", "user0", "secret"),
            sim.carrier_toml("gw@reload.test", "an-old-one-0017")
        ),
    );
    d.wait_log("HTTP 401");
    assert!(sim.subscriptions().is_empty());
    let (_, text) = http_get(d.status_addr(), "/metrics");
    let m = parse_prometheus(&text);
    assert!(
        metric(&m, "trunkgate_carrier_rest_errors_total{account=\"sim\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&m, "trunkgate_carrier_subscribed{account=\"sim\"}"),
        0.0,
        "{text}"
    );
    let path = d.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("an-old-one-0017", "the-right-one-5521")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    sim.wait_subscriptions("a subscription with the reloaded password", |s| {
        s.iter().any(|s| s["ws_connected"] == true)
    });
    // OPTIONS follows: 200 once an account is subscribed (the dispatcher may send calls).
    let client = SipClient::new(d.sip);
    let ok = wait_until(Duration::from_secs(5), || {
        let r = client.exchange_within(&client.options(&[]), Duration::from_millis(300))?;
        r.starts_with("SIP/2.0 200").then_some(())
    });
    assert!(ok.is_some(), "OPTIONS still not 200 after the subscription");
    let log = d.log();
    assert!(
        !log.contains("the-right-one-5521") && !log.contains("an-old-one-0017"),
        "secrets logged"
    );
    assert!(!log.contains("needs a restart"), "{}", tail(&log, 20));
}

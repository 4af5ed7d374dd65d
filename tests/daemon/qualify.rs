//! Qualifying registered contacts: the daemon sends a registered PBX OPTIONS on its own; an
//! answer shows it reachable, silence (Timer F) unreachable in `/status` and `/metrics`, and a
//! carrier call for that trunk is then refused at once instead of ringing into the void.

use std::time::{Duration, Instant};

use crate::call_support::*;
use crate::harness::*;
use crate::http::{http_json, metric};
use crate::sip_client::{header_values, status_code, SipClient};

/// The next OPTIONS the daemon sends the PBX, within `wait`.
fn next_options(pbx: &SipClient, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(m) = pbx.recv(Duration::from_millis(200)) {
            if m.starts_with("OPTIONS ") {
                return Some(m);
            }
        }
    }
    None
}

/// A 200 to `req`, as a PBX answers an OPTIONS.
fn ok_to(req: &str) -> String {
    let mut r = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in header_values(req, name) {
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

fn contact(b: &Bridge) -> serde_json::Value {
    b.daemon.status()["trunks"][0]["contacts"][0].clone()
}

#[test]
fn a_pbx_that_stops_answering_options_is_unreachable_and_its_carrier_calls_refused_at_once() {
    // T1 50 ms: Timer F (64 T1) is 3.2 s
    let b = Bridge::start_full("t1 = \"50ms\"\nqualify_interval = \"1s\"", "", "");
    let pbx = SipClient::new(b.daemon.sip);
    let r = pbx
        .register_trunk(TRUNK_USER, TRUNK_PASS)
        .expect("registered");
    assert_eq!(status_code(&r), 200, "{r}");

    let options = next_options(&pbx, Duration::from_secs(5)).expect("an OPTIONS after REGISTER");
    assert!(
        options.starts_with(&format!("OPTIONS {} ", pbx.contact(TRUNK_USER))),
        "{options}"
    );
    pbx.send_raw(ok_to(&options).as_bytes());
    let reachable = wait_until(Duration::from_secs(5), || {
        (contact(&b)["qualify"] == "reachable").then_some(())
    });
    assert!(reachable.is_some(), "{}", b.daemon.status()["trunks"]);
    assert_eq!(b.daemon.status()["trunks"][0]["reachable"], true);
    let series = format!("trunkgate_trunk_reachable{{trunk=\"{TRUNK}\"}}");
    assert_eq!(metric(&b.daemon.metrics(), &series), 1.0);

    // From now on the PBX stays silent.
    let gone = wait_until(Duration::from_secs(15), || {
        (contact(&b)["qualify"] == "unreachable").then_some(())
    });
    assert!(gone.is_some(), "{}", b.daemon.status()["trunks"]);
    assert_eq!(b.daemon.status()["trunks"][0]["reachable"], false);
    let m = b.daemon.metrics();
    assert_eq!(metric(&m, &series), 0.0);
    assert!(metric(&m, "trunkgate_sip_qualify_timeouts_total") >= 1.0);
    assert!(metric(&m, "trunkgate_sip_qualify_requests_total") >= 2.0);

    // A carrier call for the trunk: refused with 480 without an INVITE to the PBX.
    let (code, v) = http_json(
        b.sim.control,
        "POST",
        "/originate",
        Some(r#"{"to":"+97142001000","from":"+971509990000","mode":"tone"}"#),
    );
    assert!(
        code == 200 && v["delivered"] == true,
        "originate: {code} {v}"
    );
    let record = wait_until(Duration::from_secs(5), || {
        b.daemon
            .cdrs()
            .into_iter()
            .find(|r| r["direction"] == "inbound")
    })
    .expect("the refused carrier call's record");
    assert_eq!(record["sip_code"], 480, "{record}");
    assert!(record.to_string().contains("Unreachable"), "{record}");
    let invite = pbx
        .everything(Duration::from_millis(300))
        .into_iter()
        .find(|m| m.starts_with("INVITE "));
    assert!(invite.is_none(), "the PBX was sent {invite:?}");
    assert!(b.daemon.log().contains("does not answer OPTIONS"));
}

//! Two instances sharing state through a real Redis, without a proxy in front: a REGISTER
//! taken by one is the other's registration too, and a digest answer spent on one is refused
//! as a replay on the other.

use std::time::Duration;

use crate::edge::Redis;
use crate::harness::*;
use crate::sim_process::SimProcess;
use crate::sip_client::{find_challenge, status_code, SipClient};
use trunkgate::sip::digest::Algorithm;

const SECRET: &str = "shared-nonce-secret-for-tests";

fn instance(node: &str, redis: &Redis, sim: &SimProcess, user: &str) -> Daemon {
    Daemon::start(
        "",
        &format!(
            "{}\n{}\n[cluster]\nnode = \"{node}\"\nredis = \"{}\"\nsecret = \"{SECRET}\"\n",
            trunk("t0", "user0", "secret"),
            sim.carrier_toml(user, "pw"),
            redis.url()
        ),
    )
}

#[test]
fn two_instances_share_registrations_and_refuse_a_replayed_digest() {
    let redis = Redis::start();
    let sim = SimProcess::start_full(
        "gw-a",
        "pw",
        "[[users]]\nusername = \"gw-b\"\npassword = \"pw\"\n",
        "",
    );
    let a = instance("a", &redis, &sim, "gw-a");
    let b = instance("b", &redis, &sim, "gw-b");
    for d in [&a, &b] {
        let up = wait_until(Duration::from_secs(10), || {
            (d.status()["cluster"]["redis"] == "up").then_some(())
        });
        assert!(up.is_some(), "{}", d.status()["cluster"]);
    }

    // A REGISTER to a is b's registration too.
    let pbx = SipClient::new(a.sip);
    let first = pbx.register("user0", &[]);
    let r = pbx.exchange(&first).expect("a challenge");
    assert_eq!(status_code(&r), 401, "{r}");
    let creds = find_challenge(&r, "WWW-Authenticate", Algorithm::Md5)
        .expect("an MD5 challenge")
        .answer("user0", "secret", "REGISTER", &first.uri);
    let r = pbx
        .exchange(&pbx.register("user0", &[("Authorization", &creds)]))
        .expect("an answer");
    assert_eq!(status_code(&r), 200, "{r}");
    let shared = wait_until(Duration::from_secs(5), || {
        let t = b.status()["trunks"][0].clone();
        (t["registered"] == true).then_some(t)
    })
    .unwrap_or_else(|| panic!("b never saw the registration: {}", b.status()));
    assert_eq!(shared["contact"], pbx.contact("user0").as_str(), "{shared}");
    assert_eq!(shared["pbx"], pbx.addr().to_string(), "{shared}");

    // The same answer replayed to b by someone else, for their own contact: b's own check
    // passes it, the cluster finds it spent, and b puts the registration back as it was.
    let thief = SipClient::new(a.sip);
    let replay = thief.register("user0", &[("Authorization", &creds)]);
    let to_b = SipClient::new(b.sip);
    to_b.send_raw(replay.text.as_bytes());
    let r = to_b
        .final_response(Some(&replay.branch), Duration::from_secs(5))
        .expect("an answer at b");
    assert_eq!(status_code(&r), 200, "{r}");
    let reverted = wait_until(Duration::from_secs(5), || {
        let s = b.status();
        (s["cluster"]["replays_refused"] == 1 && s["trunks"][0]["contact"] == pbx.contact("user0"))
            .then_some(())
    });
    assert!(
        reverted.is_some(),
        "b kept the replayed binding: {}",
        b.status()
    );
    assert!(b.log().contains("put back"), "{}", tail(&b.log(), 20));
    assert_eq!(a.status()["trunks"][0]["contact"], pbx.contact("user0"));

    // An INVITE authenticated at a; the same answer (no qop: one use per nonce) in a new call
    // sent to b: b's own check passes it, the cluster refuses it.
    let first = pbx.invite("0501234567", &[]);
    let r = pbx.exchange_invite(&first).expect("a challenge");
    assert_eq!(status_code(&r), 407, "{r}");
    let creds = find_challenge(&r, "Proxy-Authenticate", Algorithm::Md5)
        .expect("an MD5 challenge")
        .without_qop()
        .answer("user0", "secret", "INVITE", &first.uri);
    let second = pbx.retry(&first, &[("Proxy-Authorization", &creds)]);
    let r = pbx.exchange_invite(&second).expect("a final response at a");
    assert_eq!(status_code(&r), 200, "{r}");
    pbx.ack(&second, &r);

    let replay = pbx.invite("0501234567", &[("Proxy-Authorization", &creds)]);
    to_b.send_raw(replay.text.as_bytes());
    let r = to_b
        .final_response(Some(&replay.branch), Duration::from_secs(5))
        .expect("a final response at b");
    assert_eq!(status_code(&r), 403, "{r}");
    assert!(r.contains("Credentials Already Used"), "{r}");
    assert_eq!(b.status()["cluster"]["replays_refused"], 2);
    let records = wait_until(Duration::from_secs(5), || {
        let c = b.cdrs();
        (!c.is_empty()).then_some(c)
    })
    .expect("b's record of the refused replay");
    assert_eq!(records[0]["sip_code"], 403, "{records:?}");
}

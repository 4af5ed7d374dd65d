//! Scale-out behind Kamailio (issue 14), on loopback: the shipped `conf/kamailio/kamailio.cfg`
//! in front of two instances sharing state through Redis, sipp as the PBX talking only to
//! Kamailio, the simulator with one carrier account per instance. One test per item of the
//! issue's test list; the failover figures are printed (`--nocapture`) for the README, and
//! only generous bounds on them are asserted.

use std::time::{Duration, Instant};

use crate::call_support::ANSWER_DIALLED;
use crate::call_support::{echo_shortfall, g711a_packets, pcap_shortfall_at_carrier, states};
use crate::cluster_support::{rtp_count, Cluster, ACCOUNTS};
use crate::edge::{Kamailio, PROBE_INTERVAL_S};
use crate::harness::{repo_root, trunkgate, wait_until};
use crate::sip_client::SipClient;
use crate::sipp::free_media_port;

/// Both instances answer their first probes.
fn probed_active(c: &Cluster) {
    c.wait_dispatcher(["AP", "AP"], Duration::from_secs(10));
}

#[test]
fn the_shipped_edge_and_instance_configs_check() {
    let list = repo_root().join("conf/kamailio/dispatcher.list");
    let out = std::process::Command::new("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(Kamailio::config())
        .arg("-A")
        .arg(format!("DS_LIST=\"{}\"", list.display()))
        .output()
        .expect("run kamailio -c (tests/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("config file ok"),
        "kamailio -c refused conf/kamailio/kamailio.cfg:\n{text}"
    );
    for node in ["node-a", "node-b"] {
        let file = repo_root().join(format!("conf/cluster/{node}.toml"));
        let (code, out, err) = trunkgate(&["check-config", "--config", &file.to_string_lossy()]);
        assert_eq!(code, 0, "check-config conf/cluster/{node}.toml: {out}{err}");
    }
}

#[test]
fn a_pbx_registers_and_calls_out_through_the_edge_with_both_instances_probed_active() {
    let c = Cluster::start("");
    probed_active(&c);

    c.register_shared();

    // the answer names the instance's own address, so the audio flows straight between
    // sipp and the instance; only the signalling goes through the edge
    let media = free_media_port();
    let capture = c.capture_toward_pbx(media);
    let run = c
        .call("edge_echo.xml", ANSWER_DIALLED)
        .media_port(media)
        .run(Duration::from_secs(60));
    let captured = capture.finish();
    c.assert_sipp_ok(
        &run,
        "edge_echo.xml (auth, answer, pcap audio, BYE through the edge)",
    );
    if let Some(e) = echo_shortfall(&g711a_packets(), &captured, 1) {
        c.fail(&e);
    }
}

#[test]
fn carrier_calls_on_either_instance_ring_the_registered_contact_through_the_edge() {
    let c = Cluster::start("");
    probed_active(&c);
    let pbx_port = c.register_shared();
    // the REGISTER reached one instance; a call on each instance covers the other one
    for (i, (account, _)) in ACCOUNTS.iter().enumerate() {
        let media = free_media_port();
        let capture = c.capture_toward_pbx(media);
        let uas = c.uas("edge_inbound_uas.xml", pbx_port, media);
        c.originate_on(i);
        let run = uas.wait();
        let captured = capture.finish();
        c.assert_sipp_ok(
            &run,
            &format!("edge_inbound_uas.xml (carrier call on instance {i}, rinstance kept)"),
        );
        let call = wait_until(Duration::from_secs(10), || {
            c.calls()
                .get(i)
                .filter(|call| call["state"] == "ENDED")
                .cloned()
        })
        .unwrap_or_else(|| c.fail(&format!("carrier call {i} never ended")));
        if call["username"] != *account {
            c.fail(&format!("call {i} was on account {}", call["username"]));
        }
        if !states(&call).iter().any(|s| s == "ANSWERED") {
            c.fail(&format!("carrier call {i} never answered"));
        }
        if let Some(e) = pcap_shortfall_at_carrier(&call) {
            c.fail(&format!("PBX → carrier on instance {i}: {e}"));
        }
        let toward_pbx = rtp_count(&captured);
        if toward_pbx < 100 {
            c.fail(&format!(
                "carrier → PBX on instance {i}: {toward_pbx} RTP packets reached sipp"
            ));
        }
    }
}

#[test]
fn a_trunks_max_calls_holds_across_the_instances() {
    let c = Cluster::start("max_calls = 1\n");
    probed_active(&c);
    let held = c
        .call("edge_wait_bye.xml", ANSWER_DIALLED)
        .spawn(Duration::from_secs(60));
    let holder = c.wait_answered(1);
    let other = 1 - holder;
    // Each attempt has a fresh Call-ID, hashed to either instance (and the edge tries the
    // other one after a 503): attempts until the instance without the call refused one.
    let mut refused_by_other = false;
    for _ in 0..8 {
        let code = c.final_code(ANSWER_DIALLED);
        if code != Some(503) {
            c.fail(&format!(
                "a second call on a trunk with max_calls = 1 got {code:?}, not 503"
            ));
        }
        refused_by_other = c.node(other).cdrs().iter().any(|r| r["sip_code"] == 503);
        if refused_by_other {
            break;
        }
    }
    if !refused_by_other {
        c.fail(&format!(
            "instance {other} (without the call) never refused one"
        ));
    }
    if c.calls().len() != 1 {
        c.fail("a refused call reached the carrier");
    }
    let session = c.calls()[0]["session"].as_str().unwrap_or("").to_string();
    let path = format!("/calls/{session}/hangup");
    let _ = crate::http::http_json(c.sim.control, "POST", &path, None);
    let run = held.wait();
    c.assert_sipp_ok(
        &run,
        "edge_wait_bye.xml (the held call, ended by the carrier)",
    );
}

/// Short calls through the edge until one is answered (at most `within`): the time from
/// `t0` and the attempts that failed.
fn until_a_call_succeeds(c: &Cluster, t0: Instant, within: Duration) -> (Duration, u32) {
    let mut failed = 0;
    while t0.elapsed() < within {
        if c.final_code(ANSWER_DIALLED) == Some(200) {
            return (t0.elapsed(), failed);
        }
        failed += 1;
    }
    c.fail(&format!(
        "no call succeeded within {within:?} ({failed} failed)"
    ));
}

#[test]
fn sigterm_takes_an_instance_out_of_rotation_and_its_call_ends_through_the_route_set() {
    let mut c = Cluster::start("");
    probed_active(&c);
    let held = c
        .call("edge_wait_bye.xml", ANSWER_DIALLED)
        .spawn(Duration::from_secs(60));
    let x = c.wait_answered(1);
    let y = 1 - x;
    let t0 = Instant::now();
    c.node(x).signal(libc::SIGTERM);
    // a call hashed to the draining instance gets its 503 and fails over at once
    let (ok_after, failed) = until_a_call_succeeds(&c, t0, Duration::from_secs(20));

    let client = SipClient::new(c.node(x).sip);
    let options_503 = wait_until(Duration::from_secs(3), || {
        let r = client.exchange_within(&client.options(&[]), Duration::from_millis(200))?;
        r.starts_with("SIP/2.0 503").then_some(())
    });
    if options_503.is_none() {
        c.fail(&format!("draining instance {x} never answered OPTIONS 503"));
    }
    let mut want = ["AP", "AP"];
    want[x] = "IP";
    // one probe interval from the signal, plus the probe's own round trip and the poll
    let bound = Duration::from_secs(PROBE_INTERVAL_S + 2);
    c.wait_dispatcher(want, bound.saturating_sub(t0.elapsed()));
    let out_of_rotation = t0.elapsed();
    println!(
        "cluster SIGTERM failover: new calls succeed after {:.1} s, {failed} call(s) lost, \
         out of the dispatcher's rotation after {:.1} s",
        ok_after.as_secs_f64(),
        out_of_rotation.as_secs_f64()
    );
    for _ in 0..3 {
        if c.final_code(ANSWER_DIALLED) != Some(200) {
            c.fail("a call after the drain started failed");
        }
    }
    let after: Vec<_> = c.calls().into_iter().skip(1).collect();
    if let Some(stray) = after.iter().find(|call| call["username"] != ACCOUNTS[y].0) {
        c.fail(&format!(
            "a new call reached the draining instance: {stray}"
        ));
    }
    // drain_grace (3 s) over: the instance's BYE reaches sipp through the edge
    let run = held.wait();
    c.assert_sipp_ok(&run, "edge_wait_bye.xml (BYE from the drained instance)");
    if c.nodes[x].wait_exit(Duration::from_secs(15)).is_none() {
        c.fail(&format!("instance {x} did not exit after its drain"));
    }
}

#[test]
fn kill_9_on_an_instance_new_calls_succeed_through_the_other_and_no_record_is_lost() {
    let mut c = Cluster::start("");
    probed_active(&c);
    // completed calls until each instance wrote a record of one
    let answered = |c: &Cluster, i: usize| {
        c.node(i)
            .cdrs()
            .iter()
            .filter(|r| r["sip_code"] == 200)
            .count()
    };
    for _ in 0..10 {
        if c.final_code(ANSWER_DIALLED) != Some(200) {
            c.fail("a call before the kill failed");
        }
        if answered(&c, 0) > 0 && answered(&c, 1) > 0 {
            break;
        }
    }
    let before = [0, 1].map(|i| c.node(i).cdrs().len());
    let victim = 0;
    let t0 = Instant::now();
    c.node(victim).signal(libc::SIGKILL);
    let _ = c.nodes[victim].wait_exit(Duration::from_secs(5));

    let (ok_after, mut failed) = until_a_call_succeeds(&c, t0, Duration::from_secs(20));
    // Calls hashed to the dead instance wait out its silence, then fail over.
    for _ in 0..4 {
        if c.final_code(ANSWER_DIALLED) != Some(200) {
            failed += 1;
        }
    }
    println!(
        "cluster kill -9 failover: new calls succeed after {:.1} s, {failed} call(s) lost",
        ok_after.as_secs_f64()
    );
    if failed > 0 {
        c.fail(&format!("{failed} call(s) failed after the kill"));
    }
    let mut want = ["AP", "AP"];
    want[victim] = "IP";
    c.wait_dispatcher(want, Duration::from_secs(PROBE_INTERVAL_S + 3));
    let kept = c.node(victim).cdrs().len();
    if kept != before[victim] || before[victim] == 0 {
        c.fail(&format!(
            "the killed instance had {} record(s), its file now holds {kept}",
            before[victim]
        ));
    }
}

#[test]
fn redis_restarted_mid_test_calls_keep_working_and_bindings_are_shared_again() {
    let mut c = Cluster::start("");
    probed_active(&c);
    c.register_shared();

    c.redis.stop();
    let redis_is = |c: &Cluster, want: &str| {
        let all = wait_until(Duration::from_secs(15), || {
            (0..2)
                .all(|i| c.node(i).status()["cluster"]["redis"] == want)
                .then_some(())
        });
        if all.is_none() {
            c.fail(&format!("the instances never showed Redis {want}"));
        }
    };
    redis_is(&c, "down");
    // calls keep working on each instance: calls until both instances carried one
    let mut served = [false, false];
    for _ in 0..10 {
        if c.final_code(ANSWER_DIALLED) != Some(200) {
            c.fail("a call with Redis down failed");
        }
        let last = c.calls().last().cloned().unwrap_or_default();
        if let Some(i) = Cluster::instance_of(&last) {
            served[i] = true;
        }
        if served == [true, true] {
            break;
        }
    }
    if served != [true, true] {
        c.fail(&format!(
            "with Redis down, calls reached instances {served:?} only"
        ));
    }

    c.redis.resume();
    redis_is(&c, "up");
    // a new binding (the PBX registers from another port) reaches both instances again
    c.register_shared();
}

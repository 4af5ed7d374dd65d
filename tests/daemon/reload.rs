//! A reload reaches the calls: SIGHUP with a changed `[numbers]` and `calls.rtp_timeout` while a
//! call is up is followed by the next call (the number policy refuses what it now blocks, and
//! its record says so) and by the call already up (the media timeout now ends it once its PBX
//! falls silent), and the reload names nothing as needing a restart.

use crate::call_support::*;
use crate::sip_client::{status_code, SipClient};

#[test]
fn a_reload_reaches_the_next_call_and_the_call_already_up() {
    // No media timeout at the start: the held call, whose PBX falls silent once its pcap
    // (about 7 s) is played, would stay up until sipp gives up.
    let b = Bridge::start_with("", "rtp_timeout = \"0s\"");
    let sipp = b.held_call();

    let path = b.daemon.config_path();
    let text = std::fs::read_to_string(&path).expect("the daemon's config");
    let off = "rtp_timeout = \"0s\"";
    assert!(text.contains(off), "the [calls] line in:\n{text}");
    let reloaded = format!(
        "{}\n\n[numbers]\nblocked_prefixes = [\"+97150123\"]\n",
        text.replace(off, "rtp_timeout = \"2s\"")
    );
    std::fs::write(&path, reloaded).expect("rewrite the config");
    b.daemon.signal(libc::SIGHUP);
    b.daemon.wait_log("configuration reloaded");

    // The next call: the number the held call dialled is now blocked.
    let client = SipClient::new(b.daemon.sip);
    let r = client.authenticated_invite(ANSWER_DIALLED, TRUNK_USER, TRUNK_PASS);
    b.check(status_code(&r) == 403, || {
        format!("{ANSWER_DIALLED} is blocked after the reload, expected 403:\n{r}")
    });

    // The call already up: ended by the media timeout it did not have when it started.
    let run = sipp.wait();
    b.assert_sipp_ok(&run, "call_wait_bye.xml: BYE from the reloaded RTP timeout");
    b.daemon.wait_log("no RTP from the PBX");

    let cdrs = b.daemon.cdrs();
    let refused = cdrs.iter().find(|r| r["sip_code"] == 403);
    b.check(
        refused.is_some_and(|r| r["called_raw"] == ANSWER_DIALLED && r["ended_by"] == "gateway"),
        || format!("a record of the refused call: {cdrs:#?}"),
    );
    let ended = cdrs.iter().find(|r| r["sip_code"] == 200);
    b.check(ended.is_some_and(|r| r["ended_by"] == "gateway"), || {
        format!("the held call's record, ended by the gateway: {cdrs:#?}")
    });
    let log = b.daemon.log();
    b.check(!log.contains("applies only after a restart"), || {
        format!(
            "nothing changed needs a restart:\n{}",
            crate::harness::tail(&log, 30)
        )
    });
}

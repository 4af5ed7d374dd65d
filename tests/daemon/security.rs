//! Issue 11, the SIP edge on a public address: digest credentials bound to their Request-URI,
//! one-shot nonces without qop, bans after repeated failures (visible in /status, /metrics, the
//! log and the `bans` / `unban` commands, kept across SIGHUP), scanner user agents dropped,
//! challenges and OPTIONS answered without transaction state, a flood from several addresses
//! that leaves the trunk and its calls working, and emergency numbers admitted over a full call
//! limit. Every peer is a raw UDP client on its own 127.0.0.x address (or sipp on 127.0.0.1),
//! every wait is bounded, every loop has a fixed count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use trunkgate::sip::digest::{self, Algorithm};

use crate::call_support::*;
use crate::harness::*;
use crate::http::{http_get, metric, parse_prometheus};
use crate::sip_client::{find_challenge, first_line, status_code, Challenge, Request, SipClient};

/// How long a peer listens for a response that must not come.
const SILENCE: Duration = Duration::from_millis(1500);
/// The trunk every daemon here has (the one `Daemon::start_default` has).
const USER: &str = "user0";
const PASSWORD: &str = "secret";

const TRANSACTIONS: &str = "trunkgate_sip_server_transactions";
const TRANSACTIONS_LIMIT: &str = "trunkgate_sip_server_transactions_limit";
const BANS_TOTAL: &str = "trunkgate_security_bans_total";
const BANNED_NOW: &str = "trunkgate_security_banned_addresses";
const STATELESS: &str = "trunkgate_sip_stateless_responses_total";

fn auth_failures(reason: &str) -> String {
    format!("trunkgate_sip_auth_failures_by_reason_total{{reason=\"{reason}\"}}")
}

fn dropped(reason: &str) -> String {
    format!("trunkgate_security_dropped_datagrams_total{{reason=\"{reason}\"}}")
}

/// A daemon with trunk `t0` (`user0` / `secret`) and these `[security]` lines.
fn daemon(security: &str) -> Daemon {
    Daemon::start("", &security_tables(security))
}

fn security_tables(security: &str) -> String {
    format!("{}\n[security]\n{security}\n", trunk("t0", USER, PASSWORD))
}

/// A peer on `ip` talking to the daemon at `d`.
fn peer(ip: [u8; 4], d: &Daemon) -> SipClient {
    SipClient::bind(ip, d.sip)
}

/// `register_trunk` that must end in 200.
fn assert_registers(peer: &SipClient, d: &Daemon, what: &str) {
    match peer.register_trunk(USER, PASSWORD) {
        Ok(r) if status_code(&r) == 200 => {}
        Ok(r) => panic!(
            "{what}: the trunk's REGISTER from {} got {:?}\n{r}\ndaemon log (tail):\n{}",
            peer.addr(),
            first_line(&r),
            tail(&d.log(), 40)
        ),
        Err(e) => panic!(
            "{what}: the trunk's REGISTER from {}: {e}\ndaemon log (tail):\n{}",
            peer.addr(),
            tail(&d.log(), 40)
        ),
    }
}

/// Asserts `req` gets no datagram at all back within `SILENCE`.
fn assert_ignored(peer: &SipClient, req: &Request, what: &str, d: &Daemon) {
    peer.send(req);
    if let Some(r) = peer.recv(SILENCE) {
        panic!(
            "{what}: expected no reply to {} from {}, got {:?}\ndaemon log (tail):\n{}",
            first_line(&req.text),
            peer.addr(),
            first_line(&r),
            tail(&d.log(), 30)
        );
    }
}

/// Asserts an OPTIONS from `peer` is answered 200.
fn assert_options_200(peer: &SipClient, what: &str, d: &Daemon) {
    match peer.exchange_retransmitting(&peer.options(&[]), 4) {
        Some(r) if status_code(&r) == 200 => {}
        other => panic!(
            "{what}: OPTIONS from {} expected 200, got {:?}\ndaemon log (tail):\n{}",
            peer.addr(),
            other.as_deref().map(first_line),
            tail(&d.log(), 30)
        ),
    }
}

/// A `User-Agent` header.
fn ua(agent: &str) -> [(&str, &str); 1] {
    [("User-Agent", agent)]
}

/// The MD5 challenge (nonce, qop offer) of a 401/407.
fn md5_challenge(resp: &str, header: &str) -> Challenge {
    find_challenge(resp, header, Algorithm::Md5)
        .unwrap_or_else(|| panic!("no MD5 {header} in\n{resp}"))
}

/// The PBX's first INVITE to `dialled`, without credentials: its 407, ACKed, and the MD5
/// challenge in it.
fn challenged_invite(b: &Bridge, pbx: &SipClient, dialled: &str) -> (Request, Challenge) {
    let inv = pbx.invite(dialled, &[]);
    let r = pbx
        .exchange_invite(&inv)
        .unwrap_or_else(|| b.fail("no answer to the unauthenticated INVITE"));
    b.check(status_code(&r) == 407, || format!("expected 407:\n{r}"));
    let ch = md5_challenge(&r, "Proxy-Authenticate");
    (inv, ch)
}

/// `pbx`'s INVITE to `dialled` with `creds` as its Proxy-Authorization, and its final
/// response, ACKed; `what` names it when none comes.
fn invite_with(
    b: &Bridge,
    pbx: &SipClient,
    (dialled, creds): (&str, &str),
    what: &str,
) -> (Request, String) {
    let inv = pbx.invite(dialled, &[("Proxy-Authorization", creds)]);
    let r = pbx
        .exchange_invite(&inv)
        .unwrap_or_else(|| b.fail(&format!("no final answer to {what}")));
    (inv, r)
}

/// The trunk's MD5 answer to `ch` for an INVITE to `uri`, without qop, as 3CX answers: a
/// `Proxy-Authorization` header.
fn no_qop(ch: &Challenge, uri: &str) -> String {
    ch.without_qop().answer(USER, PASSWORD, "INVITE", uri)
}

/// The value of `series`, which the daemon must publish.
fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("/metrics has no {series}"))
}

/// Polls /metrics (bounded, 15 s) until `ok` holds for the value of `series`; returns all
/// metrics then, or panics with the value seen and the log.
fn wait_metric(
    d: &Daemon,
    series: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = d.metrics();
        if m.contains_key(series) && ok(value(&m, series)) {
            return m;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: {series} = {} (present: {})\ndaemon log (tail):\n{}",
                metric(&m, series),
                m.contains_key(series),
                tail(&d.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The entries of `/status`'s `bans` for `address`.
fn bans_for(status: &Value, address: &str) -> Vec<Value> {
    status["bans"]
        .as_array()
        .unwrap_or_else(|| panic!("/status has no \"bans\" array: {status}"))
        .iter()
        .filter(|b| b["address"] == address)
        .cloned()
        .collect()
}

/// The value of `name=` in a text-format log line (quotes removed).
fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    let rest = &line[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next().unwrap_or(""),
        None => rest.split(' ').next().unwrap_or(""),
    })
}

/// What a brute-force run saw.
struct BruteForce {
    /// Wrong-password REGISTERs answered 401 before the daemon fell silent.
    challenged: usize,
    /// The attempt (1-based) that first got no reply.
    first_unanswered: Option<usize>,
    /// Digest `response` values sent (none may reach the log).
    responses: Vec<String>,
    /// A reply that came after the silence began.
    reply_while_banned: Option<String>,
}

/// The password of wrong attempt `i`: each differs, all share a prefix no log line may contain.
fn guess(i: usize) -> String {
    format!("guess-{i:04}-Brute")
}
const GUESS_PREFIX: &str = "-Brute";

/// `attempts` REGISTERs with wrong passwords (MD5, no qop, each on the nonce of the previous
/// 401) from `peer`. Until the first one goes unanswered each waits for its 401 (which must
/// carry a fresh nonce); after that the rest are sent back to back and anything coming back
/// is recorded. `between` runs every 25 attempts (a legitimate trunk registering meanwhile).
fn brute_force(
    peer: &SipClient,
    d: &Daemon,
    attempts: usize,
    mut between: impl FnMut(usize),
) -> BruteForce {
    let first = peer.register(USER, &[]);
    let r = peer
        .exchange(&first)
        .unwrap_or_else(|| panic!("no 401 to the first REGISTER from {}", peer.addr()));
    assert_eq!(status_code(&r), 401, "{r}");
    let mut challenge = md5_challenge(&r, "WWW-Authenticate").without_qop();
    let mut out = BruteForce {
        challenged: 0,
        first_unanswered: None,
        responses: Vec::new(),
        reply_while_banned: None,
    };
    for i in 0..attempts {
        if i % 25 == 0 {
            between(i);
        }
        let password = guess(i);
        let value = challenge.answer(USER, &password, "REGISTER", &first.uri);
        let sent = digest::parse_credentials(&value).expect("the digest client's own value");
        out.responses.push(sent.response);
        let req = peer.register(USER, &[("Authorization", &value)]);
        if out.first_unanswered.is_some() {
            peer.send(&req);
            if out.reply_while_banned.is_none() {
                if let Some(r) = peer.recv(Duration::from_millis(1)) {
                    out.reply_while_banned = Some(r);
                }
            }
            continue;
        }
        match peer.exchange(&req) {
            Some(r) => {
                assert_eq!(
                    status_code(&r),
                    401,
                    "wrong password {i} from {}: expected 401, got {:?}\ndaemon log (tail):\n{}",
                    peer.addr(),
                    first_line(&r),
                    tail(&d.log(), 30)
                );
                let fresh = md5_challenge(&r, "WWW-Authenticate").without_qop();
                assert_ne!(
                    fresh.nonce, challenge.nonce,
                    "attempt {i}: the 401 repeats the nonce"
                );
                challenge = fresh;
                out.challenged += 1;
            }
            None => out.first_unanswered = Some(i + 1),
        }
    }
    if out.reply_while_banned.is_none() {
        out.reply_while_banned = peer.recv(SILENCE);
    }
    out
}

/// Bans `peer`'s address for authentication failures (the daemon's `ban_after` is `ban_after`)
/// and checks it is silent afterwards.
fn ban(peer: &SipClient, d: &Daemon, ban_after: usize) {
    let run = brute_force(peer, d, ban_after + 3, |_| {});
    assert!(
        run.first_unanswered.is_some() && run.reply_while_banned.is_none(),
        "{} was not banned after {} wrong passwords ({} answered 401, then {:?})\n\
         daemon log (tail):\n{}",
        peer.addr(),
        ban_after + 3,
        run.challenged,
        run.reply_while_banned.as_deref().map(first_line),
        tail(&d.log(), 30)
    );
    assert_ignored(peer, &peer.options(&[]), "a banned address", d);
}

// ------------------------------------------------------------------------ digest binding

/// A valid Proxy-Authorization for one Request-URI, put on an INVITE to another: 400,
/// `uri_mismatch`, and the carrier sees nothing; the same credential builder on the URI it
/// was made for does reach the carrier.
#[test]
fn digest_for_another_request_uri_is_400_and_never_reaches_the_carrier() {
    let b = Bridge::start();
    let d = &b.daemon;
    let pbx = peer([127, 0, 0, 1], d);
    let signed_for = format!("sip:0505550107@{}", d.sip);
    let before = d.metrics();

    let (_, ch) = challenged_invite(&b, &pbx, "0505550777");
    let creds = no_qop(&ch, &signed_for);
    let what = "the re-targeted INVITE";
    let (retargeted, r) = invite_with(&b, &pbx, ("0505550777", &creds), what);
    b.check(status_code(&r) == 400, || {
        format!(
            "credentials for {signed_for} on an INVITE to {}: expected 400, got {:?}\n{r}",
            retargeted.uri,
            first_line(&r)
        )
    });
    let m = wait_metric(
        d,
        &auth_failures("uri_mismatch"),
        "the re-targeted INVITE counted",
        |v| v == value(&before, &auth_failures("uri_mismatch")) + 1.0,
    );
    b.check(
        value(&m, &auth_failures("wrong_password"))
            == value(&before, &auth_failures("wrong_password")),
        || "a URI mismatch must not be counted as a wrong password".into(),
    );

    // Control: the same builder, on the URI the credentials are for, reaches the carrier (a
    // number the simulator rejects with 603, so the call ends at once).
    let target = format!("sip:{REJECT_DIALLED}@{}", d.sip);
    let (_, ch) = challenged_invite(&b, &pbx, REJECT_DIALLED);
    let creds = no_qop(&ch, &target);
    let (_, r) = invite_with(&b, &pbx, (REJECT_DIALLED, &creds), "the control INVITE");
    b.check(status_code(&r) == 603, || {
        format!("control INVITE with matching URI: expected the carrier's 603, got:\n{r}")
    });
    b.wait_calls(
        "only the control call (to +971500000603), nothing for 0505550777",
        Duration::from_secs(10),
        |c| {
            c.len() == 1
                && c[0]["to"].as_str().is_some_and(|t| t.contains("500000603"))
                && !c.iter().any(|c| {
                    c["to"]
                        .as_str()
                        .is_some_and(|t| t.contains("505550777") || t.contains("505550107"))
                })
        },
    );
}

/// 3CX answers challenges without qop: such a nonce is good for one INVITE. The same
/// Proxy-Authorization on a new INVITE (new Call-ID, new branch) is a replay: 407 stale=true,
/// counted as `replay`, and the carrier sees one call only.
#[test]
fn no_qop_credentials_replayed_on_a_new_invite_get_stale_407_and_no_second_call() {
    let b = Bridge::start();
    let d = &b.daemon;
    let pbx = peer([127, 0, 0, 1], d);
    let before = d.metrics();
    let (inv, ch) = challenged_invite(&b, &pbx, REJECT_DIALLED);
    let creds = no_qop(&ch, &inv.uri);
    assert!(!creds.contains("qop="), "{creds}");

    let what = "the authenticated INVITE";
    let (first, r) = invite_with(&b, &pbx, (REJECT_DIALLED, &creds), what);
    b.check(status_code(&r) == 603, || {
        format!("the authenticated INVITE should reach the carrier (603 from it), got:\n{r}")
    });
    b.wait_calls(
        "the first call at the carrier",
        Duration::from_secs(10),
        |c| c.len() == 1,
    );

    let what = "the replayed INVITE";
    let (replay, r) = invite_with(&b, &pbx, (REJECT_DIALLED, &creds), what);
    assert_ne!(replay.branch, first.branch);
    b.check(status_code(&r) == 407, || {
        format!("replayed no-qop credentials: expected 407, got:\n{r}")
    });
    let again = md5_challenge(&r, "Proxy-Authenticate");
    b.check(
        again
            .stale
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        || format!("the replay's 407 must say stale=true: {again:?}\n{r}"),
    );
    b.check(again.nonce != ch.nonce, || {
        format!("the stale 407 must carry a fresh nonce: {again:?}")
    });
    wait_metric(d, &auth_failures("replay"), "the replay counted", |v| {
        v == value(&before, &auth_failures("replay")) + 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    let calls = b.calls();
    b.check(calls.len() == 1, || {
        format!("the replay must not reach the carrier: {}", pretty(&calls))
    });
}

// ------------------------------------------------------------------------------- bans

/// 300 wrong passwords from 127.0.0.5: a fresh 401 each until `ban_after`, then silence; the
/// trunk on 127.0.0.1 registers throughout; the ban shows in /status, /metrics and the log
/// (once), and no guessed password or digest response reaches the log.
#[test]
fn brute_force_bans_the_address_while_the_trunk_keeps_registering() {
    const BAN_AFTER: usize = 10;
    let d = daemon(&format!("ban_after = {BAN_AFTER}\nban_time = \"1h\""));
    let attacker = peer([127, 0, 0, 5], &d);
    let trunk = peer([127, 0, 0, 1], &d);
    assert_registers(&trunk, &d, "before the attack");
    let mut trunk_registrations = 1;
    let run = brute_force(&attacker, &d, 300, |i| {
        assert_registers(
            &trunk,
            &d,
            &format!("after {i} wrong passwords from 127.0.0.5"),
        );
        trunk_registrations += 1;
    });
    assert_registers(&trunk, &d, "after the attack");
    let log = d.log();
    assert!(
        run.challenged == BAN_AFTER - 1 || run.challenged == BAN_AFTER,
        "expected the first {} or {BAN_AFTER} wrong passwords answered 401 and silence after, \
         got {} answered (first unanswered: {:?})\ndaemon log (tail):\n{}",
        BAN_AFTER - 1,
        run.challenged,
        run.first_unanswered,
        tail(&log, 40)
    );
    assert!(
        run.first_unanswered.is_some_and(|n| n <= BAN_AFTER + 1),
        "attempt {} must get no reply, first unanswered was {:?}",
        BAN_AFTER + 1,
        run.first_unanswered
    );
    assert!(
        run.reply_while_banned.is_none(),
        "the banned address got a reply: {:?}",
        run.reply_while_banned.as_deref().map(first_line)
    );
    assert_eq!(trunk_registrations, 13);

    let m = wait_metric(&d, &dropped("banned"), "datagrams dropped as banned", |v| {
        v > 0.0
    });
    assert_eq!(value(&m, BANS_TOTAL), 1.0, "{BANS_TOTAL}");
    assert_eq!(value(&m, BANNED_NOW), 1.0, "{BANNED_NOW}");
    assert_eq!(
        value(&m, &auth_failures("wrong_password")),
        BAN_AFTER as f64,
        "wrong passwords counted before the ban"
    );

    let status = d.status();
    let bans = bans_for(&status, "127.0.0.5");
    assert_eq!(bans.len(), 1, "/status bans: {}", status["bans"]);
    let ban = &bans[0];
    assert_eq!(ban["reason"], "auth_failures", "{ban}");
    assert_eq!(ban["failures"], BAN_AFTER as u64, "{ban}");
    assert_eq!(ban["offences"], 1, "{ban}");
    let until = ban["until"].as_str().unwrap_or_default();
    let since = ban["since"].as_str().unwrap_or_default();
    assert!(
        until.len() >= 20 && until.ends_with('Z') && until.contains('T') && since < until,
        "since/until as RFC 3339 UTC times: {ban}"
    );
    let remaining = ban["remaining_s"].as_u64().unwrap_or(0);
    assert!(
        remaining > 3000 && remaining <= 3600,
        "remaining_s of a fresh 1 h ban: {ban}"
    );
    assert_eq!(
        status["bans"].as_array().map(Vec::len),
        Some(1),
        "only 127.0.0.5 is banned: {}",
        status["bans"]
    );

    let log = d.log();
    let banned_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("address banned"))
        .collect();
    assert_eq!(
        banned_lines.len(),
        1,
        "exactly one \"address banned\" line: {banned_lines:#?}"
    );
    let line = banned_lines[0];
    let failures = BAN_AFTER.to_string();
    let expected = [
        ("address", Some("127.0.0.5")),
        ("reason", Some("auth_failures")),
        ("failures", Some(failures.as_str())),
        ("ban_s", Some("3600")),
        ("until", None),
        ("offence", Some("1")),
    ];
    for (name, want) in expected {
        let got = log_field(line, name);
        assert!(
            got.is_some() && (want.is_none() || got == want),
            "the \"address banned\" line: field {name} should be {}, got {got:?}\n{line}",
            want.unwrap_or("present")
        );
    }
    d.assert_logged_without_secret("address banned", GUESS_PREFIX);
    for r in &run.responses {
        assert!(
            !log.contains(r.as_str()),
            "a digest response value reached the log: {r}"
        );
    }
}

/// `User-Agent: friendly-scanner` (any case, as a substring): no reply, dropped as `scanner`,
/// the source banned with reason `scanner`; a normal peer still gets 200.
#[test]
fn scanner_user_agent_gets_no_reply_and_its_source_is_banned() {
    let d = daemon("");
    // (a counter that may be absent until its first datagram: read leniently)
    let before = d.metrics();
    let options_scanner = peer([127, 0, 0, 6], &d);
    assert_ignored(
        &options_scanner,
        &options_scanner.options(&ua("friendly-scanner")),
        "OPTIONS from friendly-scanner",
        &d,
    );
    let register_scanner = peer([127, 0, 0, 7], &d);
    assert_ignored(
        &register_scanner,
        &register_scanner.register("100", &ua("Friendly-Scanner/1.0")),
        "REGISTER from Friendly-Scanner/1.0",
        &d,
    );
    wait_metric(
        &d,
        &dropped("scanner"),
        "both scanner datagrams dropped",
        |v| v >= metric(&before, &dropped("scanner")) + 2.0,
    );
    // the sources are banned: nothing for them, whatever they send next
    assert_ignored(
        &options_scanner,
        &options_scanner.options(&ua("pbx")),
        "a plain OPTIONS from the scanner's address",
        &d,
    );
    let status = d.status();
    for ip in ["127.0.0.6", "127.0.0.7"] {
        let bans = bans_for(&status, ip);
        assert!(
            bans.len() == 1 && bans[0]["reason"] == "scanner",
            "{ip} banned with reason scanner: {}",
            status["bans"]
        );
    }
    let normal = peer([127, 0, 0, 1], &d);
    assert_options_200(&normal, "a normal peer next to the scanners", &d);
}

/// `trunkgate bans` lists a banned address, `trunkgate unban` lifts it (the address is
/// answered again), a second `unban` exits 1.
#[test]
fn unban_from_the_command_line_lifts_the_ban() {
    let status = format!("127.0.0.1:{}", free_tcp_port());
    let tables = security_tables("ban_after = 3");
    let d = Daemon::start_config(
        &DaemonConfig {
            status_listen: Some(&status),
            tables: &tables,
            ..DaemonConfig::default()
        },
        |_| Vec::new(),
    );
    let attacker = peer([127, 0, 0, 5], &d);
    ban(&attacker, &d, 3);

    let (code, out, err) = d.command(&["bans"]);
    assert_eq!(code, 0, "trunkgate bans: {out}{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 2
            && lines[1].split_whitespace().next() == Some("127.0.0.5")
            && lines[1].split_whitespace().nth(1) == Some("auth_failures"),
        "trunkgate bans: a header and one line `127.0.0.5 auth_failures FAILURES UNTIL`, got:\n{out}{err}"
    );

    let (code, out, err) = d.command(&["unban", "127.0.0.5"]);
    assert_eq!(code, 0, "trunkgate unban: {out}{err}");
    assert_eq!(out.trim(), "unbanned 127.0.0.5", "stderr: {err}");
    assert_options_200(&attacker, "after the unban", &d);
    d.wait_log("ban lifted by operator");
    let m = d.metrics();
    assert_eq!(value(&m, BANNED_NOW), 0.0, "{BANNED_NOW} after the unban");

    let (code, out, err) = d.command(&["unban", "127.0.0.5"]);
    assert_eq!(code, 1, "a second unban: {out}{err}");
    assert!(
        format!("{out}{err}").contains("127.0.0.5 is not banned"),
        "a second unban: {out}{err}"
    );
    let (code, out, err) = d.command(&["bans"]);
    assert_eq!((code, out.trim()), (0, "no bans"), "stderr: {err}");
}

/// A SIGHUP reload (which does apply: a trunk added in the file registers) keeps the ban.
#[test]
fn bans_survive_sighup() {
    let d = daemon("ban_after = 3");
    let attacker = peer([127, 0, 0, 5], &d);
    ban(&attacker, &d, 3);
    let path = d.config_path();
    let mut text = std::fs::read_to_string(&path).expect("read config");
    text.push_str(&format!(
        "\n{}",
        trunk("t1", "user-after-reload", "reloaded-secret-9")
    ));
    std::fs::write(&path, text).expect("write config");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded");
    let pbx = peer([127, 0, 0, 1], &d);
    match pbx.register_trunk("user-after-reload", "reloaded-secret-9") {
        Ok(r) if status_code(&r) == 200 => {}
        other => panic!(
            "the trunk added by the reload should register: {other:?}\ndaemon log (tail):\n{}",
            tail(&d.log(), 30)
        ),
    }
    assert_ignored(
        &attacker,
        &attacker.options(&[]),
        "OPTIONS after SIGHUP",
        &d,
    );
    assert_ignored(
        &attacker,
        &attacker.register(USER, &[]),
        "REGISTER after SIGHUP",
        &d,
    );
    let status = d.status();
    let bans = bans_for(&status, "127.0.0.5");
    assert!(
        bans.len() == 1 && bans[0]["reason"] == "auth_failures",
        "the ban in /status after SIGHUP: {}",
        status["bans"]
    );
    let m = d.metrics();
    assert_eq!(value(&m, BANNED_NOW), 1.0, "{BANNED_NOW} after SIGHUP");
    assert_eq!(value(&m, BANS_TOTAL), 1.0, "{BANS_TOTAL} after SIGHUP");
}

// ---------------------------------------------------------------------- stateless edge

/// Sends `req`; everything that comes back within `wait` must be one response, `code`.
fn only_answer(peer: &SipClient, req: &Request, wait: Duration, code: u16, what: &str) -> String {
    peer.send(req);
    let mut got = peer.everything(wait);
    assert!(
        got.len() == 1 && status_code(&got[0]) == code,
        "{what}: expected exactly one {code} in {wait:?}, got {:?}",
        got.iter().map(|r| first_line(r)).collect::<Vec<_>>()
    );
    got.remove(0)
}

/// A 407 / 401 / OPTIONS 200 is one datagram and no transaction: nothing follows it over
/// 2.5 s (a stateful INVITE would retransmit at 0.5 s and 1.5 s), the transaction gauge stays
/// 0, and an ACK for the 407 gets nothing and creates nothing.
#[test]
fn challenges_and_options_are_one_datagram_and_leave_no_transaction() {
    let d = Daemon::start_default();
    let m0 = wait_metric(&d, TRANSACTIONS, "no transaction at start", |v| v == 0.0);
    let peer = peer([127, 0, 0, 8], &d);

    let inv = peer.invite("0501234567", &[]);
    let wait = Duration::from_millis(2500);
    let got = only_answer(&peer, &inv, wait, 407, "an INVITE without credentials");
    let m = d.metrics();
    assert_eq!(value(&m, TRANSACTIONS), 0.0, "{TRANSACTIONS} after the 407");
    assert!(
        value(&m, STATELESS) > value(&m0, STATELESS),
        "{STATELESS} did not count the 407"
    );
    peer.ack(&inv, &got);
    let after_ack = peer.everything(SILENCE);
    assert!(
        after_ack.is_empty(),
        "the ACK for the 407 got {:?}",
        after_ack.iter().map(|r| first_line(r)).collect::<Vec<_>>()
    );
    assert_eq!(
        value(&d.metrics(), TRANSACTIONS),
        0.0,
        "{TRANSACTIONS} after the ACK"
    );

    let reg = peer.register(USER, &[]);
    only_answer(&peer, &reg, SILENCE, 401, "a REGISTER without credentials");
    assert_eq!(
        value(&d.metrics(), TRANSACTIONS),
        0.0,
        "{TRANSACTIONS} after the 401"
    );

    only_answer(&peer, &peer.options(&[]), SILENCE, 200, "OPTIONS");
    let m = d.metrics();
    assert_eq!(value(&m, TRANSACTIONS), 0.0, "{TRANSACTIONS} after OPTIONS");
    assert!(
        value(&m, STATELESS) >= value(&m0, STATELESS) + 3.0,
        "{STATELESS}: 407, 401 and 200 were all stateless"
    );
}

// ------------------------------------------------------------------------------- flood

const FLOOD_DATAGRAMS: usize = 20_000;
const FLOOD_LIMIT: usize = 100;

/// Datagram `i` of the flood from the peer of `group` (0: sends scanner user agents too,
/// 1: sends bad credentials too, 2: only unauthenticated requests and garbage).
fn flood_datagram(i: usize, group: usize, peer: &SipClient) -> Vec<u8> {
    // a nonce the daemon never issued, and a wrong password
    let forged = Challenge {
        algorithm: Algorithm::Md5,
        realm: REALM.to_string(),
        nonce: "A".repeat(40),
        qop: None,
        stale: None,
    };
    let bad_credentials = forged.answer(USER, "guessed", "REGISTER", &peer.register_uri());
    let garbage: [&[u8]; 3] = [
        b"\x00\x01\x02 not SIP at all \xff\xfe",
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP",
        b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n\r\n",
    ];
    match (i % 6, group) {
        (0, _) => peer.register("100", &[]).text.into_bytes(),
        (1, 1) => peer
            .register(USER, &[("Authorization", &bad_credentials)])
            .text
            .into_bytes(),
        (1, _) => peer.register(USER, &[]).text.into_bytes(),
        (2, _) => peer.invite("0501234567", &[]).text.into_bytes(),
        (3, _) => peer.options(&[]).text.into_bytes(),
        (4, 0) => peer.options(&ua("friendly-scanner")).text.into_bytes(),
        (4, _) => peer.options(&ua("pbx")).text.into_bytes(),
        _ => garbage[i % garbage.len()].to_vec(),
    }
}

/// 20,000 datagrams from 127.0.0.10-17 with `max_transactions = 100`: the transaction gauge
/// stays under the limit throughout, the trunk on 127.0.0.1 registers during and after, the
/// daemon runs on, and an authenticated call through the simulator is answered.
#[test]
fn flood_from_eight_addresses_leaves_the_trunk_and_a_call_working() {
    // the [security] table rides in after the [calls] lines (TOML starts a new table there)
    let mut b = Bridge::start_with(
        "",
        &format!("\n[security]\nmax_transactions = {FLOOD_LIMIT}\nban_after = 10\n"),
    );
    let status = b.daemon.status_addr();
    let sip = b.daemon.sip;
    let metrics_now = || {
        let (code, text) = http_get(status, "/metrics");
        assert_eq!(code, 200, "GET /metrics: {text}");
        parse_prometheus(&text)
    };
    let m0 = metrics_now();
    assert_eq!(
        value(&m0, TRANSACTIONS_LIMIT),
        FLOOD_LIMIT as f64,
        "{TRANSACTIONS_LIMIT}"
    );
    let trunk = SipClient::bind([127, 0, 0, 1], sip);
    assert_registers(&trunk, &b.daemon, "before the flood");

    let peers: Vec<(SipClient, usize)> = (10u8..18)
        .map(|k| {
            let group = match k {
                10 | 11 => 0,
                12..=15 => 1,
                _ => 2,
            };
            (SipClient::bind([127, 0, 0, k], sip), group)
        })
        .collect();
    for (p, _) in &peers {
        p.socket.set_nonblocking(true).expect("nonblocking");
    }
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (max_seen, samples, registrations) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut buf = vec![0u8; 65536];
            for i in 0..FLOOD_DATAGRAMS {
                let (peer, group) = &peers[i % peers.len()];
                let data = flood_datagram(i / peers.len(), *group, peer);
                // a full socket buffer is not what is under test: skip that datagram
                let _ = peer.socket.send_to(&data, sip);
                // whatever comes back is read and dropped, so no buffer fills up here
                while peer.socket.recv_from(&mut buf).is_ok() {}
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        let sampler = s.spawn(|| {
            let mut max_seen = 0.0f64;
            let mut samples = 0;
            for _ in 0..1200 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let m = metrics_now();
                max_seen = max_seen.max(value(&m, TRANSACTIONS));
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (max_seen, samples)
        });
        // the trunk registers again and again while the flood runs
        let mut registrations = Vec::new();
        for _ in 0..60 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            registrations.push(trunk.register_trunk(USER, PASSWORD));
            std::thread::sleep(Duration::from_millis(200));
        }
        sender.join().expect("flood sender");
        let (max_seen, samples) = sampler.join().expect("metrics sampler");
        (max_seen, samples, registrations)
    });
    eprintln!(
        "flood: {FLOOD_DATAGRAMS} datagrams in {:.1} s, {samples} gauge samples (max {max_seen}), \
         {} registrations meanwhile",
        started.elapsed().as_secs_f64(),
        registrations.len()
    );
    if !b.daemon.is_running() {
        b.fail("the daemon exited during the flood");
    }
    let bad: Vec<String> = registrations
        .iter()
        .filter_map(|r| match r {
            Ok(r) if status_code(r) == 200 => None,
            Ok(r) => Some(first_line(r).to_string()),
            Err(e) => Some(e.clone()),
        })
        .collect();
    b.check(bad.is_empty(), || {
        format!(
            "{} of {} trunk registrations during the flood failed: {bad:?}",
            bad.len(),
            registrations.len()
        )
    });
    b.check(max_seen <= FLOOD_LIMIT as f64, || {
        format!("{TRANSACTIONS} reached {max_seen} during the flood (limit {FLOOD_LIMIT})")
    });
    assert_registers(&trunk, &b.daemon, "after the flood");
    let m = metrics_now();
    b.check(value(&m, TRANSACTIONS) <= FLOOD_LIMIT as f64, || {
        format!(
            "{TRANSACTIONS} = {} after the flood",
            value(&m, TRANSACTIONS)
        )
    });
    for reason in ["banned", "scanner", "rate_limited"] {
        b.check(value(&m, &dropped(reason)) > 0.0, || {
            format!("no datagram of the flood was dropped as {reason}")
        });
    }
    let status_json = b.daemon.status();
    for ip in ["127.0.0.10", "127.0.0.11"] {
        b.check(
            bans_for(&status_json, ip)
                .iter()
                .any(|b| b["reason"] == "scanner"),
            || format!("{ip} sent scanner user agents: {}", status_json["bans"]),
        );
    }
    b.check(bans_for(&status_json, "127.0.0.1").is_empty(), || {
        format!("the trunk's address got banned: {}", status_json["bans"])
    });

    // a call, as the PBX makes it, is answered by the carrier and hung up by the PBX
    b.expect_final(
        "call_final.xml",
        ANSWER_DIALLED,
        200,
        "the call after the flood",
    );
    let call = b.only_call_ended();
    b.check(states(&call).iter().any(|s| s == "ANSWERED"), || {
        format!("the call after the flood was not answered at the carrier: {call}")
    });
    b.check(!b.daemon.log().contains("panicked"), || {
        "the daemon log shows a panic".into()
    });
    // Readable under attack: a ban line and at most a summary per flooding address, not a line
    // per datagram (the per-request detail is debug).
    let log = b.daemon.log();
    let warn_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("trunkgate::sip"))
        .collect();
    b.check(warn_lines.len() <= 3 * 8, || {
        format!(
            "{} SIP WARN lines for a flood from 8 addresses:\n{}",
            warn_lines.len(),
            warn_lines
                .iter()
                .take(40)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let running = b.daemon.is_running();
    b.check(running, || "the daemon exited".into());
}

// ------------------------------------------------------------------ emergency numbers

/// With one call up and a limit of one (set by `trunk_extra` / `calls_extra`), a call to a
/// normal number is refused with 503, and a call to 999 is answered by the carrier.
fn emergency_call_over_a_full_limit(trunk_extra: &str, calls_extra: &str) {
    let b = Bridge::start_with(trunk_extra, calls_extra);
    let held = b.held_call();
    let what = "a normal number over the limit";
    b.expect_final("call_limit.xml", ANSWER_DIALLED, 503, what);
    let what = "999 over the limit (admitted and answered)";
    b.expect_final("call_final.xml", "999", 200, what);
    b.wait_calls(
        "the held call and the 999 call (answered, ended by the PBX), nothing else",
        Duration::from_secs(10),
        |c| {
            c.len() == 2
                && c.iter().any(|c| {
                    c["to"].as_str().is_some_and(|t| t.contains("999"))
                        && c["state"] == "ENDED"
                        && states(c).iter().any(|s| s == "ANSWERED")
                })
        },
    );
    let session = b
        .calls()
        .iter()
        .find(|c| c["state"] == "ANSWERED")
        .and_then(|c| c["session"].as_str().map(str::to_string))
        .unwrap_or_else(|| b.fail("the held call is no longer up"));
    b.carrier_does(&session, "hangup", None);
    b.assert_sipp_ok(&held.wait(), "call_wait_bye.xml (the held call)");
}

#[test]
fn emergency_number_is_admitted_over_the_global_call_limit() {
    emergency_call_over_a_full_limit("", "max_calls = 1\n");
}

#[test]
fn emergency_number_is_admitted_over_the_trunk_call_limit() {
    emergency_call_over_a_full_limit("max_calls = 1\n", "");
}

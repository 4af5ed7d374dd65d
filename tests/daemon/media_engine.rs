//! The media engine's integration tests (issue 12), against the daemon's outside only: the
//! WebRTC leg relayed through a real TURN server (coturn) over UDP, TCP and TLS; no audio lost
//! at the start of a call; the call-quality figures in `/status` and in the call record, clean
//! and with loss; fifty simultaneous calls each getting back its own audio and no other's.
//! sipp is the PBX, `trunkgate sim` the carrier echoing what it receives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::call_support::*;
use crate::coturn::Coturn;
use crate::harness::*;
use crate::rtp_capture::{Datagram, Rtp};
use crate::sipp::Sipp;
use crate::tagged_audio::{streams_scenario, tag_of, tagged_stream, PerCallEcho, PTIME};

// ------------------------------------------------------------------ a. relay-only via coturn

/// Which of [`Coturn::urls`] a test gives the daemon.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// One outbound call with `ice_transport_policy = "relay"` and coturn's `transport` URL as the
/// only ICE server: the audio must come back, and coturn must have allocated for the user the
/// subscription handed out, over that transport.
fn relay_only_call_through_coturn(transport: Transport) {
    let coturn = Coturn::start();
    let url = coturn.urls()[transport as usize].clone();
    let sim_top = format!(
        "turn_username = \"{}\"\nturn_password = \"{}\"",
        coturn.user, coturn.password
    );
    let carrier_extra = format!("ice_servers = [\"{url}\"]\nice_transport_policy = \"relay\"");
    // The daemon trusts coturn's certificate through `[carrier] ca_file`, the carrier's one trust
    // file (a PEM bundle, here with the simulator's certificate): the TURN servers are the
    // carrier's, like its REST and WebSocket endpoints. Should the engine get a key of its own
    // (`turn_ca_file`), it goes into `carrier_extra` instead of `extra_ca`.
    let b = Bridge::start_config(&BridgeConfig {
        sim_top: &sim_top,
        carrier_extra: &carrier_extra,
        extra_ca: Some(&coturn.cert_path),
        ..BridgeConfig::default()
    });
    let fail = |what: String| -> ! {
        b.fail(&format!(
            "{url}: {what}\ncoturn log (tail):\n{}",
            tail(&coturn.log(), 40)
        ))
    };
    let call = b.call("call_echo.xml", ANSWER_DIALLED);
    let (run, captured) = b.captured(call, Duration::from_secs(60));
    if !run.success {
        fail(format!("sipp call_echo.xml failed:\n{}", run.describe()));
    }
    let call = b.only_call_ended();
    if let Some(e) = pcap_shortfall_at_carrier(&call) {
        fail(format!("through the relay: {e}"));
    }
    let sent = g711a_packets();
    if let Some(e) = echo_shortfall(&sent, &captured, 1) {
        fail(e);
    }
    // coturn writes its log as it goes; give the last lines a moment
    let allocated = coturn.wait_for(Duration::from_secs(5), |c| {
        c.allocations().iter().any(|a| a.user == c.user) && c.successes("ALLOCATE") > 0
    });
    if !allocated {
        fail(format!(
            "no allocation for user {:?} in coturn's log",
            coturn.user
        ));
    }
    let allocations = coturn.allocations();
    let permitted = coturn.successes("CREATE_PERMISSION") + coturn.successes("CHANNEL_BIND");
    if permitted == 0 {
        fail("the allocation never got a permission or channel for the carrier's address".into());
    }
    let tls = allocations.iter().filter(|a| a.tls).count();
    let streams = coturn.stream_connections();
    let transport_seen = match transport {
        Transport::Udp => streams == 0,
        Transport::Tcp => streams > 0 && tls == 0,
        Transport::Tls => streams > 0 && tls == allocations.len(),
    };
    if !transport_seen {
        fail(format!(
            "expected every allocation over {transport:?}: {} allocation(s), {tls} over TLS, \
             {streams} TCP/TLS connection(s)",
            allocations.len()
        ));
    }
}

#[test]
fn relay_only_call_through_coturn_over_udp() {
    relay_only_call_through_coturn(Transport::Udp);
}

#[test]
fn relay_only_call_through_coturn_over_tcp() {
    relay_only_call_through_coturn(Transport::Tcp);
}

#[test]
fn relay_only_call_through_coturn_over_tls() {
    relay_only_call_through_coturn(Transport::Tls);
}

// ------------------------------------------------------------------ b. start of call

/// The packets sipp plays right after the 200 OK, while the WebRTC leg may still be
/// connecting, must all reach the carrier and come back: held, not dropped.
#[test]
fn the_first_fifty_packets_after_the_answer_all_come_back_byte_exact() {
    const FIRST: usize = 50;
    let b = Bridge::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = tagged_stream(1, 150);
    let hold = hold_after(&stream);
    let scenario = streams_scenario(dir.path(), "start", std::slice::from_ref(&stream), hold);
    let call = b.call(&scenario.to_string_lossy(), ANSWER_DIALLED);
    let captured = b.captured_ok(
        call,
        Duration::from_secs(40),
        "call_echo.xml playing a tagged stream",
    );
    let echoed = rtp_payloads(&captured);
    let count = |p: &[u8]| echoed.iter().filter(|e| e.as_slice() == p).count();
    let first: Vec<usize> = stream[..FIRST].iter().map(|p| count(&p.payload)).collect();
    let missing: Vec<usize> = (0..FIRST).filter(|&i| first[i] == 0).collect();
    let doubled: Vec<usize> = (0..FIRST).filter(|&i| first[i] > 1).collect();
    b.check(missing.is_empty() && doubled.is_empty(), || {
        format!(
            "of the first {FIRST} packets played after the 200 OK, missing from the echo (index \
             from 0): {missing:?}; echoed more than once: {doubled:?}; {} RTP packets echoed in \
             all, {} not byte-identical to any packet played",
            echoed.len(),
            foreign(&echoed, &stream)
        )
    });
    // and the call went on: the rest came back too
    let all = stream.iter().filter(|p| count(&p.payload) > 0).count();
    b.check(all * 10 >= stream.len() * 9, || {
        format!(
            "only {all} of the {} packets played came back",
            stream.len()
        )
    });
}

/// How long a scenario holds the call after starting `stream`: its length and 700 ms for the
/// last echoes.
fn hold_after(stream: &[Rtp]) -> Duration {
    PTIME * stream.len() as u32 + Duration::from_millis(700)
}

fn rtp_payloads(captured: &[Datagram]) -> Vec<Vec<u8>> {
    captured
        .iter()
        .filter_map(|d| Rtp::parse(&d.payload))
        .map(|r| r.payload)
        .collect()
}

/// How many echoed payloads are none of the packets played (another stream's, or altered).
fn foreign(echoed: &[Vec<u8>], played: &[Rtp]) -> usize {
    let played: BTreeSet<&[u8]> = played.iter().map(|p| p.payload.as_slice()).collect();
    echoed
        .iter()
        .filter(|p| !played.contains(p.as_slice()))
        .count()
}

// ------------------------------------------------------------------ c. call quality

/// One direction's figures, as `/status` and the call record give them.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    packets: u64,
    lost: u64,
    loss_percent: f64,
    jitter_ms: f64,
    rtt_ms: Option<f64>,
    mos: f64,
}

/// Reads `quality.<direction>` strictly: every field present with its type, values in range.
fn figures(quality: &Value, direction: &str) -> Result<Figures, String> {
    let d = &quality[direction];
    let num = |k: &str| {
        d[k].as_f64()
            .ok_or_else(|| format!("{direction}.{k} is not a number in {quality}"))
    };
    let f = Figures {
        packets: d["packets"]
            .as_u64()
            .ok_or_else(|| format!("{direction}.packets is not a count in {quality}"))?,
        lost: d["lost"]
            .as_u64()
            .ok_or_else(|| format!("{direction}.lost is not a count in {quality}"))?,
        loss_percent: num("loss_percent")?,
        jitter_ms: num("jitter_ms")?,
        rtt_ms: match &d["rtt_ms"] {
            Value::Null if d.get("rtt_ms").is_some() => None,
            v => Some(v.as_f64().ok_or_else(|| {
                format!("{direction}.rtt_ms is neither null nor a number in {quality}")
            })?),
        },
        mos: num("mos")?,
    };
    let sane = (0.0..=100.0).contains(&f.loss_percent)
        && f.jitter_ms >= 0.0
        && f.rtt_ms.is_none_or(|r| r >= 0.0)
        && (1.0..=5.0).contains(&f.mos);
    if sane {
        Ok(f)
    } else {
        Err(format!("{direction} out of range: {f:?}"))
    }
}

/// Both directions of a `quality` object.
fn both(quality: &Value) -> Result<(Figures, Figures), String> {
    Ok((
        figures(quality, "pbx_to_carrier")?,
        figures(quality, "carrier_to_pbx")?,
    ))
}

/// Polls `/status` (bounded) until the one active call's `quality.pbx_to_carrier.packets`
/// reaches `packets`; returns its `quality` object.
fn quality_while_up(b: &Bridge, sipp: &mut Sipp, packets: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline && sipp.running() {
        let status = b.daemon.status();
        if let Some(call) = status["active_calls"].as_array().and_then(|a| a.first()) {
            last = call.clone();
            let q = &call["quality"];
            if q["pbx_to_carrier"]["packets"].as_u64() >= Some(packets) {
                return q.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    b.fail(&format!(
        "/status never showed the call's quality.pbx_to_carrier.packets reaching {packets} while \
         it was up; last active call: {last:#}"
    ))
}

/// The call record with `sip_code` 200 number `n` (from 1), waiting (bounded) for it.
fn answered_record(b: &Bridge, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered: Vec<Value> = b
            .daemon
            .cdrs()
            .into_iter()
            .filter(|r| r["sip_code"] == 200)
            .collect();
        if answered.len() >= n {
            return answered[n - 1].clone();
        }
        if Instant::now() >= deadline {
            b.fail(&format!(
                "expected {n} answered call record(s), the file holds {answered:#?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One call playing `stream` with the figures read while it is up and from its record.
fn call_with_quality(
    b: &Bridge,
    dir: &std::path::Path,
    name: &str,
    stream: &[Rtp],
    nth: usize,
) -> (Value, Value) {
    let scenario = streams_scenario(dir, name, &[stream.to_vec()], hold_after(stream));
    let mut sipp = b
        .call(&scenario.to_string_lossy(), ANSWER_DIALLED)
        .spawn(Duration::from_secs(40));
    // 100 packets: 2 s of audio, past the first statistics interval
    let live = quality_while_up(b, &mut sipp, 100);
    let run = sipp.wait();
    b.assert_sipp_ok(&run, &format!("the {name} call"));
    let record = answered_record(b, nth);
    (live, record["quality"].clone())
}

#[test]
fn quality_figures_show_while_the_call_is_up_and_in_its_record_clean_and_with_ten_percent_loss() {
    let b = Bridge::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |what: &str, r: Result<(Figures, Figures), String>| -> (Figures, Figures) {
        r.unwrap_or_else(|e| b.fail(&format!("{what}: {e}")))
    };

    // a clean call: nothing lost on the way in, a G.711 call's best MOS
    let (live, end) = call_with_quality(&b, dir.path(), "clean", &tagged_stream(1, 200), 1);
    let (up, down) = check("/status of the clean call", both(&live));
    b.check(up.lost == 0 && up.mos >= 4.2 && down.packets > 0, || {
        format!("clean call in /status: expected pbx_to_carrier lost 0 and mos >= 4.2, and carrier_to_pbx counting packets: {live:#}")
    });
    let (clean_up, _) = check("the clean call's record", both(&end));
    b.check(
        clean_up.lost == 0 && clean_up.mos >= 4.2 && clean_up.packets >= up.packets,
        || format!("clean call's record: expected pbx_to_carrier lost 0, mos >= 4.2 and at least the {} packets /status showed: {end:#}", up.packets),
    );

    // every 10th packet of the PBX's left out, sequence numbers and timing kept: gaps
    let lossy: Vec<Rtp> = tagged_stream(2, 200)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 9)
        .map(|(_, p)| p)
        .collect();
    let (live_lossy, end_lossy) = call_with_quality(&b, dir.path(), "lossy", &lossy, 2);
    for (when, q, clean_mos) in [
        ("/status", &live_lossy, up.mos),
        ("the record", &end_lossy, clean_up.mos),
    ] {
        let (lossy_up, _) = check(&format!("{when} of the lossy call"), both(q));
        b.check(
            (7.0..=13.0).contains(&lossy_up.loss_percent) && lossy_up.mos < clean_mos,
            || {
                format!(
                    "lossy call, {when}: expected pbx_to_carrier.loss_percent between 7 and 13 and \
                     mos below the clean call's {clean_mos}: {q:#}"
                )
            },
        );
    }
}

// ------------------------------------------------------------------ d. fifty calls at once

/// Fifty calls up at the same time (sipp starts them within a second; each plays 5 s), each
/// playing its own stream from its own port: every port gets back its own call's audio and
/// nothing of any other, from a daemon port of its own.
#[test]
fn fifty_simultaneous_calls_each_get_back_their_own_audio_only() {
    const CALLS: u16 = 50;
    const PACKETS: u16 = 250;
    let b = Bridge::start_config(&BridgeConfig {
        // 50 unauthenticated INVITEs in a second from one address: over the default budget
        trunk_extra: "\n[security]\nunauthenticated_rate = 100\nunauthenticated_burst = 200\n",
        rtp_blocks: 2,
        ..BridgeConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let streams: Vec<Vec<Rtp>> = (1..=CALLS).map(|n| tagged_stream(n, PACKETS)).collect();
    let scenario = streams_scenario(dir.path(), "call", &streams, hold_after(&streams[0]));
    let echo = PerCallEcho::bind(CALLS, Duration::from_secs(90));
    let mut sipp = b
        .call(&scenario.to_string_lossy(), ANSWER_DIALLED)
        .calls(CALLS.into())
        .media_port(echo.media_port)
        .spawn(Duration::from_secs(60));
    // the carrier's view of how many were up at once
    let mut peak = 0;
    while sipp.running() {
        let up = b
            .calls()
            .iter()
            .filter(|c| c["state"] == "ANSWERED")
            .count();
        peak = peak.max(up);
        std::thread::sleep(Duration::from_millis(100));
    }
    let run = sipp.wait();
    let received = echo.finish();
    b.assert_sipp_ok(&run, "50 simultaneous tagged calls");
    b.wait_calls("50 calls, all ENDED", Duration::from_secs(15), |c| {
        c.len() == usize::from(CALLS) && c.iter().all(|c| c["state"] == "ENDED")
    });
    let need = usize::from(PACKETS) * 9 / 10;
    let mut problems = Vec::new();
    if peak != usize::from(CALLS) {
        problems.push(format!(
            "at most {peak} calls were answered at the same time"
        ));
    }
    for call in b.calls() {
        let (i, o) = (
            media_u64(&call, "rtp_packets_in"),
            media_u64(&call, "rtp_packets_out"),
        );
        if i < need as u64 || o < need as u64 {
            problems.push(format!(
                "carrier call {}: expected at least {need} packets each way, saw in {i} out {o}",
                call["session"]
            ));
        }
    }
    let mut daemon_ports: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    for (n, (got, stream)) in (1u16..).zip(received.iter().zip(&streams)) {
        let expected: HashMap<&[u8], usize> = stream
            .iter()
            .enumerate()
            .map(|(i, p)| (p.payload.as_slice(), i))
            .collect();
        let mut own = BTreeSet::new();
        let mut others: BTreeMap<Option<u16>, usize> = BTreeMap::new();
        let mut from = BTreeSet::new();
        for d in got {
            let Some(rtp) = Rtp::parse(&d.payload) else {
                continue;
            };
            from.insert(d.from_port);
            match expected.get(rtp.payload.as_slice()) {
                Some(&i) => {
                    own.insert(i);
                }
                None => *others.entry(tag_of(&rtp.payload).map(|t| t.0)).or_default() += 1,
            }
        }
        if own.len() < need || !others.is_empty() || from.len() != 1 {
            problems.push(format!(
                "call {n}: {} of its {PACKETS} packets came back; packets of other calls (call \
                 tag: count, None = unrecognised): {others:?}; from daemon ports {from:?}",
                own.len()
            ));
        }
        for p in from {
            daemon_ports.entry(p).or_default().push(n);
        }
    }
    let shared: Vec<_> = daemon_ports.iter().filter(|(_, c)| c.len() > 1).collect();
    if !shared.is_empty() {
        problems.push(format!(
            "daemon ports sending to more than one call: {shared:?}"
        ));
    }
    b.check(problems.is_empty(), || problems.join("\n"));
}

//! The client against the simulator, in one process but over real TLS, WebSocket and WebRTC on
//! 127.0.0.1: subscription lifecycle, faults, calls both ways with media checked by the packets
//! that come back. Every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::events::{CallEvent, EndCause};
use super::lifecycle::Phase;
use super::*;
use crate::config::{CarrierAccount, CarrierConfig, IceTransportPolicy, Secret};
use crate::media::engine::{FarEnd, MediaCall};
use crate::media::relay::PbxMedia;
use crate::media::rtp::{write_header, RtpHeader};
use crate::media::rtp_leg::RtpLeg;
use crate::media::{Codec, PeerSettings};
use crate::sim::test_client::engine;
use crate::sim::{self, BehaviourConfig, SimConfig, SimHandle, SimUser};

const USER: &str = "gw@sim.test";
const PASS: &str = "sim-secret";
const BUSY: &str = "+971500000486";
const NO_ANSWER: &str = "+971500000480";
const LIMIT: Duration = Duration::from_secs(20);

fn sim_config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: "127.0.0.1:0".parse().unwrap(),
        users: vec![SimUser::new(USER, PASS)],
        subscription_expires: 3600,
        behaviour: BehaviourConfig {
            ring_delay: Duration::from_millis(20),
            answer_delay: Duration::from_millis(20),
            busy: vec![BUSY.into()],
            no_answer: vec![NO_ANSWER.into()],
            ..BehaviourConfig::default()
        },
        ..SimConfig::default()
    }
}

fn client_config(password: &str) -> CarrierConfig {
    CarrierConfig {
        simulate: false,
        accounts: vec![CarrierAccount {
            name: "sim".into(),
            base_url: None,
            username: USER.into(),
            password: Secret::new(password),
            domain: "sim.test".into(),
            max_calls: 4,
        }],
        ice_servers: vec![
            "turn:127.0.0.1:3478?transport=udp".into(),
            "stun:127.0.0.1:3478".into(),
        ],
        ice_transport_policy: IceTransportPolicy::All,
        ca_file: None,
        ping_interval: Duration::from_millis(200),
        subscription_expires: 3600,
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(400),
        reconnect_multiplier: 2.0,
        request_timeout: Duration::from_secs(5),
        audit_interval: Duration::from_millis(300),
    }
}

struct Rig {
    sim: SimHandle,
    carrier: Carrier,
    inbound: tokio::sync::mpsc::Receiver<CarrierCall>,
    control: reqwest::Client,
}

impl Rig {
    async fn start(sim_cfg: SimConfig, cfg: CarrierConfig) -> Rig {
        let sim = sim::start(sim_cfg).await.expect("simulator starts");
        let (carrier, inbound) = Carrier::start(
            &cfg,
            Overrides {
                base_url: Some(sim.base_url()),
                extra_ca_pem: Some(sim.cert_pem().to_string()),
            },
        )
        .expect("client starts");
        Rig {
            sim,
            carrier,
            inbound,
            control: control_client(),
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .control
            .post(format!("{}{path}", self.sim.control_url()))
            .json(&body)
            .send()
            .await
            .expect("control API");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn until(&self, what: &str, f: impl Fn(&Rig) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(t0.elapsed() < LIMIT, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn subscribed(&self) {
        self.until("subscription and socket", |r| {
            r.carrier.status()[0].phase == Phase::Active
                && r.carrier.status()[0].websocket_connected
                && r.sim.subscriptions().iter().any(|s| s.ws_connected)
        })
        .await;
    }

    fn live_subscriptions(&self) -> Vec<sim::SubscriptionView> {
        self.sim
            .subscriptions()
            .into_iter()
            .filter(|s| !s.deleted)
            .collect()
    }

    fn sim_call(&self, session: &str) -> sim::CallView {
        self.sim
            .calls()
            .into_iter()
            .find(|c| c.session == session)
            .expect("the simulator knows the call")
    }
}

fn control_client() -> reqwest::Client {
    tls::install_default_provider();
    reqwest::Client::new()
}

fn peer_settings() -> PeerSettings {
    PeerSettings::nearby("127.0.0.1".parse().unwrap())
}

async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(40), f)
        .await
        .expect("test timed out");
}

async fn next(call: &mut CarrierCall) -> CallEvent {
    tokio::time::timeout(LIMIT, call.next_event())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

/// A plain RTP socket standing in for the PBX, attached to `call`'s relay.
async fn test_pbx(call: &MediaCall, codec: Codec) -> tokio::net::UdpSocket {
    let me = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtcp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_nonblocking(true).unwrap();
    rtcp.set_nonblocking(true).unwrap();
    let port = rtp.local_addr().unwrap().port();
    me.connect(("127.0.0.1", port)).await.unwrap();
    let leg = RtpLeg { rtp, rtcp, port };
    let pbx = PbxMedia {
        addr: Some(me.local_addr().unwrap()),
        audio_pt: codec.payload_type(),
        event_pt: Some(101),
        receives: true,
    };
    call.attach_pbx(leg, pbx).expect("attach");
    me
}

/// Places a call with a real offer and waits for the answer; returns the call, its media and
/// the test's PBX socket.
async fn answered_call(rig: &Rig, to: &str) -> (CarrierCall, MediaCall, tokio::net::UdpSocket) {
    let reservation = rig.carrier.reserve().expect("capacity");
    let (peer, offer) = engine()
        .offer(&peer_settings(), &[Codec::Pcmu, Codec::Pcma], FarEnd::Pbx)
        .await
        .expect("offer");
    assert!(offer.contains("a=candidate"), "complete offer");
    let mut call = reservation.start_call(to, &offer).await.expect("callStart");
    loop {
        match next(&mut call).await {
            CallEvent::Trying | CallEvent::Ringing => {}
            CallEvent::Answered { sdp } => {
                peer.accept_answer(&sdp).await.expect("answer applies");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let pbx = test_pbx(&peer, peer.format().expect("format").codec).await;
    (call, peer, pbx)
}

/// Sends `n` PCMU packets (distinct payloads) from the test's PBX socket and counts the echoes
/// that come back to it byte-exact.
async fn echo_round(pbx: &tokio::net::UdpSocket, n: u16, seq0: u16) -> usize {
    let mut sent = Vec::new();
    let mut buf = [0u8; 172];
    for i in 0..n {
        let payload = [(i % 251) as u8; 160];
        sent.push(payload);
        let seq = seq0.wrapping_add(i);
        write_header(&mut buf, i == 0, 0, seq, u32::from(seq) * 160, 0xabcd);
        buf[12..].copy_from_slice(&payload);
        pbx.send(&buf).await.expect("send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen = vec![false; sent.len()];
    let mut matched = 0;
    let mut rbuf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(5);
    while matched < n as usize && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), pbx.recv(&mut rbuf)).await {
            Ok(Ok(len)) => {
                let Some(h) = RtpHeader::parse(&rbuf[..len]) else {
                    continue;
                };
                let payload = &rbuf[h.payload_start..h.payload_end];
                if let Some(i) = sent.iter().position(|p| p[..] == payload[..]) {
                    if !seen[i] {
                        seen[i] = true;
                        matched += 1;
                    }
                }
            }
            _ => break,
        }
    }
    matched
}

#[tokio::test]
async fn subscribes_refreshes_applies_turn_credentials_and_unsubscribes() {
    within(async {
        let mut sim_cfg = sim_config();
        // A short grant: the client must refresh at about half of it.
        sim_cfg.subscription_expires = 2;
        sim_cfg.conn_check_interval = Duration::from_secs(1);
        let rig = Rig::start(sim_cfg, client_config(PASS)).await;
        rig.subscribed().await;
        rig.until("a refresh", |r| {
            r.live_subscriptions()
                .first()
                .is_some_and(|s| s.refreshes >= 2)
        })
        .await;
        assert_eq!(
            rig.live_subscriptions().len(),
            1,
            "refresh, not resubscribe"
        );
        rig.until("keepalive pings", |r| {
            r.live_subscriptions().first().is_some_and(|s| s.pings >= 2)
        })
        .await;
        rig.until("connCheck answered with connAck", |r| {
            r.live_subscriptions()
                .first()
                .is_some_and(|s| s.conn_acks >= 1)
        })
        .await;
        let reservation = rig.carrier.reserve().expect("capacity");
        let servers = reservation.ice_servers();
        assert_eq!(servers[0].username.as_deref(), Some("sim-turn"));
        assert_eq!(servers[0].credential.as_deref(), Some("sim-turn-password"));
        assert_eq!(servers[1].username, None, "STUN gets no credentials");
        drop(reservation);
        let status = rig.carrier.status();
        assert_eq!(status[0].last_error, None);
        let Rig { sim, carrier, .. } = rig;
        carrier.shutdown().await;
        let subs = sim.subscriptions();
        assert!(subs.iter().all(|s| s.deleted), "{subs:?}");
    })
    .await;
}

#[tokio::test]
async fn bad_credentials_are_a_persistent_state_retried_with_backoff() {
    within(async {
        let rig = Rig::start(sim_config(), client_config("wrong-password")).await;
        rig.until("two refused attempts", |r| r.sim.stats().unauthorized >= 2)
            .await;
        let s = &rig.carrier.status()[0];
        assert_eq!(s.phase, Phase::Unauthorized);
        let err = s.last_error.clone().expect("the error is visible");
        assert!(err.contains("401"), "{err}");
        assert!(!err.contains("wrong-password"), "no secret in the error");
        assert!(matches!(
            rig.carrier.reserve(),
            Err(Unavailable::NotSubscribed)
        ));
        assert!(rig.sim.subscriptions().is_empty());
        // Backoff, not a loop: 100, 200, 400, 400 ms ... a second holds only a few attempts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let attempts = rig.sim.stats().unauthorized;
        assert!(
            attempts <= 8,
            "{attempts} attempts in ~1.3 s is a crash loop"
        );
    })
    .await;
}

#[tokio::test]
async fn overload_503_retry_after_is_honoured() {
    within(async {
        // The simulator comes up refusing: fault first, then the client.
        let sim = sim::start(sim_config()).await.unwrap();
        let control = control_client();
        control
            .post(format!("{}/faults", sim.control_url()))
            .json(&json!({"fail_subscribe": 2, "fail_subscribe_retry_after_ms": 400}))
            .send()
            .await
            .unwrap();
        let t0 = Instant::now();
        let (carrier, _inbound) = Carrier::start(
            &client_config(PASS),
            Overrides {
                base_url: Some(sim.base_url()),
                extra_ca_pem: Some(sim.cert_pem().to_string()),
            },
        )
        .unwrap();
        while !sim.subscriptions().iter().any(|s| !s.deleted) {
            assert!(t0.elapsed() < LIMIT);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Two refusals, each asking for 400 ms: not earlier than that (the backoff would say
        // 100 ms + 200 ms).
        assert!(
            t0.elapsed() >= Duration::from_millis(780),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(sim.stats().unavailable_sent, 2);
        carrier.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn retry_after_header_in_seconds_is_honoured_too() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        rig.control(
            "/faults",
            json!({"fail_subscribe": 1, "fail_subscribe_header": true,
                   "fail_subscribe_retry_after_ms": 1000, "send_gone": true}),
        )
        .await;
        let t0 = Instant::now();
        rig.until("resubscribed", |r| r.live_subscriptions().len() == 1)
            .await;
        assert!(
            t0.elapsed() >= Duration::from_millis(950),
            "{:?}",
            t0.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn gone_leads_to_a_new_subscription_and_socket() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let first = rig.live_subscriptions()[0].id.clone();
        rig.control("/faults", json!({"send_gone": true})).await;
        rig.until("a new subscription with its socket", |r| {
            let live = r.live_subscriptions();
            live.len() == 1 && live[0].id != first && live[0].ws_connected
        })
        .await;
        rig.until("client active again", |r| {
            r.carrier.status()[0].phase == Phase::Active
        })
        .await;
        assert_eq!(rig.sim.subscriptions().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn outbound_call_is_answered_and_rtp_and_dtmf_echo_over_dtls_srtp() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let (mut call, peer, pbx) = answered_call(&rig, "+971501234567").await;
        peer.wait_connected().await.expect("DTLS-SRTP up");
        let v = rig.sim_call(call.session());
        assert_eq!(v.to, format!("sip:+971501234567@sim.test"));
        assert_eq!(v.from, format!("sip:{USER}"));
        // Let the simulator's side finish its handshake too before counting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let matched = echo_round(&pbx, 50, 1000).await;
        assert!(matched >= 48, "only {matched} of 50 echoed");
        // RFC 4733 digit 5: start, then the end packet three times.
        for (i, flags) in [0x0au8, 0x8a, 0x8a, 0x8a].iter().enumerate() {
            let mut b = [0u8; 16];
            write_header(&mut b, i == 0, 101, 2000 + i as u16, 777 * 160, 0xabcd);
            b[12..].copy_from_slice(&[5, *flags, 0x03, 0x20]);
            pbx.send(&b).await.expect("event sent");
        }
        let session = call.session().to_string();
        rig.until("the digit at the simulator", |r| {
            r.sim_call(&session).media.dtmf == "5"
        })
        .await;
        let media = rig.sim_call(&session).media;
        assert!(media.rtp_packets_in >= 52, "{media:?}");
        assert!(media.rtp_packets_out >= 48, "{media:?}");
        call.end(Some("test done")).await.expect("end");
        let v = rig.sim_call(&session);
        assert_eq!(v.ended_by.as_deref(), Some("client"));
        assert_eq!(rig.carrier.status()[0].active_calls, 0, "capacity returned");
        peer.close();
    })
    .await;
}

#[tokio::test]
async fn busy_number_ends_with_486_and_duplicates_are_dropped() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let faults = rig
            .control("/faults", json!({"duplicate_notifications": true}))
            .await;
        assert_eq!(faults["duplicate_notifications"], true, "{faults}");
        let reservation = rig.carrier.reserve().unwrap();
        let (_peer, offer) = engine()
            .offer(&peer_settings(), &[Codec::Pcmu], FarEnd::Pbx)
            .await
            .unwrap();
        let mut call = reservation.start_call(BUSY, &offer).await.unwrap();
        let mut seen = Vec::new();
        loop {
            let e = next(&mut call).await;
            let end = matches!(e, CallEvent::Ended { .. });
            seen.push(e);
            if end {
                break;
            }
        }
        assert_eq!(
            seen,
            vec![
                CallEvent::Trying,
                CallEvent::Ringing,
                CallEvent::Ended {
                    code: Some(486),
                    reason: Some("Busy Here".into()),
                    cause: EndCause::Remote
                }
            ],
            "each event once, despite every notification arriving twice"
        );
        assert!(rig.live_subscriptions()[0].notifications_sent >= 3);
        rig.until("capacity returned", |r| {
            r.carrier.status()[0].active_calls == 0
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn websocket_drop_reconnects_and_resyncs_while_the_call_stays_up() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let (mut call, peer, pbx) = answered_call(&rig, "+971501112233").await;
        peer.wait_connected().await.expect("media up");
        tokio::time::sleep(Duration::from_millis(200)).await;
        rig.control(
            "/faults",
            json!({"drop_websocket": true, "refuse_ws_ms": 500}),
        )
        .await;
        rig.until("the drop seen by the client", |r| {
            !r.carrier.status()[0].websocket_connected
        })
        .await;
        // Media does not depend on the notification channel.
        let matched = echo_round(&pbx, 20, 5000).await;
        assert!(matched >= 18, "media during the outage: {matched} of 20");
        rig.until("reconnected", |r| {
            r.carrier.status()[0].websocket_connected && r.live_subscriptions()[0].ws_connects >= 2
        })
        .await;
        assert_eq!(
            next(&mut call).await,
            CallEvent::Resynced { answered: true }
        );
        assert!(rig.carrier.status()[0].websocket_reconnects >= 1);
        let v = rig.sim_call(call.session());
        assert_eq!(v.state, sim::CallState::Answered, "the call stayed up");
        assert_eq!(rig.live_subscriptions().len(), 1, "same subscription");
        let matched = echo_round(&pbx, 20, 6000).await;
        assert!(matched >= 18, "media after reconnect: {matched} of 20");
        // Events flow again on the new socket.
        let session = call.session().to_string();
        rig.control(&format!("/calls/{session}/hangup"), json!({}))
            .await;
        match next(&mut call).await {
            CallEvent::Ended { cause, .. } => assert_eq!(cause, EndCause::Remote),
            other => panic!("{other:?}"),
        }
        peer.close();
    })
    .await;
}

#[tokio::test]
async fn a_call_whose_audit_fails_is_reported_ended() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let (mut call, peer, _pbx) = answered_call(&rig, "+971504445566").await;
        let session = call.session().to_string();
        rig.until("audits arrive", |r| r.sim_call(&session).audits >= 1)
            .await;
        // Cut the notification channel for long, then end the call at the carrier: the
        // callEnd is lost, so only the audit can tell.
        rig.control(
            "/faults",
            json!({"drop_websocket": true, "refuse_ws_ms": 30000}),
        )
        .await;
        rig.until("socket down", |r| {
            !r.carrier.status()[0].websocket_connected
        })
        .await;
        rig.control(&format!("/calls/{session}/hangup"), json!({}))
            .await;
        match next(&mut call).await {
            CallEvent::Ended { cause, .. } => assert_eq!(cause, EndCause::AuditFailed),
            other => panic!("{other:?}"),
        }
        assert!(call.next_event().await.is_none(), "nothing after the end");
        peer.close();
    })
    .await;
}

#[tokio::test]
async fn inbound_call_is_a_typed_event_and_can_be_answered_or_rejected() {
    within(async {
        let mut rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let r = rig
            .control(
                "/originate",
                json!({"to": "+97142001000", "from": "+971509990000",
                       "caller_name": "Mona", "mode": "tone"}),
            )
            .await;
        let session = r["session"].as_str().unwrap().to_string();
        let mut call = tokio::time::timeout(LIMIT, rig.inbound.recv())
            .await
            .unwrap()
            .expect("inbound call");
        assert_eq!(call.session(), session);
        assert_eq!(call.direction(), CallDirection::Inbound);
        let inc = call.incoming().expect("incoming details").clone();
        assert_eq!(inc.caller_number.as_deref(), Some("+971509990000"));
        assert_eq!(inc.callee_number.as_deref(), Some("+97142001000"));
        assert_eq!(inc.caller_name.as_deref(), Some("Mona"));
        call.ringing().await.expect("ringing");
        let (peer, answer, format) = engine()
            .answer(
                &peer_settings(),
                inc.offer.as_deref().unwrap(),
                None,
                FarEnd::Pbx,
            )
            .await
            .expect("answer");
        let pbx = test_pbx(&peer, format.codec).await;
        call.answer(&answer).await.expect("callAnswer");
        rig.until("answered at the simulator", |r| {
            r.sim_call(&session).state == sim::CallState::Answered
        })
        .await;
        // The simulator plays its tone: the exact bytes arrive over DTLS-SRTP.
        let want = sim::media::tone_payload(format.codec);
        let mut good = 0;
        let mut buf = [0u8; 1500];
        while good < 10 {
            let n = tokio::time::timeout(LIMIT, pbx.recv(&mut buf))
                .await
                .expect("tone packets")
                .expect("socket open");
            if buf[12..n] == want[..] {
                good += 1;
            }
        }
        rig.control(&format!("/calls/{session}/hangup"), json!({}))
            .await;
        assert!(matches!(next(&mut call).await, CallEvent::Ended { .. }));
        peer.close();

        // A second one is rejected.
        let r = rig
            .control(
                "/originate",
                json!({"to": "+97142001000", "from": "+971509990001"}),
            )
            .await;
        let s2 = r["session"].as_str().unwrap().to_string();
        let mut call = tokio::time::timeout(LIMIT, rig.inbound.recv())
            .await
            .unwrap()
            .unwrap();
        call.reject().await.expect("reject");
        let v = rig.sim_call(&s2);
        assert_eq!(v.state, sim::CallState::Ended);
        assert_eq!(v.ended_by.as_deref(), Some("client"));
    })
    .await;
}

#[tokio::test]
async fn capacity_is_per_account_and_returned_when_calls_end() {
    within(async {
        let rig = Rig::start(sim_config(), client_config(PASS)).await;
        rig.subscribed().await;
        let held: Vec<Reservation> = (0..4).map(|_| rig.carrier.reserve().unwrap()).collect();
        assert!(matches!(
            rig.carrier.reserve(),
            Err(Unavailable::AtCapacity)
        ));
        // an emergency call still gets out, over the account's max_calls
        let over = rig
            .carrier
            .reserve_emergency()
            .expect("emergency over capacity");
        assert_eq!(over.account(), rig.carrier.status()[0].name);
        assert_eq!(
            rig.carrier.status()[0].active_calls,
            4,
            "not counted in the limit"
        );
        drop(over);
        drop(held);
        let (_peer, offer) = engine()
            .offer(&peer_settings(), &[Codec::Pcmu], FarEnd::Pbx)
            .await
            .unwrap();
        let call = rig
            .carrier
            .reserve()
            .unwrap()
            .start_call(NO_ANSWER, &offer)
            .await
            .unwrap();
        let session = call.session().to_string();
        assert_eq!(rig.carrier.status()[0].active_calls, 1);
        // Dropped without an explicit end (an error path): the session is still deleted.
        drop(call);
        rig.until("deleted at the carrier", |r| {
            r.sim_call(&session).state == sim::CallState::Ended
        })
        .await;
        assert_eq!(rig.carrier.status()[0].active_calls, 0);
    })
    .await;
}

#[test]
fn turn_credentials_go_to_every_turn_server_only() {
    let urls = vec![
        "turns:ct-turn1.etisalat.ae:443?transport=tcp".to_string(),
        "turns:ct-turn2.etisalat.ae:443?transport=tcp".to_string(),
        "stun:ct-turn1.etisalat.ae:3478".to_string(),
    ];
    let t = protocol::TurnCredentials {
        username: "u".into(),
        password: "p".into(),
    };
    let s = ice_servers(&urls, Some(&t));
    assert_eq!(s[0].username.as_deref(), Some("u"));
    assert_eq!(s[1].credential.as_deref(), Some("p"));
    assert_eq!(s[2].username, None);
    assert!(!format!("{s:?}").contains("\"p\""));
}

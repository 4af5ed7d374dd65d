//! `TurnClient` against the in-memory server of `fake_server`, in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use turn_client_proto::types::message::{CHANNEL_BIND, CREATE_PERMISSION, REFRESH};
use turn_server_proto::api::TurnServerApi;

use super::fake_server::{addr, credentials, Harness, PASS};
use super::*;

use TurnTransport::{Tcp, Tls, Udp};

const PEER: &str = "127.0.0.1:50000";

/// Payloads of lengths that are not multiples of 4 (ChannelData padding matters for those).
fn payload(i: usize) -> Vec<u8> {
    (0..(i % 7 + 1) * 13).map(|b| (b * 31 + i) as u8).collect()
}

fn round_trips(h: &mut Harness, peer: SocketAddr, n: usize) {
    for i in 0..n {
        let p = payload(i);
        h.server.to_peers.clear();
        h.client.send_to(peer, &p, h.now).unwrap();
        h.pump();
        assert_eq!(
            h.server.to_peers,
            vec![(peer, p.clone())],
            "to the peer, #{i}"
        );
        h.delivered.clear();
        h.peer_sends(peer, &p);
        assert_eq!(h.delivered, vec![(peer, p)], "from the peer, #{i}");
    }
}

fn allocated_with_peer(transport: TurnTransport) -> (Harness, SocketAddr) {
    let mut h = Harness::new(transport, PASS);
    let relayed = h.allocate();
    assert_eq!(relayed, h.server.relayed);
    assert_eq!(h.client.relayed_addr(), Some(relayed));
    let peer = addr(PEER);
    h.client.add_permission(peer, h.now).unwrap();
    h.run_for(Duration::from_millis(500));
    (h, peer)
}

#[test]
fn udp_relays_both_ways_and_moves_media_to_a_channel() {
    let (mut h, peer) = allocated_with_peer(Udp);
    assert!(h.server.requests.contains(&CREATE_PERMISSION));
    assert!(h.server.requests.contains(&CHANNEL_BIND));
    round_trips(&mut h, peer, 10);
    h.server.first_bytes.clear();
    h.client.send_to(peer, b"abc", h.now).unwrap();
    h.pump();
    assert_eq!(h.server.first_bytes, vec![0x40], "ChannelData once bound");
    assert_eq!(h.failed(), None);
}

#[test]
fn tcp_and_tls_relay_with_send_indications_only() {
    for transport in [Tcp, Tls] {
        let (mut h, peer) = allocated_with_peer(transport);
        round_trips(&mut h, peer, 10);
        assert!(!h.server.requests.contains(&CHANNEL_BIND), "{transport}");
        assert!(
            h.server.first_bytes.iter().all(|&b| b < 0x40),
            "{transport}: only STUN on the stream"
        );
        assert_eq!(h.failed(), None);
    }
}

#[test]
fn data_sent_before_the_permission_is_held_then_sent_in_order() {
    for transport in [Udp, Tcp, Tls] {
        let mut h = Harness::new(transport, PASS);
        let peer = addr(PEER);
        for i in 1..=3u8 {
            h.client.send_to(peer, &[i; 5], h.now).unwrap();
        }
        h.allocate();
        h.run_for(Duration::from_millis(300));
        let sent: Vec<_> = h.server.to_peers.iter().map(|(_, d)| d[0]).collect();
        assert_eq!(sent, vec![1, 2, 3], "{transport}");
    }
}

#[test]
fn held_data_ages_out() {
    let mut h = Harness::new(Udp, PASS);
    h.server_silent = true;
    h.client.send_to(addr(PEER), &[1; 5], h.now).unwrap();
    h.run_for(Duration::from_secs(3));
    h.server_silent = false;
    // The next Allocate retransmission (at 3.5 s) gets through.
    h.run_for(Duration::from_secs(2));
    assert!(matches!(
        h.events.first(),
        Some(TurnEvent::Allocated { .. })
    ));
    assert!(h.server.to_peers.is_empty());
}

#[test]
fn refreshes_keep_allocation_permission_and_channel_alive_for_an_hour() {
    for transport in [Udp, Tcp] {
        let (mut h, peer) = allocated_with_peer(transport);
        round_trips(&mut h, peer, 1);
        h.run_for(Duration::from_secs(3600));
        assert_eq!(h.failed(), None, "{transport}");
        round_trips(&mut h, peer, 3);
        let count = |m| h.server.requests.iter().filter(|r| **r == m).count();
        assert!(
            count(REFRESH) >= 2,
            "{transport}: {} refreshes",
            count(REFRESH)
        );
        // Permissions last 5 min: refreshed every 4 min.
        assert!(
            count(CREATE_PERMISSION) >= 15,
            "{transport}: {}",
            count(CREATE_PERMISSION)
        );
        if transport == Udp {
            assert!(
                count(CHANNEL_BIND) >= 6,
                "channel refreshes: {}",
                count(CHANNEL_BIND)
            );
        }
    }
}

#[test]
fn stale_nonces_are_answered_without_failing() {
    let mut h = Harness::new(Udp, PASS);
    h.server
        .turn
        .set_nonce_expiry_duration(Duration::from_secs(45));
    h.allocate();
    let peer = addr(PEER);
    h.client.add_permission(peer, h.now).unwrap();
    h.run_for(Duration::from_secs(1800));
    assert_eq!(h.failed(), None);
    round_trips(&mut h, peer, 2);
}

#[test]
fn wrong_password_fails_naming_the_401_and_stops() {
    for transport in [Udp, Tcp, Tls] {
        let mut h = Harness::new(transport, "wrong");
        h.pump();
        h.run_for(ALLOCATE_TIMEOUT + Duration::from_secs(1));
        let reason = h.failed().expect("failed").to_owned();
        assert!(reason.contains("401"), "{transport}: {reason}");
        assert!(h.client.is_closed());
        assert_eq!(h.client.poll_timeout(), None);
        // The crate re-authenticates a 401 a bounded number of times, well before the deadline.
        assert!(h.server.requests.len() <= 12, "{:?}", h.server.requests);
        assert!(
            !reason.contains("no allocation within"),
            "{transport}: {reason}"
        );
        let n = h.events.len();
        h.run_for(Duration::from_secs(60));
        assert_eq!(h.events.len(), n, "one Failed, then silence");
    }
}

#[test]
fn a_refused_allocation_fails_naming_the_error() {
    let mut h = Harness::new(Udp, PASS);
    h.server.no_capacity = true;
    h.pump();
    h.run_for(Duration::from_secs(1));
    let reason = h.failed().expect("failed");
    assert!(reason.contains("508"), "{reason}");
}

#[test]
fn a_silent_server_fails_at_the_allocate_deadline() {
    for transport in [Udp, Tcp, Tls] {
        let mut h = Harness::new(transport, PASS);
        let start = h.now;
        h.server_silent = true;
        h.run_for(Duration::from_secs(60));
        let reason = h.failed().expect("failed");
        assert!(reason.contains("no allocation within 10 s"), "{reason}");
        let Some(TurnEvent::Failed(_)) = h.events.last() else {
            panic!("{:?}", h.events)
        };
        assert!(h.client.is_closed());
        // The deadline was one of the client's timeouts, so it fired exactly then.
        assert_eq!(h.events.len(), 1);
        let _ = start;
    }
}

#[test]
fn the_deadline_fires_on_time() {
    let mut h = Harness::new(Udp, PASS);
    let start = h.now;
    h.server_silent = true;
    while h.failed().is_none() && h.now < start + Duration::from_secs(60) {
        h.step(start + Duration::from_secs(60));
    }
    assert_eq!(h.now - start, ALLOCATE_TIMEOUT);
}

#[test]
fn close_deallocates_and_ends_quietly() {
    for transport in [Udp, Tcp, Tls] {
        let (mut h, peer) = allocated_with_peer(transport);
        round_trips(&mut h, peer, 1);
        h.client.close(h.now);
        h.run_for(Duration::from_millis(100));
        assert_eq!(h.server.requests.last(), Some(&REFRESH), "{transport}");
        assert!(h.client.is_closed(), "{transport}");
        assert_eq!(h.failed(), None);
        assert_eq!(h.client.relayed_addr(), None);
        assert!(matches!(
            h.client.send_to(peer, b"x", h.now),
            Err(TurnError::Closed)
        ));
        // The server dropped the allocation: a peer's datagram goes nowhere.
        assert!(h.server.peer_sent(peer, b"late", h.now).is_empty());
    }
}

#[test]
fn close_without_an_answer_ends_at_the_close_deadline() {
    let (mut h, _peer) = allocated_with_peer(Udp);
    h.server_silent = true;
    h.client.close(h.now);
    h.run_for(CLOSE_TIMEOUT + Duration::from_millis(1));
    assert!(h.client.is_closed());
    assert_eq!(h.failed(), None);
}

#[test]
fn an_unanswered_permission_is_reported_then_asked_again() {
    let mut h = Harness::new(Udp, PASS);
    h.allocate();
    h.server_silent = true;
    let peer = addr(PEER);
    h.client.add_permission(peer, h.now).unwrap();
    let give_up = h.now + Duration::from_secs(60);
    while !h
        .events
        .contains(&TurnEvent::PermissionFailed { peer: peer.ip() })
    {
        assert!(h.now < give_up, "{:?}", h.events);
        h.step(give_up);
    }
    assert!(matches!(
        h.client.send_to(peer, b"x", h.now),
        Err(TurnError::PermissionRefused(_))
    ));
    h.server_silent = false;
    h.run_for(peers::PERMISSION_RETRY);
    // The next send asks again; it is held meanwhile and goes out once granted.
    h.client.send_to(peer, b"again", h.now).unwrap();
    h.run_for(Duration::from_millis(300));
    assert_eq!(h.server.to_peers, vec![(peer, b"again".to_vec())]);
    assert_eq!(h.failed(), None);
}

#[test]
fn api_misuse_is_an_error_not_a_panic() {
    let now = Instant::now();
    let c = credentials(PASS);
    let v4 = addr("127.0.0.1:1");
    let v6 = addr("[::1]:3478");
    assert!(matches!(
        TurnClient::new(Udp, v4, v6, "", &c, None, now),
        Err(TurnError::AddressFamily { .. })
    ));
    assert!(matches!(
        TurnClient::new(Tls, v4, v4, "turn.test", &c, None, now),
        Err(TurnError::TlsConfigMissing)
    ));
    let (_, tls) = fake_server::tls_pair();
    assert!(matches!(
        TurnClient::new(Tls, v4, v4, "bad name!", &c, Some(tls), now),
        Err(TurnError::ServerName(_))
    ));
    let (mut h, peer) = allocated_with_peer(Udp);
    assert!(matches!(
        h.client.send_to(peer, &vec![0; MAX_PAYLOAD + 1], h.now),
        Err(TurnError::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        h.client.send_to(v6, b"x", h.now),
        Err(TurnError::PeerFamily(_))
    ));
    for port in 1..MAX_PEERS as u16 {
        h.client
            .add_permission(SocketAddr::new(peer.ip(), port), h.now)
            .unwrap();
    }
    assert!(matches!(
        h.client.add_permission(addr("127.0.0.2:1"), h.now),
        Err(TurnError::TooManyPeers)
    ));
    let shown = format!("{c:?}");
    assert!(
        shown.contains(fake_server::USER) && !shown.contains("\"p\""),
        "{shown}"
    );
}

/// `TURN_FUZZ_ROUNDS` raises the garbage tests' default for a longer local run.
fn fuzz_rounds(default: usize) -> usize {
    std::env::var("TURN_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Real server frames, mutated: flipped bytes, truncations, foreign channel numbers.
fn mutations(rng: &mut impl Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.gen_range(0..4) {
        0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
        1 => {
            let mut f = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                if !f.is_empty() {
                    let i = rng.gen_range(0..f.len());
                    f[i] = rng.gen();
                }
            }
            f
        }
        2 => {
            let f = &seeds[rng.gen_range(0..seeds.len())];
            f[..rng.gen_range(0..=f.len())].to_vec()
        }
        _ => {
            let mut f = vec![0x40 | rng.gen_range(0..16u8), rng.gen(), 0, 0];
            let body: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
            f[2..4].copy_from_slice(&(body.len() as u16).to_be_bytes());
            f.extend(body);
            f
        }
    }
}

#[test]
fn random_and_mutated_datagrams_never_panic_and_the_relay_survives() {
    let (mut h, peer) = allocated_with_peer(Udp);
    let seeds = vec![
        h.server.peer_sent(peer, b"seed one", h.now),
        h.server
            .peer_sent(addr("127.0.0.1:50001"), b"no permission", h.now),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..fuzz_rounds(5000) {
        let g = mutations(&mut rng, &seeds);
        h.deliver_to_client(&g);
    }
    h.pump();
    assert_eq!(h.failed(), None);
    round_trips(&mut h, peer, 2);
}

/// Well-framed but hostile frames inside the stream: ChannelData on channels never bound (the
/// input that makes `turn-client-rustls` 0.1.2 hit `unreachable!`), Data indications from
/// peers without permission, responses to nothing.
#[test]
fn hostile_frames_on_a_stream_are_ignored() {
    for transport in [Tcp, Tls] {
        let (mut h, peer) = allocated_with_peer(transport);
        let data_no_perm = h.server.peer_sent(addr("127.0.0.9:1"), b"x", h.now);
        assert!(data_no_perm.is_empty(), "the server itself filters those");
        let mut frames: Vec<Vec<u8>> = vec![];
        frames.push(vec![0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        frames.push(vec![0x4f, 0xff, 0x00, 0x00]);
        // A real Data indication (from the permitted peer), its body bytes flipped below.
        let seed = h.server.relay_plain(peer, b"seed payload", h.now);
        assert!(seed.len() > 20);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for _ in 0..fuzz_rounds(2000) / 2 {
            let mut f = seed.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(20..f.len());
                f[i] = rng.gen();
            }
            frames.push(f);
            // Random STUN bodies in valid headers (success/error responses, indications).
            let body: Vec<u8> = (0..rng.gen_range(0..16) * 4).map(|_| rng.gen()).collect();
            let mut f = vec![0x01, rng.gen_range(0..4) << 4 | 0x01];
            f.extend((body.len() as u16).to_be_bytes());
            f.extend(0x2112_a442u32.to_be_bytes());
            f.extend((0..12).map(|_| rng.gen::<u8>()));
            f.extend(body);
            frames.push(f);
        }
        for f in &frames {
            let bytes = h.server.raw_to_client(f);
            h.deliver_to_client(&bytes);
        }
        h.pump();
        assert_eq!(h.failed(), None, "{transport}");
        round_trips(&mut h, peer, 2);
    }
}

#[test]
fn a_desynchronised_stream_fails_the_allocation() {
    for transport in [Tcp, Tls] {
        let (mut h, _peer) = allocated_with_peer(transport);
        let bytes = h.server.raw_to_client(&[0x80, 1, 2, 3, 4, 5, 6, 7]);
        h.deliver_to_client(&bytes);
        h.pump();
        let reason = h.failed().expect("failed");
        assert!(reason.contains("framed"), "{transport}: {reason}");
    }
}

#[test]
fn random_stream_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for transport in [Tcp, Tls] {
        for round in 0..fuzz_rounds(5000) / 100 {
            let (mut h, _peer) = allocated_with_peer(transport);
            for _ in 0..40 {
                let g: Vec<u8> = (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect();
                h.deliver_to_client(&g);
            }
            h.pump();
            // TLS records or stream framing broke: one Failed, nothing after.
            if let Some(reason) = h.failed() {
                assert!(!reason.is_empty(), "{transport} #{round}");
                assert!(h.client.is_closed());
            }
        }
    }
}

#[test]
fn a_forged_401_does_not_fail_the_allocation() {
    use stun_proto::types::attribute::ErrorCode;
    use stun_proto::types::message::{
        Message, MessageClass, MessageType, MessageWrite, MessageWriteExt, MessageWriteVec,
        TransactionId,
    };
    use turn_client_proto::types::message::ALLOCATE;
    let mut h = Harness::new(Udp, PASS);
    let mut forged = Message::builder(
        MessageType::from_class_method(MessageClass::Error, ALLOCATE),
        TransactionId::generate(),
        MessageWriteVec::new(),
    );
    forged
        .add_attribute(&ErrorCode::builder(ErrorCode::UNAUTHORIZED).build().unwrap())
        .unwrap();
    let forged = forged.finish();
    h.deliver_to_client(&forged);
    h.allocate();
    h.deliver_to_client(&forged);
    h.pump();
    assert_eq!(h.failed(), None);
}

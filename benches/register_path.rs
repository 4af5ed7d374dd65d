//! The REGISTER hot path: parse, digest verification, and a whole authenticated REGISTER through
//! the endpoint core (parse, transaction, auth, registrar, response), without sockets.
//!
//! Run: `cargo bench --bench register_path`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use trunkgate::config::Config;
use trunkgate::sip::digest::{self, Algorithm};
use trunkgate::sip::endpoint::Endpoint;
use trunkgate::sip::parse::parse;
use trunkgate::sip::registrar::Registrations;
use trunkgate::sip::stats::SipStats;

const REALM: &str = "trunkgate.bench";

fn config() -> Config {
    Config::from_toml(&format!(
        "[sip]\nlisten = \"127.0.0.1:5060\"\nrealm = \"{REALM}\"\n\
         [security]\nmax_transactions = 100000000\n\
         [[trunks]]\nname = \"t0\"\nauth_username = \"user0\"\npassword = \"secret\"\n"
    ))
    .expect("bench config")
}

fn register(branch: u64, authorization: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:user0@127.0.0.1:5060>;tag=1234SIPpTag001\r\n\
         To: <sip:user0@127.0.0.1:5060>\r\nCall-ID: {branch}-1234@127.0.0.1\r\nCSeq: 2 REGISTER\r\n\
         Contact: <sip:user0@127.0.0.1:5080;transport=UDP>\r\n{authorization}Expires: 3600\r\n\
         User-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Credentials for `nonce`; with `nc`, qop=auth at that nonce count (one nonce, many requests,
/// as Asterisk refreshes), without, the one request a no-qop nonce is good for.
fn authorization(nonce: &str, nc: Option<u32>) -> String {
    let ha1 = digest::ha1(Algorithm::Md5, "user0", REALM, "secret");
    let qop = nc
        .map(|n| format!(",qop=auth,nc={n:08x},cnonce=\"b0b\""))
        .unwrap_or_default();
    let creds = digest::parse_credentials(&format!(
        "Digest username=\"user0\",realm=\"{REALM}\",uri=\"sip:127.0.0.1:5060\",nonce=\"{nonce}\",response=\"0\",algorithm=MD5{qop}"
    ))
    .expect("credentials");
    let response =
        digest::expected_response(Algorithm::Md5, &ha1, "REGISTER", &creds).expect("response");
    format!(
        "Authorization: Digest username=\"user0\",realm=\"{REALM}\",uri=\"sip:127.0.0.1:5060\",nonce=\"{nonce}\",response=\"{response}\",algorithm=MD5{qop}\r\n"
    )
}

fn benches(c: &mut Criterion) {
    let src: SocketAddr = "127.0.0.1:5080".parse().expect("addr");
    let msg = register(
        1,
        &authorization("dcd98b7102dd2f0e8b11d0f600bfb0c093", None),
    );
    c.bench_function("parse authenticated REGISTER", |b| {
        b.iter(|| parse(black_box(msg.as_bytes()), 65535).is_ok())
    });

    let ha1 = digest::ha1(Algorithm::Md5, "user0", REALM, "secret");
    let auth_value = authorization("dcd98b7102dd2f0e8b11d0f600bfb0c093", None);
    let value = auth_value
        .trim_start_matches("Authorization: ")
        .trim_end()
        .to_string();
    c.bench_function("digest parse + verify (MD5)", |b| {
        b.iter(|| {
            let creds = digest::parse_credentials(black_box(&value)).expect("parse");
            digest::verify(&creds, "REGISTER", &ha1)
        })
    });

    // The whole authenticated REGISTER through the core: obtain a real nonce from a challenge,
    // then send uniquely-branched authenticated REGISTERs (each a new transaction), each with the
    // next nonce count; the client's side (building the message, its digest) is not timed.
    let cfg = config();
    let now = Instant::now();
    let mut ep = Endpoint::new(
        &cfg,
        Registrations::default(),
        Arc::new(SipStats::default()),
        now,
    )
    .expect("endpoint");
    ep.handle_datagram(register(0, "").as_bytes(), src, now);
    let challenge = ep.poll_transmit().expect("401");
    let text = String::from_utf8_lossy(&challenge.bytes).into_owned();
    let nonce = text
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce")
        .to_string();
    let mut n = 0u32;
    let mut next = || {
        n += 1;
        register(u64::from(n), &authorization(&nonce, Some(n)))
    };
    c.bench_function("endpoint: authenticated REGISTER -> 200", |b| {
        b.iter_batched(
            &mut next,
            |msg| {
                ep.handle_datagram(msg.as_bytes(), src, now);
                let out = ep.poll_transmit().expect("response");
                debug_assert!(out.bytes.starts_with(b"SIP/2.0 200"));
                out
            },
            BatchSize::SmallInput,
        )
    });
    ep.handle_datagram(next().as_bytes(), src, now);
    let last = ep.poll_transmit().expect("response");
    assert!(
        last.bytes.starts_with(b"SIP/2.0 200"),
        "bench REGISTER not accepted: {}",
        String::from_utf8_lossy(&last.bytes)
    );
}

criterion_group! {
    name = register_path;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(register_path);

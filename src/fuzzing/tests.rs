//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz entry points:
//! what the fuzzer found once, and the seeds taken from the test data, stay fixed in CI without
//! running the fuzzer. Deterministic: only the files, in name order.

use std::path::{Path, PathBuf};

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} corpus files fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn sip_datagram_corpus_replays() {
    replay("sip_datagram", super::sip_datagram);
}

#[test]
fn pbx_sdp_corpus_replays() {
    replay("pbx_sdp", super::pbx_sdp);
}

#[test]
fn carrier_json_corpus_replays() {
    replay("carrier_json", super::carrier_json);
}

#[test]
fn digest_header_corpus_replays() {
    replay("digest_header", super::digest_header);
}

#[test]
fn chunks_split_on_the_separator() {
    let chunks: Vec<&[u8]> = super::sip_datagram::split(b"\x00a\n~~\n\x01b\n~~\n").collect();
    assert_eq!(chunks, [&b"\x00a"[..], b"\x01b", b""]);
}

#[test]
fn len_is_the_body_length() {
    let m = super::sip_datagram::fill_len(b"X\r\nContent-Length: [len]\r\n\r\nv=0\r\n".to_vec());
    assert_eq!(m, b"X\r\nContent-Length: 5\r\n\r\nv=0\r\n");
}

/// A REGISTER answered by the harness's `[authentication]` registers the trunk: the keyword
/// expansion reaches the authenticated code, or the seeds would test far less than they seem to.
#[test]
fn authentication_keyword_answers_the_challenge() {
    let register = "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-BRANCH;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:3cx_trunk@127.0.0.1:5060>;tag=1\r\n\
        To: <sip:3cx_trunk@127.0.0.1:5060>\r\n\
        Call-ID: reg-1@127.0.0.1\r\n\
        CSeq: CSEQ REGISTER\r\n\
        Contact: <sip:3cx_trunk@127.0.0.1:5062>\r\n\
        AUTH\
        Expires: 600\r\n\
        Content-Length: 0\r\n\r\n";
    let first = register
        .replace("BRANCH", "1")
        .replace("CSEQ", "1")
        .replace("AUTH", "");
    let second = register
        .replace("BRANCH", "2")
        .replace("CSEQ", "2")
        .replace("AUTH", "[authentication]\r\n");
    let mut input = vec![0u8];
    input.extend_from_slice(first.as_bytes());
    input.extend_from_slice(super::CHUNK_SEPARATOR);
    input.push(0);
    input.extend_from_slice(second.as_bytes());
    super::sip_datagram(&input);

    // The same, checked from inside: the binding exists after the second REGISTER.
    let now = super::origin();
    let ep = crate::sip::endpoint::Endpoint::new(
        super::sip_datagram::config(),
        crate::sip::registrar::Registrations::default(),
        std::sync::Arc::new(crate::sip::stats::SipStats::default()),
        now,
    )
    .unwrap();
    let mut h = super::sip_datagram::Harness {
        ep,
        now,
        sent: Default::default(),
        calls: Vec::new(),
        done: Vec::new(),
        answering_rejected: false,
        round: Vec::new(),
    };
    let src = "127.0.0.1:5062".parse().unwrap();
    for m in [&first, &second] {
        let d = h.expand(m.as_bytes(), src);
        h.ep.handle_datagram(&d, src, h.now);
        h.drain();
    }
    assert!(h.ep.registrations().get("pbx-main").is_registered());
}

#[test]
fn fixed_ha1s_have_their_algorithms_lengths() {
    assert_eq!(super::digest_header::FIXED_HA1_MD5.len(), 32);
    assert_eq!(super::digest_header::FIXED_HA1_SHA256.len(), 64);
}

#[test]
fn webrtc_demux_corpus_replays() {
    replay("webrtc_demux", super::webrtc_demux);
}

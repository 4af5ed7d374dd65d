//! Log output set-up: `tracing` with the level from the config, overridable by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The WebRTC stack logs every ICE and DTLS step at info: quiet unless asked for by name.
const QUIET: &[&str] = &[
    "webrtc",
    "rtc",
    "rtc_crypto",
    "rtc_datachannel",
    "rtc_dtls",
    "rtc_ice",
    "rtc_interceptor",
    "rtc_mdns",
    "rtc_media",
    "rtc_rtcp",
    "rtc_rtp",
    "rtc_sctp",
    "rtc_sdp",
    "rtc_shared",
    "rtc_srtp",
    "rtc_stun",
    "rtc_turn",
];

/// The filter for a configured level: the level, plus `warn` for the WebRTC crates unless the
/// level names them itself.
pub fn directives(level: &str) -> String {
    let mut d = level.to_string();
    for target in QUIET {
        let named = level
            .split(',')
            .any(|part| part.trim().split('=').next() == Some(target));
        if !named {
            d.push_str(&format!(",{target}=warn"));
        }
    }
    d
}

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

//! Integration tests: the real `trunkgate` binary on loopback, driven by real peers (sipp, raw
//! UDP clients). Every socket is bound to 127.0.0.1 and every wait is bounded.

mod harness;
mod http;
mod sim_process;
mod sip_client;
mod sipp;

mod admin;
mod call_scenarios;
mod call_support;
mod calls;
mod calls_more;
mod carrier;
mod cli;
mod cluster;
mod cluster_support;
mod coturn;
mod edge;
mod media_engine;

mod numbers;
mod ops;
mod qualify;
mod register_sipp;
mod reload;
mod rtp_capture;
mod security;
mod sha256_auth;
mod shared_state;
mod systemd;
mod tagged_audio;
mod torture;
mod turn_client;

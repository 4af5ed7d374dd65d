//! `/status` (JSON), `/metrics` (Prometheus text), `/healthz` and `/bans` (list, lift) over
//! plain HTTP on `[status] listen` (loopback by default: there is no authentication).
//! Everything is read from shared snapshots; nothing here can slow the SIP loop or a call. Lifting
//! a ban is the one write: a command to the SIP loop, answered when it has run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::{CallMetrics, Exposition};
use crate::call::record::CallDirection;
use crate::call::registry::{LiveCall, Registry};
use crate::call::settings::LiveSettings;
use crate::carrier::{AccountStatus, Carrier};
use crate::cluster::Cluster;
use crate::media::relay::RelayCounters;
use crate::sip::registrar::Registrations;
use crate::sip::security::{BanView, SecurityView, Source};
use crate::sip::stats::{SipStats, SipTraffic};
use crate::sip::transport::{Control, LoopHealth};
use crate::sip::tu::CallRef;

/// What the endpoints read.
pub struct OpsState {
    pub started: Instant,
    pub stats: Arc<SipStats>,
    pub traffic: Arc<SipTraffic>,
    pub registrations: Registrations,
    pub settings: LiveSettings,
    pub carrier: Option<Arc<Carrier>>,
    pub calls: Arc<Registry>,
    pub metrics: Arc<CallMetrics>,
    /// SIGTERM received: new calls are refused, `/healthz` says so.
    pub draining: Arc<AtomicBool>,
    /// Bans and the edge's drop and failure counters.
    pub security: Arc<SecurityView>,
    /// Commands to the SIP loop (lifting a ban).
    pub control: mpsc::UnboundedSender<Control>,
    /// The SIP loop's own gauges.
    pub sip_loop: Arc<LoopHealth>,
    /// The other instances, when `[cluster] redis` is set.
    pub cluster: Option<Cluster>,
    /// The media engine's own counters (datagrams, syscalls, strangers' datagrams by reason).
    pub media: Arc<crate::media::engine::EngineCounters>,
}

pub fn router(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/bans", get(bans))
        .route("/bans/{address}", delete(unban))
        .with_state(state)
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<OpsState>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "status endpoint stopped");
    }
}

fn direction(d: CallDirection) -> &'static str {
    match d {
        CallDirection::Outbound => "outbound",
        CallDirection::Inbound => "inbound",
    }
}

async fn healthz(State(s): State<Arc<OpsState>>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// A ban as JSON, its times on the wall clock.
fn ban_json(b: &BanView, now: Instant) -> Value {
    let wall = |t: Instant| {
        let at = if t >= now {
            SystemTime::now() + (t - now)
        } else {
            SystemTime::now() - (now - t)
        };
        humantime::format_rfc3339_seconds(at).to_string()
    };
    json!({
        "address": b.source.to_string(),
        "reason": b.reason.label(),
        "failures": b.failures,
        "offences": b.offences,
        "since": wall(b.since),
        "until": wall(b.until),
        "remaining_s": b.until.saturating_duration_since(now).as_secs(),
    })
}

/// Live bans (one that ran out and awaits the SIP loop's sweep is over already).
fn live_bans(s: &OpsState, now: Instant) -> Vec<BanView> {
    s.security
        .bans()
        .into_iter()
        .filter(|b| b.until > now)
        .collect()
}

async fn bans(State(s): State<Arc<OpsState>>) -> Response {
    let now = Instant::now();
    let v: Vec<Value> = live_bans(&s, now)
        .iter()
        .map(|b| ban_json(b, now))
        .collect();
    Json(Value::Array(v)).into_response()
}

async fn unban(State(s): State<Arc<OpsState>>, Path(address): Path<String>) -> Response {
    let source = match address.parse::<Source>() {
        Ok(src) => src,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    };
    let (reply, answer) = oneshot::channel();
    if s.control.send(Control::Unban { source, reply }).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the SIP loop is stopping" })),
        )
            .into_response();
    }
    match answer.await {
        Ok(true) => Json(json!({ "unbanned": source.to_string() })).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{source} is not banned") })),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the SIP loop is stopping" })),
        )
            .into_response(),
    }
}

async fn status(State(s): State<Arc<OpsState>>) -> Response {
    let now = Instant::now();
    let calls = s.calls.snapshot();
    let settings = s.settings.current();
    let trunks: Vec<Value> = settings
        .trunks
        .iter()
        .map(|name| {
            let reg = s.registrations.get(name);
            let primary = reg.primary().cloned();
            json!({
                "name": name,
                "registered": reg.is_registered(),
                "contact": primary.as_ref().map(|b| b.uri.clone()),
                "source": primary.as_ref().map(|b| b.source.to_string()),
                "pbx": primary.as_ref().map(|b| b.pbx.to_string()),
                "path": primary.as_ref().map(|b| b.path.clone()).unwrap_or_default(),
                "expires_in": primary.as_ref().map(|b| b.expires_at.saturating_duration_since(now).as_secs()),
                "active_calls": calls.iter().filter(|(_, c)| c.trunk.as_deref() == Some(name)).count(),
            })
        })
        .collect();
    let accounts: Vec<Value> = s
        .carrier
        .as_ref()
        .map(|c| c.status())
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "username": a.username,
                "subscription_state": format!("{:?}", a.phase).to_lowercase(),
                "websocket_connected": a.websocket_connected,
                "websocket_reconnects": a.websocket_reconnects,
                "last_error": a.last_error,
                "rest_errors": a.rest_errors,
                "active_calls": a.active_calls,
                "max_calls": a.max_calls,
            })
        })
        .collect();
    let active: Vec<Value> = calls
        .iter()
        .map(|(id, c)| {
            json!({
                "id": id,
                "direction": direction(c.direction),
                "trunk": c.trunk,
                "sip_call_id": c.sip_call_id,
                "carrier_session": c.carrier_session,
                "called": c.called,
                "caller": c.caller,
                "state": c.phase.as_str(),
                "duration_s": now.saturating_duration_since(c.started).as_secs(),
                "quality": c.media.as_ref().map(|m| m.quality()),
            })
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": now.saturating_duration_since(s.started).as_secs(),
        "draining": s.draining.load(Ordering::Relaxed),
        "trunks": trunks,
        "carrier_accounts": accounts,
        "active_calls": active,
        "bans": live_bans(&s, now).iter().map(|b| ban_json(b, now)).collect::<Vec<_>>(),
        "server_transactions": s.sip_loop.server_transactions(),
        "cluster": super::cluster::status_json(s.cluster.as_ref().map(Cluster::status).as_ref()),
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<OpsState>>) -> Response {
    let mut e = Exposition::default();
    e.single(
        "trunkgate_uptime_seconds",
        "gauge",
        "Seconds since start.",
        s.started.elapsed().as_secs_f64(),
    );
    super::cluster::write_metrics(&mut e, s.cluster.as_ref().map(Cluster::status).as_ref());
    // SIP core counters, one family each.
    for (name, value) in s.stats.snapshot() {
        let family = format!("trunkgate_sip_{name}_total");
        e.single(&family, "counter", &name.replace('_', " "), value as f64);
    }
    e.family(
        "trunkgate_sip_requests_total",
        "counter",
        "SIP requests received (new transactions) by method.",
    );
    for (m, n) in s.traffic.requests() {
        e.sample("trunkgate_sip_requests_total", &[("method", m)], n as f64);
    }
    e.family(
        "trunkgate_sip_responses_total",
        "counter",
        "SIP responses sent (first transmissions) by status code.",
    );
    for (code, n) in s.traffic.responses() {
        e.sample(
            "trunkgate_sip_responses_total",
            &[("code", &code.to_string())],
            n as f64,
        );
    }
    security_metrics(&s, &mut e);
    let registered = s
        .settings
        .current()
        .trunks
        .iter()
        .filter(|t| s.registrations.get(t).is_registered())
        .count();
    e.single(
        "trunkgate_trunks_registered",
        "gauge",
        "Trunks with at least one live registration.",
        registered as f64,
    );
    // Calls.
    let calls = s.calls.snapshot();
    e.family(
        "trunkgate_active_calls",
        "gauge",
        "Calls up now by direction.",
    );
    for d in [CallDirection::Outbound, CallDirection::Inbound] {
        let n = calls.iter().filter(|(_, c)| c.direction == d).count();
        e.sample(
            "trunkgate_active_calls",
            &[("direction", direction(d))],
            n as f64,
        );
    }
    s.metrics.write(&mut e);
    // RTP: finished calls plus live ones.
    let live = |f: fn(&RelayCounters) -> u64| -> u64 {
        calls
            .iter()
            .filter_map(|(_, c)| c.media.as_ref())
            .map(|m| f(m.counters()))
            .sum()
    };
    let m = &s.metrics;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let packets = [
        (
            "pbx_to_carrier",
            ld(&m.rtp_from_pbx_finished) + live(|c| RelayCounters::get(&c.from_pbx_packets)),
        ),
        (
            "carrier_to_pbx",
            ld(&m.rtp_to_pbx_finished) + live(|c| RelayCounters::get(&c.to_pbx_packets)),
        ),
    ];
    let bytes = [
        (
            "pbx_to_carrier",
            ld(&m.rtp_bytes_from_pbx_finished) + live(|c| RelayCounters::get(&c.from_pbx_bytes)),
        ),
        (
            "carrier_to_pbx",
            ld(&m.rtp_bytes_to_pbx_finished) + live(|c| RelayCounters::get(&c.to_pbx_bytes)),
        ),
    ];
    let lost = [
        (
            "from_pbx",
            ld(&m.rtp_lost_from_pbx_finished) + live(|c| RelayCounters::get(&c.lost_from_pbx)),
        ),
        (
            "from_carrier",
            ld(&m.rtp_lost_from_carrier_finished)
                + live(|c| RelayCounters::get(&c.lost_from_carrier)),
        ),
        (
            "reported_by_pbx_rtcp",
            ld(&m.rtp_lost_reported_by_pbx_finished)
                + live(|c| RelayCounters::get(&c.lost_reported_by_pbx)),
        ),
    ];
    for (family, help, values) in [
        (
            "trunkgate_rtp_packets_total",
            "RTP packets relayed by direction.",
            packets,
        ),
        (
            "trunkgate_rtp_payload_bytes_total",
            "RTP payload bytes relayed by direction.",
            bytes,
        ),
    ] {
        e.family(family, "counter", help);
        for (d, v) in values {
            e.sample(family, &[("direction", d)], v as f64);
        }
    }
    e.family(
        "trunkgate_rtp_lost_packets_total",
        "counter",
        "RTP packets missing from sequence numbers, by the leg they should have come from.",
    );
    for (d, v) in lost {
        e.sample(
            "trunkgate_rtp_lost_packets_total",
            &[("stream", d)],
            v as f64,
        );
    }
    media_metrics(&s, &calls, &mut e);
    // Carrier accounts.
    let accounts = s.carrier.as_ref().map(|c| c.status()).unwrap_or_default();
    type Read = fn(&AccountStatus) -> f64;
    let families: [(&str, &str, &str, Read); 5] = [
        (
            "trunkgate_carrier_subscribed",
            "gauge",
            "1 when the account's subscription is usable.",
            |a| f64::from(u8::from(a.phase.usable())),
        ),
        (
            "trunkgate_carrier_websocket_connected",
            "gauge",
            "1 while the notification WebSocket is up.",
            |a| f64::from(u8::from(a.websocket_connected)),
        ),
        (
            "trunkgate_carrier_websocket_reconnects_total",
            "counter",
            "Notification WebSocket reconnections.",
            |a| a.websocket_reconnects as f64,
        ),
        (
            "trunkgate_carrier_rest_errors_total",
            "counter",
            "Carrier REST requests that failed (transport, decoding, refusals).",
            |a| a.rest_errors as f64,
        ),
        (
            "trunkgate_carrier_active_calls",
            "gauge",
            "Calls on the account now.",
            |a| f64::from(a.active_calls),
        ),
    ];
    for (name, kind, help, read) in families {
        e.family(name, kind, help);
        for a in &accounts {
            e.sample(name, &[("account", &a.name)], read(a));
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        e.0,
    )
        .into_response()
}

/// The edge under attack: transactions against their ceiling, failures by kind, bans, drops.
/// The media engine: datagrams on the shared WebRTC ports, the syscalls they took, and what
/// strangers sent that no call took (by reason); live calls' MOS by direction.
fn media_metrics(s: &OpsState, calls: &[(CallRef, LiveCall)], e: &mut Exposition) {
    let m = &s.media;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    e.single(
        "trunkgate_media_calls",
        "gauge",
        "Calls whose media the engine holds now.",
        ld(&m.calls),
    );
    for (name, help, v) in [
        (
            "trunkgate_media_webrtc_datagrams_received_total",
            "Datagrams received on the shared WebRTC ports.",
            ld(&m.received),
        ),
        (
            "trunkgate_media_webrtc_datagrams_sent_total",
            "Datagrams sent on the shared WebRTC ports.",
            ld(&m.sent),
        ),
        (
            "trunkgate_media_recv_syscalls_total",
            "recvmmsg calls on the shared WebRTC ports.",
            ld(&m.recv_syscalls),
        ),
        (
            "trunkgate_media_send_syscalls_total",
            "sendmmsg calls on the shared WebRTC ports.",
            ld(&m.send_syscalls),
        ),
    ] {
        e.single(name, "counter", help, v);
    }
    let family = "trunkgate_media_dropped_datagrams_total";
    e.family(
        family,
        "counter",
        "Datagrams on the WebRTC ports no call took, by reason.",
    );
    let d = &m.demux;
    for (reason, v) in [
        ("garbage", ld(&d.garbage)),
        ("stun_unknown_ufrag", ld(&d.stun_unknown_ufrag)),
        ("unknown_source", ld(&d.unknown_source)),
        ("refused", ld(&d.refused)),
    ] {
        e.sample(family, &[("reason", reason)], v);
    }
    let family = "trunkgate_call_mos";
    e.family(
        family,
        "gauge",
        "E-model MOS estimate of each live answered call, by direction.",
    );
    for (id, c) in calls {
        if let Some(q) = c.media.as_ref().map(|m| m.quality()) {
            let id = id.to_string();
            for (dir, v) in [
                ("pbx_to_carrier", q.pbx_to_carrier.mos),
                ("carrier_to_pbx", q.carrier_to_pbx.mos),
            ] {
                e.sample(family, &[("call", id.as_str()), ("direction", dir)], v);
            }
        }
    }
}

fn security_metrics(s: &OpsState, e: &mut Exposition) {
    e.single(
        "trunkgate_sip_server_transactions",
        "gauge",
        "Live SIP server transactions (authenticated and in-dialog requests only).",
        s.sip_loop.server_transactions() as f64,
    );
    e.single(
        "trunkgate_sip_server_transactions_limit",
        "gauge",
        "The ceiling on live server transactions (security.max_transactions).",
        s.security.max_transactions() as f64,
    );
    let family = "trunkgate_sip_auth_failures_by_reason_total";
    e.family(family, "counter", "Authentication failures by kind.");
    for (kind, n) in s.security.failures() {
        e.sample(family, &[("reason", kind.label())], n as f64);
    }
    e.single(
        "trunkgate_security_bans_total",
        "counter",
        "Bans started (failed authentications or a scanner user agent).",
        s.security.bans_total() as f64,
    );
    e.single(
        "trunkgate_security_banned_addresses",
        "gauge",
        "Addresses (IPv6: /64s) banned now.",
        live_bans(s, Instant::now()).len() as f64,
    );
    let family = "trunkgate_security_dropped_datagrams_total";
    e.family(
        family,
        "counter",
        "Datagrams dropped unanswered by the edge's guard, by reason.",
    );
    for (reason, n) in s.security.dropped() {
        e.sample(family, &[("reason", reason.label())], n as f64);
    }
}

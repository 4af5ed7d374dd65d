//! The notification channel (CARRIER.md section 2): one socket task per WebSocket. It forwards
//! what `notify` queues for its channel, records the client's pings and `connAck`s, sends the
//! `connCheck` when configured, and enforces one live socket per channel (the older one gets
//! `websocketOverridden`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::carrier::protocol::{
    parse_client_frame, ClientFrame, ConnCheck, ConnCheckFrame, NotificationFrame,
    NotificationMessage,
};

use super::state::{lock, Sim};
use super::stats::Stats;
use super::subscriptions::{WsOut, WsSlot};

pub async fn upgrade(
    State(sim): State<Arc<Sim>>,
    Path((username, channel_id)): Path<(String, String)>,
    ws: WebSocketUpgrade,
) -> Response {
    if lock(&sim.faults).ws_refused(Instant::now()) {
        Stats::inc(&sim.stats.ws_refused);
        tracing::info!(username, channel = %channel_id, "WebSocket refused (fault)");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if lock(&sim.subs)
        .by_channel_mut(&username, &channel_id)
        .is_none()
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    ws.on_upgrade(move |socket| run(sim, username, channel_id, socket))
}

async fn run(sim: Arc<Sim>, username: String, channel_id: String, socket: WebSocket) {
    let conn_id = sim.next_conn_id();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let old = {
        let mut subs = lock(&sim.subs);
        let Some(sub) = subs.by_channel_mut(&username, &channel_id) else {
            return;
        };
        sub.ws_connects += 1;
        sub.ws.replace(WsSlot { conn_id, tx })
    };
    Stats::inc(&sim.stats.ws_connections);
    tracing::info!(username, channel = %channel_id, conn_id, "WebSocket connected");
    if let Some(old) = old {
        tracing::info!(channel = %channel_id, "second WebSocket on the channel: overriding the first");
        if let Some(text) = frame_text(&sim, "websocketOverridden") {
            let _ = old.tx.send(WsOut::Text(text));
        }
        let _ = old.tx.send(WsOut::Close {
            code: 1000,
            reason: "websocketOverridden",
        });
    }

    let (mut sink, mut stream) = socket.split();
    let check = sim.cfg.conn_check_interval;
    let mut ticker = tokio::time::interval(if check.is_zero() {
        Duration::from_secs(3600)
    } else {
        check
    });
    let check_frame = serde_json::to_string(&ConnCheckFrame {
        conn_check: ConnCheck {
            interval: Some(check.as_secs().max(1)),
        },
    })
    .unwrap_or_default();
    let mut abnormal = false;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(WsOut::Text(t)) => {
                    if sink.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsOut::Close { code, reason }) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                Some(WsOut::Abort) | None => {
                    abnormal = true;
                    break;
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => record(&sim, &channel_id, t.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = ticker.tick(), if !check.is_zero() => {
                if sink.send(Message::Text(check_frame.clone().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    {
        let mut subs = lock(&sim.subs);
        if let Some(sub) = subs.channel_any_mut(&channel_id) {
            if sub.ws.as_ref().is_some_and(|s| s.conn_id == conn_id) {
                sub.ws = None;
            }
        }
    }
    // Dropping both halves closes the connection; after `Abort` no close frame was sent.
    drop(sink);
    drop(stream);
    tracing::info!(channel = %channel_id, conn_id, abnormal, "WebSocket closed");
}

fn record(sim: &Sim, channel_id: &str, text: &str) {
    let frame = parse_client_frame(text);
    let mut subs = lock(&sim.subs);
    let Some(sub) = subs.channel_any_mut(channel_id) else {
        return;
    };
    match frame {
        Ok(ClientFrame::Ping) => sub.pings += 1,
        Ok(ClientFrame::ConnAck) => sub.conn_acks += 1,
        Ok(ClientFrame::Other) => tracing::debug!(channel = channel_id, "unknown client frame"),
        Err(e) => tracing::debug!(channel = channel_id, "client frame is not JSON: {e}"),
    }
}

/// A subscription-level notification frame (no session), with its `eventId`.
pub fn frame_text(sim: &Sim, event_type: &str) -> Option<String> {
    serde_json::to_string(&NotificationFrame {
        notification_message: NotificationMessage {
            event_type: event_type.into(),
            event_id: Some(sim.next_event_id()),
            ..NotificationMessage::default()
        },
    })
    .ok()
}

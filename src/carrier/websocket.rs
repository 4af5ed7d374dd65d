//! The notification WebSocket of one subscription: connect (WSS, same rustls config as REST),
//! keepalive pings, `connCheck`/`connAck`, hand each notification to the account, and reconnect
//! to the same channel with capped exponential backoff. A drop never ends a call: after every
//! (re)connect the account resyncs its live calls. A close with code 1000 is deliberate.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use tracing::{debug, info, warn};

use super::account::Account;
use super::protocol::{parse_server_frame, ClientPing, ConnAckFrame, ServerFrame};

/// Marks the account disconnected however the task ends (including abort).
struct ConnectedFlag(Arc<Account>);

impl Drop for ConnectedFlag {
    fn drop(&mut self) {
        self.0.set_ws_connected(false);
    }
}

enum Ended {
    /// The server closed with 1000: do not reconnect.
    Deliberate,
    /// Dropped, errored, or closed otherwise: reconnect.
    Lost(String),
    Stopping,
}

pub(crate) fn channel_url(base_url: &str, channel: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws_base}{channel}")
}

pub(crate) async fn run(account: Arc<Account>, channel: String, mut stop: watch::Receiver<bool>) {
    let url = channel_url(account.rest.base_url(), &channel);
    let backoff = account.settings.backoff;
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let connector = Connector::Rustls(account.settings.tls.clone());
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(connector),
        );
        let result = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(15), connect) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(Ok((socket, _))) => {
                attempt = 0;
                account.set_ws_connected(true);
                let flag = ConnectedFlag(account.clone());
                info!(account = %account.name, "notification channel connected");
                // Anything missed while the socket was down is recovered by asking.
                let resync = tokio::spawn({
                    let account = account.clone();
                    async move { account.resync().await }
                });
                let ended = serve(&account, socket, &mut stop).await;
                resync.abort();
                drop(flag);
                match ended {
                    Ended::Deliberate => {
                        info!(account = %account.name, "notification channel closed by the carrier (1000)");
                        return;
                    }
                    Ended::Stopping => return,
                    Ended::Lost(why) => {
                        warn!(account = %account.name, "notification channel lost: {why}; calls stay up")
                    }
                }
            }
            Ok(Err(e)) => {
                warn!(account = %account.name, "notification channel connect failed: {e}")
            }
            Err(_) => warn!(account = %account.name, "notification channel connect timed out"),
        }
        let delay = backoff.delay(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn serve<S>(
    account: &Arc<Account>,
    socket: tokio_tungstenite::WebSocketStream<S>,
    stop: &mut watch::Receiver<bool>,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = socket.split();
    let ping_text = match serde_json::to_string(&ClientPing::new()) {
        Ok(t) => t,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let mut ping = tokio::time::interval(account.settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if let Err(e) = tx.send(Message::text(ping_text.clone())).await {
                    return Ended::Lost(format!("ping failed: {e}"));
                }
            }
            _ = stop.changed() => {
                let _ = tx
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "shutdown".into(),
                    })))
                    .await;
                return Ended::Stopping;
            }
            frame = rx.next() => match frame {
                None => return Ended::Lost("connection closed".into()),
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                Some(Ok(Message::Close(close))) => {
                    return match close {
                        Some(f) if f.code == CloseCode::Normal => Ended::Deliberate,
                        Some(f) => Ended::Lost(format!("closed with {}", u16::from(f.code))),
                        None => Ended::Lost("closed without a code".into()),
                    };
                }
                Some(Ok(Message::Text(text))) => match parse_server_frame(text.as_str()) {
                    Ok(ServerFrame::ConnCheck(_)) => {
                        let ack = serde_json::to_string(&ConnAckFrame::default())
                            .unwrap_or_else(|_| "{\"connAck\":{}}".into());
                        if let Err(e) = tx.send(Message::text(ack)).await {
                            return Ended::Lost(format!("connAck failed: {e}"));
                        }
                    }
                    Ok(ServerFrame::Notification(msg)) => account.on_notification(*msg),
                    Ok(ServerFrame::Other) => debug!(account = %account.name, "unknown frame ignored"),
                    Err(e) => warn!(account = %account.name, "unreadable notification dropped: {e}"),
                },
                // Pings are answered by tungstenite; binary frames are not part of the protocol.
                Some(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel_url;

    #[test]
    fn channel_url_swaps_the_scheme_and_keeps_the_port() {
        assert_eq!(
            channel_url(
                "https://127.0.0.1:8443/",
                "/rest/version/1/user/u/websocket/w"
            ),
            "wss://127.0.0.1:8443/rest/version/1/user/u/websocket/w"
        );
        assert_eq!(
            channel_url("https://ct-webrtc.etisalat.ae", "/c"),
            "wss://ct-webrtc.etisalat.ae/c"
        );
    }
}

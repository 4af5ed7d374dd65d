//! Test-only helpers for `tests`: a started simulator with a reqwest client trusting its
//! certificate, REST and control calls, the WebSocket, and notification reading.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::*;
use crate::carrier::protocol::{
    self as p, CallControlRequest, NotificationMessage, SubscribeRequest, SubscribeRequestBody,
};
use crate::media::engine::{EngineConfig, FarEnd, MediaCall, MediaEngine};
use crate::media::{Codec, Direction, PeerSettings};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const USER: &str = "gw";
pub const PASS: &str = "secret";
pub const BUSY: &str = "+971500000486";
pub const NO_ANSWER: &str = "+971500000480";

pub fn config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        control_listen: "127.0.0.1:0".parse().unwrap(),
        users: vec![SimUser::new(USER, PASS)],
        behaviour: BehaviourConfig {
            ring_delay: Duration::from_millis(5),
            answer_delay: Duration::from_millis(5),
            busy: vec![BUSY.into()],
            no_answer: vec![NO_ANSWER.into()],
            ..BehaviourConfig::default()
        },
        ..SimConfig::default()
    }
}

/// Runs a test body under a deadline so a hang is a failure, not a stuck build.
pub async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .expect("test timed out");
}

pub struct Client {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub tls: Arc<rustls::ClientConfig>,
    /// The gateway-side WebRTC peer of each call this client started, by session.
    peers: std::sync::Mutex<std::collections::HashMap<String, Arc<MediaCall>>>,
}

/// The gateway-side media engine of the tests that play the gateway (one per process).
pub(crate) fn engine() -> MediaEngine {
    static ENGINE: std::sync::OnceLock<MediaEngine> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            MediaEngine::start(&EngineConfig {
                threads: 1,
                bind: "127.0.0.1:0".parse().unwrap(),
                port_per_call: false,
                turn_tls: None,
                batch_window: std::time::Duration::ZERO,
            })
            .expect("media engine")
        })
        .clone()
}

fn loopback_peer_settings() -> PeerSettings {
    PeerSettings::nearby("127.0.0.1".parse().unwrap())
}

impl Client {
    pub async fn start(cfg: SimConfig) -> Client {
        let sim = start(cfg).await.expect("sim starts");
        let tls = sim.client_tls_config().expect("client TLS config");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .no_proxy()
            .build()
            .expect("reqwest client");
        Client {
            sim,
            http,
            tls: Arc::new(tls),
            peers: Default::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// A REST call with the right credentials: (HTTP status, JSON body).
    pub async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.rest_as(method, path, body, PASS).await
    }

    pub async fn rest_as(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        password: &str,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .basic_auth(USER, Some(password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sim.control_url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        resp.json().await.expect("control JSON")
    }

    /// Subscribes: (subscription path, notification channel path).
    pub async fn subscribe(&self) -> (String, String) {
        let body = SubscribeRequestBody {
            subscribe_request: SubscribeRequest::new(3600, "test"),
        };
        let (status, v) = self
            .rest(
                reqwest::Method::POST,
                &p::subscription_path(USER),
                Some(serde_json::to_value(body).unwrap()),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        let r: p::SubscribeResponseBody = serde_json::from_value(v).unwrap();
        let r = r.subscribe_response;
        assert_eq!(r.status_code, 0);
        let params = r.subscription_params.unwrap();
        assert_eq!(params.turn_credentials.unwrap().username, "sim-turn");
        (
            r.subscription.unwrap(),
            params.notification_channel.unwrap(),
        )
    }

    pub async fn open_ws(&self, channel: &str) -> Ws {
        let url = format!("wss://{}{channel}", self.sim.rest_addr);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(self.tls.clone())),
        )
        .await
        .expect("WebSocket connects");
        ws
    }

    /// Subscribed with the socket open, and the socket registered on the server.
    pub async fn ready(&self) -> (String, Ws) {
        let (sub, channel) = self.subscribe().await;
        let ws = self.open_ws(&channel).await;
        for _ in 0..200 {
            if self.sim.subscriptions().iter().any(|s| s.ws_connected) {
                return (sub, ws);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("socket never registered");
    }

    fn peer(&self, session: &str) -> Arc<MediaCall> {
        self.peers.lock().unwrap()[session].clone()
    }

    /// Applies the carrier's answer to the call's own peer.
    pub async fn accept_answer(&self, session: &str, sdp: &str) {
        self.peer(session)
            .accept_answer(sdp)
            .await
            .expect("answer applies");
    }

    /// A mid-call offer (hold) from the call's own peer.
    pub async fn reoffer(&self, session: &str) -> String {
        self.peer(session)
            .create_reoffer(Direction::SendOnly)
            .await
            .expect("re-offer")
    }

    /// `callStart` with a real WebRTC offer; the peer is kept for the call's life.
    pub async fn call_start(&self, to: &str) -> String {
        let (peer, offer) = engine()
            .offer(
                &loopback_peer_settings(),
                &[Codec::Pcmu, Codec::Pcma],
                FarEnd::Pbx,
            )
            .await
            .expect("offer");
        let body = CallControlRequest::CallStart {
            from: format!("sip:{USER}"),
            to: format!("sip:{to}@ims.test"),
            sdp: offer,
            supported: vec!["earlymedia".into()],
        }
        .into_body();
        let (status, v) = self
            .rest(
                reqwest::Method::POST,
                &p::call_control_path(USER),
                Some(serde_json::to_value(body).unwrap()),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["callControlResponse"]["statusCode"], 0);
        let session = v["callControlResponse"]["sessionData"]
            .as_str()
            .expect("sessionData")
            .to_string();
        self.peers
            .lock()
            .unwrap()
            .insert(session.clone(), Arc::new(peer));
        session
    }

    pub async fn session_put(&self, session: &str, req: CallControlRequest) -> (u16, Value) {
        self.rest(
            reqwest::Method::PUT,
            &p::call_session_path(USER, session),
            Some(serde_json::to_value(req.into_body()).unwrap()),
        )
        .await
    }
}

/// The next notification (connCheck frames skipped).
pub async fn next_event(ws: &mut Ws) -> NotificationMessage {
    loop {
        let msg = ws.next().await.expect("socket open").expect("frame");
        if let Message::Text(t) = msg {
            if let p::ServerFrame::Notification(n) = p::parse_server_frame(&t).expect("JSON") {
                return *n;
            }
        }
    }
}

pub fn session_of(n: &NotificationMessage) -> &str {
    n.session_params
        .as_ref()
        .and_then(|s| s.session_data.as_deref())
        .unwrap_or("")
}

//! In-process tests of the simulator over its real listeners: reqwest (trusting the generated
//! certificate) for REST and the control API, tokio-tungstenite for the notification channel.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::test_client::*;
use super::*;
use crate::carrier::protocol::{
    self as p, CallControlRequest, SubscribeRequest, SubscribeRequestBody,
};

#[tokio::test]
async fn a_default_number_rings_and_answers_then_the_client_hangs_up() {
    within(async {
        let c = Client::start(config()).await;
        let (_, mut ws) = c.ready().await;
        let s = c.call_start("+971501234567").await;
        let mut ids = Vec::new();
        for want in ["trying", "ringing", "respondCallUpdate"] {
            let n = next_event(&mut ws).await;
            assert_eq!(n.event_type, want);
            assert_eq!(session_of(&n), s);
            ids.push(n.event_id.clone().unwrap().parse::<u64>().unwrap());
            if want == "respondCallUpdate" {
                let sdp = n.session_params.unwrap().sdp.expect("answer SDP");
                assert!(sdp.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101"), "{sdp}");
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        let (status, v) = c
            .rest(reqwest::Method::GET, &p::call_session_path(USER, &s), None)
            .await;
        assert_eq!(
            (status, &v["callControlResponse"]["state"]),
            (200, &json!("ANSWERED"))
        );
        let (status, v) = c.session_put(&s, CallControlRequest::Audit).await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (200, &json!(0))
        );

        let (status, _) = c
            .rest(
                reqwest::Method::DELETE,
                &format!("{}?reasonText=bye", p::call_session_path(USER, &s)),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, v) = c.session_put(&s, CallControlRequest::Audit).await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (404, &json!(42))
        );
        let (status, v) = c
            .rest(reqwest::Method::GET, &p::call_session_path(USER, &s), None)
            .await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (404, &json!(47))
        );

        let call = c
            .control(reqwest::Method::GET, &format!("/calls/{s}"), None)
            .await;
        assert_eq!(call["direction"], "outbound");
        assert_eq!(call["ended_by"], "client");
        assert_eq!(call["end_reason"], "bye");
        assert_eq!(call["audits"], 1);
        let states: Vec<&str> = call["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["TRYING", "RINGING", "ANSWERED", "ENDED"]);
        c.sim.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_busy_number_ends_with_486_inside_session_params() {
    within(async {
        let c = Client::start(config()).await;
        let (_, mut ws) = c.ready().await;
        let s = c.call_start(BUSY).await;
        assert_eq!(next_event(&mut ws).await.event_type, "trying");
        assert_eq!(next_event(&mut ws).await.event_type, "ringing");
        let end = next_event(&mut ws).await;
        assert_eq!(end.event_type, "callEnd");
        let sp = end.session_params.unwrap();
        assert_eq!(sp.session_data.as_deref(), Some(s.as_str()));
        assert_eq!(sp.status_code, Some(486));
        assert_eq!(sp.reason_text.as_deref(), Some("Busy Here"));
        let (status, v) = c.session_put(&s, CallControlRequest::Audit).await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (404, &json!(42))
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_and_bad_bodies_get_the_error_envelope() {
    within(async {
        let c = Client::start(config()).await;
        let sub_body = serde_json::to_value(SubscribeRequestBody {
            subscribe_request: SubscribeRequest::new(3600, "t"),
        })
        .unwrap();
        let (status, v) = c
            .rest_as(
                reqwest::Method::POST,
                &p::subscription_path(USER),
                Some(sub_body),
                "wrong",
            )
            .await;
        assert_eq!(status, 401);
        assert_eq!(v["subscribeResponse"]["statusCode"], 401);
        let (status, v) = c
            .rest_as(
                reqwest::Method::GET,
                &p::call_session_path(USER, "x"),
                None,
                "wrong",
            )
            .await;
        assert_eq!(status, 401);
        assert_eq!(v["callControlResponse"]["statusCode"], 401);

        let resp = c
            .http
            .post(c.url(&p::call_control_path(USER)))
            .basic_auth(USER, Some(PASS))
            .body("{\"callControlRequest\":")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["callControlResponse"]["statusCode"], 5);
        let (status, v) = c
            .rest(
                reqwest::Method::POST,
                &p::call_control_path(USER),
                Some(json!({"callControlRequest":{"type":"callStart","to":"sip:+1@d"}})),
            )
            .await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (400, &json!(1004))
        );

        let (status, v) = c
            .rest(
                reqwest::Method::GET,
                &p::call_session_path(USER, "nope"),
                None,
            )
            .await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (404, &json!(47))
        );
        let stats = c.control(reqwest::Method::GET, "/stats", None).await;
        assert_eq!(stats["unauthorized"], 2);
    })
    .await;
}

#[tokio::test]
async fn refresh_and_unsubscribe_follow_section_1() {
    within(async {
        let c = Client::start(config()).await;
        let (sub, _) = c.subscribe().await;
        let body = serde_json::to_value(SubscribeRequestBody {
            subscribe_request: SubscribeRequest::new(99999, "t"),
        })
        .unwrap();
        let (status, v) = c.rest(reqwest::Method::PUT, &sub, Some(body.clone())).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["subscribeResponse"]["subscriptionParams"]["expires"],
            3600
        );
        let unknown = format!("{}/missing", p::subscription_path(USER));
        let (status, v) = c
            .rest(reqwest::Method::PUT, &unknown, Some(body.clone()))
            .await;
        assert_eq!(
            (status, &v["subscribeResponse"]["statusCode"]),
            (404, &json!(39))
        );

        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"fail_subscribe":1,"fail_subscribe_retry_after_ms":1500})),
        )
        .await;
        let (status, v) = c.rest(reqwest::Method::PUT, &sub, Some(body.clone())).await;
        assert_eq!(
            (status, &v["subscribeResponse"]["retryAfter"]),
            (503, &json!(1500))
        );

        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"fail_subscribe":1,"fail_subscribe_retry_after_ms":1500,"fail_subscribe_header":true})),
        )
        .await;
        let resp = c
            .http
            .put(c.url(&sub))
            .basic_auth(USER, Some(PASS))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(c.sim.stats().unavailable_sent, 2);

        let (status, _) = c.rest(reqwest::Method::DELETE, &sub, None).await;
        assert_eq!(status, 200);
        let (status, v) = c.rest(reqwest::Method::PUT, &sub, Some(body)).await;
        assert_eq!(
            (status, &v["subscribeResponse"]["statusCode"]),
            (404, &json!(39))
        );
        let subs = c
            .control(reqwest::Method::GET, "/subscriptions", None)
            .await;
        assert_eq!(subs[0]["refreshes"], 1);
        assert_eq!(subs[0]["deleted"], true);
    })
    .await;
}

#[tokio::test]
async fn an_originated_call_is_answered_by_the_client_and_hung_up_by_the_sim() {
    within(async {
        let c = Client::start(config()).await;
        let (_, mut ws) = c.ready().await;
        let r = c
            .control(
                reqwest::Method::POST,
                "/originate",
                Some(json!({"to":"+97142000000","from":"+971509999999","caller_name":"Alice"})),
            )
            .await;
        assert_eq!(r["delivered"], true, "{r}");
        let s = r["session"].as_str().unwrap().to_string();
        let call = next_event(&mut ws).await;
        assert_eq!(call.event_type, "call");
        let cp = call.call_notification_params.clone().unwrap();
        assert_eq!(cp.caller_name.as_deref(), Some("Alice"));
        assert_eq!(cp.caller_display_number.as_deref(), Some("+971509999999"));
        assert_eq!(cp.callee_display_number.as_deref(), Some("+97142000000"));
        let offer = call.session_params.unwrap().sdp.expect("offer");

        let (status, _) = c.session_put(&s, CallControlRequest::Ringing).await;
        assert_eq!(status, 200);
        let (answer, _) = media::answer_call(
            &offer,
            media::MediaMode::Echo,
            Arc::default(),
            "127.0.0.1".parse().unwrap(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
        let (status, v) = c
            .session_put(&s, CallControlRequest::CallAnswer { sdp: answer })
            .await;
        assert_eq!(status, 200, "{v}");
        let (_, v) = c
            .rest(reqwest::Method::GET, &p::call_session_path(USER, &s), None)
            .await;
        assert_eq!(v["callControlResponse"]["state"], "ANSWERED");

        let ended = c
            .control(reqwest::Method::POST, &format!("/calls/{s}/hangup"), None)
            .await;
        assert_eq!(ended["ended_by"], "control");
        let end = next_event(&mut ws).await;
        assert_eq!(
            (end.event_type.as_str(), session_of(&end)),
            ("callEnd", s.as_str())
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_duplicates_and_glare_faults() {
    within(async {
        let c = Client::start(config()).await;
        let (_, mut ws) = c.ready().await;
        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"duplicate_notifications":true})),
        )
        .await;
        let s = c.call_start(NO_ANSWER).await;
        for want in ["trying", "ringing"] {
            let a = next_event(&mut ws).await;
            let b = next_event(&mut ws).await;
            assert_eq!(a.event_type, want);
            assert_eq!(a, b, "the same notification twice, same eventId");
        }
        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"duplicate_notifications":false})),
        )
        .await;
        let (_, v) = c
            .rest(reqwest::Method::GET, &p::call_session_path(USER, &s), None)
            .await;
        assert_eq!(v["callControlResponse"]["state"], "RINGING");
        c.control(reqwest::Method::POST, &format!("/calls/{s}/cancel"), None)
            .await;
        assert_eq!(next_event(&mut ws).await.event_type, "callCancel");

        let s = c.call_start("+971501111111").await;
        let mut answer = None;
        for want in ["trying", "ringing", "respondCallUpdate"] {
            let n = next_event(&mut ws).await;
            assert_eq!(n.event_type, want);
            answer = n.session_params.and_then(|p| p.sdp);
        }
        c.accept_answer(&s, &answer.expect("answer sdp")).await;
        let reoffer = c.reoffer(&s).await;
        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"glare_next_update":true,"glare_retry_after_ms":250})),
        )
        .await;
        let update = || CallControlRequest::StartCallUpdate {
            sdp: reoffer.clone(),
        };
        let (status, v) = c.session_put(&s, update()).await;
        assert_eq!(status, 409);
        assert_eq!(v["callControlResponse"]["statusCode"], 49);
        assert_eq!(v["callControlResponse"]["retryAfter"], 250);
        let (status, _) = c.session_put(&s, update()).await;
        assert_eq!(status, 200);
        let n = next_event(&mut ws).await;
        assert_eq!(n.event_type, "respondCallUpdate");
        assert!(n.session_params.unwrap().sdp.is_some());
    })
    .await;
}

#[tokio::test]
async fn socket_faults_override_drop_and_gone() {
    within(async {
        let c = Client::start(config()).await;
        let (sub, mut first) = c.ready().await;
        let channel = c.sim.subscriptions()[0].channel.clone();
        let mut second = c.open_ws(&channel).await;
        let n = next_event(&mut first).await;
        assert_eq!(n.event_type, "websocketOverridden");

        // Pings are recorded on the live socket.
        second
            .send(Message::Text(r#"{"message_type":"ping"}"#.into()))
            .await
            .unwrap();
        for _ in 0..200 {
            if c.sim.subscriptions()[0].pings == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(c.sim.subscriptions()[0].pings, 1);

        // An abnormal drop: the stream ends without a close frame.
        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"drop_websocket":true,"refuse_ws_ms":60000})),
        )
        .await;
        match second.next().await {
            None | Some(Err(_)) => {}
            Some(Ok(m)) => panic!("expected an abnormal end, got {m:?}"),
        }
        // While down, notifications are dropped and counted; upgrades are refused.
        let s = c.call_start("+971502222222").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(c.sim.stats().notifications_dropped >= 3);
        let url = format!("wss://{}{channel}", c.sim.rest_addr);
        let refused = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(c.tls.clone())),
        )
        .await;
        assert!(refused.is_err());
        // The call lives on the server regardless: resync finds it answered.
        let (_, v) = c
            .rest(reqwest::Method::GET, &p::call_session_path(USER, &s), None)
            .await;
        assert_eq!(v["callControlResponse"]["state"], "ANSWERED");

        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"refuse_ws_ms":0})),
        )
        .await;
        let mut again = c.open_ws(&channel).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.control(
            reqwest::Method::POST,
            "/faults",
            Some(json!({"send_gone":true})),
        )
        .await;
        assert_eq!(next_event(&mut again).await.event_type, "gone");
        let body = serde_json::to_value(SubscribeRequestBody {
            subscribe_request: SubscribeRequest::new(3600, "t"),
        })
        .unwrap();
        let (status, _) = c.rest(reqwest::Method::PUT, &sub, Some(body)).await;
        assert_eq!(status, 404);
    })
    .await;
}

#[tokio::test]
async fn a_call_without_audits_is_ended_by_the_simulator() {
    within(async {
        let mut cfg = config();
        cfg.audit_timeout = Duration::from_millis(150);
        let c = Client::start(cfg).await;
        let (_, mut ws) = c.ready().await;
        let s = c.call_start("+971503333333").await;
        for want in ["trying", "ringing", "respondCallUpdate", "callEnd"] {
            let n = next_event(&mut ws).await;
            assert_eq!(n.event_type, want);
        }
        let (status, v) = c.session_put(&s, CallControlRequest::Audit).await;
        assert_eq!(
            (status, &v["callControlResponse"]["statusCode"]),
            (404, &json!(42))
        );
        let call = c
            .control(reqwest::Method::GET, &format!("/calls/{s}"), None)
            .await;
        assert_eq!(call["ended_by"], "audit_timeout");
    })
    .await;
}

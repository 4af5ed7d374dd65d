//! The TLS listener's routes: the REST paths of CARRIER.md (behind Basic authentication) and
//! the notification WebSocket, with every request counted.

use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;

use super::auth::{count_requests, require_basic};
use super::rest_calls as calls;
use super::rest_subscription as subs;
use super::state::Sim;
use super::ws;

const USER: &str = "/rest/version/1/user/{username}";

pub fn router(sim: Arc<Sim>) -> Router {
    let rest = Router::new()
        .route(&format!("{USER}/subscription"), post(subs::subscribe))
        .route(
            &format!("{USER}/subscription/{{id}}"),
            put(subs::refresh).delete(subs::unsubscribe),
        )
        .route(&format!("{USER}/callControl"), post(calls::call_start))
        .route(
            &format!("{USER}/callControl/callSessions/{{session}}"),
            put(calls::session_put)
                .get(calls::session_get)
                .delete(calls::session_delete),
        )
        .route(&format!("{USER}/calldisposition"), post(calls::disposition))
        .route_layer(from_fn_with_state(sim.clone(), require_basic));
    Router::new()
        .merge(rest)
        .route(&format!("{USER}/websocket/{{channel}}"), get(ws::upgrade))
        .layer(from_fn_with_state(sim.clone(), count_requests))
        .with_state(sim)
}

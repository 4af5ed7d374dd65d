//! The gate in front of every REST route: counts the request, then checks HTTP Basic
//! credentials against the configured accounts and that the path's `{username}` is the
//! authenticated one. Refusals carry the envelope of the path (section 6).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::api::{ApiError, Envelope};
use super::state::Sim;
use super::stats::Stats;

/// Counts every request on the TLS listener (REST and WebSocket upgrades).
pub async fn count_requests(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    sim.stats
        .count_request(req.method().as_str(), req.uri().path());
    next.run(req).await
}

/// Basic authentication for the REST routes.
pub async fn require_basic(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let envelope = Envelope::of_path(&path);
    let Some((user, password)) = basic_credentials(req.headers()) else {
        Stats::inc(&sim.stats.unauthorized);
        tracing::info!(%path, "REST request without Basic credentials: 401");
        return ApiError::unauthorized(envelope).into_response();
    };
    if !sim.check_password(&user, &password) {
        Stats::inc(&sim.stats.unauthorized);
        tracing::info!(%path, user, "wrong credentials: 401");
        return ApiError::unauthorized(envelope).into_response();
    }
    if path_user(&path) != Some(user.as_str()) {
        tracing::info!(%path, user, "path names another user: 403");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            envelope,
            403,
            "the path names another user",
        )
        .into_response();
    }
    next.run(req).await
}

/// The `{username}` of `/rest/version/1/user/{username}/...`.
pub fn path_user(path: &str) -> Option<&str> {
    path.strip_prefix("/rest/version/1/user/")?
        .split('/')
        .next()
        .filter(|u| !u.is_empty())
}

/// `(username, password)` from `Authorization: Basic ...`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Z3c6cDpw"),
        );
        assert_eq!(basic_credentials(&h), Some(("gw".into(), "p:p".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn the_user_is_taken_from_the_path() {
        assert_eq!(
            path_user("/rest/version/1/user/gw/subscription"),
            Some("gw")
        );
        assert_eq!(path_user("/rest/version/1/user//x"), None);
        assert_eq!(path_user("/other"), None);
    }
}

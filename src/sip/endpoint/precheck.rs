//! RFC 3261 8.2.1-8.2.3: what a request must pass before authentication and its method are
//! looked at (URI scheme 416, method 405, Max-Forwards 483, Require 420, content 415/406).

use super::answer::Answer;
use super::{ALLOW, SUPPORTED};
use crate::sip::grammar::Scheme;
use crate::sip::message::{Method, Request};
use crate::sip::parse::RequestInfo;

/// RFC 3261 8.2.1-8.2.3: method, Max-Forwards, Require, content.
pub(super) fn precheck(req: &Request, info: &RequestInfo) -> Result<(), Answer> {
    let a = precheck_answer(req, info);
    match a {
        Some(a) => Err(a),
        None => Ok(()),
    }
}

fn precheck_answer(req: &Request, info: &RequestInfo) -> Option<Answer> {
    if !matches!(
        info.request_uri.scheme,
        Scheme::Sip | Scheme::Sips | Scheme::Tel
    ) {
        return Some(Answer::new(416));
    }
    if let Method::Other(_) = req.method {
        return Some(Answer::new(405).header("Allow", ALLOW));
    }
    if info.max_forwards == Some(0) && req.method != Method::Options {
        return Some(Answer::new(483));
    }
    if !matches!(req.method, Method::Ack | Method::Cancel) {
        let unsupported: Vec<&str> = req
            .headers
            .list_items("Require")
            .filter(|o| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(o)))
            .collect();
        if !unsupported.is_empty() {
            return Some(Answer::new(420).header("Unsupported", unsupported.join(", ")));
        }
    }
    if !req.body.is_empty() {
        let ctype = req.headers.get("Content-Type").map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        if ctype.as_deref() != Some("application/sdp") {
            return Some(Answer::new(415).header("Accept", "application/sdp"));
        }
        if req
            .headers
            .list_items("Content-Encoding")
            .any(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Some(
                Answer::new(415)
                    .header("Accept", "application/sdp")
                    .header("Accept-Encoding", "identity"),
            );
        }
    }
    if req.method == Method::Invite && req.headers.get("Accept").is_some() {
        let ok = req.headers.list_items("Accept").any(|a| {
            let a = a
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            a == "application/sdp" || a == "application/*" || a == "*/*"
        });
        if !ok {
            return Some(Answer::new(406).header("Accept", "application/sdp"));
        }
    }
    None
}

#[cfg(test)]
#[path = "precheck_tests.rs"]
mod precheck_tests;

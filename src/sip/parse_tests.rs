//! Unit tests of `sip::parse`: which datagrams become messages, which are answered 400/505
//! (and with what the answer can copy), and which are dropped.

use super::*;

/// A request with every mandatory header; `{extra}` goes after them, `{body}` after the blank line.
fn request(extra: &str, body: &str) -> String {
    format!(
        "INVITE sip:0501234567@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1\r\n\
         Max-Forwards: 70\r\nFrom: \"PBX\" <sip:100@pbx.example>;tag=f1\r\nTo: <sip:0501234567@gw.example>\r\n\
         Call-ID: c1@pbx\r\nCSeq: 7 INVITE\r\n{extra}\r\n{body}"
    )
}

fn response(extra: &str, body: &str) -> String {
    format!(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb2\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>;tag=2\r\nCall-ID: c2@gw\r\nCSeq: 3 INVITE\r\n{extra}\r\n{body}"
    )
}

/// What became of a datagram, comparable in a table.
#[derive(Debug, PartialEq)]
enum Outcome {
    Request,
    Response,
    Drop(ParseError),
    Reject(u16, ParseError),
}

fn outcome(datagram: &str) -> Outcome {
    match parse(datagram.as_bytes(), 65_535) {
        Ok(Parsed::Request(..)) => Outcome::Request,
        Ok(Parsed::Response(..)) => Outcome::Response,
        Err(ParseFailure::Drop(e)) => Outcome::Drop(e),
        Err(ParseFailure::Reject { code, error, .. }) => Outcome::Reject(code, error),
    }
}

fn parsed_request(datagram: &str) -> (Request, RequestInfo) {
    match parse(datagram.as_bytes(), 65_535) {
        Ok(Parsed::Request(r, info)) => (r, info),
        other => panic!("{datagram:?} is no request: {other:?}"),
    }
}

fn bad(what: &str) -> ParseError {
    ParseError::BadHeader(what.into())
}

#[test]
fn a_request_parses_into_its_typed_fields() {
    let (r, info) = parsed_request(&request("Content-Type: application/sdp\r\n", ""));
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:0501234567@gw.example");
    assert_eq!(info.request_uri.user.as_deref(), Some("0501234567"));
    assert_eq!(info.top_via.branch(), Some("z9hG4bKa1"));
    assert_eq!(info.top_via.sent_by(), "192.0.2.1:5060");
    assert_eq!(info.call_id, "c1@pbx");
    assert_eq!((info.cseq.seq, info.cseq.method.as_str()), (7, "INVITE"));
    assert_eq!(info.from.tag(), Some("f1"));
    assert_eq!(info.from.display.as_deref(), Some("PBX"));
    assert_eq!(info.to.tag(), None);
    assert_eq!(info.max_forwards, Some(70));
    assert!(r.body.is_empty());
}

#[test]
fn a_response_parses_into_its_typed_fields() {
    match parse(response("", "").as_bytes(), 65_535) {
        Ok(Parsed::Response(r, info)) => {
            assert_eq!((r.code, r.reason.as_str()), (180, "Ringing"));
            assert_eq!(info.top_via.branch(), Some("z9hG4bKb2"));
            assert_eq!(info.call_id, "c2@gw");
            assert_eq!((info.cseq.seq, info.cseq.method.as_str()), (3, "INVITE"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn compact_names_folding_and_comma_joined_values_are_normalised() {
    let text = "\r\n\r\nOPTIONS sip:gw.example SIP/2.0\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, \
                SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2\nf: <sip:a@b>;tag=1\nt: <sip:c@d>\n\
                i: folded@pbx\nCSeq : 1 OPTIONS\nSubject: one\n  two\n\tthree\nk: timer\n\
                m: <sip:a@192.0.2.1>, <sip:a@192.0.2.3>\nl: 0\n\n";
    let (r, info) = parsed_request(text);
    let h = &r.headers;
    assert_eq!(h.get_all("Via").count(), 2, "{h:?}");
    assert_eq!(info.top_via.branch(), Some("z9hG4bK1"));
    assert_eq!(h.get_all("Contact").count(), 2);
    assert_eq!(h.get("Subject"), Some("one two three"));
    assert_eq!(h.get("Supported"), Some("timer"));
    assert_eq!(info.call_id, "folded@pbx");
    assert_eq!(h.get("Content-Length"), Some("0"));
    assert!(
        h.iter().all(|x| x.name.len() > 1),
        "compact names expanded: {h:?}"
    );
}

#[test]
fn the_size_limit_is_the_first_check() {
    let text = request("", "");
    let n = text.len();
    assert!(parse(text.as_bytes(), n).is_ok());
    assert!(matches!(
        parse(text.as_bytes(), n - 1),
        Err(ParseFailure::Drop(ParseError::TooLarge(m))) if m == n - 1
    ));
    // even a keepalive over the limit is only "too large"
    assert!(matches!(
        parse(&[b'\n'; 10], 4),
        Err(ParseFailure::Drop(ParseError::TooLarge(4)))
    ));
}

#[test]
fn content_length_rules() {
    // longer body than announced: truncated (RFC 3261 18.3); absent: the whole datagram
    let (r, _) = parsed_request(&request("Content-Length: 3\r\n", "abcdef"));
    assert_eq!(r.body, b"abc");
    let (r, _) = parsed_request(&request("", "abcdef"));
    assert_eq!(r.body, b"abcdef");
    let cases = [
        ("Content-Length: 9\r\n", "abc", ParseError::ShortBody),
        ("Content-Length: +3\r\n", "abc", bad("Content-Length")),
        (
            "Content-Length: 3 \r\nl: 3\r\n",
            "abc",
            bad("more than one Content-Length"),
        ),
        ("Content-Length: x\r\n", "", bad("Content-Length")),
    ];
    for (extra, body, err) in cases {
        assert_eq!(
            outcome(&request(extra, body)),
            Outcome::Reject(400, err),
            "{extra:?}"
        );
    }
    // a response that lies about its body cannot be answered: dropped
    assert_eq!(
        outcome(&response("Content-Length: 5\r\n", "ab")),
        Outcome::Drop(ParseError::ShortBody)
    );
}

#[test]
fn missing_or_broken_mandatory_headers_are_answered_400() {
    let strip = |name: &str| {
        let text = request("", "");
        let line = text
            .split("\r\n")
            .find(|l| l.starts_with(name))
            .map(|l| format!("{l}\r\n"))
            .unwrap_or_else(|| panic!("no {name} line"));
        text.replacen(&line, "", 1)
    };
    for name in ["Via", "Call-ID", "CSeq", "From", "To"] {
        assert_eq!(
            outcome(&strip(name)),
            Outcome::Reject(400, ParseError::MissingHeader(name)),
            "without {name}"
        );
    }
    // Max-Forwards may be absent
    let (_, info) = parsed_request(&strip("Max-Forwards"));
    assert_eq!(info.max_forwards, None);

    let with = |old: &str, new: &str| outcome(&request("", "").replacen(old, new, 1));
    let cases = [
        (
            "CSeq: 7 INVITE",
            "CSeq: 7 BYE",
            "CSeq method differs from the request's",
        ),
        ("Max-Forwards: 70", "Max-Forwards: 256", "Max-Forwards"),
        ("Max-Forwards: 70", "Max-Forwards: -1", "Max-Forwards"),
        ("Call-ID: c1@pbx", "Call-ID: c1 @pbx", "Call-ID"),
        (
            "Call-ID: c1@pbx",
            "Call-ID: a\r\nCall-ID: b",
            "more than one Call-ID",
        ),
        (
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nMax-Forwards: 69",
            "more than one Max-Forwards",
        ),
        ("Max-Forwards: 70", "Expires: soon", "Expires"),
    ];
    for (old, new, what) in cases {
        assert_eq!(with(old, new), Outcome::Reject(400, bad(what)), "{new:?}");
    }
    for (old, new) in [
        ("Via: SIP/2.0/UDP 192.0.2.1:5060", "Via: SIP/2.0/UDP"),
        ("CSeq: 7 INVITE", "CSeq: seven INVITE"),
        (
            "To: <sip:0501234567@gw.example>",
            "To: <sip:0501234567@gw.example",
        ),
    ] {
        assert!(
            matches!(
                with(old, new),
                Outcome::Reject(400, ParseError::BadHeader(_))
            ),
            "{new:?}: {:?}",
            with(old, new)
        );
    }
    assert_eq!(
        with("Max-Forwards: 70", "Contact: *"),
        Outcome::Request,
        "a wildcard Contact"
    );
}

#[test]
fn the_request_line_decides_between_400_505_and_drop() {
    let line = |l: &str| {
        outcome(&request("", "").replacen("INVITE sip:0501234567@gw.example SIP/2.0", l, 1))
    };
    assert_eq!(
        line("INVITE  sip:0501234567@gw.example SIP/2.0"),
        Outcome::Reject(400, ParseError::BadRequestLine("extra white space"))
    );
    assert_eq!(
        line("INVITE sip:0501234567@gw.example SIP/3.0"),
        Outcome::Reject(505, ParseError::BadVersion)
    );
    assert_eq!(
        line("INVITE sip:0501234567@gw.example SIP/two"),
        Outcome::Reject(400, ParseError::BadRequestLine("version"))
    );
    assert_eq!(
        line("INVITE sip:0501234567@gw.example?X-Y=1 SIP/2.0"),
        Outcome::Reject(400, ParseError::BadRequestLine("headers in Request-URI"))
    );
    assert_eq!(
        line("INVITE sip:@ SIP/2.0"),
        Outcome::Reject(400, ParseError::BadRequestLine("Request-URI"))
    );
    assert_eq!(
        line("(INVITE) sip:a@b SIP/2.0"),
        Outcome::Drop(ParseError::Garbage)
    );
    assert_eq!(line("INVITE"), Outcome::Drop(ParseError::Garbage));
    // an unknown method is still a request (the endpoint answers it 405)
    let unknown = request("", "")
        .replacen("INVITE sip", "FROB sip", 1)
        .replacen("7 INVITE", "7 FROB", 1);
    assert_eq!(outcome(&unknown), Outcome::Request);
}

#[test]
fn a_head_without_its_blank_line_is_400_for_a_request_and_dropped_for_a_response() {
    let cut = |text: String| text.trim_end_matches("\r\n").to_string();
    assert_eq!(
        outcome(&cut(request("", ""))),
        Outcome::Reject(400, bad("no blank line after headers"))
    );
    assert_eq!(
        outcome(&cut(response("", ""))),
        Outcome::Drop(ParseError::BadResponse("no blank line after headers"))
    );
}

#[test]
fn broken_responses_are_dropped() {
    let status = |l: &str| outcome(&response("", "").replacen("SIP/2.0 180 Ringing", l, 1));
    for (line, why) in [
        ("SIP/2.1 180 Ringing", "version"),
        ("SIP/2.0 99 Early", "status code"),
        ("SIP/2.0 700 Beyond", "status code"),
        ("SIP/2.0 18O Ringing", "status code"),
    ] {
        assert_eq!(
            status(line),
            Outcome::Drop(ParseError::BadResponse(why)),
            "{line}"
        );
    }
    assert_eq!(
        status("SIP/2.0 699"),
        Outcome::Response,
        "a reason phrase may be absent"
    );
    let no_via =
        response("", "").replacen("Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKb2\r\n", "", 1);
    assert_eq!(
        outcome(&no_via),
        Outcome::Drop(ParseError::MissingHeader("Via"))
    );
}

#[test]
fn keepalives_and_garbage_are_dropped_without_an_answer() {
    for keepalive in ["", "\r\n", "\r\n\r\n", "\n", "\0\0\0\0"] {
        let e = match parse(keepalive.as_bytes(), 65_535) {
            Err(ParseFailure::Drop(e)) => e,
            other => panic!("{keepalive:?}: {other:?}"),
        };
        assert_eq!(e, ParseError::Keepalive, "{keepalive:?}");
        assert!(e.is_keepalive());
    }
    assert!(!ParseError::Garbage.is_keepalive());
    let mut latin1 = request("", "").into_bytes();
    latin1.insert(40, 0xe9);
    assert!(matches!(
        parse(&latin1, 65_535),
        Err(ParseFailure::Drop(ParseError::Garbage))
    ));
    // a non-UTF-8 body is only bytes
    let mut body = request("Content-Type: application/sdp\r\n", "").into_bytes();
    body.extend_from_slice(&[0xff, 0xfe]);
    assert!(parse(&body, 65_535).is_ok());
}

#[test]
fn a_broken_header_block_still_gives_the_400_what_it_copies() {
    // a continuation line first: the block cannot be unfolded, the raw lines are kept
    let text = request("", "").replacen("Via:", " Via-folded\r\nVia:", 1);
    match parse(text.as_bytes(), 65_535) {
        Err(ParseFailure::Reject {
            code: 400,
            error,
            partial,
        }) => {
            assert_eq!(error, bad("continuation line first"));
            assert_eq!(partial.method, Method::Invite);
            assert_eq!(partial.headers.get("Call-ID"), Some("c1@pbx"));
            assert_eq!(partial.headers.get("CSeq"), Some("7 INVITE"));
            assert!(partial.headers.get("Via").is_some());
        }
        other => panic!("{other:?}"),
    }
    // a header name that is no token, with the rest of the request intact
    let text = request("Bad Name: x\r\n", "");
    assert!(matches!(
        parse(text.as_bytes(), 65_535),
        Err(ParseFailure::Reject { code: 400, error: ParseError::BadHeader(_), partial })
            if partial.headers.get("From").is_some()
    ));
}

#[test]
fn parse_message_keeps_requests_and_responses() {
    assert!(matches!(
        parse_message(request("", "").as_bytes()),
        Ok(Message::Request(r)) if r.method == Method::Invite
    ));
    assert!(matches!(
        parse_message(response("", "").as_bytes()),
        Ok(Message::Response(r)) if r.code == 180
    ));
    assert!(parse_message(b"\r\n\r\n").is_err());
}

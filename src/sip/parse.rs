//! Wire bytes to a validated SIP message: framing, pre-normalisation and the syntax checks of
//! RFC 3261 (7, 18.3, 20, 25) that decide between "parse", "answer 400/505" and "drop".
//!
//! Pre-normalisation handles what real and torture traffic contains: leading CRLFs, bare LF line
//! ends, folded header lines, compact header names, comma-joined Via and Contact values,
//! white space before the header colon, and Content-Length checks (shorter body: 400; longer:
//! truncate, as 18.3 says for UDP). Nothing here panics on input; every failure is typed.

use super::grammar::{CSeq, NameAddr, Uri, Via};
use super::message::{Headers, Message, Method, Request, Response};
use thiserror::Error;

/// Why a datagram could not be accepted as a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Longer than the size limit, which it carries.
    #[error("datagram larger than {0} bytes")]
    TooLarge(usize),
    /// Only CRLFs (or NULs): a keepalive (RFC 5626 4.4.1), not an error.
    #[error("keepalive")]
    Keepalive,
    /// Not a SIP message: no request or status line, not UTF-8, or a stray CR.
    #[error("not a SIP message")]
    Garbage,
    /// A response that cannot be read (status line, header block); says what.
    #[error("malformed response: {0}")]
    BadResponse(&'static str),
    /// A request line that is not `Method SP Request-URI SP SIP/2.0`; says what.
    #[error("malformed request line: {0}")]
    BadRequestLine(&'static str),
    /// A SIP version other than 2.0 (answered 505).
    #[error("unsupported SIP version")]
    BadVersion,
    /// A header that cannot be read, repeated where it must be single, or a missing blank line.
    #[error("malformed header: {0}")]
    BadHeader(String),
    /// A required header is absent; says which.
    #[error("missing required header {0}")]
    MissingHeader(&'static str),
    /// The body is shorter than Content-Length.
    #[error("body shorter than Content-Length")]
    ShortBody,
}

impl ParseError {
    /// Keepalives are part of normal traffic, everything else is counted as a parse error.
    pub fn is_keepalive(&self) -> bool {
        matches!(self, ParseError::Keepalive)
    }
}

/// What to do with a datagram that did not parse.
#[derive(Debug)]
pub enum ParseFailure {
    /// No response can or should be built (a response, garbage, oversize, a keepalive).
    Drop(ParseError),
    /// A request we can answer: `code` (400 or 505) built from what could be read of it.
    Reject {
        /// The status to answer with.
        code: u16,
        /// Why the request was rejected.
        error: ParseError,
        /// The request as far as it could be read, to build the answer from.
        partial: Box<Request>,
    },
}

/// The typed fields every request must carry, parsed once here so later layers never re-parse.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The Request-URI, parsed (the raw text stays in `Request::uri`).
    pub request_uri: Uri,
    /// The topmost Via, where responses go.
    pub top_via: Via,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq number and method.
    pub cseq: CSeq,
    /// The From header (with its tag).
    pub from: NameAddr,
    /// The To header (with its tag, once in a dialog).
    pub to: NameAddr,
    /// Max-Forwards, when present.
    pub max_forwards: Option<u32>,
}

/// The typed fields a response must carry to be matched to its transaction.
#[derive(Debug, Clone)]
pub struct ResponseInfo {
    /// The topmost Via, whose branch names the transaction.
    pub top_via: Via,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq number and method.
    pub cseq: CSeq,
}

// Moved once per datagram; boxing the request would add an allocation on the hot path.
/// A datagram that parsed: a request or a response, with its typed fields.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// A request, and the fields every request must carry.
    Request(Request, RequestInfo),
    /// A response, and the fields that match it to a transaction.
    Response(Response, ResponseInfo),
}

/// Compact forms (RFC 3261 7.3.3 and later RFCs) and the canonical spelling of headers we emit.
fn canonical_name(name: &str) -> Option<&'static str> {
    const KNOWN: &[&str] = &[
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Max-Forwards",
        "Expires",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Require",
        "Proxy-Require",
        "Supported",
        "Unsupported",
        "Allow",
        "Accept",
        "Route",
        "Record-Route",
        "User-Agent",
        "Server",
        "Min-Expires",
        "Session-Expires",
        "Min-SE",
        "P-Asserted-Identity",
        "Remote-Party-ID",
        "Privacy",
        "Subject",
        "Event",
        "Refer-To",
        "Referred-By",
        "Allow-Events",
    ];
    if name.len() == 1 {
        return Some(match name.as_bytes()[0].to_ascii_lowercase() {
            b'v' => "Via",
            b'f' => "From",
            b't' => "To",
            b'i' => "Call-ID",
            b'm' => "Contact",
            b'l' => "Content-Length",
            b'c' => "Content-Type",
            b'e' => "Content-Encoding",
            b'k' => "Supported",
            b's' => "Subject",
            b'o' => "Event",
            b'r' => "Refer-To",
            b'b' => "Referred-By",
            b'u' => "Allow-Events",
            b'x' => "Session-Expires",
            _ => return None,
        });
    }
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)).copied()
}

/// Splits a header value at commas that are outside quotes and angle brackets.
fn split_top_level_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Headers whose comma-separated values are split into one header each.
const SPLIT_HEADERS: &[&str] = &["Via", "Contact", "Route", "Record-Route"];

/// Header lines to (name, value) pairs: unfolding, compact names, comma splitting.
fn parse_header_lines(lines: &[&str]) -> Result<Headers, ParseError> {
    let mut unfolded: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let Some(prev) = unfolded.last_mut() else {
                return Err(ParseError::BadHeader("continuation line first".into()));
            };
            prev.push(' ');
            prev.push_str(line.trim_matches([' ', '\t']));
        } else {
            unfolded.push((*line).to_string());
        }
    }
    let mut headers = Headers::new();
    for line in &unfolded {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::BadHeader(format!(
                "no colon in {:?}",
                truncate(line)
            )));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !super::grammar::is_token(name) {
            return Err(ParseError::BadHeader(format!(
                "bad name {:?}",
                truncate(name)
            )));
        }
        let value = value.trim_matches([' ', '\t']);
        let name: String = canonical_name(name).map_or_else(|| name.to_string(), str::to_string);
        if SPLIT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(&name)) && value != "*" {
            for part in split_top_level_commas(value) {
                if part.is_empty() {
                    return Err(ParseError::BadHeader(format!("empty {name} element")));
                }
                headers.push(name.clone(), part);
            }
        } else {
            headers.push(name, value);
        }
    }
    Ok(headers)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses one datagram. `max_size` bounds what is even looked at.
pub fn parse(datagram: &[u8], max_size: usize) -> Result<Parsed, ParseFailure> {
    if datagram.len() > max_size {
        return Err(ParseFailure::Drop(ParseError::TooLarge(max_size)));
    }
    // RFC 7.5: CRLFs before the start line are ignored; a datagram of only CRLF is a keepalive
    // (RFC 5626 4.4.1).
    let start = datagram
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(datagram.len());
    let data = &datagram[start..];
    if data.is_empty() || data.iter().all(|b| *b == 0) {
        return Err(ParseFailure::Drop(ParseError::Keepalive));
    }
    let (head, body, head_terminated) = match find(data, b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..], true),
        None => match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..], true),
            None => (data, &data[data.len()..], false),
        },
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return Err(ParseFailure::Drop(ParseError::Garbage));
    };
    let lines: Vec<&str> = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    // A CR that ends no line would stay inside a header value, and everything that copies one
    // (responses, our answer to a PBX's challenge) would send a line break other parsers split
    // on. No response either: it would have to echo the line.
    if lines.iter().any(|l| l.contains('\r')) {
        return Err(ParseFailure::Drop(ParseError::Garbage));
    }
    let start_line = lines[0];
    if start_line.starts_with("SIP/") {
        return parse_response(start_line, &lines[1..], body, head_terminated)
            .map_err(ParseFailure::Drop);
    }
    parse_request(start_line, &lines[1..], body, head_terminated)
}

fn parse_request(
    start_line: &str,
    header_lines: &[&str],
    body: &[u8],
    head_terminated: bool,
) -> Result<Parsed, ParseFailure> {
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF: single spaces, nothing else
    let parts: Vec<&str> = start_line.split(' ').collect();
    let looks_like_request = parts.len() >= 2 && super::grammar::is_token(parts[0]);
    if !looks_like_request {
        return Err(ParseFailure::Drop(ParseError::Garbage));
    }
    let method = Method::parse(parts[0]);
    let headers = match parse_header_lines(header_lines) {
        Ok(h) => h,
        Err(e) => return Err(reject_raw(400, e, method, parts[1], header_lines)),
    };
    let mut request = Request {
        method,
        uri: parts[1].to_string(),
        headers,
        body: Vec::new(),
    };
    let reject = |code: u16, error: ParseError, request: Request| ParseFailure::Reject {
        code,
        error,
        partial: Box::new(request),
    };
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(reject(
            400,
            ParseError::BadRequestLine("extra white space"),
            request,
        ));
    }
    if parts[2] != "SIP/2.0" {
        let is_version = parts[2]
            .strip_prefix("SIP/")
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            });
        return Err(if is_version {
            reject(505, ParseError::BadVersion, request)
        } else {
            reject(400, ParseError::BadRequestLine("version"), request)
        });
    }
    if !head_terminated {
        return Err(reject(
            400,
            ParseError::BadHeader("no blank line after headers".into()),
            request,
        ));
    }
    let request_uri = match Uri::parse(&request.uri) {
        // headers are not allowed in a Request-URI (RFC 3261 19.1.1 table 1)
        Ok(u) if u.headers.is_some() => {
            return Err(reject(
                400,
                ParseError::BadRequestLine("headers in Request-URI"),
                request,
            ))
        }
        Ok(u) => u,
        Err(_) => {
            return Err(reject(
                400,
                ParseError::BadRequestLine("Request-URI"),
                request,
            ))
        }
    };
    match take_body(&request.headers, body) {
        Ok(b) => request.body = b,
        Err(e) => return Err(reject(400, e, request)),
    }
    match request_info(&request, request_uri) {
        Ok(info) => Ok(Parsed::Request(request, info)),
        Err(e) => Err(reject(400, e, request)),
    }
}

/// A request whose header block itself is broken: keep the lines verbatim so that the 400 can
/// still copy Via, From, To, Call-ID and CSeq.
fn reject_raw(
    code: u16,
    error: ParseError,
    method: Method,
    uri: &str,
    lines: &[&str],
) -> ParseFailure {
    let mut headers = Headers::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            if let Some(c) = canonical_name(n.trim()) {
                headers.push(c, v.trim());
            }
        }
    }
    ParseFailure::Reject {
        code,
        error,
        partial: Box::new(Request {
            method,
            uri: uri.to_string(),
            headers,
            body: Vec::new(),
        }),
    }
}

/// Content-Length rules for a datagram (RFC 3261 18.3).
fn take_body(headers: &Headers, body: &[u8]) -> Result<Vec<u8>, ParseError> {
    match headers.count("Content-Length") {
        0 => Ok(body.to_vec()),
        1 => {
            let v = headers.get("Content-Length").unwrap_or_default();
            let len: usize = v
                .parse()
                .ok()
                .filter(|_| v.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| ParseError::BadHeader("Content-Length".into()))?;
            if len > body.len() {
                Err(ParseError::ShortBody)
            } else {
                Ok(body[..len].to_vec())
            }
        }
        _ => Err(ParseError::BadHeader("more than one Content-Length".into())),
    }
}

fn single<'a>(headers: &'a Headers, name: &'static str) -> Result<&'a str, ParseError> {
    match headers.count(name) {
        0 => Err(ParseError::MissingHeader(name)),
        1 => Ok(headers.get(name).unwrap_or_default()),
        _ => Err(ParseError::BadHeader(format!("more than one {name}"))),
    }
}

fn bad(what: &str) -> impl Fn(super::grammar::GrammarError) -> ParseError + '_ {
    move |e| ParseError::BadHeader(format!("{what}: {e}"))
}

fn request_info(request: &Request, request_uri: Uri) -> Result<RequestInfo, ParseError> {
    let h = &request.headers;
    let mut vias = h.get_all("Via");
    let top_via =
        Via::parse(vias.next().ok_or(ParseError::MissingHeader("Via"))?).map_err(bad("Via"))?;
    for v in vias {
        Via::parse(v).map_err(bad("Via"))?;
    }
    let call_id = single(h, "Call-ID")?;
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(ParseError::BadHeader("Call-ID".into()));
    }
    let cseq = CSeq::parse(single(h, "CSeq")?).map_err(bad("CSeq"))?;
    if cseq.method != request.method.as_str() {
        return Err(ParseError::BadHeader(
            "CSeq method differs from the request's".into(),
        ));
    }
    let from = NameAddr::parse(single(h, "From")?).map_err(bad("From"))?;
    let to = NameAddr::parse(single(h, "To")?).map_err(bad("To"))?;
    let max_forwards = match h.count("Max-Forwards") {
        0 => None,
        1 => {
            let v = h.get("Max-Forwards").unwrap_or_default();
            let n = v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 255 && v.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| ParseError::BadHeader("Max-Forwards".into()))?;
            Some(n)
        }
        _ => return Err(ParseError::BadHeader("more than one Max-Forwards".into())),
    };
    for c in h.get_all("Contact") {
        if c != "*" {
            NameAddr::parse(c).map_err(bad("Contact"))?;
        }
    }
    if let Some(e) = h.get("Expires") {
        if e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::BadHeader("Expires".into()));
        }
    }
    Ok(RequestInfo {
        request_uri,
        top_via,
        call_id: call_id.to_string(),
        cseq,
        from,
        to,
        max_forwards,
    })
}

fn parse_response(
    start_line: &str,
    header_lines: &[&str],
    body: &[u8],
    head_terminated: bool,
) -> Result<Parsed, ParseError> {
    let mut parts = start_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if version != "SIP/2.0" {
        return Err(ParseError::BadResponse("version"));
    }
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..700).contains(c) && code.len() == 3)
        .ok_or(ParseError::BadResponse("status code"))?;
    if !head_terminated {
        return Err(ParseError::BadResponse("no blank line after headers"));
    }
    let headers = parse_header_lines(header_lines)?;
    let body = take_body(&headers, body)?;
    let top_via = Via::parse(headers.get("Via").ok_or(ParseError::MissingHeader("Via"))?)
        .map_err(bad("Via"))?;
    let call_id = single(&headers, "Call-ID")?.to_string();
    let cseq = CSeq::parse(single(&headers, "CSeq")?).map_err(bad("CSeq"))?;
    // What a response's From and To carry goes into the ACK, BYE and re-INVITE we build from
    // it: one that does not parse would make us send what no parser (ours included) accepts.
    NameAddr::parse(single(&headers, "From")?).map_err(bad("From"))?;
    NameAddr::parse(single(&headers, "To")?).map_err(bad("To"))?;
    Ok(Parsed::Response(
        Response {
            code,
            reason: reason.to_string(),
            headers,
            body,
        },
        ResponseInfo {
            top_via,
            call_id,
            cseq,
        },
    ))
}

/// Convenience for tests and tools: parse and drop the typed info.
pub fn parse_message(datagram: &[u8]) -> Result<Message, ParseFailure> {
    parse(datagram, usize::MAX).map(|p| match p {
        Parsed::Request(r, _) => Message::Request(r),
        Parsed::Response(r, _) => Message::Response(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_cr_in_the_header_block_drops_the_datagram() {
        // Found by fuzzing: a PBX's 407 with a quoted-pair backslash-CR in its nonce made our
        // retried INVITE carry a bare CR in Proxy-Authorization (the client side unescapes it);
        // fuzz/corpus/sip_datagram/repro-bare-cr-in-pbx-challenge.
        let ok = "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
                  From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
                  Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"n\"\r\n\r\n";
        assert!(parse(ok.as_bytes(), 65535).is_ok());
        let bad = ok.replace("nonce=\"n\"", "nonce=\"n\\\rX-Injected: 1\"");
        assert!(matches!(
            parse(bad.as_bytes(), 65535),
            Err(ParseFailure::Drop(ParseError::Garbage))
        ));
        let request = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
                       From: <sip:a@b>;tag=1\rX: y\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(matches!(
            parse(request.as_bytes(), 65535),
            Err(ParseFailure::Drop(ParseError::Garbage))
        ));
        // A To the ACK would copy must parse (found by fuzzing: a PBX's 200 with a To tag
        // holding spaces made our ACK unparseable).
        let bad_to = ok.replace("To: <sip:c@d>;tag=2", "To: <sip:c@d>;tag=2:x@y SIP/2.0");
        assert!(matches!(
            parse(bad_to.as_bytes(), 65535),
            Err(ParseFailure::Drop(ParseError::BadHeader(_)))
        ));
        // In the body a CR is just a byte.
        let body = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
                    Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\na\rb";
        assert!(parse(body.as_bytes(), 65535).is_ok());
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod parse_tests;

//! Unit tests of `sip::digest`.

use super::*;
use rand::{Rng, SeedableRng};

/// One row of tests/data/digest-vectors.md.
struct Vector {
    alg: Algorithm,
    user: &'static str,
    realm: &'static str,
    password: &'static str,
    method: &'static str,
    uri: &'static str,
    nonce: &'static str,
    qop: Option<(&'static str, &'static str)>, // (nc, cnonce); qop is always "auth"
    response: &'static str,
}

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const SIP_NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

const VECTORS: [Vector; 6] = [
    Vector {
        alg: Algorithm::Md5,
        user: "Mufasa",
        realm: "testrealm@host.com",
        password: "Circle Of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: SIP_NONCE,
        qop: Some(("00000001", "0a4f113b")),
        response: "6629fae49393a05397450978507c4ef1",
    },
    Vector {
        alg: Algorithm::Md5,
        user: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: RFC7616_NONCE,
        qop: Some(("00000001", RFC7616_CNONCE)),
        response: "8ca523f5e9506fed4657c9700eebdbec",
    },
    Vector {
        alg: Algorithm::Sha256,
        user: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nonce: RFC7616_NONCE,
        qop: Some(("00000001", RFC7616_CNONCE)),
        response: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    },
    Vector {
        alg: Algorithm::Md5,
        user: "bob",
        realm: "biloxi.com",
        password: "zanzibar",
        method: "INVITE",
        uri: "sip:bob@biloxi.com",
        nonce: SIP_NONCE,
        qop: None,
        response: "bf57e4e0d0bffc0fbaedce64d59add5e",
    },
    Vector {
        alg: Algorithm::Md5,
        user: "bob",
        realm: "biloxi.com",
        password: "zanzibar",
        method: "INVITE",
        uri: "sip:bob@biloxi.com",
        nonce: SIP_NONCE,
        qop: Some(("00000001", "0a4f113b")),
        response: "89eb0059246c02b2f6ee02c7961d5ea3",
    },
    Vector {
        alg: Algorithm::Md5,
        user: "bob",
        realm: "biloxi.com",
        password: "zanzibar",
        method: "REGISTER",
        uri: "sip:biloxi.com",
        nonce: SIP_NONCE,
        qop: None,
        response: "4441045a8075db3ead543693997e2a0e",
    },
];

#[test]
fn the_vectors_are_the_rows_of_the_data_file() {
    // The file is the reference; the table above is its typed copy. Each must hold the other.
    let text = include_str!("../../tests/data/digest-vectors.md");
    let responses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| source"))
        .filter_map(|l| l.trim_end_matches('|').rsplit('|').next())
        .map(str::trim)
        .collect();
    assert_eq!(responses.len(), VECTORS.len(), "{responses:?}");
    for (v, r) in VECTORS.iter().zip(&responses) {
        assert_eq!(v.response, *r);
    }
}

fn creds_of(v: &Vector) -> Credentials {
    Credentials {
        username: v.user.into(),
        realm: v.realm.into(),
        nonce: v.nonce.into(),
        uri: v.uri.into(),
        response: v.response.into(),
        algorithm: v.alg,
        qop: v.qop.map(|_| "auth".into()),
        nc: v.qop.map(|(nc, _)| nc.into()),
        cnonce: v.qop.map(|(_, c)| c.into()),
        opaque: None,
    }
}

fn header_of(v: &Vector) -> String {
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        v.user,
        v.realm,
        v.nonce,
        v.uri,
        v.response,
        v.alg.as_str()
    );
    if let Some((nc, cnonce)) = v.qop {
        h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    h
}

fn ha1_of(v: &Vector) -> String {
    ha1(v.alg, v.user, v.realm, v.password)
}

#[test]
fn every_vector_response_is_reproduced() {
    for v in &VECTORS {
        let creds = creds_of(v);
        let got = expected_response(v.alg, &ha1_of(v), v.method, &creds).unwrap();
        assert_eq!(got, v.response, "vector {} {}", v.user, v.realm);
        assert!(verify(&creds, v.method, &ha1_of(v)));
    }
}

#[test]
fn every_vector_verifies_through_the_parser() {
    for v in &VECTORS {
        let creds = parse_credentials(&header_of(v)).unwrap();
        assert_eq!(creds, creds_of(v));
        assert!(verify(&creds, v.method, &ha1_of(v)));
    }
}

#[test]
fn known_ha1_values() {
    // HA1 values published alongside the RFC 2617 and RFC 7616 examples.
    assert_eq!(
        ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life"
        ),
        "939e7578ed9e3c518a452acee763bce9"
    );
    assert_eq!(ha1(Algorithm::Md5, "", "", "").len(), 32);
    assert_eq!(ha1(Algorithm::Sha256, "", "", "").len(), 64);
}

#[test]
fn uppercase_ha1_and_response_are_accepted() {
    let v = &VECTORS[3];
    let mut creds = creds_of(v);
    creds.response = creds.response.to_ascii_uppercase();
    assert!(verify(&creds, v.method, &ha1_of(v).to_ascii_uppercase()));
    assert_eq!(
        expected_response(v.alg, &ha1_of(v).to_ascii_uppercase(), v.method, &creds).unwrap(),
        v.response
    );
}

#[test]
fn tampered_response_is_refused() {
    for v in &VECTORS {
        let ha1 = ha1_of(v);
        for i in 0..v.response.len() {
            let mut creds = creds_of(v);
            let mut bytes = creds.response.into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            creds.response = String::from_utf8(bytes).unwrap();
            assert!(!verify(&creds, v.method, &ha1));
        }
        let mut creds = creds_of(v);
        creds.response.pop();
        assert!(!verify(&creds, v.method, &ha1));
        let mut creds = creds_of(v);
        creds.response.push('0');
        assert!(!verify(&creds, v.method, &ha1));
    }
}

#[test]
fn wrong_method_uri_password_nonce_or_nc_is_refused() {
    for v in &VECTORS {
        let ha1 = ha1_of(v);
        let creds = creds_of(v);
        assert!(!verify(&creds, "BYE", &ha1));
        assert!(!verify(&creds, &v.method.to_ascii_lowercase(), &ha1));
        assert!(!verify(
            &creds,
            v.method,
            &super::ha1(v.alg, v.user, v.realm, "wrong")
        ));

        let mut c = creds.clone();
        c.uri.push_str(":5060");
        assert!(!verify(&c, v.method, &ha1));

        let mut c = creds.clone();
        c.nonce.push('x');
        assert!(!verify(&c, v.method, &ha1));

        if v.qop.is_some() {
            let mut c = creds.clone();
            c.nc = Some("00000002".into());
            assert!(!verify(&c, v.method, &ha1));
            let mut c = creds.clone();
            c.cnonce = Some("other".into());
            assert!(!verify(&c, v.method, &ha1));
        }
    }
}

#[test]
fn qop_rules_in_verify() {
    let v = &VECTORS[4];
    let ha1 = ha1_of(v);
    let base = creds_of(v);

    let mut c = base.clone();
    c.nc = None;
    assert!(!verify(&c, v.method, &ha1));
    assert_eq!(
        expected_response(v.alg, &ha1, v.method, &c),
        Err(DigestError::Malformed("qop=auth without nc or cnonce"))
    );

    let mut c = base.clone();
    c.cnonce = None;
    assert!(!verify(&c, v.method, &ha1));

    for qop in ["auth-int", "auth,auth-int", "AUTH", ""] {
        let mut c = base.clone();
        c.qop = Some(qop.into());
        assert!(!verify(&c, v.method, &ha1), "qop {qop:?}");
    }

    // Stripping qop from a qop=auth request must not yield a valid no-qop request.
    let mut c = base.clone();
    c.qop = None;
    assert!(!verify(&c, v.method, &ha1));
}

#[test]
fn qop_list_in_credentials_parses_but_never_verifies() {
    let h = "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n\", uri=\"sip:biloxi.com\", \
             response=\"89eb0059246c02b2f6ee02c7961d5ea3\", qop=\"auth,auth-int\", nc=00000001, cnonce=\"c\"";
    let c = parse_credentials(h).unwrap();
    assert_eq!(c.qop.as_deref(), Some("auth,auth-int"));
    let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
    assert!(!verify(&c, "REGISTER", &ha1));
}

#[test]
fn bad_ha1_is_refused() {
    let v = &VECTORS[3];
    let creds = creds_of(v);
    for bad in ["", "00", &"0".repeat(64), &"g".repeat(32)] {
        assert!(expected_response(v.alg, bad, v.method, &creds).is_err());
        assert!(!verify(&creds, v.method, bad));
    }
    // An MD5 HA1 offered for SHA-256 credentials (and vice versa).
    let mut sha = creds.clone();
    sha.algorithm = Algorithm::Sha256;
    assert!(!verify(&sha, v.method, &ha1_of(v)));
    assert_eq!(
        expected_response(Algorithm::Sha256, &ha1_of(v), v.method, &creds),
        Err(DigestError::UnsupportedAlgorithm)
    );
}

#[test]
fn algorithm_parse_and_as_str() {
    assert_eq!(Algorithm::parse("MD5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse("SHA-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
    for bad in [
        "MD5-sess",
        "SHA-256-sess",
        "SHA-512-256",
        "SHA256",
        "",
        " MD5",
        "AKAv1-MD5",
    ] {
        assert_eq!(Algorithm::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Algorithm::Md5.as_str(), "MD5");
    assert_eq!(Algorithm::Sha256.as_str(), "SHA-256");
}

#[test]
fn parses_3cx_style_no_qop() {
    let h = "Digest username=\"10001\",realm=\"asterisk\",nonce=\"414d535c00c9a4ea\",\
             uri=\"sip:10.0.0.1:5060\",response=\"4441045a8075db3ead543693997e2a0e\",algorithm=MD5";
    let c = parse_credentials(h).unwrap();
    assert_eq!(c.username, "10001");
    assert_eq!(c.uri, "sip:10.0.0.1:5060");
    assert_eq!(c.algorithm, Algorithm::Md5);
    assert_eq!((c.qop, c.nc, c.cnonce, c.opaque), (None, None, None, None));
}

#[test]
fn parses_asterisk_style_with_qop() {
    let h = "Digest username=\"bob\", realm=\"biloxi.com\", algorithm=MD5, \
             uri=\"sip:bob@biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             response=\"89eb0059246c02b2f6ee02c7961d5ea3\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", \
             qop=auth, cnonce=\"0a4f113b\", nc=00000001";
    let c = parse_credentials(h).unwrap();
    assert_eq!(c.qop.as_deref(), Some("auth"));
    assert_eq!(c.nc_value(), Some(1));
    assert_eq!(
        c.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
    let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
    assert!(verify(&c, "INVITE", &ha1));
    assert!(!verify(&c, "REGISTER", &ha1));
}

#[test]
fn quoted_and_unquoted_algorithm_and_qop() {
    let base = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"";
    for (extra, alg) in [
        ("", Algorithm::Md5),
        (", algorithm=MD5", Algorithm::Md5),
        (", algorithm=\"MD5\"", Algorithm::Md5),
        (", algorithm=md5", Algorithm::Md5),
        (", algorithm=SHA-256", Algorithm::Sha256),
        (", algorithm=\"sha-256\"", Algorithm::Sha256),
    ] {
        let c = parse_credentials(&format!("{base}{extra}")).unwrap();
        assert_eq!(c.algorithm, alg, "{extra}");
    }
    for extra in [
        ", algorithm=MD5-sess",
        ", algorithm=\"SHA-256-sess\"",
        ", algorithm=SHA-512-256",
        ", algorithm=\"\"",
    ] {
        assert_eq!(
            parse_credentials(&format!("{base}{extra}")),
            Err(DigestError::UnsupportedAlgorithm),
            "{extra}"
        );
    }
    let q = parse_credentials(&format!("{base}, qop=\"auth\"")).unwrap();
    let u = parse_credentials(&format!("{base}, qop=auth")).unwrap();
    assert_eq!(q.qop.as_deref(), Some("auth"));
    assert_eq!(q, u);
}

#[test]
fn weird_whitespace_case_and_escapes() {
    let h = " \tdIgEsT\t \r\n  USERNAME\t=  \"b\\\"o\\\\b\" ,Realm=\"biloxi.com\"  ,, \
             NONCE =dcd98b7102dd2f0e8b11d0f600bfb0c093,uri\t=\t\"sip:bob@biloxi.com\", \
             Response= \"BF57E4E0D0BFFC0FBAEDCE64D59ADD5E\" , unknown-param=\"x, y\", ext=tok ,";
    let c = parse_credentials(h).unwrap();
    assert_eq!(c.username, "b\"o\\b");
    assert_eq!(c.realm, "biloxi.com");
    assert_eq!(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
    assert_eq!(c.uri, "sip:bob@biloxi.com");

    let plain = "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
                 uri=\"sip:bob@biloxi.com\", response=\"BF57E4E0D0BFFC0FBAEDCE64D59ADD5E\"";
    let c = parse_credentials(plain).unwrap();
    let ha1 = ha1(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
    assert!(verify(&c, "INVITE", &ha1));

    // Escapes and non-ASCII are unescaped, not mangled.
    let c = parse_credentials(
        "Digest username=\"J\\ürgen \\\"JJ\\\"\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"",
    );
    assert_eq!(c, Err(DigestError::Malformed("invalid escape")));
    let c = parse_credentials(
        "Digest username=\"Jürgen \\\"JJ\\\"\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"",
    )
    .unwrap();
    assert_eq!(c.username, "Jürgen \"JJ\"");
}

#[test]
fn rejects_other_schemes() {
    for h in [
        "NoOneKnowsThisScheme opaque-data=here",
        "Basic Ym9iOnphbnppYmFy",
        "",
        "   ",
        "Digestive username=\"bob\"",
        "\"Digest\" username=\"bob\"",
    ] {
        assert_eq!(parse_credentials(h), Err(DigestError::NotDigest), "{h:?}");
    }
}

#[test]
fn rejects_malformed() {
    let ok = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"";
    assert!(parse_credentials(ok).is_ok());
    let cases = [
        "Digest",
        "Digest ",
        "Digest=x",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"",
        "Digest username=\"\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"r\", nonce=\"\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"\", response=\"00\"",
        "Digest username=\"u\", USERNAME=\"v\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", nc=1, nc=2",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", algorithm=MD5, algorithm=MD5",
        "Digest username=\"u\" realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\\",
        "Digest username=u\"x\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest =\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\u{0}\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\\\r\n\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\r\n\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"; x=y",
    ];
    for h in cases {
        assert!(
            matches!(parse_credentials(h), Err(DigestError::Malformed(_))),
            "{h:?} gave {:?}",
            parse_credentials(h)
        );
    }
}

#[test]
fn an_empty_response_is_told_apart() {
    // a scanner probing for users without a password sends exactly this
    let h = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"\"";
    assert_eq!(parse_credentials(h), Err(DigestError::EmptyResponse));
    let h = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\"";
    assert!(matches!(
        parse_credentials(h),
        Err(DigestError::Malformed(_))
    ));
}

#[test]
fn long_values_are_refused() {
    let long = "a".repeat(MAX_VALUE_LEN + 1);
    let fits = "a".repeat(MAX_VALUE_LEN);
    let mk = |u: &str| {
        format!("Digest username=\"{u}\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"")
    };
    assert!(parse_credentials(&mk(&fits)).is_ok());
    assert_eq!(
        parse_credentials(&mk(&long)),
        Err(DigestError::Malformed("parameter value too long"))
    );
    let unquoted = format!("Digest username=u, realm=r, nonce=n, uri=sip:r, response=00, x={long}");
    assert_eq!(
        parse_credentials(&unquoted),
        Err(DigestError::Malformed("parameter value too long"))
    );
    let escaped = format!("Digest username=\"{}\"", "\\a".repeat(MAX_VALUE_LEN));
    assert!(matches!(
        parse_credentials(&escaped),
        Err(DigestError::Malformed(_))
    ));
}

#[test]
fn nc_value_parsing() {
    let mut c = creds_of(&VECTORS[0]);
    for (nc, want) in [
        (Some("0000000a"), Some(10)),
        (Some("0000000A"), Some(10)),
        (Some("00000001"), Some(1)),
        (Some("ffffffff"), Some(u32::MAX)),
        (Some("1"), Some(1)),
        (Some("00000000"), Some(0)),
        (Some("000000001"), None),
        (Some("+0000001"), None),
        (Some("-1"), None),
        (Some(""), None),
        (Some("0000000g"), None),
        (Some(" 0000001"), None),
        (None, None),
    ] {
        c.nc = nc.map(Into::into);
        assert_eq!(c.nc_value(), want, "{nc:?}");
    }
    let h = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\", \
             qop=auth, nc=0000000a, cnonce=\"c\"";
    let c = parse_credentials(h).unwrap();
    assert_eq!(c.nc.as_deref(), Some("0000000a"));
    assert_eq!(c.nc_value(), Some(10));
}

#[test]
fn nc_is_hashed_as_sent() {
    let v = &VECTORS[4];
    let mut c = creds_of(v);
    c.nc = Some("1".into()); // same number, different spelling
    assert!(!verify(&c, v.method, &ha1_of(v)));
    let resp = expected_response(v.alg, &ha1_of(v), v.method, &c).unwrap();
    c.response = resp;
    assert!(verify(&c, v.method, &ha1_of(v)));
}

#[test]
fn qop_auth_with_malformed_nc_never_verifies() {
    let v = &VECTORS[4];
    let mut c = creds_of(v);
    c.nc = Some("zz".into());
    c.response = expected_response(v.alg, &ha1_of(v), v.method, &c).unwrap();
    assert!(!verify(&c, v.method, &ha1_of(v)));
}

#[test]
fn challenge_format() {
    assert_eq!(
        challenge(Algorithm::Md5, "biloxi.com", "abc", false, false),
        "Digest realm=\"biloxi.com\", nonce=\"abc\", algorithm=MD5"
    );
    assert_eq!(
        challenge(Algorithm::Sha256, "biloxi.com", "abc", true, true),
        "Digest realm=\"biloxi.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\", stale=true"
    );
    assert_eq!(
        challenge(Algorithm::Md5, "a\"b\\c\r\nX-Evil: 1", "n", true, false),
        "Digest realm=\"a\\\"b\\\\cX-Evil: 1\", nonce=\"n\", algorithm=MD5, qop=\"auth\""
    );
}

#[test]
fn challenge_round_trips_through_a_client_answer() {
    // Simulate a client: take realm/nonce from our challenge, answer, and verify.
    let ch = challenge(Algorithm::Sha256, "trunk \"1\"", "Zm9v-YmFy_", true, false);
    let realm = "trunk \"1\"";
    let ha1 = ha1(Algorithm::Sha256, "alice", realm, "pw");
    let mut c = Credentials {
        username: "alice".into(),
        realm: realm.into(),
        nonce: "Zm9v-YmFy_".into(),
        uri: "sip:gw.example:5060".into(),
        response: String::new(),
        algorithm: Algorithm::Sha256,
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("xyz".into()),
        opaque: None,
    };
    c.response = expected_response(Algorithm::Sha256, &ha1, "REGISTER", &c).unwrap();
    let header = format!(
        "Digest username=\"alice\", realm=\"trunk \\\"1\\\"\", nonce=\"Zm9v-YmFy_\", \
         uri=\"sip:gw.example:5060\", response=\"{}\", algorithm=SHA-256, qop=auth, \
         nc=00000001, cnonce=\"xyz\"",
        c.response
    );
    assert!(ch.contains("realm=\"trunk \\\"1\\\"\""));
    let parsed = parse_credentials(&header).unwrap();
    assert_eq!(parsed, c);
    assert!(verify(&parsed, "REGISTER", &ha1));
}

/// What a prefix of a well-formed header may parse to: not Digest yet, a `Malformed` error, an
/// unknown algorithm while the cut falls inside its value, or, once every required parameter is
/// whole, the full header's identity (username, realm, nonce, uri, response).
fn check_prefix(prefix: &str, full: &Credentials) {
    let scheme = prefix.trim_start_matches([' ', '\t']);
    match parse_credentials(prefix) {
        Err(DigestError::NotDigest) => assert!(
            scheme.len() < "Digest".len() && "digest".starts_with(&scheme.to_ascii_lowercase()),
            "{prefix:?} is past the scheme but NotDigest"
        ),
        Err(DigestError::Malformed(_)) => {}
        Err(DigestError::UnsupportedAlgorithm) => assert!(
            prefix.to_ascii_lowercase().contains("algorithm="),
            "{prefix:?}: UnsupportedAlgorithm without an algorithm parameter"
        ),
        Err(DigestError::EmptyResponse) => panic!("{prefix:?}: no prefix has response=\"\""),
        Ok(c) => assert_eq!(
            (&c.username, &c.realm, &c.nonce, &c.uri, &c.response),
            (
                &full.username,
                &full.realm,
                &full.nonce,
                &full.uri,
                &full.response
            ),
            "{prefix:?} parsed to other credentials"
        ),
    }
}

#[test]
fn every_prefix_and_deletion_parses_to_the_header_or_a_typed_error() {
    let odd = " dIgEsT  USERNAME=\"b\\\"ob\" ,realm=\"r\",nonce=n,uri=\"sip:x\",response=\"ab\", \
               qop=\"auth\", nc=0000000a, cnonce=\"ü\"";
    let odd_creds = Credentials {
        username: "b\"ob".into(),
        realm: "r".into(),
        nonce: "n".into(),
        uri: "sip:x".into(),
        response: "ab".into(),
        algorithm: Algorithm::Md5,
        qop: Some("auth".into()),
        nc: Some("0000000a".into()),
        cnonce: Some("ü".into()),
        opaque: None,
    };
    assert_eq!(parse_credentials(odd), Ok(odd_creds.clone()));
    let mut inputs: Vec<(String, Credentials)> = VECTORS
        .iter()
        .map(|v| (header_of(v), creds_of(v)))
        .collect();
    inputs.push((odd.to_string(), odd_creds));
    for (full, creds) in &inputs {
        assert_eq!(parse_credentials(full).as_ref(), Ok(creds));
        for (i, _) in full.char_indices() {
            check_prefix(&full[..i], creds);
        }
    }

    // Every single-byte deletion: whatever still parses and verifies with the password is
    // the vector's own credentials (a deletion never changes what the hash covers unseen).
    for v in &VECTORS {
        let full = header_of(v);
        let bytes = full.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b.remove(i);
            let s = String::from_utf8_lossy(&b);
            let Ok(c) = parse_credentials(&s) else {
                continue;
            };
            let ha1 = ha1(c.algorithm, &c.username, &c.realm, v.password);
            if verify(&c, v.method, &ha1) {
                assert_eq!(c, creds_of(v), "deleting byte {i} of {full:?}");
            }
        }
    }
}

#[test]
fn garbage_is_refused_or_parses_to_complete_credentials() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7472_756e_6b67_6174);
    let alphabet = b"Digest \t\r\n,=\"\\abcnu0123456789-;:";
    let mut parsed = 0;
    for _ in 0..20_000 {
        let len = rng.gen_range(0..200);
        let random_bytes = rng.gen_bool(0.5);
        let bytes: Vec<u8> = if random_bytes {
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut b = b"Digest ".to_vec();
            b.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
            b
        };
        let s = String::from_utf8_lossy(&bytes);
        let digest_first = s
            .trim_start_matches([' ', '\t', '\r', '\n'])
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case("digest"));
        match parse_credentials(&s) {
            Err(DigestError::NotDigest) => assert!(!digest_first, "{s:?}"),
            Err(_) => assert!(digest_first, "{s:?}: past the scheme without Digest"),
            Ok(c) => {
                parsed += 1;
                for field in [&c.username, &c.realm, &c.nonce, &c.uri, &c.response] {
                    assert!(!field.is_empty() && field.len() <= MAX_VALUE_LEN, "{s:?}");
                }
                assert!(!verify(&c, "INVITE", &"0".repeat(32)), "{s:?}");
            }
        }
    }
    // the alphabet half cannot spell a parameter name we require, so nothing parses
    assert_eq!(parsed, 0);
}

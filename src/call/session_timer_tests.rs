use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn cfg() -> SessionTimerConfig {
    SessionTimerConfig::new(s(1800), s(90)).unwrap()
}

fn req<'a>(se: Option<&'a str>, min_se: Option<&'a str>, supported: bool) -> TimerRequest<'a> {
    TimerRequest {
        session_expires: se,
        min_se,
        timer_supported: supported,
    }
}

fn accepted(d: UasDecision) -> SessionAgreement {
    match d {
        UasDecision::Accept(n) => n,
        other => panic!("expected Accept, got {other:?}"),
    }
}

#[test]
fn config_rules() {
    assert_eq!(
        SessionTimerConfig::new(s(1800), s(89)),
        Err(ConfigError::MinSeTooSmall(s(89)))
    );
    assert!(matches!(
        SessionTimerConfig::new(s(100), s(120)),
        Err(ConfigError::SessionExpiresBelowMinSe { .. })
    ));
    assert!(matches!(
        SessionTimerConfig::new(s(u64::from(u32::MAX) + 1), s(90)),
        Err(ConfigError::TooLong(_))
    ));
    let c = SessionTimerConfig::new(Duration::from_millis(1_800_900), s(90)).unwrap();
    assert_eq!(c.session_expires(), s(1800), "whole seconds on the wire");
    assert_eq!(c.min_se(), s(90));
}

#[test]
fn small_session_expires_is_rejected_with_our_min_se() {
    let c = SessionTimerConfig::new(s(1800), s(120)).unwrap();
    assert_eq!(
        on_request(&req(Some("100"), None, true), &c),
        Ok(UasDecision::Reject422 { min_se: 120 })
    );
    assert_eq!(
        on_request(&req(Some("0"), None, true), &c),
        Ok(UasDecision::Reject422 { min_se: 120 })
    );
    // Exactly our minimum is fine.
    let n = accepted(on_request(&req(Some("120"), None, true), &c).unwrap());
    assert_eq!(n.interval, s(120));
}

#[test]
fn small_session_expires_without_timer_support_is_raised_not_rejected() {
    // A proxy inserted it; a 422 would fail a call the UAC cannot fix.
    let n = accepted(on_request(&req(Some("30"), None, false), &cfg()).unwrap());
    assert_eq!(
        n,
        SessionAgreement {
            interval: s(90),
            refresher: Refresher::Uas,
            require_timer: false
        }
    );
    assert_eq!(
        n.response_headers(),
        [("Session-Expires", "90;refresher=uas".to_owned())]
    );
}

#[test]
fn asterisk_style_request() {
    let n =
        accepted(on_request(&req(Some("1800;refresher=uac"), Some("90"), true), &cfg()).unwrap());
    assert_eq!(
        n,
        SessionAgreement {
            interval: s(1800),
            refresher: Refresher::Uac,
            require_timer: true
        }
    );
    assert_eq!(
        n.response_headers(),
        [
            ("Session-Expires", "1800;refresher=uac".to_owned()),
            ("Require", "timer".to_owned())
        ]
    );
    assert!(!n.we_refresh(true), "the PBX refreshes; we are the UAS");
}

#[test]
fn requested_refresher_uas_is_copied() {
    let n = accepted(on_request(&req(Some("600;refresher=uas"), None, true), &cfg()).unwrap());
    assert_eq!((n.interval, n.refresher), (s(600), Refresher::Uas));
    assert!(n.we_refresh(true));
    assert_eq!(n.response_headers()[1], ("Require", "timer".to_owned()));
}

#[test]
fn no_refresher_requested_lets_the_supporting_uac_refresh() {
    let n = accepted(on_request(&req(Some("900"), None, true), &cfg()).unwrap());
    assert_eq!(
        (n.interval, n.refresher, n.require_timer),
        (s(900), Refresher::Uac, true)
    );
}

#[test]
fn refresher_uac_without_support_becomes_uas() {
    let n = accepted(on_request(&req(Some("900;refresher=uac"), None, false), &cfg()).unwrap());
    assert_eq!((n.refresher, n.require_timer), (Refresher::Uas, false));
}

#[test]
fn longer_request_is_shortened_to_our_preference_but_not_below_their_min_se() {
    let n = accepted(on_request(&req(Some("7200"), None, true), &cfg()).unwrap());
    assert_eq!(n.interval, s(1800));
    let n = accepted(on_request(&req(Some("7200"), Some("3600"), true), &cfg()).unwrap());
    assert_eq!(n.interval, s(3600));
}

#[test]
fn threecx_style_supported_only() {
    let n = accepted(on_request(&req(None, None, true), &cfg()).unwrap());
    assert_eq!(
        n,
        SessionAgreement {
            interval: s(1800),
            refresher: Refresher::Uac,
            require_timer: true
        }
    );
    // Their Min-SE still binds the interval we pick.
    let n = accepted(on_request(&req(None, Some("2400"), true), &cfg()).unwrap());
    assert_eq!(n.interval, s(2400));
}

#[test]
fn no_timer_at_all() {
    assert_eq!(
        on_request(&req(None, None, false), &cfg()),
        Ok(UasDecision::NoTimer)
    );
    assert_eq!(
        on_request(&req(None, Some("90"), false), &cfg()),
        Ok(UasDecision::NoTimer)
    );
}

#[test]
fn malformed_values_are_bad_requests() {
    for se in [
        "",
        "abc",
        "-5",
        "1800.5",
        "18 00",
        "1800;refresher=both",
        "1800;refresher",
        "1800;;x",
    ] {
        assert_eq!(
            on_request(&req(Some(se), None, true), &cfg()),
            Err(HeaderError::SessionExpires(se.to_owned())),
            "{se:?}"
        );
    }
    for min_se in ["", "ninety", "-90"] {
        assert_eq!(
            on_request(&req(Some("1800"), Some(min_se), true), &cfg()),
            Err(HeaderError::MinSe(min_se.to_owned())),
            "{min_se:?}"
        );
    }
}

#[test]
fn lenient_spelling_and_extension_params() {
    let se = parse_session_expires(" 1800 ; Refresher = UAS ; foo=bar ; lr").unwrap();
    assert_eq!(
        se,
        SessionExpires {
            delta: 1800,
            refresher: Some(Refresher::Uas)
        }
    );
    assert_eq!(parse_min_se("90;ext=1"), Ok(90));
}

#[test]
fn huge_values_saturate() {
    assert_eq!(
        parse_session_expires("99999999999999999999").unwrap().delta,
        u32::MAX
    );
    let n = accepted(on_request(&req(Some("99999999999999999999"), None, true), &cfg()).unwrap());
    assert_eq!(n.interval, s(1800));
    // A Min-SE this large is absurd but binding; the timer must cope with it.
    let n = accepted(on_request(&req(Some("1800"), Some("99999999999"), true), &cfg()).unwrap());
    assert_eq!(n.interval, s(u64::from(u32::MAX)));
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&n, true, t0);
    assert_eq!(timer.handle_timeout(t0 + s(86_400)), None);
}

#[test]
fn uac_request_headers() {
    assert_eq!(
        request_headers(&cfg()),
        [
            ("Supported", "timer".to_owned()),
            ("Session-Expires", "1800".to_owned()),
            ("Min-SE", "90".to_owned())
        ]
    );
}

#[test]
fn uac_2xx() {
    assert_eq!(on_2xx(None), None, "no Session-Expires: no timer");
    assert_eq!(
        on_2xx(Some("1800;refresher=uac")),
        Some(SessionAgreement {
            interval: s(1800),
            refresher: Refresher::Uac,
            require_timer: false
        })
    );
    let n = on_2xx(Some("600;refresher=uas")).unwrap();
    assert_eq!(n.interval, s(600));
    assert!(!n.we_refresh(false), "the PBX is the UAS and refreshes");
    let n = on_2xx(Some("600;refresher=uac")).unwrap();
    assert!(n.we_refresh(false));
    // A 2xx without refresher breaks the RFC; we refresh ourselves.
    assert_eq!(on_2xx(Some("600")).unwrap().refresher, Refresher::Uac);
    assert_eq!(on_2xx(Some("garbage")), None);
    assert_eq!(on_2xx(Some("0;refresher=uac")), None);
}

#[test]
fn retry_after_422_is_bounded() {
    let sent = cfg();
    let retry = retry_after_422(Some("3600"), &sent).unwrap();
    assert_eq!(
        (retry.session_expires(), retry.min_se()),
        (s(3600), s(3600))
    );
    assert_eq!(
        request_headers(&retry)[1..],
        [
            ("Session-Expires", "3600".to_owned()),
            ("Min-SE", "3600".to_owned())
        ]
    );
    assert_eq!(retry_after_422(None, &sent), None);
    assert_eq!(retry_after_422(Some("x"), &sent), None);
    assert_eq!(
        retry_after_422(Some("1800"), &sent),
        None,
        "no progress: would loop"
    );
    assert_eq!(retry_after_422(Some("600"), &sent), None);
    assert_eq!(
        retry_after_422(Some("7201"), &sent),
        None,
        "beyond the bound"
    );
    assert!(retry_after_422(Some("7200"), &sent).is_some());
}

fn negotiated(secs_: u64) -> SessionAgreement {
    SessionAgreement {
        interval: s(secs_),
        refresher: Refresher::Uas,
        require_timer: true,
    }
}

#[test]
fn refresher_refreshes_at_half_the_interval() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(1800), true, t0);
    assert_eq!(timer.poll_timeout(), Some(t0 + s(900)));
    assert_eq!(timer.handle_timeout(t0 + s(899)), None);
    assert_eq!(
        timer.handle_timeout(t0 + s(900)),
        Some(TimerAction::SendRefresh)
    );
    // Only once; then the expiry point is next.
    assert_eq!(timer.handle_timeout(t0 + s(901)), None);
    assert_eq!(timer.poll_timeout(), Some(t0 + s(1800 - 32)));
    // The refresh's 2xx restarts the interval.
    timer.on_refreshed(t0 + s(905));
    assert_eq!(timer.poll_timeout(), Some(t0 + s(905 + 900)));
    assert_eq!(timer.handle_timeout(t0 + s(1800 - 32)), None);
    assert_eq!(
        timer.handle_timeout(t0 + s(905 + 900)),
        Some(TimerAction::SendRefresh)
    );
}

#[test]
fn refresher_expires_when_the_refresh_never_succeeds() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(90), true, t0);
    assert_eq!(
        timer.handle_timeout(t0 + s(45)),
        Some(TimerAction::SendRefresh)
    );
    // 90 s: the margin is a third of the interval, 30 s.
    assert_eq!(timer.poll_timeout(), Some(t0 + s(60)));
    assert_eq!(timer.handle_timeout(t0 + s(59)), None);
    assert_eq!(timer.handle_timeout(t0 + s(60)), Some(TimerAction::Expired));
    assert_eq!(timer.poll_timeout(), None);
    assert_eq!(timer.handle_timeout(t0 + s(61)), None, "expires once");
}

#[test]
fn non_refresher_ends_the_session_before_expiry() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(1800), false, t0);
    assert_eq!(timer.poll_timeout(), Some(t0 + s(1768)));
    assert_eq!(
        timer.handle_timeout(t0 + s(900)),
        None,
        "never sends refreshes"
    );
    assert_eq!(timer.handle_timeout(t0 + s(1767)), None);
    assert_eq!(
        timer.handle_timeout(t0 + s(1768)),
        Some(TimerAction::Expired)
    );
}

#[test]
fn peer_refreshes_keep_the_session() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(600), false, t0);
    let mut now = t0;
    for _ in 0..10 {
        now += s(300);
        assert_eq!(timer.handle_timeout(now), None);
        timer.on_refreshed(now);
    }
    assert_eq!(timer.poll_timeout(), Some(now + s(600 - 32)));
}

#[test]
fn late_wakeup_past_both_points_expires() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(1800), true, t0);
    assert_eq!(
        timer.handle_timeout(t0 + s(3600)),
        Some(TimerAction::Expired)
    );
}

#[test]
fn renegotiation_switches_roles_and_interval() {
    let t0 = Instant::now();
    let mut timer = SessionTimer::new(&negotiated(1800), true, t0);
    timer.renegotiate(&negotiated(600), false, t0 + s(100));
    assert!(!timer.we_refresh());
    assert_eq!(timer.interval(), s(600));
    assert_eq!(timer.poll_timeout(), Some(t0 + s(100 + 600 - 32)));
}

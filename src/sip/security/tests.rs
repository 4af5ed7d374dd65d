use super::*;
use std::net::Ipv4Addr;

fn config(extra: &str) -> Config {
    let text = format!(
        "[sip]\nrealm = \"t\"\n[cdr]\npath = \"/tmp/trunkgate-guard-test.jsonl\"\n\
         [[trunks]]\nname = \"a\"\nauth_username = \"a\"\npassword = \"p\"\n\
         allowed_sources = []\n[security]\n{extra}\n"
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn guard(extra: &str) -> Guard {
    Guard::new(&config(extra))
}

#[test]
fn bans_after_the_configured_failures_within_the_window_and_not_before() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 3\nban_window = \"10s\"\nban_time = \"60s\"");
    g.failure(ip(5), FailureKind::WrongPassword, t0);
    g.failure(ip(5), FailureKind::UnknownUser, t0 + Duration::from_secs(1));
    assert!(!g.is_banned(ip(5), t0 + Duration::from_secs(1)));
    g.failure(
        ip(5),
        FailureKind::WrongPassword,
        t0 + Duration::from_secs(2),
    );
    assert!(g.is_banned(ip(5), t0 + Duration::from_secs(2)));
    assert!(
        !g.is_banned(ip(6), t0 + Duration::from_secs(2)),
        "per address"
    );
    let bans = g.view().bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].reason, BanReason::AuthFailures);
    assert_eq!(bans[0].failures, 3);
    assert_eq!(bans[0].until, t0 + Duration::from_secs(62));
    assert_eq!(g.view().bans_total(), 1);
}

#[test]
fn failures_spread_over_more_than_a_window_do_not_ban() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 3\nban_window = \"10s\"");
    for i in 0..10 {
        g.failure(
            ip(5),
            FailureKind::WrongPassword,
            t0 + Duration::from_secs(6 * i),
        );
        g.handle_timeout(t0 + Duration::from_secs(6 * i + 1));
    }
    assert!(!g.is_banned(ip(5), t0 + Duration::from_secs(60)));
}

#[test]
fn stale_and_replayed_nonces_never_ban_but_are_counted() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 2");
    for _ in 0..20 {
        g.failure(ip(5), FailureKind::Stale, t0);
        g.failure(ip(5), FailureKind::Replay, t0);
    }
    assert!(!g.is_banned(ip(5), t0));
    let f = g.view().failures();
    let n = |k| f.iter().find(|(x, _)| *x == k).unwrap().1;
    assert_eq!(n(FailureKind::Stale), 20);
    assert_eq!(n(FailureKind::Replay), 20);
    assert_eq!(n(FailureKind::WrongPassword), 0);
}

#[test]
fn a_ban_ends_on_time_and_a_repeat_offence_doubles_up_to_the_cap() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 1\nban_time = \"10s\"\nban_time_max = \"25s\"");
    let mut now = t0;
    let mut lengths = vec![];
    for _ in 0..4 {
        g.failure(ip(7), FailureKind::UnknownUser, now);
        let b = g.view().bans()[0].clone();
        lengths.push((b.until - b.since).as_secs());
        assert!(g.is_banned(ip(7), b.until - Duration::from_millis(1)));
        assert!(!g.is_banned(ip(7), b.until));
        now = b.until;
        // the sweep ends it and removes it from the view
        while g.poll_timeout().is_some_and(|t| t <= now) {
            g.handle_timeout(now);
        }
        g.handle_timeout(now + Duration::from_secs(1));
        now += Duration::from_secs(1);
        assert!(g.view().bans().is_empty());
    }
    assert_eq!(lengths, vec![10, 20, 25, 25]);
}

#[test]
fn offences_are_forgotten_after_ban_time_max() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 1\nban_time = \"10s\"\nban_time_max = \"30s\"");
    g.failure(ip(7), FailureKind::UnknownUser, t0);
    let later = t0 + Duration::from_secs(10 + 31);
    g.handle_timeout(t0 + Duration::from_secs(11));
    g.handle_timeout(later);
    g.failure(ip(7), FailureKind::UnknownUser, later);
    let b = &g.view().bans()[0];
    assert_eq!(b.offences, 1);
    assert_eq!((b.until - b.since).as_secs(), 10);
}

#[test]
fn exempt_sources_are_never_banned_nor_rate_limited() {
    let t0 = Instant::now();
    let mut g = guard(
        "ban_after = 1\nnever_ban = [\"127.0.0.0/30\"]\nunauthenticated_rate = 1\nunauthenticated_burst = 1",
    );
    for _ in 0..100 {
        g.failure(ip(1), FailureKind::WrongPassword, t0);
        assert!(g.charge(ip(1), t0));
    }
    assert!(!g.is_banned(ip(1), t0));
    assert!(g.screen_user_agent(ip(2), Some("friendly-scanner"), t0));
    assert!(
        !g.is_banned(ip(2), t0),
        "dropped, but an exempt source is not banned"
    );
}

#[test]
fn trunk_allowed_sources_are_exempt() {
    let text = "[sip]\nrealm = \"t\"\n[cdr]\npath = \"/tmp/x.jsonl\"\n[[trunks]]\nname = \"a\"\n\
                auth_username = \"a\"\npassword = \"p\"\nallowed_sources = [\"127.0.0.9/32\"]\n\
                [security]\nban_after = 1\n";
    let mut g = Guard::new(&Config::from_toml(text).unwrap());
    g.failure(ip(9), FailureKind::WrongPassword, Instant::now());
    assert!(!g.is_banned(ip(9), Instant::now()));
}

#[test]
fn the_budget_drops_the_excess_and_refills_at_the_rate() {
    let t0 = Instant::now();
    let mut g = guard("unauthenticated_rate = 10\nunauthenticated_burst = 20");
    let passed = (0..100).filter(|_| g.charge(ip(3), t0)).count();
    assert_eq!(passed, 20);
    let later = t0 + Duration::from_millis(500);
    let passed = (0..100).filter(|_| g.charge(ip(3), later)).count();
    assert_eq!(passed, 5);
    // an authenticated request gives its token back
    g.refund(ip(3));
    assert!(g.charge(ip(3), later));
    assert!(!g.charge(ip(3), later));
    let dropped = g.view().dropped();
    assert_eq!(
        dropped[DropReason::RateLimited as usize].1,
        100 - 20 + 100 - 5 + 1
    );
    assert!(
        g.charge(ip(4), later),
        "other addresses have their own budget"
    );
}

#[test]
fn scanner_user_agents_match_case_insensitively_and_ban() {
    let t0 = Instant::now();
    let mut g = guard("");
    assert!(!g.screen_user_agent(ip(8), Some("Asterisk PBX 20.1"), t0));
    assert!(!g.screen_user_agent(ip(8), None, t0));
    assert!(g.screen_user_agent(ip(8), Some("Friendly-Scanner"), t0));
    assert!(g.is_banned(ip(8), t0));
    assert_eq!(g.view().bans()[0].reason, BanReason::Scanner);
}

#[test]
fn unban_lifts_a_live_ban_and_says_when_there_was_none() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 1");
    g.failure(ip(5), FailureKind::WrongPassword, t0);
    assert!(g.is_banned(ip(5), t0));
    assert!(g.unban(Source::of(ip(5)), t0));
    assert!(!g.is_banned(ip(5), t0));
    assert!(g.view().bans().is_empty());
    assert!(!g.unban(Source::of(ip(5)), t0));
}

#[test]
fn bans_survive_a_reconfiguration() {
    let t0 = Instant::now();
    let mut g = guard("ban_after = 1");
    g.failure(ip(5), FailureKind::WrongPassword, t0);
    g.reconfigure(&config("ban_after = 5\nban_time = \"2h\""));
    assert!(g.is_banned(ip(5), t0 + Duration::from_secs(10)));
}

#[test]
fn memory_is_bounded_by_max_tracked_addresses() {
    let t0 = Instant::now();
    let mut g = guard("max_tracked_addresses = 16\nban_after = 1");
    for i in 0..1000u32 {
        let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        g.charge(a, t0);
        g.failure(a, FailureKind::UnknownUser, t0);
    }
    assert!(g.activity.len() <= 16);
    assert!(g.bans.len() <= 16);
}

#[test]
fn ipv6_sources_are_judged_by_their_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(c));
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    assert_eq!("2001:db8:1:2::/64".parse::<Source>(), Ok(Source::of(a)));
    let mapped: IpAddr = "::ffff:127.0.0.5".parse().unwrap();
    assert_eq!(Source::of(mapped), Source::of(ip(5)));
    assert!("nonsense".parse::<Source>().is_err());
}

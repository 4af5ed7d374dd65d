//! Unit tests of `sip::nonce`.

use super::*;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr};

const SECRET: [u8; 32] = [7; 32];
const LIFE: Duration = Duration::from_secs(300);

fn ip4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
}

fn ip6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
}

fn setup() -> (Instant, NonceFactory) {
    let base = Instant::now();
    (base, NonceFactory::with_secret(base, LIFE, SECRET))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn fresh_nonce_is_valid_and_well_formed() {
    let (base, f) = setup();
    let now = base + secs(10);
    for ip in [ip4(), ip6()] {
        let n = f.issue(now, ip);
        assert_eq!(n.len(), ENCODED_LEN);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(f.check(&n, now, ip), NonceStatus::Valid);
        assert_eq!(f.check(&n, now + LIFE, ip), NonceStatus::Valid);
    }
    assert_eq!(f.lifetime(), LIFE);
}

#[test]
fn nonces_issued_in_the_same_millisecond_differ() {
    let (base, f) = setup();
    let now = base + secs(3);
    let a = f.issue(now, ip4());
    let b = f.issue(now, ip4());
    assert_ne!(a, b, "a fresh challenge must never repeat a nonce");
    assert_eq!(f.check(&a, now, ip4()), NonceStatus::Valid);
    assert_eq!(f.check(&b, now, ip4()), NonceStatus::Valid);
}

#[test]
fn nonce_goes_stale_after_lifetime() {
    let (base, f) = setup();
    let n = f.issue(base + secs(5), ip4());
    let edge = base + secs(5) + LIFE;
    assert_eq!(f.check(&n, edge, ip4()), NonceStatus::Valid);
    assert_eq!(
        f.check(&n, edge + Duration::from_millis(1), ip4()),
        NonceStatus::Stale
    );
    assert_eq!(f.check(&n, edge + secs(86_400), ip4()), NonceStatus::Stale);
}

#[test]
fn tampered_nonce_is_invalid() {
    let (base, f) = setup();
    let now = base + secs(1);
    let n = f.issue(now, ip4());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..n.len() {
        let mut b = n.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(b).unwrap();
        assert_eq!(f.check(&t, now, ip4()), NonceStatus::Invalid, "byte {i}");
    }
    // Every possible last character other than the real one.
    for &c in alphabet {
        let mut b = n.clone().into_bytes();
        if b[ENCODED_LEN - 1] == c {
            continue;
        }
        b[ENCODED_LEN - 1] = c;
        let t = String::from_utf8(b).unwrap();
        assert_eq!(f.check(&t, now, ip4()), NonceStatus::Invalid);
    }
}

#[test]
fn timestamp_cannot_be_moved() {
    let (base, f) = setup();
    let old = f.issue(base + secs(1), ip4());
    let (_, salt, tag) = decode(&old).unwrap();
    let now = base + secs(1) + LIFE * 2;
    let fresh_stamp = f.stamp_of(now);
    let mut raw = [0u8; RAW_LEN];
    raw[..STAMP_LEN].copy_from_slice(&fresh_stamp.to_be_bytes());
    raw[STAMP_LEN..STAMP_LEN + SALT_LEN].copy_from_slice(&salt);
    raw[STAMP_LEN + SALT_LEN..].copy_from_slice(&tag);
    let forged = URL_SAFE_NO_PAD.encode(raw);
    assert_eq!(f.check(&forged, now, ip4()), NonceStatus::Invalid);
    assert_eq!(f.check(&old, now, ip4()), NonceStatus::Stale);
}

#[test]
fn other_client_ip_is_invalid() {
    let (base, f) = setup();
    let now = base + secs(1);
    let n = f.issue(now, ip4());
    assert_eq!(
        f.check(&n, now, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))),
        NonceStatus::Invalid
    );
    assert_eq!(f.check(&n, now, ip6()), NonceStatus::Invalid);
    let n6 = f.issue(now, ip6());
    assert_eq!(f.check(&n6, now, ip4()), NonceStatus::Invalid);
}

#[test]
fn ipv4_mapped_ipv6_is_the_same_client() {
    let (base, f) = setup();
    let now = base + secs(1);
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped());
    let n = f.issue(now, ip4());
    assert_eq!(f.check(&n, now, mapped), NonceStatus::Valid);
    let m = f.issue(now, mapped);
    assert_eq!(f.check(&m, now, ip4()), NonceStatus::Valid);
}

#[test]
fn future_dated_is_invalid() {
    let (base, f) = setup();
    let n = f.issue(base + secs(100), ip4());
    assert_eq!(f.check(&n, base + secs(99), ip4()), NonceStatus::Invalid);
    assert_eq!(f.check(&n, base, ip4()), NonceStatus::Invalid);
    assert_eq!(f.check(&n, base + secs(100), ip4()), NonceStatus::Valid);
}

#[test]
fn other_secret_or_epoch_is_invalid() {
    let (base, f) = setup();
    let now = base + secs(1);
    let n = f.issue(now, ip4());
    let g = NonceFactory::with_secret(base, LIFE, [8; 32]);
    assert_eq!(g.check(&n, now, ip4()), NonceStatus::Invalid);
    let r = NonceFactory::new(base, LIFE);
    assert_eq!(r.check(&n, now, ip4()), NonceStatus::Invalid);
    let r2 = NonceFactory::new(base, LIFE);
    assert_ne!(r.issue(now, ip4()), r2.issue(now, ip4()));
    assert_eq!(
        r.check(&r.issue(now, ip4()), now, ip4()),
        NonceStatus::Valid
    );
}

#[test]
fn issue_before_epoch_is_clamped() {
    let base = Instant::now() + secs(10);
    let f = NonceFactory::with_secret(base, LIFE, SECRET);
    let n = f.issue(base - secs(5), ip4());
    assert_eq!(f.valid_until(&n), Some(base + LIFE));
    assert_eq!(f.check(&n, base, ip4()), NonceStatus::Valid);
}

#[test]
fn valid_until_matches_issue_time() {
    let (base, f) = setup();
    let at = base + Duration::from_millis(12_345);
    let n = f.issue(at, ip4());
    assert_eq!(f.valid_until(&n), Some(at + LIFE));
    assert_eq!(f.valid_until(""), None);
    assert_eq!(f.valid_until("not a nonce"), None);
    assert_eq!(f.valid_until(&"!".repeat(ENCODED_LEN)), None);
    // Extreme stamps and lifetimes must not panic in Instant arithmetic.
    let huge = URL_SAFE_NO_PAD.encode([0xffu8; RAW_LEN]);
    let _ = f.valid_until(&huge);
    let forever = NonceFactory::with_secret(base, Duration::MAX, SECRET);
    assert_eq!(forever.valid_until(&huge), None);
    assert_eq!(forever.valid_until(&n), None);
    assert_eq!(
        forever.check(&n, at + secs(1_000_000), ip4()),
        NonceStatus::Valid
    );
}

#[test]
fn garbage_never_panics_and_is_invalid() {
    let (base, f) = setup();
    let now = base + secs(1);
    let good = f.issue(now, ip4());
    let mut inputs: Vec<String> = vec![
        String::new(),
        "=".repeat(ENCODED_LEN),
        format!("{good}="),
        format!("{good}A"),
        good[1..].to_string(),
        good.replace('-', "+").replace('_', "/") + "x",
        URL_SAFE_NO_PAD.encode([0u8; RAW_LEN]),
        URL_SAFE_NO_PAD.encode([0xffu8; RAW_LEN]),
        "é".repeat(ENCODED_LEN / 2),
        "\0".repeat(ENCODED_LEN),
        "a".repeat(1 << 16),
    ];
    for i in 0..good.len() {
        inputs.push(good[..i].to_string());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..5_000 {
        let len = if rng.gen_bool(0.5) {
            ENCODED_LEN
        } else {
            rng.gen_range(0..64)
        };
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        let b64: String = (0..ENCODED_LEN)
            .map(|_| {
                let a = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                a[rng.gen_range(0..a.len())] as char
            })
            .collect();
        inputs.push(b64);
    }
    for s in &inputs {
        assert_eq!(f.check(s, now, ip4()), NonceStatus::Invalid, "{s:?}");
        let _ = f.valid_until(s);
    }
}

#[test]
fn shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NonceFactory>();
    assert_send_sync::<NcTracker>();
}

#[test]
fn debug_hides_secret() {
    let (_, f) = setup();
    let s = format!("{f:?}");
    assert!(s.contains("NonceFactory"));
    assert!(!s.contains("mac"));
}

#[test]
fn nc_increasing_accepted_equal_or_lower_refused() {
    let base = Instant::now();
    let until = base + LIFE;
    let mut t = NcTracker::new(16);
    assert!(t.is_empty());
    assert!(t.accept("n1", 1, base, until));
    assert!(!t.accept("n1", 1, base, until));
    assert!(t.accept("n1", 2, base, until));
    assert!(t.accept("n1", 10, base, until));
    assert!(!t.accept("n1", 9, base, until));
    assert!(!t.accept("n1", 10, base, until));
    assert!(!t.accept("n1", 0, base, until));
    assert!(t.accept("n1", u32::MAX, base, until));
    assert!(!t.accept("n1", u32::MAX, base, until));
    // Counters are per nonce.
    assert!(t.accept("n2", 1, base, until));
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
}

#[test]
fn nc_entries_expire_and_are_purged() {
    let base = Instant::now();
    let mut t = NcTracker::new(16);
    assert!(t.accept("a", 1, base, base + secs(10)));
    assert!(t.accept("b", 1, base, base + secs(20)));
    assert!(t.accept("c", 1, base, base + secs(30)));
    assert_eq!(t.len(), 3);

    // Still valid exactly at valid_until.
    assert!(t.accept("a", 2, base + secs(10), base + secs(10)));
    assert_eq!(t.len(), 3);

    // Just past "a": it is purged and cannot be used again.
    let later = base + secs(10) + Duration::from_millis(1);
    assert!(!t.accept("a", 3, later, base + secs(10)));
    assert_eq!(t.len(), 2);

    // Past everything: all purged on the next call.
    assert!(t.accept("d", 1, base + secs(31), base + secs(100)));
    assert_eq!(t.len(), 1);
}

#[test]
fn nc_capacity_bound_holds_and_evicts_oldest() {
    let base = Instant::now();
    let cap = 8;
    let mut t = NcTracker::new(cap);
    for i in 0..100u64 {
        let name = format!("n{i}");
        assert!(t.accept(&name, 1, base, base + secs(100 + i)));
        assert!(t.len() <= cap);
    }
    assert_eq!(t.len(), cap);
    assert_eq!(t.by_expiry.len(), cap);
    // The newest survive and still track their counters.
    for i in 92..100u64 {
        assert!(!t.accept(&format!("n{i}"), 1, base, base + secs(100 + i)));
        assert!(t.accept(&format!("n{i}"), 2, base, base + secs(100 + i)));
    }
    // Evicted ones are refused on their next use, even with a higher nc.
    for i in 0..92u64 {
        assert!(!t.accept(&format!("n{i}"), 5, base, base + secs(100 + i)));
    }
    assert_eq!(t.len(), cap);
}

#[test]
fn nc_newcomer_older_than_everything_when_full_is_refused() {
    let base = Instant::now();
    let mut t = NcTracker::new(2);
    assert!(t.accept("x", 1, base, base + secs(50)));
    assert!(t.accept("y", 1, base, base + secs(60)));
    assert!(!t.accept("old", 1, base, base + secs(40)));
    assert_eq!(t.len(), 2);
    assert!(t.accept("x", 2, base, base + secs(50)));
    assert!(t.accept("y", 2, base, base + secs(60)));
    // A fresher nonce still gets in, pushing out "x".
    assert!(t.accept("z", 1, base, base + secs(70)));
    assert!(!t.accept("x", 3, base, base + secs(50)));
}

#[test]
fn nc_already_expired_nonce_is_refused_and_not_stored() {
    let base = Instant::now();
    let mut t = NcTracker::new(4);
    assert!(!t.accept("late", 1, base + secs(10), base + secs(9)));
    assert!(t.is_empty());
}

#[test]
fn nc_zero_capacity_is_clamped_to_one() {
    let base = Instant::now();
    let mut t = NcTracker::new(0);
    assert!(t.accept("a", 1, base, base + secs(10)));
    assert!(t.accept("a", 2, base, base + secs(10)));
    assert_eq!(t.len(), 1);
}

#[test]
fn factory_and_tracker_together() {
    let (base, f) = setup();
    let mut t = NcTracker::new(1024);
    let now = base + secs(3);
    let n = f.issue(now, ip4());
    let until = f.valid_until(&n).unwrap();
    for nc in 1..=5 {
        let at = now + secs(nc.into());
        assert_eq!(f.check(&n, at, ip4()), NonceStatus::Valid);
        assert!(t.accept(&n, nc, at, until));
        assert!(!t.accept(&n, nc, at, until), "replay of nc {nc}");
    }
    let after = until + Duration::from_millis(1);
    assert_eq!(f.check(&n, after, ip4()), NonceStatus::Stale);
    assert!(!t.accept(&n, 6, after, until));
    assert!(t.is_empty());
}

#[test]
fn nc_tracker_scales_without_quadratic_cost() {
    // 200k distinct nonces through a small tracker with rolling expiry: would take far too
    // long if eviction scanned the table.
    let base = Instant::now();
    let mut t = NcTracker::new(1000);
    for i in 0..200_000u64 {
        let now = base + Duration::from_millis(i);
        let until = now + Duration::from_millis(5_000);
        assert!(t.accept(&i.to_string(), 1, now, until));
        assert!(t.len() <= 1000);
    }
}

#[test]
fn instances_sharing_the_secret_verify_each_others_nonces_on_the_wall_clock() {
    let a = NonceFactory::with_secret(Instant::now(), LIFE, SECRET);
    std::thread::sleep(Duration::from_millis(20));
    let b = NonceFactory::with_secret(Instant::now(), LIFE, SECRET);
    let now = Instant::now();
    let n = a.issue(now, ip4());
    assert_eq!(b.check(&n, now, ip4()), NonceStatus::Valid);
    assert_eq!(b.check(&n, now + LIFE + secs(1), ip4()), NonceStatus::Stale);
    let (ua, ub) = (a.valid_until(&n).unwrap(), b.valid_until(&n).unwrap());
    let apart = if ua > ub { ua - ub } else { ub - ua };
    assert!(apart < Duration::from_millis(50), "{apart:?}");
    // Stamped by a clock a little ahead: taken; far ahead: refused.
    let ahead = a.issue(now + Duration::from_millis(400), ip4());
    assert_eq!(b.check(&ahead, now, ip4()), NonceStatus::Valid);
    let far = a.issue(now + secs(5), ip4());
    assert_eq!(b.check(&far, now, ip4()), NonceStatus::Invalid);
    // Another secret: nothing.
    let c = NonceFactory::with_secret(Instant::now(), LIFE, [9; 32]);
    assert_eq!(c.check(&n, now, ip4()), NonceStatus::Invalid);
}

/// How far apart two instants are, either way round.
fn apart(a: Instant, b: Instant) -> Duration {
    a.max(b) - a.min(b)
}

#[test]
fn another_instance_s_nonce_ends_when_its_stamp_says_even_from_before_we_started() {
    let issued = Instant::now();
    let a = NonceFactory::with_secret(issued, LIFE, SECRET);
    let n = a.issue(issued, ip4());
    std::thread::sleep(Duration::from_millis(20));
    let b = NonceFactory::with_secret(Instant::now(), LIFE, SECRET);
    // b's clock reads the stamp as the same wall time: it ends LIFE after it was issued
    let until = b.valid_until(&n).unwrap();
    assert!(
        apart(until, issued + LIFE) < Duration::from_millis(50),
        "{until:?}"
    );
    // the skew allowance ends at 500 ms
    let ahead = a.issue(issued + Duration::from_millis(700), ip4());
    assert_eq!(b.check(&ahead, issued, ip4()), NonceStatus::Invalid);

    // A nonce whose whole life was over before this instance started.
    let short = Duration::from_millis(5);
    let a = NonceFactory::with_secret(issued, short, SECRET);
    let n = a.issue(issued, ip4());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let c = NonceFactory::with_secret(started, short, SECRET);
    let until = c.valid_until(&n).unwrap();
    assert!(until < started);
    assert!(
        apart(until, issued + short) < Duration::from_millis(50),
        "{until:?}"
    );
    assert_eq!(c.check(&n, started, ip4()), NonceStatus::Stale);
}

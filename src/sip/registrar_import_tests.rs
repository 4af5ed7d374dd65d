//! Taking another instance's view of a trunk's registration: only a newer one, bindings already
//! over left out, the remaining time read off the wall clock and capped by our own limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::tests::limits;
use super::*;

const TRUNK: &str = "t";

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn binding(uri: &str, expires: SystemTime) -> SharedBinding {
    let proxy: SocketAddr = "127.0.0.9:5060".parse().unwrap();
    SharedBinding {
        uri: uri.into(),
        path: vec!["<sip:127.0.0.9:5060;lr>".into()],
        source: proxy,
        pbx: "198.51.100.20:40000".parse().unwrap(),
        call_id: "reg@pbx".into(),
        cseq: 7,
        expires_unix_ms: unix_ms(expires),
    }
}

fn shared(updated: SystemTime, bindings: Vec<SharedBinding>) -> SharedRegistration {
    SharedRegistration {
        trunk: TRUNK.into(),
        node: "b".into(),
        updated_unix_ms: unix_ms(updated),
        bindings,
    }
}

fn uris(r: &Registrar) -> Vec<&str> {
    r.bindings(TRUNK).iter().map(|b| b.uri.as_str()).collect()
}

#[test]
fn only_a_newer_registration_replaces_ours() {
    let now = Instant::now();
    let mut r = Registrar::new(limits(), Registrations::default());
    let secs = Duration::from_secs;
    let first = shared(
        wall(),
        vec![binding("sip:pbx@10.1.1.5;rinstance=a", wall() + secs(100))],
    );
    assert!(r.import(&first, now, wall()));
    assert_eq!(uris(&r), ["sip:pbx@10.1.1.5;rinstance=a"]);

    let other = |updated| {
        shared(
            updated,
            vec![binding("sip:pbx@10.1.1.5;rinstance=b", wall() + secs(100))],
        )
    };
    assert!(!r.import(&other(wall() - Duration::from_millis(1)), now, wall()));
    assert!(!r.import(&other(wall()), now, wall()));
    assert_eq!(uris(&r), ["sip:pbx@10.1.1.5;rinstance=a"]);
    assert!(r.import(&other(wall() + Duration::from_millis(1)), now, wall()));
    assert_eq!(uris(&r), ["sip:pbx@10.1.1.5;rinstance=b"]);
    assert!(r.view().get(TRUNK).is_registered());
}

#[test]
fn the_remaining_time_comes_from_the_wall_clock_and_our_limits() {
    let now = Instant::now();
    let mut r = Registrar::new(limits(), Registrations::default());
    let secs = Duration::from_secs;
    // written 30 s ago elsewhere: 100 s then, 70 s left now
    let reg = shared(
        wall() - secs(30),
        vec![
            binding("sip:pbx@10.1.1.5;rinstance=over", wall()),
            binding("sip:pbx@10.1.1.5;rinstance=live", wall() + secs(70)),
            binding("sip:pbx@10.1.1.6;rinstance=long", wall() + secs(100_000)),
        ],
    );
    assert!(r.import(&reg, now, wall()));
    let b = r.bindings(TRUNK);
    assert_eq!(
        uris(&r),
        [
            "sip:pbx@10.1.1.5;rinstance=live",
            "sip:pbx@10.1.1.6;rinstance=long"
        ]
    );
    assert_eq!(
        (b[0].expires_at, b[0].expires_at_wall),
        (now + secs(70), wall() + secs(70))
    );
    // never longer than we would grant ourselves (max_expires)
    assert_eq!(b[1].expires_at, now + secs(3600));
    assert_eq!(
        (b[0].pbx, b[0].path.clone()),
        (reg.bindings[1].pbx, reg.bindings[1].path.clone())
    );
    assert_eq!(b[0].next_hop(), "127.0.0.9:5060".parse().unwrap());
    // what we share again is what we took (the capped expiry aside)
    let again = r.shared(TRUNK, "b");
    assert_eq!(
        (again.updated_unix_ms, &again.bindings[0]),
        (reg.updated_unix_ms, &reg.bindings[1])
    );
    assert_eq!(r.poll_timeout(), Some(now + secs(70)));

    // a registration whose every binding is over unregisters the trunk
    let gone = shared(
        wall(),
        vec![binding("sip:pbx@10.1.1.5;rinstance=live", wall() - secs(1))],
    );
    assert!(r.import(&gone, now, wall()));
    assert!(!r.view().get(TRUNK).is_registered());
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn over_our_contact_limit_the_most_recently_refreshed_bindings_are_taken() {
    let now = Instant::now();
    let mut r = Registrar::new(limits(), Registrations::default());
    let secs = Duration::from_secs;
    let reg = shared(
        wall(),
        vec![
            binding("sip:pbx@10.1.1.5;rinstance=old", wall() + secs(60)),
            binding("sip:pbx@10.1.1.5;rinstance=new", wall() + secs(600)),
            binding("sip:pbx@10.1.1.5;rinstance=mid", wall() + secs(300)),
        ],
    );
    assert!(r.import(&reg, now, wall()));
    assert_eq!(
        uris(&r),
        [
            "sip:pbx@10.1.1.5;rinstance=new",
            "sip:pbx@10.1.1.5;rinstance=mid"
        ]
    );
}

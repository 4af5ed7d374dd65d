//! Two cluster handles on one real `redis-server` (started here on 127.0.0.1 and a free port):
//! what one instance shares reaches the other, nonce counts and call counts hold across them,
//! and an outage is served through and caught up after.

use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::*;
use crate::config::Secret;
use crate::sip::shared::{SharedBinding, SharedRegistration};

struct Redis {
    child: Child,
}

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        Redis { child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(port: u16) -> ClusterConfig {
    ClusterConfig {
        redis: Some(Secret::new(format!("redis://127.0.0.1:{port}"))),
        secret: Some(Secret::new("a test secret of some length")),
        key_prefix: format!("test{port}"),
        ..ClusterConfig::default()
    }
}

struct Node {
    cluster: Cluster,
    facts: mpsc::UnboundedSender<SharedFact>,
    imports: mpsc::UnboundedReceiver<Control>,
}

fn node(cfg: &ClusterConfig, name: &str) -> Node {
    let (facts, facts_rx) = mpsc::unbounded_channel();
    let (imports_tx, imports) = mpsc::unbounded_channel();
    let cluster = Cluster::start(cfg, name, imports_tx, facts_rx)
        .expect("config")
        .expect("redis configured");
    Node {
        cluster,
        facts,
        imports,
    }
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

/// The next import, within a bounded time.
async fn next_import(n: &mut Node) -> SharedFact {
    match tokio::time::timeout(Duration::from_secs(10), n.imports.recv()).await {
        Ok(Some(Control::Import(f))) => f,
        other => panic!("no import: {other:?}"),
    }
}

fn registration(trunk: &str, node: &str) -> SharedRegistration {
    let now = unix_ms(SystemTime::now());
    let a = "127.0.0.1:5060".parse().unwrap();
    SharedRegistration {
        trunk: trunk.into(),
        node: node.into(),
        updated_unix_ms: now,
        bindings: vec![SharedBinding {
            uri: "sip:pbx@127.0.0.4:5060;rinstance=abc".into(),
            path: vec!["<sip:127.0.0.1:5060;lr>".into()],
            source: a,
            pbx: "127.0.0.4:5060".parse().unwrap(),
            call_id: "reg-1".into(),
            cseq: 2,
            expires_unix_ms: now + 60_000,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_instance_shares_the_other_takes_and_counts_hold_across_both() {
    let port = free_port();
    let _redis = Redis::start(port);
    let cfg = config(port);
    let mut a = node(&cfg, "a");
    let mut b = node(&cfg, "b");
    eventually("both linked", || {
        a.cluster.status().redis_up && b.cluster.status().redis_up
    })
    .await;

    let reg = registration("pbx", "a");
    a.facts.send(SharedFact::Registration(reg.clone())).unwrap();
    assert_eq!(next_import(&mut b).await, SharedFact::Registration(reg));
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let until_unix_ms = unix_ms(SystemTime::now()) + 60_000;
    b.facts.send(SharedFact::Ban { ip, until_unix_ms }).unwrap();
    assert_eq!(
        next_import(&mut a).await,
        SharedFact::Ban { ip, until_unix_ms }
    );

    let used = NonceUse {
        nonce: "n0nce".into(),
        nc: 1,
        valid_until_unix_ms: unix_ms(SystemTime::now()) + 60_000,
    };
    assert_eq!(a.cluster.claim_nonce(&used).await, Claim::Fresh);
    assert_eq!(
        b.cluster.claim_nonce(&used).await,
        Claim::Replayed,
        "{:?}",
        b.cluster.status().last_error
    );
    assert_eq!(a.cluster.claim_nonce(&used).await, Claim::Replayed);
    let next = NonceUse { nc: 2, ..used };
    assert_eq!(b.cluster.claim_nonce(&next).await, Claim::Fresh);
    assert_eq!(b.cluster.status().replays_refused, 1);

    assert_eq!(
        a.cluster.acquire_call("pbx", "1", Some(1)).await,
        Slot::Granted
    );
    assert_eq!(
        b.cluster.acquire_call("pbx", "2", Some(1)).await,
        Slot::Full
    );
    // another trunk, and an emergency call (no limit), are not held up
    assert_eq!(
        b.cluster.acquire_call("other", "3", Some(1)).await,
        Slot::Granted
    );
    assert_eq!(
        b.cluster.acquire_call("pbx", "4", None).await,
        Slot::Granted
    );
    b.cluster.release_call("pbx", "4");
    a.cluster.release_call("pbx", "1");
    let mut granted = false;
    for _ in 0..100 {
        if b.cluster.acquire_call("pbx", "2", Some(1)).await == Slot::Granted {
            granted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(granted, "the released call still counted");
    assert_eq!(b.cluster.status().counted_calls, 2);
    b.cluster.stop().await;
    assert_eq!(
        a.cluster.acquire_call("pbx", "5", Some(1)).await,
        Slot::Granted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_served_through_and_caught_up_after() {
    let port = free_port();
    let mut redis = Redis::start(port);
    let mut cfg = config(port);
    cfg.call_lease = Duration::from_secs(3);
    let a = node(&cfg, "a");
    let mut b = node(&cfg, "b");
    eventually("both linked", || {
        a.cluster.status().redis_up && b.cluster.status().redis_up
    })
    .await;
    assert_eq!(
        a.cluster.acquire_call("pbx", "1", Some(1)).await,
        Slot::Granted
    );

    drop(redis);
    eventually("the outage seen", || {
        !a.cluster.status().redis_up && !b.cluster.status().redis_up
    })
    .await;
    let used = NonceUse {
        nonce: "n".into(),
        nc: 1,
        valid_until_unix_ms: unix_ms(SystemTime::now()) + 60_000,
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), a.cluster.claim_nonce(&used));
    assert_eq!(answer.await.expect("bounded"), Claim::Unknown);
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        b.cluster.acquire_call("pbx", "2", Some(1)),
    );
    assert_eq!(answer.await.expect("bounded"), Slot::Unknown);
    assert!(a.cluster.status().last_error.is_some());
    // Shared while Redis is away: kept, and written when it is back.
    let reg = registration("pbx", "a");
    a.facts.send(SharedFact::Registration(reg.clone())).unwrap();

    redis = Redis::start(port);
    eventually("both linked again", || {
        a.cluster.status().redis_up && b.cluster.status().redis_up
    })
    .await;
    // b took it in: by the event, or by its own catch-up if it linked after a's write
    let mut got = false;
    for _ in 0..3 {
        if next_import(&mut b).await == SharedFact::Registration(reg.clone()) {
            got = true;
            break;
        }
    }
    assert!(
        got,
        "the registration made during the outage did not reach b"
    );
    // Both instances' calls count again (b's, counted while away, too): the trunk is full.
    assert_eq!(
        a.cluster.acquire_call("pbx", "3", Some(2)).await,
        Slot::Full
    );
    drop(redis);
}

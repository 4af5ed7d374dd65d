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
        Redis::start_with(port, &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
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

/// Whether `fact` comes within the next few imports (a catch-up may bring others first).
async fn receives(n: &mut Node, fact: &SharedFact) -> bool {
    for _ in 0..3 {
        if next_import(n).await == *fact {
            return true;
        }
    }
    false
}

/// Waits (bounded) until every node is linked.
async fn linked(what: &str, nodes: &[&Node]) {
    eventually(what, || nodes.iter().all(|n| n.cluster.status().redis_up)).await;
}

/// The first use of a nonce valid for another minute.
fn first_use(nonce: &str) -> NonceUse {
    NonceUse {
        nonce: nonce.into(),
        nc: 1,
        valid_until_unix_ms: unix_ms(SystemTime::now()) + 60_000,
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
    linked("both linked", &[&a, &b]).await;

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

    let used = first_use("n0nce");
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
    linked("both linked", &[&a, &b]).await;
    assert_eq!(
        a.cluster.acquire_call("pbx", "1", Some(1)).await,
        Slot::Granted
    );

    drop(redis);
    eventually("the outage seen", || {
        !a.cluster.status().redis_up && !b.cluster.status().redis_up
    })
    .await;
    let used = first_use("n");
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
    linked("both linked again", &[&a, &b]).await;
    // b took it in: by the event, or by its own catch-up if it linked after a's write
    assert!(
        receives(&mut b, &SharedFact::Registration(reg.clone())).await,
        "the registration made during the outage did not reach b"
    );
    // Both instances' calls count again (b's, counted while away, too): the trunk is full.
    assert_eq!(
        a.cluster.acquire_call("pbx", "3", Some(2)).await,
        Slot::Full
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_from_the_start_is_said_without_the_url_and_joined_when_it_comes() {
    let port = free_port();
    let mut cfg = config(port);
    cfg.redis = Some(Secret::new(format!("redis://:s3cret-pw@127.0.0.1:{port}")));
    let a = node(&cfg, "a");
    eventually("the failure seen", || {
        a.cluster.status().last_error.is_some()
    })
    .await;
    let status = a.cluster.status();
    assert!(!status.redis_up);
    let error = status.last_error.unwrap_or_default();
    assert!(
        !error.contains("s3cret") && !error.contains(&port.to_string()),
        "{error}"
    );
    let used = first_use("n");
    let answer = tokio::time::timeout(Duration::from_millis(500), a.cluster.claim_nonce(&used));
    assert_eq!(answer.await.expect("at once"), Claim::Unknown);

    let _redis = Redis::start_with(port, &["--requirepass", "s3cret-pw"]);
    eventually("linked once Redis is there", || a.cluster.status().redis_up).await;
    assert_eq!(a.cluster.claim_nonce(&used).await, Claim::Fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_not_renewed_lapses_and_a_renewed_one_holds() {
    let port = free_port();
    let _redis = Redis::start(port);
    let mut cfg = config(port);
    cfg.call_lease = Duration::from_millis(1_500);
    let a = node(&cfg, "a");
    let b = node(&cfg, "b");
    let killed = node(&cfg, "killed");
    linked("all linked", &[&a, &b, &killed]).await;
    assert_eq!(
        a.cluster.acquire_call("pbx", "1", Some(2)).await,
        Slot::Granted
    );
    assert_eq!(
        killed.cluster.acquire_call("pbx", "2", Some(2)).await,
        Slot::Granted
    );
    assert_eq!(
        b.cluster.acquire_call("pbx", "3", Some(2)).await,
        Slot::Full
    );
    // As kill -9 leaves it: nothing renews the lease, nothing releases the call.
    if let Some(task) = lock(&killed.cluster.inner.task).take() {
        task.abort();
    }
    // Two leases on, a's call (renewed) still counts and the killed instance's does not.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(
        b.cluster.acquire_call("pbx", "3", Some(2)).await,
        Slot::Granted
    );
    assert_eq!(
        b.cluster.acquire_call("pbx", "4", Some(2)).await,
        Slot::Full
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_content_under_the_prefix_is_skipped_or_replaced_and_the_link_stands() {
    let port = free_port();
    let _redis = Redis::start(port);
    let cfg = config(port);
    let p = cfg.key_prefix.clone();
    let mut raw = loop {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        match client.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let good_until = unix_ms(SystemTime::now()) + 60_000;
    let mut put = redis::pipe();
    put.set(format!("{p}:reg:junk"), "not a hash")
        .hset(format!("{p}:reg:badjson"), "data", "{")
        .hset(format!("{p}:reg:binary"), "data", &[0xff_u8, 0xfe][..])
        .set(format!("{p}:ban:198.51.100.9"), "soon")
        .rpush(format!("{p}:ban:198.51.100.10"), "a list")
        .set(format!("{p}:ban:not-an-ip"), "5")
        .set(&[b't', 0xff][..], "a key name that is no text")
        .set(format!("{p}:ban:192.0.2.1"), good_until)
        .set(format!("{p}:nonce:n"), "not a set")
        .set(format!("{p}:calls:pbx"), "not a zset");
    let () = put.query_async(&mut raw).await.expect("garbage written");

    let mut a = node(&cfg, "a");
    let b = node(&cfg, "b");
    linked("both linked", &[&a, &b]).await;
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let good = SharedFact::Ban {
        ip,
        until_unix_ms: good_until,
    };
    assert_eq!(next_import(&mut a).await, good);

    for junk in ["", "b", "b reg", "b ban nope", "\u{0}"] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{p}:events"))
            .arg(junk)
            .query_async(&mut raw)
            .await
            .expect("published");
    }
    let used = first_use("n");
    assert_eq!(a.cluster.claim_nonce(&used).await, Claim::Fresh);
    assert_eq!(b.cluster.claim_nonce(&used).await, Claim::Replayed);
    assert_eq!(
        a.cluster.acquire_call("pbx", "1", Some(1)).await,
        Slot::Granted
    );
    assert_eq!(
        b.cluster.acquire_call("pbx", "2", Some(1)).await,
        Slot::Full
    );
    let reg = registration("junk", "b");
    b.facts.send(SharedFact::Registration(reg.clone())).unwrap();
    // b's catch-up may have imported the good ban first.
    assert!(
        receives(&mut a, &SharedFact::Registration(reg.clone())).await,
        "the registration over a foreign key did not reach a"
    );
    for n in [&a, &b] {
        let s = n.cluster.status();
        assert!(s.redis_up && s.last_error.is_none(), "{:?}", s.last_error);
    }
}

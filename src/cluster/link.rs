//! The link to Redis: connects (with backoff), catches up on every (re)connection, then writes
//! the SIP core's facts, turns the other instances' events into imports and renews this
//! instance's call leases, until Redis goes away or the daemon stops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncCommands, RedisResult};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::debug;

use super::keys::Event;
use super::outbox::Outbox;
use super::{is_content, lock, now_ms, scripts, Inner, OP_TIMEOUT};
use crate::sip::shared::{SharedFact, SharedRegistration};
use crate::sip::transport::Control;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A registration's key outlives its last binding by this, so an older write cannot undo it.
const REGISTRATION_MARGIN_MS: u64 = 3_600_000;

/// Why serving stopped.
enum Ended {
    Stop,
    Down(String),
    /// A call's request failed and said why already.
    Failed,
}

pub(super) async fn run(
    inner: Arc<Inner>,
    mut facts: mpsc::UnboundedReceiver<SharedFact>,
    imports: mpsc::UnboundedSender<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outbox = Outbox::default();
    let mut backoff = BACKOFF_MIN;
    loop {
        match timeout(CONNECT_TIMEOUT, connect(&inner)).await {
            Ok(Ok((mut con, stream))) => {
                backoff = BACKOFF_MIN;
                match timeout(
                    Duration::from_secs(10),
                    catch_up(&inner, &mut con, &imports, &mut outbox),
                )
                .await
                {
                    Ok(Ok((imported, written))) => {
                        inner.up(con.clone(), imported, written);
                        let ended = serve(
                            &inner,
                            con,
                            stream,
                            (&mut facts, &imports),
                            &mut outbox,
                            &mut stop,
                        )
                        .await;
                        match ended {
                            Ended::Stop => return,
                            Ended::Down(e) => inner.down(&e),
                            Ended::Failed => {}
                        }
                    }
                    Ok(Err(e)) => inner.down(&e.to_string()),
                    Err(_) => inner.down("catching up timed out"),
                }
            }
            Ok(Err(e)) => inner.down(&e.to_string()),
            Err(_) => inner.down("connecting timed out"),
        }
        // Away: keep what the core shares until Redis is back.
        let until = Instant::now() + backoff;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        loop {
            tokio::select! {
                f = facts.recv() => match f {
                    Some(f) => outbox.push(f),
                    None => return,
                },
                () = sleep_until(until) => break,
                _ = stop.changed() => return,
            }
        }
    }
}

async fn connect(inner: &Inner) -> RedisResult<(MultiplexedConnection, PubSubStream)> {
    let con = inner.client.get_multiplexed_async_connection().await?;
    let mut pubsub = inner.client.get_async_pubsub().await?;
    pubsub.subscribe(inner.keys.events()).await?;
    Ok((con, pubsub.into_on_message()))
}

/// Takes in what the other instances wrote, writes what this one kept, counts its live calls
/// again. Returns (imported, written).
async fn catch_up(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    imports: &mpsc::UnboundedSender<Control>,
    outbox: &mut Outbox,
) -> RedisResult<(u64, u64)> {
    let mut imported = 0;
    for key in scan(con, &inner.keys.registrations()).await? {
        if let Some(reg) = read_registration(con, &key).await? {
            if reg.node != inner.node {
                imported += 1;
                let _ = imports.send(Control::Import(SharedFact::Registration(reg)));
            }
        }
    }
    for key in scan(con, &inner.keys.bans()).await? {
        if let Some(fact) = read_ban(inner, con, &key).await? {
            imported += 1;
            let _ = imports.send(Control::Import(fact));
        }
    }
    let written = write(inner, con, outbox).await?;
    // Counted again whatever Redis lost meanwhile (a restart without persistence).
    count_calls(inner, con, false).await?;
    Ok((imported, written))
}

async fn scan(con: &mut MultiplexedConnection, pattern: &str) -> RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    // Bytes: a key name that is not text is someone else's, skipped rather than a failure.
    let mut iter = con.scan_match::<_, Vec<u8>>(pattern).await?;
    while let Some(k) = iter.next_item().await {
        keys.extend(String::from_utf8(k?).ok());
    }
    Ok(keys)
}

/// Connected: until Redis goes away or the daemon stops.
async fn serve(
    inner: &Inner,
    mut con: MultiplexedConnection,
    mut events: PubSubStream,
    (facts, imports): (
        &mut mpsc::UnboundedReceiver<SharedFact>,
        &mpsc::UnboundedSender<Control>,
    ),
    outbox: &mut Outbox,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    // Trunks whose next registration came from a replayed REGISTER: not written.
    let mut replayed = std::collections::HashSet::new();
    // Bounded below: a zero period would panic, and the lease comes from a config.
    let mut renew = tokio::time::interval((inner.lease / 3).max(Duration::from_millis(100)));
    renew.tick().await;
    // A failure reported while the link was down is old news.
    let _ = futures_util::FutureExt::now_or_never(inner.failed.notified());
    loop {
        let step: RedisResult<()> = tokio::select! {
            msg = events.next() => match msg {
                None => return Ended::Down("the event subscription closed".into()),
                Some(m) => {
                    let text: String = m.get_payload().unwrap_or_default();
                    on_event(inner, &mut con, imports, &text).await
                }
            },
            f = facts.recv() => match f {
                None => return Ended::Stop,
                Some(f) => {
                    let mut batch = vec![f];
                    while let Ok(f) = facts.try_recv() {
                        batch.push(f);
                    }
                    let taken = within(take_in(inner, &mut con, imports, batch, outbox, &mut replayed));
                    match taken.await {
                        Ok(()) => within(write(inner, &mut con, outbox)).await.map(|n| inner.count(0, n)),
                        Err(e) => Err(e),
                    }
                }
            },
            _ = renew.tick() => within(count_calls(inner, &mut con, true)).await,
            () = inner.failed.notified() => return Ended::Failed,
            _ = stop.changed() => {
                while let Ok(f) = facts.try_recv() {
                    outbox.push(f);
                }
                let _ = within(write(inner, &mut con, outbox)).await;
                return Ended::Stop;
            }
        };
        match step {
            Ok(()) => {}
            Err(e) if is_content(&e) => {
                debug!(error = %e, "cluster: Redis refused a request on what it holds")
            }
            Err(e) => return Ended::Down(e.to_string()),
        }
    }
}

/// The core's facts into the outbox. A REGISTER's nonce use is spent first: one another
/// instance spent before makes the REGISTER a replay, so its registration is not shared and
/// the instance is told to put back the trunk's registration as Redis has it.
async fn take_in(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    imports: &mpsc::UnboundedSender<Control>,
    batch: Vec<SharedFact>,
    outbox: &mut Outbox,
    replayed: &mut std::collections::HashSet<String>,
) -> RedisResult<()> {
    for fact in batch {
        match fact {
            SharedFact::NonceSpent { trunk, nonce } => {
                if inner.claim(con, &nonce).await? {
                    continue;
                }
                tracing::warn!(%trunk, "cluster: a REGISTER reused a digest answer another instance had seen: \
                               refused, the trunk's registration put back");
                let before = read_registration(con, &inner.keys.registration(&trunk))
                    .await?
                    .unwrap_or(SharedRegistration {
                        trunk: trunk.clone(),
                        node: inner.node.clone(),
                        updated_unix_ms: 0,
                        bindings: Vec::new(),
                    });
                let _ = imports.send(Control::Import(SharedFact::Revert(before)));
                replayed.insert(trunk);
            }
            SharedFact::Registration(reg) if replayed.remove(&reg.trunk) => {}
            other => outbox.push(other),
        }
    }
    Ok(())
}

/// `f`, bounded by the request timeout (a few requests' worth).
async fn within<T>(f: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match timeout(OP_TIMEOUT * 10, f).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "request timed out",
        ))),
    }
}

async fn on_event(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    imports: &mpsc::UnboundedSender<Control>,
    text: &str,
) -> RedisResult<()> {
    let Some(event) = Event::parse(text) else {
        debug!(text, "cluster: unreadable event ignored");
        return Ok(());
    };
    if event.node() == inner.node {
        return Ok(());
    }
    let fact = match &event {
        Event::Registration { trunk, .. } => {
            within(read_registration(con, &inner.keys.registration(trunk)))
                .await?
                // A newer write of ours may have come in between: not news here.
                .filter(|r| r.node != inner.node)
                .map(SharedFact::Registration)
        }
        Event::Ban { ip, .. } => within(read_ban(inner, con, &inner.keys.ban(*ip))).await?,
    };
    if let Some(fact) = fact {
        inner.count(1, 0);
        let _ = imports.send(Control::Import(fact));
    }
    Ok(())
}

async fn read_registration(
    con: &mut MultiplexedConnection,
    key: &str,
) -> RedisResult<Option<SharedRegistration>> {
    // Bytes: what is there is parsed here, where garbage is no link failure.
    let data: Option<Vec<u8>> = tolerate(con.hget(key, "data").await, key)?.flatten();
    Ok(data.and_then(|d| match serde_json::from_slice(&d) {
        Ok(r) => Some(r),
        Err(e) => {
            debug!(key, error = %e, "cluster: unreadable registration ignored");
            None
        }
    }))
}

async fn read_ban(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    key: &str,
) -> RedisResult<Option<SharedFact>> {
    let Some(ip) = inner.keys.ban_ip(key) else {
        return Ok(None);
    };
    let until: Option<Vec<u8>> = tolerate(con.get(key).await, key)?.flatten();
    let until = until.and_then(|u| std::str::from_utf8(&u).ok()?.parse::<u64>().ok());
    Ok(until.map(|until_unix_ms| SharedFact::Ban { ip, until_unix_ms }))
}

/// `r`'s value, `None` when Redis refused it for what the key holds (logged, the link stands),
/// or the link's failure.
fn tolerate<T>(r: RedisResult<T>, what: &str) -> RedisResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_content(&e) => {
            debug!(what, error = %e, "cluster: unusable content in Redis ignored");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes everything in the outbox; on failure what was not written goes back. Returns how
/// many facts were written.
async fn write(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    outbox: &mut Outbox,
) -> RedisResult<u64> {
    let facts = outbox.take();
    let mut written = 0;
    for (i, fact) in facts.iter().enumerate() {
        match tolerate(write_one(inner, con, fact).await, "a shared fact") {
            Ok(Some(())) => written += 1,
            Ok(None) => {}
            Err(e) => {
                outbox.restore(facts[i..].to_vec());
                return Err(e);
            }
        }
    }
    Ok(written)
}

async fn write_one(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    fact: &SharedFact,
) -> RedisResult<()> {
    let now = now_ms();
    match fact {
        SharedFact::Registration(reg) => {
            let last = reg
                .bindings
                .iter()
                .map(|b| b.expires_unix_ms)
                .max()
                .unwrap_or(now);
            let ttl = last.saturating_sub(now) + REGISTRATION_MARGIN_MS;
            let data = serde_json::to_string(reg).unwrap_or_default();
            let event = Event::Registration {
                node: inner.node.clone(),
                trunk: reg.trunk.clone(),
            };
            let mut call = scripts::WRITE_REGISTRATION.key(inner.keys.registration(&reg.trunk));
            call.arg(data)
                .arg(reg.updated_unix_ms)
                .arg(ttl)
                .arg(inner.keys.events())
                .arg(event.text());
            let _: i64 = call.invoke_async(con).await?;
        }
        SharedFact::NonceSpent { .. } | SharedFact::Revert(_) => {}
        SharedFact::Ban { ip, until_unix_ms } => {
            let ttl = until_unix_ms.saturating_sub(now);
            if ttl == 0 {
                return Ok(());
            }
            let event = Event::Ban {
                node: inner.node.clone(),
                ip: *ip,
            };
            let mut call = scripts::WRITE_BAN.key(inner.keys.ban(*ip));
            call.arg(*until_unix_ms)
                .arg(ttl)
                .arg(inner.keys.events())
                .arg(event.text());
            let _: i64 = call.invoke_async(con).await?;
        }
    }
    Ok(())
}

/// This instance's calls count for another lease: only those still counted in Redis
/// (`renew`), or all of them (after a reconnection).
async fn count_calls(
    inner: &Inner,
    con: &mut MultiplexedConnection,
    renew: bool,
) -> RedisResult<()> {
    let lease_end = now_ms() + inner.lease_ms();
    let slots: Vec<(String, String)> = lock(&inner.slots)
        .iter()
        .map(|(m, t)| (m.clone(), t.clone()))
        .collect();
    for (member, trunk) in slots {
        // Released while the previous ones were written: adding it back would count an ended
        // call for a whole lease.
        if !lock(&inner.slots).contains_key(&member) {
            continue;
        }
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(inner.keys.calls(&trunk));
        if renew {
            zadd.arg("XX");
        }
        let r: RedisResult<i64> = zadd.arg(lease_end).arg(member).query_async(con).await;
        tolerate(r, "a call lease")?;
    }
    Ok(())
}

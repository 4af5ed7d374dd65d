//! The cluster room: several instances behind one SIP proxy share what a PBX told one of them.
//! The SIP core's facts (registrations, bans) are written to Redis and other instances' facts
//! come back as `Control::Import`; calls ask here, before the carrier is asked, whether their
//! digest nonce count was used elsewhere and whether their trunk has room across the cluster.
//!
//! Redis is optional and may go away: every operation is bounded in time and answers
//! `Unknown` when Redis cannot say, so the instance keeps serving from what it knows (the SIP
//! core's own checks); it says so once in the log and in `/status`, and catches up (imports
//! what the others wrote, writes what it kept, counts its live calls again) when Redis is back.
//! The keys are in [`keys`].

mod health;
mod keys;
mod link;
mod outbox;
mod scripts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::sip::shared::{unix_ms, NonceUse, SharedFact};
use crate::sip::transport::Control;
use health::Say;
use keys::Keys;

/// Longest any one Redis request may take before the answer is `Unknown`.
const OP_TIMEOUT: Duration = Duration::from_millis(300);

/// Whether a nonce count was used before, anywhere in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    Fresh,
    Replayed,
    /// Redis could not say: the instance's own check stands.
    Unknown,
}

/// Whether a call fits its trunk's `max_calls` across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Granted,
    Full,
    /// Redis could not say: the instance's own count stands.
    Unknown,
}

/// The `[cluster]` section cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Redis URL is not one (the URL itself is not repeated: it may hold a password).
    #[error("cluster.redis is not a usable Redis URL: {0}")]
    Url(String),
}

/// How this instance's link to Redis stands, for `/status` and `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct ClusterStatus {
    pub node: String,
    pub redis_up: bool,
    /// Since when it is up or down.
    pub since: SystemTime,
    pub last_error: Option<String>,
    /// Facts taken from the other instances.
    pub imported: u64,
    /// Facts written for them.
    pub written: u64,
    /// INVITEs whose nonce count another instance had seen.
    pub replays_refused: u64,
    /// This instance's calls counted in Redis.
    pub counted_calls: usize,
}

/// The handle calls, the daemon and the status pages hold.
#[derive(Clone)]
pub(crate) struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    keys: Keys,
    lease: Duration,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    status: Mutex<ClusterStatus>,
    /// This instance's counted calls: member → trunk.
    slots: Mutex<HashMap<String, String>>,
    /// A request failed: the link reconnects.
    failed: Notify,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Redis answered, but what a key under our prefix holds is not what we write there (another
/// program's, or a hand edit): that one request fails, the link stands.
fn is_content(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        e.kind(),
        ErrorKind::UnexpectedReturnType
            | ErrorKind::Extension
            | ErrorKind::Server(ServerErrorKind::ResponseError)
    )
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

impl Cluster {
    /// Starts the link to Redis on the current runtime. Redis being down is no error: the link
    /// keeps trying. `facts` are the SIP core's; other instances' come back on `imports`.
    pub fn start(
        cfg: &ClusterConfig,
        node: &str,
        imports: mpsc::UnboundedSender<Control>,
        facts: mpsc::UnboundedReceiver<SharedFact>,
    ) -> Result<Option<Cluster>, ClusterError> {
        let Some(url) = &cfg.redis else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose())
            .map_err(|e| ClusterError::Url(format!("{:?}", e.kind())))?;
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            node: node.to_string(),
            keys: Keys::new(&cfg.key_prefix),
            lease: cfg.call_lease,
            client,
            conn: Mutex::new(None),
            status: Mutex::new(ClusterStatus {
                node: node.to_string(),
                redis_up: false,
                since: SystemTime::now(),
                last_error: None,
                imported: 0,
                written: 0,
                replays_refused: 0,
                counted_calls: 0,
            }),
            slots: Mutex::new(HashMap::new()),
            failed: Notify::new(),
            stop,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(link::run(inner.clone(), facts, imports, stop_rx));
        *lock(&inner.task) = Some(task);
        info!(node, prefix = %cfg.key_prefix, "cluster: sharing state through Redis");
        Ok(Some(Cluster { inner }))
    }

    /// Spends `u` cluster-wide: `Replayed` when any instance saw this nonce count before.
    pub async fn claim_nonce(&self, u: &NonceUse) -> Claim {
        let Some(mut con) = self.inner.connection() else {
            return Claim::Unknown;
        };
        let r = tokio::time::timeout(OP_TIMEOUT, self.inner.claim(&mut con, u)).await;
        match self.inner.settle(r) {
            Some(true) => Claim::Fresh,
            Some(false) => Claim::Replayed,
            None => Claim::Unknown,
        }
    }

    /// Counts call `call` against `trunk` on every instance; `max` (if any) refuses it when
    /// that many are up. Counted also when Redis cannot say, so it is counted once Redis is
    /// back.
    pub async fn acquire_call(&self, trunk: &str, call: &str, max: Option<usize>) -> Slot {
        let member = self.inner.member(call);
        lock(&self.inner.slots).insert(member.clone(), trunk.to_string());
        let Some(mut con) = self.inner.connection() else {
            return Slot::Unknown;
        };
        let now = now_ms();
        let lease_end = now + self.inner.lease_ms();
        let mut script = scripts::ACQUIRE_CALL.key(self.inner.keys.calls(trunk));
        script
            .arg(&member)
            .arg(now)
            .arg(lease_end)
            .arg(max.unwrap_or(0));
        let r = tokio::time::timeout(OP_TIMEOUT, script.invoke_async::<i64>(&mut con)).await;
        match self.inner.settle(r) {
            Some(1) => Slot::Granted,
            Some(_) => {
                lock(&self.inner.slots).remove(&member);
                Slot::Full
            }
            None => Slot::Unknown,
        }
    }

    /// The call ended: it no longer counts (when Redis is away, its lease runs out).
    pub fn release_call(&self, trunk: &str, call: &str) {
        let member = self.inner.member(call);
        lock(&self.inner.slots).remove(&member);
        let Some(mut con) = self.inner.connection() else {
            return;
        };
        let key = self.inner.keys.calls(trunk);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let r = tokio::time::timeout(OP_TIMEOUT, con.zrem::<_, _, i64>(key, member)).await;
            inner.settle(r);
        });
    }

    pub fn status(&self) -> ClusterStatus {
        let mut s = lock(&self.inner.status).clone();
        s.counted_calls = lock(&self.inner.slots).len();
        s
    }

    /// Stopping: what is queued is written and this instance's calls stop counting, each
    /// within a bounded time.
    pub async fn stop(&self) {
        let _ = self.inner.stop.send(true);
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let slots: Vec<(String, String)> = lock(&self.inner.slots).drain().collect();
        if let Some(mut con) = self.inner.connection() {
            for (member, trunk) in slots {
                let key = self.inner.keys.calls(&trunk);
                let r = tokio::time::timeout(OP_TIMEOUT, con.zrem::<_, _, i64>(key, member));
                if self.inner.settle(r.await).is_none() {
                    break;
                }
            }
        }
    }
}

impl Inner {
    /// Spends `u` in Redis: `false` when some instance spent it before (counted).
    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        u: &NonceUse,
    ) -> redis::RedisResult<bool> {
        let ttl = u.valid_until_unix_ms.saturating_sub(now_ms()).max(1_000);
        let mut call = scripts::CLAIM_NONCE.key(self.keys.nonce(&u.nonce));
        call.arg(u.nc).arg(ttl);
        let fresh = call.invoke_async::<i64>(con).await? == 1;
        if !fresh {
            lock(&self.status).replays_refused += 1;
        }
        Ok(fresh)
    }

    /// How this instance's call `call` is named among the trunk's counted calls.
    fn member(&self, call: &str) -> String {
        format!("{}/{call}", self.node)
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        lock(&self.conn).clone()
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// A request's outcome: its value, or `None` after telling the link it failed.
    fn settle<T>(
        &self,
        r: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match r {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) if is_content(&e) => {
                debug!(error = %e, "cluster: Redis refused a request on what it holds");
                None
            }
            Ok(Err(e)) => {
                self.down(&e.to_string());
                self.failed.notify_one();
                None
            }
            Err(_) => {
                self.down("a request timed out");
                self.failed.notify_one();
                None
            }
        }
    }

    /// Redis stopped answering: said once, until it is back.
    fn down(&self, error: &str) {
        *lock(&self.conn) = None;
        let say = lock(&self.status).went_down(error, SystemTime::now());
        if say == Say::Unreachable {
            warn!(node = %self.node, error, "cluster: Redis unreachable: serving from what this instance knows");
        }
    }

    fn up(&self, conn: MultiplexedConnection, imported: u64, written: u64) {
        *lock(&self.conn) = Some(conn);
        let mut s = lock(&self.status);
        let say = s.came_up(SystemTime::now());
        s.imported += imported;
        s.written += written;
        drop(s);
        match say {
            Say::Reachable => {
                info!(node = %self.node, imported, written, "cluster: Redis reachable: shared state taken in")
            }
            Say::ReachableAgain => {
                info!(node = %self.node, imported, written, "cluster: Redis reachable again: caught up")
            }
            Say::Nothing | Say::Unreachable => {}
        }
    }

    fn count(&self, imported: u64, written: u64) {
        let mut s = lock(&self.status);
        s.imported += imported;
        s.written += written;
    }
}

#[cfg(test)]
mod tests;

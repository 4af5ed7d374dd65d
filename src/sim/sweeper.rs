//! The housekeeping task: ends calls whose audits stopped (`audit_timeout`) and removes
//! subscriptions that were not refreshed within their `expires` (with a `gone`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::call_ops::{EndNotice, Ending};
use super::notify::call_event;
use super::state::{lock, Sim};
use super::subscriptions::WsOut;

/// How often the sweeper looks: a quarter of the audit timeout, between 10 ms and 1 s.
pub fn tick(audit_timeout: Duration) -> Duration {
    (audit_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

pub async fn run(sim: Arc<Sim>) {
    let mut ticker = tokio::time::interval(tick(sim.cfg.audit_timeout));
    loop {
        ticker.tick().await;
        sweep(&sim, Instant::now()).await;
    }
}

async fn sweep(sim: &Sim, now: Instant) {
    let stale = lock(&sim.calls).unaudited(now, sim.cfg.audit_timeout);
    for session in stale {
        tracing::info!(%session, "no audit within audit_timeout: ending the call");
        sim.end_call(
            &session,
            Ending {
                by: "audit_timeout",
                code: Some(408),
                reason: "Request Timeout (no audit)".into(),
                notice: EndNotice::CallEnd,
                stop_script: true,
            },
        )
        .await;
    }
    let expired = lock(&sim.subs).expired_ids(now);
    for id in expired {
        tracing::info!(subscription = %id, "not refreshed within expires: removed");
        let mut gone = call_event("gone", "", None);
        gone.session_params = None;
        sim.notify_subscription(&id, gone);
        if let Some(slot) = lock(&sim.subs).delete(&id, "expired") {
            let _ = slot.tx.send(WsOut::Close {
                code: 1000,
                reason: "expired",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_bounded() {
        assert_eq!(tick(Duration::from_secs(75)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(tick(Duration::from_millis(1)), Duration::from_millis(10));
    }
}

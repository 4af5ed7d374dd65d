//! RFC 4028 session timers for the dialog toward the PBX.
//!
//! This module owns the negotiation of the session interval and the refresher, both as UAS (an
//! INVITE or re-INVITE from the PBX: [`on_request`]) and as UAC (our INVITE to the PBX:
//! [`request_headers`], [`on_2xx`], [`retry_after_422`]), and the timer itself
//! ([`SessionTimer`]): when to send a refresh and when to give the session up. It is pure: the
//! caller extracts header values (including the compact form `x` of Session-Expires), passes
//! the current `Instant`, and sends the requests and BYEs this module asks for. It must not
//! build SIP messages or know about transactions.
//!
//! Decisions where RFC 4028 leaves room (each is also noted where it is made):
//! - A request that supports `timer` without Session-Expires (3CX) gets a timer in the 2xx
//!   (section 9 allows it) with refresher `uac`: the PBX offered to refresh, and a refresh it
//!   sends costs us nothing while one we send costs a re-INVITE across the bridge.
//! - A request without Session-Expires from a UAC that does not support `timer` gets no
//!   timer: section 9 only lets the UAS add one when the UAC supports the extension. Dead
//!   calls from such PBXs are found by the media timeout instead.
//! - A Session-Expires below our Min-SE is answered 422 only when the UAC supports `timer`
//!   (section 9); otherwise a proxy inserted it, a 422 would fail the call, and the interval is
//!   raised instead, as section 8.1 says for proxies (RFC 4028 erratum 1687).
//! - Malformed Session-Expires or Min-SE in a request: 400 (RFC 3261 21.4.1), via
//!   [`HeaderError`]. Values beyond 2^32-1 saturate, as RFC 3261 20.19 does for Expires.
//!   In a 2xx, where nothing can be answered, a malformed value means no timer.

use std::time::{Duration, Instant};

/// The smallest session interval RFC 4028 allows anyone to ask for (section 4).
pub const RFC_MIN_SE: Duration = Duration::from_secs(90);

#[cfg(test)]
/// The longest interval we retry with after a 422: a PBX asking for more is misconfigured,
/// and a session that goes unchecked for hours defeats the point of the timer.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// Our session timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    session_expires: Duration,
    min_se: Duration,
}

/// A [`SessionTimerConfig`] that breaks RFC 4028's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("min_se {0:?} is below the RFC 4028 minimum of 90 s")]
    MinSeTooSmall(Duration),
    #[error("session_expires {session_expires:?} is below min_se {min_se:?}")]
    SessionExpiresBelowMinSe {
        session_expires: Duration,
        min_se: Duration,
    },
    #[error("session_expires {0:?} does not fit a SIP delta-seconds value")]
    TooLong(Duration),
}

impl SessionTimerConfig {
    /// Whole seconds are what goes on the wire; sub-second parts are dropped.
    pub fn new(session_expires: Duration, min_se: Duration) -> Result<Self, ConfigError> {
        let session_expires = Duration::from_secs(session_expires.as_secs());
        let min_se = Duration::from_secs(min_se.as_secs());
        if min_se < RFC_MIN_SE {
            return Err(ConfigError::MinSeTooSmall(min_se));
        }
        if session_expires < min_se {
            return Err(ConfigError::SessionExpiresBelowMinSe {
                session_expires,
                min_se,
            });
        }
        if session_expires.as_secs() > u64::from(u32::MAX) {
            return Err(ConfigError::TooLong(session_expires));
        }
        Ok(SessionTimerConfig {
            session_expires,
            min_se,
        })
    }

    #[cfg(test)]
    pub fn session_expires(&self) -> Duration {
        self.session_expires
    }

    #[cfg(test)]
    pub fn min_se(&self) -> Duration {
        self.min_se
    }
}

/// Which side of the dialog sends the refreshes, in the terms of the INVITE that set it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// The session timer both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAgreement {
    pub interval: Duration,
    pub refresher: Refresher,
    /// The 2xx we send must carry `Require: timer` (UAS side; always false on the UAC side).
    pub require_timer: bool,
}

impl SessionAgreement {
    /// Whether we refresh, given whether we were the UAS of the transaction that negotiated it.
    pub fn we_refresh(&self, we_are_uas: bool) -> bool {
        (self.refresher == Refresher::Uas) == we_are_uas
    }

    /// The Session-Expires value for the 2xx: `<secs>;refresher=uac|uas`.
    pub fn session_expires_value(&self) -> String {
        format!(
            "{};refresher={}",
            self.interval.as_secs(),
            self.refresher.as_str()
        )
    }

    /// The timer headers for the 2xx: Session-Expires, and `Require: timer` when the UAC
    /// supports the extension (a MUST for refresher `uac`, a SHOULD for `uas`, section 9).
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Session-Expires", self.session_expires_value())];
        if self.require_timer {
            headers.push(("Require", "timer".to_owned()));
        }
        headers
    }
}

/// A Session-Expires or Min-SE value that is not what RFC 4028's grammar allows; the caller
/// answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("malformed Session-Expires: {0:?}")]
    SessionExpires(String),
    #[error("malformed Min-SE: {0:?}")]
    MinSe(String),
}

/// A parsed Session-Expires value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

/// `delta-seconds *(SEMI (refresher-param / generic-param))`.
pub fn parse_session_expires(value: &str) -> Result<SessionExpires, HeaderError> {
    let bad = || HeaderError::SessionExpires(value.to_owned());
    let mut parts = value.split(';');
    let delta = delta_seconds(parts.next().unwrap_or("")).ok_or_else(bad)?;
    let mut refresher = None;
    for param in parts {
        let (name, arg) = match param.split_once('=') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (param.trim(), None),
        };
        if name.is_empty() {
            return Err(bad());
        }
        if !name.eq_ignore_ascii_case("refresher") {
            continue; // generic-param: extensions we do not know
        }
        refresher = Some(match arg {
            Some(a) if a.eq_ignore_ascii_case("uac") => Refresher::Uac,
            Some(a) if a.eq_ignore_ascii_case("uas") => Refresher::Uas,
            _ => return Err(bad()),
        });
    }
    Ok(SessionExpires { delta, refresher })
}

/// `delta-seconds *(SEMI generic-param)`.
pub fn parse_min_se(value: &str) -> Result<u32, HeaderError> {
    let first = value.split(';').next().unwrap_or("");
    delta_seconds(first).ok_or_else(|| HeaderError::MinSe(value.to_owned()))
}

/// `1*DIGIT`, saturating at 2^32-1 rather than failing on long values.
fn delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u32, |n, b| {
        n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The timer headers of an INVITE or re-INVITE the PBX sent us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerRequest<'a> {
    /// `Session-Expires` (or `x`) value.
    pub session_expires: Option<&'a str>,
    /// `Min-SE` value.
    pub min_se: Option<&'a str>,
    /// `timer` is listed in `Supported` or `Require`.
    pub timer_supported: bool,
}

/// What to do with the PBX's (re-)INVITE, as far as session timers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// Answer with these [`SessionAgreement::response_headers`] and run a [`SessionTimer`].
    Accept(SessionAgreement),
    /// 422 Session Interval Too Small with `Min-SE: <min_se>`.
    Reject422 { min_se: u32 },
    /// No timer: nothing to add to the 2xx.
    NoTimer,
}

/// UAS side: RFC 4028 section 9 applied to a request from the PBX.
pub fn on_request(
    req: &TimerRequest<'_>,
    cfg: &SessionTimerConfig,
) -> Result<UasDecision, HeaderError> {
    let session_expires = req.session_expires.map(parse_session_expires).transpose()?;
    let their_min_se = req.min_se.map(parse_min_se).transpose()?;
    // Neither our minimum nor theirs may be undercut (section 9).
    let floor = match their_min_se {
        Some(m) => cfg.min_se.max(Duration::from_secs(m.into())),
        None => cfg.min_se,
    };

    let Some(se) = session_expires else {
        if !req.timer_supported {
            return Ok(UasDecision::NoTimer);
        }
        // The UAC supports timers but asks for none: section 9 lets us ask for one, and with
        // no refresher requested we may pick either; `uac` keeps the refreshing on the PBX.
        return Ok(UasDecision::Accept(SessionAgreement {
            interval: cfg.session_expires.max(floor),
            refresher: Refresher::Uac,
            require_timer: true,
        }));
    };

    let requested = Duration::from_secs(se.delta.into());
    if req.timer_supported && requested < cfg.min_se {
        return Ok(UasDecision::Reject422 {
            min_se: secs(cfg.min_se),
        });
    }
    // We may shorten the interval to our preference but not below the floor. Without timer
    // support a too-short value was a proxy's; raising it beats failing the call (erratum
    // 1687). A UAC whose own Min-SE exceeds its Session-Expires breaks section 5; honouring
    // the Min-SE keeps every stated minimum intact.
    let interval = requested.min(cfg.session_expires).max(floor);
    let refresher = if req.timer_supported {
        // Section 9: a requested refresher is copied; otherwise the UAS picks (see on top).
        se.refresher.unwrap_or(Refresher::Uac)
    } else {
        // A UAC without timer support cannot refresh, whatever a proxy wrote.
        Refresher::Uas
    };
    Ok(UasDecision::Accept(SessionAgreement {
        interval,
        refresher,
        require_timer: req.timer_supported,
    }))
}

/// UAC side: the timer headers of our INVITE to the PBX. No refresher parameter: the PBX
/// chooses (section 7.1 lets the UAC leave it out), and we follow its 2xx.
pub fn request_headers(cfg: &SessionTimerConfig) -> Vec<(&'static str, String)> {
    vec![
        ("Supported", "timer".to_owned()),
        ("Session-Expires", secs(cfg.session_expires).to_string()),
        ("Min-SE", secs(cfg.min_se).to_string()),
    ]
}

/// UAC side: the timer the PBX's 2xx sets. `None`: no Session-Expires, so no timer (section
/// 7.2); also for a malformed or zero value, since a response cannot be refused. An interval
/// below our Min-SE breaks section 9, but it is honoured: refusing would end a working call,
/// and the shorter interval only makes the timer stricter. A 2xx without a refresher breaks
/// section 9 too; we then refresh ourselves, which keeps the session alive either way.
pub fn on_2xx(session_expires: Option<&str>) -> Option<SessionAgreement> {
    let se = parse_session_expires(session_expires?).ok()?;
    if se.delta == 0 {
        return None;
    }
    Some(SessionAgreement {
        interval: Duration::from_secs(se.delta.into()),
        refresher: se.refresher.unwrap_or(Refresher::Uac),
        require_timer: false,
    })
}

#[cfg(test)]
/// UAC side, after a 422 to our INVITE: the settings to retry with (Session-Expires and Min-SE
/// both at the 422's Min-SE, section 7.4), or `None` to give up: no usable Min-SE, one that is
/// no larger than what we sent (retrying would loop), or one above [`MAX_RETRY_INTERVAL`].
pub fn retry_after_422(
    min_se: Option<&str>,
    sent: &SessionTimerConfig,
) -> Option<SessionTimerConfig> {
    let wanted = Duration::from_secs(parse_min_se(min_se?).ok()?.into());
    if wanted <= sent.session_expires || wanted > MAX_RETRY_INTERVAL {
        return None;
    }
    SessionTimerConfig::new(wanted, wanted.max(sent.min_se)).ok()
}

/// What the caller must do when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a session refresh (re-INVITE or UPDATE); report its 2xx with
    /// [`SessionTimer::on_refreshed`].
    SendRefresh,
    /// No refresh in time: end the session with a BYE (section 10).
    Expired,
}

/// The running timer of one dialog.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    /// When the session was last set up or refreshed.
    since: Instant,
    refresh_sent: bool,
    expired: bool,
}

impl SessionTimer {
    pub fn new(negotiated: &SessionAgreement, we_are_refresher: bool, now: Instant) -> Self {
        SessionTimer {
            interval: negotiated.interval,
            we_refresh: we_are_refresher,
            since: now,
            refresh_sent: false,
            expired: false,
        }
    }

    #[cfg(test)]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    #[cfg(test)]
    pub fn we_refresh(&self) -> bool {
        self.we_refresh
    }

    /// Section 10: the refresher refreshes at half the interval.
    fn refresh_at(&self) -> Option<Instant> {
        self.since.checked_add(self.interval / 2)
    }

    /// Section 10: the session is given up `min(32 s, interval / 3)` before it would expire,
    /// so the BYE arrives while the other side still holds the session. The refresher uses the
    /// same point: past it, the other side is already sending its BYE.
    fn expire_at(&self) -> Option<Instant> {
        let margin = Duration::from_secs(32).min(self.interval / 3);
        self.since.checked_add(self.interval - margin)
    }

    /// When [`SessionTimer::handle_timeout`] next has something to do; `None` once expired
    /// (or for an interval too long for the clock to represent).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.expired {
            None
        } else if self.we_refresh && !self.refresh_sent {
            self.refresh_at()
        } else {
            self.expire_at()
        }
    }

    /// A refresh succeeded (ours or the peer's, a re-INVITE or UPDATE with its 2xx): the
    /// session interval starts again.
    pub fn on_refreshed(&mut self, now: Instant) {
        self.since = now;
        self.refresh_sent = false;
        self.expired = false;
    }

    /// A refresh renegotiated the timer (new interval or refresher): restart with it.
    pub fn renegotiate(
        &mut self,
        negotiated: &SessionAgreement,
        we_are_refresher: bool,
        now: Instant,
    ) {
        *self = SessionTimer::new(negotiated, we_are_refresher, now);
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if self.expired {
            return None;
        }
        // Expiry first: a caller that wakes late past both points must end the session, not
        // start a refresh that can no longer arrive in time.
        if self.expire_at().is_some_and(|at| now >= at) {
            self.expired = true;
            return Some(TimerAction::Expired);
        }
        if self.we_refresh && !self.refresh_sent && self.refresh_at().is_some_and(|at| now >= at) {
            self.refresh_sent = true;
            return Some(TimerAction::SendRefresh);
        }
        None
    }
}

#[cfg(test)]
#[path = "session_timer_tests.rs"]
mod tests;

//! The registrar (RFC 3261 10.3): contact bindings per trunk, with expiry and CSeq ordering, as
//! an I/O-free state machine. A snapshot of each trunk's registration is published through
//! `Registrations` for the modules that route calls to the PBX and report status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::grammar::{NameAddr, Scheme};
use super::message::Request;
use super::parse::RequestInfo;
use super::qualify::Reach;
use super::shared::{unix_ms, SharedBinding, SharedRegistration};

/// One registered contact of a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The Contact URI exactly as sent (all parameters, e.g. 3CX's `rinstance`).
    pub uri: String,
    /// Where the REGISTER came from (the proxy, or the PBX itself behind its NAT).
    pub source: SocketAddr,
    /// The PBX's own address (`source` unless a trusted proxy relayed the REGISTER).
    pub pbx: SocketAddr,
    /// The REGISTER's Path values (RFC 3327), from a trusted proxy only: the route set of
    /// every request to this contact.
    pub path: Vec<String>,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Instant,
    /// Wall-clock expiry, for status output.
    pub expires_at_wall: SystemTime,
    /// Comparison key (RFC 3261 19.1.4, simplified): scheme, user, host, port, parameters.
    key: String,
}

impl Binding {
    /// Where requests to this contact are sent: along the Path when it names an address,
    /// else back where the REGISTER came from (NAT).
    pub fn next_hop(&self) -> SocketAddr {
        super::route::next_hop(&self.path).unwrap_or(self.source)
    }

    fn shared(&self) -> SharedBinding {
        SharedBinding {
            uri: self.uri.clone(),
            path: self.path.clone(),
            source: self.source,
            pbx: self.pbx,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            expires_unix_ms: unix_ms(self.expires_at_wall),
        }
    }
}

/// Who sent a REGISTER: its source, the PBX behind it, and the Path it may carry.
#[derive(Debug, Clone)]
pub(crate) struct RegisterFrom {
    pub source: SocketAddr,
    pub pbx: SocketAddr,
    pub path: Vec<String>,
}

/// What a trunk's registration looks like to other modules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TrunkRegistration {
    pub bindings: Vec<Binding>,
    /// What qualifying found of each contact (by URI); absent: not asked yet.
    pub reach: HashMap<String, Reach>,
}

impl TrunkRegistration {
    pub fn is_registered(&self) -> bool {
        !self.bindings.is_empty()
    }

    pub fn reach_of(&self, uri: &str) -> Reach {
        self.reach.get(uri).copied().unwrap_or(Reach::Unknown)
    }

    /// Registered, and some contact not known to be unreachable.
    pub fn is_reachable(&self) -> bool {
        self.bindings.iter().any(|b| self.reach_of(&b.uri).usable())
    }

    /// The binding to send requests to: the most recently refreshed one.
    pub fn primary(&self) -> Option<&Binding> {
        self.bindings.iter().max_by_key(|b| b.expires_at)
    }
}

/// Shared, read-mostly view of every trunk's registration, keyed by trunk name.
#[derive(Debug, Clone, Default)]
pub struct Registrations(Arc<RwLock<HashMap<String, TrunkRegistration>>>);

impl Registrations {
    pub(crate) fn get(&self, trunk: &str) -> TrunkRegistration {
        self.0
            .read()
            .map(|m| m.get(trunk).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub(crate) fn all(&self) -> HashMap<String, TrunkRegistration> {
        self.0.read().map(|m| m.clone()).unwrap_or_default()
    }

    fn publish(&self, trunk: &str, reg: &[Binding]) {
        if let Ok(mut m) = self.0.write() {
            let entry = m.entry(trunk.to_string()).or_default();
            entry.bindings = reg.to_vec();
            entry
                .reach
                .retain(|uri, _| reg.iter().any(|b| &b.uri == uri));
        }
    }

    /// What qualifying found of one of `trunk`'s contacts.
    pub(crate) fn publish_reach(&self, trunk: &str, uri: &str, reach: Reach) {
        if let Ok(mut m) = self.0.write() {
            if let Some(entry) = m.get_mut(trunk) {
                if entry.bindings.iter().any(|b| b.uri == uri) {
                    entry.reach.insert(uri.to_string(), reach);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RegistrarLimits {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
}

/// The answer to a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegisterOutcome {
    /// 200 OK listing every current binding as (Contact URI, seconds left).
    Ok(Vec<(String, u32)>),
    /// 423 Interval Too Brief with Min-Expires.
    IntervalTooBrief(u32),
    /// 400 with a reason.
    BadRequest(&'static str),
}

pub(crate) struct Registrar {
    limits: RegistrarLimits,
    bindings: HashMap<String, Vec<Binding>>,
    /// When each trunk's bindings last changed here or were imported (Unix ms): an import
    /// older than this is stale.
    updated: HashMap<String, u64>,
    view: Registrations,
}

fn binding_key(n: &NameAddr) -> String {
    let u = &n.uri;
    let scheme = match &u.scheme {
        Scheme::Sip => "sip",
        Scheme::Sips => "sips",
        Scheme::Tel => "tel",
        Scheme::Other(s) => s.as_str(),
    };
    if !u.is_sip() {
        return format!("{}:{}", scheme.to_ascii_lowercase(), n.uri_text);
    }
    let mut params: Vec<String> = u
        .params
        .0
        .iter()
        .map(|(k, v)| format!("{}={}", k.to_ascii_lowercase(), v.as_deref().unwrap_or("")))
        .collect();
    params.sort();
    format!(
        "{scheme}:{}@{}:{}/{}",
        u.user.as_deref().unwrap_or(""),
        u.host.to_ascii_lowercase(),
        u.port.map(|p| p.to_string()).unwrap_or_default(),
        params.join(";")
    )
}

fn parse_delta(s: &str) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // RFC 3261 20.19: a value too large for 32 bits is taken as the largest value.
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

impl Registrar {
    pub fn new(limits: RegistrarLimits, view: Registrations) -> Self {
        Registrar {
            limits,
            bindings: HashMap::new(),
            updated: HashMap::new(),
            view,
        }
    }

    /// New expiry bounds and contact limit (a reload); bindings are kept.
    pub fn set_limits(&mut self, limits: RegistrarLimits) {
        self.limits = limits;
    }

    pub fn view(&self) -> &Registrations {
        &self.view
    }

    pub fn bindings(&self, trunk: &str) -> &[Binding] {
        self.bindings.get(trunk).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Applies an authenticated REGISTER for `trunk`. All-or-nothing: on any error no binding
    /// changes.
    pub fn register(
        &mut self,
        trunk: &str,
        req: &Request,
        info: &RequestInfo,
        from: &RegisterFrom,
        now: Instant,
    ) -> RegisterOutcome {
        let l = self.limits;
        let header_expires = req.headers.get("Expires").and_then(parse_delta);
        let contacts: Vec<&str> = req.headers.get_all("Contact").collect();
        let mut current = self.bindings.get(trunk).cloned().unwrap_or_default();
        let wall_now = SystemTime::now();

        if contacts.contains(&"*") {
            // RFC 3261 10.2.2: '*' only alone and only with Expires: 0
            if contacts.len() != 1 || header_expires != Some(0) {
                return RegisterOutcome::BadRequest(
                    "Contact * needs Expires: 0 and no other Contact",
                );
            }
            if current
                .iter()
                .any(|b| b.call_id == info.call_id && b.cseq >= info.cseq.seq)
            {
                return RegisterOutcome::BadRequest("CSeq out of order");
            }
            current.clear();
        } else {
            // Validate everything first, then apply.
            let mut updates = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let Ok(n) = NameAddr::parse(c) else {
                    return RegisterOutcome::BadRequest("malformed Contact");
                };
                let expires = match n.params.get("expires") {
                    Some(Some(v)) => match parse_delta(v) {
                        Some(e) => e,
                        None => return RegisterOutcome::BadRequest("malformed expires parameter"),
                    },
                    Some(None) => {
                        return RegisterOutcome::BadRequest("malformed expires parameter")
                    }
                    None => header_expires.unwrap_or(l.default_expires),
                };
                if expires != 0 && expires < l.min_expires {
                    return RegisterOutcome::IntervalTooBrief(l.min_expires);
                }
                let key = binding_key(&n);
                if let Some(old) = current.iter().find(|b| b.key == key) {
                    if old.call_id == info.call_id && info.cseq.seq <= old.cseq {
                        return RegisterOutcome::BadRequest("CSeq out of order");
                    }
                }
                updates.push((n.uri_text, key, expires.min(l.max_expires)));
            }
            for (uri, key, expires) in updates {
                current.retain(|b| b.key != key);
                if expires == 0 {
                    continue;
                }
                let secs = Duration::from_secs(u64::from(expires));
                current.push(Binding {
                    uri,
                    source: from.source,
                    pbx: from.pbx,
                    path: from.path.clone(),
                    call_id: info.call_id.clone(),
                    cseq: info.cseq.seq,
                    expires_at: now + secs,
                    expires_at_wall: wall_now + secs,
                    key,
                });
            }
            // Over the limit the least recently refreshed bindings go: a PBX that restarted
            // (new rinstance) must not lock itself out until its old bindings expire.
            if current.len() > l.max_contacts {
                current.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
                current.truncate(l.max_contacts);
            }
        }
        let listed = current
            .iter()
            .map(|b| {
                (
                    b.uri.clone(),
                    b.expires_at.saturating_duration_since(now).as_secs() as u32,
                )
            })
            .collect();
        if !contacts.is_empty() {
            self.store(trunk, current, unix_ms(wall_now));
        }
        RegisterOutcome::Ok(listed)
    }

    fn store(&mut self, trunk: &str, bindings: Vec<Binding>, updated_unix_ms: u64) {
        self.view.publish(trunk, &bindings);
        self.updated.insert(trunk.to_string(), updated_unix_ms);
        if bindings.is_empty() {
            self.bindings.remove(trunk);
        } else {
            self.bindings.insert(trunk.to_string(), bindings);
        }
    }

    /// A trunk's registration as the other instances take it.
    pub fn shared(&self, trunk: &str, node: &str) -> SharedRegistration {
        SharedRegistration {
            trunk: trunk.to_string(),
            node: node.to_string(),
            updated_unix_ms: self.updated.get(trunk).copied().unwrap_or(0),
            bindings: self.bindings(trunk).iter().map(Binding::shared).collect(),
        }
    }

    /// Takes another instance's view of a trunk's registration, unless ours is as new. Wall
    /// clock expiries become `Instant`s here; bindings already over are left out. Returns
    /// whether anything was taken.
    pub fn import(&mut self, reg: &SharedRegistration, now: Instant, wall_now: SystemTime) -> bool {
        if self
            .updated
            .get(&reg.trunk)
            .is_some_and(|t| *t >= reg.updated_unix_ms)
        {
            return false;
        }
        self.replace(reg, now, wall_now);
        true
    }

    /// Takes `reg` whatever its age: what a trunk's registration was before a replayed
    /// REGISTER changed it.
    pub fn replace(&mut self, reg: &SharedRegistration, now: Instant, wall_now: SystemTime) {
        let wall_ms = unix_ms(wall_now);
        let mut list = Vec::new();
        for b in &reg.bindings {
            let Ok(n) = NameAddr::parse(&format!("<{}>", b.uri)) else {
                continue;
            };
            let Some(left) = b.expires_unix_ms.checked_sub(wall_ms).filter(|l| *l > 0) else {
                continue;
            };
            let left = Duration::from_millis(left)
                .min(Duration::from_secs(u64::from(self.limits.max_expires)));
            list.push(Binding {
                uri: b.uri.clone(),
                source: b.source,
                pbx: b.pbx,
                path: b.path.clone(),
                call_id: b.call_id.clone(),
                cseq: b.cseq,
                expires_at: now + left,
                expires_at_wall: wall_now + left,
                key: binding_key(&n),
            });
        }
        // Over this instance's limit, the most recently refreshed bindings stay, as in
        // `register`.
        if list.len() > self.limits.max_contacts {
            list.sort_by_key(|b| std::cmp::Reverse(b.expires_at));
            list.truncate(self.limits.max_contacts);
        }
        self.store(&reg.trunk, list, reg.updated_unix_ms);
    }

    /// The earliest binding expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flat_map(|v| v.iter().map(|b| b.expires_at))
            .min()
    }

    /// Removes bindings whose time is up; returns how many expired.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        let view = self.view.clone();
        self.bindings.retain(|trunk, list| {
            let before = list.len();
            list.retain(|b| b.expires_at > now);
            if list.len() != before {
                expired += before - list.len();
                view.publish(trunk, list);
            }
            !list.is_empty()
        });
        expired
    }
}

#[cfg(test)]
#[path = "registrar_import_tests.rs"]
mod import_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{parse, Parsed};

    pub(super) fn limits() -> RegistrarLimits {
        RegistrarLimits {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts: 2,
        }
    }

    fn register(
        cseq: u32,
        call_id: &str,
        contact: Option<&str>,
        expires: Option<&str>,
    ) -> (Request, RequestInfo) {
        let mut s = format!(
            "REGISTER sip:trunk.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK{cseq}\r\n\
             From: <sip:1000@trunk.example.com>;tag=a\r\nTo: <sip:1000@trunk.example.com>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
        );
        if let Some(c) = contact {
            s.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = expires {
            s.push_str(&format!("Expires: {e}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        match parse(s.as_bytes(), 65535).unwrap() {
            Parsed::Request(r, i) => (r, i),
            _ => unreachable!(),
        }
    }

    fn src() -> RegisterFrom {
        let a: SocketAddr = "10.0.0.9:5060".parse().unwrap();
        RegisterFrom {
            source: a,
            pbx: a,
            path: Vec::new(),
        }
    }

    #[test]
    fn expiry_precedence_contact_param_then_header_then_default() {
        let t0 = Instant::now();
        let mut r = Registrar::new(limits(), Registrations::default());
        let (q, i) = register(
            1,
            "c1",
            Some("<sip:a@10.0.0.9;rinstance=x>;expires=120"),
            Some("300"),
        );
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![("sip:a@10.0.0.9;rinstance=x".into(), 120)])
        );
        let (q, i) = register(2, "c1", Some("<sip:a@10.0.0.9;rinstance=x>"), Some("300"));
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![("sip:a@10.0.0.9;rinstance=x".into(), 300)])
        );
        // Asterisk sometimes sends neither: the default applies
        let (q, i) = register(3, "c1", Some("<sip:a@10.0.0.9;rinstance=x>"), None);
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![("sip:a@10.0.0.9;rinstance=x".into(), 600)])
        );
        // above max: clamped
        let (q, i) = register(
            4,
            "c1",
            Some("<sip:a@10.0.0.9;rinstance=x>"),
            Some("100000"),
        );
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![("sip:a@10.0.0.9;rinstance=x".into(), 3600)])
        );
        assert!(r.view().get("t").is_registered());
        assert_eq!(r.view().get("t").primary().unwrap().source, src().source);
    }

    #[test]
    fn too_brief_is_423_and_changes_nothing() {
        let mut r = Registrar::new(limits(), Registrations::default());
        let (q, i) = register(1, "c1", Some("<sip:a@h>"), Some("30"));
        assert_eq!(
            r.register("t", &q, &i, &src(), Instant::now()),
            RegisterOutcome::IntervalTooBrief(60)
        );
        assert!(r.bindings("t").is_empty());
    }

    #[test]
    fn cseq_ordering_within_a_call_id() {
        let t0 = Instant::now();
        let mut r = Registrar::new(limits(), Registrations::default());
        let (q, i) = register(5, "c1", Some("<sip:a@h>"), None);
        assert!(matches!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(_)
        ));
        let (q, i) = register(5, "c1", Some("<sip:a@h>"), Some("0"));
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::BadRequest("CSeq out of order")
        );
        assert_eq!(r.bindings("t").len(), 1);
        // another Call-ID may carry any CSeq (a restarted PBX)
        let (q, i) = register(1, "c2", Some("<sip:a@h>"), Some("0"));
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![])
        );
        assert!(!r.view().get("t").is_registered());
    }

    #[test]
    fn star_unregisters_everything_and_query_lists() {
        let t0 = Instant::now();
        let mut r = Registrar::new(limits(), Registrations::default());
        let (q, i) = register(1, "c1", Some("<sip:a@h>, <sip:b@h>"), None);
        assert!(
            matches!(r.register("t", &q, &i, &src(), t0), RegisterOutcome::Ok(v) if v.len() == 2)
        );
        let (q, i) = register(2, "c1", None, None);
        assert!(
            matches!(r.register("t", &q, &i, &src(), t0), RegisterOutcome::Ok(v) if v.len() == 2)
        );
        let (q, i) = register(3, "c1", Some("*"), Some("3600"));
        assert!(matches!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::BadRequest(_)
        ));
        let (q, i) = register(3, "c1", Some("*"), Some("0"));
        assert_eq!(
            r.register("t", &q, &i, &src(), t0),
            RegisterOutcome::Ok(vec![])
        );
        assert!(r.bindings("t").is_empty());
    }

    #[test]
    fn bindings_expire_on_time_and_limit_keeps_newest() {
        let t0 = Instant::now();
        let mut r = Registrar::new(limits(), Registrations::default());
        for (n, inst) in ["x", "y", "z"].iter().enumerate() {
            let (q, i) = register(
                n as u32 + 1,
                "c1",
                Some(&format!("<sip:a@h;rinstance={inst}>")),
                Some("100"),
            );
            r.register("t", &q, &i, &src(), t0 + Duration::from_secs(n as u64));
        }
        let uris: Vec<_> = r.bindings("t").iter().map(|b| b.uri.clone()).collect();
        assert_eq!(uris.len(), 2);
        assert!(!uris.iter().any(|u| u.ends_with("=x")), "{uris:?}");
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(101)));
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(101)), 1);
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(102)), 1);
        assert!(!r.view().get("t").is_registered());
        assert_eq!(r.poll_timeout(), None);
    }
}

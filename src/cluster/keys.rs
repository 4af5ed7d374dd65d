//! The Redis keys and messages of a cluster, all under `[cluster] key_prefix`:
//!
//! - `{p}:reg:{trunk}`: hash `updated` (Unix ms) and `data` (a `SharedRegistration` as JSON),
//!   written only by a newer registration; expires an hour after its last binding.
//! - `{p}:ban:{ip}`: the ban's end (Unix ms), expiring with it.
//! - `{p}:nonce:{nonce}`: set of the nonce counts used, expiring with the nonce.
//! - `{p}:calls:{trunk}`: sorted set of live calls `{node}/{call}`, scored by the end of their
//!   lease (Unix ms); a killed instance's calls drop out when their lease runs out.
//! - channel `{p}:events`: `{node} reg {trunk}` or `{node} ban {ip}` after each write.

use std::net::IpAddr;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn registration(&self, trunk: &str) -> String {
        format!("{}:reg:{trunk}", self.prefix)
    }

    pub fn registrations(&self) -> String {
        format!("{}:reg:*", self.prefix)
    }

    pub fn ban(&self, ip: IpAddr) -> String {
        format!("{}:ban:{ip}", self.prefix)
    }

    pub fn bans(&self) -> String {
        format!("{}:ban:*", self.prefix)
    }

    /// The address a ban key names.
    pub fn ban_ip(&self, key: &str) -> Option<IpAddr> {
        key.strip_prefix(&format!("{}:ban:", self.prefix))?
            .parse()
            .ok()
    }

    pub fn nonce(&self, nonce: &str) -> String {
        format!("{}:nonce:{nonce}", self.prefix)
    }

    pub fn calls(&self, trunk: &str) -> String {
        format!("{}:calls:{trunk}", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

/// What an event on the channel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// `node` wrote `trunk`'s registration.
    Registration { node: String, trunk: String },
    /// `node` banned `ip`.
    Ban { node: String, ip: IpAddr },
}

impl Event {
    pub fn text(&self) -> String {
        match self {
            Event::Registration { node, trunk } => format!("{node} reg {trunk}"),
            Event::Ban { node, ip } => format!("{node} ban {ip}"),
        }
    }

    /// `None` for anything else: the channel is input like any other.
    pub fn parse(text: &str) -> Option<Event> {
        let mut parts = text.splitn(3, ' ');
        let node = parts.next()?.to_string();
        let kind = parts.next()?;
        let rest = parts.next()?;
        match kind {
            "reg" if !rest.is_empty() => Some(Event::Registration {
                node,
                trunk: rest.to_string(),
            }),
            "ban" => Some(Event::Ban {
                node,
                ip: rest.parse().ok()?,
            }),
            _ => None,
        }
    }

    pub fn node(&self) -> &str {
        match self {
            Event::Registration { node, .. } | Event::Ban { node, .. } => node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_and_garbage_is_nothing() {
        let e = Event::Registration {
            node: "a".into(),
            trunk: "main pbx".into(),
        };
        assert_eq!(Event::parse(&e.text()), Some(e));
        let b = Event::Ban {
            node: "b".into(),
            ip: "2001:db8::".parse().unwrap(),
        };
        assert_eq!(Event::parse(&b.text()), Some(b));
        for junk in [
            "",
            "a",
            "a reg",
            "a reg ",
            "a ban 300.1.1.1",
            "a xyz t",
            "\u{0} \u{0} \u{0}",
        ] {
            assert_eq!(Event::parse(junk), None, "{junk:?}");
        }
        let k = Keys::new("tg");
        assert_eq!(
            k.ban_ip(&k.ban("192.0.2.7".parse().unwrap())),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(k.ban_ip("tg:ban:nope"), None);
        assert_eq!(k.ban_ip("other:ban:192.0.2.7"), None);
    }
}

//! The `[cdr]` and `[status]` sections: where call records go and where the status, metrics and
//! health endpoints listen.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[cdr]`: one JSON line per call attempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrConfig {
    /// Appended to; reopened on SIGHUP so the operator can rotate it.
    pub path: PathBuf,
}

impl Default for CdrConfig {
    fn default() -> Self {
        CdrConfig {
            path: PathBuf::from("/var/lib/trunkgate/cdr.jsonl"),
        }
    }
}

/// `[status]`: `/status`, `/metrics`, `/healthz` over plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Loopback unless set otherwise: the endpoints have no authentication.
    pub listen: SocketAddr,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9060)),
        }
    }
}

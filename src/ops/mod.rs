//! Operations: call records on disk (`cdr`), the status, metrics and health endpoints (`http`,
//! `metrics`), systemd readiness, status and watchdog (`systemd`), and the admin commands
//! (`admin`: `credentials`, `pbx-config`; `bans`: `bans`, `unban`).

pub mod admin;
pub mod bans;
pub(crate) mod cdr;
pub(crate) mod cluster;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod systemd;

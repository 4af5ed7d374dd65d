//! Operating the daemon as a service.

pub mod systemd;

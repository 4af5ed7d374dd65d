//! Operating the daemon: admin commands.

pub mod admin;

//! Calls: the back-to-back user agent joining a PBX dialog (through the SIP core's `tu`
//! interface) to a carrier session and their media, in both directions. Each call is a sans-IO
//! machine (`machine`: a set-up stage, `outbound` or `inbound`, then `confirmed`) speaking the
//! vocabulary of `io`, run by one task (`driver`) that does what it asks.

pub mod base;
pub mod confirmed;
pub mod context;
pub mod driver;
pub mod facts;
pub mod inbound;
pub mod io;
pub mod machine;
pub mod outbound;
pub mod pbx_leg;
pub mod record;
pub mod registry;
pub mod router;
pub mod session_timer;
pub mod settings;
#[cfg(test)]
mod test_support;

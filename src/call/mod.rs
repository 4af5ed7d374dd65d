//! Calls: the back-to-back user agent joining a PBX dialog (through the SIP core's `signal`
//! interface) to a carrier session and their media, one task per call, in both directions.

pub mod record;
pub mod signal;

//! Calls: the back-to-back user agent joining a PBX dialog (through the SIP core's `tu`
//! interface) to a carrier session and their media, one task per call, in both directions.

pub mod bridge;
pub mod context;
pub mod inbound;
pub mod outbound;
pub mod pbx_leg;
pub mod record;
pub mod registry;
pub mod router;
pub mod session_timer;
pub mod settings;

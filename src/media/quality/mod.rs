//! Call quality on the PBX leg, sans-IO: what the PBX sends us (`receive`: RFC 3550 receive
//! statistics), what we send it (`send`), the RTCP we exchange with it (`report_block`,
//! `rtcp_write`, `rtcp_read`, scheduled by `interval`, timed by `ntp`), and the figures an
//! operator reads per direction (`figures`, with the MOS from `emodel`). The WebRTC leg's RTCP
//! is str0m's; its statistics feed the same figures. No I/O, no clock reads (callers pass
//! `Instant`s and one wall-clock anchor), no allocation per packet.

mod emodel;
mod figures;
mod interval;
mod ntp;
mod receive;
mod report_block;
mod rtcp_read;
mod rtcp_write;
mod send;

pub use figures::DirectionQuality;
pub use interval::{rtcp_interval, G711_SESSION_BANDWIDTH};
pub use ntp::{rtt, NtpClock};
pub use receive::ReceiveStats;
pub use report_block::ReportBlock;
pub use rtcp_read::read_report;
pub use rtcp_write::write_report;
pub use send::SendStats;

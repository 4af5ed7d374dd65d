//! The record one call attempt leaves behind (refused ones included), and the interface that
//! receives it. Operations write records to disk and count them; here they are produced.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::sip::tu::{CallRef, RefusedInvite};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// PBX → carrier.
    Outbound,
    /// Carrier → PBX.
    Inbound,
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    Pbx,
    Carrier,
    /// trunkgate itself: a policy or limit, a timer, a failure.
    Gateway,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// trunkgate's own call number (unique while the process runs).
    pub id: u64,
    /// The SIP Call-ID of the PBX-side dialog.
    pub sip_call_id: Option<String>,
    /// The carrier's session name.
    pub carrier_session: Option<String>,
    pub carrier_account: Option<String>,
    pub trunk: Option<String>,
    pub direction: CallDirection,
    /// Called number as received, and as E.164.
    pub called_raw: String,
    pub called: Option<String>,
    /// Calling number as received, and normalised.
    pub caller_raw: Option<String>,
    pub caller: Option<String>,
    #[serde(with = "unix_ms")]
    pub started: SystemTime,
    #[serde(with = "unix_ms_opt")]
    pub answered: Option<SystemTime>,
    #[serde(with = "unix_ms")]
    pub ended: SystemTime,
    /// The final SIP status of the PBX-side INVITE (200 for an answered call).
    pub sip_code: u16,
    pub sip_reason: String,
    pub carrier_code: Option<i64>,
    pub carrier_reason: Option<String>,
    pub ended_by: EndedBy,
    pub rtp_packets_from_pbx: u64,
    pub rtp_packets_to_pbx: u64,
    pub rtp_bytes_from_pbx: u64,
    pub rtp_bytes_to_pbx: u64,
    /// Per-direction quality figures (packets, loss, jitter, round-trip time, MOS) of an
    /// answered call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::media::engine::CallQuality>,
    /// Sequence gaps seen on each incoming stream.
    pub rtp_lost_from_pbx: u64,
    pub rtp_lost_from_carrier: u64,
    /// The PBX's own count (RTCP receiver reports) of what it did not receive from us.
    pub rtp_lost_reported_by_pbx: u64,
}

impl CallRecord {
    pub fn new(id: CallRef, direction: CallDirection, called_raw: impl Into<String>) -> CallRecord {
        let now = SystemTime::now();
        CallRecord {
            id: id.0,
            sip_call_id: None,
            carrier_session: None,
            carrier_account: None,
            trunk: None,
            direction,
            called_raw: called_raw.into(),
            called: None,
            caller_raw: None,
            caller: None,
            started: now,
            answered: None,
            ended: now,
            sip_code: 0,
            sip_reason: String::new(),
            carrier_code: None,
            carrier_reason: None,
            ended_by: EndedBy::Gateway,
            rtp_packets_from_pbx: 0,
            rtp_packets_to_pbx: 0,
            rtp_bytes_from_pbx: 0,
            rtp_bytes_to_pbx: 0,
            quality: None,
            rtp_lost_from_pbx: 0,
            rtp_lost_from_carrier: 0,
            rtp_lost_reported_by_pbx: 0,
        }
    }

    /// The record of a PBX's INVITE the SIP core refused itself.
    pub fn refused(call: CallRef, r: &RefusedInvite) -> CallRecord {
        let mut record = CallRecord::new(call, CallDirection::Outbound, r.dialled.clone());
        record.sip_call_id = Some(r.call_id.clone());
        record.trunk = Some(r.trunk.clone());
        record.caller_raw = Some(r.from_uri.clone());
        record.called = r.called.clone();
        record.sip_code = r.code;
        record.sip_reason = r.reason.clone();
        record.ended_by = EndedBy::Gateway;
        record
    }

    /// Copies a relay's counters (at the end of the call).
    pub fn take_counters(&mut self, c: &crate::media::relay::RelayCounters) {
        use crate::media::relay::RelayCounters as C;
        self.rtp_packets_from_pbx = C::get(&c.from_pbx_packets);
        self.rtp_packets_to_pbx = C::get(&c.to_pbx_packets);
        self.rtp_bytes_from_pbx = C::get(&c.from_pbx_bytes);
        self.rtp_bytes_to_pbx = C::get(&c.to_pbx_bytes);
        self.rtp_lost_from_pbx = C::get(&c.lost_from_pbx);
        self.rtp_lost_from_carrier = C::get(&c.lost_from_carrier);
        self.rtp_lost_reported_by_pbx = C::get(&c.lost_reported_by_pbx);
    }
}

/// Receives every finished record exactly once.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: CallRecord);
}

pub type Records = Arc<dyn RecordSink>;

mod unix_ms {
    use serde::Serializer;
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(crate::sip::shared::unix_ms(*t))
    }
}

mod unix_ms_opt {
    use serde::Serializer;
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::unix_ms::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

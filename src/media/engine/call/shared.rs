//! What a call shares with its async handle (`MediaCall`, `MediaView`): the relay's counters,
//! a local far end's statistics, the connection-state watch, the negotiated format and the
//! latest quality snapshot. The media thread writes; the async side only reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::super::call_quality::CallQuality;
use super::super::local::LocalStats;
use crate::media::relay::RelayCounters;
#[cfg(test)]
use crate::media::Codec;
use crate::media::{AudioFormat, PeerState};

/// What a call shares with its async handle: counters and figures written by the media
/// thread (atomics; the quality snapshot once per statistics interval), the connection state.
#[derive(Debug)]
pub struct CallShared {
    pub counters: Arc<RelayCounters>,
    pub local: Arc<LocalStats>,
    pub state: watch::Sender<PeerState>,
    format: AtomicU32,
    quality: Mutex<CallQuality>,
    pub started: Instant,
}

const HAS_FORMAT: u32 = 1 << 24;
const HAS_EVENT: u32 = 1 << 16;

impl CallShared {
    pub fn new(now: Instant) -> Self {
        CallShared {
            counters: Arc::default(),
            local: Arc::default(),
            state: watch::channel(PeerState::New).0,
            format: AtomicU32::new(0),
            quality: Mutex::new(CallQuality::default()),
            started: now,
        }
    }

    #[cfg(test)]
    pub fn format(&self) -> Option<AudioFormat> {
        let v = self.format.load(Ordering::Relaxed);
        if v & HAS_FORMAT == 0 {
            return None;
        }
        let codec = if v & 0xff == 8 {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        Some(AudioFormat {
            codec,
            telephone_event_pt: (v & HAS_EVENT != 0).then_some(((v >> 8) & 0xff) as u8),
        })
    }

    pub(super) fn set_format(&self, f: AudioFormat) {
        let ev = f
            .telephone_event_pt
            .map_or(0, |pt| HAS_EVENT | u32::from(pt) << 8);
        self.format.store(
            HAS_FORMAT | ev | u32::from(f.codec.payload_type()),
            Ordering::Relaxed,
        );
    }

    pub fn quality(&self) -> CallQuality {
        self.quality
            .lock()
            .map(|q| q.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub(super) fn set_quality(&self, q: CallQuality) {
        match self.quality.lock() {
            Ok(mut g) => *g = q,
            Err(p) => *p.into_inner() = q,
        }
    }
}

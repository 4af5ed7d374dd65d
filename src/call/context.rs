//! What every call task shares: the carrier client, the RTP port pool, WebRTC settings, the
//! channel to the SIP core, the record sink and the call settings. Built once at start.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::record::Records;
use super::settings::LiveSettings;
use crate::carrier::Carrier;
use crate::cluster::Cluster;
use crate::media::rtp_leg::PortPool;
use crate::media::PeerSettings;
use crate::sip::tu::{CallRef, CallRefs, DialogCommand};

pub struct CallContext {
    pub carrier: Option<Arc<Carrier>>,
    pub ports: PortPool,
    /// The address in our SDP toward PBXs.
    pub sdp_ip: IpAddr,
    /// WebRTC settings without ICE servers (those come with each reservation).
    pub peer: PeerSettings,
    /// The media engine every call's media lives in.
    pub media: crate::media::engine::MediaEngine,
    pub cmds: mpsc::UnboundedSender<DialogCommand>,
    pub records: Records,
    /// What calls read from the configuration, swapped on reload.
    pub settings: LiveSettings,
    pub refs: Arc<CallRefs>,
    /// The calls up now (status, metrics, drain).
    pub registry: Arc<super::registry::Registry>,
    /// Stopping: no new calls.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The other instances (nonce use, call counts), when `[cluster] redis` is set.
    pub cluster: Option<Cluster>,
}

impl CallContext {
    pub fn send(&self, cmd: DialogCommand) {
        // The core outlives every call except at shutdown, when nothing is left to tell.
        let _ = self.cmds.send(cmd);
    }

    pub fn done(&self, call: CallRef) {
        self.registry.remove(call);
        self.send(DialogCommand::Forget(call));
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}

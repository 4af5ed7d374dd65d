//! The subscription registry: one record per `subscribeRequest`, its notification channel and
//! the WebSocket currently attached to it. Records are kept after deletion (flagged) so the
//! control API can report them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::carrier::protocol as p;

/// What the socket task of a channel is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    Text(String),
    /// A close frame with this code, then end.
    Close {
        code: u16,
        reason: &'static str,
    },
    /// Drop the connection without a close frame (an abnormal close for the client).
    Abort,
}

#[derive(Debug)]
pub struct WsSlot {
    pub conn_id: u64,
    pub tx: mpsc::UnboundedSender<WsOut>,
}

#[derive(Debug)]
pub struct Subscription {
    pub id: String,
    pub username: String,
    pub channel_id: String,
    pub created: Instant,
    pub last_refresh: Instant,
    pub expires: u32,
    pub refreshes: u64,
    /// Why it was deleted (`unsubscribed`, `gone`, `expired`), if it was.
    pub deleted: Option<&'static str>,
    pub ws: Option<WsSlot>,
    pub ws_connects: u64,
    pub pings: u64,
    pub conn_acks: u64,
    pub notifications_sent: u64,
    pub notifications_dropped: u64,
    seq: u64,
}

impl Subscription {
    pub fn path(&self) -> String {
        format!("{}/{}", p::subscription_path(&self.username), self.id)
    }

    pub fn channel_path(&self) -> String {
        channel_path(&self.username, &self.channel_id)
    }

    pub fn is_live(&self) -> bool {
        self.deleted.is_none()
    }
}

/// `/rest/version/1/user/{username}/websocket/{channel_id}`.
pub fn channel_path(username: &str, channel_id: &str) -> String {
    format!("{}/websocket/{channel_id}", p::user_prefix(username))
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub username: String,
    pub id: String,
    pub subscription: String,
    pub channel: String,
    /// Milliseconds since the simulator started.
    pub created_ms: u64,
    pub expires: u32,
    pub refreshes: u64,
    pub deleted: bool,
    pub deleted_reason: Option<String>,
    pub ws_connected: bool,
    pub ws_connects: u64,
    pub pings: u64,
    pub conn_acks: u64,
    pub notifications_sent: u64,
    pub notifications_dropped: u64,
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    map: HashMap<String, Subscription>,
    seq: u64,
}

impl Subscriptions {
    pub fn create(
        &mut self,
        id: String,
        channel_id: String,
        username: &str,
        expires: u32,
        now: Instant,
    ) -> &Subscription {
        self.seq += 1;
        let sub = Subscription {
            id: id.clone(),
            username: username.into(),
            channel_id,
            created: now,
            last_refresh: now,
            expires,
            refreshes: 0,
            deleted: None,
            ws: None,
            ws_connects: 0,
            pings: 0,
            conn_acks: 0,
            notifications_sent: 0,
            notifications_dropped: 0,
            seq: self.seq,
        };
        self.map.entry(id).or_insert(sub)
    }

    /// A live subscription of this user.
    pub fn live_mut(&mut self, username: &str, id: &str) -> Option<&mut Subscription> {
        self.map
            .get_mut(id)
            .filter(|s| s.is_live() && s.username == username)
    }

    pub fn by_channel_mut(
        &mut self,
        username: &str,
        channel_id: &str,
    ) -> Option<&mut Subscription> {
        self.map
            .values_mut()
            .find(|s| s.is_live() && s.username == username && s.channel_id == channel_id)
    }

    /// The newest live subscription of a user: where its call notifications go.
    pub fn current_mut(&mut self, username: &str) -> Option<&mut Subscription> {
        self.map
            .values_mut()
            .filter(|s| s.is_live() && s.username == username)
            .max_by_key(|s| s.seq)
    }

    /// Marks it deleted and hands back its socket (to be closed by the caller).
    pub fn delete(&mut self, id: &str, reason: &'static str) -> Option<WsSlot> {
        let s = self.map.get_mut(id)?;
        s.deleted = Some(reason);
        s.ws.take()
    }

    pub fn live_ids(&self, username: Option<&str>) -> Vec<String> {
        self.map
            .values()
            .filter(|s| s.is_live() && username.is_none_or(|u| u == s.username))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Live subscriptions not refreshed within their `expires`.
    pub fn expired_ids(&self, now: Instant) -> Vec<String> {
        self.map
            .values()
            .filter(|s| {
                s.is_live()
                    && now.saturating_duration_since(s.last_refresh)
                        > Duration::from_secs(u64::from(s.expires))
            })
            .map(|s| s.id.clone())
            .collect()
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Subscription> {
        self.map.get_mut(id)
    }

    pub fn views(&self, started: Instant) -> Vec<SubscriptionView> {
        let mut subs: Vec<&Subscription> = self.map.values().collect();
        subs.sort_by_key(|s| s.seq);
        subs.into_iter()
            .map(|s| SubscriptionView {
                username: s.username.clone(),
                id: s.id.clone(),
                subscription: s.path(),
                channel: s.channel_path(),
                created_ms: s.created.saturating_duration_since(started).as_millis() as u64,
                expires: s.expires,
                refreshes: s.refreshes,
                deleted: s.deleted.is_some(),
                deleted_reason: s.deleted.map(str::to_string),
                ws_connected: s.ws.is_some(),
                ws_connects: s.ws_connects,
                pings: s.pings,
                conn_acks: s.conn_acks,
                notifications_sent: s.notifications_sent,
                notifications_dropped: s.notifications_dropped,
            })
            .collect()
    }
}

impl Subscriptions {
    /// The user of the newest live subscription.
    pub fn newest_live_user(&self) -> Option<String> {
        self.map
            .values()
            .filter(|s| s.is_live())
            .max_by_key(|s| s.seq)
            .map(|s| s.username.clone())
    }

    /// The subscription owning a channel, live or not (socket bookkeeping).
    pub fn channel_any_mut(&mut self, channel_id: &str) -> Option<&mut Subscription> {
        self.map.values_mut().find(|s| s.channel_id == channel_id)
    }
}

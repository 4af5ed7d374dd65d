//! The carrier leg: the Kandy Link client (subscription, notification WebSocket, call control)
//! that the call module uses to reach the WebRTC carrier.

pub mod protocol;

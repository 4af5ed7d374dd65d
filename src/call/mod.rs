//! Calls: the per-call logic of the B2BUA. For now the RFC 4028 session timer (`session_timer`).

pub mod session_timer;

//! SIP over UDP toward the PBX: parsing, transactions, digest authentication, the registrar,
//! and the endpoint core that ties them together without doing any I/O itself.

pub mod auth;
pub mod client_auth;
mod deadlines;
pub mod digest;
pub mod endpoint;
pub mod grammar;
pub mod message;
pub mod nonce;
pub mod parse;
pub mod registrar;
pub mod response;
pub mod security;
pub mod stats;
pub mod transaction;
pub mod transport;
pub mod tu;

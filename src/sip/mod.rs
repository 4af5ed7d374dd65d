//! SIP over UDP toward the PBX: parsing, transactions, digest authentication, the registrar,
//! and the endpoint core that ties them together without doing any I/O itself.

pub(crate) mod auth;
pub mod client_auth;
mod deadlines;
pub mod digest;
pub mod endpoint;
pub(crate) mod grammar;
pub(crate) mod message;
pub(crate) mod nonce;
pub mod parse;
pub mod registrar;
pub(crate) mod response;
pub(crate) mod route;
pub(crate) mod security;
pub(crate) mod shared;
pub mod stats;
pub(crate) mod transaction;
pub(crate) mod transport;
pub(crate) mod tu;

//! Dialled and calling numbers: normalisation and the destination policy.
//!
//! Every number that reaches the carrier passes through here: [`NumberPolicy::check`]
//! turns the Request-URI (or To) user part into one canonical, validated number and
//! decides whether it may be called (toll-fraud protection), and
//! `NumberPolicy::caller_id` (crate-internal) picks and normalises the calling number. Parsing and
//! validation use the `phonenumber` crate's libphonenumber metadata; call [`warm_up`]
//! at start so the first call does not load it. Pure logic: no I/O, no logging (the
//! caller logs and counts a [`Refusal`] by its [`RefusalCause`]).
//!
//! - `normalize`: URI and header parsing, cleaning, reading and formatting numbers.
//! - `classify`: validity and number type on the metadata, with full-pattern matches.
//! - `policy`: the policy built from it, and the verdicts.
//! - `caller_id`: choosing and normalising the caller's number, privacy.
//! - `report`: the `trunkgate number` admin command's output.

mod caller_id;
mod classify;
mod normalize;
mod policy;
mod report;
#[cfg(test)]
mod tests;

pub use crate::config::{NumberKind, NumbersConfig, NumbersOverride, OutputFormat};
#[cfg(test)]
pub(crate) use caller_id::CallerIdSource;
pub(crate) use caller_id::{CallerId, CallerIdInput};
pub use normalize::warm_up;
pub use policy::{
    Destination, NumberPolicy, NumbersError, Refusal, RefusalCause, Special, Verdict,
};
pub use report::report;

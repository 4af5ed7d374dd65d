//! Operations: call records on disk (`cdr`), the status, metrics and health endpoints (`http`,
//! `metrics`).

pub mod cdr;
pub mod http;
pub mod metrics;

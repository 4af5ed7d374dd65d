//! Log output set-up: `tracing` with the level from the config, overridable by `RUST_LOG`.
//!
//! On stderr: human-readable text (coloured on a terminal), or one JSON object per line with
//! `[log] format = "json"`. Under journald (`JOURNAL_STREAM` names stderr's device and inode)
//! lines carry no timestamp (the journal has its own) and start with a syslog priority prefix
//! (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug and trace), so `journalctl -p warning`
//! selects by level.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The WebRTC stack (str0m and its ICE, DTLS and SRTP crates) logs every step at debug and
/// some at info: quiet unless asked for by name.
const QUIET: &[&str] = &["str0m", "str0m_proto", "str0m_aws_lc_rs", "is", "dimpl"];

/// The STUN/TURN protocol crates log malformed input (anyone's datagrams) at warn: errors only.
const QUIET_TO_ERROR: &[&str] = &[
    "stun_types",
    "stun_proto",
    "turn_types",
    "turn_client_proto",
];

/// The filter for a configured level: the level, plus `warn` for the WebRTC crates unless the
/// level names them itself.
fn directives(level: &str) -> String {
    let mut d = level.to_string();
    let quiet = QUIET.iter().map(|t| (t, "warn"));
    let errors_only = QUIET_TO_ERROR.iter().map(|t| (t, "error"));
    for (target, at) in quiet.chain(errors_only) {
        let named = level
            .split(',')
            .any(|part| part.trim().split('=').next() == Some(*target));
        if !named {
            d.push_str(&format!(",{target}={at}"));
        }
    }
    d
}

/// Installs the global subscriber once (text format); later calls (tests) are ignored.
pub fn init(level: &str) {
    install(level, LogFormat::Text);
}

/// Installs the global subscriber from `[log]`; later calls are ignored.
pub fn init_config(log: &LogConfig) {
    install(&log.level, log.format);
}

fn install(level: &str, log_format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = stderr_is_journal();
    let base = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::stderr().is_terminal());
    let _ = match (log_format, journald) {
        (LogFormat::Text, false) => base.try_init(),
        (LogFormat::Text, true) => base
            .event_format(Journald(format().without_time()))
            .try_init(),
        (LogFormat::Json, false) => base
            .event_format(format().json().flatten_event(true))
            .fmt_fields(JsonFields::new())
            .try_init(),
        (LogFormat::Json, true) => base
            .event_format(Journald(format().json().flatten_event(true).without_time()))
            .fmt_fields(JsonFields::new())
            .try_init(),
    };
}

fn format() -> format::Format {
    format::Format::default()
}

/// True when stderr is the journal stream systemd connected us to: `JOURNAL_STREAM` is
/// `<device>:<inode>` of that stream, and a redirected stderr (a file, a pipe) no longer
/// matches it even though the variable is inherited.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stderr_dev_ino() else {
        return false;
    };
    journal_stream_matches(&var.to_string_lossy(), dev, ino)
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether a `JOURNAL_STREAM` value names this device and inode.
fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The syslog priority journald reads from a line's `<N>` prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Wraps a formatter: every output line (a multi-line message included) starts with the
/// event's syslog priority, so journald files each line at the right level.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let prio = syslog_priority(*event.metadata().level());
        let mut out = String::with_capacity(line.len() + 4);
        for l in line.lines() {
            let _ = writeln!(out, "<{prio}>{l}");
        }
        writer.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_value_is_device_colon_inode() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("garbage", 8, 12345));
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
        assert_eq!(syslog_priority(Level::TRACE), 7);
    }
}

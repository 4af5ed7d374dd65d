//! The configuration file: its typed schema (every key documented in `conf/trunkgate.toml`),
//! defaults, and whole-file validation whose errors name the key path, line and column.
//!
//! Loading is two steps: `toml` deserialises into structs with `deny_unknown_fields` (a typo is
//! an error, never silently ignored), then `validate` checks the file as a whole and reports
//! every semantic error at once. Spans come from `toml_edit`'s view of the same text.

mod calls;
mod carrier;
mod cluster;
mod locate;
mod numbers;
mod ops;
mod schema;
mod security;

pub use calls::*;
pub use carrier::*;
pub use cluster::*;
pub use numbers::*;
pub use ops::*;
pub use schema::*;
pub use security::*;

use std::path::{Path, PathBuf};
use thiserror::Error;

/// One problem in the file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `trunks[1].ha1`.
    pub key: String,
    /// 1-based line and column, when the key (or its table) is in the file.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, for the admin to read.
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
            (Some(l), None) => write!(f, "line {l}: ")?,
            _ => {}
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file given.
        path: PathBuf,
        /// The I/O error reading it.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration: every problem found, not only the
    /// first.
    #[error("{}", render(.path, .issues))]
    Invalid {
        /// The file given.
        path: PathBuf,
        /// Every problem, each with its key path and position.
        issues: Vec<ConfigIssue>,
    },
}

fn render(path: &Path, issues: &[ConfigIssue]) -> String {
    let mut s = format!(
        "{}: {} error{}",
        path.display(),
        issues.len(),
        if issues.len() == 1 { "" } else { "s" }
    );
    for i in issues {
        s.push_str(&format!("\n  {}: {i}", path.display()));
    }
    s
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|issues| ConfigError::Invalid {
            path: path.to_path_buf(),
            issues,
        })
    }

    /// Parses and validates TOML text; all problems found are returned together.
    pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigIssue>> {
        let doc = toml_edit::ImDocument::parse(text.to_string()).ok();
        let config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                let (line, column, key) = match e.span() {
                    Some(span) => {
                        let (l, c) = locate::line_col(text, span.start);
                        let key = doc
                            .as_ref()
                            .map(|d| locate::key_at(d, span.start))
                            .unwrap_or_default();
                        (Some(l), Some(c), key)
                    }
                    None => (None, None, String::new()),
                };
                return Err(vec![ConfigIssue {
                    key,
                    line,
                    column,
                    message: e.message().trim().to_string(),
                }]);
            }
        };
        let problems = config.validate();
        if problems.is_empty() {
            return Ok(config);
        }
        Err(problems
            .into_iter()
            .map(|(key, message)| {
                let pos = doc
                    .as_ref()
                    .and_then(|d| locate::span_of(d, &key))
                    .map(|off| locate::line_col(text, off));
                ConfigIssue {
                    key,
                    line: pos.map(|p| p.0),
                    column: pos.map(|p| p.1),
                    message,
                }
            })
            .collect())
    }

    /// A one-line summary for `check-config` and the start-up log.
    pub fn summary(&self) -> String {
        format!(
            "listen udp {}, realm {:?}, {} trunk{} ({}), digest {}",
            self.sip.listen,
            self.sip.realm,
            self.trunks.len(),
            if self.trunks.len() == 1 { "" } else { "s" },
            self.trunks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.sip.digest_algorithms.join("/"),
        )
    }
}

#[cfg(test)]
mod tests;

//! Call records on disk: one JSON line per call attempt appended to `[cdr] path`, each written
//! with its own `write` as the call ends, so a crash or `kill -9` loses no completed record. A
//! writer thread owns the file; SIGHUP reopens it (the operator rotates by renaming the file
//! and reloading). A record that cannot be written is logged whole at error level rather than
//! dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tracing::{error, info};

use crate::call::record::{CallRecord, RecordSink};

enum Msg {
    Record(Box<CallRecord>),
    Reopen,
    /// Answered once every record before it is written.
    Flush(mpsc::Sender<()>),
}

/// The sink the calls write to; cheap to share.
pub struct CdrWriter {
    tx: mpsc::Sender<Msg>,
}

#[derive(Debug, thiserror::Error)]
#[error("cdr.path {path}: {source}")]
pub struct CdrError {
    path: PathBuf,
    source: std::io::Error,
}

fn open(path: &Path) -> Result<File, CdrError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| CdrError {
            path: path.to_path_buf(),
            source,
        })
}

impl CdrWriter {
    /// Opens (creating) the file now, so a bad path fails the start, not the first call.
    pub fn start(path: &Path) -> Result<CdrWriter, CdrError> {
        let file = open(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || writer(path, file, rx))
            .map_err(|source| CdrError {
                path: PathBuf::from("(writer thread)"),
                source,
            })?;
        Ok(CdrWriter { tx })
    }

    fn send(&self, m: Msg) {
        if let Err(mpsc::SendError(Msg::Record(r))) = self.tx.send(m) {
            lost(&r, "the writer has stopped");
        }
    }

    /// Reopens the file (after rotation).
    pub fn reopen(&self) {
        self.send(Msg::Reopen);
    }

    /// Waits until every record handed over so far is written.
    pub fn flush(&self) {
        let (ack, done) = mpsc::channel();
        self.send(Msg::Flush(ack));
        let _ = done.recv_timeout(std::time::Duration::from_secs(5));
    }
}

impl RecordSink for CdrWriter {
    fn record(&self, record: CallRecord) {
        self.send(Msg::Record(Box::new(record)));
    }
}

fn lost(record: &CallRecord, why: &str) {
    let json = serde_json::to_string(record).unwrap_or_default();
    error!(target: "trunkgate::cdr", why, record = %json, "call record not written to the file");
}

fn writer(path: PathBuf, mut file: File, rx: mpsc::Receiver<Msg>) {
    for msg in rx {
        match msg {
            Msg::Record(r) => {
                let mut line = match serde_json::to_string(&r) {
                    Ok(l) => l,
                    Err(e) => {
                        error!(error = %e, id = r.id, "call record not serialisable");
                        continue;
                    }
                };
                line.push('\n');
                if let Err(e) = file.write_all(line.as_bytes()) {
                    lost(&r, &e.to_string());
                }
            }
            Msg::Reopen => match open(&path) {
                Ok(f) => {
                    file = f;
                    info!(path = %path.display(), "call record file reopened");
                }
                Err(e) => {
                    error!(error = %e, "call record file not reopened; still writing the old one")
                }
            },
            Msg::Flush(ack) => {
                let _ = file.flush();
                let _ = ack.send(());
            }
        }
    }
}

/// Several sinks as one (the file and the metrics).
pub struct Fanout(pub Vec<std::sync::Arc<dyn RecordSink>>);

impl RecordSink for Fanout {
    fn record(&self, record: CallRecord) {
        if let Some((last, rest)) = self.0.split_last() {
            for s in rest {
                s.record(record.clone());
            }
            last.record(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::CallDirection;

    #[test]
    fn records_are_lines_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdr.jsonl");
        let w = CdrWriter::start(&path).unwrap();
        w.record(CallRecord::new(
            crate::sip::tu::CallRef(1),
            CallDirection::Outbound,
            "0501234567",
        ));
        w.flush();
        std::fs::rename(&path, dir.path().join("cdr.1")).unwrap();
        w.reopen();
        w.record(CallRecord::new(
            crate::sip::tu::CallRef(2),
            CallDirection::Inbound,
            "+97142001000",
        ));
        w.flush();
        let old = std::fs::read_to_string(dir.path().join("cdr.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let id = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone();
        assert_eq!(old.lines().map(id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(new.lines().map(id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn an_unwritable_path_fails_at_start_naming_the_key() {
        let e = CdrWriter::start(Path::new("/nonexistent-dir/cdr.jsonl"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("cdr.path /nonexistent-dir/cdr.jsonl"),
            "{e}"
        );
    }
}

//! The service side: the systemd unit passes `systemd-analyze verify` and `security`, the
//! daemon speaks the sd_notify protocol (READY, STATUS, WATCHDOG, STOPPING) to a socket the
//! test binds, and its logs follow journald's conventions or come as JSON lines.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{repo_root, trunk, Daemon, DaemonConfig};

/// A password that must never show up in any log line.
const PASSWORD: &str = "pw-7c1e9f0a5d";

fn one_trunk() -> String {
    trunk("t0", "user0", PASSWORD)
}

/// Runs a command with a deadline; `None` when it could not be started (not installed).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Some(out.expect("wait for command")),
        Err(_) => {
            // SAFETY: kill(2) on the child we spawned; no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn unit_file_verifies_and_exposure_is_at_most_2() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/trunkgate.service"))
        .expect("systemd/trunkgate.service");
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "ExecStart=/usr/local/bin/trunkgate run --config /etc/trunkgate/trunkgate.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "unit lacks {line:?}"
        );
    }
    let Some(version) = run_bounded(
        Command::new("systemd-analyze").arg("--version"),
        Duration::from_secs(30),
    ) else {
        eprintln!(
            "SKIP unit_file_verifies_and_exposure_is_at_most_2: systemd-analyze not installed"
        );
        return;
    };
    eprintln!("{}", text(&version).lines().next().unwrap_or(""));

    // verify insists that ExecStart's binary exists: the copy points at the one just built,
    // everything else is the unit as shipped
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("trunkgate.service");
    let exec = unit.replace(
        "ExecStart=/usr/local/bin/trunkgate ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_trunkgate")),
    );
    std::fs::write(&copy, exec).expect("write unit copy");

    let verify = run_bounded(
        Command::new("systemd-analyze").arg("verify").arg(&copy),
        Duration::from_secs(60),
    )
    .expect("systemd-analyze verify");
    let out = text(&verify);
    let complaints: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("trunkgate.service"))
        .collect();
    assert!(
        verify.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}\n{out}",
        verify.status
    );

    let security = run_bounded(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&copy),
        Duration::from_secs(60),
    )
    .expect("systemd-analyze security");
    let out = text(&security);
    if !security.status.success() && out.contains("--offline") {
        eprintln!("SKIP exposure check: this systemd-analyze has no --offline ({out})");
        return;
    }
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{out}"));
    // "→ Overall exposure level for trunkgate.service: 1.5 OK 🙂" (":-)" without a UTF-8
    // locale): the first number after "level".
    let score: f64 = line
        .split("level")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == ':')
                .find_map(|t| t.parse().ok())
        })
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    eprintln!("{}", line.trim());
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{out}");
}

/// Datagrams received on the notify socket, in order.
struct NotifySocket {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(dir.join("notify.sock")).expect("bind notify socket");
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a datagram satisfying `pred`; returns it.
    fn wait_for(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.socket.set_read_timeout(Some(left)).ok()?;
            let Ok(n) = self.socket.recv(&mut buf) else {
                break;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if pred(&msg) {
                return Some(msg);
            }
        }
        None
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[test]
fn notify_socket_gets_ready_watchdog_and_stopping() {
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let mut notify = NotifySocket::bind(sock_dir.path());
    let path = sock_dir.path().join("notify.sock");
    let tables = one_trunk();
    let config = DaemonConfig {
        tables: &tables,
        ..DaemonConfig::default()
    };
    let mut d = Daemon::start_config(&config, |_| {
        vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            // WATCHDOG_PID absent: the watchdog applies to the process that reads it
            ("WATCHDOG_USEC".into(), "2000000".into()),
        ]
    });

    let ready = notify
        .wait_for(Duration::from_secs(10), |m| has_line(m, "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1; got {:?}\n{}", notify.seen, d.log()));
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY without STATUS: {ready:?}"));
    assert!(
        status.contains("0/1 trunk registered") && status.contains("0 active calls"),
        "{status}"
    );

    // WATCHDOG_USEC = 2 s: a ping every second while the SIP loop runs
    let start = Instant::now();
    for n in 1..=2 {
        notify
            .wait_for(Duration::from_secs(4), |m| has_line(m, "WATCHDOG=1"))
            .unwrap_or_else(|| panic!("watchdog ping {n} missing; got {:?}", notify.seen));
    }
    assert!(start.elapsed() < Duration::from_secs(5));

    d.signal(libc::SIGTERM);
    notify
        .wait_for(Duration::from_secs(10), |m| has_line(m, "STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1; got {:?}\n{}", notify.seen, d.log()));
    let status = d.wait_exit(Duration::from_secs(15)).expect("daemon exits");
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(!d.log().contains(PASSWORD));
}

/// Starts the daemon with a notify socket and waits for READY=1 (sent once SIGTERM is caught).
/// The socket's directory lives as long as the returned guard.
fn start_ready(
    log_extra: &str,
    env: Vec<(String, String)>,
    journal: bool,
) -> (Daemon, tempfile::TempDir) {
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let mut notify = NotifySocket::bind(sock_dir.path());
    let path = sock_dir.path().join("notify.sock");
    let tables = one_trunk();
    let config = DaemonConfig {
        log: log_extra,
        tables: &tables,
        ..DaemonConfig::default()
    };
    let d = Daemon::start_config(&config, |dir| {
        let mut env = env;
        env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
        if journal {
            let meta = std::fs::metadata(dir.join("daemon.log")).expect("log file");
            env.push((
                "JOURNAL_STREAM".into(),
                format!("{}:{}", meta.dev(), meta.ino()),
            ));
        }
        env
    });
    notify
        .wait_for(Duration::from_secs(10), |m| has_line(m, "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1; got {:?}\n{}", notify.seen, d.log()));
    (d, sock_dir)
}

/// Stops the daemon and returns its stderr, one entry per line.
fn stop_and_log(mut d: Daemon) -> Vec<String> {
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(15)).expect("daemon exits");
    assert!(status.success(), "{status}\n{}", d.log());
    let log = d.log();
    assert!(!log.contains(PASSWORD), "a secret in the log:\n{log}");
    log.lines().map(str::to_string).collect()
}

/// An RFC 3339 date-time (`2026-11-21T07:38:10...`) anywhere in the line.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(11).any(|w| {
        w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[7] == b'-'
            && w[8..10].iter().all(u8::is_ascii_digit)
            && w[10] == b'T'
    })
}

#[test]
fn journald_stream_gets_priority_prefixes_and_no_timestamps() {
    let (d, _sock) = start_ready("", Vec::new(), true);
    let lines = stop_and_log(d);
    assert!(!lines.is_empty());
    for line in &lines {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&prio),
            "no priority prefix: {line:?}"
        );
        assert!(!has_timestamp(line), "timestamp under journald: {line:?}");
        assert!(!line.contains('\x1b'), "colour under journald: {line:?}");
    }
    let with = |p: &str| lines.iter().any(|l| l.starts_with(p));
    // info (ready, stopped) and warn (no [carrier]); the debug and error prefixes are
    // unit-tested in src/logging.rs
    assert!(with("<6>") && with("<4>"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("no [carrier] configured")),
        "{lines:#?}"
    );
}

#[test]
fn json_format_gives_one_object_per_line() {
    // a JOURNAL_STREAM that is not our stderr (inherited, then redirected) changes nothing
    let (d, _sock) = start_ready(
        "format = \"json\"",
        vec![("JOURNAL_STREAM".into(), "0:0".into())],
        false,
    );
    let lines = stop_and_log(d);
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "no {key:?} in {line}");
        }
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    assert!(messages.iter().any(|m| m.contains("ready")), "{lines:#?}");
    assert!(messages.iter().any(|m| m == "stopped"), "{lines:#?}");
}

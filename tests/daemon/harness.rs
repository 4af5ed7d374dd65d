//! Starting the daemon on free loopback ports with a generated configuration, running the
//! binary's other commands, and the small waits and paths every test shares.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sip_client::SipClient;
use crate::sipp::SippRun;

pub const REALM: &str = "trunkgate.test";

/// A free UDP port on 127.0.0.1 (bound and released; the tiny reuse race is acceptable here).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Test data carried in the repository (RFC 4475 messages, digest vectors).
pub fn data_dir() -> PathBuf {
    repo_root().join("tests").join("data")
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `f` every 25 ms until it gives a value or `timeout` has passed (then `None`).
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A `[[trunks]]` block with a password.
pub fn trunk(name: &str, user: &str, password: &str) -> String {
    format!(
        "[[trunks]]\nname = \"{name}\"\nauth_username = \"{user}\"\npassword = \"{password}\"\n"
    )
}

/// Runs `trunkgate ARGS` to its end: (exit code, stdout, stderr).
pub fn trunkgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trunkgate"))
        .args(args)
        .output()
        .expect("run trunkgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `config` to the file `config` and spawns `trunkgate COMMAND --config` on it, stderr
/// into the file `log`, the variables `remove` removed from its environment and those `env`
/// gives (once the log file exists) set.
pub fn spawn_trunkgate(
    command: &str,
    (config, text): (&Path, &str),
    log: &Path,
    remove: &[&str],
    env: impl FnOnce() -> Vec<(String, String)>,
) -> Child {
    std::fs::write(config, text).expect("write the configuration");
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trunkgate"));
    cmd.args([command, "--config"]).arg(config);
    for key in remove {
        cmd.env_remove(key);
    }
    cmd.envs(env())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn trunkgate {command}: {e}"))
}

/// Kills and reaps a child we spawned.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    child: Child,
    pub sip: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// What a daemon is configured with besides its SIP address, realm, call records and status
/// endpoint; `..DaemonConfig::default()` for the rest.
#[derive(Default)]
pub struct DaemonConfig<'a> {
    /// Lines in `[log]`.
    pub log: &'a str,
    /// Lines in `[sip]`.
    pub sip: &'a str,
    /// `[status] listen`: a fixed port (for the command line, which finds the endpoint in the
    /// config file); a free one by default.
    pub status_listen: Option<&'a str>,
    /// What follows: `[[trunks]]` blocks and any other tables.
    pub tables: &'a str,
    /// The loopback address `[sip] listen` binds (127.0.0.1 by default; the cluster tests put
    /// each instance on its own).
    pub ip: Option<std::net::Ipv4Addr>,
}

impl Daemon {
    /// Starts the daemon with `[sip]` extra lines and `[[trunks]]` blocks appended to a minimal
    /// loopback config. Waits (bounded) until it answers OPTIONS.
    pub fn start(sip_extra: &str, trunks: &str) -> Daemon {
        Daemon::start_config(
            &DaemonConfig {
                sip: sip_extra,
                tables: trunks,
                ..DaemonConfig::default()
            },
            |_| Vec::new(),
        )
    }

    /// One trunk `t0` / `user0` / `secret`, default settings otherwise.
    pub fn start_default() -> Daemon {
        Daemon::start("", &trunk("t0", "user0", "secret"))
    }

    /// The daemon as `c` configures it, with extra environment variables; `env` is given the
    /// temporary directory (which holds `daemon.log`, stderr) before the daemon is spawned.
    pub fn start_config(
        c: &DaemonConfig,
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Daemon {
        let port = free_udp_port();
        let ip = c.ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let dir = tempfile::tempdir().expect("tempdir");
        let cdr = dir.path().join("cdr.jsonl");
        let config = format!(
            "[log]\nlevel = \"debug\"\n{}\n\n[sip]\nlisten = \"{ip}:{port}\"\nrealm = \"{REALM}\"\n{}\n\n\
             [cdr]\npath = \"{}\"\n\n[status]\nlisten = \"{}\"\n\n{}\n",
            c.log,
            c.sip,
            cdr.display(),
            c.status_listen.unwrap_or("127.0.0.1:0"),
            c.tables
        );
        // the daemon must not talk to this machine's systemd or journal
        let systemd = [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
        ];
        let file = dir.path().join("trunkgate.toml");
        let log = dir.path().join("daemon.log");
        let child = spawn_trunkgate("run", (&file, &config), &log, &systemd, || {
            let mut vars = vec![("RUST_LOG".to_string(), "trunkgate=debug".to_string())];
            vars.extend(env(dir.path()));
            vars
        });
        let d = Daemon {
            child,
            sip: SocketAddr::from((ip, port)),
            dir,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let client = SipClient::new(self.sip);
        let answered = wait_until(Duration::from_secs(15), || {
            let r = client.exchange_within(&client.options(&[]), Duration::from_millis(200))?;
            // 503: serving, but no call could leave yet (no carrier account subscribed)
            (r.starts_with("SIP/2.0 200") || r.starts_with("SIP/2.0 503")).then_some(())
        });
        if answered.is_none() {
            panic!(
                "daemon did not answer OPTIONS within 15 s; log:\n{}",
                self.log()
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The call record file of this daemon.
    pub fn cdr_path(&self) -> PathBuf {
        self.dir.path().join("cdr.jsonl")
    }

    /// The call records written so far, one JSON value per line.
    pub fn cdrs(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.cdr_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("CDR line {l:?}: {e}")))
            .collect()
    }

    /// The status endpoint's address, from the start log line.
    pub fn status_addr(&self) -> SocketAddr {
        let log = self.log();
        let at = log
            .find(" status=")
            .unwrap_or_else(|| panic!("no status= in the log:\n{}", tail(&log, 20)));
        let rest = &log[at + 8..];
        let end = rest.find([' ', '\n']).unwrap_or(rest.len());
        rest[..end].parse().expect("status address")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("trunkgate.toml")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...) to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// The exit status once the daemon has exited, waiting at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.child.try_wait().ok().flatten())
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
            panic!(
                "daemon did not stop within 15 s of SIGTERM; log:\n{}",
                self.log()
            )
        })
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        if wait_until(Duration::from_secs(15), || {
            self.log().contains(needle).then_some(())
        })
        .is_none()
        {
            panic!(
                "log never showed {needle:?}; log:\n{}",
                tail(&self.log(), 40)
            );
        }
    }

    /// Asserts a sipp run succeeded, with its description and the daemon log otherwise.
    pub fn assert_sipp_ok(&self, run: &SippRun, what: &str) {
        run.assert_ok(
            what,
            &format!("daemon log (tail):\n{}", tail(&self.log(), 60)),
        );
    }

    /// Asserts the log records `event` (an authentication failure, say) and never `secret`.
    pub fn assert_logged_without_secret(&self, event: &str, secret: &str) {
        let log = self.log();
        assert!(
            log.contains(event),
            "{event:?} not logged:\n{}",
            tail(&log, 20)
        );
        assert!(!log.contains(secret), "secret leaked into the log");
    }

    /// `trunkgate ARGS --config` this daemon's file.
    pub fn command(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.config_path();
        let config = config.to_str().expect("a UTF-8 path");
        trunkgate(&[args, &["--config", config]].concat())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

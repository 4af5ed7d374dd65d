//! The one sipp runner: a scenario (from tests/sipp, or one a test wrote) as a child process on
//! loopback SIP and media ports, bounded by sipp's own `-timeout` and by a deadline after which
//! it is killed; what it left (exit status, screen, error file, `<log>` lines) kept for the
//! failure message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_udp_port, repo_root, tail};

pub fn sipp_dir() -> PathBuf {
    repo_root().join("tests").join("sipp")
}

/// Whether sipp is installed (the suite's entry script installs it; this makes a clear failure).
pub fn require_sipp() {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "sipp is not installed: run the README's test command, which installs Debian's sip-tester"
    );
}

/// A free even UDP port whose +1 and +2 are free too (sipp binds its media port and the +2
/// "video" port).
pub fn free_media_port() -> u16 {
    for _ in 0..50 {
        let p = free_udp_port() & !1;
        let ok = [p, p + 1, p + 2]
            .iter()
            .all(|&q| std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free media port triple on loopback");
}

/// An injection file (`-inf`) with one line of `[authentication]` credentials for `from_user`,
/// written into `dir`; its path.
pub fn auth_csv(dir: &Path, from_user: &str, auth_user: &str, password: &str) -> String {
    let p = dir.join(format!("{from_user}-{auth_user}.csv"));
    let text = format!(
        "SEQUENTIAL\n{from_user};[authentication username={auth_user} password={password}]\n"
    );
    std::fs::write(&p, text).expect("write the injection file");
    p.to_string_lossy().into_owned()
}

/// How sipp is to be started: a scenario, a target (none for a UAS), ports and arguments.
#[derive(Debug, Clone)]
pub struct Scenario {
    path: PathBuf,
    target: Option<SocketAddr>,
    sip_port: u16,
    media_port: u16,
    args: Vec<String>,
}

impl Scenario {
    /// `scenario` (a file in tests/sipp, or a path) calling `target`, on free ports.
    pub fn uac(scenario: impl AsRef<Path>, target: SocketAddr) -> Scenario {
        Scenario {
            target: Some(target),
            ..Scenario::uas(scenario, free_udp_port())
        }
    }

    /// `scenario` waiting for requests on `sip_port`.
    pub fn uas(scenario: impl AsRef<Path>, sip_port: u16) -> Scenario {
        Scenario {
            path: sipp_dir().join(scenario),
            target: None,
            sip_port,
            media_port: free_media_port(),
            args: Vec::new(),
        }
    }

    /// Calls `dialled` (`-s`, the Request-URI user) answering challenges as `user`/`password`
    /// (`-au`/`-ap`). sipp 3.6 would sign `sip:{remote_ip}:{remote_port}`, and the daemon binds
    /// a digest to the Request-URI (RFC 3261 22.4), so `-auth_uri` names it.
    pub fn dial(self, dialled: &str, user: &str, password: &str) -> Scenario {
        let target = self.target.expect("a UAC scenario dials");
        let auth_uri = format!("{dialled}@{target}");
        self.args(&["-s", dialled, "-au", user, "-ap", password])
            .args(&["-auth_uri", &auth_uri])
    }

    pub fn args(mut self, args: &[&str]) -> Scenario {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `calls` calls, all at once (`-m`, `-l`, `-r`); one call otherwise.
    pub fn calls(self, calls: u32) -> Scenario {
        let n = calls.to_string();
        self.args(&["-m", &n, "-l", &n, "-r", &n])
    }

    pub fn media_port(mut self, port: u16) -> Scenario {
        self.media_port = port;
        self
    }

    pub fn sip_port(mut self, port: u16) -> Scenario {
        self.sip_port = port;
        self
    }

    /// Starts sipp with sipp's own `-timeout` a little under `max`, after which it is killed.
    pub fn spawn(self, max: Duration) -> Sipp {
        require_sipp();
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("a sipp file");
        let sip = self.sip_port.to_string();
        let media = self.media_port.to_string();
        let timeout = format!("{}s", max.as_secs().saturating_sub(5).max(5));
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf").arg(&self.path);
        cmd.args(self.target.map(|t| t.to_string()))
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &sip,
                "-mi",
                "127.0.0.1",
                "-mp",
                &media,
            ])
            .args(["-nostdin", "-timeout", &timeout, "-timeout_error"])
            // a PBX answers the OPTIONS that qualify its registration (sipp: 200 to an
            // OPTIONS, INFO, NOTIFY or UPDATE outside the scenario)
            .arg("-aa")
            .args(["-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"))
            .args(["-trace_logs", "-log_file"])
            .arg(dir.path().join("scenario.log"))
            .args(&self.args)
            .args(if self.args.iter().any(|a| a == "-m") {
                &[][..]
            } else {
                &["-m", "1"][..]
            })
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"));
        let child = cmd.spawn().expect("run sipp");
        Sipp {
            child: Some(child),
            scenario: self,
            dir,
            deadline: Instant::now() + max,
        }
    }

    /// Runs sipp to its end (at most `max`).
    pub fn run(self, max: Duration) -> SippRun {
        self.spawn(max).wait()
    }
}

/// sipp running as a child process; killed when dropped.
pub struct Sipp {
    child: Option<Child>,
    pub scenario: Scenario,
    dir: tempfile::TempDir,
    deadline: Instant,
}

impl Sipp {
    pub fn sip_port(&self) -> u16 {
        self.scenario.sip_port
    }

    /// Whether sipp is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The `<log>` lines written so far.
    pub fn log_so_far(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scenario.log")).unwrap_or_default()
    }

    /// Waits until sipp exits, killing it at the deadline.
    pub fn wait(mut self) -> SippRun {
        let mut child = self.child.take().expect("sipp child");
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break format!("{s}");
            }
            if Instant::now() >= self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                break "killed at the test's deadline".to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        SippRun {
            scenario: self.scenario.path.display().to_string(),
            success: status == "exit status: 0",
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            errors: read("errors.log"),
            log: read("scenario.log"),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a finished sipp run left.
#[derive(Debug)]
pub struct SippRun {
    pub scenario: String,
    /// sipp exits 0 only when every call succeeded.
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub errors: String,
    /// The `<log>` lines (the scenario's `-log_file`).
    pub log: String,
}

impl SippRun {
    pub fn describe(&self) -> String {
        format!(
            "{}: status {}\nsipp screen (tail):\n{}\nstderr:\n{}\nerror file (tail):\n{}\nscenario log:\n{}",
            self.scenario,
            self.status,
            // the last scenario screen (message counts per step), not the statistics after it
            tail(
                self.stdout
                    .rsplit_once("Test Terminated")
                    .map_or(self.stdout.as_str(), |(screen, _)| screen),
                40
            ),
            tail(&self.stderr, 10),
            tail(&self.errors, 40),
            self.log
        )
    }

    /// Panics unless the run succeeded, with `context` (a log tail, say) after its description.
    pub fn assert_ok(&self, what: &str, context: &str) {
        assert!(
            self.success,
            "sipp {what} failed:\n{}\n{context}",
            self.describe()
        );
    }

    /// The rest of the first `<log>` line that starts with `prefix`.
    pub fn logged(&self, prefix: &str) -> Option<String> {
        self.log
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .map(|s| s.trim().to_string())
    }

    /// The final response `call_final.xml` logged ("final NNN"), if any.
    pub fn logged_final(&self) -> Option<u16> {
        self.log
            .split("final ")
            .nth(1)
            .and_then(|s| s.get(..3))
            .and_then(|c| c.parse().ok())
    }
}

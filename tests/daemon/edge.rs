//! The cluster's outside pieces as child processes on loopback: Redis (stopped and started
//! again on its port by the tests) and Kamailio running the shipped
//! `conf/kamailio/kamailio.cfg` unmodified, its site values given as `-A` defines, and its
//! dispatcher's view of the instances read with `kamcmd`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{free_tcp_port, free_udp_port, kill, repo_root, tail, wait_until};

/// Where Kamailio listens: an address of its own, so the instances can trust it alone
/// (`[cluster] trusted_proxies`) while sipp, the PBX, stays on 127.0.0.1.
pub const EDGE_IP: [u8; 4] = [127, 0, 0, 4];

/// Seconds between the dispatcher's OPTIONS probes in the tests.
pub const PROBE_INTERVAL_S: u64 = 1;

/// `redis-server` on a free loopback port, without persistence; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_tcp_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.resume();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port, and waits (bounded) until it answers PING.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (tests/run.sh installs it)");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || self.ping().then_some(()));
        assert!(
            up.is_some(),
            "redis-server did not answer PING:\n{}",
            self.log()
        );
    }

    /// Kills it (the data goes with it, as a crashed Redis without persistence loses it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kamailio in the foreground with the shipped configuration, its dispatcher set holding
/// `instances`; stopped when dropped.
pub struct Kamailio {
    child: Child,
    pub sip: SocketAddr,
    dir: tempfile::TempDir,
}

impl Kamailio {
    pub fn start(instances: &[SocketAddr]) -> Kamailio {
        let dir = tempfile::tempdir().expect("tempdir");
        let sip = SocketAddr::from((EDGE_IP, free_udp_port()));
        // flags 9: inactive and probing, so "active" means an instance answered a probe
        let list: String = instances
            .iter()
            .map(|i| format!("1 sip:{i} 9 0\n"))
            .collect();
        let list_file = dir.path().join("dispatcher.list");
        std::fs::write(&list_file, list).expect("write the dispatcher list");
        let ctl = dir.path().join("ctl");
        let log = std::fs::File::create(dir.path().join("kamailio.log")).expect("kamailio log");
        let defines = [
            format!("LISTEN=udp:{sip}"),
            format!("DS_LIST=\"{}\"", list_file.display()),
            format!("CTL_SOCKET=\"unix:{}\"", ctl.display()),
            format!("DS_PING_INTERVAL={PROBE_INTERVAL_S}"),
            "FR_TIMER=1500".to_string(),
            "CHILDREN=2".to_string(),
        ];
        let mut cmd = Command::new("kamailio");
        cmd.args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(Kamailio::config());
        for d in &defines {
            cmd.arg("-A").arg(d);
        }
        let child = cmd
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-Y")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run kamailio (tests/run.sh installs it)");
        let k = Kamailio { child, sip, dir };
        let up = wait_until(Duration::from_secs(15), || k.rpc("core.uptime").map(|_| ()));
        assert!(
            up.is_some(),
            "kamailio did not start:\n{}",
            tail(&k.log(), 40)
        );
        k
    }

    /// The shipped configuration.
    pub fn config() -> PathBuf {
        repo_root()
            .join("conf")
            .join("kamailio")
            .join("kamailio.cfg")
    }

    /// `kamcmd COMMAND` over the control socket: its output, if it ran.
    fn rpc(&self, command: &str) -> Option<String> {
        let ctl = format!("unix:{}", self.dir.path().join("ctl").display());
        let out = Command::new("kamcmd")
            .args(["-s", &ctl, command])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The dispatcher's instances and their flags (`AP` active and probed, `IP` inactive).
    pub fn dispatcher(&self) -> Vec<(String, String)> {
        let out = self.rpc("dispatcher.list").unwrap_or_default();
        let mut uri = None;
        let mut found = Vec::new();
        for line in out.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: ") {
                uri = Some(u.to_string());
            } else if let (Some(f), Some(u)) = (line.strip_prefix("FLAGS: "), uri.take()) {
                found.push((u, f.to_string()));
            }
        }
        found.sort();
        found
    }

    /// The dispatcher's flags for `instance`.
    pub fn flags_of(&self, instance: SocketAddr) -> Option<String> {
        let uri = format!("sip:{instance}");
        self.dispatcher()
            .into_iter()
            .find_map(|(u, f)| (u == uri).then_some(f))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its children; SIGKILL would orphan them
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            kill(&mut self.child);
        }
    }
}

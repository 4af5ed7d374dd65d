//! `trunkgate sim`, the carrier simulator, as its own process on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::harness::{free_tcp_port, kill, spawn_trunkgate, wait_until};
use crate::http::http_json;

/// `trunkgate sim` as its own process, on free loopback ports; killed when dropped.
pub struct SimProcess {
    child: Child,
    pub rest: SocketAddr,
    pub control: SocketAddr,
    pub cert: PathBuf,
    pub dir: tempfile::TempDir,
}

impl SimProcess {
    pub fn start(username: &str, password: &str) -> SimProcess {
        SimProcess::start_with(username, password, "")
    }

    /// As [`SimProcess::start`], with more `[behaviour]` lines (the per-number lists: `busy`,
    /// `no_answer`, `reject`, `tone`, `early_media`, each of E.164 numbers).
    pub fn start_with(username: &str, password: &str, behaviour: &str) -> SimProcess {
        SimProcess::start_full(username, password, "", behaviour)
    }

    /// As [`SimProcess::start_with`], with `top` lines at the top level of its configuration
    /// (`turn_username = "..."`, the TURN credentials the subscription hands out).
    pub fn start_full(username: &str, password: &str, top: &str, behaviour: &str) -> SimProcess {
        // A port found free can be taken by a parallel test before the simulator binds it:
        // then it starts again on other ports.
        let mut attempts = 0;
        loop {
            match SimProcess::try_start(username, password, top, behaviour) {
                Ok(sim) => return sim,
                Err(log) if log.contains("Address already in use") && attempts < 3 => attempts += 1,
                Err(log) => panic!("simulator did not start; log:\n{log}"),
            }
        }
    }

    fn try_start(
        username: &str,
        password: &str,
        top: &str,
        behaviour: &str,
    ) -> Result<SimProcess, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let rest = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let control = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let cert = dir.path().join("sim-cert.pem");
        let cfg = format!(
            "listen = \"{rest}\"\ncontrol_listen = \"{control}\"\ncert_out = \"{}\"\n{top}\n\
             [[users]]\nusername = \"{username}\"\npassword = \"{password}\"\n\
             [behaviour]\nring_delay = \"50ms\"\nanswer_delay = \"50ms\"\n{behaviour}\n",
            cert.display()
        );
        let file = dir.path().join("sim.toml");
        let log = dir.path().join("sim.log");
        let child = spawn_trunkgate("sim", (&file, &cfg), &log, &[], Vec::new);
        let sim = SimProcess {
            child,
            rest,
            control,
            cert,
            dir,
        };
        let up = wait_until(Duration::from_secs(15), || {
            (std::net::TcpStream::connect(control).is_ok() && sim.cert.exists()).then_some(())
        });
        match up {
            Some(()) => Ok(sim),
            None => Err(sim.log()),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
    }

    pub fn subscriptions(&self) -> Vec<serde_json::Value> {
        match http_json(self.control, "GET", "/subscriptions", None) {
            (200, serde_json::Value::Array(a)) => a,
            other => panic!("GET /subscriptions: {other:?}"),
        }
    }

    /// Polls (bounded) until `f` holds for the subscription list.
    pub fn wait_subscriptions(&self, what: &str, f: impl Fn(&[serde_json::Value]) -> bool) {
        let done = wait_until(Duration::from_secs(15), || {
            f(&self.subscriptions()).then_some(())
        });
        if done.is_none() {
            panic!("{what}: subscriptions {:?}", self.subscriptions());
        }
    }

    /// The `[carrier]` section pointing a daemon at this simulator.
    pub fn carrier_toml(&self, username: &str, password: &str) -> String {
        self.carrier_toml_with(username, password, "", &self.cert)
    }

    /// As [`SimProcess::carrier_toml`], with `extra` lines in `[carrier]` (`ice_servers`, ...)
    /// and `ca_file` (which must hold the simulator's certificate among its own) as the trust
    /// file.
    pub fn carrier_toml_with(
        &self,
        username: &str,
        password: &str,
        extra: &str,
        ca_file: &Path,
    ) -> String {
        format!(
            "[carrier]\nca_file = \"{}\"\nreconnect_initial = \"100ms\"\nreconnect_max = \"400ms\"\n{extra}\n\
             [[carrier.accounts]]\nname = \"sim\"\nbase_url = \"https://{}\"\nusername = \"{username}\"\n\
             password = \"{password}\"\ndomain = \"sim.test\"\n",
            ca_file.display(),
            self.rest
        )
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

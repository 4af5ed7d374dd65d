//! The cluster on loopback (issue 14): Redis, the simulator with one carrier account per
//! instance, two instances on 127.0.0.2 and 127.0.0.3 sharing state through Redis, and
//! Kamailio with the shipped configuration in front of them; sipp as the PBX talks only to
//! Kamailio. Calls through the edge, carrier calls on a chosen instance, and the failure
//! messages with every log.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::call_support::{rtp_port_blocks, states, SIM_BEHAVIOUR, TRUNK, TRUNK_PASS, TRUNK_USER};
use crate::edge::{Kamailio, Redis, EDGE_IP};
use crate::harness::{free_udp_port, tail, trunk, wait_until, Daemon, DaemonConfig};
use crate::http::http_json;
use crate::rtp_capture::{Capture, Datagram, Filter};
use crate::sim_process::SimProcess;
use crate::sipp::{auth_csv, Scenario, Sipp, SippRun};

/// The instances' carrier accounts, one each: (username, password).
pub const ACCOUNTS: [(&str, &str); 2] = [
    ("gw-a@sim.test", "carrier-secret-a-7d21"),
    ("gw-b@sim.test", "carrier-secret-b-93f4"),
];
/// Their addresses.
pub const IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
const SECRET: &str = "cluster-secret-5b0e9c2d41";

/// Everything a cluster test runs; all of it stopped when dropped.
pub struct Cluster {
    pub sim: SimProcess,
    pub redis: Redis,
    /// Signalled, never dropped, by the tests that stop one: its log and call records stay.
    pub nodes: [Daemon; 2],
    pub edge: Kamailio,
    pub rtp: [(u16, u16); 2],
}

impl Cluster {
    /// The cluster with `trunk_extra` lines in the trunk (`max_calls = 1`).
    pub fn start(trunk_extra: &str) -> Cluster {
        let [(user_a, pass_a), (user_b, pass_b)] = ACCOUNTS;
        // the second account as an earlier [[users]] entry, ahead of the one start_full writes
        let second = format!("[[users]]\nusername = \"{user_b}\"\npassword = \"{pass_b}\"\n");
        let sim = SimProcess::start_full(user_a, pass_a, &second, SIM_BEHAVIOUR);
        let redis = Redis::start();
        let prefix = format!("tg{}", free_udp_port());
        let rtp = [rtp_port_blocks(1), rtp_port_blocks(1)];
        let nodes = [0, 1].map(|i| {
            let (user, pass) = ACCOUNTS[i];
            let tables = format!(
                "{}{trunk_extra}\n\n[media]\nrtp_ports = \"{}-{}\"\n\n\
                 [calls]\nno_answer_timeout = \"30s\"\ndrain_grace = \"3s\"\n\n\
                 [inbound]\ndefault_trunk = \"{TRUNK}\"\n\n\
                 [cluster]\nnode = \"{}\"\ntrusted_proxies = [\"{}/32\"]\nredis = \"{}\"\n\
                 secret = \"{SECRET}\"\nkey_prefix = \"{prefix}\"\ncall_lease = \"6s\"\n\n{}",
                trunk(TRUNK, TRUNK_USER, TRUNK_PASS),
                rtp[i].0,
                rtp[i].1,
                ["a", "b"][i],
                Ipv4Addr::from(EDGE_IP),
                redis.url(),
                sim.carrier_toml(user, pass)
            );
            let d = Daemon::start_config(
                &DaemonConfig {
                    tables: &tables,
                    ip: Some(IPS[i]),
                    ..DaemonConfig::default()
                },
                |_| Vec::new(),
            );
            d.wait_log("notification channel connected");
            d
        });
        sim.wait_subscriptions("both instances subscribed with their sockets", |s| {
            s.iter().filter(|s| s["ws_connected"] == true).count() == 2
        });
        let addrs: Vec<SocketAddr> = nodes.iter().map(|d| d.sip).collect();
        let edge = Kamailio::start(&addrs);
        Cluster {
            sim,
            redis,
            nodes,
            edge,
            rtp,
        }
    }

    pub fn node(&self, i: usize) -> &Daemon {
        &self.nodes[i]
    }

    /// Waits (bounded) until the dispatcher shows each instance with the flags `want[i]`
    /// (`AP` probed active, `IP` inactive).
    pub fn wait_dispatcher(&self, want: [&str; 2], timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let addrs = [0, 1].map(|i| self.nodes[i].sip);
        let ok = wait_until(timeout, || {
            (0..2)
                .all(|i| self.edge.flags_of(addrs[i]).as_deref() == Some(want[i]))
                .then_some(())
        });
        if ok.is_none() {
            self.fail(&format!(
                "dispatcher never showed {want:?} within {timeout:?}: {:?}",
                self.edge.dispatcher()
            ));
        }
        t0.elapsed()
    }

    /// sipp as the PBX dialling `dialled` with `scenario` through the edge.
    pub fn call(&self, scenario: &str, dialled: &str) -> Scenario {
        Scenario::uac(scenario, self.edge.sip).dial(dialled, TRUNK_USER, TRUNK_PASS)
    }

    /// One short call through the edge (edge_final.xml): the final response the PBX saw
    /// (`None` when sipp failed; what it saw then goes to stderr, for the failure's reader).
    pub fn final_code(&self, dialled: &str) -> Option<u16> {
        let run = self
            .call("edge_final.xml", dialled)
            .run(Duration::from_secs(30));
        if !run.success {
            eprintln!("edge_final.xml did not complete:\n{}", run.describe());
        }
        run.logged_final().filter(|_| run.success)
    }

    /// Registers the trunk through the edge from `pbx_port` (reg_auth.xml).
    pub fn register(&self, pbx_port: u16) {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = auth_csv(dir.path(), TRUNK_USER, TRUNK_USER, TRUNK_PASS);
        let reg = Scenario::uac("reg_auth.xml", self.edge.sip)
            .sip_port(pbx_port)
            .args(&["-inf", &csv])
            .run(Duration::from_secs(20));
        self.assert_sipp_ok(&reg, "reg_auth.xml through the edge");
    }

    /// Registers the trunk through the edge from a fresh port and waits (bounded) until both
    /// instances show that binding, with its Path: the port.
    pub fn register_shared(&self) -> u16 {
        let pbx_port = free_udp_port();
        self.register(pbx_port);
        for i in 0..2 {
            self.wait_registered(i, pbx_port);
        }
        pbx_port
    }

    /// Waits (bounded) until instance `i`'s `/status` shows the trunk registered from
    /// `pbx_port` with the edge in its Path; that trunk entry.
    pub fn wait_registered(&self, i: usize, pbx_port: u16) -> Value {
        let port = format!(":{pbx_port}");
        let edge = self.edge.sip.to_string();
        let found = wait_until(Duration::from_secs(10), || {
            let t = self.node(i).status()["trunks"][0].clone();
            let path = t["path"].to_string();
            (t["registered"] == true
                && t["contact"].as_str().is_some_and(|c| c.contains(&port))
                && path.contains(&edge))
            .then_some(t)
        });
        found.unwrap_or_else(|| {
            self.fail(&format!(
                "instance {i} never showed the trunk registered from port {pbx_port} with Path \
                 through {edge}: {}",
                self.node(i).status()["trunks"]
            ))
        })
    }

    /// The carrier calls the registered trunk through instance `i`'s account; `uas` (already
    /// waiting on the registered port) is the PBX.
    pub fn originate_on(&self, i: usize) {
        let body = format!(
            r#"{{"to":"+97142001000","from":"+971509990000","mode":"tone","username":"{}"}}"#,
            ACCOUNTS[i].0
        );
        let (code, v) = http_json(self.sim.control, "POST", "/originate", Some(&body));
        if code != 200 || v["delivered"] != true {
            self.fail(&format!("originate on instance {i}: {code} {v}"));
        }
    }

    /// sipp waiting as the PBX's UAS with `scenario` on `pbx_port`, media on `media`.
    pub fn uas(&self, scenario: &str, pbx_port: u16, media: u16) -> Sipp {
        let mut uas = Scenario::uas(scenario, pbx_port)
            .media_port(media)
            .spawn(Duration::from_secs(40));
        // sipp binds before it reads the scenario's first recv; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        if !uas.running() {
            self.fail(&format!("the sipp UAS {scenario} did not start"));
        }
        uas
    }

    /// Captures what either instance sends from its RTP range to `pbx_media`.
    pub fn capture_toward_pbx(&self, pbx_media: u16) -> Capture {
        let low = self.rtp[0].0.min(self.rtp[1].0);
        let high = self.rtp[0].1.max(self.rtp[1].1);
        Capture::start(
            Filter {
                dst_port: pbx_media,
                src_ports: Some(low..=high),
            },
            Duration::from_secs(60),
        )
    }

    /// The simulator's calls.
    pub fn calls(&self) -> Vec<Value> {
        match http_json(self.sim.control, "GET", "/calls", None) {
            (200, Value::Array(a)) => a,
            other => panic!("GET /calls: {other:?}"),
        }
    }

    /// Which instance (by its account) placed the simulator's call `call`.
    pub fn instance_of(call: &Value) -> Option<usize> {
        ACCOUNTS.iter().position(|(u, _)| call["username"] == *u)
    }

    /// Waits (bounded) until the simulator has `n` calls, the last ANSWERED: its instance.
    pub fn wait_answered(&self, n: usize) -> usize {
        let call = wait_until(Duration::from_secs(20), || {
            let calls = self.calls();
            (calls.len() == n && states(&calls[n - 1]).iter().any(|s| s == "ANSWERED"))
                .then(|| calls[n - 1].clone())
        })
        .unwrap_or_else(|| self.fail(&format!("no answered carrier call number {n}")));
        Cluster::instance_of(&call)
            .unwrap_or_else(|| self.fail(&format!("call {call} from no known account")))
    }

    pub fn assert_sipp_ok(&self, run: &SippRun, what: &str) {
        if !run.success {
            self.fail(&format!("sipp {what} failed:\n{}", run.describe()));
        }
    }

    /// Panics with `what`, the simulator's calls and every log.
    pub fn fail(&self, what: &str) -> ! {
        let nodes: String = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, d)| format!("instance {i} log (tail):\n{}\n", tail(&d.log(), 50)))
            .collect();
        panic!(
            "{what}\nsim calls: {}\n{nodes}kamailio log (tail):\n{}\nsimulator log (tail):\n{}",
            serde_json::to_string_pretty(&self.calls()).unwrap_or_default(),
            tail(&self.edge.log(), 40),
            tail(&self.sim.log(), 20)
        )
    }
}

/// The RTP datagrams among `captured`.
pub fn rtp_count(captured: &[Datagram]) -> usize {
    captured
        .iter()
        .filter(|d| crate::rtp_capture::Rtp::parse(&d.payload).is_some())
        .count()
}

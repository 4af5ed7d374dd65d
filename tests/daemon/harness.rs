//! Starting the daemon on free loopback ports, talking SIP to it over UDP, and running sipp.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use trunkgate::sip::digest::{self, Algorithm, Credentials};

pub const REALM: &str = "trunkgate.test";

/// A free UDP port on 127.0.0.1 (bound and released; the tiny reuse race is acceptable here).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
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

pub fn sipp_dir() -> PathBuf {
    repo_root().join("tests").join("sipp")
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    child: Child,
    pub sip: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon with `[sip]` extra lines and `[[trunks]]` blocks appended to a minimal
    /// loopback config. Waits (bounded) until it answers OPTIONS.
    pub fn start(sip_extra: &str, trunks: &str) -> Daemon {
        Daemon::start_with("", sip_extra, trunks, |_| Vec::new())
    }

    /// `start` with extra `[log]` lines and extra environment variables; `env` is given the
    /// temporary directory (which holds `daemon.log`, stderr) before the daemon is spawned.
    pub fn start_with(
        log_extra: &str,
        sip_extra: &str,
        trunks: &str,
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Daemon {
        Daemon::start_full(log_extra, sip_extra, "127.0.0.1:0", trunks, env)
    }

    /// `start` with a chosen `[status] listen` (a fixed port, for the command line, which
    /// finds the endpoint in the config file).
    pub fn start_with_status(status_listen: &str, sip_extra: &str, trunks: &str) -> Daemon {
        Daemon::start_full("", sip_extra, status_listen, trunks, |_| Vec::new())
    }

    fn start_full(
        log_extra: &str,
        sip_extra: &str,
        status_listen: &str,
        trunks: &str,
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Daemon {
        let port = free_udp_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let cdr = dir.path().join("cdr.jsonl");
        let config = format!(
            "[log]\nlevel = \"debug\"\n{log_extra}\n\n[sip]\nlisten = \"127.0.0.1:{port}\"\nrealm = \"{REALM}\"\n{sip_extra}\n\n\
             [cdr]\npath = \"{}\"\n\n[status]\nlisten = \"{status_listen}\"\n\n{trunks}\n",
            cdr.display()
        );
        let path = dir.path().join("trunkgate.toml");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_trunkgate"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "trunkgate=debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .envs(env(dir.path()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trunkgate");
        let d = Daemon {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        d.wait_ready();
        d
    }

    /// One trunk `t0` / `user0` / `secret`, default settings otherwise.
    pub fn start_default() -> Daemon {
        Daemon::start("", &trunk("t0", "user0", "secret"))
    }

    fn wait_ready(&self) {
        let client = SipClient::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(r) = client.request_timeout(
                &options(self.sip, &client),
                self.sip,
                Duration::from_millis(200),
            ) {
                if r.starts_with("SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!(
            "daemon did not answer OPTIONS within 15 s; log:\n{}",
            self.log()
        );
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...) to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// The exit status once the daemon has exited, waiting at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn trunk(name: &str, user: &str, password: &str) -> String {
    format!(
        "[[trunks]]\nname = \"{name}\"\nauth_username = \"{user}\"\npassword = \"{password}\"\n"
    )
}

/// A raw UDP SIP client on an ephemeral loopback port.
pub struct SipClient {
    pub socket: UdpSocket,
}

impl SipClient {
    pub fn new() -> SipClient {
        SipClient::bind([127, 0, 0, 1])
    }

    /// A client on an ephemeral port of another loopback address (127.0.0.x): a peer the
    /// daemon tells apart from the others by its source address.
    pub fn bind(ip: [u8; 4]) -> SipClient {
        assert_eq!(ip[0], 127, "test peers stay on loopback");
        let socket = UdpSocket::bind((Ipv4Addr::from(ip), 0))
            .unwrap_or_else(|e| panic!("bind a client on {ip:?}: {e}"));
        SipClient { socket }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    pub fn send(&self, data: &[u8], to: SocketAddr) {
        self.socket.send_to(data, to).expect("send");
    }

    /// The next datagram within `timeout`, as text.
    pub fn recv(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 65536];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    pub fn request_timeout(&self, data: &str, to: SocketAddr, timeout: Duration) -> Option<String> {
        self.send(data.as_bytes(), to);
        self.recv(timeout)
    }

    /// Sends and returns the first final (non-1xx) response, bounded to 5 s.
    pub fn request(&self, data: &str, to: SocketAddr) -> String {
        self.send(data.as_bytes(), to);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(r) = self.recv(Duration::from_millis(500)) {
                if !r.starts_with("SIP/2.0 1") {
                    return r;
                }
            }
        }
        panic!("no final response to:\n{data}");
    }
}

pub fn status_code(resp: &str) -> u16 {
    resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Values of a header (case-insensitive name) in a response text.
pub fn header_values(resp: &str, name: &str) -> Vec<String> {
    resp.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

pub fn options(to: SocketAddr, client: &SipClient) -> String {
    let me = client.addr();
    let branch = format!("z9hG4bK{:x}", rand_u64());
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag={:x}\r\nTo: <sip:{to}>\r\nCall-ID: {:x}@probe\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        rand_u64(),
        rand_u64()
    )
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Whether sipp is installed (the suite's entry script installs it; this makes a clear failure).
pub fn require_sipp() {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "sipp is not installed: run the README's test command, which installs Debian's sip-tester"
    );
}

/// Runs a sipp scenario from tests/sipp against `target`, bounded by `-timeout`. Returns the
/// process output; sipp exits 0 only when every call succeeded.
pub fn sipp(scenario: &str, target: SocketAddr, extra: &[&str]) -> Output {
    require_sipp();
    let port = free_udp_port().to_string();
    let sf = sipp_dir().join(scenario);
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&sf)
        .arg(target.to_string())
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(std::env::temp_dir().join(format!("sipp-{scenario}-{port}.err")))
        .args(extra)
        .stdin(Stdio::null());
    cmd.output().expect("run sipp")
}

/// Asserts a sipp run succeeded, printing its output and the daemon log otherwise.
pub fn assert_sipp_ok(out: &Output, daemon: &Daemon, what: &str) {
    if !out.status.success() {
        panic!(
            "sipp {what} failed ({:?})\nstdout:\n{}\nstderr:\n{}\ndaemon log (tail):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 40),
            String::from_utf8_lossy(&out.stderr),
            tail(&daemon.log(), 60)
        );
    }
}

/// Asserts the daemon log records `event` (an authentication failure, say) and never `secret`.
pub fn assert_logged_without_secret(daemon: &Daemon, event: &str, secret: &str) {
    let log = daemon.log();
    assert!(
        log.contains(event),
        "{event:?} not logged:\n{}",
        tail(&log, 20)
    );
    assert!(!log.contains(secret), "secret leaked into the log");
}

/// Asserts a sipp run failed (a scenario that expects what must not happen).
pub fn assert_sipp_fails(out: &Output, what: &str) {
    assert!(!out.status.success(), "sipp {what} unexpectedly succeeded");
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn write_csv(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write csv");
    p
}

/// Sends an INVITE for `dialled` from `client`, answers the 407 with MD5 credentials for
/// `user`/`password` in Proxy-Authorization (new branch, CSeq 2) and returns the final response
/// to the authenticated INVITE. `extra` header lines (each ending in CRLF) go into both requests.
pub fn authenticated_invite(
    client: &SipClient,
    to: SocketAddr,
    dialled: &str,
    user: &str,
    password: &str,
    extra: &str,
) -> String {
    let me = client.addr();
    let call_id = format!("{:x}@harness", rand_u64());
    let uri = format!("sip:{dialled}@{to}");
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{cseq}{:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=h{cseq}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:100@{me}>\r\n{extra}{auth}Content-Length: 0\r\n\r\n",
            rand_u64()
        )
    };
    let first = client.request(&invite(1, ""), to);
    assert_eq!(status_code(&first), 407, "{first}");
    ack(client, to, &first, &uri);
    let challenge = challenges(&first, "Proxy-Authenticate")
        .into_iter()
        .find(|c| c.algorithm() == Algorithm::Md5)
        .expect("an MD5 challenge");
    let md5 = Auth {
        alg: Algorithm::Md5,
        user,
        password,
        nonce: challenge.nonce(),
        qop: None,
    };
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        credentials(&md5, "INVITE", &uri)
    );
    let last = client.request(&invite(2, &auth), to);
    ack(client, to, &last, &uri);
    last
}

/// ACKs a non-2xx final response to an INVITE (same branch as the response's Via).
pub fn ack(client: &SipClient, to: SocketAddr, resp: &str, uri: &str) {
    let h = |n: &str| {
        header_values(resp, n)
            .into_iter()
            .next()
            .unwrap_or_default()
    };
    let cseq_num = h("CSeq")
        .split_whitespace()
        .next()
        .unwrap_or("1")
        .to_string();
    let via = h("Via");
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: {cseq_num} ACK\r\nContent-Length: 0\r\n\r\n",
        h("From"),
        h("To"),
        h("Call-ID")
    );
    client.send(ack.as_bytes(), to);
}

impl Daemon {
    /// SIGTERM, then the exit status (bounded wait; killed after it).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not stop within 15 s of SIGTERM; log:\n{}",
            self.log()
        );
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "log never showed {needle:?}; log:\n{}",
            tail(&self.log(), 40)
        );
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// One plain HTTP/1.1 request to a loopback server; (status, JSON body or Null).
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

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
        let path = dir.path().join("sim.toml");
        std::fs::write(&path, cfg).expect("write sim config");
        let log = std::fs::File::create(dir.path().join("sim.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_trunkgate"))
            .args(["sim", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trunkgate sim");
        let sim = SimProcess {
            child,
            rest,
            control,
            cert,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(control).is_ok() && sim.cert.exists() {
                return sim;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("simulator did not start; log:\n{}", sim.log());
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
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if f(&self.subscriptions()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("{what}: subscriptions {:?}", self.subscriptions());
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ the status endpoint, as text

/// GET over plain HTTP/1.1 (status endpoint): (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // chunked bodies: keep only the payload lines (metrics and JSON never look like hex sizes
    // on their own line followed by CRLF, so strip the chunk-size lines)
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch a malformed line: every sample
/// is `name{label="value",...} number` of a family announced by `# TYPE`. Returns
/// `name{labels}` → value.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "labels in {line:?}"
                );
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("label in {line:?}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "label name in {line:?}"
                    );
                    let _ = v;
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample of an undeclared family: {line:?}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

pub fn metric(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

impl Daemon {
    /// `GET /metrics`, parsed (`name{labels}` → value); panics unless 200.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (code, text) = http_get(self.status_addr(), "/metrics");
        assert_eq!(code, 200, "GET /metrics: {text}");
        parse_prometheus(&text)
    }

    /// `GET /status` as JSON; panics unless 200.
    pub fn status(&self) -> serde_json::Value {
        let (code, v) = http_json(self.status_addr(), "GET", "/status", None);
        assert_eq!(code, 200, "GET /status: {v}");
        v
    }
}

// ------------------------------------------------------- digest challenges and credentials

/// One `WWW-Authenticate` / `Proxy-Authenticate` value.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub algorithm: Option<String>,
    pub realm: Option<String>,
    pub nonce: Option<String>,
    pub qop: Option<String>,
    pub stale: Option<String>,
}

impl Challenge {
    pub fn algorithm(&self) -> Algorithm {
        // RFC 7616: no algorithm parameter means MD5
        Algorithm::parse(self.algorithm.as_deref().unwrap_or("MD5"))
            .unwrap_or_else(|| panic!("challenge with an unknown algorithm: {self:?}"))
    }

    pub fn nonce(&self) -> &str {
        self.nonce
            .as_deref()
            .unwrap_or_else(|| panic!("challenge without nonce: {self:?}"))
    }

    pub fn offers_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }
}

/// Parses `Digest k=v, k="v", ...` (quoted values may contain commas and escapes).
pub fn parse_challenge(value: &str) -> Challenge {
    let v = value.trim();
    let (scheme, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
    assert!(
        scheme.eq_ignore_ascii_case("Digest"),
        "not a Digest challenge: {value:?}"
    );
    let mut params: Vec<(String, String)> = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        assert_eq!(
            chars.next(),
            Some('='),
            "parameter {name:?} without value in {value:?}"
        );
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => val.extend(chars.next()),
                    Some(c) => val.push(c),
                    None => panic!("unterminated quoted string in {value:?}"),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.push((name.to_ascii_lowercase(), val));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Challenge {
        algorithm: get("algorithm"),
        realm: get("realm"),
        nonce: get("nonce"),
        qop: get("qop"),
        stale: get("stale"),
    }
}

pub fn challenges(resp: &str, header: &str) -> Vec<Challenge> {
    header_values(resp, header)
        .iter()
        .map(|v| parse_challenge(v))
        .collect()
}

/// What goes into the credentials.
pub struct Auth<'a> {
    pub alg: Algorithm,
    pub user: &'a str,
    pub password: &'a str,
    pub nonce: &'a str,
    /// `(nc, cnonce)` for qop=auth; `None` for no qop.
    pub qop: Option<(u32, &'a str)>,
}

/// An `Authorization` / `Proxy-Authorization` value for `method` and `uri`.
pub fn credentials(a: &Auth, method: &str, uri: &str) -> String {
    let mut creds = Credentials {
        username: a.user.to_string(),
        realm: REALM.to_string(),
        nonce: a.nonce.to_string(),
        uri: uri.to_string(),
        response: String::new(),
        algorithm: a.alg,
        qop: a.qop.map(|_| "auth".to_string()),
        nc: a.qop.map(|(nc, _)| format!("{nc:08x}")),
        cnonce: a.qop.map(|(_, c)| c.to_string()),
        opaque: None,
    };
    let ha1 = digest::ha1(a.alg, a.user, REALM, a.password);
    creds.response =
        digest::expected_response(a.alg, &ha1, method, &creds).expect("compute digest response");
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm={}",
        creds.username,
        creds.nonce,
        creds.response,
        a.alg.as_str()
    );
    if let (Some(nc), Some(cnonce)) = (&creds.nc, &creds.cnonce) {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    v
}

/// The `branch` of a message's top Via.
pub fn top_branch(msg: &str) -> Option<String> {
    let via = header_values(msg, "Via").into_iter().next()?;
    let i = via.find("branch=")? + "branch=".len();
    Some(via[i..].split([';', ',', ' ']).next()?.to_string())
}

//! A real TURN server for tests: Debian's coturn (`turnserver`) as a child process on 127.0.0.1
//! only, with a UDP+TCP listener, a TLS listener whose certificate is generated here, one
//! long-term-credential user, and its log in a temporary directory; killed on drop.
//!
//! Self-contained (std, `tempfile` and `rcgen` only): the TURN client's own tests use it too.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// First port of the blocks coturn instances take: above the kernel's ephemeral range
/// (32768-60999) and the daemon's RTP blocks (20000-31999), so nothing else in the suite
/// binds there.
const PORTS_FROM: u16 = 61000;
const BLOCK: u16 = 128;
const BLOCKS: u16 = (u16::MAX - PORTS_FROM) / BLOCK;
/// Within a block: the UDP+TCP listener, a port held by the test process (see `claim`), the
/// TLS listener, and relay ports from `RELAY_FROM` to the end of the block.
const LISTEN: u16 = 0;
const CLAIM: u16 = 1;
const TLS: u16 = 2;
const RELAY_FROM: u16 = 16;

/// A running `turnserver`.
pub struct Coturn {
    /// The UDP and TCP listener (`turn:` URLs).
    pub port: u16,
    /// The TLS listener (`turns:` URLs).
    pub tls_port: u16,
    pub user: &'static str,
    pub password: &'static str,
    pub realm: &'static str,
    /// The PEM certificate of the TLS listener (not a CA; SAN `localhost` and 127.0.0.1): what
    /// a client must trust.
    pub cert_path: PathBuf,
    child: Child,
    // Held while coturn runs: the block's other users see it taken (coturn itself binds with
    // SO_REUSEPORT, so a second coturn on the same ports would start silently and share them).
    _claim: UdpSocket,
    dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts coturn on a free port block and waits (bounded) until its listeners are open and
    /// it answers a STUN binding request.
    pub fn start() -> Coturn {
        assert!(
            Command::new("turnserver")
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "turnserver is not installed: run tests/run.sh, which installs Debian's coturn"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_path, key_path) = write_certificate(dir.path());
        let log_path = dir.path().join("turn.log");
        let mut last_log = String::new();
        for _ in 0..BLOCKS {
            let Some((base, claim)) = claim_block() else {
                continue;
            };
            let (port, tls_port) = (base + LISTEN, base + TLS);
            let _ = std::fs::remove_file(&log_path);
            let mut child = Command::new("turnserver")
                .args(["-n", "-v", "--no-cli", "--no-dtls"])
                .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
                .arg("--allow-loopback-peers")
                .args([
                    "--lt-cred-mech",
                    "--user",
                    "u:p",
                    "--realm",
                    "trunkgate.test",
                ])
                .args(["--listening-port", &port.to_string()])
                .args(["--tls-listening-port", &tls_port.to_string()])
                .args(["--min-port", &(base + RELAY_FROM).to_string()])
                .args(["--max-port", &(base + BLOCK - 1).to_string()])
                .arg("--cert")
                .arg(&cert_path)
                .arg("--pkey")
                .arg(&key_path)
                // everything it writes stays in the temporary directory (without --userdb it
                // opens /var/lib/turn/turndb)
                .arg("--log-file")
                .arg(&log_path)
                .args(["--simple-log", "--no-stdout-log"])
                .arg("--pidfile")
                .arg(dir.path().join("turn.pid"))
                .arg("--userdb")
                .arg(dir.path().join("turndb"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
                .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
                .spawn()
                .expect("spawn turnserver");
            if wait_ready(
                &mut child,
                &log_path,
                port,
                tls_port,
                Duration::from_secs(10),
            ) {
                return Coturn {
                    port,
                    tls_port,
                    user: "u",
                    password: "p",
                    realm: "trunkgate.test",
                    cert_path,
                    child,
                    _claim: claim,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("coturn did not start on any port block; its last log:\n{last_log}");
    }

    /// coturn's log (verbose: one line per session created and per request processed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("turn.log")).unwrap_or_default()
    }

    /// UDP, TCP and TLS, in that order.
    pub fn urls(&self) -> [String; 3] {
        [
            format!("turn:127.0.0.1:{}?transport=udp", self.port),
            format!("turn:127.0.0.1:{}?transport=tcp", self.port),
            format!("turns:127.0.0.1:{}?transport=tcp", self.tls_port),
        ]
    }

    /// The allocations coturn created, from its log.
    pub fn allocations(&self) -> Vec<Allocation> {
        parse_allocations(&self.log())
    }

    /// How many requests of `method` (`ALLOCATE`, `CREATE_PERMISSION`, `CHANNEL_BIND`,
    /// `REFRESH`) coturn processed successfully.
    pub fn successes(&self, method: &str) -> usize {
        let needle = format!("incoming packet {method} processed, success");
        self.log().matches(&needle).count()
    }

    /// How many TCP connections (plain or TLS) clients opened to it (`start` opens none).
    pub fn stream_connections(&self) -> usize {
        self.log().matches("tcp or tls connected to").count()
    }

    /// Polls the log (bounded) until `f` holds; returns whether it did.
    pub fn wait_for(&self, timeout: Duration, f: impl Fn(&Coturn) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the child runs, its log says all three listeners are open (its own log: coturn binds
/// with SO_REUSEPORT, so a connection could reach another instance; and a test connection
/// would show in the log as a client's) and it answers STUN on UDP, polled until `timeout`.
fn wait_ready(child: &mut Child, log: &Path, port: u16, tls_port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let opened = [
        format!("UDP listener opened on: 127.0.0.1:{port}\n"),
        format!("TLS/TCP listener opened on : 127.0.0.1:{port}\n"),
        format!("TLS/TCP listener opened on : 127.0.0.1:{tls_port}\n"),
    ];
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if opened.iter().all(|l| text.contains(l.as_str()))
            && stun_binding_answered(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One allocation in coturn's log (`session N: new, realm=<R>, username=<U>, lifetime=L` and,
/// over TLS, `, cipher=..., method=TLSv1.x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub session: String,
    pub user: String,
    pub tls: bool,
}

fn parse_allocations(log: &str) -> Vec<Allocation> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("session ")?;
            let (session, rest) = rest.split_once(": new, ")?;
            let user = rest.split_once("username=<")?.1.split_once('>')?.0;
            Some(Allocation {
                session: session.to_string(),
                user: user.to_string(),
                tls: rest.contains("cipher="),
            })
        })
        .collect()
}

/// A block of ports nobody else holds: its claim port bound here (kept for coturn's life) and
/// the listener and relay ports free right now. Blocks are taken in turn within this process,
/// from a start that differs between processes.
fn claim_block() -> Option<(u16, UdpSocket)> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(BLOCKS)) as u16;
    let n = (start + NEXT.fetch_add(1, Ordering::SeqCst)) % BLOCKS;
    let base = PORTS_FROM + n * BLOCK;
    let lo = Ipv4Addr::LOCALHOST;
    let claim = UdpSocket::bind((lo, base + CLAIM)).ok()?;
    let free_udp = |p: u16| UdpSocket::bind((lo, p)).is_ok();
    let free_tcp = |p: u16| std::net::TcpListener::bind((lo, p)).is_ok();
    let all_free = free_udp(base + LISTEN)
        && free_tcp(base + LISTEN)
        && free_tcp(base + TLS)
        && (base + RELAY_FROM..base + BLOCK).all(free_udp);
    all_free.then_some((base, claim))
}

/// Whether a STUN binding request (RFC 8489 section 5, no attributes) to `server` gets its
/// success response within 200 ms.
fn stun_binding_answered(server: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let mut request = [0u8; 20];
    request[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    request[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
    request[8..20].copy_from_slice(b"trunkgate-rd");
    if socket.send_to(&request, server).is_err() {
        return false;
    }
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 512];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == request[8..20],
        Err(_) => false,
    }
}

/// A self-signed certificate fit for a rustls client: an end-entity (CA:FALSE; rustls refuses a
/// CA certificate as a server's without saying why), serverAuth, SAN `localhost` and 127.0.0.1.
/// Returns (certificate, key) paths.
fn write_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate parameters");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "trunkgate test TURN");
    let key = rcgen::KeyPair::generate().expect("generate a key");
    let cert = params.self_signed(&key).expect("self-sign");
    let cert_path = dir.join("turn-cert.pem");
    let key_path = dir.join("turn-key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
    (cert_path, key_path)
}

#[test]
fn coturn_starts_on_its_own_ports_and_challenges_an_unauthenticated_allocate() {
    let c = Coturn::start();
    let d = Coturn::start();
    assert_ne!(
        (c.port, c.tls_port),
        (d.port, d.tls_port),
        "two instances, two blocks"
    );
    assert!(stun_binding_answered(SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        c.port
    ))));
    assert_eq!(
        c.urls()[2],
        format!("turns:127.0.0.1:{}?transport=tcp", c.tls_port)
    );
    // An unauthenticated ALLOCATE is challenged (401) and logged as such, not as an allocation.
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut allocate = [0u8; 28];
    allocate[..2].copy_from_slice(&0x0003u16.to_be_bytes());
    allocate[2..4].copy_from_slice(&8u16.to_be_bytes());
    allocate[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
    allocate[8..20].copy_from_slice(b"trunkgate-ct");
    // REQUESTED-TRANSPORT: UDP (17)
    allocate[20..22].copy_from_slice(&0x0019u16.to_be_bytes());
    allocate[22..24].copy_from_slice(&4u16.to_be_bytes());
    allocate[24] = 17;
    s.send_to(&allocate, (Ipv4Addr::LOCALHOST, c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).expect("coturn answers the ALLOCATE");
    assert!(
        n >= 20 && buf[..2] == [0x01, 0x13],
        "an ALLOCATE error response"
    );
    assert!(
        c.wait_for(Duration::from_secs(5), |c| c.log().contains("error 401")),
        "the 401 is in the log:\n{}",
        c.log()
    );
    assert!(c.allocations().is_empty());
    assert_eq!(c.successes("ALLOCATE"), 0);
}

#[test]
fn allocation_lines_of_coturn_4_6_parse() {
    let log = "6: : session 000000000000000003: new, realm=<trunkgate.test>, username=<u>, lifetime=600\n\
               6: : session 000000000000000003: realm <trunkgate.test> user <u>: incoming packet ALLOCATE processed, success\n\
               11: : session 001000000000000004: new, realm=<trunkgate.test>, username=<u>, lifetime=777, cipher=TLS_AES_256_GCM_SHA384, method=TLSv1.3\n\
               0: : session 001000000000000001: realm <trunkgate.test> user <>: incoming packet message processed, error 401: Unauthorized\n";
    assert_eq!(
        parse_allocations(log),
        vec![
            Allocation {
                session: "000000000000000003".into(),
                user: "u".into(),
                tls: false
            },
            Allocation {
                session: "001000000000000004".into(),
                user: "u".into(),
                tls: true
            },
        ]
    );
}

/// The TLS listener serves the generated certificate and rustls accepts it for both names in
/// it (a CA certificate, say, would end in a silent close); STUN works through it.
#[test]
fn tls_listener_is_trusted_by_rustls_through_cert_path() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    let c = Coturn::start();
    let pem = std::fs::read(&c.cert_path).expect("read cert_path");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("trust anchor");
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    for name in ["127.0.0.1", "localhost"] {
        let server_name = rustls::pki_types::ServerName::try_from(name)
            .expect("server name")
            .to_owned();
        let mut tls = rustls::ClientConnection::new(config.clone(), server_name).expect("client");
        let mut tcp = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, c.tls_port))
            .expect("connect to the TLS listener");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        let mut request = [0u8; 20];
        request[..2].copy_from_slice(&0x0001u16.to_be_bytes());
        request[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
        request[8..20].copy_from_slice(b"trunkgate-tl");
        stream
            .write_all(&request)
            .unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
        let mut header = [0u8; 20];
        stream
            .read_exact(&mut header)
            .unwrap_or_else(|e| panic!("STUN over TLS to {name}: {e}"));
        assert_eq!(header[..2], [0x01, 0x01], "a binding success response");
        assert_eq!(header[8..20], request[8..20], "for our transaction");
    }
    assert!(c.wait_for(Duration::from_secs(5), |c| c.stream_connections() == 2));
}

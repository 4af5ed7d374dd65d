//! The `trunkgate` command line: wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use trunkgate::config::Config;

const DEFAULT_CONFIG: &str = "/etc/trunkgate/trunkgate.toml";

#[derive(Parser)]
#[command(
    name = "trunkgate",
    version,
    about = "SIP trunk gateway from a PBX to a WebRTC carrier"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a configuration file: a one-line summary, or every error with its line.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Test dialled numbers against the number policy: canonical form, type, region, verdict.
    /// Exits non-zero when any input is refused.
    Number {
        /// Config whose [numbers] policy applies (default: /etc/trunkgate/trunkgate.toml if it
        /// exists, else the built-in UAE defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Apply this trunk's [trunks.numbers] override.
        #[arg(long)]
        trunk: Option<String>,
        #[arg(required = true)]
        numbers: Vec<String>,
    },
    /// Issue a trunk's credentials: a random password for the PBX, its HA1s for the realm and
    /// the `[[trunks]]` block to paste (hashes only).
    Credentials {
        /// The trunk's name in the config.
        #[arg(long, default_value = "pbx")]
        name: String,
        /// The digest username (3CX: Authentication ID); default: derived from --name.
        #[arg(long)]
        username: Option<String>,
        /// Config whose sip.realm the HA1s are for (and whose trunks must not clash).
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The realm, when there is no config file yet (overrides sip.realm otherwise).
        #[arg(long)]
        realm: Option<String>,
    },
    /// Print what to enter on the PBX for a trunk: 3CX's Generic SIP Trunk form, or a
    /// pjsip.conf section set for Asterisk.
    PbxConfig {
        pbx: Pbx,
        /// The trunk's name in the config.
        #[arg(long)]
        trunk: String,
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List the addresses the running daemon has banned (asks its status endpoint).
    Bans {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The status endpoint, when not the config's `status.listen`.
        #[arg(long)]
        status: Option<std::net::SocketAddr>,
    },
    /// Lift a ban now (an IPv4 address, an IPv6 address or its /64). Exits 1 when ADDRESS was not
    /// banned.
    Unban {
        address: String,
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        status: Option<std::net::SocketAddr>,
    },
    /// Run the Kandy Link carrier simulator (REST + WebSocket over TLS, control API) until
    /// interrupted.
    Sim {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Pbx {
    #[value(name = "3cx")]
    ThreeCx,
    Asterisk,
}

fn credentials_command(
    name: &str,
    username: Option<String>,
    config: &std::path::Path,
    realm: Option<String>,
) -> ExitCode {
    use trunkgate::ops::admin;
    let cfg = if config.exists() {
        match Config::load(config) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let (realm, source) = match (realm, &cfg) {
        (Some(r), Some(c)) if r != c.sip.realm => {
            eprintln!(
                "warning: --realm {r:?} differs from sip.realm {:?} in {}: these hashes only work \
                 once sip.realm is {r:?}",
                c.sip.realm,
                config.display()
            );
            (r, "from --realm".to_string())
        }
        (Some(r), _) => (r, "from --realm".to_string()),
        (None, Some(c)) => (
            c.sip.realm.clone(),
            format!("sip.realm of {}", config.display()),
        ),
        (None, None) => {
            eprintln!(
                "{} does not exist: give the realm the daemon will use with --realm REALM",
                config.display()
            );
            return ExitCode::from(2);
        }
    };
    let password = match admin::random_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot read the operating system's random number generator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let username = username.unwrap_or_else(|| admin::default_username(name));
    match admin::Issued::new(name, &username, &realm, password, cfg.as_ref()) {
        Ok(issued) => {
            print!("{}", issued.render(&source));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn pbx_config_command(pbx: Pbx, trunk: &str, config: &std::path::Path) -> ExitCode {
    use trunkgate::ops::admin;
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let out = match pbx {
        Pbx::ThreeCx => admin::three_cx(&cfg, trunk),
        Pbx::Asterisk => admin::asterisk(&cfg, trunk),
    };
    match out {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", out.text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `bans` (no address) or `unban ADDRESS`, through the daemon's status endpoint.
fn bans_command(
    config: &std::path::Path,
    status: Option<std::net::SocketAddr>,
    unban: Option<&str>,
) -> ExitCode {
    use trunkgate::ops::bans;
    let addr = match bans::endpoint(config, status) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(async {
        match unban {
            None => bans::list(addr).await.map(|b| {
                print!("{}", bans::render(&b));
                ExitCode::SUCCESS
            }),
            Some(address) => bans::unban(addr, address).await.map(|lifted| {
                if lifted {
                    println!("unbanned {address}");
                    ExitCode::SUCCESS
                } else {
                    println!("{address} is not banned");
                    ExitCode::FAILURE
                }
            }),
        }
    });
    outcome.unwrap_or_else(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn sim_command(config: &std::path::Path) -> ExitCode {
    let cfg = match trunkgate::sim::SimConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    trunkgate::logging::init("info");
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let handle = match trunkgate::sim::start(cfg).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("trunkgate sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "carrier simulator: REST/WSS {}  control {}",
            handle.base_url(),
            handle.control_url()
        );
        if let Err(e) = trunkgate::daemon::wait_for_stop_signal().await {
            eprintln!("cannot wait for a signal: {e}");
        }
        handle.stop().await;
        ExitCode::SUCCESS
    })
}

fn number_command(config: Option<PathBuf>, trunk: Option<String>, numbers: &[String]) -> ExitCode {
    let path = config.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.exists().then_some(p)
    });
    let cfg = match &path {
        Some(p) => match Config::load(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => {
            eprintln!("(no config file: using the built-in [numbers] defaults)");
            None
        }
    };
    let numbers_cfg = match (&cfg, &trunk) {
        (Some(c), Some(name)) => match c.trunks.iter().position(|t| &t.name == name) {
            Some(i) => c.trunk_numbers(i),
            None => {
                eprintln!("no trunk named {name:?} in the config");
                return ExitCode::from(2);
            }
        },
        (Some(c), None) => c.numbers.clone(),
        (None, Some(_)) => {
            eprintln!("--trunk needs a config file");
            return ExitCode::from(2);
        }
        (None, None) => trunkgate::numbers::NumbersConfig::default(),
    };
    let policy = match trunkgate::numbers::NumberPolicy::new(&numbers_cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match trunkgate::numbers::report(&policy, numbers, &mut std::io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cannot write the report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Number {
            config,
            trunk,
            numbers,
        } => number_command(config, trunk, &numbers),
        Command::Sim { config } => sim_command(&config),
        Command::Bans { config, status } => bans_command(&config, status, None),
        Command::Unban {
            address,
            config,
            status,
        } => bans_command(&config, status, Some(&address)),
        Command::Credentials {
            name,
            username,
            config,
            realm,
        } => credentials_command(&name, username, &config, realm),
        Command::PbxConfig { pbx, trunk, config } => pbx_config_command(pbx, &trunk, &config),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok: {}", config.display(), c.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            trunkgate::logging::init_config(&cfg.log);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(trunkgate::daemon::run(cfg, config.clone())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("trunkgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! Command line: `run`, `check`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;
use crate::gateway::Gateway;

/// Default config file of `run` and `check`.
pub const DEFAULT_CONFIG: &str = "conf/portcullis.toml";
/// `check` warns about certificates expiring within this many days.
pub const CERT_EXPIRY_WARNING_DAYS: i64 = 14;
/// Default config file of `demo`.
pub const DEMO_CONFIG: &str = "conf/demo.toml";

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "An API gateway data plane built on Pingora"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate config files and exit: 0 when valid, 1 with every error found.
    Check {
        /// Config file (also accepted as positional arguments, several at once).
        #[arg(short, long)]
        config: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Run the gateway on the bundled demo config, with its sample backends
    /// started in the same process.
    Demo {
        #[arg(short, long, default_value = DEMO_CONFIG)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, files } => check(config.into_iter().chain(files).collect()),
        Command::Run { config } => run(config, false),
        Command::Demo { config } => run(config, true),
    }
}

fn check(mut files: Vec<PathBuf>) -> ExitCode {
    if files.is_empty() {
        files.push(PathBuf::from(DEFAULT_CONFIG));
    }
    let mut ok = true;
    for file in files {
        let loaded = config::load(&file).and_then(|c| Ok((crate::tls::load_stores(&c)?, c)));
        match loaded {
            Ok((stores, c)) => {
                for cert in stores.iter().flatten().flat_map(|s| &s.certs) {
                    if let Some(days) = cert.expires_within(CERT_EXPIRY_WARNING_DAYS) {
                        eprintln!(
                            "{}: warning: certificate for {} expires in {days} day(s)",
                            file.display(),
                            cert.names.join(", ")
                        );
                    }
                }
                println!(
                    "{}: ok: {} routes, {} pools",
                    file.display(),
                    c.routes.len(),
                    c.pools.len()
                )
            }
            Err(errors) => {
                ok = false;
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(path: PathBuf, demo: bool) -> ExitCode {
    crate::logging::init();
    let gateway = match Gateway::load(path) {
        Ok(g) => g,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let extra = if demo {
        let snapshot = gateway.snapshot();
        let config = &snapshot.config;
        if let Some(l) = config.listeners.first() {
            println!("portcullis demo: sample backends start in this process; try:");
            for line in crate::demo::curl_lines(config, l.address) {
                println!("  {line}");
            }
            println!(
                "  curl -s http://{}/-/pools    # admin API",
                config.admin.address
            );
        }
        crate::demo::sample_backends(config)
    } else {
        Vec::new()
    };
    crate::server::run(gateway, extra)
}

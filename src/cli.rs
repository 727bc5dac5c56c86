//! Command line: `run`, `check`, `demo`, `keys new`, `keys hash`.

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
    /// API keys: make one, or hash one for the config.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a new random key (once: store it now) and the config entry
    /// holding its digest and prefix.
    New {
        /// The consumer the key is for (named in the printed config lines).
        #[arg(long)]
        consumer: String,
    },
    /// Read a key from standard input and print its SHA-256 digest (hex).
    Hash,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, files } => check(config.into_iter().chain(files).collect()),
        Command::Run { config } => run(config, false),
        Command::Demo { config } => run(config, true),
        Command::Keys(KeysCommand::New { consumer }) => keys_new(&consumer),
        Command::Keys(KeysCommand::Hash) => keys_hash(),
    }
}

fn keys_new(consumer: &str) -> ExitCode {
    let key = match crate::auth::keys::generate() {
        Ok(k) => k,
        Err(_) => {
            eprintln!("portcullis: the system random number generator failed");
            return ExitCode::FAILURE;
        }
    };
    // The key on stdout's first line alone, so scripts can take it; the
    // config entry after it; the advice on stderr.
    println!("{}", key.key);
    println!("# consumer {consumer:?}: add this entry to its keys = [...]");
    println!(
        "{}",
        crate::auth::keys::config_entry(&key.prefix, &key.digest_hex)
    );
    eprintln!(
        "portcullis: this key is shown once and stored nowhere; give it to {consumer:?} now. The config holds only its digest."
    );
    ExitCode::SUCCESS
}

fn keys_hash() -> ExitCode {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_end(&mut input) {
        eprintln!("portcullis: cannot read the key from standard input: {e}");
        return ExitCode::FAILURE;
    }
    // One key, as typed or piped: surrounding whitespace and the newline go.
    let key = input.trim_ascii();
    if key.is_empty() {
        eprintln!("portcullis: no key on standard input (try: echo -n KEY | portcullis keys hash)");
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        crate::auth::keys::hex(&crate::auth::keys::digest(key))
    );
    ExitCode::SUCCESS
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
                    "{}: ok: {} routes, {} pools, {} consumers",
                    file.display(),
                    c.routes.len(),
                    c.pools.len(),
                    c.consumers.len()
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

//! Command line: `run`, `check`, `diff`, `explain`, `demo`, `keys new`,
//! `keys hash`. `check`, `diff` and `explain` run the same prepare step as
//! `run` and every reload ([`crate::reload::prepare`]), so what `check`
//! accepts is exactly what `run` and a reload accept.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;
use crate::gateway::Gateway;

/// Default config file of `run`, `check` and `explain`: where the package
/// installs it, whatever the working directory.
pub const DEFAULT_CONFIG: &str = "/etc/portcullis/portcullis.toml";
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
        /// Config file [default: /etc/portcullis/portcullis.toml].
        #[arg(short, long, default_value = DEFAULT_CONFIG, hide_default_value = true)]
        config: PathBuf,
    },
    /// Validate config files and exit: 0 when valid, 1 with every error found.
    /// Reads every included file and loads the TLS material, as `run` does.
    Check {
        /// Config file (also accepted as positional arguments, several at
        /// once) [default: /etc/portcullis/portcullis.toml].
        #[arg(short, long)]
        config: Option<PathBuf>,
        files: Vec<PathBuf>,
    },
    /// Show what a reload from OLD to NEW would change; with
    /// --against-running, what reloading FILE would change in the running
    /// gateway. Exit code: 0 when nothing would change, 1 when something
    /// would, 2 when a config is invalid (or the gateway cannot be asked).
    Diff {
        /// OLD and NEW config files; with --against-running, FILE (the
        /// file the gateway runs from) [default: /etc/portcullis/portcullis.toml].
        #[arg(value_name = "FILE", num_args = 0..=2)]
        files: Vec<PathBuf>,
        /// Compare FILE with what the running gateway has, through its
        /// admin API (a dry-run reload: nothing is applied).
        #[arg(long)]
        against_running: bool,
        /// The admin API's URL [default: from FILE's `[admin]` address].
        #[arg(long, value_name = "URL", requires = "against_running")]
        admin: Option<String>,
        /// A file holding the admin token (also: $PORTCULLIS_ADMIN_TOKEN).
        #[arg(long, value_name = "PATH", requires = "against_running")]
        token_file: Option<PathBuf>,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show which route a request would match and why, and what would
    /// happen to it, without sending anything. Exit code: 0 when the request
    /// would be forwarded, 1 when the gateway would answer it itself
    /// (404, 405, 401, 403, 503), 2 when the config or request is invalid.
    Explain {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Request method, e.g. GET.
        method: String,
        /// `http://host/path?query`, or a path.
        url: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client's address, for per-client-IP limits.
        #[arg(long, default_value = "127.0.0.1")]
        client_ip: std::net::IpAddr,
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
    /// Print a new random key (once: store it now) and a consumer block
    /// for the config holding its digest and prefix.
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
        Command::Diff {
            files,
            against_running,
            admin,
            token_file,
            json,
        } => match (against_running, files.as_slice()) {
            (false, [old, new]) => diff(old, new, json),
            (false, _) => {
                eprintln!("portcullis: diff needs OLD and NEW files, or --against-running [FILE]");
                ExitCode::from(2)
            }
            (true, [] | [_]) => {
                let file = files
                    .first()
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
                let ask = crate::admin::client::Ask {
                    admin: admin.as_deref(),
                    token_file: token_file.as_deref(),
                };
                against_running_diff(&file, &ask, json)
            }
            (true, _) => {
                eprintln!(
                    "portcullis: --against-running takes one FILE (the one the gateway runs from)"
                );
                ExitCode::from(2)
            }
        },
        Command::Explain {
            config,
            method,
            url,
            headers,
            client_ip,
        } => explain(&config, &method, &url, &headers, client_ip),
        Command::Run { config } => run(config, false),
        Command::Demo { config } => run(config, true),
        Command::Keys(KeysCommand::New { consumer }) => keys_new(&consumer),
        Command::Keys(KeysCommand::Hash) => keys_hash(),
    }
}

fn keys_new(consumer: &str) -> ExitCode {
    if let Err(rule) = config::consumer_id(consumer) {
        eprintln!("portcullis: --consumer {consumer:?}: {rule}");
        return ExitCode::from(2);
    }
    let key = match crate::keys::generate() {
        Ok(k) => k,
        Err(_) => {
            eprintln!("portcullis: the system random number generator failed");
            return ExitCode::FAILURE;
        }
    };
    // The key on stdout's first line alone, so scripts can take it; then a
    // consumer block ready to paste (valid config as it stands); the
    // advice on stderr.
    let entry = crate::keys::config_entry(&key.prefix, &key.digest_hex);
    println!("{}", key.key);
    println!("{}", consumer_block(consumer, &entry));
    eprintln!(
        "portcullis: this key is shown once and stored nowhere; give it to {consumer:?} now. The config holds only its digest."
    );
    ExitCode::SUCCESS
}

/// A `[[consumers]]` block for a new consumer holding one key (its
/// digest and prefix only), with the scopes left for the operator to grant.
fn consumer_block(consumer: &str, entry: &str) -> String {
    format!(
        r#"# A new consumer: paste into the config or a consumer file. For an
# existing consumer, add the entry to its keys = [...] instead.
[[consumers]]
id = "{consumer}"
keys = [{entry}]
# Grant what it may call, e.g. [{{ routes = ["orders"], methods = ["GET"] }}]
# or [{{ tags = ["public"] }}]; empty grants nothing.
scopes = []"#
    )
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
    println!("{}", crate::keys::hex(&crate::keys::digest(key)));
    ExitCode::SUCCESS
}

/// Prepare `file` as a reload would, with no live state.
fn print_errors(file: &std::path::Path, errors: &config::ConfigErrors) {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    eprintln!("{}: {} error(s)", file.display(), errors.0.len());
}

fn check(mut files: Vec<PathBuf>) -> ExitCode {
    if files.is_empty() {
        files.push(PathBuf::from(DEFAULT_CONFIG));
    }
    let mut ok = true;
    for file in files {
        match crate::reload::prepare_detached(&file) {
            Ok(prepared) if !prepared.snapshot.issuers.fetch_failures.is_empty() => {
                // At start-up or on reload the gateway runs on without
                // them (and retries); `check` says the config is not ready.
                ok = false;
                let errors = prepared.snapshot.issuers.fetch_failures.clone();
                print_errors(&file, &config::ConfigErrors(errors));
            }
            Ok(prepared) => {
                for cert in prepared.certs.iter().flatten().flat_map(|s| &s.certs) {
                    if let Some(days) = cert.expires_within(CERT_EXPIRY_WARNING_DAYS) {
                        eprintln!(
                            "{}: warning: certificate for {} expires in {days} day(s)",
                            file.display(),
                            cert.names.join(", ")
                        );
                    }
                }
                for w in config::warnings::warnings(&prepared.snapshot.config) {
                    eprintln!("{}: warning: {w}", file.display());
                }
                println!("{}: ok: {}", file.display(), prepared.snapshot.summary())
            }
            Err(errors) => {
                ok = false;
                print_errors(&file, &errors);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn diff(old: &std::path::Path, new: &std::path::Path, json: bool) -> ExitCode {
    let (old_p, new_p) = (
        crate::reload::prepare_detached(old),
        crate::reload::prepare_detached(new),
    );
    let (old_p, new_p) = match (old_p, new_p) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for (file, r) in [(old, a.err()), (new, b.err())] {
                if let Some(errors) = r {
                    print_errors(file, &errors);
                }
            }
            return ExitCode::from(2);
        }
    };
    let d = crate::reload::diff::ConfigDiff::between(&old_p.snapshot, &new_p.snapshot);
    print_diff(&d, json)
}

/// `diff --against-running FILE`: the running gateway prepares its own
/// config file as a reload would and says what would change (a dry run).
fn against_running_diff(
    file: &std::path::Path,
    ask: &crate::admin::client::Ask<'_>,
    json: bool,
) -> ExitCode {
    let answer = match crate::admin::client::dry_run(file, ask) {
        Ok(answer) => answer,
        Err(crate::admin::client::AskError::Rejected(errors)) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: {} error(s): a reload would be rejected",
                file.display(),
                errors.len()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    print_diff(&answer.changes, json)
}

/// Print `d` as text or JSON; exit 0 when it is empty, 1 when not, 2 when
/// it cannot be written.
fn print_diff(d: &crate::reload::diff::ConfigDiff, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(d) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("portcullis: cannot write the changes as JSON: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        println!("{d}");
    }
    if d.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn explain(
    file: &std::path::Path,
    method: &str,
    url: &str,
    headers: &[String],
    client_ip: std::net::IpAddr,
) -> ExitCode {
    let prepared = match crate::reload::prepare_detached(file) {
        Ok(p) => p,
        Err(errors) => {
            print_errors(file, &errors);
            return ExitCode::from(2);
        }
    };
    let req = match crate::explain::request(method, url, headers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    let arrival = crate::decide::Arrival {
        ip: Some(client_ip),
        tls: url.starts_with("https://"),
        redirect_https: None,
        roll: rand::random(),
    };
    let now = crate::clock::Clock::now_nanos(&crate::clock::SystemClock);
    // Counters of its own, fresh: the request as the first of its kind.
    let store = crate::ratelimit::LocalStore::new(1024);
    let explained = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt.block_on(crate::explain::explain(
            &prepared.snapshot,
            &req,
            &arrival,
            now,
            &store,
        )),
        Err(e) => {
            eprintln!("portcullis: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", explained.text);
    match explained.refused {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
    }
}

fn run(path: PathBuf, demo: bool) -> ExitCode {
    crate::logging::init();
    let gateway = match Gateway::load(path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let extra = if demo {
        let snapshot = gateway.snapshot();
        let config = &snapshot.config;
        println!("portcullis demo: sample backends start in this process; try:");
        for line in crate::demo::try_lines(config) {
            println!("  {line}");
        }
        crate::demo::sample_backends(config)
    } else {
        Vec::new()
    };
    let options = crate::server::RunOptions {
        extra,
        stop: None,
        // On a graceful stop, exit as soon as no request is left in flight.
        drained: Some(Box::new(|| std::process::exit(0))),
    };
    match crate::server::run(gateway, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

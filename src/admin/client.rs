//! The command line's side of the admin API: `portcullis diff
//! --against-running` asks the running gateway for a dry-run reload
//! (`POST /-/reload?dry_run=true`), so the gateway itself prepares its
//! config file and compares it with what runs. Nothing is applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::reload::diff::ConfigDiff;

/// Environment variable holding the admin token, when no token file is given.
pub const TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

/// How long the gateway may take to prepare its config.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to ask.
pub struct Ask<'a> {
    /// The admin API's base URL; `None`: from the config file's `[admin]
    /// address` (an unspecified address asked on loopback).
    pub admin: Option<&'a str>,
    /// A file holding the token; `None`: [`TOKEN_ENV`], or no token.
    pub token_file: Option<&'a Path>,
}

/// What the running gateway answered.
#[derive(Debug, Deserialize)]
pub struct DryRun {
    /// What a reload would change (`restart_required`: the start-up-only
    /// settings the file changes).
    pub changes: ConfigDiff,
    /// The file the gateway runs from, made absolute.
    pub config_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The config is invalid: read locally (for the admin address) or by
    /// the gateway (a reload would be rejected). Each line names file,
    /// line, column and item.
    #[error("the config is invalid")]
    Rejected(Vec<String>),
    #[error("cannot read the admin token from {path}: {error}")]
    Token {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot reach the admin API at {url}: {error}")]
    Unreachable { url: String, error: String },
    #[error("the admin API at {url} answered {status}: {detail}")]
    Refused {
        url: String,
        status: u16,
        detail: String,
    },
    #[error(
        "the gateway runs from {}, not {}: compare two files with `portcullis diff {} {}`",
        running.display(), given.display(), running.display(), given.display()
    )]
    NotTheFile { running: PathBuf, given: PathBuf },
}

/// Ask the gateway that runs from `file` what reloading it would change.
pub fn dry_run(file: &Path, ask: &Ask<'_>) -> Result<DryRun, AskError> {
    let base = match ask.admin {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let config =
                crate::config::load(file).map_err(|errors| AskError::Rejected(lines(&errors)))?;
            let mut addr = config.admin.address;
            if addr.port() == 0 {
                return Err(AskError::Unreachable {
                    url: format!("http://{addr}"),
                    error: "the config's [admin] address has port 0 (chosen at start-up): give the admin URL with --admin".to_string(),
                });
            }
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}")
        }
    };
    let token = match ask.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| AskError::Token {
                    path: path.to_path_buf(),
                    error,
                })?
                .trim()
                .to_string(),
        ),
        None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
    };
    let url = format!("{base}/-/reload?dry_run=true");
    let unreachable = |error: String| AskError::Unreachable {
        url: base.clone(),
        error,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let (status, body) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = client.post(&url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unreachable(format!("not a JSON answer: {e}")))?;
        Ok::<_, AskError>((status, body))
    })?;
    match status {
        200 => {
            let answer: DryRun = serde_json::from_value(body)
                .map_err(|e| unreachable(format!("not a dry-run answer: {e}")))?;
            let given = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
            if answer.config_file != given {
                return Err(AskError::NotTheFile {
                    running: answer.config_file,
                    given,
                });
            }
            Ok(answer)
        }
        422 => Err(AskError::Rejected(
            body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["text"].as_str().map(str::to_string))
                .collect(),
        )),
        _ => Err(AskError::Refused {
            url: base,
            status,
            detail: body["detail"].as_str().unwrap_or("").to_string(),
        }),
    }
}

fn lines(errors: &crate::config::ConfigErrors) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

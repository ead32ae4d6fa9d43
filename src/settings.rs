//! Server settings (not workflows): an optional `hookflow.yaml`, overridden by flags and
//! `HOOKFLOW_*` environment variables, resolved into ready-to-use values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::retry::{Backoff, RetryPolicy};
use crate::workflow::compile::parse_duration;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_WORKFLOWS: &str = "./workflows";
pub const DEFAULT_STORE: &str = "./hookflow.db";
pub const DEFAULT_CONFIG: &str = "./hookflow.yaml";

/// The config file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    /// Bearer token the admin API requires (besides /healthz and /readyz).
    pub admin_token: Option<String>,
    /// One file per secret, for secrets not in the environment.
    pub secrets_dir: Option<PathBuf>,
    pub workflows: Option<PathBuf>,
    pub store: Option<String>,
    pub workers: Option<usize>,
    pub sync_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub email: Option<EmailConfig>,
    pub exec: Option<ExecConfig>,
    pub retry: Option<RetryConfig>,
    /// How long finished runs and their events are kept (e.g. `30d`).
    pub retention: Option<String>,
}

/// `retry:` in the config file: the policy of steps whose workflow says nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub attempts: Option<u32>,
    pub backoff: Option<String>,
    pub initial: Option<String>,
    pub max: Option<String>,
}

/// `email:` in the config file: how `email` steps deliver.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://user:pass@host:587` (STARTTLS), `smtps://...` (implicit TLS),
    /// `smtp://host:25?tls=none`; without it, messages are written to `outbox`.
    pub smtp: Option<String>,
    /// The `from` address of steps that give none.
    pub from: Option<String>,
    /// Where `.eml` files go when no SMTP server is configured.
    pub outbox: Option<PathBuf>,
    pub timeout: Option<String>,
}

/// `exec:` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// `exec` steps run local commands: off unless enabled here.
    pub enabled: Option<bool>,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    /// Bearer token the admin API requires (besides /healthz and /readyz).
    pub admin_token: Option<String>,
    /// One file per secret, for secrets not in the environment.
    pub secrets_dir: Option<PathBuf>,
    pub workflows: Option<PathBuf>,
    pub store: Option<String>,
    pub workers: Option<usize>,
    pub smtp: Option<String>,
    pub admin_insecure: bool,
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: String,
    pub admin_listen: String,
    /// When set, the admin API requires `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Serve the admin API on a non-loopback address without a token (logged as a warning).
    pub admin_insecure: bool,
    /// Where secret values come from besides the environment.
    pub secrets: crate::secrets::SecretSource,
    pub workflows: PathBuf,
    /// Path of the SQLite database file (a `sqlite://` prefix is accepted).
    pub store: String,
    pub workers: usize,
    pub sync_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub email: EmailSettings,
    pub exec_enabled: bool,
    pub default_retry: RetryPolicy,
    /// Finished runs older than this are pruned.
    pub retention: Duration,
}

pub const DEFAULT_OUTBOX: &str = "./outbox";

/// How `email` steps deliver: SMTP when `smtp` is set, else `.eml` files in `outbox`.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub outbox: PathBuf,
    pub timeout: Duration,
}

impl ServeSettings {
    /// What workflows may use on this server.
    pub fn compile_options(&self) -> crate::workflow::CompileOptions {
        crate::workflow::CompileOptions {
            exec_enabled: self.exec_enabled,
            default_retry: self.default_retry.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ServeSettings {
    pub fn resolve(overrides: &Overrides) -> Result<Self, SettingsError> {
        let (file, config_path) = match &overrides.config {
            Some(path) => (read_config(path)?, path.display().to_string()),
            None if Path::new(DEFAULT_CONFIG).exists() => (
                read_config(Path::new(DEFAULT_CONFIG))?,
                DEFAULT_CONFIG.to_owned(),
            ),
            None => (ConfigFile::default(), DEFAULT_CONFIG.to_owned()),
        };
        let duration = |value: &Option<String>, key: &str, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_duration(text).ok_or_else(|| SettingsError::Invalid {
                path: config_path.clone(),
                message: format!("`{key}`: '{text}' is not a duration (e.g. 30s, 5m)"),
            }),
        };
        let store = overrides
            .store
            .clone()
            .or(file.store.clone())
            .unwrap_or_else(|| DEFAULT_STORE.to_owned());
        Ok(Self {
            listen: overrides
                .listen
                .clone()
                .or(file.listen.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            admin_listen: overrides
                .admin_listen
                .clone()
                .or(file.admin_listen.clone())
                .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned()),
            admin_token: overrides
                .admin_token
                .clone()
                .or(file.admin_token.clone())
                .filter(|t| !t.is_empty()),
            admin_insecure: overrides.admin_insecure,
            secrets: crate::secrets::SecretSource::new(
                overrides.secrets_dir.clone().or(file.secrets_dir.clone()),
            ),
            workflows: overrides
                .workflows
                .clone()
                .or(file.workflows.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKFLOWS)),
            store: store.strip_prefix("sqlite://").unwrap_or(&store).to_owned(),
            workers: overrides.workers.or(file.workers).unwrap_or(32).max(1),
            sync_timeout: duration(&file.sync_timeout, "sync_timeout", Duration::from_secs(30))?,
            shutdown_timeout: duration(
                &file.shutdown_timeout,
                "shutdown_timeout",
                Duration::from_secs(10),
            )?,
            email: EmailSettings {
                smtp: overrides
                    .smtp
                    .clone()
                    .or(file.email.as_ref().and_then(|e| e.smtp.clone())),
                from: file.email.as_ref().and_then(|e| e.from.clone()),
                outbox: file
                    .email
                    .as_ref()
                    .and_then(|e| e.outbox.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTBOX)),
                timeout: duration(
                    &file.email.as_ref().and_then(|e| e.timeout.clone()),
                    "email.timeout",
                    Duration::from_secs(30),
                )?,
            },
            exec_enabled: file.exec.as_ref().and_then(|e| e.enabled).unwrap_or(false),
            default_retry: resolve_retry(file.retry.as_ref(), &config_path)?,
            retention: duration(
                &file.retention,
                "retention",
                Duration::from_secs(30 * 86400),
            )?,
        })
    }
}

fn resolve_retry(config: Option<&RetryConfig>, path: &str) -> Result<RetryPolicy, SettingsError> {
    let mut policy = RetryPolicy::default();
    let Some(config) = config else {
        return Ok(policy);
    };
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_owned(),
        message,
    };
    if let Some(attempts) = config.attempts {
        if !(1..=100).contains(&attempts) {
            return Err(invalid(format!(
                "`retry.attempts`: {attempts} is not from 1 to 100"
            )));
        }
        policy.attempts = attempts;
    }
    if let Some(backoff) = &config.backoff {
        policy.backoff = match backoff.as_str() {
            "exponential" => Backoff::Exponential,
            "fixed" => Backoff::Fixed,
            other => return Err(invalid(format!("`retry.backoff`: unknown '{other}'"))),
        };
    }
    for (value, key, target) in [
        (&config.initial, "retry.initial", &mut policy.initial),
        (&config.max, "retry.max", &mut policy.max),
    ] {
        if let Some(text) = value {
            *target = parse_duration(text)
                .ok_or_else(|| invalid(format!("`{key}`: '{text}' is not a duration")))?;
        }
    }
    Ok(policy)
}

fn read_config(path: &Path) -> Result<ConfigFile, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_saphyr::from_str(&text).map_err(|e| SettingsError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

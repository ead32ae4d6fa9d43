//! Server settings (not workflows): an optional `hookflow.yaml`, overridden by flags and
//! `HOOKFLOW_*` environment variables, resolved into ready-to-use values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::effects::mail::EmailSettings;
pub use crate::http::tls::TlsFiles;
use crate::lang::units::parse_duration;
use crate::run::{Backoff, RetryPolicy};

pub mod schema;

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
    /// More `Host` names the admin listener answers to (a reverse proxy's), or `*`.
    pub admin_allowed_hosts: Option<Vec<String>>,
    /// One file per secret, for secrets not in the environment.
    pub secrets_dir: Option<PathBuf>,
    pub workflows: Option<PathBuf>,
    pub store: Option<String>,
    pub workers: Option<usize>,
    /// Runs executing at once across every process sharing the store.
    pub max_running: Option<u32>,
    /// Fresh runs the worker holds in memory with their events; the rest wait in the store.
    pub run_window: Option<usize>,
    /// Runs waiting in the store's queue past which webhooks are answered 503.
    pub max_backlog: Option<usize>,
    pub sync_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub email: Option<EmailConfig>,
    pub exec: Option<ExecConfig>,
    pub retry: Option<RetryConfig>,
    /// How long finished runs and their events are kept (e.g. `30d`).
    pub retention: Option<String>,
    /// PostgreSQL connections per process.
    pub store_pool_size: Option<u32>,
    /// Longest a PostgreSQL statement may run (e.g. `30s`; `0s` for no limit).
    pub store_statement_timeout: Option<String>,
    /// How long a claimed run stays a process's without renewal (e.g. `30s`).
    pub lease: Option<String>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Which addresses `http`, `ci` and `email` steps may reach.
    pub egress: Option<EgressConfig>,
    /// How long a client may take to send the request line and headers.
    pub header_timeout: Option<String>,
    /// How long a client may take to send the body, once its headers are in.
    pub body_timeout: Option<String>,
    /// The largest header block accepted (e.g. `64KiB`): the request line and header lines with
    /// their CRLFs and the empty line that ends them.
    pub max_header_size: Option<String>,
    /// Serve webhooks over HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// Outgoing rate limits per host, for every `http`, `ci` and `email` step calling it.
    pub rate_limits: Option<std::collections::BTreeMap<String, RateLimitConfig>>,
    /// Export OpenTelemetry traces (OTLP over HTTP) when an endpoint is given.
    pub telemetry: Option<TelemetryConfig>,
}

/// One entry of `rate_limits:`: a rate (`10/s`), or a rate with its burst.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RateLimitConfig {
    Rate(String),
    Bucket(RateBucketConfig),
}

/// `{ rate: 600/min, burst: 5 }` under `rate_limits:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBucketConfig {
    pub rate: String,
    pub burst: Option<u32>,
}

/// `telemetry:` in the config file; the standard `OTEL_*` variables win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP base URL (`http://collector:4318`); `/v1/traces` is appended.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans (default `hookflow`).
    pub service_name: Option<String>,
}

/// `egress:` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Address classes never connected to: `private`, `loopback`, `link_local`, `metadata`.
    pub deny: Option<Vec<String>>,
    /// Host names (`crm.internal`, `*.corp.example`) or CIDRs reachable even so.
    pub allow: Option<Vec<String>>,
}

/// `tls:` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
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
    /// Runs executing at once across every process sharing the store.
    pub max_running: Option<u32>,
    pub smtp: Option<String>,
    /// The sender of `email` steps without `from`; wins over `email.from`.
    pub email_from: Option<String>,
    pub admin_insecure: bool,
    /// Comma-separated `Host` names the admin listener answers to besides its own.
    pub admin_allowed_hosts: Option<String>,
    /// Comma-separated CIDRs of trusted proxies.
    pub trusted_proxies: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
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
    /// `Host` names the admin listener answers to besides loopback names, the address a
    /// connection reached and the host of `admin_listen`.
    pub admin_allowed_hosts: Vec<crate::http::access::HostPattern>,
    /// Where secret values come from besides the environment.
    pub secrets: crate::secrets::SecretSource,
    pub workflows: PathBuf,
    /// Path of the SQLite database file (a `sqlite://` prefix is accepted), or a PostgreSQL
    /// URL (`postgres://...`).
    pub store: String,
    pub workers: usize,
    /// Fresh runs held in memory with their events at once (at least `workers`).
    pub run_window: usize,
    /// Runs waiting in the store's queue past which webhooks are answered 503.
    pub max_backlog: usize,
    pub sync_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub email: EmailSettings,
    pub exec_enabled: bool,
    pub default_retry: RetryPolicy,
    /// Finished runs older than this are pruned.
    pub retention: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<crate::net::Cidr>,
    /// Which addresses outgoing steps may reach.
    pub egress: crate::net::EgressPolicy,
    /// Slow clients are cut off: headers within `header_timeout`, the body within `body_timeout`.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_size: usize,
    /// HTTPS for the webhook listener.
    pub tls: Option<TlsFiles>,
    /// How the store connects (PostgreSQL pool size and statement timeout).
    pub store_options: crate::store::StoreOptions,
    /// How long a claimed run stays this process's without renewal.
    pub lease: Duration,
    /// Outgoing rate limits by host name (lower case); `email` steps count against their SMTP
    /// server's host, or `email`.
    pub rate_limits: std::collections::BTreeMap<String, crate::run::RateLimit>,
    /// Where OpenTelemetry spans are exported; `None`: no span is recorded at all.
    pub traces: Option<crate::observe::trace::TraceSettings>,
}

pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

pub const DEFAULT_OUTBOX: &str = "./outbox";

impl ServeSettings {
    /// The outside world the server's steps reach: HTTP and mail within the egress policy.
    pub fn effects(&self) -> Result<crate::effects::Effects, crate::effects::EffectsError> {
        let mut effects = crate::effects::Effects::new(self.egress.clone(), &self.email)?;
        effects.rate.hosts = std::sync::Arc::new(self.rate_limits.clone());
        Ok(effects)
    }

    /// Who the admin listener answers: its token and the names it is reached by.
    pub fn admin_access(&self) -> crate::http::access::AdminAccess {
        crate::http::access::AdminAccess {
            token: self.admin_token.clone(),
            allowed_hosts: self.admin_allowed_hosts.clone(),
            listen_host: admin_listen_host(&self.admin_listen),
        }
    }

    /// What workflows may use on this server.
    pub fn compile_options(&self) -> crate::workflow::CompileOptions {
        crate::workflow::CompileOptions {
            exec_enabled: self.exec_enabled,
            default_retry: self.default_retry.clone(),
            default_sender: Some(self.email.from.is_some()),
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
    /// Flags over environment over file over defaults. Values are checked in the order the
    /// fields are listed, and the first wrong one is the error.
    pub fn resolve(overrides: &Overrides) -> Result<Self, SettingsError> {
        let (file, config_path) = read_config_file(overrides)?;
        let duration = |value: &Option<String>, key: &str, default: Duration| {
            duration_setting(value, key, default, &config_path)
        };
        let workers = overrides.workers.or(file.workers).unwrap_or(32).max(1);
        let (store_options, lease) =
            resolve_store_options(overrides, &file, &config_path, workers)?;
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
            admin_allowed_hosts: resolve_admin_allowed_hosts(overrides, &file, &config_path)?,
            secrets: crate::secrets::SecretSource::new(
                overrides.secrets_dir.clone().or(file.secrets_dir.clone()),
            ),
            workflows: overrides
                .workflows
                .clone()
                .or(file.workflows.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKFLOWS)),
            store: store.strip_prefix("sqlite://").unwrap_or(&store).to_owned(),
            workers,
            run_window: count_setting(
                "HOOKFLOW_RUN_WINDOW",
                file.run_window,
                "run_window",
                DEFAULT_RUN_WINDOW,
                &config_path,
            )?
            .max(workers),
            max_backlog: count_setting(
                "HOOKFLOW_MAX_BACKLOG",
                file.max_backlog,
                "max_backlog",
                DEFAULT_MAX_BACKLOG,
                &config_path,
            )?,
            sync_timeout: duration(&file.sync_timeout, "sync_timeout", Duration::from_secs(30))?,
            shutdown_timeout: duration(
                &file.shutdown_timeout,
                "shutdown_timeout",
                Duration::from_secs(10),
            )?,
            email: resolve_email(overrides, file.email.as_ref(), &config_path)?,
            exec_enabled: file.exec.as_ref().and_then(|e| e.enabled).unwrap_or(false),
            default_retry: resolve_retry(file.retry.as_ref(), &config_path)?,
            retention: duration(
                &file.retention,
                "retention",
                Duration::from_secs(30 * 86400),
            )?,
            trusted_proxies: resolve_trusted_proxies(overrides, &file, &config_path)?,
            egress: resolve_egress(file.egress.as_ref(), &config_path)?,
            // Zero would not mean "no limit" but "refuse every request".
            header_timeout: positive(
                duration(
                    &file.header_timeout,
                    "header_timeout",
                    DEFAULT_HEADER_TIMEOUT,
                )?,
                "header_timeout",
                &config_path,
            )?,
            body_timeout: positive(
                duration(&file.body_timeout, "body_timeout", DEFAULT_BODY_TIMEOUT)?,
                "body_timeout",
                &config_path,
            )?,
            max_header_size: resolve_max_header_size(
                file.max_header_size.as_deref(),
                &config_path,
            )?,
            tls: resolve_tls(overrides, file.tls.as_ref(), &config_path)?,
            store_options,
            lease,
            rate_limits: resolve_rate_limits(file.rate_limits.as_ref(), &config_path)?,
            traces: resolve_traces(file.telemetry.as_ref(), &config_path)?,
        })
    }
}

/// The OTLP endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` or `telemetry.otlp_endpoint` (a base URL, `/v1/traces`
/// appended); none, or `OTEL_SDK_DISABLED=true`, turns traces off.
fn resolve_traces(
    config: Option<&TelemetryConfig>,
    path: &str,
) -> Result<Option<crate::observe::trace::TraceSettings>, SettingsError> {
    use crate::observe::trace::TraceSettings;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let service_name = env("OTEL_SERVICE_NAME")
        .or_else(|| config.and_then(|c| c.service_name.clone()))
        .unwrap_or_else(|| "hookflow".to_owned());
    let invalid = |source: &str, err: crate::observe::trace::BadEndpoint| SettingsError::Invalid {
        path: source.to_owned(),
        message: format!("the OTLP endpoint {err}"),
    };
    if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return TraceSettings::from_traces_url(url.trim(), &service_name)
            .map(Some)
            .map_err(|e| invalid("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e));
    }
    if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        return TraceSettings::from_base(base.trim(), &service_name)
            .map(Some)
            .map_err(|e| invalid("OTEL_EXPORTER_OTLP_ENDPOINT", e));
    }
    match config.and_then(|c| c.otlp_endpoint.as_deref()) {
        Some(base) => TraceSettings::from_base(base.trim(), &service_name)
            .map(Some)
            .map_err(|e| SettingsError::Invalid {
                path: path.to_owned(),
                message: format!("`telemetry.otlp_endpoint`: {e}"),
            }),
        None => Ok(None),
    }
}

/// The config file named by `--config`, else `./hookflow.yaml` when it exists, else none; with
/// the path errors name.
fn read_config_file(overrides: &Overrides) -> Result<(ConfigFile, String), SettingsError> {
    Ok(match &overrides.config {
        Some(path) => (read_config(path)?, path.display().to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => (
            read_config(Path::new(DEFAULT_CONFIG))?,
            DEFAULT_CONFIG.to_owned(),
        ),
        None => (ConfigFile::default(), DEFAULT_CONFIG.to_owned()),
    })
}

/// A duration written like `30s` or `5m`, or `default` when the key is not set.
fn duration_setting(
    value: &Option<String>,
    key: &str,
    default: Duration,
    path: &str,
) -> Result<Duration, SettingsError> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text).ok_or_else(|| SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`{key}`: '{text}' is not a duration (e.g. 30s, 5m)"),
        }),
    }
}

/// PostgreSQL connections per process when `store_pool_size` is not set: accepts, step
/// records and run ends share one connection (group commit), so the others serve claims, lease
/// renewals, retries, accepts with dedupe keys or concurrency rules (a transaction each) and
/// the API: half the workers and a few more, from 8 to 64.
pub fn default_pool_size(workers: usize) -> u32 {
    u32::try_from(workers / 2 + 4).unwrap_or(64).clamp(8, 64)
}

/// How the store is reached and shared: its connection options, with the cap on running runs,
/// and the lease on claimed runs.
fn resolve_store_options(
    overrides: &Overrides,
    file: &ConfigFile,
    path: &str,
    workers: usize,
) -> Result<(crate::store::StoreOptions, Duration), SettingsError> {
    // Environment variables win over the file for these (they have no flags).
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let statement_timeout = duration_setting(
        &env("HOOKFLOW_STORE_STATEMENT_TIMEOUT").or(file.store_statement_timeout.clone()),
        "store_statement_timeout",
        Duration::from_secs(30),
        path,
    )?;
    let pool_size = match env("HOOKFLOW_STORE_POOL_SIZE") {
        Some(text) => text.parse().map_err(|_| SettingsError::Invalid {
            path: "HOOKFLOW_STORE_POOL_SIZE".into(),
            message: format!("'{text}' is not a number of connections"),
        })?,
        None => file
            .store_pool_size
            .unwrap_or_else(|| default_pool_size(workers)),
    };
    if !(1..=1000).contains(&pool_size) {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`store_pool_size`: {pool_size} is not from 1 to 1000"),
        });
    }
    let lease = duration_setting(
        &env("HOOKFLOW_LEASE").or(file.lease.clone()),
        "lease",
        Duration::from_secs(30),
        path,
    )?;
    if lease < Duration::from_secs(1) {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: "`lease`: must be at least 1s".into(),
        });
    }
    let max_running = overrides.max_running.or(file.max_running);
    if max_running == Some(0) {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: "`max_running`: must be at least 1".into(),
        });
    }
    let options = crate::store::StoreOptions {
        pool_size,
        statement_timeout: (!statement_timeout.is_zero()).then_some(statement_timeout),
        max_running,
        ..crate::store::StoreOptions::default()
    };
    Ok((options, lease))
}

/// Where mail goes: the SMTP server (flag over file), or the outbox folder.
fn resolve_email(
    overrides: &Overrides,
    config: Option<&EmailConfig>,
    path: &str,
) -> Result<EmailSettings, SettingsError> {
    Ok(EmailSettings {
        smtp: overrides
            .smtp
            .clone()
            .or(config.and_then(|e| e.smtp.clone())),
        from: (overrides.email_from.clone()).or(config.and_then(|e| e.from.clone())),
        outbox: config
            .and_then(|e| e.outbox.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTBOX)),
        timeout: duration_setting(
            &config.and_then(|e| e.timeout.clone()),
            "email.timeout",
            Duration::from_secs(30),
            path,
        )?,
    })
}

/// `max_header_size`, at least 8 KiB: hyper needs room for at least one 8 KiB read.
fn resolve_max_header_size(value: Option<&str>, path: &str) -> Result<usize, SettingsError> {
    let Some(text) = value else {
        return Ok(DEFAULT_MAX_HEADER_SIZE);
    };
    crate::lang::units::parse_size(text)
        .filter(|size| *size >= 8192)
        .ok_or_else(|| SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`max_header_size`: '{text}' is not a size of at least 8KiB"),
        })
}

/// Fresh runs held in memory by default: a burst past it waits in the store, not in memory.
pub const DEFAULT_RUN_WINDOW: usize = 256;
/// Runs waiting by default before webhooks are refused: minutes of work, not hours.
pub const DEFAULT_MAX_BACKLOG: usize = 50_000;

/// A count from `HOOKFLOW_<NAME>` or the file, at least 1.
fn count_setting(
    variable: &str,
    from_file: Option<usize>,
    key: &str,
    default: usize,
    path: &str,
) -> Result<usize, SettingsError> {
    let value = match std::env::var(variable).ok().filter(|v| !v.is_empty()) {
        Some(text) => text.trim().parse().map_err(|_| SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`{variable}`: '{text}' is not a whole number"),
        })?,
        None => from_file.unwrap_or(default),
    };
    if value == 0 {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`{key}`: must be at least 1"),
        });
    }
    Ok(value)
}

fn positive(value: Duration, key: &str, path: &str) -> Result<Duration, SettingsError> {
    if value.is_zero() {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: format!("`{key}` must be more than 0s"),
        });
    }
    Ok(value)
}

fn resolve_trusted_proxies(
    overrides: &Overrides,
    file: &ConfigFile,
    path: &str,
) -> Result<Vec<crate::net::Cidr>, SettingsError> {
    let entries: Vec<String> = match &overrides.trusted_proxies {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => file.trusted_proxies.clone().unwrap_or_default(),
    };
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse()
                .map_err(|err: crate::net::CidrError| SettingsError::Invalid {
                    path: path.to_owned(),
                    message: format!("`trusted_proxies`: {err}"),
                })
        })
        .collect()
}

/// The host of the admin address when it names one: `admin.internal` of `admin.internal:9090`,
/// but nothing for `0.0.0.0:9090` or `[::]:9090`, which name no host.
fn admin_listen_host(listen: &str) -> Option<String> {
    let authority = crate::http::access::Authority::parse(listen)?;
    match authority.host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => None,
        _ => Some(authority.host),
    }
}

fn resolve_admin_allowed_hosts(
    overrides: &Overrides,
    file: &ConfigFile,
    path: &str,
) -> Result<Vec<crate::http::access::HostPattern>, SettingsError> {
    let (entries, source): (Vec<String>, &str) = match &overrides.admin_allowed_hosts {
        Some(list) => (
            list.split(',').map(str::to_owned).collect(),
            "--admin-allowed-hosts",
        ),
        None => (file.admin_allowed_hosts.clone().unwrap_or_default(), path),
    };
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.parse().map_err(
                |err: crate::http::access::BadHostPattern| SettingsError::Invalid {
                    path: source.to_owned(),
                    message: format!("`admin_allowed_hosts`: {err}"),
                },
            )
        })
        .collect()
}

/// `rate_limits:`, each host's rate read like a workflow's (`10/s`, `600/min`); the burst is 1
/// unless given, as for a step's own limit.
fn resolve_rate_limits(
    config: Option<&std::collections::BTreeMap<String, RateLimitConfig>>,
    path: &str,
) -> Result<std::collections::BTreeMap<String, crate::run::RateLimit>, SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_owned(),
        message,
    };
    let mut limits = std::collections::BTreeMap::new();
    for (host, entry) in config.into_iter().flatten() {
        let (rate, burst) = match entry {
            RateLimitConfig::Rate(rate) => (rate, None),
            RateLimitConfig::Bucket(bucket) => (&bucket.rate, bucket.burst),
        };
        let per_second = crate::lang::units::parse_rate(rate).ok_or_else(|| {
            invalid(format!(
                "`rate_limits.{host}`: '{rate}' is not a rate (write a count above 0 per second, minute or hour: 10/s, 600/min)"
            ))
        })?;
        if burst == Some(0) {
            return Err(invalid(format!(
                "`rate_limits.{host}.burst` is a whole number, at least 1"
            )));
        }
        let limit = crate::run::RateLimit {
            per_second,
            burst: burst.unwrap_or(1),
        };
        limits.insert(host.trim().to_ascii_lowercase(), limit);
    }
    Ok(limits)
}

fn resolve_egress(
    config: Option<&EgressConfig>,
    path: &str,
) -> Result<crate::net::EgressPolicy, SettingsError> {
    use crate::net::AddressClass;
    let mut policy = crate::net::EgressPolicy::default();
    let Some(config) = config else {
        return Ok(policy);
    };
    for name in config.deny.iter().flatten() {
        let class = AddressClass::from_name(name).ok_or_else(|| SettingsError::Invalid {
            path: path.to_owned(),
            message: format!(
                "`egress.deny`: unknown '{name}'; expected some of: {}",
                AddressClass::NAMES.join(", ")
            ),
        })?;
        if !policy.deny.contains(&class) {
            policy.deny.push(class);
        }
    }
    for entry in config.allow.iter().flatten() {
        if entry.trim().is_empty() {
            return Err(SettingsError::Invalid {
                path: path.to_owned(),
                message: "`egress.allow`: an empty entry".to_owned(),
            });
        }
        policy.allow(entry);
    }
    Ok(policy)
}

fn resolve_tls(
    overrides: &Overrides,
    config: Option<&TlsConfig>,
    path: &str,
) -> Result<Option<TlsFiles>, SettingsError> {
    let cert = overrides
        .tls_cert
        .clone()
        .or(config.and_then(|c| c.cert.clone()));
    let key = overrides
        .tls_key
        .clone()
        .or(config.and_then(|c| c.key.clone()));
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => Err(SettingsError::Invalid {
            path: path.to_owned(),
            message: "`tls` needs both `cert` and `key`".to_owned(),
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(config: &str, overrides: Overrides) -> Result<ServeSettings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookflow.yaml");
        std::fs::write(&path, config).unwrap();
        ServeSettings::resolve(&Overrides {
            config: Some(path),
            ..overrides
        })
    }

    #[test]
    fn the_pool_follows_the_workers_unless_set() {
        assert_eq!(default_pool_size(32), 20);
        assert_eq!(default_pool_size(1), 8);
        assert_eq!(default_pool_size(1000), 64);
        let workers = |yaml: &str| resolve_with(yaml, Overrides::default()).unwrap();
        assert_eq!(workers("workers: 64\n").store_options.pool_size, 36);
        assert_eq!(
            workers("workers: 64\nstore_pool_size: 5\n")
                .store_options
                .pool_size,
            5
        );
    }

    #[test]
    fn door_settings_come_from_the_file_and_flags_win() {
        let config = "trusted_proxies: [10.0.0.0/8]\nheader_timeout: 5s\nbody_timeout: 20s\nmax_header_size: 16KiB\ntls: { cert: a.crt, key: a.key }\negress:\n  deny: [loopback, metadata]\n  allow: [crm.internal, 127.0.0.2]\n";
        let settings = resolve_with(config, Overrides::default()).unwrap();
        assert_eq!(
            settings.trusted_proxies,
            vec!["10.0.0.0/8".parse().unwrap()]
        );
        assert_eq!(settings.header_timeout, Duration::from_secs(5));
        assert_eq!(settings.body_timeout, Duration::from_secs(20));
        assert_eq!(settings.max_header_size, 16 * 1024);
        assert_eq!(settings.tls.as_ref().unwrap().cert, PathBuf::from("a.crt"));
        let egress = &settings.egress;
        assert!(egress.check("x", "127.0.0.1".parse().unwrap()).is_err());
        assert!(egress.check("x", "127.0.0.2".parse().unwrap()).is_ok());
        assert!(
            egress
                .check("crm.internal", "127.0.0.1".parse().unwrap())
                .is_ok()
        );
        // Private addresses were not denied.
        assert!(egress.check("x", "10.1.1.1".parse().unwrap()).is_ok());

        let flags = Overrides {
            trusted_proxies: Some("192.0.2.1, 2001:db8::/32".into()),
            ..Overrides::default()
        };
        let settings = resolve_with(config, flags).unwrap();
        assert_eq!(settings.trusted_proxies.len(), 2);

        let defaults = resolve_with("{}", Overrides::default()).unwrap();
        assert!(defaults.egress.is_open() && defaults.tls.is_none());
        assert!(defaults.trusted_proxies.is_empty());
        assert_eq!(defaults.header_timeout, DEFAULT_HEADER_TIMEOUT);
    }

    #[test]
    fn max_running_comes_from_the_file_and_the_flag_wins() {
        let defaults = resolve_with("{}", Overrides::default()).unwrap();
        assert_eq!(defaults.store_options.max_running, None);
        let from_file = resolve_with("max_running: 4", Overrides::default()).unwrap();
        assert_eq!(from_file.store_options.max_running, Some(4));
        let flag = Overrides {
            max_running: Some(2),
            ..Overrides::default()
        };
        let settings = resolve_with("max_running: 4", flag).unwrap();
        assert_eq!(settings.store_options.max_running, Some(2));
        let err = resolve_with("max_running: 0", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("`max_running`"), "{err}");
    }

    #[test]
    fn admin_allowed_hosts_come_from_the_file_and_the_flag_wins() {
        use crate::http::access::{Authority, HostPattern};
        let config = "admin_listen: admin.internal:9090\nadmin_allowed_hosts: [admin.example.com, 'proxy.example.com:8443']\n";
        let settings = resolve_with(config, Overrides::default()).unwrap();
        assert_eq!(settings.admin_allowed_hosts.len(), 2);
        let access = settings.admin_access();
        assert_eq!(access.listen_host.as_deref(), Some("admin.internal"));
        assert_eq!(
            access.allowed_hosts[1],
            HostPattern::Host(Authority {
                host: "proxy.example.com".into(),
                port: Some(8443)
            })
        );
        let flag = Overrides {
            admin_allowed_hosts: Some("*".into()),
            admin_listen: Some("0.0.0.0:9090".into()),
            ..Overrides::default()
        };
        let settings = resolve_with(config, flag).unwrap();
        assert_eq!(settings.admin_allowed_hosts, vec![HostPattern::Any]);
        // An address that binds every interface names no host.
        assert_eq!(settings.admin_access().listen_host, None);
        let err = resolve_with(
            "admin_allowed_hosts: ['http://admin.example.com']",
            Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`admin_allowed_hosts`"), "{err}");
    }

    /// A tokio test: the SMTP transport the effects build needs a runtime.
    #[tokio::test]
    async fn rate_limits_per_host_are_read_and_bad_ones_refused() {
        let config = "rate_limits:\n  API.example.com: 10/s\n  smtp.example.com: { rate: 600/min, burst: 5 }\nemail: { smtp: 'smtp://smtp.example.com:587' }\n";
        let settings = resolve_with(config, Overrides::default()).unwrap();
        let api = settings.rate_limits["api.example.com"];
        assert_eq!((api.per_second, api.burst), (10.0, 1));
        let smtp = settings.rate_limits["smtp.example.com"];
        assert_eq!((smtp.per_second, smtp.burst), (10.0, 5));
        let effects = settings.effects().unwrap();
        assert_eq!(effects.rate.email_host, "smtp.example.com");
        assert!(effects.rate.host_bucket(None).is_some());
        for (config, expected) in [
            ("rate_limits: { a.test: 10/x }", "'10/x' is not a rate"),
            ("rate_limits: { a.test: 0/s }", "'0/s' is not a rate"),
            ("rate_limits: { a.test: { rate: 1/s, burst: 0 } }", "burst"),
            (
                "rate_limits: { a.test: { rate: 1/s, per: x } }",
                "rate_limits",
            ),
        ] {
            let err = resolve_with(config, Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn bad_door_settings_say_what_is_wrong() {
        for (config, expected) in [
            ("egress: { deny: [intranet] }", "unknown 'intranet'"),
            ("trusted_proxies: [10.0.0.0/33]", "`trusted_proxies`"),
            ("tls: { cert: a.crt }", "needs both"),
            ("max_header_size: 1KiB", "at least 8KiB"),
            (
                "header_timeout: 0s",
                "`header_timeout` must be more than 0s",
            ),
            ("body_timeout: 0ms", "`body_timeout` must be more than 0s"),
        ] {
            let err = resolve_with(config, Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_a_bad_one_stops_the_start() {
        let from_env = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .chain(&["OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED"])
        .any(|name| std::env::var_os(name).is_some());
        if from_env {
            // The variables win over the file: what this checks cannot be seen here.
            return;
        }
        assert_eq!(
            resolve_with("{}", Overrides::default()).unwrap().traces,
            None
        );
        let config = "telemetry: { otlp_endpoint: 'http://collector:4318/', service_name: shop }";
        let traces = resolve_with(config, Overrides::default())
            .unwrap()
            .traces
            .expect("traces on");
        assert_eq!(traces.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(traces.service_name, "shop");
        let named_only = resolve_with(
            "telemetry: { otlp_endpoint: 'https://c' }",
            Overrides::default(),
        );
        assert_eq!(named_only.unwrap().traces.unwrap().service_name, "hookflow");
        for bad in ["collector:4318", "grpc://collector:4317", "not a url"] {
            let config = format!("telemetry: {{ otlp_endpoint: '{bad}' }}");
            let err = resolve_with(&config, Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains("`telemetry.otlp_endpoint`"),
                "{bad}: {err}"
            );
        }
        let err = resolve_with("telemetry: { endpoint: x }", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
    }
}

//! The command line: `serve`, `validate`, `run`, `runs`, `start`, `test`, `schema`, `send`.
//! Arguments are parsed here and turned into resolved settings before any work starts.

mod pause;
mod payload;
mod replay_all;
mod run;
mod runs;
mod schema;
mod send;
mod serve;
mod sign;
mod start;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::observe::telemetry::LogFormat;

/// The version and the commit this binary was built from (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOOKFLOW_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "hookflow",
    version = VERSION,
    about = "Turn incoming webhooks into declarative YAML workflows"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the workflows: webhooks on --listen, admin API on --admin-listen.
    Serve(ServeArgs),
    /// Check workflow files and report every problem with file:line:col (exit 1 on any error).
    Validate(ValidateArgs),
    /// Run one workflow in-process on a saved payload and print a step-by-step trace.
    Run(RunArgs),
    /// Read the runs recorded in the store.
    Runs(RunsArgs),
    /// Start a run of a workflow by hand through a running server; prints the run id.
    Start(StartArgs),
    /// Pause or resume a workflow through a running server.
    Workflows(WorkflowsArgs),
    /// Run workflow test files (*.test.yaml): stubbed effects, a virtual clock, expectations.
    Test(TestArgs),
    /// Print the JSON Schema of workflow files (or of hookflow.yaml) for editors.
    Schema(SchemaArgs),
    /// Send a saved payload to a running server as its provider would: signed, with its headers.
    Send(SendArgs),
    /// Print the signature headers a sender would send with a body (a file, or standard input).
    Sign(SignArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files, or directories searched for *.test.yaml [default: ./workflows]
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Load the workflows from this directory instead of each test file's own
    #[arg(long)]
    pub workflows: Option<PathBuf>,
    /// Server config file [default: hookflow.yaml beside the test file, else ./hookflow.yaml]
    #[arg(long, env = "HOOKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Only the cases whose name contains this text
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of workflow files [default: ./workflows]
    #[arg(long, env = "HOOKFLOW_WORKFLOWS")]
    pub workflows: Option<PathBuf>,
    /// Server config file [default: ./hookflow.yaml when present]
    #[arg(long, env = "HOOKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address for webhooks [default: 0.0.0.0:8080]
    #[arg(long, env = "HOOKFLOW_LISTEN")]
    pub listen: Option<String>,
    /// Address for the admin API [default: 127.0.0.1:9090]
    #[arg(long, env = "HOOKFLOW_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Store: a SQLite file path [default: ./hookflow.db]
    #[arg(long, env = "HOOKFLOW_STORE")]
    pub store: Option<String>,
    /// Runs executed at once [default: 32]
    #[arg(long, env = "HOOKFLOW_WORKERS")]
    pub workers: Option<usize>,
    /// Runs executing at once in the whole store, across every process sharing it [default:
    /// none]
    #[arg(long, env = "HOOKFLOW_MAX_RUNNING")]
    pub max_running: Option<u32>,
    /// A directory with one file per secret (Docker/Kubernetes secrets), for secrets not in the
    /// environment
    #[arg(long, env = "HOOKFLOW_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Bearer token the admin API requires; needed when --admin-listen is not loopback
    #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Serve the admin API on a non-loopback address without a token (not recommended)
    #[arg(long)]
    pub admin_insecure: bool,
    /// Host names the admin listener also answers to (a reverse proxy's), comma-separated;
    /// `*` for any
    #[arg(long, env = "HOOKFLOW_ADMIN_ALLOWED_HOSTS")]
    pub admin_allowed_hosts: Option<String>,
    /// Proxies whose X-Forwarded-For names the client: comma-separated CIDRs, e.g. 10.0.0.0/8
    #[arg(long, env = "HOOKFLOW_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Serve webhooks over HTTPS: the certificate chain (PEM); needs --tls-key
    #[arg(long, env = "HOOKFLOW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "HOOKFLOW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// SMTP server for `email` steps, e.g. smtp://user:pass@host:587 [default: write .eml files to ./outbox]
    #[arg(long, env = "HOOKFLOW_SMTP", hide_env_values = true)]
    pub smtp: Option<String>,
    /// The sender of `email` steps without `from`, e.g. 'Ops <ops@example.com>' [default:
    /// `email.from` of hookflow.yaml]
    #[arg(long, env = "HOOKFLOW_EMAIL_FROM")]
    pub email_from: Option<String>,
    #[arg(long, env = "HOOKFLOW_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files or directories [default: ./workflows]
    pub paths: Vec<PathBuf>,
    /// Server config file, for the settings that decide what workflows may use
    /// [default: ./hookflow.yaml when present]
    #[arg(long, env = "HOOKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// A directory with one file per secret, for secrets not in the environment
    #[arg(long, env = "HOOKFLOW_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Show the schedules' next fire times after this instant (RFC 3339) [default: now]
    #[arg(long, env = "HOOKFLOW_SCHEDULES_FROM")]
    pub schedules_from: Option<chrono::DateTime<chrono::Utc>>,
    /// The sender of `email` steps without `from`, e.g. 'Ops <ops@example.com>' [default:
    /// `email.from` of hookflow.yaml]
    #[arg(long, env = "HOOKFLOW_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// A sample request body (JSON, XML or form) to check every `event.body` path the
    /// workflows read against (repeatable); samples in `<workflow>.samples/` are read too
    #[arg(long = "payload", value_name = "FILE")]
    pub payloads: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A workflow file, or the name of a workflow in --workflows
    pub workflow: String,
    /// The request body to run on (its bytes, exactly)
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// A request header, 'Name: value' (repeatable)
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Render every step but send nothing; show what would be sent. Effects get the answer
    /// the real service would give (or a --stub)
    #[arg(long)]
    pub dry_run: bool,
    /// Under --dry-run, what step STEP's effect answers: a stub file (`http:`, `email:` or
    /// `exec:`, as in test files), 'STEP=FILE' (repeatable)
    #[arg(long = "stub", value_name = "STEP=FILE", requires = "dry_run")]
    pub stubs: Vec<String>,
    /// Where to look up a workflow given by name
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
    /// Server config file (email delivery, exec) [default: ./hookflow.yaml when present]
    #[arg(long, env = "HOOKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// A directory with one file per secret, for secrets not in the environment
    #[arg(long, env = "HOOKFLOW_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// The sender of `email` steps without `from`, e.g. 'Ops <ops@example.com>' [default:
    /// `email.from` of hookflow.yaml]
    #[arg(long, env = "HOOKFLOW_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// The request path, e.g. /hooks/acme/orders, to fill `event.path` and the path parameters
    /// [default: the webhook's path pattern]
    #[arg(long)]
    pub path: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The workflow's name
    pub workflow: String,
    /// A JSON file to run on as `event.body`, or - for standard input [default: {}]
    #[arg(long)]
    pub payload: Option<String>,
    /// The server's admin address
    #[arg(
        long,
        env = "HOOKFLOW_ADMIN_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub admin: String,
    /// The server's admin token, when it has one
    #[arg(
        long,
        alias = "token",
        env = "HOOKFLOW_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// The schema of hookflow.yaml (the server settings) instead of a workflow file's
    #[arg(long)]
    pub settings: bool,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The `verify` scheme: github, gitlab, stripe, shopify, slack, standard_webhooks, bitbucket,
    /// gitea, forgejo, twilio or basic
    #[arg(long)]
    pub scheme: String,
    /// The secret (the token for gitlab, the password for basic)
    #[arg(long, env = "HOOKFLOW_SIGN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The body to sign, byte for byte [default: standard input]
    pub file: Option<PathBuf>,
    /// twilio: the URL the request is sent to (it is signed)
    #[arg(long)]
    pub url: Option<String>,
    /// twilio: the body is a form (its parameters are signed)
    #[arg(long)]
    pub form: bool,
    /// standard_webhooks: the message id [default: a fresh one]
    #[arg(long)]
    pub id: Option<String>,
    /// basic: the user name
    #[arg(long)]
    pub username: Option<String>,
    /// The signing time, in Unix seconds [default: now]
    #[arg(long)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// A workflow file, or the name of a workflow in --workflows
    pub workflow: String,
    /// The body to send (its bytes, exactly); its headers file X.headers.json is read when there
    pub payload: PathBuf,
    /// A request header, 'Name: value' (repeatable); wins over the headers file
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// The server's webhook address; the webhook's path is added to it
    #[arg(
        long,
        env = "HOOKFLOW_SEND_TO",
        default_value = "http://127.0.0.1:8080"
    )]
    pub to: String,
    /// The path to send to, when the webhook's path has parameters, e.g. /hooks/acme/orders
    #[arg(long)]
    pub path: Option<String>,
    /// The delivery id to send instead of a fresh one (the same id twice is a duplicate)
    #[arg(long)]
    pub delivery_id: Option<String>,
    /// Where to look up a workflow given by name
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
    /// Server config file, for the settings that decide what workflows may use
    /// [default: ./hookflow.yaml when present]
    #[arg(long, env = "HOOKFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// A directory with one file per secret, for secrets not in the environment
    #[arg(long, env = "HOOKFLOW_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
    /// Store: a SQLite file path
    #[arg(
        long,
        env = "HOOKFLOW_STORE",
        default_value = "./hookflow.db",
        global = true
    )]
    pub store: String,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The newest runs, newest first.
    List {
        #[arg(long)]
        workflow: Option<String>,
        /// queued, running, retrying, succeeded, failed, filtered or cancelled
        #[arg(long)]
        status: Option<String>,
        /// How many runs, newest first (read from the store a page at a time)
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run a finished run again through a running server: from its failed step (finished
    /// steps are not redone), or with --from-start from the first step; on the definition the
    /// run has, or with --latest on the workflow as the server has it now.
    Replay {
        id: String,
        #[arg(long)]
        from_start: bool,
        /// Run the workflow's current definition (after a fix), not the run's own version
        #[arg(long)]
        latest: bool,
        /// The server's admin address
        #[arg(
            long,
            env = "HOOKFLOW_ADMIN_URL",
            default_value = "http://127.0.0.1:9090"
        )]
        admin: String,
        /// The server's admin token, when it has one
        #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Replay every finished run of a workflow that matches, at a rate, through a running
    /// server; --preview only counts them.
    ReplayAll {
        /// The workflow whose runs are replayed
        #[arg(long)]
        workflow: String,
        /// Runs with this status: failed, cancelled, succeeded or filtered
        #[arg(long, default_value = "failed")]
        status: String,
        /// Runs created at or after this time (RFC 3339)
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Runs created before this time (RFC 3339)
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Runs whose error contains this text
        #[arg(long)]
        error: Option<String>,
        /// Runs replayed a second, so a recovered receiver is not flooded
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Run the workflow's current definition, not each run's own version
        #[arg(long)]
        latest: bool,
        #[arg(long)]
        from_start: bool,
        /// Count the matching runs and list them; replay nothing
        #[arg(long)]
        preview: bool,
        /// The server's admin address
        #[arg(
            long,
            env = "HOOKFLOW_ADMIN_URL",
            default_value = "http://127.0.0.1:9090"
        )]
        admin: String,
        /// The server's admin token, when it has one
        #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Cancel an unfinished run through a running server: a waiting one ends `cancelled` at
    /// once, a running one stops at its next step (an `exec` command in flight is killed).
    Cancel {
        /// The run's id (or a unique prefix of one)
        id: String,
        /// Why, recorded with the run's error
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: AdminServer,
    },
    /// One run with its event and every step (an id or a unique prefix of one).
    Show {
        id: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// A run's stored event: method, path, headers and body (an id or a unique prefix of one).
    Event {
        id: String,
        /// Write the body and its headers file into this folder, for `run`, `test` and `send`
        #[arg(long)]
        save: Option<PathBuf>,
        /// The saved files' name, without extension [default: <workflow>-<short run id>]
        #[arg(long, requires = "save")]
        name: Option<String>,
    },
}

/// How a client command reaches a running server's admin API.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminServer {
    /// The server's admin address
    #[arg(
        long,
        env = "HOOKFLOW_ADMIN_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    pub admin: String,
    /// The server's admin token, when it has one
    #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub command: WorkflowsCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Pause a workflow: its webhooks are still accepted and stored, its runs wait in the
    /// queue and its schedules skip their ticks until it is resumed.
    Pause {
        /// The workflow's name
        name: String,
        /// Why, shown with the pause
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: AdminServer,
    },
    /// Resume a paused workflow: its queued runs start.
    Resume {
        /// The workflow's name
        name: String,
        /// Why, written to the server's log
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: AdminServer,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Validate(args) => validate::validate(args),
        Command::Run(args) => run::run(args).await,
        Command::Runs(args) => runs::runs(args).await,
        Command::Start(args) => start::start(args).await,
        Command::Workflows(args) => pause::workflows(args).await,
        Command::Test(args) => test::test(args).await,
        Command::Schema(args) => schema::schema(args),
        Command::Send(args) => send::send(args).await,
        Command::Sign(args) => sign::sign_body(args),
    }
}

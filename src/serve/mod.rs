//! The composition root of `serve`: load workflows, open the store, start the worker, the
//! schedule ticker and the workflows watch, and serve the webhook and admin listeners until told
//! to stop. `reload.rs` swaps the workflows while serving, `watch.rs` notices when to, and
//! `ticker.rs` starts the runs of `on.schedule`.

pub mod reload;
pub mod ticker;
// The workflows watch: tokio's `watch` (the stop signal) is named by its full path here.
pub mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::diag::Diagnostics;
use crate::http::{self, AppState, body::BodyLimits};
use crate::settings::ServeSettings;
use crate::store::{Definition, OpenMode, Store, StoreError};
use crate::worker::{Worker, WorkerSettings};
use crate::workflow::{self, Registry, SharedRegistry};

pub use reload::Reloader;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read workflows from {path}: {source}")]
    Workflows {
        path: String,
        source: std::io::Error,
    },
    #[error("{count} problem(s) in the workflows; nothing was started")]
    Invalid {
        count: usize,
        diagnostics: Diagnostics,
    },
    #[error("reload refused: the {kept} workflow(s) loaded before keep serving")]
    Kept {
        #[source]
        problem: reload::FolderProblem,
        kept: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the steps' effects: {0}")]
    Effects(String),
    #[error(transparent)]
    Traces(#[from] TracerSetupError),
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::http::tls::TlsError),
    #[error(
        "refusing to serve the admin API on {0} without a token: set --admin-token (HOOKFLOW_ADMIN_TOKEN), bind it to loopback, or pass --admin-insecure"
    )]
    InsecureAdmin(std::net::SocketAddr),
}

/// A server running in this process; tests start one on `127.0.0.1:0`.
pub struct RunningServer {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    reloader: Reloader,
    hangup: Arc<tokio::sync::Notify>,
}

impl RunningServer {
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// What SIGHUP notifies: the workflows path is watched afresh (its folder may be a new
    /// one) and the workflows are reloaded.
    pub fn hangup(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.hangup)
    }

    /// Stop taking requests, let runs in flight finish (bounded), and return when all is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Wait until the server stops for another reason (the listeners closing).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn stopper(&self) -> tokio::sync::watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Load the workflows; refuse to start when any of them is invalid. A missing folder is served
/// as empty (it is loaded when it appears); a reload keeps its set instead (`reload.rs`).
pub fn load_registry(settings: &ServeSettings) -> Result<Registry, ServerError> {
    if !settings.workflows.exists() {
        warn!(path = %settings.workflows.display(), "workflows directory does not exist; serving no workflows");
        return Ok(Registry::default());
    }
    let files = workflow::workflow_files(std::slice::from_ref(&settings.workflows))
        .map_err(|source| unreadable(settings, source))?;
    compile_registry(settings, &files)
}

/// Compile these workflow files into one registry, or every problem found in them.
pub(crate) fn compile_registry(
    settings: &ServeSettings,
    files: &[std::path::PathBuf],
) -> Result<Registry, ServerError> {
    let options = settings.compile_options();
    let loaded = workflow::load(files, &options).map_err(|source| unreadable(settings, source))?;
    if loaded.diagnostics.has_errors() {
        return Err(ServerError::Invalid {
            count: loaded.diagnostics.error_count(),
            diagnostics: loaded.diagnostics,
        });
    }
    for d in loaded.diagnostics.iter() {
        warn!("{d}");
    }
    for w in loaded.registry.workflows.values() {
        for missing in settings.secrets.missing(&w.secrets) {
            let hint = settings.secrets.where_to_set(&missing);
            warn!(workflow = %w.name, secret = %missing, "declared secret is not set: {hint}");
        }
    }
    Ok(loaded.registry)
}

fn unreadable(settings: &ServeSettings, source: std::io::Error) -> ServerError {
    ServerError::Workflows {
        path: settings.workflows.display().to_string(),
        source,
    }
}

pub async fn start(
    settings: &ServeSettings,
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
) -> Result<RunningServer, ServerError> {
    let registry = load_registry(settings)?;
    let store = Store::open_with(&settings.store, OpenMode::Serve, &settings.store_options).await?;
    serve_with(settings, registry, store, webhook_listener, admin_listener).await
}

/// Start with a store opened by the caller (any backend), e.g. to test how the server behaves
/// when its store fails.
pub async fn start_with_store(
    settings: &ServeSettings,
    store: Store,
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
) -> Result<RunningServer, ServerError> {
    let registry = load_registry(settings)?;
    serve_with(settings, registry, store, webhook_listener, admin_listener).await
}

async fn serve_with(
    settings: &ServeSettings,
    registry: Registry,
    store: Store,
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
) -> Result<RunningServer, ServerError> {
    refuse_open_admin(settings, &admin_listener)?;
    // This process holds the store alone: runs left `running` belong to a process that is gone.
    store.take_over_orphans().await?;
    save_definitions(&store, &registry).await?;
    log_routes(&registry);
    let workflow_count = registry.workflows.len();
    let registry = Arc::new(RwLock::new(Arc::new(registry)));
    let tls = match &settings.tls {
        Some(files) => Some(Arc::new(crate::http::tls::TlsConfig::load(files)?)),
        None => None,
    };
    let reloader = Reloader::new(
        settings.clone(),
        Arc::clone(&registry),
        store.clone(),
        tls.clone(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // SIGHUP asks through this: the watches are set up again and the workflows reloaded.
    let hangup = Arc::new(tokio::sync::Notify::new());
    let watcher = watch::watch_workflows(
        &settings.workflows,
        reloader.clone(),
        Arc::clone(&hangup),
        stopped.clone(),
    );
    let tracer = match &settings.traces {
        Some(traces) => Some(crate::observe::trace::Tracer::start(
            traces,
            Arc::new(Collector::new()?),
        )),
        None => None,
    };
    let (worker, tasks) =
        start_runs(settings, &store, &registry, &reloader, &stopped, &tracer).await?;
    let webhook_url = webhook_url(webhook_listener.local_addr().ok(), tls.is_some());
    let mut state = app_state(settings, registry, store, worker, &reloader, webhook_url);
    state.tracer = tracer;
    let webhook_addr = webhook_listener
        .local_addr()
        .map_err(ServerError::Listener)?;
    let admin_addr = admin_listener.local_addr().map_err(ServerError::Listener)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%webhook_addr, %admin_addr, workflows = workflow_count, scheme, "hookflow is serving");
    let listeners = Listeners {
        webhook: webhook_listener,
        admin: admin_listener,
        tls,
    };
    let task = serve_until_stopped(settings, state, listeners, tasks, watcher, stopped);
    Ok(RunningServer {
        webhook_addr,
        admin_addr,
        stop,
        task,
        reloader,
        hangup,
    })
}

/// Runs, events and replays are behind the admin API: not for the network without a token,
/// unless `--admin-insecure` says so (and the log warns).
fn refuse_open_admin(
    settings: &ServeSettings,
    admin_listener: &TcpListener,
) -> Result<(), ServerError> {
    let admin_addr = admin_listener.local_addr().map_err(ServerError::Listener)?;
    if !admin_addr.ip().is_loopback() && settings.admin_token.is_none() {
        if !settings.admin_insecure {
            return Err(ServerError::InsecureAdmin(admin_addr));
        }
        warn!(%admin_addr, "the admin API is open to the network without a token (--admin-insecure)");
    }
    Ok(())
}

/// The tasks that execute runs beside the listeners, each ending when told to stop.
struct RunTasks {
    worker: tokio::task::JoinHandle<()>,
    pruner: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
}

/// Starts what executes runs: the worker (which resumes the runs left unfinished), the pruner
/// of old runs and the schedule ticker.
async fn start_runs(
    settings: &ServeSettings,
    store: &Store,
    registry: &SharedRegistry,
    reloader: &Reloader,
    stopped: &tokio::sync::watch::Receiver<bool>,
    tracer: &Option<crate::observe::trace::Tracer>,
) -> Result<(Worker, RunTasks), ServerError> {
    let effects = settings
        .effects()
        .map_err(|e| ServerError::Effects(e.to_string()))?;
    let (worker, worker_task) = Worker::start(
        store.clone(),
        Arc::clone(registry),
        effects,
        WorkerSettings {
            concurrency: settings.workers,
            drain_timeout: settings.shutdown_timeout,
            compile_options: settings.compile_options(),
            secrets: settings.secrets.clone(),
            lease: settings.lease,
            capped: settings.store_options.max_running.is_some(),
            window: settings.run_window,
            max_backlog: settings.max_backlog,
            tracer: tracer.clone(),
        },
        stopped.clone(),
    );
    let pruner = tokio::spawn(prune_periodically(
        store.clone(),
        settings.retention,
        stopped.clone(),
    ));
    let resumed = worker.resume_unfinished().await?;
    if resumed > 0 {
        info!(runs = resumed, "resuming runs left unfinished");
    }
    let ticker_task = ticker::start(
        store.clone(),
        Arc::clone(registry),
        worker.clone(),
        reloader.reloaded(),
        stopped.clone(),
    );
    let tasks = RunTasks {
        worker: worker_task,
        pruner,
        ticker: ticker_task,
    };
    Ok((worker, tasks))
}

/// What the webhook and admin handlers share.
fn app_state(
    settings: &ServeSettings,
    registry: SharedRegistry,
    store: Store,
    worker: Worker,
    reloader: &Reloader,
    webhook_url: String,
) -> AppState {
    AppState {
        registry,
        store,
        worker,
        sync_timeout: settings.sync_timeout,
        body_limits: Arc::new(BodyLimits::default()),
        limiter: Arc::new(crate::http::limit::Limiter::default()),
        secrets: settings.secrets.clone(),
        rejected: Arc::new(crate::http::rejected::RejectedLog::default()),
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
        body_timeout: settings.body_timeout,
        reload: reloader.shared_status(),
        webhook_url,
        tracer: None,
    }
}

/// The two listeners, and the webhook listener's TLS when it has one.
struct Listeners {
    webhook: TcpListener,
    admin: TcpListener,
    tls: Option<Arc<crate::http::tls::TlsConfig>>,
}

/// Serves both listeners until `stopped` says so, then waits for every task to end, in an order
/// that frees the store last; the returned task ends when all is closed.
fn serve_until_stopped(
    settings: &ServeSettings,
    state: AppState,
    listeners: Listeners,
    tasks: RunTasks,
    watcher: tokio::task::JoinHandle<()>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let webhook = http::listen::serve(
        listeners.webhook,
        http::webhook_router(state.clone()),
        http::listen::ConnectionLimits {
            header_timeout: settings.header_timeout,
            max_header_size: settings.max_header_size,
            write_stall_timeout: settings.body_timeout,
        },
        listeners.tls,
        stopped.clone(),
    );
    let tracer = state.tracer.clone();
    let admin = axum::serve(
        listeners.admin,
        http::admin_router(state, settings.admin_access())
            .into_make_service_with_connect_info::<http::access::AdminConnection>(),
    )
    .with_graceful_shutdown(until_stopped(stopped.clone()));
    tokio::spawn(async move {
        let ((), admin_result, _, _) = tokio::join!(webhook, admin, tasks.worker, tasks.ticker);
        // The store is free once every task holding it has ended.
        let _ = tasks.pruner.await;
        // The watcher holds the store through its reloader: gone before "stopped" is said.
        let _ = watcher.await;
        if let Err(err) = admin_result {
            warn!(error = %err, "admin listener stopped with an error");
        }
        // The spans of the last requests and runs, before the process is gone.
        if let Some(tracer) = tracer {
            tracer.flush().await;
        }
        info!("hookflow stopped");
    })
}

/// Where the webhook listener is reached from this machine (for the UI's "copy as curl").
fn webhook_url(addr: Option<SocketAddr>, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match addr {
        Some(addr) if addr.ip().is_unspecified() => format!("{scheme}://127.0.0.1:{}", addr.port()),
        Some(addr) => format!("{scheme}://{addr}"),
        None => format!("{scheme}://127.0.0.1:8080"),
    }
}

/// Keep every workflow's source by its version, so a run can be replayed on the definition it
/// ran. The writes go together, so the store commits them as one: a hundred workflows cost one
/// commit at start, not a hundred.
pub(crate) async fn save_definitions(store: &Store, registry: &Registry) -> Result<(), StoreError> {
    let mut saves = tokio::task::JoinSet::new();
    for w in registry.workflows.values() {
        let store = store.clone();
        let version = w.version.clone();
        let definition = Definition {
            name: w.name.clone(),
            path: w.source.path.clone(),
            source: w.source.text.clone(),
        };
        saves.spawn(async move { store.save_definition(&version, definition).await });
    }
    while let Some(saved) = saves.join_next().await {
        saved
            .map_err(|e| StoreError::Write(format!("saving a definition stopped: {e}").into()))??;
    }
    Ok(())
}

pub(crate) fn log_routes(registry: &Registry) {
    for route in registry.routes.iter() {
        let names: Vec<&str> = route.workflows.iter().map(|w| w.name.as_str()).collect();
        info!(path = route.pattern.as_str(), workflows = %names.join(","), "route");
    }
}

/// How often old runs are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Forget finished runs older than the retention, once at start and then every hour.
async fn prune_periodically(
    store: Store,
    retention: std::time::Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(30));
        match store.prune(before).await {
            Ok(0) => {}
            Ok(count) => info!(runs = count, "pruned finished runs past the retention"),
            Err(err) => warn!(error = %err, "pruning old runs failed"),
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// Why the trace exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the trace exporter: {0}")]
pub struct TracerSetupError(#[source] crate::effects::HttpError);

/// The trace exporter's way to its collector: the HTTP client the steps use.
struct Collector(crate::effects::http::ReqwestClient);

impl Collector {
    fn new() -> Result<Self, TracerSetupError> {
        crate::effects::http::ReqwestClient::new()
            .map(Self)
            .map_err(TracerSetupError)
    }
}

impl crate::observe::trace::CollectorClient for Collector {
    fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> crate::future::BoxFuture<'_, Result<u16, String>> {
        use crate::effects::HttpClient;
        let request = crate::effects::HttpRequest {
            method: "POST".to_owned(),
            url: url.to_owned(),
            headers: vec![("content-type".into(), "application/x-protobuf".into())],
            body: Some(body),
            timeout,
            follow_redirects: false,
        };
        Box::pin(async move {
            self.0
                .send(request)
                .await
                .map(|response| response.status)
                .map_err(|err| err.to_string())
        })
    }
}

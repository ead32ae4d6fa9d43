//! The worker: takes accepted runs off the queue, executes them with the engine, records every
//! step in the store, and wakes the callers of synchronous webhooks. Runs left unfinished by a
//! crash are queued again at start.

mod cancels;
mod execute;
mod journal;
mod leases;
mod queue;
mod rate;
mod window;

use cancels::*;
use execute::*;
use journal::*;
use leases::*;
use queue::*;
use window::*;

pub use window::FreshPlaces;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::diag::SourceFile;
use crate::effects::Effects;
use crate::engine::{self, ExecOptions, Journal, JournalError, Noted, RunInfo, RunRequest};
use crate::future::BoxFuture;
use crate::run::NewRun;
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, StepRecord};
use crate::store::{Lease, Settling, Store, StoreError, Wakeup};
use crate::workflow::{self, SharedRegistry, Workflow};

/// What a synchronous caller is told.
#[derive(Debug, Clone)]
pub enum SyncAnswer {
    Responded(SyncResponse),
    Finished { status: RunStatus },
}

#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: SharedRegistry,
    effects: Effects,
    /// Bounded by the window: every job holds a place in it until its execution ends.
    queue: mpsc::UnboundedSender<(Job, WindowPlace)>,
    waiters: Mutex<HashMap<String, oneshot::Sender<SyncAnswer>>>,
    compile_options: workflow::CompileOptions,
    secrets: crate::secrets::SecretSource,
    /// Wakes the retry scheduler when a run starts waiting, so it can look at the new due time.
    retries: Notify,
    /// This process, as the owner of the leases on the runs it executes.
    owner: String,
    /// The runs executing now, whose leases are renewed.
    executing: Mutex<std::collections::HashSet<String>>,
    /// How long a claimed run stays ours without renewal.
    lease: Duration,
    /// One permit per run executing at once.
    slots: Arc<Semaphore>,
    /// How many runs execute at once (the slots' number).
    workers: usize,
    /// Jobs sent to the dispatcher and not yet taken by it: this process's own backlog.
    backlog: AtomicUsize,
    /// Under a store-wide cap (`max_running`): a run here stopped running, so a run the cap
    /// kept queued (here or in another process) may start now.
    slot_freed: Notify,
    /// Whether the store caps the runs running at once.
    capped: bool,
    /// Fresh runs held in memory with their events, queued or executing, at most `window`.
    window: Arc<Window>,
    /// What the store's queue holds, for refusing webhooks past `max_backlog`.
    backlog_estimate: BacklogEstimate,
    /// The cancellation signal of each run executing here.
    cancels: Mutex<HashMap<String, watch::Sender<Option<String>>>>,
    tracer: Option<crate::observe::trace::Tracer>,
}

/// One run to execute.
pub struct Job {
    run_id: String,
    /// What the run needs, when at hand already: a fresh run's event from the ingress, or a
    /// run loaded with others it was claimed with. Else it is read from the store in its turn.
    loaded: Option<Loaded>,
    /// Already claimed for this process (taken from the store's queue or over from a lease
    /// that ended), so the worker does not claim it again.
    claimed: bool,
}

/// What a run needs from the store (or from the ingress, for a fresh run).
struct Loaded {
    event: Arc<Event>,
    workflow: String,
    version: String,
    attempt: u32,
    finished: Vec<StepRecord>,
    /// When the run first started, if it did before (a resume).
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its cancellation was asked before this execution (while it waited, or before a restart).
    cancel_requested: bool,
}

impl Loaded {
    /// A run accepted moments ago: nothing recorded yet, the event at hand.
    fn fresh(run: &NewRun, event: Arc<Event>) -> Self {
        Self {
            event,
            workflow: run.workflow.clone(),
            version: run.version.clone(),
            attempt: 1,
            finished: Vec::new(),
            started_at: None,
            cancel_requested: false,
        }
    }

    /// A run as the store holds it; `None` when it already ended.
    fn stored(detail: crate::store::RunDetail) -> Option<Self> {
        (!detail.run.status.is_final()).then(|| Self {
            event: Arc::new(detail.event),
            workflow: detail.run.workflow,
            version: detail.run.version,
            attempt: detail.run.attempt,
            finished: detail.steps,
            started_at: detail.run.started_at,
            cancel_requested: detail.run.cancel_requested,
        })
    }
}

pub struct WorkerSettings {
    /// Runs executed at once.
    pub concurrency: usize,
    /// How long shutdown waits for runs in flight; the rest resume at the next start.
    pub drain_timeout: Duration,
    /// For stored definitions compiled again when a run resumes.
    pub compile_options: workflow::CompileOptions,
    pub secrets: crate::secrets::SecretSource,
    /// How long a claimed run is this process's without renewal; another process takes it
    /// over after that when this one died.
    pub lease: Duration,
    /// Whether the store caps the runs running at once across processes (`max_running`):
    /// a run it refuses stays queued, and is taken from the store's queue when a slot frees.
    pub capped: bool,
    /// Fresh runs held in memory with their events at most (`run_window`).
    pub window: usize,
    /// Runs waiting in the store's queue past which webhooks are refused (`max_backlog`).
    pub max_backlog: usize,
    /// Where run and step spans go; `None` when traces are off.
    pub tracer: Option<crate::observe::trace::Tracer>,
}

impl Worker {
    /// Start the dispatcher. It stops taking runs when `shutdown` turns true.
    pub fn start(
        store: Store,
        registry: SharedRegistry,
        effects: Effects,
        settings: WorkerSettings,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        // Steps take their turns from the store's buckets: shared by every process on it.
        let mut effects = effects;
        effects.rate.buckets = Arc::new(rate::StoreBuckets(store.clone()));
        let worker = Worker {
            inner: Arc::new(Inner {
                store,
                registry,
                effects,
                queue,
                waiters: Mutex::new(HashMap::new()),
                compile_options: settings.compile_options.clone(),
                secrets: settings.secrets.clone(),
                retries: Notify::new(),
                owner: format!("hookflow-{}", uuid::Uuid::now_v7()),
                executing: Mutex::new(std::collections::HashSet::new()),
                lease: settings.lease.max(Duration::from_secs(1)),
                slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
                workers: settings.concurrency.max(1),
                backlog: AtomicUsize::new(0),
                slot_freed: Notify::new(),
                capped: settings.capped,
                window: Arc::new(Window::new(settings.window)),
                backlog_estimate: BacklogEstimate {
                    max: settings.max_backlog,
                    counted: AtomicUsize::new(0),
                    accepted_since: AtomicUsize::new(0),
                },
                cancels: Mutex::new(HashMap::new()),
                tracer: settings.tracer.clone(),
            }),
        };
        let retries = tokio::spawn(queue_due_retries(worker.clone(), shutdown.clone()));
        let leases = tokio::spawn(keep_leases(worker.clone(), shutdown.clone()));
        // On a shared store, runs accepted by busy or dead processes are taken from its queue;
        // under a cap, also the runs it kept queued, on any store.
        let queue = tokio::spawn(take_queued_runs(worker.clone(), shutdown.clone()));
        let recount = tokio::spawn(count_backlog(worker.clone(), shutdown.clone()));
        let cancels = tokio::spawn(watch_cancels(worker.clone(), shutdown.clone()));
        let dispatcher = tokio::spawn(dispatch(worker.clone(), receiver, settings, shutdown));
        // Done when every task holding the store is: a restart on the same file must find it
        // free.
        let handle = tokio::spawn(async move {
            let _ = dispatcher.await;
            let _ = retries.await;
            let _ = leases.await;
            let _ = queue.await;
            let _ = recount.await;
            let _ = cancels.await;
        });
        (worker, handle)
    }

    /// Queue a run the store holds; it is loaded from the store when its turn comes.
    pub fn enqueue(&self, run_id: String) {
        self.send(Job {
            run_id,
            loaded: None,
            claimed: false,
        });
    }

    /// Queue a run that was just committed, handing over what the ingress already has in memory
    /// so the worker does not read it back.
    ///
    /// Past the window the run is left where it is, in the store's queue, and taken from there
    /// when slots free: the event is not held.
    pub fn enqueue_fresh(&self, run: &NewRun, event: Arc<Event>) {
        self.inner
            .backlog_estimate
            .accepted_since
            .fetch_add(1, Ordering::Relaxed);
        self.send(Job {
            run_id: run.id.clone(),
            loaded: Some(Loaded::fresh(run, event)),
            claimed: false,
        });
    }

    /// Places in the window for the runs a request is about to accept. When all fit (and the
    /// store is uncapped), the lease to claim them with in the accept: a run accepted here
    /// is executed here, and another process takes it only once that lease ends. So on a
    /// store shared with other processes, runs are claimed in their accept only while fewer
    /// than `workers` runs wait here for a slot (each then starts within about one run's
    /// time); past that they stay queued for whichever process is free first.
    pub fn reserve_fresh(&self, count: usize) -> FreshPlaces {
        let places = self.inner.window.take_up_to(count);
        let lease = (!self.inner.capped
            && count > 0
            && places.len() == count
            && (!self.inner.store.shared() || self.short_wait_for(count)))
        .then(|| Lease {
            owner: self.inner.owner.clone(),
            until: self.inner.lease_end(),
        });
        FreshPlaces { places, lease }
    }

    /// Whether `count` more runs would wait here for a slot behind fewer than `workers`.
    fn short_wait_for(&self, count: usize) -> bool {
        self.inner.backlog.load(Ordering::Relaxed) + count <= self.inner.workers
    }

    /// Queue the runs a request created, in the places reserved for them; runs without a place
    /// stay in the store's queue. `claimed`: the accept claimed them for the places' lease.
    pub fn enqueue_accepted(
        &self,
        runs: &[&NewRun],
        claimed: bool,
        event: Arc<Event>,
        places: FreshPlaces,
    ) {
        self.inner
            .backlog_estimate
            .accepted_since
            .fetch_add(runs.len(), Ordering::Relaxed);
        let mut places = places.places.into_iter();
        for run in runs {
            let Some(place) = places.next() else {
                self.inner.window.spill(1);
                continue;
            };
            let job = Job {
                run_id: run.id.clone(),
                loaded: Some(Loaded::fresh(run, Arc::clone(&event))),
                claimed,
            };
            self.send_placed(job, place);
        }
    }

    /// Whether the store's queue holds `max_backlog` runs or more: a webhook is refused
    /// (`503`) rather than promised a run that would wait too long.
    pub fn backlog_full(&self) -> bool {
        let estimate = &self.inner.backlog_estimate;
        let queued = estimate.counted.load(Ordering::Relaxed)
            + estimate.accepted_since.load(Ordering::Relaxed);
        queued >= estimate.max
    }

    /// Queue `job` in the window. A run not claimed yet is left in the store's queue when the
    /// window is full (it is `queued` there, and taken when slots free); a claimed one holds a
    /// lease and is always taken (the queue taker asks for no more than the window has room for).
    fn send(&self, job: Job) {
        let place = if job.claimed {
            self.inner.window.force()
        } else {
            match self.inner.window.take() {
                Some(place) => place,
                None => return,
            }
        };
        self.send_placed(job, place);
    }

    /// Queue `job` in the place it holds.
    fn send_placed(&self, job: Job, place: WindowPlace) {
        if job.claimed {
            // Renewed from now on, also while it waits for a slot: a lease that ended in
            // this process's backlog would let another process run it as well.
            self.hold(&job.run_id);
        }
        self.inner.backlog.fetch_add(1, Ordering::Relaxed);
        // The receiver lives as long as the dispatcher; after shutdown the run stays queued in the
        // store and is picked up at the next start.
        if self.inner.queue.send((job, place)).is_ok() {
            crate::observe::metrics::metrics().queue_depth_add(1);
        } else {
            self.inner.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Queue every run the store holds as unfinished. On a store shared with other processes,
    /// unfinished runs are theirs or free: queued ones are taken from the store's queue and
    /// abandoned ones when their leases end, so nothing is queued here.
    pub async fn resume_unfinished(&self) -> Result<usize, StoreError> {
        if self.inner.store.shared() {
            return Ok(0);
        }
        let ids = self.inner.store.unfinished_runs().await?;
        let count = ids.len();
        let places = self.inner.window.take_up_to(count);
        let room = places.len();
        // Claimed before they are queued, so no lease of theirs can end while they wait; the
        // runs past the window stay in the store: queued ones are taken from its queue as slots
        // free, interrupted ones when their (released) lease is found ended.
        for (id, place) in ids.iter().zip(places) {
            let until = self.inner.lease_end();
            if self.inner.store.claim(id, &self.inner.owner, until).await? {
                let job = Job {
                    run_id: id.clone(),
                    loaded: None,
                    claimed: true,
                };
                self.send_placed(job, place);
            }
        }
        if count > room {
            self.inner.window.spill(count - room);
            self.inner.slot_freed.notify_one();
        }
        Ok(count)
    }

    /// A paused workflow was resumed: its runs wait in the store's queue (a claim refused
    /// them while it was paused), so look there now.
    pub fn look_at_queue(&self) {
        self.inner.window.spill(0);
        self.inner.slot_freed.notify_one();
    }

    /// Count the run among those whose leases this process renews.
    fn hold(&self, run_id: &str) {
        if let Ok(mut executing) = self.inner.executing.lock() {
            executing.insert(run_id.to_owned());
        }
    }

    /// Register interest in a run's answer before it is queued, so none can be missed.
    pub fn wait_for(&self, run_id: &str) -> oneshot::Receiver<SyncAnswer> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = self.inner.waiters.lock() {
            waiters.insert(run_id.to_owned(), tx);
        }
        rx
    }

    /// Runs a newer one superseded before they started (`cancel_previous`): their synchronous
    /// callers are told now, not at their timeout.
    pub fn superseded(&self, run_ids: &[String]) {
        for run_id in run_ids {
            self.answer(
                run_id,
                SyncAnswer::Finished {
                    status: RunStatus::Cancelled,
                },
            );
        }
    }

    pub fn forget(&self, run_id: &str) {
        if let Ok(mut waiters) = self.inner.waiters.lock() {
            waiters.remove(run_id);
        }
    }

    fn answer(&self, run_id: &str, answer: SyncAnswer) {
        let waiter = self
            .inner
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(run_id));
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    }
}

impl Inner {
    /// When a lease taken or renewed now ends.
    fn lease_end(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(30))
    }
}

async fn dispatch(
    worker: Worker,
    mut receiver: mpsc::UnboundedReceiver<(Job, WindowPlace)>,
    settings: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::clone(&worker.inner.slots);
    let mut running = JoinSet::new();
    // The claimed runs that never got a slot, given back at shutdown.
    let mut unstarted = Vec::new();
    loop {
        while running.try_join_next().is_some() {}
        let (job, place) = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            next = receiver.recv() => match next {
                Some(next) => next,
                None => break,
            },
        };
        let permit = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => {
                unstarted.push(job);
                break;
            }
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        // Counted in the backlog until it has its slot: a run waiting here for one is no
        // less waiting than those behind it.
        crate::observe::metrics::metrics().queue_depth_add(-1);
        worker.inner.backlog.fetch_sub(1, Ordering::Relaxed);
        let worker = worker.clone();
        running.spawn(async move {
            let metrics = crate::observe::metrics::metrics();
            metrics.runs_in_flight_add(1);
            let ran = execute_run(&worker, job, permit).await;
            metrics.runs_in_flight_add(-1);
            drop(place);
            let inner = &worker.inner;
            let spilled = inner.window.spilled.load(Ordering::Acquire);
            if ran && (inner.capped || spilled || inner.store.shared()) {
                inner.slot_freed.notify_one();
            }
        });
    }
    receiver.close();
    while let Ok((job, _)) = receiver.try_recv() {
        unstarted.push(job);
    }
    release_unstarted(&worker, unstarted).await;
    // Runs that already ended are still in the set until joined.
    while running.try_join_next().is_some() {}
    let in_flight = running.len();
    if in_flight > 0 {
        info!(runs = in_flight, "waiting for runs in flight");
    }
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            runs = running.len(),
            "runs still in flight at shutdown; they resume at the next start"
        );
        running.abort_all();
    }
}

/// Put back in the store's queue the runs claimed here that never got a slot, so another
/// process takes them now rather than when their leases end. Runs not claimed yet are in the
/// queue already.
async fn release_unstarted(worker: &Worker, jobs: Vec<Job>) {
    let ids: Vec<String> = jobs
        .into_iter()
        .filter(|job| job.claimed)
        .map(|job| job.run_id)
        .collect();
    if ids.is_empty() {
        return;
    }
    if let Ok(mut executing) = worker.inner.executing.lock() {
        for id in &ids {
            executing.remove(id);
        }
    }
    match worker.inner.store.release(&worker.inner.owner, &ids).await {
        Ok(0) => {}
        Ok(released) => info!(
            runs = released,
            "runs not started are queued again for other processes"
        ),
        Err(err) => {
            warn!(error = %err, "cannot queue the runs not started again; they are taken when their leases end")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_execution_is_an_error_not_a_lost_task() {
        let ok = CatchPanic(Box::pin(async { 7 })).await;
        assert_eq!(ok, Ok(7));
        let panicked = CatchPanic(Box::pin(async {
            tokio::task::yield_now().await;
            let limit: usize = std::hint::black_box(usize::MAX);
            Semaphore::new(limit);
        }))
        .await;
        assert!(panicked.is_err_and(|m| m.contains("permits")));
        let formatted = CatchPanic(Box::pin(async {
            panic!("step {} broke", 3);
        }))
        .await;
        assert_eq!(formatted, Err("step 3 broke".to_owned()));
    }
}

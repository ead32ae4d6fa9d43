//! The worker: takes accepted runs off the queue, executes them with the engine, records every
//! step in the store, and wakes the callers of synchronous webhooks. Runs left unfinished by a
//! crash are queued again at start.

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
}

/// The runs the worker holds in memory, queued or executing (a fresh one with its event). Past
/// `limit`, a run is left in the store's queue (it is committed there already) and taken from
/// there when slots free: memory stays flat whatever the backlog.
struct Window {
    limit: usize,
    held: AtomicUsize,
    /// Runs were left in the store's queue since it was last emptied into the worker.
    spilled: AtomicBool,
    /// When a run was last left behind, for the taker, which leaves the youngest runs to the
    /// requests that accepted them for `HANDOFF`.
    last_spill: Mutex<Option<Instant>>,
}

impl Window {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            held: AtomicUsize::new(0),
            spilled: AtomicBool::new(false),
            last_spill: Mutex::new(None),
        }
    }

    /// A place for one more fresh run, or none when the window is full.
    fn take(self: &Arc<Self>) -> Option<WindowPlace> {
        let place = self.take_up_to(1).pop();
        if place.is_none() {
            self.spill(1);
        }
        place
    }

    /// Up to `wanted` places at once, for runs about to be claimed.
    fn take_up_to(self: &Arc<Self>, wanted: usize) -> Vec<WindowPlace> {
        let before = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held + wanted.min(self.limit.saturating_sub(held)))
            });
        let taken = before.map_or(0, |before| wanted.min(self.limit.saturating_sub(before)));
        if let (true, Ok(before)) = (taken > 0, before) {
            crate::metrics::metrics().run_window_held(before + taken);
        }
        (0..taken).map(|_| WindowPlace(Arc::clone(self))).collect()
    }

    /// A place for a run already claimed (it holds a lease), even past the limit.
    fn force(self: &Arc<Self>) -> WindowPlace {
        let held = self.held.fetch_add(1, Ordering::AcqRel) + 1;
        crate::metrics::metrics().run_window_held(held);
        WindowPlace(Arc::clone(self))
    }

    /// `runs` were left in the store's queue for want of room.
    fn spill(&self, runs: usize) {
        crate::metrics::metrics().runs_left_in_store(runs);
        if let Ok(mut last) = self.last_spill.lock() {
            *last = Some(Instant::now());
        }
        self.spilled.store(true, Ordering::Release);
    }

    /// Whether a run was left behind so recently that a look may have found it too young.
    fn spilled_lately(&self) -> bool {
        self.last_spill
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < HANDOFF * 2)
    }

    /// How many more runs fit.
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.held.load(Ordering::Acquire))
    }
}

/// Window places reserved for the runs of one request before they are accepted.
pub struct FreshPlaces {
    places: Vec<WindowPlace>,
    lease: Option<Lease>,
}

impl FreshPlaces {
    /// The lease to claim the runs with in their accept, when they all have a place.
    pub fn lease(&self) -> Option<Lease> {
        self.lease.clone()
    }
}

/// One fresh run's place in the window, given back when its event is dropped.
struct WindowPlace(Arc<Window>);

impl Drop for WindowPlace {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many runs wait in the store's queue: counted by the store every
/// `BACKLOG_RECOUNT`, plus the runs accepted since.
struct BacklogEstimate {
    max: usize,
    counted: AtomicUsize,
    accepted_since: AtomicUsize,
}

/// How often the store's queue is counted for `max_backlog`.
const BACKLOG_RECOUNT: Duration = Duration::from_millis(250);

/// One run to execute.
pub struct Job {
    run_id: String,
    fresh: Option<FreshRun>,
    /// Already claimed for this process (taken from the store's queue or over from a lease
    /// that ended), so the worker does not claim it again.
    claimed: bool,
}

/// A run accepted moments ago: nothing recorded yet, the event at hand.
struct FreshRun {
    event: Arc<Event>,
    workflow: String,
    version: String,
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
                backlog: AtomicUsize::new(0),
                slot_freed: Notify::new(),
                capped: settings.capped,
                window: Arc::new(Window::new(settings.window)),
                backlog_estimate: BacklogEstimate {
                    max: settings.max_backlog,
                    counted: AtomicUsize::new(0),
                    accepted_since: AtomicUsize::new(0),
                },
            }),
        };
        let retries = tokio::spawn(schedule_retries(worker.clone(), shutdown.clone()));
        let leases = tokio::spawn(keep_leases(worker.clone(), shutdown.clone()));
        // On a shared store, runs accepted by busy or dead processes are taken from its queue;
        // under a cap, also the runs it kept queued, on any store.
        let queue = tokio::spawn(take_queued_runs(worker.clone(), shutdown.clone()));
        let recount = tokio::spawn(count_backlog(worker.clone(), shutdown.clone()));
        let dispatcher = tokio::spawn(dispatch(worker.clone(), receiver, settings, shutdown));
        // Done when every task holding the store is: a restart on the same file must find it
        // free.
        let handle = tokio::spawn(async move {
            let _ = dispatcher.await;
            let _ = retries.await;
            let _ = leases.await;
            let _ = queue.await;
            let _ = recount.await;
        });
        (worker, handle)
    }

    /// Queue a run the store holds; it is loaded from the store when its turn comes.
    pub fn enqueue(&self, run_id: String) {
        self.send(Job {
            run_id,
            fresh: None,
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
            fresh: Some(FreshRun {
                event,
                workflow: run.workflow.clone(),
                version: run.version.clone(),
            }),
            claimed: false,
        });
    }

    /// Places in the window for the runs a request is about to accept. When all fit (and the
    /// store is this process's alone and uncapped), the lease to claim them with in the accept.
    pub fn reserve_fresh(&self, count: usize) -> FreshPlaces {
        let places = self.inner.window.take_up_to(count);
        let alone = !self.inner.store.shared() && !self.inner.capped;
        let lease = (alone && count > 0 && places.len() == count).then(|| Lease {
            owner: self.inner.owner.clone(),
            until: self.inner.lease_end(),
        });
        FreshPlaces { places, lease }
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
                fresh: Some(FreshRun {
                    event: Arc::clone(&event),
                    workflow: run.workflow.clone(),
                    version: run.version.clone(),
                }),
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
            crate::metrics::metrics().queue_depth_add(1);
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
                    fresh: None,
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

/// Renew the leases of the runs this process executes, and take over runs whose owner stopped
/// renewing theirs (a process that died while another keeps serving the same store).
async fn keep_leases(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let store = &worker.inner.store;
    // Renewed three times per lease: one late or failed renewal does not lose a run.
    let renewal = worker.inner.lease / 3;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(renewal) => {}
        }
        let executing: Vec<String> = worker
            .inner
            .executing
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        if !executing.is_empty()
            && let Err(err) = store
                .renew_leases(&worker.inner.owner, &executing, worker.inner.lease_end())
                .await
        {
            warn!(error = %err, "cannot renew leases");
        }
        match store.expired_leases(chrono::Utc::now()).await {
            Ok(ids) => {
                for id in ids {
                    // Claimed here, so of several processes seeing the same lease end, one
                    // takes the run.
                    match store
                        .claim(&id, &worker.inner.owner, worker.inner.lease_end())
                        .await
                    {
                        Ok(true) => {
                            info!(run_id = %id, "taking over a run whose lease ended");
                            worker.send(Job {
                                run_id: id,
                                fresh: None,
                                claimed: true,
                            });
                        }
                        Ok(false) => {}
                        Err(err) => warn!(run_id = %id, error = %err, "cannot take over the run"),
                    }
                }
            }
            Err(err) => warn!(error = %err, "cannot look for expired leases"),
        }
    }
}

/// How long the process that accepted a run has to start it before any other may take it:
/// the accepting process has the event at hand (and the caller of a synchronous webhook).
const HANDOFF: Duration = Duration::from_secs(1);
/// Longest time between looks at a shared store's queue, for wake-ups lost in an outage.
const QUEUE_POLL: Duration = Duration::from_secs(2);

/// On a store shared with other processes: while this process has idle slots and no backlog
/// of its own, take runs waiting in the store's queue (accepted by a busy process, or by one
/// that died). Woken by the store when runs are queued anywhere, and by a timer. Under a cap
/// (`max_running`, on any store), also woken when a run here stops running: the runs the cap
/// kept queued are taken then, oldest first, as many as it has room for.
///
/// Alone on its store and uncapped, it looks only after fresh runs were left in the store's
/// queue because the window was full.
async fn take_queued_runs(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let inner = &worker.inner;
    let shared = inner.store.shared();
    let spill_only = !shared && !inner.capped;
    let mut wakeups = inner.store.wakeups();
    loop {
        let mut wait_for_handoff = false;
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(QUEUE_POLL) => {}
            _ = inner.slot_freed.notified() => {}
            // A store used by one process sends none.
            wakeup = wakeups.recv(), if shared => match wakeup {
                Ok(Wakeup::RunsQueued) => wait_for_handoff = true,
                Ok(Wakeup::RetryScheduled) => {
                    inner.retries.notify_one();
                    continue;
                }
                // Missed some: look now.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    wakeups = inner.store.wakeups();
                    continue;
                }
            },
        }
        if wait_for_handoff {
            tokio::time::sleep(HANDOFF).await;
            // The wake-ups that came meanwhile are answered by this one look.
            while wakeups.try_recv().is_ok() {}
        }
        if spill_only {
            // Many runs per claim: while the workers have runs to go on with, wait for room
            // for a batch.
            let batch = (inner.window.limit / 4).clamp(1, 64);
            let busy = inner.backlog.load(Ordering::Relaxed) > 0;
            if !inner.window.spilled.load(Ordering::Acquire)
                || (busy && inner.window.room() < batch)
            {
                continue;
            }
        }
        take_while_room(&worker, &shutdown, shared, spill_only).await;
    }
}

/// Take runs from the store's queue while this process has room for them, as many per claim
/// as it has room for; stop when the queue has no more old enough, or at shutdown.
async fn take_while_room(
    worker: &Worker,
    shutdown: &watch::Receiver<bool>,
    shared: bool,
    spill_only: bool,
) {
    let inner = &worker.inner;
    loop {
        // Runs left in the store for want of room are taken as room frees, many per claim.
        let idle = if spill_only {
            inner.window.room()
        } else {
            inner
                .slots
                .available_permits()
                .saturating_sub(inner.backlog.load(Ordering::Relaxed))
                .min(inner.window.room())
        };
        if idle == 0 || *shutdown.borrow() {
            return;
        }
        // Alone on its store, every queued run is this process's: none to hand off, except
        // to the accepting request that is about to hand its fresh run to the worker.
        let handoff = if shared || spill_only {
            HANDOFF
        } else {
            Duration::ZERO
        };
        let queued_before = chrono::Utc::now()
            - chrono::Duration::from_std(handoff).unwrap_or(chrono::Duration::seconds(1));
        // Places first, so fresh runs arriving meanwhile cannot push the window past its bound.
        let places = inner.window.take_up_to(idle);
        let idle = places.len();
        if idle == 0 {
            // No room yet: the runs left behind wait for the next run to end.
            return;
        }
        let taken = match inner
            .store
            .claim_queued(&inner.owner, inner.lease_end(), queued_before, idle)
            .await
        {
            Ok(taken) => taken,
            Err(err) => {
                warn!(error = %err, "cannot take runs from the store's queue");
                return;
            }
        };
        let count = taken.len();
        for (run_id, place) in taken.into_iter().zip(places) {
            let job = Job {
                run_id,
                fresh: None,
                claimed: true,
            };
            worker.send_placed(job, place);
        }
        if count < idle {
            // The store's queue is drained of runs old enough to take. Runs left behind
            // moments ago (too young for this look, or during it) keep the flag for the
            // next poll.
            if spill_only && !inner.window.spilled_lately() {
                inner.window.spilled.store(false, Ordering::Release);
            }
            return;
        }
        // Every idle slot got a run: there may be more waiting once these start.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Count the runs in the store's queue every `BACKLOG_RECOUNT`, for `max_backlog`.
async fn count_backlog(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let estimate = &worker.inner.backlog_estimate;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(BACKLOG_RECOUNT) => {}
        }
        match worker.inner.store.count_queued().await {
            Ok(queued) => {
                estimate.counted.store(queued, Ordering::Relaxed);
                estimate.accepted_since.store(0, Ordering::Relaxed);
                crate::metrics::metrics().set_runs_queued(queued);
            }
            Err(err) => warn!(error = %err, "cannot count the queued runs"),
        }
    }
}

/// Longest sleep between looks at the store, in case a wake-up was missed.
const RETRY_POLL: Duration = Duration::from_secs(30);

/// Queue each retrying run when its stored due time comes.
async fn schedule_retries(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let store = &worker.inner.store;
    loop {
        let wait = match store.next_retry_due().await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(RETRY_POLL),
            Ok(None) => RETRY_POLL,
            Err(err) => {
                warn!(error = %err, "cannot read retry times");
                RETRY_POLL
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(wait) => {}
            _ = worker.inner.retries.notified() => continue,
        }
        match store.claim_due_retries(chrono::Utc::now()).await {
            Ok(ids) => {
                for id in ids {
                    worker.enqueue(id);
                }
            }
            Err(err) => warn!(error = %err, "cannot queue due retries"),
        }
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
        crate::metrics::metrics().queue_depth_add(-1);
        worker.inner.backlog.fetch_sub(1, Ordering::Relaxed);
        let permit = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let worker = worker.clone();
        running.spawn(async move {
            let metrics = crate::metrics::metrics();
            metrics.runs_in_flight_add(1);
            let ran = execute_run(&worker, job, permit).await;
            metrics.runs_in_flight_add(-1);
            drop(place);
            let inner = &worker.inner;
            if ran && (inner.capped || inner.window.spilled.load(Ordering::Acquire)) {
                inner.slot_freed.notify_one();
            }
        });
    }
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

async fn load(store: &Store, job: Job) -> Option<Loaded> {
    if let Some(fresh) = job.fresh {
        return Some(Loaded {
            event: fresh.event,
            workflow: fresh.workflow,
            version: fresh.version,
            attempt: 1,
            finished: Vec::new(),
            started_at: None,
        });
    }
    let run_id = job.run_id.as_str();
    match store.run(run_id).await {
        Ok(Some(detail)) if detail.run.status.is_final() => None,
        Ok(Some(detail)) => Some(Loaded {
            event: Arc::new(detail.event),
            workflow: detail.run.workflow,
            version: detail.run.version,
            attempt: detail.run.attempt,
            finished: detail.steps,
            started_at: detail.run.started_at,
        }),
        Ok(None) => {
            error!(run_id, "queued run not found in the store");
            None
        }
        Err(err) => {
            error!(run_id, error = %err, "cannot load run; it stays queued");
            None
        }
    }
}

/// Stops renewing a run's lease when its execution ends, however it ends: finished, waiting for
/// a retry, or interrupted (an interrupted run's lease runs out and it is taken over again).
struct Held<'a> {
    worker: &'a Worker,
    run_id: &'a str,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Ok(mut executing) = self.worker.inner.executing.lock() {
            executing.remove(self.run_id);
        }
    }
}

/// Execute a job; whether the run ran here (it was `running` for this process until now).
/// Execute one run in the worker slot `slot`, which is given back as soon as the run's steps are
/// done: recording its end does not keep the next run waiting.
async fn execute_run(worker: &Worker, job: Job, slot: tokio::sync::OwnedSemaphorePermit) -> bool {
    let mut slot = Some(slot);
    let store = &worker.inner.store;
    let run_id = job.run_id.clone();
    let run_id = run_id.as_str();
    let claimed = job.claimed;
    // Another job for the same run (a duplicate queue entry) must not end this one's renewal.
    let mut held = claimed.then_some(Held { worker, run_id });
    let Some(detail) = load(store, job).await else {
        return held.is_some();
    };
    let span = info_span!("run", run_id = %run_id, workflow = %detail.workflow);
    async {
        let Some(workflow) = definition_or_fail(worker, run_id, &detail).await else {
            return;
        };
        if !claim_here(worker, run_id, claimed).await {
            return;
        }
        worker.hold(run_id);
        // A run claimed before it was queued already has its guard. Replacing it, or building
        // a second one, would drop a guard, which takes the run out of the renewed set it was
        // just put in: its lease would end while it runs, and it would be taken over.
        held.get_or_insert_with(|| Held { worker, run_id });
        let started = Instant::now();
        let journal = StoreJournal::new(worker, run_id);
        let Some(result) = run_steps(worker, run_id, &workflow, &detail, &journal).await else {
            return;
        };
        match result {
            Ok(outcome) if outcome.status == RunStatus::Retrying => {
                record_retry(worker, run_id, &workflow, outcome, &journal).await;
            }
            Ok(outcome) => {
                let done = StepsDone {
                    outcome,
                    started,
                    slot: slot.take(),
                };
                record_end(worker, run_id, &workflow, done, &journal).await;
            }
            Err(err) => {
                // Progress could not be recorded: stop here and leave the run to be resumed, so
                // no finished step is ever executed twice on account of a lost record.
                error!(error = %err, "run interrupted; it resumes at the next start");
            }
        }
    }
    .instrument(span)
    .await;
    let ran = held.is_some();
    drop(held);
    ran
}

/// The definition the run started with; when there is none, the run fails and `None` is
/// answered.
async fn definition_or_fail(
    worker: &Worker,
    run_id: &str,
    detail: &Loaded,
) -> Option<Arc<Workflow>> {
    match workflow_for(worker, &detail.workflow, &detail.version).await {
        Ok(w) => Some(w),
        Err(message) => {
            crate::metrics::metrics().run_finished(&detail.workflow, RunStatus::Failed.as_str());
            // Its definition is unknown, so it may hold a concurrency slot.
            let ended = Ended::MayHoldSlot;
            let error = Some(message.clone());
            if finish(worker, run_id, ended, RunStatus::Failed, error, None).await {
                error!(status = "failed", error = %message, "run finished");
            }
            None
        }
    }
}

/// Whether the run is this process's to execute: claimed already, or claimed now.
async fn claim_here(worker: &Worker, run_id: &str, claimed: bool) -> bool {
    let store = &worker.inner.store;
    let claim = if claimed {
        Ok(true)
    } else {
        store
            .claim(run_id, &worker.inner.owner, worker.inner.lease_end())
            .await
    };
    match claim {
        Ok(true) => true,
        // Another worker holds it (a duplicate queue entry, or another node), its
        // concurrency key has no free slot (it stays queued until a run with the key
        // ends), or it was cancelled meanwhile.
        Ok(false) => {
            if let Ok(Some(now)) = store.run(run_id).await
                && now.run.status.is_final()
            {
                worker.answer(
                    run_id,
                    SyncAnswer::Finished {
                        status: now.run.status,
                    },
                );
            }
            false
        }
        Err(err) => {
            error!(error = %err, "cannot claim the run; it stays queued");
            false
        }
    }
}

/// The run's steps, executed by the engine with this worker's effects and secrets. A panic
/// fails the run here and answers `None`.
async fn run_steps(
    worker: &Worker,
    run_id: &str,
    workflow: &Arc<Workflow>,
    detail: &Loaded,
    journal: &StoreJournal<'_>,
) -> Option<Result<engine::RunOutcome, JournalError>> {
    let secrets = worker.inner.secrets.resolve(&workflow.secrets);
    let info = RunInfo {
        id: run_id.to_owned(),
        workflow: workflow.name.clone(),
        attempt: detail.attempt,
    };
    let options = ExecOptions {
        started_at: Some(detail.started_at.unwrap_or_else(chrono::Utc::now)),
        ..ExecOptions::default()
    };
    let callees = RegistryCallees { worker };
    let request = RunRequest {
        workflow,
        event: &detail.event,
        run: &info,
        secrets: &secrets,
        finished: &detail.finished,
        effects: &worker.inner.effects,
        options: &options,
        callees: Some(&callees),
    };
    match CatchPanic(Box::pin(engine::execute(request, journal))).await {
        Ok(result) => Some(result),
        Err(panic) => {
            // A bug, reachable from some workflow or payload: this run fails rather than
            // staying `running` (its lease renewed, its concurrency slot held) for ever.
            error!(panic = %panic, "the run's execution panicked");
            let message = format!("internal error: the execution panicked: {panic}");
            let ended = Ended::of(workflow);
            let _ = finish(
                worker,
                run_id,
                ended,
                RunStatus::Failed,
                Some(message),
                None,
            )
            .await;
            journal.settle_all().await;
            None
        }
    }
}

/// A step failed and will be tried again: the steps before the wait are recorded, then the
/// wait, and the retry scheduler is woken for the new due time.
async fn record_retry(
    worker: &Worker,
    run_id: &str,
    workflow: &Workflow,
    outcome: engine::RunOutcome,
    journal: &StoreJournal<'_>,
) {
    let store = &worker.inner.store;
    let due_at = outcome.due_at.unwrap_or_else(chrono::Utc::now);
    warn!(
        error = outcome.error.as_deref().unwrap_or_default(),
        due_at = %due_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "step failed; the run will try again"
    );
    crate::metrics::metrics().step_retry(&workflow.name);
    // The steps before the wait are on record before it is: a resume must find them.
    journal.settle_all().await;
    let error = outcome.error;
    match durably(|| store.run_retrying(run_id, error.clone(), due_at)).await {
        Ok(()) => worker.inner.retries.notify_one(),
        Err(err) => {
            error!(error = %err, "cannot record the retry; the run resumes at the next start")
        }
    }
}

/// A run whose steps are done, with the worker slot it still holds.
struct StepsDone {
    outcome: engine::RunOutcome,
    started: Instant,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The run ended: the worker slot is given back, its end is recorded, then its steps, and the
/// end is logged once on record.
async fn record_end(
    worker: &Worker,
    run_id: &str,
    workflow: &Workflow,
    done: StepsDone,
    journal: &StoreJournal<'_>,
) {
    let StepsDone {
        outcome,
        started,
        slot,
    } = done;
    let duration_ms = started.elapsed().as_millis() as u64;
    let ended = Ended::of(workflow);
    crate::metrics::metrics().run_finished(&workflow.name, outcome.status.as_str());
    drop(slot);
    let (status, error) = (outcome.status, outcome.error.clone());
    let recorded = finish(
        worker,
        run_id,
        ended,
        outcome.status,
        outcome.error,
        outcome.response,
    )
    .await;
    journal.settle_all().await;
    // Said once the end is on record, so the log never reports a run as finished
    // that a restart would run again.
    match (recorded, error) {
        (false, _) => {}
        (true, Some(error)) => {
            warn!(status = status.as_str(), duration_ms, %error, "run finished")
        }
        (true, None) => info!(status = status.as_str(), duration_ms, "run finished"),
    }
}

/// How long a run's record waits for a store that cannot write (a full disk, a lock held by
/// another process) before the run is left to be resumed: well inside a lease.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(10);
const OUTAGE_RETRY: Duration = Duration::from_millis(250);

/// Make `write` until the store takes it: a short outage must not cost a finished step its
/// record or a finished run its end (which would run it again after a restart).
async fn durably<F, Fut>(mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match write().await {
            Err(StoreError::Unavailable(_)) if waited < OUTAGE_PATIENCE => {
                tokio::time::sleep(OUTAGE_RETRY).await;
                waited += OUTAGE_RETRY;
            }
            written => return written,
        }
    }
}

/// Whether a finished run can have held a concurrency slot that others wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    MayHoldSlot,
    /// Its workflow limits nothing: no store lookup for waiting runs.
    HeldNoSlot,
}

impl Ended {
    /// How a run of `workflow` ends: only a workflow with `concurrency` hands on a slot.
    fn of(workflow: &Workflow) -> Self {
        if workflow.concurrency.is_some() {
            Ended::MayHoldSlot
        } else {
            Ended::HeldNoSlot
        }
    }
}

/// Record the run's end, answer a synchronous caller and start who waited for its slot;
/// answers whether the end is on record.
async fn finish(
    worker: &Worker,
    run_id: &str,
    ended: Ended,
    status: RunStatus,
    error: Option<String>,
    response: Option<SyncResponse>,
) -> bool {
    let store = &worker.inner.store;
    if let Err(err) =
        durably(|| store.run_finished(run_id, status, error.clone(), response.clone())).await
    {
        error!(run_id, error = %err, "cannot record the end of the run");
        worker.answer(run_id, SyncAnswer::Finished { status });
        return false;
    }
    worker.answer(run_id, SyncAnswer::Finished { status });
    if ended == Ended::HeldNoSlot {
        return true;
    }
    // Its concurrency slot is free: the oldest run waiting for it can start.
    match worker.inner.store.queued_behind(run_id).await {
        Ok(waiting) => {
            for id in waiting {
                worker.enqueue(id);
            }
        }
        Err(err) => warn!(run_id, error = %err, "cannot look for runs waiting on this one"),
    }
    true
}

/// The definition the run started with: the loaded one if unchanged, else the stored copy.
async fn workflow_for(worker: &Worker, name: &str, version: &str) -> Result<Arc<Workflow>, String> {
    let loaded = worker
        .inner
        .registry
        .read()
        .ok()
        .and_then(|registry| registry.get(name).cloned());
    if let Some(workflow) = loaded.filter(|w| w.version == version) {
        return Ok(workflow);
    }
    let definition = worker
        .inner
        .store
        .definition(version)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("workflow '{name}' version {version} is not available"))?;
    let (compiled, diagnostics) = workflow::compile_file(
        SourceFile::new(definition.path, definition.source),
        &worker.inner.compile_options,
    );
    compiled.map(Arc::new).ok_or_else(|| {
        format!(
            "the stored definition of workflow '{name}' no longer compiles: {}",
            diagnostics
                .iter()
                .next()
                .map(|d| d.message.clone())
                .unwrap_or_default()
        )
    })
}

/// A future whose panic is its output, as a message.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()))),
        }
    }
}

/// `call` steps run the workflows loaded now, with the secrets each declares.
struct RegistryCallees<'a> {
    worker: &'a Worker,
}

impl engine::Callees for RegistryCallees<'_> {
    fn workflow(&self, name: &str) -> Option<Arc<Workflow>> {
        self.worker
            .inner
            .registry
            .read()
            .ok()
            .and_then(|registry| registry.get(name).cloned())
    }

    fn secrets(&self, workflow: &Workflow) -> std::collections::BTreeMap<String, String> {
        self.worker.inner.secrets.resolve(&workflow.secrets)
    }
}

/// A finished step in the log and the metrics.
fn log_step(record: &StepRecord) {
    info!(
        step = %record.name,
        kind = %record.kind,
        status = record.status.as_str(),
        duration_ms = (record.duration_ms * 10.0).round() / 10.0,
        "step finished"
    );
    crate::metrics::metrics().step_duration(
        &record.kind,
        Duration::from_secs_f64(record.duration_ms.max(0.0) / 1000.0),
    );
}

struct StoreJournal<'a> {
    worker: &'a Worker,
    run_id: &'a str,
    /// Records sent to the store whose commit nobody has waited for yet.
    unsettled: std::sync::Mutex<Vec<Unsettled>>,
}

/// A noted step record on its way to the store: kept until its commit is heard, so a write
/// that failed is made again rather than lost.
struct Unsettled {
    record: StepRecord,
    noted: Noted,
    settling: Settling,
}

impl<'a> StoreJournal<'a> {
    fn new(worker: &'a Worker, run_id: &'a str) -> Self {
        Self {
            worker,
            run_id,
            unsettled: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Take the unsettled records `which` selects, leaving the others.
    fn take_unsettled(&self, which: impl Fn(&Unsettled) -> bool) -> Vec<Unsettled> {
        let Ok(mut unsettled) = self.unsettled.lock() else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(&mut *unsettled).into_iter().partition(which);
        *unsettled = kept;
        taken
    }

    /// Wait for the commits of `records`; a record whose write failed is written again (through
    /// a short outage), so only a store down for good loses it.
    async fn settle(&self, records: Vec<Unsettled>) -> Result<(), StoreError> {
        let store = &self.worker.inner.store;
        for Unsettled {
            record, settling, ..
        } in records
        {
            if let Err(err) = settling.await {
                warn!(step = %record.name, error = %err, "a step record was not stored; writing it again");
                durably(|| store.step_finished(self.run_id, &record)).await?;
            }
        }
        Ok(())
    }

    /// Every noted record durable: after the run's end or wait was sent (its commit follows
    /// theirs, so they are settled by then and this rarely waits), or before a wait is stored.
    async fn settle_all(&self) {
        if let Err(err) = self.settle(self.take_unsettled(|_| true)).await {
            error!(error = %err, "cannot record the run's steps");
        }
    }
}

impl Journal for StoreJournal<'_> {
    fn step_finished<'a>(
        &'a self,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            log_step(record);
            let store = &self.worker.inner.store;
            durably(|| store.step_finished(self.run_id, record))
                .await
                .map_err(|e| JournalError(e.to_string()))
        })
    }

    fn step_noted<'a>(
        &'a self,
        record: &'a StepRecord,
        noted: Noted,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        Box::pin(async move {
            log_step(record);
            let store = &self.worker.inner.store;
            let settling = store
                .step_noted(self.run_id, record)
                .await
                .map_err(|e| JournalError(e.to_string()))?;
            if let Ok(mut unsettled) = self.unsettled.lock() {
                unsettled.push(Unsettled {
                    record: record.clone(),
                    noted,
                    settling,
                });
            }
            Ok(())
        })
    }

    fn settle_effects(&self) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            let guards = self.take_unsettled(|u| u.noted == Noted::GuardsEffect);
            self.settle(guards)
                .await
                .map_err(|e| JournalError(e.to_string()))
        })
    }

    fn responded(&self, response: &SyncResponse) {
        self.worker
            .answer(self.run_id, SyncAnswer::Responded(response.clone()));
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

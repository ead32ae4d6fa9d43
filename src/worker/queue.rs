//! The store's queue, read as room frees: runs left there by a full window or another
//! process, the backlog counted for `max_backlog`, and retries queued when they are due.

use super::*;

/// How long the process that accepted a run has to start it before any other may take it:
/// the accepting process has the event at hand (and the caller of a synchronous webhook).
pub(super) const HANDOFF: Duration = Duration::from_secs(1);

/// Longest time between looks at a shared store's queue, for wake-ups lost in an outage.
pub(super) const QUEUE_POLL: Duration = Duration::from_secs(2);

/// On a store shared with other processes: while this process has idle slots and no backlog
/// of its own, take runs waiting in the store's queue (accepted by a busy process, or by one
/// that died). Woken by the store when runs are queued anywhere, and by a timer. Under a cap
/// (`max_running`, on any store), also woken when a run here stops running: the runs the cap
/// kept queued are taken then, oldest first, as many as it has room for.
///
/// Alone on its store and uncapped, it looks only after fresh runs were left in the store's
/// queue because the window was full.
pub(super) async fn take_queued_runs(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let inner = &worker.inner;
    let shared = inner.store.shared();
    let spill_only = !shared && !inner.capped;
    let mut wakeups = inner.store.wakeups();
    // Whether the last look stopped for want of room rather than of runs: a run ending here
    // is then worth another look.
    let mut more_queued = false;
    loop {
        let mut wait_for_handoff = false;
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(QUEUE_POLL) => {}
            _ = inner.slot_freed.notified() => {
                let spilled = inner.window.spilled.load(Ordering::Acquire);
                if !(more_queued || spilled || inner.capped) {
                    continue;
                }
            }
            // A store used by one process sends none.
            wakeup = wakeups.recv(), if shared => match wakeup {
                Ok(Wakeup::RunsQueued) => wait_for_handoff = true,
                Ok(Wakeup::RetryScheduled) => {
                    inner.retries.notify_one();
                    continue;
                }
                // For the executing runs' watch (`cancels`).
                Ok(Wakeup::CancelRequested) => continue,
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
        more_queued = take_while_room(&worker, &shutdown, shared, spill_only).await;
    }
}

/// Take runs from the store's queue while this process has room for them, as many per claim
/// as it has room for; stop when the queue has no more old enough, or at shutdown. Answers
/// whether it stopped for want of room (the queue may hold more).
pub(super) async fn take_while_room(
    worker: &Worker,
    shutdown: &watch::Receiver<bool>,
    shared: bool,
    spill_only: bool,
) -> bool {
    let inner = &worker.inner;
    loop {
        let idle = worker.room_to_claim(spill_only);
        if idle == 0 || *shutdown.borrow() {
            return idle == 0;
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
            return true;
        }
        let taken = match inner
            .store
            .claim_queued(&inner.owner, inner.lease_end(), queued_before, idle)
            .await
        {
            Ok(taken) => taken,
            Err(err) => {
                warn!(error = %err, "cannot take runs from the store's queue");
                return false;
            }
        };
        let count = taken.len();
        let mut loaded = if shared {
            load_together(&inner.store, &taken).await
        } else {
            HashMap::new()
        };
        for (run_id, place) in taken.into_iter().zip(places) {
            let job = Job {
                loaded: loaded.remove(&run_id),
                run_id,
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
            return false;
        }
        if !worker.claims_ahead() {
            // Every idle slot got a run: there may be more waiting once these start.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The runs just claimed, read from the store in one go (so not each in its slot, one after
/// another); a run that cannot be read now is read again when its turn comes.
async fn load_together(store: &Store, ids: &[String]) -> HashMap<String, Loaded> {
    match store.runs(ids).await {
        Ok(details) => details
            .into_iter()
            .filter_map(|detail| {
                let id = detail.run.id.clone();
                Loaded::stored(detail).map(|loaded| (id, loaded))
            })
            .collect(),
        Err(err) => {
            warn!(error = %err, "cannot read the runs taken from the queue; each is read in its turn");
            HashMap::new()
        }
    }
}

impl Worker {
    /// Whether runs are claimed from the store's queue ahead of free slots: on a store shared
    /// with other processes and with no cap (a claimed run counts against the cap, so under
    /// one a run is claimed only for a free slot).
    fn claims_ahead(&self) -> bool {
        self.inner.store.shared() && !self.inner.capped
    }

    /// How many runs to claim from the store's queue now. Alone on its store, as many as the
    /// window has room for. On a shared store, runs are claimed ahead: up to `workers` wait
    /// here for a slot, so a slot that frees has its next run at hand instead of waiting for
    /// a claim and a read; they are claimed many at a time, once a quarter of that room is
    /// free. Under a cap, only as many as slots are free.
    fn room_to_claim(&self, spill_only: bool) -> usize {
        let inner = &self.inner;
        if spill_only {
            return inner.window.room();
        }
        let free = inner.slots.available_permits();
        let backlog = inner.backlog.load(Ordering::Relaxed);
        if !self.claims_ahead() {
            return free.saturating_sub(backlog).min(inner.window.room());
        }
        let in_hand = inner.workers.saturating_sub(free) + backlog;
        let room = (2 * inner.workers).saturating_sub(in_hand);
        let batch = (inner.workers / 4).max(1);
        if in_hand > 0 && room < batch {
            return 0;
        }
        room.min(inner.window.room())
    }
}

/// Count the runs in the store's queue every `BACKLOG_RECOUNT`, for `max_backlog`.
pub(super) async fn count_backlog(worker: Worker, mut shutdown: watch::Receiver<bool>) {
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
                crate::observe::metrics::metrics().set_runs_queued(queued);
            }
            Err(err) => warn!(error = %err, "cannot count the queued runs"),
        }
    }
}

/// Longest sleep between looks at the store, in case a wake-up was missed.
pub(super) const RETRY_POLL: Duration = Duration::from_secs(30);

/// Queue each retrying run when its stored due time comes.
pub(super) async fn queue_due_retries(worker: Worker, mut shutdown: watch::Receiver<bool>) {
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

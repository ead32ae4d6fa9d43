//! Cancellations of the runs this process executes: each execution holds a signal the engine
//! asks between steps, set at once when the cancel was asked here, and otherwise when the store
//! says so (asked through another process, or before a restart): looked at every second and
//! whenever the store wakes the worker for a cancel.

use super::*;

/// Longest time between looks at the store for cancellations of the runs executing here.
pub(super) const CANCEL_POLL: Duration = Duration::from_secs(1);

/// A run's cancellation signal, registered while it executes here.
pub(super) struct CancelWatch<'a> {
    worker: &'a Worker,
    run_id: &'a str,
    pub(super) signal: engine::CancelSignal,
}

impl<'a> CancelWatch<'a> {
    pub(super) fn register(worker: &'a Worker, run_id: &'a str) -> Self {
        let (sender, signal) = watch::channel(None);
        if let Ok(mut cancels) = worker.inner.cancels.lock() {
            cancels.insert(run_id.to_owned(), sender);
        }
        Self {
            worker,
            run_id,
            signal,
        }
    }
}

impl CancelWatch<'_> {
    /// Ask the store now whether this run's cancellation was asked.
    pub(super) async fn look_now(&self) {
        let run_ids = [self.run_id.to_owned()];
        match self.worker.inner.store.cancel_requests(&run_ids).await {
            Ok(requests) => {
                for (run_id, message) in requests {
                    self.worker.cancel_running(&run_id, &message);
                }
            }
            Err(err) => warn!(error = %err, "cannot look whether the run was cancelled"),
        }
    }
}

impl Drop for CancelWatch<'_> {
    fn drop(&mut self) {
        if let Ok(mut cancels) = self.worker.inner.cancels.lock() {
            cancels.remove(self.run_id);
        }
    }
}

impl Worker {
    /// Tell the execution of `run_id` here, if any, that it was cancelled with `message`;
    /// whether it executes here.
    pub fn cancel_running(&self, run_id: &str, message: &str) -> bool {
        let cancels = match self.inner.cancels.lock() {
            Ok(cancels) => cancels,
            Err(_) => return false,
        };
        match cancels.get(run_id) {
            Some(sender) => {
                sender.send_replace(Some(message.to_owned()));
                true
            }
            None => false,
        }
    }

    /// A run cancelled before it ran: its synchronous caller, if any, is told now.
    pub fn cancelled_waiting(&self, run_id: &str) {
        self.answer(
            run_id,
            SyncAnswer::Finished {
                status: RunStatus::Cancelled,
            },
        );
    }

    fn executing_with_signal(&self) -> Vec<String> {
        self.inner
            .cancels
            .lock()
            .map(|cancels| {
                cancels
                    .iter()
                    .filter(|(_, sender)| sender.borrow().is_none())
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Look at the store for cancellations of the runs executing here: every `CANCEL_POLL`, and
/// at once when the store says one was asked anywhere.
pub(super) async fn watch_cancels(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let store = &worker.inner.store;
    let shared = store.shared();
    let mut wakeups = store.wakeups();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(CANCEL_POLL) => {}
            wakeup = wakeups.recv(), if shared => match wakeup {
                Ok(Wakeup::CancelRequested)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    wakeups = store.wakeups();
                    continue;
                }
            },
        }
        let executing = worker.executing_with_signal();
        if executing.is_empty() {
            continue;
        }
        match store.cancel_requests(&executing).await {
            Ok(requests) => {
                for (run_id, message) in requests {
                    info!(run_id = %run_id, "the run was cancelled; it stops at its next step");
                    worker.cancel_running(&run_id, &message);
                }
            }
            Err(err) => warn!(error = %err, "cannot look for cancelled runs"),
        }
    }
}

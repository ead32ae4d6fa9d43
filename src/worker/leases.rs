//! Leases: the runs this process executes are renewed a third of a lease at a time, and runs
//! whose owner stopped renewing are taken over.

use super::*;

/// Renew the leases of the runs this process executes, and take over runs whose owner stopped
/// renewing theirs (a process that died while another keeps serving the same store).
pub(super) async fn keep_leases(worker: Worker, mut shutdown: watch::Receiver<bool>) {
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
                                loaded: None,
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

/// Stops renewing a run's lease when its execution ends, however it ends: finished, waiting for
/// a retry, or interrupted (an interrupted run's lease runs out and it is taken over again).
pub(super) struct Held<'a> {
    pub(super) worker: &'a Worker,
    pub(super) run_id: &'a str,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Ok(mut executing) = self.worker.inner.executing.lock() {
            executing.remove(self.run_id);
        }
    }
}

//! The store as a run's journal: step records noted without waiting, settled before the next
//! effect and after the run's end, a failed one written again.

use super::*;

pub(super) struct StoreJournal<'a> {
    pub(super) worker: &'a Worker,
    pub(super) run_id: &'a str,
    /// Records sent to the store whose commit nobody has waited for yet.
    pub(super) unsettled: std::sync::Mutex<Vec<Unsettled>>,
}

/// A noted step record on its way to the store: kept until its commit is heard, so a write
/// that failed is made again rather than lost.
pub(super) struct Unsettled {
    pub(super) record: StepRecord,
    pub(super) noted: Noted,
    pub(super) settling: Settling,
}

impl<'a> StoreJournal<'a> {
    pub(super) fn new(worker: &'a Worker, run_id: &'a str) -> Self {
        Self {
            worker,
            run_id,
            unsettled: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Take the unsettled records `which` selects, leaving the others.
    pub(super) fn take_unsettled(&self, which: impl Fn(&Unsettled) -> bool) -> Vec<Unsettled> {
        let Ok(mut unsettled) = self.unsettled.lock() else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(&mut *unsettled).into_iter().partition(which);
        *unsettled = kept;
        taken
    }

    /// Wait for the commits of `records`; a record whose write failed is written again (through
    /// a short outage), so only a store down for good loses it.
    pub(super) async fn settle(&self, records: Vec<Unsettled>) -> Result<(), StoreError> {
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
    pub(super) async fn settle_all(&self) {
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
                .map_err(JournalError::new)
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
                .map_err(JournalError::new)?;
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
            self.settle(guards).await.map_err(JournalError::new)
        })
    }

    fn responded(&self, response: &SyncResponse) {
        self.worker
            .answer(self.run_id, SyncAnswer::Responded(response.clone()));
    }
}

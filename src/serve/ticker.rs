//! The schedule ticker: starts the runs of `on.schedule` when their ticks come. Each tick is
//! recorded in the store in the commit that accepts its run, so a restart neither repeats a tick
//! nor silently drops the ones it missed (`catch_up`), and a reload recomputes every schedule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::run::{Event, Trigger};
use crate::store::{Store, StoreError};
use crate::worker::Worker;
use crate::workflow::schedule::CatchUp;
use crate::workflow::{SharedRegistry, Workflow};

/// The longest sleep: the wall clock may jump (suspend, NTP) while a sleep counts monotonic time.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The pause before trying again when the store refused a tick.
const STORE_BACKOFF: Duration = Duration::from_secs(2);
/// Late ticks fired one by one; more than this many are handled as missed.
const MAX_BACKLOG: usize = 5;

/// Start the ticker task. `reloaded` is notified after the registry was swapped.
pub fn start(
    store: Store,
    registry: SharedRegistry,
    worker: Worker,
    reloaded: Arc<Notify>,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let ticker = Ticker {
        store,
        registry,
        worker,
        cursors: HashMap::new(),
    };
    tokio::spawn(ticker.run(reloaded, stopped))
}

struct Ticker {
    store: Store,
    registry: SharedRegistry,
    worker: Worker,
    /// Per scheduled workflow: the tick handled last (fired, skipped, or the start instant).
    cursors: HashMap<String, DateTime<Utc>>,
}

impl Ticker {
    async fn run(mut self, reloaded: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                return;
            }
            let pause = self.step().await;
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                _ = reloaded.notified() => debug!("schedules recomputed after a reload"),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn scheduled(&self) -> Vec<Arc<Workflow>> {
        self.registry
            .read()
            .map(|registry| {
                registry
                    .workflows
                    .values()
                    .filter(|w| !w.schedules.is_empty())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fire what is due and answer how long to sleep before the next tick.
    async fn step(&mut self) -> Duration {
        let workflows = self.scheduled();
        self.cursors
            .retain(|name, _| workflows.iter().any(|w| &w.name == name));
        let mut pause = MAX_SLEEP;
        for workflow in &workflows {
            if !self.cursors.contains_key(&workflow.name) {
                match self.catch_up(workflow).await {
                    Ok(cursor) => {
                        self.cursors.insert(workflow.name.clone(), cursor);
                    }
                    Err(err) => {
                        warn!(workflow = %workflow.name, error = %err, "cannot read the schedule's last tick; trying again");
                        pause = pause.min(STORE_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(&cursor) = self.cursors.get(&workflow.name) else {
                continue;
            };
            let now = Utc::now();
            if let Err(err) = self.fire_due(workflow, cursor, now).await {
                warn!(workflow = %workflow.name, error = %err, "cannot record the schedule's tick; trying again");
                pause = pause.min(STORE_BACKOFF);
                continue;
            }
            let cursor = self.cursors.get(&workflow.name).copied().unwrap_or(now);
            if let Some(at) = next_fire(workflow, cursor) {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                pause = pause.min(wait);
            }
        }
        pause
    }

    /// Fire the ticks whose time has come, oldest first, moving the cursor past each. A short
    /// backlog (a busy machine) fires tick by tick; a longer one (the machine slept) is handled
    /// like ticks missed while stopped: one run for the latest with `catch_up: last`.
    async fn fire_due(
        &mut self,
        workflow: &Workflow,
        cursor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let due = due_ticks(workflow, cursor, now);
        let Some(&latest) = due.last() else {
            return Ok(());
        };
        if due.len() <= MAX_BACKLOG {
            for tick in due {
                self.fire(workflow, tick).await?;
                self.cursors.insert(workflow.name.clone(), tick);
            }
            return Ok(());
        }
        // The walk stopped counting; the latest tick is looked up directly.
        let latest = workflow
            .schedules
            .iter()
            .filter_map(|s| s.latest_at_or_before(now))
            .max()
            .unwrap_or(latest)
            .max(latest);
        warn!(workflow = %workflow.name, "ticks came while the scheduler could not run; handled as missed");
        if workflow
            .schedules
            .iter()
            .any(|s| s.catch_up == CatchUp::Last)
        {
            self.fire(workflow, latest).await?;
        } else {
            self.store.claim_tick(&workflow.name, latest).await?;
        }
        self.cursors.insert(workflow.name.clone(), latest);
        Ok(())
    }

    /// A workflow's schedules as the ticker first sees them: the ticks missed since the last
    /// recorded one are handled per `catch_up`. Answers the cursor to go on from.
    async fn catch_up(&self, workflow: &Workflow) -> Result<DateTime<Utc>, StoreError> {
        let name = &workflow.name;
        let now = Utc::now();
        let last = self.store.last_tick(name).await?;
        let latest_of = |catch_up: Option<CatchUp>| {
            workflow
                .schedules
                .iter()
                .filter(|s| catch_up.is_none_or(|mode| s.catch_up == mode))
                .filter_map(|s| s.latest_at_or_before(now))
                .filter(|tick| last.is_none_or(|last| *tick > last))
                .max()
        };
        if last.is_none() {
            // A schedule never seen before starts now: its past is not a backlog. The record
            // (its latest past tick, or this instant when it has none) marks where it started,
            // so a restart catches up from here.
            let start = latest_of(None).unwrap_or(now);
            self.store.claim_tick(name, start).await?;
            info!(workflow = %name, "schedule started");
            return Ok(now);
        }
        let Some(missed) = latest_of(None) else {
            return Ok(now);
        };
        if let Some(tick) = latest_of(Some(CatchUp::Last)) {
            info!(workflow = %name, tick = %tick, "catching up the most recent missed tick");
            self.fire(workflow, tick).await?;
        }
        if self.store.claim_tick(name, missed).await? {
            info!(workflow = %name, tick = %missed, "missed ticks skipped (catch_up: none)");
        }
        Ok(now)
    }

    /// Start the run of one tick, unless the store has recorded that tick already. A paused
    /// workflow's tick is recorded and starts nothing: it is skipped, not caught up on resume.
    async fn fire(&self, workflow: &Workflow, tick: DateTime<Utc>) -> Result<(), StoreError> {
        let paused = self.store.paused_workflows().await?;
        if paused.iter().any(|p| p.workflow == workflow.name) {
            if self.store.claim_tick(&workflow.name, tick).await? {
                info!(workflow = %workflow.name, tick = %tick, "tick skipped: the workflow is paused");
            }
            return Ok(());
        }
        let trigger = Trigger::Schedule { scheduled_at: tick };
        let event = Event::without_request(trigger, serde_json::json!({}), Vec::new());
        let event = Arc::new(event);
        let run = workflow.new_run(&event);
        match self
            .store
            .accept_tick(
                &workflow.name,
                tick,
                Arc::clone(&event),
                std::slice::from_ref(&run),
            )
            .await?
        {
            Some(accepted) if accepted.created.contains(&run.id) => {
                info!(workflow = %workflow.name, run_id = %run.id, tick = %tick, "scheduled run");
                self.worker.superseded(&accepted.superseded);
                self.worker.enqueue_fresh(&run, event);
            }
            _ => debug!(workflow = %workflow.name, tick = %tick, "tick already recorded"),
        }
        Ok(())
    }
}

/// The ticks after `cursor` whose fire time (tick plus jitter) has come, oldest first; past a
/// backlog, only the first few of each schedule.
fn due_ticks(workflow: &Workflow, cursor: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut due = Vec::new();
    for schedule in &workflow.schedules {
        let mut from = cursor;
        for _ in 0..=MAX_BACKLOG {
            let Some(tick) = schedule.next_after(from) else {
                break;
            };
            if fire_time(schedule.delay_for(&workflow.name, tick), tick) > now {
                break;
            }
            due.push(tick);
            from = tick;
        }
    }
    due.sort();
    due.dedup();
    due
}

/// When the next tick after `cursor` fires.
fn next_fire(workflow: &Workflow, cursor: DateTime<Utc>) -> Option<DateTime<Utc>> {
    workflow
        .schedules
        .iter()
        .filter_map(|s| {
            let tick = s.next_after(cursor)?;
            Some(fire_time(s.delay_for(&workflow.name, tick), tick))
        })
        .min()
}

fn fire_time(delay: Duration, tick: DateTime<Utc>) -> DateTime<Utc> {
    tick + chrono::Duration::from_std(delay).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::workflow::{CompileOptions, compile_file};

    fn workflow(schedule: &str) -> Workflow {
        let text = format!("name: w\non:\n  schedule:\n{schedule}\nsteps:\n  - log: x\n");
        let (workflow, diagnostics) =
            compile_file(SourceFile::new("w.yaml", text), &CompileOptions::default());
        assert!(!diagnostics.has_errors(), "{:?}", diagnostics.sorted());
        workflow.expect("compiled")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn due_ticks_are_the_ones_past_the_cursor_up_to_now_merged_across_schedules() {
        let w = workflow("    - \"*/10 * * * * *\"\n    - \"15 * * * * *\"");
        let due = due_ticks(&w, at("2026-05-01T10:00:00Z"), at("2026-05-01T10:00:35Z"));
        assert_eq!(
            due,
            vec![
                at("2026-05-01T10:00:10Z"),
                at("2026-05-01T10:00:15Z"),
                at("2026-05-01T10:00:20Z"),
                at("2026-05-01T10:00:30Z"),
            ]
        );
        assert_eq!(
            next_fire(&w, at("2026-05-01T10:00:30Z")),
            Some(at("2026-05-01T10:00:40Z"))
        );
        // Ticks falling on the same instant are one.
        let same = workflow("    - \"0 * * * * *\"\n    - \"*/30 * * * * *\"");
        let due = due_ticks(
            &same,
            at("2026-05-01T10:00:00Z"),
            at("2026-05-01T10:01:00Z"),
        );
        assert_eq!(
            due,
            vec![at("2026-05-01T10:00:30Z"), at("2026-05-01T10:01:00Z")]
        );
    }

    #[test]
    fn a_long_gap_is_not_walked_tick_by_tick() {
        let w = workflow("    - \"* * * * * *\"");
        let due = due_ticks(&w, at("2026-05-01T00:00:00Z"), at("2026-05-02T00:00:00Z"));
        assert_eq!(due.len(), MAX_BACKLOG + 1, "{due:?}");
        assert_eq!(
            w.schedules[0].latest_at_or_before(at("2026-05-02T00:00:00.5Z")),
            Some(at("2026-05-02T00:00:00Z"))
        );
    }

    #[test]
    fn jitter_delays_the_fire_but_not_the_tick() {
        let w = workflow("    cron: \"0 * * * *\"\n    jitter: 10m");
        let tick = at("2026-05-01T11:00:00Z");
        let delay = w.schedules[0].delay_for("w", tick);
        assert!(delay > Duration::ZERO && delay < Duration::from_secs(600));
        let fires = next_fire(&w, at("2026-05-01T10:00:00Z")).expect("next");
        assert_eq!(fires, fire_time(delay, tick));
        let before = fires - chrono::Duration::milliseconds(1);
        assert!(due_ticks(&w, at("2026-05-01T10:00:00Z"), before).is_empty());
        assert_eq!(due_ticks(&w, at("2026-05-01T10:00:00Z"), fires), vec![tick]);
    }
}

//! The store conformance suite: what every backend must do, one test per case and backend
//! (`conformance_cases!`), run against SQLite, an in-memory SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use hookflow::run::Attempt;
use hookflow::run::ConcurrencyMode;
use hookflow::run::SyncResponse;
use hookflow::run::{DedupeKey, NewRun, RunConcurrency};
use hookflow::run::{Event, RunStatus, StepRecord, StepStatus, Trigger};
use hookflow::store::{
    ActivityWindow, CancelRequest, Cancelled, Definition, Lease, MinuteCount, OpenMode,
    PauseRequest, ReplayOptions, Replayed, RunCursor, RunDurations, RunFilter, Store, StoreError,
    StoreOptions, Wakeup,
};
use serde_json::json;

use crate::support::postgres::TestSchema;

fn event(n: u32) -> Event {
    let mut headers = serde_json::Map::new();
    headers.insert("x-delivery".into(), json!(format!("d-{n}")));
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        method: "POST".into(),
        path: "/hooks/x".into(),
        params: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
        query: serde_json::Map::new(),
        headers,
        body: json!({"n": n}),
        raw: format!("{{\"n\": {n}}}\u{0}\u{ff}").into_bytes(),
        received_at: Utc::now(),
        trigger: Default::default(),
        trace: None,
    }
}

fn new_run(workflow: &str, dedupe: Option<(&str, i64)>) -> NewRun {
    NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.into(),
        version: "v1".into(),
        dedupe: dedupe.map(|(key, secs)| DedupeKey {
            key: key.into(),
            expires_at: Utc::now() + Duration::seconds(secs),
        }),
        concurrency: None,
    }
}

fn keyed_run(workflow: &str, key: &str, limit: u32, mode: ConcurrencyMode) -> NewRun {
    NewRun {
        concurrency: Some(RunConcurrency {
            key: key.into(),
            limit,
            mode,
        }),
        ..new_run(workflow, None)
    }
}

/// Accept each run with its own event, one after the other (so they are in age order).
async fn accept_each(store: &Store, runs: &[&NewRun]) -> Result<(), StoreError> {
    for (n, run) in runs.iter().enumerate() {
        let accepted = store
            .accept(Arc::new(event(100 + n as u32)), std::slice::from_ref(*run))
            .await?;
        assert_eq!(accepted.created, vec![run.id.clone()]);
    }
    Ok(())
}

/// Concurrency keys: slots per key, oldest first, and the `cancel_previous` and `skip` modes.
async fn concurrency(store: Store) -> Result<(), StoreError> {
    let store = &store;
    use ConcurrencyMode::{CancelPrevious, Queue, Skip};
    let until = Utc::now() + Duration::seconds(30);
    let (q1, q2, q3) = (
        keyed_run("wf-k", "repo-1", 1, Queue),
        keyed_run("wf-k", "repo-1", 1, Queue),
        keyed_run("wf-k", "repo-1", 1, Queue),
    );
    let other_key = keyed_run("wf-k", "repo-2", 1, Queue);
    let other_workflow = keyed_run("wf-l", "repo-1", 1, Queue);
    accept_each(store, &[&q1, &q2, &q3, &other_key, &other_workflow]).await?;
    // Oldest first: a newer run does not pass an older one still queued.
    assert!(!store.claim(&q2.id, "node-1", until).await?);
    assert!(store.claim(&q1.id, "node-1", until).await?);
    assert!(
        !store.claim(&q2.id, "node-1", until).await?,
        "the slot is taken"
    );
    assert!(!store.claim(&q3.id, "node-1", until).await?);
    // Keys are per workflow and per value.
    assert!(store.claim(&other_key.id, "node-1", until).await?);
    assert!(store.claim(&other_workflow.id, "node-1", until).await?);
    // Only as many as can start are woken: the oldest, for a limit of one.
    assert_eq!(store.queued_behind(&q1.id).await?, vec![q2.id.clone()]);
    assert!(store.queued_behind(&other_key.id).await?.is_empty());
    // A run waiting for a retry keeps its slot, and comes back ahead of the newer ones.
    store
        .run_retrying(
            &q1.id,
            Some("503".into()),
            Utc::now() - Duration::seconds(1),
        )
        .await?;
    assert!(!store.claim(&q2.id, "node-1", until).await?);
    assert!(store.claim_due_retries(Utc::now()).await?.contains(&q1.id));
    assert!(!store.claim(&q2.id, "node-1", until).await?);
    assert!(store.claim(&q1.id, "node-1", until).await?);
    // Its end frees the slot for the next oldest.
    store
        .run_finished(&q1.id, RunStatus::Succeeded, None, None)
        .await?;
    assert!(!store.claim(&q3.id, "node-1", until).await?);
    assert!(store.claim(&q2.id, "node-1", until).await?);
    assert!(!store.claim(&q3.id, "node-1", until).await?);
    // A run taken over after its owner stopped renewing keeps its slot, even with runs
    // queued behind it.
    store
        .renew_leases(
            "node-1",
            std::slice::from_ref(&q2.id),
            Utc::now() - Duration::seconds(1),
        )
        .await?;
    assert!(store.claim(&q2.id, "node-2", until).await?);
    assert!(!store.claim(&q3.id, "node-2", until).await?);

    // A limit above one runs that many at once.
    let wide: Vec<NewRun> = (0..3)
        .map(|_| keyed_run("wf-k", "wide", 2, Queue))
        .collect();
    accept_each(store, &wide.iter().collect::<Vec<_>>()).await?;
    assert!(store.claim(&wide[0].id, "node-1", until).await?);
    assert!(store.claim(&wide[1].id, "node-1", until).await?);
    assert!(!store.claim(&wide[2].id, "node-1", until).await?);
    // One of them ends while the other runs: one slot is free, and one run is woken for it,
    // however many wait.
    let more: Vec<NewRun> = (0..3)
        .map(|_| keyed_run("wf-k", "wide", 2, Queue))
        .collect();
    accept_each(store, &more.iter().collect::<Vec<_>>()).await?;
    store
        .run_finished(&wide[0].id, RunStatus::Succeeded, None, None)
        .await?;
    assert_eq!(
        store.queued_behind(&wide[0].id).await?,
        vec![wide[2].id.clone()]
    );
    store
        .run_finished(&wide[1].id, RunStatus::Failed, Some("boom".into()), None)
        .await?;
    assert_eq!(
        store.queued_behind(&wide[1].id).await?,
        vec![wide[2].id.clone(), more[0].id.clone()],
        "a failed run frees its slot too"
    );
    assert!(store.claim(&wide[2].id, "node-1", until).await?);
    assert!(store.claim(&more[0].id, "node-1", until).await?);
    assert!(!store.claim(&more[1].id, "node-1", until).await?);
    assert!(
        store.queued_behind(&wide[1].id).await?.is_empty(),
        "both slots are taken again"
    );

    // cancel_previous: the key's queued runs that never started are cancelled by a newer one;
    // a running one is left alone.
    let (c1, c2, c3) = (
        keyed_run("wf-k", "deploy", 1, CancelPrevious),
        keyed_run("wf-k", "deploy", 1, CancelPrevious),
        keyed_run("wf-k", "deploy", 1, CancelPrevious),
    );
    accept_each(store, &[&c1]).await?;
    assert!(store.claim(&c1.id, "node-1", until).await?);
    accept_each(store, &[&c2, &c3]).await?;
    assert_eq!(status(store, &c1.id).await, RunStatus::Running);
    let cancelled = store.run(&c2.id).await?.expect("run").run;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert!(
        cancelled
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&c3.id)),
        "{:?}",
        cancelled.error
    );
    assert_eq!(status(store, &c3.id).await, RunStatus::Queued);
    assert!(!store.unfinished_runs().await?.contains(&c2.id));
    assert!(
        !store.claim(&c2.id, "node-1", until).await?,
        "a cancelled run never starts"
    );
    // The accept names the runs it superseded, so their waiting callers can be told.
    let c4 = keyed_run("wf-k", "deploy", 1, CancelPrevious);
    let accepted = store
        .accept(Arc::new(event(200)), std::slice::from_ref(&c4))
        .await?;
    assert_eq!(accepted.superseded, vec![c3.id.clone()]);
    assert_eq!(status(store, &c3.id).await, RunStatus::Cancelled);

    // skip: a run whose key is busy is recorded cancelled, with the reason.
    let (s1, s2) = (
        keyed_run("wf-k", "sync", 1, Skip),
        keyed_run("wf-k", "sync", 1, Skip),
    );
    accept_each(store, &[&s1, &s2]).await?;
    assert_eq!(status(store, &s1.id).await, RunStatus::Queued);
    let skipped = store.run(&s2.id).await?.expect("run").run;
    assert_eq!(skipped.status, RunStatus::Cancelled);
    assert!(
        skipped
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("skipped")),
        "{:?}",
        skipped.error
    );
    assert!(store.claim(&s1.id, "node-1", until).await?);
    store
        .run_finished(&s1.id, RunStatus::Succeeded, None, None)
        .await?;
    let s3 = keyed_run("wf-k", "sync", 1, Skip);
    accept_each(store, &[&s3]).await?;
    assert_eq!(status(store, &s3.id).await, RunStatus::Queued);
    Ok(())
}

fn record(index: usize, name: &str, status: StepStatus, attempts: u32) -> StepRecord {
    StepRecord {
        index,
        name: name.into(),
        kind: "http".into(),
        status,
        input: json!({"url": "http://x"}),
        output: json!({"status": 200}),
        error: (status == StepStatus::Failed).then(|| "boom".to_owned()),
        filtered: false,
        started_at: Utc::now(),
        duration_ms: 1.5,
        attempts,
        earlier: (1..attempts)
            .map(|attempt| Attempt {
                attempt,
                error: Some(format!("503 on attempt {attempt}")),
                answer_status: Some(503),
                started_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, attempt).unwrap(),
                duration_ms: 2.5,
            })
            .collect(),
    }
}

async fn status(store: &Store, id: &str) -> RunStatus {
    store.run(id).await.expect("read").expect("run").run.status
}

/// Pages follow each other without gaps or repeats (runs of one event share a creation time, so
/// the id breaks ties), and `since`/`until` bound the creation time.
async fn listing_pages_and_time_ranges(store: Store) -> Result<(), StoreError> {
    let store = &store;
    let base = Utc::now() - Duration::days(400);
    let mut made = Vec::new();
    for n in 0..5u32 {
        let mut ev = event(100 + n);
        ev.received_at = base + Duration::seconds(i64::from(n));
        // Two runs per event: equal creation times.
        let runs = [new_run("wf-pages", None), new_run("wf-pages", None)];
        store.accept(Arc::new(ev.clone()), &runs).await?;
        for run in &runs {
            made.push((ev.received_at, run.id.clone()));
        }
    }
    made.sort();
    made.reverse();
    let expected: Vec<String> = made.iter().map(|(_, id)| id.clone()).collect();
    let mut seen = Vec::new();
    let mut filter = RunFilter {
        workflow: Some("wf-pages".into()),
        limit: 3,
        ..RunFilter::default()
    };
    loop {
        let page = store.list_runs(&filter).await?;
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        filter.before = Some(RunCursor::after(last));
        seen.extend(page.iter().map(|r| r.id.clone()));
    }
    assert_eq!(seen, expected, "pages in order, none lost or repeated");
    let cursor = RunCursor::after(&store.list_runs(&filter_for("wf-pages", 1)).await?[0]);
    assert_eq!(RunCursor::decode(&cursor.encode()), Some(cursor));

    // [since, until): the events at +1s, +2s and +3s.
    let ranged = store
        .list_runs(&RunFilter {
            workflow: Some("wf-pages".into()),
            since: Some(base + Duration::seconds(1)),
            until: Some(base + Duration::seconds(4)),
            limit: 100,
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(
        ranged.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        expected[2..8].to_vec()
    );
    // Status and workflow together.
    let none = store
        .list_runs(&RunFilter {
            workflow: Some("wf-pages".into()),
            status: Some(RunStatus::Failed),
            limit: 100,
            ..RunFilter::default()
        })
        .await?;
    assert!(none.is_empty(), "every wf-pages run is queued: {none:?}");
    Ok(())
}

fn filter_for(workflow: &str, limit: u32) -> RunFilter {
    RunFilter {
        workflow: Some(workflow.into()),
        limit,
        ..RunFilter::default()
    }
}

/// Two queued runs, of `wf-a` and `wf-b`, accepted with one webhook event.
async fn two_queued(store: &Store) -> Result<(NewRun, NewRun), StoreError> {
    let (a, b) = (new_run("wf-a", None), new_run("wf-b", None));
    store
        .accept(Arc::new(event(1)), &[a.clone(), b.clone()])
        .await?;
    Ok((a, b))
}

/// A run of `wf-a` that ran and succeeded, beside a queued run of `wf-b`.
async fn one_succeeded(store: &Store) -> Result<NewRun, StoreError> {
    let (a, _) = two_queued(store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    store
        .run_finished(&a.id, RunStatus::Succeeded, None, None)
        .await?;
    Ok(a)
}

/// Accept: the event and its queued runs, read back exactly; a run by a prefix of its id.
async fn accept_reads_back(store: Store) -> Result<(), StoreError> {
    let ev = event(1);
    let (a, b) = (new_run("wf-a", None), new_run("wf-b", None));
    let accepted = store
        .accept(Arc::new(ev.clone()), &[a.clone(), b.clone()])
        .await?;
    assert_eq!(accepted.created, vec![a.id.clone(), b.id.clone()]);
    assert!(accepted.duplicate_of.is_empty());
    let detail = store.run(&a.id).await?.expect("accepted run");
    assert_eq!(detail.run.status, RunStatus::Queued);
    assert_eq!(detail.run.attempt, 1);
    assert_eq!(detail.run.workflow, "wf-a");
    assert_eq!(detail.event.raw, ev.raw, "raw bytes kept exactly");
    assert_eq!(detail.event.body, ev.body);
    assert_eq!(detail.event.headers, ev.headers);
    assert_eq!(detail.event.params, ev.params);
    assert!(detail.steps.is_empty());
    let unfinished = store.unfinished_runs().await?;
    assert!(unfinished.contains(&a.id) && unfinished.contains(&b.id));
    // A unique prefix finds a run; an unknown id finds none.
    assert!(store.run(&a.id[..30]).await?.is_some());
    assert!(store.run("no-such-run").await?.is_none());
    Ok(())
}

/// The request's trace context is kept with its event, whichever way the event is accepted
/// (with or without a dedupe key), so a run executed later joins the request's trace.
async fn trace_context_reads_back(store: Store) -> Result<(), StoreError> {
    let parent = hookflow::run::TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .expect("traceparent");
    for dedupe in [None, Some(("trace-key", 60))] {
        let traced = Event {
            trace: Some(parent),
            ..event(7)
        };
        let run = new_run("wf-traced", dedupe);
        store
            .accept(Arc::new(traced), std::slice::from_ref(&run))
            .await?;
        let detail = store.run(&run.id).await?.expect("accepted run");
        assert_eq!(detail.event.trace, Some(parent), "dedupe: {dedupe:?}");
    }
    let untraced = new_run("wf-traced", None);
    store
        .accept(Arc::new(event(8)), std::slice::from_ref(&untraced))
        .await?;
    let detail = store.run(&untraced.id).await?.expect("accepted run");
    assert_eq!(detail.event.trace, None);
    Ok(())
}

/// A redelivery (the same dedupe key) of an event whose run failed or was cancelled starts a
/// new run; of one whose run succeeded, was filtered, or is still queued, running or retrying,
/// it stays a duplicate.
async fn a_redelivery_of_a_failed_run_starts_again(store: Store) -> Result<(), StoreError> {
    let until = Utc::now() + Duration::seconds(30);
    let deliver = |key: &str| new_run("wf-a", Some((key, 3600)));
    for (ended, starts_again) in [
        (Some(RunStatus::Failed), true),
        (Some(RunStatus::Cancelled), true),
        (Some(RunStatus::Succeeded), false),
        (Some(RunStatus::Filtered), false),
        (Some(RunStatus::Retrying), false),
        (None, false),
    ] {
        let key = format!("delivery-{ended:?}");
        let first = deliver(&key);
        store
            .accept(Arc::new(event(20)), std::slice::from_ref(&first))
            .await?;
        if let Some(status) = ended {
            assert!(store.claim(&first.id, "node-1", until).await?);
            if status == RunStatus::Retrying {
                let due = Utc::now() + Duration::seconds(60);
                store
                    .run_retrying(&first.id, Some("503".into()), due)
                    .await?;
            } else {
                store
                    .run_finished(&first.id, status, Some("boom".into()), None)
                    .await?;
            }
        }
        let again = deliver(&key);
        let accepted = store
            .accept(Arc::new(event(21)), std::slice::from_ref(&again))
            .await?;
        if starts_again {
            assert_eq!(accepted.created, vec![again.id.clone()], "after {ended:?}");
            assert!(accepted.duplicate_of.is_empty(), "after {ended:?}");
            // The new run holds the key now: a third delivery while it is queued is a duplicate.
            let third = store.accept(Arc::new(event(22)), &[deliver(&key)]).await?;
            assert_eq!(
                third.duplicate_of,
                vec![again.id.clone()],
                "after {ended:?}"
            );
        } else {
            assert!(accepted.created.is_empty(), "after {ended:?}");
            assert_eq!(
                accepted.duplicate_of,
                vec![first.id.clone()],
                "after {ended:?}"
            );
        }
    }
    Ok(())
}

/// Dedupe: a key held within its window starts nothing; other workflows are separate; an
/// expired key is free again.
async fn dedupe_window(store: Store) -> Result<(), StoreError> {
    let first = new_run("wf-a", Some(("delivery-1", 3600)));
    let accepted = store
        .accept(Arc::new(event(2)), std::slice::from_ref(&first))
        .await?;
    assert_eq!(accepted.created, vec![first.id.clone()]);
    let again = new_run("wf-a", Some(("delivery-1", 3600)));
    let other = new_run("wf-b", Some(("delivery-1", 3600)));
    let accepted = store
        .accept(Arc::new(event(3)), &[again.clone(), other.clone()])
        .await?;
    assert_eq!(accepted.created, vec![other.id.clone()]);
    assert_eq!(accepted.duplicate_of, vec![first.id.clone()]);
    assert!(
        store.run(&again.id).await?.is_none(),
        "a duplicate is not stored"
    );
    let only_dup = store
        .accept(
            Arc::new(event(4)),
            &[new_run("wf-a", Some(("delivery-1", 3600)))],
        )
        .await?;
    assert!(only_dup.created.is_empty());
    // An expired key is free again.
    let short = new_run("wf-c", Some(("k", -1)));
    store.accept(Arc::new(event(5)), &[short]).await?;
    let later = new_run("wf-c", Some(("k", 3600)));
    assert_eq!(
        store
            .accept(Arc::new(event(6)), std::slice::from_ref(&later))
            .await?
            .created,
        vec![later.id]
    );
    Ok(())
}

/// Claims are exclusive while the lease lives, and free once it ended.
async fn claims_and_leases(store: Store) -> Result<(), StoreError> {
    let (a, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    assert!(!store.claim(&a.id, "node-2", until).await?);
    assert!(
        !store.claim(&a.id, "node-1", until).await?,
        "a live lease is not claimed twice"
    );
    assert_eq!(status(&store, &a.id).await, RunStatus::Running);
    assert!(
        store
            .claim(&b.id, "node-2", Utc::now() - Duration::seconds(1))
            .await?
    );
    let expired = store.expired_leases(Utc::now()).await?;
    assert!(expired.contains(&b.id) && !expired.contains(&a.id));
    assert!(
        store.claim(&b.id, "node-1", until).await?,
        "an ended lease is taken over"
    );
    store
        .renew_leases(
            "node-2",
            std::slice::from_ref(&b.id),
            Utc::now() - Duration::seconds(5),
        )
        .await?;
    assert!(
        !store.expired_leases(Utc::now()).await?.contains(&b.id),
        "only the holder renews a lease"
    );
    store.take_over_orphans().await?;
    if store.shared() {
        // Other processes may be alive: their runs are taken over only once a lease ends.
        assert!(
            !store.claim(&a.id, "node-3", until).await?,
            "a live lease of another process survives a start"
        );
    } else {
        assert!(
            store.claim(&a.id, "node-3", until).await?,
            "orphans are claimable"
        );
    }
    Ok(())
}

/// Step records: one per step, replaced by a later attempt, in order.
async fn step_records(store: Store) -> Result<(), StoreError> {
    let (a, _) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    store
        .step_finished(&a.id, &record(1, "second", StepStatus::Retrying, 1))
        .await?;
    store
        .step_finished(&a.id, &record(0, "first", StepStatus::Succeeded, 1))
        .await?;
    store
        .step_finished(&a.id, &record(1, "second", StepStatus::Succeeded, 2))
        .await?;
    let steps = store.run(&a.id).await?.expect("run").steps;
    assert_eq!(steps.len(), 2);
    assert_eq!((steps[0].name.as_str(), steps[0].index), ("first", 0));
    assert_eq!(steps[1].status, StepStatus::Succeeded);
    assert_eq!(steps[1].attempts, 2);
    assert_eq!(steps[1].input, json!({"url": "http://x"}));
    // Each earlier attempt is kept, exactly; a step tried once has none.
    assert_eq!(
        steps[1].earlier,
        record(1, "second", StepStatus::Succeeded, 2).earlier
    );
    assert_eq!(steps[1].earlier.len(), 1);
    assert!(steps[0].earlier.is_empty());
    Ok(())
}

/// Runs read together are each what reading it alone gives: its event and its own steps in
/// order; an unknown id is left out.
async fn runs_read_together(store: Store) -> Result<(), StoreError> {
    let (a, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    store
        .step_finished(&a.id, &record(1, "second", StepStatus::Succeeded, 1))
        .await?;
    store
        .step_finished(&a.id, &record(0, "first", StepStatus::Succeeded, 1))
        .await?;
    let ids = vec![b.id.clone(), "no-such-run".to_owned(), a.id.clone()];
    let mut together = store.runs(&ids).await?;
    together.sort_by(|x, y| x.run.id.cmp(&y.run.id));
    let mut alone = Vec::new();
    for id in [&a.id, &b.id] {
        alone.push(store.run(id).await?.expect("run"));
    }
    alone.sort_by(|x, y| x.run.id.cmp(&y.run.id));
    assert_eq!(together.len(), 2, "the unknown id is left out");
    for (read_together, read_alone) in together.iter().zip(&alone) {
        assert_eq!(read_together.run.id, read_alone.run.id);
        assert_eq!(read_together.run.status, read_alone.run.status);
        assert_eq!(read_together.event.body, read_alone.event.body);
        assert_eq!(read_together.event.id, read_alone.event.id);
        let names = |detail: &hookflow::store::RunDetail| -> Vec<String> {
            detail.steps.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(read_together), names(read_alone));
    }
    let with_steps = together.iter().find(|d| d.run.id == a.id).expect("a");
    assert_eq!(with_steps.steps.len(), 2);
    assert_eq!(with_steps.steps[0].name, "first");
    assert_eq!(with_steps.run.status, RunStatus::Running);
    assert!(store.runs(&[]).await?.is_empty());
    Ok(())
}

/// Runs claimed and not started go back to the queue when their owner gives them back: on a
/// shared store another process claims them at once; a store used by one process keeps them
/// for its next start.
async fn release_gives_back_unstarted_runs(store: Store) -> Result<(), StoreError> {
    let (a, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    assert!(store.claim(&b.id, "node-1", until).await?);
    assert_eq!(
        store.release("node-2", std::slice::from_ref(&a.id)).await?,
        0,
        "only the owner gives a run back"
    );
    let released = store.release("node-1", std::slice::from_ref(&a.id)).await?;
    if store.shared() {
        assert_eq!(released, 1);
        let run = store.run(&a.id).await?.expect("run").run;
        assert_eq!(run.status, RunStatus::Queued);
        assert!(run.started_at.is_none(), "it had not started");
        assert!(
            store.claim(&a.id, "node-2", until).await?,
            "another process takes it at once"
        );
    } else {
        assert_eq!(released, 0);
        assert_eq!(status(&store, &a.id).await, RunStatus::Running);
    }
    assert_eq!(status(&store, &b.id).await, RunStatus::Running);
    Ok(())
}

/// Ending a run keeps its answer and times; a finished run is not claimed again.
async fn run_end(store: Store) -> Result<(), StoreError> {
    let (a, _) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    let answer = SyncResponse {
        status: 201,
        headers: vec![("x-a".into(), "b".into())],
        body: json!({"ok": true}),
    };
    store
        .run_finished(&a.id, RunStatus::Succeeded, None, Some(answer.clone()))
        .await?;
    let done = store.run(&a.id).await?.expect("run").run;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.response, Some(answer));
    assert!(done.finished_at.is_some() && done.started_at.is_some());
    assert!(!store.unfinished_runs().await?.contains(&a.id));
    assert!(
        !store.claim(&a.id, "node-1", until).await?,
        "a finished run is not claimed"
    );
    Ok(())
}

/// Retries wait for their due time, then are queued again once.
async fn retries_wait_for_their_due_time(store: Store) -> Result<(), StoreError> {
    let (_, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&b.id, "node-1", until).await?);
    let due = Utc::now() + Duration::milliseconds(300);
    store.run_retrying(&b.id, Some("503".into()), due).await?;
    assert_eq!(status(&store, &b.id).await, RunStatus::Retrying);
    let next = store.next_retry_due().await?.expect("a due time");
    assert!((next - due).num_milliseconds().abs() < 5, "{next} vs {due}");
    assert!(store.claim_due_retries(Utc::now()).await?.is_empty());
    let claimed = store
        .claim_due_retries(Utc::now() + Duration::seconds(1))
        .await?;
    assert_eq!(claimed, vec![b.id.clone()]);
    assert_eq!(status(&store, &b.id).await, RunStatus::Queued);
    assert!(
        store
            .claim_due_retries(Utc::now() + Duration::seconds(1))
            .await?
            .is_empty()
    );
    Ok(())
}

/// How a replay is asked for: from the failed step or from the start, on the run's own
/// version or on another one.
fn replaying(from_start: bool, version: Option<&str>) -> ReplayOptions {
    ReplayOptions {
        from_start,
        version: version.map(str::to_owned),
    }
}

fn queued(attempt: u32, version: &str, replayed_from_version: Option<&str>) -> Replayed {
    Replayed::Queued {
        attempt,
        version: version.into(),
        replayed_from_version: replayed_from_version.map(str::to_owned),
    }
}

/// Replay resumes at the failed step, or starts over; only finished runs.
async fn replay(store: Store) -> Result<(), StoreError> {
    let (_, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert_eq!(
        store.replay(&b.id, &replaying(false, None)).await?,
        Replayed::NotFinished("queued".into())
    );
    assert!(store.claim(&b.id, "node-1", until).await?);
    store
        .step_finished(&b.id, &record(0, "first", StepStatus::Succeeded, 1))
        .await?;
    store
        .step_finished(&b.id, &record(1, "second", StepStatus::Failed, 1))
        .await?;
    store
        .run_finished(&b.id, RunStatus::Failed, Some("boom".into()), None)
        .await?;
    assert_eq!(
        store.replay(&b.id, &replaying(false, None)).await?,
        queued(2, "v1", None)
    );
    let replayed = store.run(&b.id).await?.expect("run");
    assert_eq!(replayed.run.status, RunStatus::Queued);
    assert_eq!(replayed.run.error, None);
    assert_eq!(
        replayed.steps.len(),
        1,
        "steps before the failed one are kept"
    );
    assert_eq!(replayed.run.version, "v1");
    assert_eq!(replayed.run.replayed_from_version, None);
    store
        .run_finished(&b.id, RunStatus::Succeeded, None, None)
        .await?;
    assert_eq!(
        store.replay(&b.id, &replaying(true, None)).await?,
        queued(3, "v1", None)
    );
    assert!(store.run(&b.id).await?.expect("run").steps.is_empty());
    assert_eq!(
        store.replay("missing", &replaying(true, None)).await?,
        Replayed::NotFound
    );
    Ok(())
}

/// A replay on another version: the run executes that version from then on, remembers the
/// one it had, and keeps the records before its failed step; the same version changes nothing.
async fn replay_on_another_version(store: Store) -> Result<(), StoreError> {
    let (_, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&b.id, "node-1", until).await?);
    store
        .step_finished(&b.id, &record(0, "first", StepStatus::Succeeded, 1))
        .await?;
    store
        .step_finished(&b.id, &record(1, "second", StepStatus::Failed, 1))
        .await?;
    store
        .run_finished(&b.id, RunStatus::Failed, Some("boom".into()), None)
        .await?;
    assert_eq!(
        store.replay(&b.id, &replaying(false, Some("v2"))).await?,
        queued(2, "v2", Some("v1"))
    );
    let replayed = store.run(&b.id).await?.expect("run");
    assert_eq!(replayed.run.version, "v2");
    assert_eq!(replayed.run.replayed_from_version.as_deref(), Some("v1"));
    let kept: Vec<&str> = replayed.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(kept, ["first"], "steps before the failed one are kept");
    // The listing shows the same.
    let listed = store
        .list_runs(&RunFilter {
            workflow: Some("wf-b".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(listed[0].version, "v2");
    assert_eq!(listed[0].replayed_from_version.as_deref(), Some("v1"));

    // The version it has already: a plain replay, and the earlier change stays on record.
    assert!(store.claim(&b.id, "node-1", until).await?);
    store
        .run_finished(&b.id, RunStatus::Failed, Some("again".into()), None)
        .await?;
    assert_eq!(
        store.replay(&b.id, &replaying(false, Some("v2"))).await?,
        queued(3, "v2", None)
    );
    let same = store.run(&b.id).await?.expect("run").run;
    assert_eq!(
        (same.version.as_str(), same.replayed_from_version.as_deref()),
        ("v2", Some("v1"))
    );
    // Another change, from the start: every record goes, and the latest change is the one kept.
    assert!(store.claim(&b.id, "node-1", until).await?);
    store
        .run_finished(&b.id, RunStatus::Failed, Some("again".into()), None)
        .await?;
    assert_eq!(
        store.replay(&b.id, &replaying(true, Some("v3"))).await?,
        queued(4, "v3", Some("v2"))
    );
    let detail = store.run(&b.id).await?.expect("run");
    assert!(detail.steps.is_empty());
    assert_eq!(detail.run.replayed_from_version.as_deref(), Some("v2"));
    // A run no replay changed has none.
    let (a, _) = two_queued(&store).await?;
    let fresh = store.run(&a.id).await?.expect("run").run;
    assert_eq!(fresh.replayed_from_version, None);
    Ok(())
}

/// Listing: newest first, filtered, limited.
async fn listing(store: Store) -> Result<(), StoreError> {
    let a = one_succeeded(&store).await?;
    let listed = store
        .list_runs(&RunFilter {
            workflow: Some("wf-a".into()),
            limit: 10,
            ..RunFilter::default()
        })
        .await?;
    assert!(listed.iter().all(|r| r.workflow == "wf-a"));
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    let succeeded = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Succeeded),
            limit: 10,
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(
        succeeded.iter().map(|r| &r.id).collect::<Vec<_>>(),
        vec![&a.id]
    );
    let one = store
        .list_runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await?;
    assert_eq!(one.len(), 1);
    Ok(())
}

/// Accept one event received at `at` with one run of each workflow named; the run ids.
async fn accept_at(
    store: &Store,
    at: chrono::DateTime<Utc>,
    workflows: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut ev = event(7);
    ev.received_at = at;
    let runs: Vec<NewRun> = workflows.iter().map(|w| new_run(w, None)).collect();
    store.accept(Arc::new(ev), &runs).await?;
    Ok(runs.into_iter().map(|r| r.id).collect())
}

/// Claim `id` and end it in `status`.
async fn end_as(store: &Store, id: &str, status: RunStatus) -> Result<(), StoreError> {
    assert!(
        store
            .claim(id, "node-1", Utc::now() + Duration::seconds(30))
            .await?
    );
    store.run_finished(id, status, None, None).await
}

fn minute_counts(counts: &[MinuteCount]) -> Vec<(i64, &'static str, u64)> {
    let mut seen: Vec<_> = counts
        .iter()
        .map(|c| (c.minute.timestamp(), c.status.as_str(), c.runs))
        .collect();
    seen.sort();
    seen
}

/// The charts' counts: runs per minute of creation by status, for all workflows or one,
/// over `[since, until)` cut to one day.
async fn runs_per_minute(store: Store) -> Result<(), StoreError> {
    let store = &store;
    let base = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
    let until = base + Duration::hours(1);
    let first = accept_at(
        store,
        base + Duration::seconds(10),
        &["wf-c", "wf-c", "wf-d"],
    )
    .await?;
    let second = accept_at(store, base + Duration::seconds(59), &["wf-c"]).await?;
    let third = accept_at(store, base + Duration::seconds(3 * 60 + 1), &["wf-d"]).await?;
    // Before `base`, at the window's (open) end, and beyond the one-day bound.
    accept_at(store, base - Duration::seconds(1), &["wf-c"]).await?;
    accept_at(store, until, &["wf-c"]).await?;
    accept_at(
        store,
        until - Duration::days(1) - Duration::minutes(1),
        &["wf-c"],
    )
    .await?;
    end_as(store, &first[0], RunStatus::Succeeded).await?;
    end_as(store, &first[1], RunStatus::Failed).await?;
    end_as(store, &second[0], RunStatus::Succeeded).await?;
    end_as(store, &third[0], RunStatus::Filtered).await?;
    let minute = |m: i64| (base + Duration::minutes(m)).timestamp();
    let all = ActivityWindow {
        workflow: None,
        since: base - Duration::days(10),
        until,
    };
    assert_eq!(all.bounded_since(), until - Duration::days(1));
    assert_eq!(
        minute_counts(&store.runs_per_minute(&all).await?),
        vec![
            (minute(-1), "queued", 1),
            (minute(0), "failed", 1),
            (minute(0), "queued", 1),
            (minute(0), "succeeded", 2),
            (minute(3), "filtered", 1),
        ]
    );
    // From `base` on: the run a second before is out.
    let from_base = ActivityWindow {
        workflow: Some("wf-c".into()),
        since: base,
        until,
    };
    assert_eq!(
        minute_counts(&store.runs_per_minute(&from_base).await?),
        vec![(minute(0), "failed", 1), (minute(0), "succeeded", 2)]
    );
    let one = ActivityWindow {
        workflow: Some("wf-d".into()),
        since: base,
        until,
    };
    assert_eq!(
        minute_counts(&store.runs_per_minute(&one).await?),
        vec![(minute(0), "queued", 1), (minute(3), "filtered", 1)]
    );
    let empty = ActivityWindow {
        workflow: Some("wf-none".into()),
        ..all
    };
    assert!(store.runs_per_minute(&empty).await?.is_empty());
    Ok(())
}

/// Nearest-rank percentile of durations sorted ascending.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.max(1) - 1]
}

/// The charts' p50/p95: over the window's finished runs (`finished_at - started_at`), the
/// durations at the nearest ranks, as the runs' own times give them.
async fn run_durations(store: Store) -> Result<(), StoreError> {
    let store = &store;
    let base = Utc::now() - Duration::minutes(5);
    let ids = accept_at(store, base, &["wf-p"; 7]).await?;
    let queued = accept_at(store, base, &["wf-p"]).await?;
    let other = accept_at(store, base, &["wf-q"]).await?;
    let until = Utc::now() + Duration::seconds(30);
    for id in ids.iter().chain(&other) {
        assert!(store.claim(id, "node-1", until).await?);
    }
    // Ended one after another: each run lasts longer than the one before.
    for (n, id) in ids.iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(15 + 5 * n as u64)).await;
        let status = if n % 2 == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        store.run_finished(id, status, None, None).await?;
    }
    store
        .run_finished(&other[0], RunStatus::Succeeded, None, None)
        .await?;
    let window = ActivityWindow {
        workflow: Some("wf-p".into()),
        since: base - Duration::minutes(1),
        until: Utc::now() + Duration::minutes(1),
    };
    let durations = store.run_durations(&window).await?;
    let listed = store.list_runs(&filter_for("wf-p", 100)).await?;
    let mut expected: Vec<f64> = listed
        .iter()
        .filter_map(|r| Some((r.finished_at? - r.started_at?).num_microseconds()? as f64 / 1000.0))
        .collect();
    expected.sort_by(f64::total_cmp);
    assert_eq!(
        expected.len(),
        7,
        "the queued run {queued:?} has no duration"
    );
    assert_eq!(durations.finished, 7);
    for (got, p) in [(durations.p50_ms, 0.5), (durations.p95_ms, 0.95)] {
        let got = got.expect("a percentile");
        let want = nearest_rank(&expected, p);
        assert!(
            (got - want).abs() < 0.5,
            "p{p}: {got} ms, the runs say {want} ms"
        );
    }
    // p50 of seven is the fourth, p95 the seventh.
    assert!((durations.p95_ms.unwrap_or_default() - expected[6]).abs() < 0.01);
    assert!(durations.p50_ms < durations.p95_ms);
    let all = store
        .run_durations(&ActivityWindow {
            workflow: None,
            ..window.clone()
        })
        .await?;
    assert_eq!(all.finished, 8);
    let none = store
        .run_durations(&ActivityWindow {
            since: base - Duration::hours(2),
            until: base - Duration::hours(1),
            ..window
        })
        .await?;
    assert_eq!(none, RunDurations::default());
    Ok(())
}

/// Definitions are kept per version, first write wins.
async fn definitions(store: Store) -> Result<(), StoreError> {
    let definition = Definition {
        name: "wf-a".into(),
        path: "workflows/a.yaml".into(),
        source: "steps: []".into(),
    };
    store.save_definition("v1", definition.clone()).await?;
    store
        .save_definition(
            "v1",
            Definition {
                source: "changed".into(),
                ..definition.clone()
            },
        )
        .await?;
    let kept = store.definition("v1").await?.expect("definition");
    assert_eq!(kept.source, "steps: []");
    assert!(store.definition("v9").await?.is_none());
    Ok(())
}

/// Schedules: a tick is recorded once, and its event and runs are committed with it or not at
/// all, across concurrent accepts and claims.
async fn schedule_ticks(store: Store) -> Result<(), StoreError> {
    let t1 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    assert_eq!(store.last_tick("wf-s").await?, None);
    let mut ticked = event(20);
    ticked.trigger = Trigger::Schedule { scheduled_at: t1 };
    let first_tick = new_run("wf-s", None);
    let accepted = store
        .accept_tick(
            "wf-s",
            t1,
            Arc::new(ticked.clone()),
            std::slice::from_ref(&first_tick),
        )
        .await?
        .expect("a new tick is accepted");
    assert_eq!(accepted.created, vec![first_tick.id.clone()]);
    let detail = store.run(&first_tick.id).await?.expect("the tick's run");
    assert_eq!(detail.event.trigger, Trigger::Schedule { scheduled_at: t1 });
    assert_eq!(detail.run.status, RunStatus::Queued);
    let repeated = new_run("wf-s", None);
    assert!(
        store
            .accept_tick(
                "wf-s",
                t1,
                Arc::new(event(21)),
                std::slice::from_ref(&repeated)
            )
            .await?
            .is_none(),
        "a recorded tick accepts nothing"
    );
    assert!(store.run(&repeated.id).await?.is_none());
    assert_eq!(store.last_tick("wf-s").await?, Some(t1));
    // A tick recorded without a run counts the same.
    assert!(!store.claim_tick("wf-s", t1).await?);
    let t2 = t1 + Duration::seconds(60);
    assert!(store.claim_tick("wf-s", t2).await?);
    assert!(!store.claim_tick("wf-s", t2).await?);
    assert!(
        store
            .accept_tick("wf-s", t2, Arc::new(event(22)), &[new_run("wf-s", None)])
            .await?
            .is_none()
    );
    assert_eq!(store.last_tick("wf-s").await?, Some(t2));
    // Workflows have their own ticks.
    assert!(store.claim_tick("wf-t", t1).await?);
    assert_eq!(store.last_tick("wf-t").await?, Some(t1));
    // Concurrent accepts of one tick: exactly one wins, and only its run exists.
    let t3 = t2 + Duration::seconds(60);
    let mut racers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        racers.spawn(async move {
            let run = new_run("wf-s", None);
            let won = store
                .accept_tick(
                    "wf-s",
                    t3,
                    Arc::new(event(30 + n)),
                    std::slice::from_ref(&run),
                )
                .await?
                .is_some();
            Ok::<_, StoreError>((won, run.id))
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = racers.join_next().await {
        let (won, id) = result.expect("racer")?;
        if won {
            winners.push(id);
        } else {
            assert!(
                store.run(&id).await?.is_none(),
                "a loser's run is not stored"
            );
        }
    }
    assert_eq!(winners.len(), 1, "one tick, one accept");
    assert_eq!(store.last_tick("wf-s").await?, Some(t3));
    // Concurrent claims of one tick: true exactly once.
    let t4 = t3 + Duration::seconds(60);
    let mut claimers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        claimers.spawn(async move { store.claim_tick("wf-s", t4).await });
    }
    let mut claimed = 0;
    while let Some(result) = claimers.join_next().await {
        if result.expect("claimer")? {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1, "one tick, one claim");
    assert_eq!(store.last_tick("wf-s").await?, Some(t4));
    Ok(())
}

/// A manual start keeps who asked; a webhook's event reads as one.
async fn manual_start_keeps_who_asked(store: Store) -> Result<(), StoreError> {
    let (a, _) = two_queued(&store).await?;
    let mut by_hand = event(40);
    by_hand.trigger = Trigger::Manual {
        started_by: "cli:ada".into(),
    };
    let manual = new_run("wf-s", None);
    store
        .accept(Arc::new(by_hand), std::slice::from_ref(&manual))
        .await?;
    let detail = store.run(&manual.id).await?.expect("manual run");
    assert_eq!(
        detail.event.trigger,
        Trigger::Manual {
            started_by: "cli:ada".into()
        }
    );
    assert_eq!(
        store.run(&a.id).await?.expect("run").event.trigger,
        Trigger::Webhook
    );
    Ok(())
}

/// Queued runs are claimed oldest first, only those queued before the cut, each by one caller
/// however many ask at once. Runs with a concurrency key are taken as a claim takes them: the
/// oldest while its key has a free slot, never one behind it.
async fn claim_queued_oldest_first(store: Store) -> Result<(), StoreError> {
    let (_, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    let (keyed_first, keyed_second) = (
        keyed_run("wf-q", "repo", 1, ConcurrencyMode::Queue),
        keyed_run("wf-q", "repo", 1, ConcurrencyMode::Queue),
    );
    accept_each(&store, &[&keyed_first, &keyed_second]).await?;
    let cut = Utc::now();
    let (first_queued, second_queued) = (new_run("wf-q", None), new_run("wf-q", None));
    let early = event(7);
    store
        .accept(Arc::new(early.clone()), std::slice::from_ref(&first_queued))
        .await?;
    let older = store.claim_queued("node-1", until, cut, 1000).await?;
    assert!(older.contains(&b.id), "{older:?}");
    assert!(older.contains(&keyed_first.id), "{older:?}");
    assert!(!older.contains(&keyed_second.id), "{older:?}");
    assert!(!older.contains(&first_queued.id), "queued after the cut");
    assert_eq!(status(&store, &b.id).await, RunStatus::Running);
    let mut late = event(8);
    late.received_at = early.received_at + Duration::milliseconds(5);
    store
        .accept(Arc::new(late), std::slice::from_ref(&second_queued))
        .await?;
    let after = Utc::now() + Duration::seconds(1);
    let oldest = store.claim_queued("node-1", until, after, 1).await?;
    assert_eq!(oldest, vec![first_queued.id.clone()]);
    let (one, two) = tokio::join!(
        store.claim_queued("node-1", until, after, 1000),
        store.claim_queued("node-2", until, after, 1000)
    );
    let (one, two) = (one?, two?);
    assert!(one.iter().all(|id| !two.contains(id)), "{one:?} {two:?}");
    assert!(one.contains(&second_queued.id) || two.contains(&second_queued.id));
    assert!(
        store
            .claim_queued("node-1", until, after, 1000)
            .await?
            .is_empty()
    );
    Ok(())
}

/// Pruning removes finished runs older than the cut, never unfinished ones, and keeps each
/// workflow's latest tick.
async fn prune_keeps_unfinished_runs_and_latest_ticks(store: Store) -> Result<(), StoreError> {
    let (a, b) = two_queued(&store).await?;
    let until = Utc::now() + Duration::seconds(30);
    assert!(store.claim(&a.id, "node-1", until).await?);
    store
        .run_finished(&a.id, RunStatus::Succeeded, None, None)
        .await?;
    let t1 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let t4 = t1 + Duration::seconds(180);
    for (workflow, tick) in [("wf-s", t1), ("wf-s", t4), ("wf-t", t1)] {
        assert!(store.claim_tick(workflow, tick).await?);
    }
    let pruned = store.prune(Utc::now() + Duration::seconds(1)).await?;
    assert!(pruned >= 1, "{pruned}");
    assert!(store.run(&a.id).await?.is_none());
    assert!(
        store.run(&b.id).await?.is_some(),
        "an unfinished run is kept"
    );
    assert_eq!(
        store.last_tick("wf-s").await?,
        Some(t4),
        "a workflow's latest tick survives pruning"
    );
    assert!(
        !store.claim_tick("wf-t", t1).await?,
        "the only tick of a workflow is its latest: kept"
    );
    assert!(
        store.claim_tick("wf-s", t1).await?,
        "an old tick that is not the latest is pruned"
    );
    store.ping().await?;
    Ok(())
}

/// Many writers at once, as under load: plain accepts, deduped accepts (some repeated) and step
/// records interleave in the store's batches; every one must come back exactly as written.
async fn concurrent_writes(store: Store) -> Result<(), StoreError> {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300u32 {
        let store = store.clone();
        tasks.spawn(async move {
            let ev = event(1000 + n);
            let runs = match n % 3 {
                0 => vec![new_run("wf-load", None), new_run("wf-load-2", None)],
                // Every key twice: one of each pair is a duplicate.
                1 => vec![new_run(
                    "wf-dedupe",
                    Some((format!("k-{}", n / 6).as_str(), 600)),
                )],
                _ => vec![new_run("wf-load", None)],
            };
            let accepted = store.accept(Arc::new(ev.clone()), &runs).await?;
            for (i, id) in accepted.created.iter().enumerate() {
                store
                    .step_finished(id, &record(i, "only", StepStatus::Succeeded, 1))
                    .await?;
            }
            Ok::<_, StoreError>((n, ev, accepted))
        });
    }
    let mut created = 0;
    let mut duplicates = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, ev, accepted) = joined.expect("join")?;
        duplicates += accepted.duplicate_of.len();
        for (i, id) in accepted.created.iter().enumerate() {
            created += 1;
            let detail = store.run(id).await?.expect("accepted run");
            assert_eq!(detail.run.status, RunStatus::Queued, "run of event {n}");
            assert_eq!(detail.event.id, ev.id);
            assert_eq!(detail.event.body, ev.body);
            assert_eq!(detail.event.raw, ev.raw);
            assert_eq!(detail.event.headers, ev.headers);
            assert_eq!(detail.steps.len(), 1, "run of event {n}");
            assert_eq!(detail.steps[0].index, i);
            assert_eq!(detail.steps[0].output, json!({"status": 200}));
        }
    }
    // 100 events with two runs, 100 with one, and 50 dedupe keys sent twice each.
    assert_eq!(created, 100 * 2 + 100 + 50);
    assert_eq!(duplicates, 50);
    Ok(())
}

/// How many runs of the store are `running`.
async fn running(store: &Store) -> Result<usize, StoreError> {
    let filter = RunFilter {
        status: Some(RunStatus::Running),
        limit: 1000,
        ..RunFilter::default()
    };
    Ok(store.list_runs(&filter).await?.len())
}

/// `max_running: 2` on a store: `stores` all use one database (for SQLite, one store cloned),
/// each as a process of its own would.
async fn running_cap_conformance(stores: &[Store]) -> Result<(), StoreError> {
    let store = &stores[0];
    let other = &stores[stores.len() - 1];
    let until = Utc::now() + Duration::seconds(30);
    let later = Utc::now() + Duration::seconds(5);
    let runs: Vec<NewRun> = (0..6).map(|_| new_run("wf-cap", None)).collect();
    accept_each(store, &runs.iter().collect::<Vec<_>>()).await?;
    // Two may run; a third waits in the queue, whichever process asks.
    assert!(store.claim(&runs[0].id, "node-1", until).await?);
    assert!(other.claim(&runs[1].id, "node-2", until).await?);
    assert!(!store.claim(&runs[2].id, "node-1", until).await?);
    assert!(
        other
            .claim_queued("node-2", until, later, 10)
            .await?
            .is_empty()
    );
    assert_eq!(status(store, &runs[2].id).await, RunStatus::Queued);
    // An end frees one place: the oldest queued run takes it, and only it.
    store
        .run_finished(&runs[0].id, RunStatus::Succeeded, None, None)
        .await?;
    assert_eq!(
        other.claim_queued("node-2", until, later, 10).await?,
        vec![runs[2].id.clone()]
    );
    assert!(!store.claim(&runs[3].id, "node-1", until).await?);
    // A run waiting for a retry runs nothing: its place is free meanwhile, and it comes back
    // through the queue like any other.
    store
        .run_retrying(&runs[1].id, None, Utc::now() - Duration::seconds(1))
        .await?;
    assert!(store.claim(&runs[3].id, "node-1", until).await?);
    assert!(
        store
            .claim_due_retries(Utc::now())
            .await?
            .contains(&runs[1].id)
    );
    assert!(!store.claim(&runs[1].id, "node-1", until).await?);
    // A run whose owner stopped renewing keeps its place until it is taken over, and the
    // takeover is never refused, even at the cap: a process that died cannot block the others.
    store
        .renew_leases(
            "node-2",
            std::slice::from_ref(&runs[2].id),
            Utc::now() - Duration::seconds(1),
        )
        .await?;
    assert!(!store.claim(&runs[4].id, "node-1", until).await?);
    assert!(store.claim(&runs[2].id, "node-1", until).await?);
    assert_eq!(running(store).await?, 2);
    // A run with a concurrency key needs a place under the cap as well as a slot of its key.
    let keyed: Vec<NewRun> = (0..3)
        .map(|_| keyed_run("wf-cap-k", "k", 5, ConcurrencyMode::Queue))
        .collect();
    accept_each(store, &keyed.iter().collect::<Vec<_>>()).await?;
    assert!(!store.claim(&keyed[0].id, "node-1", until).await?);
    for run in [&runs[2], &runs[3]] {
        store
            .run_finished(&run.id, RunStatus::Succeeded, None, None)
            .await?;
    }
    assert_eq!(running(store).await?, 0);
    // Claimers racing for the places, with one run each and with the queue: two win.
    let queued: Vec<String> = [
        &runs[1], &runs[4], &runs[5], &keyed[0], &keyed[1], &keyed[2],
    ]
    .iter()
    .map(|r| r.id.clone())
    .collect();
    let mut claims = Vec::new();
    let mut takes = Vec::new();
    for (n, id) in queued.iter().enumerate() {
        let store = stores[n % stores.len()].clone();
        let id = id.clone();
        claims.push(tokio::spawn(async move {
            store
                .claim(&id, &format!("node-{n}"), until)
                .await
                .map(|won| won.then_some(id))
        }));
        let store = stores[(n + 1) % stores.len()].clone();
        takes.push(tokio::spawn(async move {
            store
                .claim_queued(&format!("taker-{n}"), until, later, 3)
                .await
        }));
    }
    let mut won = Vec::new();
    for claim in claims {
        won.extend(
            claim
                .await
                .map_err(|e| StoreError::Read(e.to_string().into()))??,
        );
    }
    for take in takes {
        won.extend(
            take.await
                .map_err(|e| StoreError::Read(e.to_string().into()))??,
        );
    }
    won.sort();
    won.dedup();
    assert_eq!(won.len(), 2, "two places, whoever asks: {won:?}");
    assert_eq!(running(store).await?, 2);
    // Run everything to the end, two at a time.
    let mut finished = 0;
    let mut left = won;
    while !left.is_empty() {
        assert!(running(store).await? <= 2);
        for id in left.drain(..) {
            store
                .run_finished(&id, RunStatus::Succeeded, None, None)
                .await?;
            finished += 1;
        }
        left = other.claim_queued("node-2", until, later, 10).await?;
        assert!(left.len() <= 2, "{left:?}");
    }
    assert_eq!(finished, queued.len());
    // Oldest first, keyed or not: newer runs without a key do not pass a keyed one.
    let first = keyed_run("wf-cap-k", "fair", 1, ConcurrencyMode::Queue);
    let next: Vec<NewRun> = (0..3).map(|_| new_run("wf-cap", None)).collect();
    accept_each(store, &[&first, &next[0], &next[1], &next[2]]).await?;
    assert!(store.claim(&next[2].id, "node-1", until).await?);
    assert_eq!(
        other.claim_queued("node-2", until, later, 10).await?,
        vec![first.id.clone()]
    );
    for run in [&first, &next[2]] {
        store
            .run_finished(&run.id, RunStatus::Succeeded, None, None)
            .await?;
    }
    assert_eq!(
        other.claim_queued("node-2", until, later, 10).await?,
        vec![next[0].id.clone(), next[1].id.clone()]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_holds_the_running_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db").display().to_string();
    let options = StoreOptions {
        max_running: Some(2),
        ..StoreOptions::default()
    };
    let store = Store::open_with(&path, OpenMode::Serve, &options)
        .await
        .expect("open");
    running_cap_conformance(&[store.clone(), store.clone(), store])
        .await
        .expect("running cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_holds_the_running_cap_across_processes() {
    let Some(schema) = postgres_schema("postgres_holds_the_running_cap_across_processes").await
    else {
        return;
    };
    // Few connections each: the test database is shared with the other tests.
    let options = StoreOptions {
        max_running: Some(2),
        pool_size: 4,
        ..StoreOptions::default()
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(
            Store::open_with(&schema.url, OpenMode::Serve, &options)
                .await
                .expect("open"),
        );
    }
    running_cap_conformance(&stores).await.expect("running cap");
}

#[tokio::test]
async fn an_in_memory_store_keeps_nothing() {
    let store = Store::open(":memory:", OpenMode::Serve)
        .await
        .expect("open");
    accept_reads_back(store).await.expect("accept");
    // Each in-memory store is its own database: a second one starts empty.
    let other = Store::open(":memory:", OpenMode::Serve)
        .await
        .expect("open");
    let runs = other
        .list_runs(&hookflow::store::RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(runs.is_empty(), "a new in-memory store holds {runs:?}");
}

/// A PostgreSQL schema of its own for `test`, or `None` when no database answers (the skip is
/// said where a person reads it; under `CI=true` it fails the test instead).
async fn postgres_schema(test: &str) -> Option<TestSchema> {
    TestSchema::create(test).await
}

/// The machine's PostgreSQL is found without any setting: `cargo test` alone runs the
/// PostgreSQL cases wherever the documented local database answers.
#[tokio::test]
async fn the_local_postgres_is_used_without_a_setting() {
    let local_answers = tokio::net::TcpStream::connect("127.0.0.1:5432")
        .await
        .is_ok();
    if std::env::var("HOOKFLOW_TEST_POSTGRES_URL").is_err() && local_answers {
        assert_eq!(
            crate::support::postgres::database_url().await.as_deref(),
            Some(crate::support::postgres::DEFAULT_URL)
        );
    }
    if !local_answers && std::env::var("HOOKFLOW_TEST_POSTGRES_URL").is_err() {
        crate::support::skip(
            "the_local_postgres_is_used_without_a_setting",
            "nothing answers on 127.0.0.1:5432",
        );
    }
}

fn cancel_by(by: &str, reason: Option<&str>) -> CancelRequest {
    CancelRequest {
        by: by.into(),
        reason: reason.map(Into::into),
    }
}

/// A waiting run (queued, retrying, or running under an ended lease) is cancelled at once and
/// stays cancelled whatever its owner writes; a running one is marked for its owner, whose
/// retry then ends it; a finished one is left alone.
async fn cancel_runs(store: Store) -> Result<(), StoreError> {
    let store = &store;
    let until = Utc::now() + Duration::seconds(30);
    let (queued, running) = two_queued(store).await?;
    let why = cancel_by("api", Some("wrong payload"));
    assert_eq!(store.cancel_run(&queued.id, &why).await?, Cancelled::Ended);
    let run = store.run(&queued.id).await?.expect("run").run;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        run.error.as_deref(),
        Some("cancelled by api: wrong payload")
    );
    assert_eq!(run.cancelled_by.as_deref(), Some("api"));
    assert!(run.finished_at.is_some());
    assert!(
        !store.claim(&queued.id, "node-1", until).await?,
        "a cancelled run is not claimed"
    );
    // An owner that loaded it before the cancel cannot finish it otherwise.
    store
        .run_finished(&queued.id, RunStatus::Failed, Some("late".into()), None)
        .await?;
    assert_eq!(status(store, &queued.id).await, RunStatus::Cancelled);
    assert_eq!(
        store.cancel_run(&queued.id, &why).await?,
        Cancelled::Finished(RunStatus::Cancelled)
    );
    assert_eq!(
        store.cancel_run("no-such-run", &why).await?,
        Cancelled::NotFound
    );

    assert!(store.claim(&running.id, "node-1", until).await?);
    let cli = cancel_by("cli:ops", None);
    assert_eq!(
        store.cancel_run(&running.id, &cli).await?,
        Cancelled::Requested
    );
    let run = store.run(&running.id).await?.expect("run").run;
    assert_eq!(
        (run.status, run.cancel_requested),
        (RunStatus::Running, true)
    );
    assert_eq!(run.cancelled_by.as_deref(), Some("cli:ops"));
    let asked = store
        .cancel_requests(&[running.id.clone(), queued.id.clone()])
        .await?;
    assert_eq!(
        asked,
        vec![(running.id.clone(), "cancelled by cli:ops".to_owned())]
    );
    assert!(store.cancel_requests(&[]).await?.is_empty());
    // Its step failed as the request came: the retry it records ends it instead.
    store
        .run_retrying(&running.id, Some("503".into()), Utc::now())
        .await?;
    let run = store.run(&running.id).await?.expect("run").run;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.error.as_deref(), Some("cancelled by cli:ops"));
    assert!(
        store
            .claim_due_retries(Utc::now() + Duration::hours(1))
            .await?
            .is_empty()
    );

    // A retrying (or delayed) run, and a running one whose owner is gone, end at once.
    let (retrying, abandoned) = two_queued(store).await?;
    assert!(store.claim(&retrying.id, "node-1", until).await?);
    store
        .run_retrying(&retrying.id, None, Utc::now() + Duration::hours(1))
        .await?;
    assert_eq!(
        store.cancel_run(&retrying.id, &why).await?,
        Cancelled::Ended
    );
    assert!(
        store
            .claim_due_retries(Utc::now() + Duration::hours(2))
            .await?
            .is_empty()
    );
    assert!(
        store
            .claim(&abandoned.id, "node-1", Utc::now() - Duration::seconds(1))
            .await?
    );
    assert_eq!(
        store.cancel_run(&abandoned.id, &why).await?,
        Cancelled::Ended
    );
    assert!(
        !store
            .expired_leases(Utc::now())
            .await?
            .contains(&abandoned.id)
    );

    // A replay starts it afresh: nobody cancelled that attempt.
    assert!(matches!(
        store.replay(&retrying.id, &replaying(true, None)).await?,
        Replayed::Queued { attempt: 2, .. }
    ));
    let run = store.run(&retrying.id).await?.expect("run").run;
    assert_eq!(
        (run.status, run.cancelled_by, run.cancel_requested),
        (RunStatus::Queued, None, false)
    );
    Ok(())
}

/// A paused workflow's runs are accepted and stay queued (not claimed, not even in the accept
/// that asks to), across processes; resumed, they are claimed again.
async fn paused_workflows(store: Store) -> Result<(), StoreError> {
    let store = &store;
    let until = Utc::now() + Duration::seconds(30);
    let ops = PauseRequest {
        by: "ops".into(),
        reason: Some("receiver down".into()),
    };
    assert!(store.pause_workflow("wf-paused", &ops).await?);
    assert!(
        !store.pause_workflow("wf-paused", &ops).await?,
        "paused once"
    );
    let paused = store.paused_workflows().await?;
    assert_eq!(paused.len(), 1);
    assert_eq!(
        (
            paused[0].workflow.as_str(),
            paused[0].by.as_str(),
            paused[0].reason.as_deref()
        ),
        ("wf-paused", "ops", Some("receiver down"))
    );
    let waiting = new_run("wf-paused", None);
    let other = new_run("wf-other", None);
    accept_each(store, &[&waiting, &other]).await?;
    assert!(!store.claim(&waiting.id, "node-1", until).await?);
    let taken = store
        .claim_queued("node-1", until, Utc::now() + Duration::seconds(1), 10)
        .await?;
    assert_eq!(taken, vec![other.id.clone()]);
    let lease = Lease {
        owner: "node-1".into(),
        until,
    };
    let fresh = new_run("wf-paused", None);
    let accepted = store
        .accept_claimed(Arc::new(event(7)), std::slice::from_ref(&fresh), lease)
        .await?;
    assert!(!accepted.claimed, "a paused workflow's run is only queued");
    assert_eq!(status(store, &fresh.id).await, RunStatus::Queued);

    assert!(store.resume_workflow("wf-paused").await?);
    assert!(!store.resume_workflow("wf-paused").await?, "resumed once");
    assert!(store.paused_workflows().await?.is_empty());
    assert!(store.claim(&waiting.id, "node-1", until).await?);
    let taken = store
        .claim_queued("node-1", until, Utc::now() + Duration::seconds(1), 10)
        .await?;
    assert_eq!(taken, vec![fresh.id.clone()]);
    Ok(())
}

/// Every case of the conformance suite, as one test per case and backend, so a failure names
/// both: `store::sqlite::dedupe_window`, `store::postgres::replay`. Each test gets a store of
/// its own (a new SQLite file, a new in-memory database, a new PostgreSQL schema).
macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let path = dir.path().join("store.db").display().to_string();
                    let store = super::Store::open(&path, super::OpenMode::Serve)
                        .await
                        .expect("open");
                    super::$case(store).await.expect(stringify!($case));
                }
            )*
        }

        mod in_memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = super::Store::open(":memory:", super::OpenMode::Serve)
                        .await
                        .expect("open");
                    super::$case(store).await.expect(stringify!($case));
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let test = concat!("postgres_conformance_", stringify!($case));
                    let Some(schema) = super::postgres_schema(test).await else {
                        return;
                    };
                    let store = super::Store::open(&schema.url, super::OpenMode::Serve)
                        .await
                        .expect("open");
                    assert!(store.shared());
                    super::$case(store).await.expect(stringify!($case));
                }
            )*
        }
    };
}

conformance_cases! {
    accept_reads_back,
    trace_context_reads_back,
    dedupe_window,
    a_redelivery_of_a_failed_run_starts_again,
    claims_and_leases,
    step_records,
    runs_read_together,
    release_gives_back_unstarted_runs,
    run_end,
    retries_wait_for_their_due_time,
    replay,
    replay_on_another_version,
    listing,
    listing_pages_and_time_ranges,
    runs_per_minute,
    run_durations,
    definitions,
    concurrency,
    schedule_ticks,
    manual_start_keeps_who_asked,
    claim_queued_oldest_first,
    prune_keeps_unfinished_runs_and_latest_ticks,
    concurrent_writes,
    rate_buckets,
    cancel_runs,
    paused_workflows,
}

/// Outgoing rate buckets: each take reserves the next slot (a burst at once, then spaced at the
/// rate), concurrent takers never share a slot, a hold pushes the next slot out, keys are apart.
async fn rate_buckets(store: Store) -> Result<(), StoreError> {
    use hookflow::run::RateLimit;
    let limit = RateLimit {
        per_second: 2.0,
        burst: 2,
    };
    let now = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("time");
    let key = format!("step:test/{}", uuid::Uuid::now_v7());
    let mut slots = Vec::new();
    for _ in 0..4 {
        slots.push(store.take_rate_slot(&key, limit, now).await?);
    }
    let offsets: Vec<i64> = slots
        .iter()
        .map(|s| (*s - now).num_milliseconds())
        .collect();
    assert_eq!(offsets, vec![0, 0, 500, 1000]);
    // Taken at once by many: every slot distinct, spaced by the interval.
    let other = format!("host:{}", uuid::Uuid::now_v7());
    let takes = (0..10).map(|_| {
        let store = store.clone();
        let other = other.clone();
        tokio::spawn(async move {
            store
                .take_rate_slot(
                    &other,
                    RateLimit {
                        per_second: 10.0,
                        burst: 1,
                    },
                    now,
                )
                .await
        })
    });
    let mut taken = Vec::new();
    for take in takes.collect::<Vec<_>>() {
        taken.push((take.await.expect("task")? - now).num_milliseconds());
    }
    taken.sort();
    assert_eq!(taken, (0..10).map(|i| i * 100).collect::<Vec<i64>>());
    // A hold: no slot before its end, for a fresh bucket and for a busy one.
    let held = format!("host:{}", uuid::Uuid::now_v7());
    store
        .hold_rate_bucket(&held, limit, now + Duration::seconds(5))
        .await?;
    let slot = store.take_rate_slot(&held, limit, now).await?;
    assert_eq!((slot - now).num_seconds(), 5);
    store
        .hold_rate_bucket(&key, limit, now + Duration::seconds(3))
        .await?;
    let slot = store.take_rate_slot(&key, limit, now).await?;
    assert_eq!((slot - now).num_seconds(), 3);
    // Later, an idle bucket has its burst again.
    let later = now + Duration::hours(1);
    assert_eq!(store.take_rate_slot(&key, limit, later).await?, later);
    assert_eq!(store.take_rate_slot(&key, limit, later).await?, later);
    Ok(())
}

#[tokio::test]
async fn a_sqlite_store_serves_one_server_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db").display().to_string();
    let first = Store::open(&path, OpenMode::Serve).await.expect("open");
    let second = Store::open(&path, OpenMode::Serve).await;
    let Err(err) = second else {
        panic!("a second server opened the same SQLite store");
    };
    assert!(err.to_string().contains("another hookflow server"), "{err}");
    // Reading alongside a server is fine.
    let reader = Store::open(&path, OpenMode::Read).await.expect("read");
    reader.ping().await.expect("ping");
    drop(first);
    Store::open(&path, OpenMode::Serve)
        .await
        .expect("free again once the first server is gone");
}

/// A store file written before events recorded their trigger opens, and its events read as
/// webhooks.
#[tokio::test]
async fn a_store_from_before_triggers_opens_and_reads() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db").display().to_string();
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("create");
        sqlx::raw_sql(
            "CREATE TABLE events (id TEXT PRIMARY KEY, received_at TEXT NOT NULL,
                method TEXT NOT NULL, path TEXT NOT NULL, params TEXT NOT NULL,
                query TEXT NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL, raw BLOB NOT NULL);
             CREATE TABLE runs (id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events(id),
                workflow TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
                attempt INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, started_at TEXT,
                finished_at TEXT, error TEXT, response TEXT, due_at TEXT, lease_owner TEXT,
                lease_until TEXT);
             INSERT INTO events VALUES ('ev-old', '2026-01-01T00:00:00.000000Z', 'POST', '/hooks/x',
                '{}', '{}', '{}', '{\"n\": 1}', x'7b7d');
             INSERT INTO runs (id, event_id, workflow, version, status, created_at)
                VALUES ('run-old', 'ev-old', 'wf', 'v1', 'queued', '2026-01-01T00:00:00.000000Z');",
        )
        .execute(&mut conn)
        .await
        .expect("old schema");
    }
    let store = Store::open(&path, OpenMode::Serve)
        .await
        .expect("open an old store");
    let detail = store.run("run-old").await.expect("read").expect("old run");
    assert_eq!(detail.event.trigger, Trigger::Webhook);
    assert_eq!(detail.event.body, json!({"n": 1}));
    // New writes work on the migrated file.
    assert!(store.claim_tick("wf", Utc::now()).await.expect("tick"));
    let mut manual = event(1);
    manual.trigger = Trigger::Manual {
        started_by: "api".into(),
    };
    let run = new_run("wf", None);
    store
        .accept(Arc::new(manual), std::slice::from_ref(&run))
        .await
        .expect("accept");
    let detail = store.run(&run.id).await.expect("read").expect("run");
    assert_eq!(detail.event.trigger.kind(), "manual");
    // The old run, finished, is replayed on another version: the column was added at open.
    store
        .run_finished("run-old", RunStatus::Failed, None, None)
        .await
        .expect("finish");
    store
        .replay("run-old", &replaying(false, Some("v2")))
        .await
        .expect("replay");
    let replayed = store.run("run-old").await.expect("read").expect("old run");
    assert_eq!(replayed.run.replayed_from_version.as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_processes_starting_together_migrate_once_and_share_dedupe_keys() {
    let Some(schema) = postgres_schema("postgres_processes_share_dedupe_keys").await else {
        return;
    };
    // Four "processes" open the empty schema at the same moment: the migration lock makes one
    // of them create the tables and the others wait for it.
    let opened = futures_join_all(
        (0..4)
            .map(|_| {
                let url = schema.url.clone();
                tokio::spawn(async move { Store::open(&url, OpenMode::Serve).await })
            })
            .collect(),
    )
    .await;
    let stores: Vec<Store> = opened
        .into_iter()
        .map(|r| r.expect("join").expect("open"))
        .collect();
    // Every migration applied, each once: one row per version (numbers may have gaps, as
    // branches take theirs), and a later start applies nothing more.
    let rows = schema
        .count("SELECT count(*) FROM hookflow_migrations")
        .await;
    assert!(rows >= 3, "{rows} migrations");
    assert_eq!(
        schema
            .count("SELECT count(DISTINCT version) FROM hookflow_migrations")
            .await,
        rows
    );
    assert!(
        schema
            .count("SELECT max(version)::bigint FROM hookflow_migrations")
            .await
            >= rows
    );
    let later = Store::open(&schema.url, OpenMode::Serve)
        .await
        .expect("open again");
    assert_eq!(
        schema
            .count("SELECT count(*) FROM hookflow_migrations")
            .await,
        rows
    );
    drop(later);
    // The same delivery arrives at every process at once, eight times: one run is created.
    let mut accepts = Vec::new();
    for round in 0..8 {
        for store in &stores {
            let store = store.clone();
            accepts.push(tokio::spawn(async move {
                store
                    .accept(
                        Arc::new(event(round)),
                        &[new_run("wf-d", Some(("delivery-77", 3600)))],
                    )
                    .await
            }));
        }
    }
    let mut created = Vec::new();
    let mut duplicates = 0;
    for accept in accepts {
        let accepted = accept.await.expect("join").expect("accept");
        created.extend(accepted.created);
        duplicates += accepted.duplicate_of.len();
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(duplicates, 31);
    assert_eq!(
        schema.count("SELECT count(*) FROM runs").await,
        1,
        "duplicates store nothing"
    );
    // A run replayed through one process is queued for all of them.
    let run_id = &created[0];
    let until = Utc::now() + Duration::seconds(30);
    assert!(
        stores[1]
            .claim(run_id, "node-1", until)
            .await
            .expect("claim")
    );
    stores[1]
        .run_finished(run_id, RunStatus::Succeeded, None, None)
        .await
        .expect("finish");
    assert_eq!(
        stores[2]
            .replay(run_id, &replaying(true, None))
            .await
            .expect("replay"),
        queued(2, "v1", None)
    );
    let taken = stores[3]
        .claim_queued("node-3", until, Utc::now() + Duration::seconds(1), 10)
        .await
        .expect("claim queued");
    assert_eq!(&taken, std::slice::from_ref(run_id));

    // A concurrency limit holds when every process takes queued runs at once.
    let keyed: Vec<NewRun> = (0..10)
        .map(|_| keyed_run("wf-c", "deploy", 3, ConcurrencyMode::Queue))
        .collect();
    accept_each(&stores[0], &keyed.iter().collect::<Vec<_>>())
        .await
        .expect("accept");
    let after = Utc::now() + Duration::seconds(1);
    let mut takers = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let store = store.clone();
        takers.push(tokio::spawn(async move {
            store
                .claim_queued(&format!("node-{n}"), until, after, 10)
                .await
        }));
    }
    let mut started = 0;
    for taker in takers {
        started += taker.await.expect("join").expect("claim queued").len();
    }
    assert_eq!(started, 3, "a limit of 3 across four processes");
    assert_eq!(
        schema
            .count("SELECT count(*) FROM runs WHERE workflow = 'wf-c' AND status = 'running'")
            .await,
        3
    );
}

async fn futures_join_all<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_every_process_when_runs_are_queued_or_retries_scheduled() {
    let Some(schema) = postgres_schema("postgres_wakes_every_process").await else {
        return;
    };
    let accepting = Store::open(&schema.url, OpenMode::Serve)
        .await
        .expect("open");
    let idle = Store::open(&schema.url, OpenMode::Serve)
        .await
        .expect("open");
    let mut wakeups = idle.wakeups();
    let run = new_run("wf-w", None);
    // The listener connects in the background: accept until a wake-up arrives.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let woken = loop {
        accepting
            .accept(Arc::new(event(1)), &[new_run("wf-w", None)])
            .await
            .expect("accept");
        match tokio::time::timeout(std::time::Duration::from_millis(300), wakeups.recv()).await {
            Ok(Ok(wakeup)) => break wakeup,
            _ => assert!(std::time::Instant::now() < deadline, "no wake-up arrived"),
        }
    };
    assert_eq!(woken, Wakeup::RunsQueued);
    accepting
        .accept(Arc::new(event(2)), std::slice::from_ref(&run))
        .await
        .expect("accept");
    accepting
        .run_retrying(
            &run.id,
            Some("503".into()),
            Utc::now() + Duration::seconds(60),
        )
        .await
        .expect("retrying");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(1), wakeups.recv()).await {
            Ok(Ok(Wakeup::RetryScheduled)) => break,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "no wake-up for the retry"
            ),
        }
    }
}

/// `hookflow runs list --limit N` gives N runs even past the most one read of the store
/// answers (1,000): it reads page after page.
#[tokio::test]
async fn runs_list_reads_past_one_page_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hookflow.db");
    let store = Store::open(path.to_str().expect("path"), OpenMode::Serve)
        .await
        .expect("open");
    for n in 0..1_205 {
        let run = new_run("many", None);
        store
            .accept(Arc::new(event(n)), &[run])
            .await
            .expect("accept");
    }
    drop(store);
    let list = |limit: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(["runs", "list", "--json", "--limit", limit, "--store"])
            .arg(&path)
            .output()
            .expect("runs list");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("json");
        runs
    };
    let all = list("10000");
    assert_eq!(all.len(), 1_205);
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|r| r["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 1_205, "no run listed twice");
    assert_eq!(list("1100").len(), 1_100);
    assert_eq!(list("3").len(), 3);
}

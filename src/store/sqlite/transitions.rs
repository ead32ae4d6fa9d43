//! The SQLite store's writes, one function each, applied by the writer inside its batch's
//! transaction: accepting events (with dedupe and concurrency rules), claims and leases, step
//! records, run ends, retries, replays, pruning and schedule ticks.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;

use super::reads::ids;
use super::writer::{ROWS_PER_INSERT, Write};
use crate::run::{Event, NewRun, RunStatus, StepRecord, SyncResponse, Trigger};
use crate::store::pause;
use crate::store::rows::earlier_text;
use crate::store::writes::{admit, record_tick};
use crate::store::{Accepted, Definition, Lease, ReplayOptions, Replayed, timestamp};

/// The events and queued runs of the plain accepts at `indexes`, two statements in all.
pub(super) async fn insert_plain_accepts(
    conn: &mut SqliteConnection,
    batch: &[Write],
    indexes: &[usize],
) -> Result<(), sqlx::Error> {
    let accepts: Vec<(&Event, &[NewRun], Option<&Lease>)> = indexes
        .iter()
        .filter_map(|&i| match &batch[i] {
            Write::Accept {
                event, runs, lease, ..
            } => Some((event.as_ref(), runs.as_slice(), lease.as_ref())),
            _ => None,
        })
        .collect();
    let mut events = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw, triggered_by, trace_parent) ",
    );
    events.push_values(&accepts, |mut row, (event, _, _)| {
        row.push_bind(event.id.as_str())
            .push_bind(timestamp(event.received_at))
            .push_bind(event.method.as_str())
            .push_bind(event.path.as_str())
            .push_bind(to_text(&event.params))
            .push_bind(to_text(&event.query))
            .push_bind(to_text(&event.headers))
            .push_bind(crate::store::rows::stored_body(event))
            .push_bind(event.raw.as_slice())
            .push_bind((event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger)))
            .push_bind(event.trace.map(|t| t.to_string()));
    });
    events.build().execute(&mut *conn).await?;
    let runs: Vec<(&Event, &NewRun, Option<&Lease>)> = accepts
        .iter()
        .flat_map(|(event, runs, lease)| runs.iter().map(move |run| (*event, run, *lease)))
        .collect();
    let now = timestamp(Utc::now());
    for chunk in runs.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO runs (id, event_id, workflow, version, status, created_at, started_at, lease_owner, lease_until) ",
        );
        insert.push_values(chunk, |mut row, (event, run, lease)| {
            row.push_bind(run.id.as_str())
                .push_bind(event.id.as_str())
                .push_bind(run.workflow.as_str())
                .push_bind(run.version.as_str())
                .push_bind(if lease.is_some() { "running" } else { "queued" })
                .push_bind(timestamp(event.received_at))
                .push_bind(lease.map(|_| now.clone()))
                .push_bind(lease.map(|l| l.owner.as_str()))
                .push_bind(lease.map(|l| timestamp(l.until)));
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The step records at `indexes`, in one statement.
pub(super) async fn insert_step_records(
    conn: &mut SqliteConnection,
    batch: &[Write],
    indexes: &[usize],
) -> Result<(), sqlx::Error> {
    let records: Vec<(&str, &StepRecord)> = indexes
        .iter()
        .filter_map(|&i| match &batch[i] {
            Write::StepFinished { run_id, record, .. } => Some((run_id.as_str(), record.as_ref())),
            _ => None,
        })
        .collect();
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT OR REPLACE INTO steps
         (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts, earlier) ",
    );
    insert.push_values(&records, |mut row, (run_id, record)| {
        row.push_bind(*run_id)
            .push_bind(record.index as i64)
            .push_bind(record.name.as_str())
            .push_bind(record.kind.as_str())
            .push_bind(record.status.as_str())
            .push_bind(record.filtered)
            .push_bind(to_text(&record.input))
            .push_bind(to_text(&record.output))
            .push_bind(record.error.as_deref())
            .push_bind(timestamp(record.started_at))
            .push_bind(record.duration_ms)
            .push_bind(i64::from(record.attempts))
            .push_bind(earlier_text(record));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// Take a run: queued, or running with a lease that ended (or is ours). A queued run with a
/// concurrency key starts only while its key has a free slot and no older run with the key waits
/// ahead of it; a run taken over (`running`) already holds its slot. The key's busy runs and the
/// older queued ones are counted as two ranges of `runs_by_concurrency`, so a claim never walks
/// the key's finished runs.
/// The claim of one run, with `$extra` conditions before its end.
macro_rules! claim_statement {
    ($extra:literal) => {
        concat!(
            "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $2),
     lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND (status = 'running' OR ",
            not_paused!("runs"),
            ")
     AND (status = 'running' OR concurrency_key IS NULL OR (
       (SELECT COUNT(*) FROM runs AS other
        WHERE other.workflow = runs.workflow
          AND other.concurrency_key = runs.concurrency_key
          AND other.status IN ('running', 'retrying') AND other.id != runs.id)
       + (SELECT COUNT(*) FROM runs AS other
        WHERE other.workflow = runs.workflow
          AND other.concurrency_key = runs.concurrency_key
          AND other.status = 'queued' AND other.created_at <= runs.created_at
          AND other.id != runs.id
          AND (other.created_at < runs.created_at OR other.id < runs.id))
     ) < concurrency_limit) ",
            $extra,
            " RETURNING id"
        )
    };
}

const CLAIM: &str = claim_statement!("");

/// With a cap on the runs `running` in the store (`$5`): a queued run is taken only while fewer
/// are; a run taken over (`running` already) holds its place and always may be.
const CLAIM_CAPPED: &str = claim_statement!(
    "AND (status = 'running' OR (SELECT COUNT(*) FROM runs AS busy WHERE busy.status = 'running') < $5)"
);

/// Apply one write inside the batch's transaction, holding its answer for the commit.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    write: &mut Write,
) -> Result<(), sqlx::Error> {
    let now = timestamp(Utc::now());
    match write {
        Write::Accept {
            event, runs, reply, ..
        } => reply.hold(accept_event(conn, event, runs, &now).await?),
        Write::AcceptTick {
            workflow,
            tick,
            event,
            runs,
            reply,
        } => {
            let accepted =
                if record_tick::<Sqlite>(conn, workflow, *tick, Some(&event.id), &now).await? {
                    Some(accept_event(conn, event, runs, &now).await?)
                } else {
                    None
                };
            reply.hold(accepted);
        }
        Write::ClaimTick {
            workflow,
            tick,
            reply,
        } => reply.hold(record_tick::<Sqlite>(conn, workflow, *tick, None, &now).await?),
        Write::Claim {
            run_id,
            owner,
            until,
            max_running,
            reply,
        } => reply.hold(claim(conn, run_id, owner, *until, *max_running, &now).await?),
        Write::ClaimQueued {
            owner,
            until,
            queued_before,
            limit,
            max_running,
            reply,
        } => {
            let queued = QueuedClaim {
                owner,
                until: *until,
                queued_before: *queued_before,
                limit: *limit,
                max_running: *max_running,
            };
            reply.hold(claim_queued(conn, &queued, &now).await?);
        }
        Write::RenewLeases {
            owner,
            run_ids,
            until,
            reply,
        } => reply.hold(renew_leases(conn, owner, run_ids, *until).await?),
        Write::ReleaseAllLeases { reply } => reply.hold(release_all_leases(conn).await?),
        Write::StepFinished {
            run_id,
            record,
            reply,
        } => reply.hold(step_finished(conn, run_id, record).await?),
        Write::RunFinished {
            run_id,
            status,
            error,
            response,
            reply,
        } => {
            let ended = RunEnd {
                status: *status,
                error: error.as_deref(),
                response: response.as_ref(),
            };
            reply.hold(run_finished(conn, run_id, &ended, &now).await?);
        }
        Write::RunRetrying {
            run_id,
            error,
            due_at,
            reply,
        } => reply.hold(run_retrying(conn, run_id, error.as_deref(), *due_at).await?),
        Write::Replay {
            run_id,
            options,
            reply,
        } => reply.hold(replay(conn, run_id, options).await?),
        Write::Prune { before, reply } => reply.hold(prune(conn, *before, &now).await?),
        Write::ClaimDue { now, reply } => reply.hold(claim_due(conn, *now).await?),
        Write::Definition {
            version,
            definition,
            reply,
        } => reply.hold(save_definition(conn, version, definition, &now).await?),
        Write::Probe { reply } => reply.hold(probe(conn, &now).await?),
        Write::CancelRun {
            run_id,
            cancel,
            reply,
        } => reply.hold(pause::cancel_run::<Sqlite>(conn, run_id, cancel, &now).await?),
        Write::PauseWorkflow {
            workflow,
            pause,
            reply,
        } => reply.hold(pause::pause::<Sqlite>(conn, workflow, pause, &now).await?),
        Write::ResumeWorkflow { workflow, reply } => {
            reply.hold(pause::resume::<Sqlite>(conn, workflow).await?)
        }
    }
    Ok(())
}

/// Queue a finished run again with its next attempt number (on the version `replay` asks for).
async fn replay(
    conn: &mut SqliteConnection,
    run_id: &str,
    replay: &ReplayOptions,
) -> Result<Replayed, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status, attempt, version, replayed_from_version FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Replayed::NotFound);
    };
    let status: String = row.try_get("status")?;
    let attempt: i64 = row.try_get("attempt")?;
    if !RunStatus::parse(&status).is_some_and(RunStatus::is_final) {
        return Ok(Replayed::NotFinished(status));
    }
    let versions = replay.versions(
        row.try_get("version")?,
        row.try_get("replayed_from_version")?,
    );
    let forget_steps = if replay.from_start {
        "DELETE FROM steps WHERE run_id = $1"
    } else {
        "DELETE FROM steps WHERE run_id = $1 AND idx >= COALESCE(
            (SELECT MIN(idx) FROM steps WHERE run_id = $1 AND status = 'failed'),
            (SELECT MAX(idx) + 1 FROM steps WHERE run_id = $1), 0)"
    };
    sqlx::query(forget_steps)
        .bind(run_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE runs SET status = 'queued', attempt = $2, error = NULL, response = NULL,
         started_at = NULL, finished_at = NULL, due_at = NULL,
         cancelled_by = NULL, cancel_requested = NULL,
         version = $3, replayed_from_version = $4 WHERE id = $1",
    )
    .bind(run_id)
    .bind(attempt + 1)
    .bind(&versions.version)
    .bind(&versions.replayed_from_version)
    .execute(&mut *conn)
    .await?;
    Ok(Replayed::Queued {
        attempt: (attempt + 1) as u32,
        version: versions.version,
        replayed_from_version: versions.changed_from,
    })
}

/// Forget finished runs finished before `before` with their steps and events, old ticks and
/// expired dedupe keys; answers how many runs went.
async fn prune(
    conn: &mut SqliteConnection,
    before: DateTime<Utc>,
    now: &str,
) -> Result<usize, sqlx::Error> {
    let cutoff = timestamp(before);
    let pruned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled')
         AND finished_at < $1",
    )
    .bind(&cutoff)
    .fetch_one(&mut *conn)
    .await?;
    for statement in [
        "DELETE FROM steps WHERE run_id IN (SELECT id FROM runs
         WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled') AND finished_at < $1)",
        "DELETE FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled') AND finished_at < $1",
        "DELETE FROM events WHERE received_at < $1
         AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.event_id = events.id)",
    ] {
        sqlx::query(statement)
            .bind(&cutoff)
            .execute(&mut *conn)
            .await?;
    }
    // Ticks are bookkeeping (a run keeps its own tick): a day of them covers any race
    // to fire one, and a workflow's latest stays, as it is where the scheduler resumes.
    let tick_cutoff = timestamp(before.max(Utc::now() - chrono::Duration::days(1)));
    sqlx::query(
        "DELETE FROM ticks WHERE tick_at < $1 AND tick_at <
         (SELECT MAX(t.tick_at) FROM ticks AS t WHERE t.workflow = ticks.workflow)",
    )
    .bind(&tick_cutoff)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM dedupe WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(usize::try_from(pruned).unwrap_or(0))
}

/// Move retrying runs whose time has come back to `queued`; their ids.
async fn claim_due(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE runs SET status = 'queued', due_at = NULL
         WHERE status = 'retrying' AND due_at <= $1 RETURNING id",
    )
    .bind(timestamp(now))
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

async fn run_retrying(
    conn: &mut SqliteConnection,
    run_id: &str,
    error: Option<&str>,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(crate::store::RUN_RETRYING)
        .bind(run_id)
        .bind(error)
        .bind(timestamp(due_at))
        .bind(timestamp(Utc::now()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Take one run (`CLAIM`); whether it was taken.
async fn claim(
    conn: &mut SqliteConnection,
    run_id: &str,
    owner: &str,
    until: DateTime<Utc>,
    max_running: Option<u32>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let statement = match max_running {
        None => sqlx::query(CLAIM),
        Some(_) => sqlx::query(CLAIM_CAPPED),
    };
    let mut claim = statement
        .bind(run_id)
        .bind(now)
        .bind(owner)
        .bind(timestamp(until));
    if let Some(cap) = max_running {
        claim = claim.bind(i64::from(cap));
    }
    Ok(claim.fetch_optional(&mut *conn).await?.is_some())
}

/// What a `ClaimQueued` asks for.
struct QueuedClaim<'a> {
    owner: &'a str,
    until: DateTime<Utc>,
    queued_before: DateTime<Utc>,
    limit: usize,
    max_running: Option<u32>,
}

/// Take up to `limit` queued runs accepted before `queued_before`, oldest first.
async fn claim_queued(
    conn: &mut SqliteConnection,
    claim: &QueuedClaim<'_>,
    now: &str,
) -> Result<Vec<String>, sqlx::Error> {
    // One writer: the count and the claim below see the same runs.
    let limit = match claim.max_running {
        None => claim.limit as i64,
        Some(cap) => {
            let running: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'running'")
                    .fetch_one(&mut *conn)
                    .await?;
            (i64::from(cap) - running).clamp(0, claim.limit as i64)
        }
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One writer: nobody else can take these rows between the select and the update. A run
    // with a concurrency key is taken as `Claim` takes it: while its key has a free slot and no
    // older run with the key waits ahead (an older one taken in this same statement still
    // counts as waiting, so one statement never exceeds the limit).
    let rows = sqlx::query(
        "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1),
         lease_owner = $2, lease_until = $3
         WHERE id IN (SELECT id FROM runs AS queued
           WHERE status = 'queued' AND created_at < $4
           AND NOT EXISTS (SELECT 1 FROM paused_workflows AS paused
             WHERE paused.workflow = queued.workflow)
           AND (concurrency_key IS NULL OR (
             SELECT COUNT(*) FROM runs AS other
             WHERE other.workflow = queued.workflow
               AND other.concurrency_key = queued.concurrency_key
               AND other.id != queued.id
               AND (other.status IN ('running', 'retrying')
                 OR (other.status = 'queued' AND (other.created_at < queued.created_at
                   OR (other.created_at = queued.created_at AND other.id < queued.id))))
           ) < concurrency_limit)
           ORDER BY created_at LIMIT $5)
         RETURNING id",
    )
    .bind(now)
    .bind(claim.owner)
    .bind(timestamp(claim.until))
    .bind(timestamp(claim.queued_before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

/// Extend the leases `owner` holds on `run_ids`.
async fn renew_leases(
    conn: &mut SqliteConnection,
    owner: &str,
    run_ids: &[String],
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for run_id in run_ids {
        sqlx::query(
            "UPDATE runs SET lease_until = $3
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .bind(timestamp(until))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Single-node recovery: every lease belongs to a process that is gone.
async fn release_all_leases(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE status = 'running'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One step record, written over an earlier attempt's.
async fn step_finished(
    conn: &mut SqliteConnection,
    run_id: &str,
    record: &StepRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO steps
         (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts, earlier)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(run_id)
    .bind(record.index as i64)
    .bind(&record.name)
    .bind(&record.kind)
    .bind(record.status.as_str())
    .bind(record.filtered)
    .bind(to_text(&record.input))
    .bind(to_text(&record.output))
    .bind(record.error.as_deref())
    .bind(timestamp(record.started_at))
    .bind(record.duration_ms)
    .bind(i64::from(record.attempts))
    .bind(earlier_text(record))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a run ended.
struct RunEnd<'a> {
    status: RunStatus,
    error: Option<&'a str>,
    response: Option<&'a SyncResponse>,
}

async fn run_finished(
    conn: &mut SqliteConnection,
    run_id: &str,
    ended: &RunEnd<'_>,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE runs SET status = $2, error = $3, response = $4, finished_at = $5
         WHERE id = $1 AND status <> 'cancelled'",
    )
    .bind(run_id)
    .bind(ended.status.as_str())
    .bind(ended.error)
    .bind(ended.response.map(to_text))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keep a workflow's definition under its version (the first one saved stays).
async fn save_definition(
    conn: &mut SqliteConnection,
    version: &str,
    definition: &Definition,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO definitions (version, name, path, source, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(version)
    .bind(&definition.name)
    .bind(&definition.path)
    .bind(&definition.source)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rewrite the probe row: whether a commit reaches the disk.
async fn probe(conn: &mut SqliteConnection, now: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO probe (id, written_at) VALUES (1, $1)")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Insert the event and its runs, except the runs whose dedupe key is held by another run.
async fn accept_event(
    conn: &mut SqliteConnection,
    event: &Event,
    runs: &[NewRun],
    now: &str,
) -> Result<Accepted, sqlx::Error> {
    let mut accepted = Accepted::default();
    let mut created = Vec::new();
    for run in runs {
        let Some(dedupe) = &run.dedupe else {
            created.push(run);
            continue;
        };
        // A key is held within its window, unless every run that held it failed or was
        // cancelled: a sender's redelivery of a failed event starts it again.
        let holder = sqlx::query(
            "SELECT d.run_id FROM dedupe d LEFT JOIN runs r ON r.id = d.run_id
             WHERE d.workflow = $1 AND d.key = $2 AND d.expires_at > $3
               AND (r.status IS NULL OR r.status NOT IN ('failed', 'cancelled'))",
        )
        .bind(&run.workflow)
        .bind(&dedupe.key)
        .bind(timestamp(event.received_at))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(holder) = holder {
            accepted.duplicate_of.push(holder.try_get("run_id")?);
            continue;
        }
        sqlx::query(
            "INSERT OR REPLACE INTO dedupe (workflow, key, run_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&run.workflow)
        .bind(&dedupe.key)
        .bind(&run.id)
        .bind(timestamp(dedupe.expires_at))
        .execute(&mut *conn)
        .await?;
        created.push(run);
    }
    if created.is_empty() {
        // Nothing new: the event itself is not kept either.
        return Ok(accepted);
    }
    sqlx::query(
        "INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw, triggered_by,
         trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&event.id)
    .bind(timestamp(event.received_at))
    .bind(&event.method)
    .bind(&event.path)
    .bind(to_text(&event.params))
    .bind(to_text(&event.query))
    .bind(to_text(&event.headers))
    .bind(crate::store::rows::stored_body(event))
    .bind(event.raw.as_slice())
    .bind((event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger)))
    .bind(event.trace.map(|t| t.to_string()))
    .execute(&mut *conn)
    .await?;
    for run in created {
        accepted.created.push(run.id.clone());
        let skipped = match &run.concurrency {
            Some(rule) => admit::<Sqlite>(conn, run, rule, now, &mut accepted.superseded).await?,
            None => None,
        };
        let (status, finished_at) = match &skipped {
            Some(_) => ("cancelled", Some(now)),
            None => ("queued", None),
        };
        sqlx::query(
            "INSERT INTO runs (id, event_id, workflow, version, status, created_at,
             finished_at, error, concurrency_key, concurrency_limit)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&run.id)
        .bind(&event.id)
        .bind(&run.workflow)
        .bind(&run.version)
        .bind(status)
        .bind(timestamp(event.received_at))
        .bind(finished_at)
        .bind(skipped.as_deref())
        .bind(run.concurrency.as_ref().map(|c| c.key.as_str()))
        .bind(run.concurrency.as_ref().map(|c| i64::from(c.limit)))
        .execute(&mut *conn)
        .await?;
    }
    Ok(accepted)
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    async fn migrated() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        super::super::schema::create(&mut conn)
            .await
            .expect("schema");
        conn
    }

    async fn plan(conn: &mut SqliteConnection, statement: &str) -> Vec<String> {
        // Test-only: the statement is one of this file's constants.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {statement}"
        )))
        .bind("run")
        .bind("2026-01-01T00:00:00.000Z")
        .bind("owner")
        .bind("2026-01-01T00:00:30.000Z")
        .fetch_all(&mut *conn)
        .await
        .expect("plan")
        .iter()
        .map(|r| r.try_get::<String, _>("detail").expect("detail"))
        .collect()
    }

    #[tokio::test]
    async fn a_claim_counts_the_busy_and_older_queued_runs_of_its_key_without_its_history() {
        let mut conn = migrated().await;
        let plan = plan(&mut conn, CLAIM).await;
        let counts: Vec<&String> = plan.iter().filter(|l| l.contains(" other ")).collect();
        assert_eq!(counts.len(), 2, "{plan:#?}");
        assert!(
            counts
                .iter()
                .all(|l| l.contains("runs_by_concurrency") && l.contains("status=?")),
            "a claim must not walk every run its key ever had: {plan:#?}"
        );
        assert!(
            counts.iter().any(|l| l.contains("created_at<?")),
            "the older queued runs are a range: {plan:#?}"
        );
    }
}

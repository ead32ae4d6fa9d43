//! Group commit on PostgreSQL: accepts of plain runs, step records and run ends sent at about
//! the same time share one transaction, a few array statements long, written by one task. A
//! commit costs a flush of the write-ahead log whatever it holds, so under load hundreds of
//! writes pay for one; alone, a write waits for no one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, oneshot};

use super::connection::OwnConnection;
use super::notify::CHANNEL;
use super::reads::write_error;
use super::transitions::{to_text, triggered_by};
use crate::run::{Event, NewRun, RunStatus, StepRecord, SyncResponse};
use crate::store::rows::{earlier_text, stored_body};
use crate::store::{Lease, StoreError, Wakeup, timestamp};

/// Writes waiting while a commit is in flight go in the next one, up to this many.
const MAX_BATCH: usize = 512;

/// Writes queued for the batcher at most; a caller past it waits for room (backpressure).
const QUEUE: usize = 4096;

/// A write that can share a commit with others: it only adds rows, or changes one run that
/// nothing else in the batch changes after it.
pub(super) enum Batched {
    /// An event with runs that need no dedupe or concurrency check; claimed for `lease` when
    /// there is one.
    Accept {
        event: Arc<Event>,
        runs: Vec<NewRun>,
        lease: Option<Lease>,
    },
    Step {
        run_id: String,
        record: Box<StepRecord>,
    },
    End {
        run_id: String,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    },
    /// Take a run with no concurrency key for `owner` until `until`: queued (its workflow not
    /// paused), or running with a lease that ended. Answers whether it was taken.
    Claim {
        run_id: String,
        owner: String,
        until: DateTime<Utc>,
    },
}

/// A write's answer once its batch committed: for an accept that asked for a lease, whether
/// its runs were claimed (not when a workflow of theirs is paused); for a claim, whether it took
/// its run; false for other writes.
type Answer = Result<bool, StoreError>;

type Reply = oneshot::Sender<Answer>;

/// The handle writes are sent on; cheap to clone.
///
/// One task commits the batches, one after another, on a connection of its own, so a run's
/// writes commit in the order they were sent. It was two (each a lane with its connection,
/// a run's writes hashed to one) while PostgreSQL planned every batch anew and one backend's
/// core was the bound. Planned once, a batch is bound by the flush of the write-ahead log,
/// and fewer, larger batches flush less: in the stores bench one lane accepted as much as two
/// with one process (3,534 against 3,639/s) and 40% more with three (2,726 against 1,951/s),
/// where two lanes each spent most of their time waiting for `WALWrite`.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<(Batched, Reply)>,
}

impl Batcher {
    /// Start the task that commits batches, on a connection of its own to `options`.
    pub(super) fn start(options: PgConnectOptions, notifier: Notifier) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(planned_once_by_index(options), notifier, receiver));
        Self { queue }
    }

    /// Send `write`; the answer ends once its batch committed (or failed).
    pub(super) async fn send(
        &self,
        write: Batched,
    ) -> Result<oneshot::Receiver<Answer>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((write, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    /// Send `write` and wait for its commit; for an accept, whether its runs were claimed.
    pub(super) async fn commit(&self, write: Batched) -> Answer {
        self.send(write)
            .await?
            .await
            .unwrap_or(Err(StoreError::Closed))
    }
}

/// Options for a connection that runs a few statements of fixed shape: each is planned once
/// (its generic plan), and reaches rows through indexes.
///
/// Left to choose (`plan_cache_mode = auto`), PostgreSQL made a custom plan for every execution
/// of the batch: the generic plan of a statement over partitioned tables covers every partition,
/// so it always looks dearer. Planning the batch cost more than running it: with three processes
/// in the stores bench, half of the database's CPU went to the planner. A generic plan is made
/// with the statistics of the moment, though, and at start a day's partition looks empty: the
/// planner then picks sequential scans, which stay in the plan as the partition fills. With
/// sequential and bitmap scans off, the statements' rows are found by primary key (`id =
/// ANY(...)`) in every partition, whatever the statistics said (`tests::
/// the_batch_is_planned_by_primary_key_on_an_empty_store` holds the plan).
pub(super) fn planned_once_by_index(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("plan_cache_mode", "force_generic_plan"),
        ("enable_seqscan", "off"),
        ("enable_bitmapscan", "off"),
    ])
}

/// Whether a sent write was committed, once its answer comes.
pub(super) async fn settled(answer: oneshot::Receiver<Answer>) -> Result<(), StoreError> {
    answer.await.unwrap_or(Err(StoreError::Closed)).map(|_| ())
}

/// Whether a batch with accepts should wake the other processes now (coalesced: see
/// `PostgresStore::notify_due`).
pub(super) type Notifier = Arc<dyn Fn() -> bool + Send + Sync>;

async fn run(
    options: PgConnectOptions,
    notifier: Notifier,
    mut queue: mpsc::Receiver<(Batched, Reply)>,
) {
    let mut connection = OwnConnection::new(options);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit_batch(&mut connection, &notifier, &mut batch).await;
    }
}

/// Commit `batch` in one transaction and answer each write; drains it. When the batch fails
/// for one of its writes (not the database), each is committed on its own so one bad write
/// does not fail its neighbours.
async fn commit_batch(
    connection: &mut OwnConnection,
    notifier: &Notifier,
    batch: &mut Vec<(Batched, Reply)>,
) {
    let started = std::time::Instant::now();
    let writes: Vec<&Batched> = batch.iter().map(|(write, _)| write).collect();
    match apply(connection, notifier, &writes).await {
        Ok(mut claimed) => {
            crate::observe::metrics::metrics().store_commit(started.elapsed());
            for (write, reply) in batch.drain(..) {
                let _ = reply.send(Ok(was_claimed(&write, &mut claimed)));
            }
        }
        Err(err) if batch.len() == 1 || is_environmental(&err) => {
            let error = write_error(err);
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(_) => {
            for (write, reply) in batch.drain(..) {
                let result = apply(connection, notifier, &[&write])
                    .await
                    .map_err(write_error);
                let _ = reply.send(result.map(|mut claimed| was_claimed(&write, &mut claimed)));
            }
        }
    }
}

/// Whether a failed batch failed for the database or the connection (any write would have).
fn is_environmental(err: &sqlx::Error) -> bool {
    !matches!(err, sqlx::Error::Database(db) if db.code().is_some_and(|code| {
        // Class 22 (data exception) and 23 (integrity constraint violation): this write's own.
        code.starts_with("22") || code.starts_with("23")
    }))
}

/// The writes of one batch in one statement, so in one round trip and one commit (a statement
/// is its own transaction): accepts, step records and run ends are each an `UNNEST` of one
/// array per column in a data-modifying `WITH`, empty when the batch has none. A run's end
/// never meets its own accept in a batch (it is claimed and executed in between), and every
/// step names a run committed before it was sent. Always the same text, so prepared once. The
/// updates name their rows with `id = ANY(...)` as well as by the join: the plan is made once
/// for every size of `runs`, and the index condition keeps it from scanning the table when it
/// was planned while the table was small. A claim's `num_nulls(concurrency_key) = 1` is
/// `concurrency_key IS NULL` that no index can serve, so the claim, too, finds its runs by
/// primary key (not by scanning `runs_by_concurrency` for every run without a key).
const BATCH: &str = "WITH new_events AS (
    INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
      triggered_by, trace_parent)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
      $6::text[], $7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[])
), new_runs AS (
    INSERT INTO runs (id, event_id, workflow, version, status, created_at, started_at,
      lease_owner, lease_until)
    SELECT id, event_id, workflow, version, CASE WHEN claim THEN 'running' ELSE 'queued' END,
      created_at, CASE WHEN claim THEN $19 END, CASE WHEN claim THEN lease_owner END,
      CASE WHEN claim THEN lease_until END
    FROM (SELECT run.*, run.lease_owner IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM UNNEST($13::text[], $14::text[]) AS sibling(event_id, workflow)
            JOIN paused_workflows AS paused ON paused.workflow = sibling.workflow
            WHERE sibling.event_id = run.event_id) AS claim
          FROM UNNEST($12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
            $17::text[], $18::text[])
            AS run(id, event_id, workflow, version, created_at, lease_owner, lease_until)
    ) AS accepted
    RETURNING id, status
), records AS (
    INSERT INTO steps (run_id, idx, name, kind, status, filtered, input, output, error,
      started_at, duration_ms, attempts, earlier)
    SELECT * FROM UNNEST($20::text[], $21::int4[], $22::text[], $23::text[], $24::text[],
      $25::bool[], $26::text[], $27::text[], $28::text[], $29::text[], $30::float8[],
      $31::int4[], $32::text[])
    ON CONFLICT (run_id, idx) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
      status = EXCLUDED.status, filtered = EXCLUDED.filtered, input = EXCLUDED.input,
      output = EXCLUDED.output, error = EXCLUDED.error, started_at = EXCLUDED.started_at,
      duration_ms = EXCLUDED.duration_ms, attempts = EXCLUDED.attempts,
      earlier = EXCLUDED.earlier
), ends AS (
    UPDATE runs SET status = e.status, error = e.error, response = e.response,
      finished_at = $37
    FROM UNNEST($33::text[], $34::text[], $35::text[], $36::text[])
      AS e(id, status, error, response)
    WHERE runs.id = e.id AND runs.id = ANY($33::text[]) AND runs.status <> 'cancelled'
), taken AS (
    UPDATE runs SET status = 'running', started_at = COALESCE(runs.started_at, $41),
      lease_owner = c.owner, lease_until = c.until
    FROM UNNEST($42::text[], $43::text[], $44::text[]) AS c(id, owner, until)
    WHERE runs.id = c.id AND runs.id = ANY($42::text[]) AND num_nulls(runs.concurrency_key) = 1
      AND (runs.status = 'queued' OR (runs.status = 'running'
        AND (runs.lease_until IS NULL OR runs.lease_until < $41)))
      AND (runs.status = 'running' OR NOT EXISTS (SELECT 1 FROM paused_workflows AS paused
        WHERE paused.workflow = runs.workflow))
    RETURNING runs.id
)
SELECT ARRAY(SELECT id FROM new_runs WHERE status = 'running')
    || ARRAY(SELECT id FROM taken) AS claimed,
  (SELECT count(*) FROM (SELECT pg_notify($39, $40) WHERE $38) AS woken) AS woken";

/// Commit `writes`; answers the runs claimed in their accept. A run's end never overwrites
/// `cancelled` (a cancel wins over the end its owner was about to record); runs of an event
/// with a run of a paused workflow are only queued.
async fn apply(
    connection: &mut OwnConnection,
    notifier: &Notifier,
    writes: &[&Batched],
) -> Result<HashSet<String>, sqlx::Error> {
    let started = std::time::Instant::now();
    let accepts: Vec<Accept<'_>> = writes.iter().filter_map(|w| Accept::of(w)).collect();
    let notify = !accepts.is_empty() && notifier();
    let query = bind_accepts(sqlx::query(BATCH), &accepts);
    let query = bind_steps(query, writes);
    let query = bind_ends(query, writes)
        .bind(notify)
        .bind(CHANNEL)
        .bind(Wakeup::RunsQueued.as_str());
    let query = bind_claims(query, writes);
    let built = started.elapsed();
    let answer = query.fetch_one(connection.get().await?).await;
    let row = match answer {
        Ok(row) => row,
        Err(err) => {
            if is_environmental(&err) {
                connection.forget();
            }
            return Err(err);
        }
    };
    tracing::debug!(
        writes = writes.len(),
        accepts = accepts.len(),
        built_us = built.as_micros() as u64,
        committed_us = started.elapsed().as_micros() as u64,
        "committed a batch"
    );
    let claimed: Vec<String> = row.try_get("claimed")?;
    Ok(claimed.into_iter().collect())
}

/// Whether `write` is an accept whose runs were claimed (all of them are, or none), or a claim
/// that took its run. A run claimed twice in one batch is taken by the first claim alone.
fn was_claimed(write: &Batched, claimed: &mut HashSet<String>) -> bool {
    match write {
        Batched::Accept {
            runs,
            lease: Some(_),
            ..
        } => runs.first().is_some_and(|run| claimed.contains(&run.id)),
        Batched::Claim { run_id, .. } => claimed.remove(run_id),
        _ => false,
    }
}

/// The batch's claims, `$41` to `$44`.
fn bind_claims<'q>(query: Query<'q>, writes: &[&'q Batched]) -> Query<'q> {
    let claims: Vec<(&str, &str, &DateTime<Utc>)> = writes
        .iter()
        .filter_map(|write| match write {
            Batched::Claim {
                run_id,
                owner,
                until,
            } => Some((run_id.as_str(), owner.as_str(), until)),
            _ => None,
        })
        .collect();
    query
        .bind(timestamp(Utc::now()))
        .bind(claims.iter().map(|c| c.0).collect::<Vec<&str>>())
        .bind(claims.iter().map(|c| c.1).collect::<Vec<&str>>())
        .bind(
            claims
                .iter()
                .map(|c| timestamp(*c.2))
                .collect::<Vec<String>>(),
        )
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// An accept of the batch, borrowed.
struct Accept<'a> {
    event: &'a Event,
    runs: &'a [NewRun],
    lease: Option<&'a Lease>,
}

impl<'a> Accept<'a> {
    fn of(write: &'a Batched) -> Option<Self> {
        match write {
            Batched::Accept { event, runs, lease } => Some(Self {
                event,
                runs,
                lease: lease.as_ref(),
            }),
            _ => None,
        }
    }
}

/// Every accept's event (`$1` to `$11`), then every run (`$12` to `$19`).
fn bind_accepts<'q>(query: Query<'q>, accepts: &[Accept<'q>]) -> Query<'q> {
    let column = |f: &dyn Fn(&Event) -> String| -> Vec<String> {
        accepts.iter().map(|a| f(a.event)).collect()
    };
    // Borrowed, not copied: the writes outlive the statement.
    let raw: Vec<&[u8]> = accepts.iter().map(|a| a.event.raw.as_slice()).collect();
    let triggers: Vec<Option<String>> = accepts.iter().map(|a| triggered_by(a.event)).collect();
    let traces: Vec<Option<String>> = accepts
        .iter()
        .map(|a| a.event.trace.map(|t| t.to_string()))
        .collect();
    let query = query
        .bind(column(&|e| e.id.clone()))
        .bind(column(&|e| timestamp(e.received_at)))
        .bind(column(&|e| e.method.clone()))
        .bind(column(&|e| e.path.clone()))
        .bind(column(&|e| to_text(&e.params)))
        .bind(column(&|e| to_text(&e.query)))
        .bind(column(&|e| to_text(&e.headers)))
        .bind(column(&stored_body))
        .bind(raw)
        .bind(triggers)
        .bind(traces);
    bind_runs(query, accepts)
}

fn bind_runs<'q>(query: Query<'q>, accepts: &[Accept<'_>]) -> Query<'q> {
    let now = timestamp(Utc::now());
    let runs: Vec<(&Accept<'_>, &NewRun)> = accepts
        .iter()
        .flat_map(|accept| accept.runs.iter().map(move |run| (accept, run)))
        .collect();
    let text = |f: &dyn Fn(&Accept<'_>, &NewRun) -> String| -> Vec<String> {
        runs.iter().map(|(a, r)| f(a, r)).collect()
    };
    let leased = |f: &dyn Fn(&Lease) -> String| -> Vec<Option<String>> {
        runs.iter().map(|(a, _)| a.lease.map(f)).collect()
    };
    query
        .bind(text(&|_, r| r.id.clone()))
        .bind(text(&|a, _| a.event.id.clone()))
        .bind(text(&|_, r| r.workflow.clone()))
        .bind(text(&|_, r| r.version.clone()))
        .bind(text(&|a, _| timestamp(a.event.received_at)))
        .bind(leased(&|l| l.owner.clone()))
        .bind(leased(&|l| timestamp(l.until)))
        .bind(now)
}

/// The batch's step records, `$20` to `$32`; of a step recorded twice in the batch, the later
/// record (one statement may not change a row twice).
fn bind_steps<'q>(query: Query<'q>, writes: &[&Batched]) -> Query<'q> {
    let mut latest: HashMap<(&str, usize), &StepRecord> = HashMap::new();
    for write in writes {
        if let Batched::Step { run_id, record } = write {
            latest.insert((run_id.as_str(), record.index), record);
        }
    }
    let records: Vec<(&str, &StepRecord)> =
        latest.into_iter().map(|((run, _), r)| (run, r)).collect();
    let text = |f: &dyn Fn(&StepRecord) -> String| -> Vec<String> {
        records.iter().map(|(_, r)| f(r)).collect()
    };
    query
        .bind(
            records
                .iter()
                .map(|(run, _)| (*run).to_owned())
                .collect::<Vec<String>>(),
        )
        .bind(
            records
                .iter()
                .map(|(_, r)| r.index as i32)
                .collect::<Vec<i32>>(),
        )
        .bind(text(&|r| r.name.clone()))
        .bind(text(&|r| r.kind.clone()))
        .bind(text(&|r| r.status.as_str().to_owned()))
        .bind(
            records
                .iter()
                .map(|(_, r)| r.filtered)
                .collect::<Vec<bool>>(),
        )
        .bind(text(&|r| to_text(&r.input)))
        .bind(text(&|r| to_text(&r.output)))
        .bind(
            records
                .iter()
                .map(|(_, r)| r.error.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(text(&|r| timestamp(r.started_at)))
        .bind(
            records
                .iter()
                .map(|(_, r)| r.duration_ms)
                .collect::<Vec<f64>>(),
        )
        .bind(
            records
                .iter()
                .map(|(_, r)| r.attempts as i32)
                .collect::<Vec<i32>>(),
        )
        .bind(
            records
                .iter()
                .map(|(_, r)| earlier_text(r))
                .collect::<Vec<Option<String>>>(),
        )
}

/// The batch's run ends, `$33` to `$37`; of a run ended twice in the batch, the later end.
fn bind_ends<'q>(query: Query<'q>, writes: &[&Batched]) -> Query<'q> {
    let mut latest: HashMap<&str, (RunStatus, Option<&str>, Option<String>)> = HashMap::new();
    for write in writes {
        if let Batched::End {
            run_id,
            status,
            error,
            response,
        } = write
        {
            let response = response.as_ref().map(to_text);
            latest.insert(run_id.as_str(), (*status, error.as_deref(), response));
        }
    }
    let ends: Vec<_> = latest.into_iter().collect();
    query
        .bind(
            ends.iter()
                .map(|(id, _)| (*id).to_owned())
                .collect::<Vec<String>>(),
        )
        .bind(
            ends.iter()
                .map(|(_, (s, _, _))| s.as_str().to_owned())
                .collect::<Vec<String>>(),
        )
        .bind(
            ends.iter()
                .map(|(_, (_, e, _))| e.map(str::to_owned))
                .collect::<Vec<Option<String>>>(),
        )
        .bind(
            ends.into_iter()
                .map(|(_, (_, _, r))| r)
                .collect::<Vec<Option<String>>>(),
        )
        .bind(timestamp(Utc::now()))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::store::postgres::schema::{self, tests::*};

    /// The plan the batch gets on the batcher's connection, with `ids` as the runs it ends and claims.
    async fn batch_plan(schema_name: &str, ids: &[&str]) -> String {
        let options = PgConnectOptions::from_str(&test_url())
            .expect("database URL")
            .options([("search_path", schema_name)]);
        let mut connection = OwnConnection::new(planned_once_by_index(options));
        let conn = connection.get().await.expect("connect");
        // Only the arrays the updates read need values; nothing is executed.
        let scalars = [19, 37, 38, 39, 40, 41];
        let id_list = format!("'{{{}}}'", ids.join(","));
        let arguments: Vec<String> = (1..=44)
            .map(|n| match n {
                38 => "false".to_owned(),
                33 | 42 => id_list.clone(),
                n if scalars.contains(&n) => "'2026-12-07T00:00:00.000Z'".to_owned(),
                _ => "'{}'".to_owned(),
            })
            .collect();
        let statements = format!(
            "PREPARE batch AS {BATCH}; EXPLAIN (COSTS OFF) EXECUTE batch({})",
            arguments.join(", ")
        );
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
            .fetch_all(&mut *conn)
            .await
            .expect("explain the batch");
        rows.iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// On a store just made, every partition empty and without statistics, the batch's one
    /// plan finds the runs it ends and claims by primary key in every partition: no
    /// sequential or bitmap scan, and no other index read whole.
    #[tokio::test]
    async fn the_batch_is_planned_by_primary_key_on_an_empty_store() {
        let test = "the_batch_is_planned_by_primary_key_on_an_empty_store";
        let Some((pool, schema_name)) = fresh_schema(test).await else {
            return;
        };
        schema::migrate(&pool).await.expect("migrate");
        let id = uuid::Uuid::now_v7().to_string();
        let plan = batch_plan(&schema_name, &[&id]).await;
        drop_schema(&pool, &schema_name).await;
        for scan in ["Seq Scan on runs", "Bitmap", "concurrency_key_status"] {
            assert!(!plan.contains(scan), "{scan} in the batch's plan:\n{plan}");
        }
        let by_key = plan
            .lines()
            .filter(|line| line.contains("Index Scan using runs_") && line.contains("_pkey"))
            .count();
        let partitions = plan
            .lines()
            .filter(|line| line.trim_start().starts_with("Update on runs_"))
            .count();
        // Two updates (ends and claims), each reaching every partition through its key.
        assert!(partitions >= 2 * 9, "{plan}");
        assert_eq!(by_key, partitions, "{plan}");
    }
}

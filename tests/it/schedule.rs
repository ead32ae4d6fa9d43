//! `on.schedule` against a real server: ticks fire, each once, and a server that was stopped
//! catches up per `catch_up`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use hookflow::run::Trigger;
use hookflow::store::{OpenMode, RunFilter, Store};
use serde_json::Value as Json;

use crate::support::{TestServer, step};

/// The scheduled time of every run of `workflow` in the store at `path`, oldest first.
async fn scheduled_ticks(path: &std::path::Path, workflow: &str) -> Vec<DateTime<Utc>> {
    let store = Store::open(&path.display().to_string(), OpenMode::Read)
        .await
        .expect("open the store");
    let runs = store
        .list_runs(&RunFilter {
            workflow: Some(workflow.into()),
            limit: 1000,
            ..RunFilter::default()
        })
        .await
        .expect("list runs");
    let mut ticks = Vec::new();
    for run in runs {
        let detail = store.run(&run.id).await.expect("read").expect("run");
        match detail.event.trigger {
            Trigger::Schedule { scheduled_at } => ticks.push(scheduled_at),
            other => panic!("run {} was started by {other:?}", run.id),
        }
    }
    ticks.sort();
    ticks
}

/// How many whole seconds lie in `(from, to]`.
fn whole_seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to.timestamp() - from.timestamp()).max(0)
}

#[tokio::test]
async fn a_schedule_every_second_fires_once_per_tick() {
    let workflow = r#"
name: every-second
on:
  schedule:
    cron: "*/1 * * * * *"
steps:
  - name: when
    set:
      at: "{{ event.scheduled_at }}"
      trigger: "{{ event.trigger }}"
"#;
    let before = Utc::now();
    let server = TestServer::start(&[("every-second.yaml", workflow)]).await;
    let started = Utc::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A finished run shows the tick to its templates.
    let listed: Json = server
        .client
        .get(format!(
            "{}/api/runs?workflow=every-second&status=succeeded",
            server.admin
        ))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let first = listed["runs"]
        .as_array()
        .and_then(|runs| runs.last())
        .and_then(|run| run["id"].as_str())
        .expect("a finished scheduled run")
        .to_owned();
    let run = server.finished_run(&first).await;
    assert_eq!(run["event"]["trigger"]["kind"], "schedule", "{run}");
    let output = &step(&run, "when")["output"];
    assert_eq!(output["trigger"], "schedule", "{run}");
    assert_eq!(
        output["at"], run["event"]["trigger"]["scheduled_at"],
        "{run}"
    );
    let stopping = Utc::now();
    let dir = server.stop().await;
    let after = Utc::now();

    let ticks = scheduled_ticks(&dir.path().join("hookflow.db"), "every-second").await;
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(distinct, ticks, "a tick fired twice");
    assert!(ticks.iter().all(|t| t.nanosecond() == 0), "{ticks:?}");
    assert!(
        ticks.iter().all(|t| *t > before && *t <= after),
        "ticks outside the server's life ({before} .. {after}): {ticks:?}"
    );
    // Every tick of the seconds the server surely ran (one second of slack at each end for a
    // busy machine), and none beyond its lifetime.
    let surely = whole_seconds(started + chrono::Duration::seconds(1), stopping) - 1;
    let at_most = whole_seconds(before, after);
    assert!(
        ticks.len() as i64 >= surely && ticks.len() as i64 <= at_most,
        "{} runs, expected between {surely} and {at_most}: {ticks:?}",
        ticks.len()
    );
}

/// A one-off cron expression (seconds first) for the UTC instant `at`.
fn cron_at(at: DateTime<Utc>) -> String {
    at.format("%-S %-M %-H %-d %-m *").to_string()
}

/// Runs of `workflow` as the admin API lists them.
async fn run_count(server: &TestServer, workflow: &str) -> usize {
    let listed: Json = server
        .client
        .get(format!("{}/api/runs?workflow={workflow}", server.admin))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    listed["runs"].as_array().map_or(0, Vec::len)
}

/// Three ticks: A while the server runs, B and C while it is stopped. After the restart,
/// `catch_up: last` starts one run, for C; `none` starts none.
async fn stopped_server_catches_up(mode: &str) -> Vec<DateTime<Utc>> {
    let now = Utc::now();
    // Far enough ahead for a slow start: a tick before the server is up would not fire.
    let a = DateTime::from_timestamp(now.timestamp() + 5, 0).expect("time");
    let b = a + chrono::Duration::seconds(7);
    let c = a + chrono::Duration::seconds(8);
    let workflow = format!(
        r#"
name: catch-up
on:
  schedule:
    - cron: "{}"
      catch_up: {mode}
    - cron: "{}"
      catch_up: {mode}
    - cron: "{}"
      catch_up: {mode}
steps:
  - name: note
    log: "tick {{{{ event.scheduled_at }}}}"
"#,
        cron_at(a),
        cron_at(b),
        cron_at(c)
    );
    let server = TestServer::start(&[("catch-up.yaml", &workflow)]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while run_count(&server, "catch-up").await < 1 {
        assert!(Instant::now() < deadline, "tick A never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = server.stop().await;
    assert!(
        Utc::now() < b,
        "the server took too long to stop: tick B came while it ran"
    );
    // Stopped across B and C.
    let past_c = (c - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(1500);
    tokio::time::sleep(past_c).await;
    let server = TestServer::start_in(dir).await;
    let expected = if mode == "last" { 2 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(10);
    while run_count(&server, "catch-up").await < expected {
        assert!(Instant::now() < deadline, "no catch-up run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more comes: no run for B, no second one for C.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = server.stop().await;
    let ticks = scheduled_ticks(&dir.path().join("hookflow.db"), "catch-up").await;
    let expected_ticks = if mode == "last" { vec![a, c] } else { vec![a] };
    assert_eq!(ticks, expected_ticks, "catch_up: {mode}");
    ticks
}

#[tokio::test]
async fn a_restart_catches_up_the_latest_missed_tick_once() {
    stopped_server_catches_up("last").await;
}

#[tokio::test]
async fn a_restart_skips_missed_ticks_with_catch_up_none() {
    stopped_server_catches_up("none").await;
}

#[tokio::test]
async fn a_reload_starts_and_stops_a_schedule() {
    let plain = "name: later\nsteps:\n  - log: \"by hand\"\n";
    let server = TestServer::start(&[("later.yaml", plain)]).await;
    let file = server.dir.path().join("workflows/later.yaml");
    let reloader = server.running.as_ref().expect("running").reloader();
    std::fs::write(
        &file,
        "name: later\non:\n  schedule: \"* * * * * *\"\nsteps:\n  - log: \"tick\"\n",
    )
    .expect("write");
    reloader.reload().await.expect("reload");
    let deadline = Instant::now() + Duration::from_secs(15);
    while run_count(&server, "later").await < 2 {
        assert!(
            Instant::now() < deadline,
            "the reloaded schedule never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&file, plain).expect("write");
    reloader.reload().await.expect("reload");
    // A tick already being fired may still land; after that, nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = run_count(&server, "later").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        run_count(&server, "later").await,
        settled,
        "the schedule kept firing after it was removed"
    );
    server.stop().await;
}

/// The real binary, killed with SIGKILL while a schedule fires every second: no tick ever
/// starts two runs, the ticks of the downtime are not fired as a backlog, and the schedule
/// goes on after the restart.
#[tokio::test]
async fn serve_killed_mid_schedule_repeats_no_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("tick.yaml"),
        "name: tick\non:\n  schedule: \"* * * * * *\"\nsteps:\n  - log: \"{{ event.scheduled_at }}\"\n",
    )
    .expect("write");
    let client = crate::support::client();
    let count = |admin: String| {
        let client = client.clone();
        async move {
            let listed: Json = client
                .get(format!("{admin}/api/runs?workflow=tick&limit=500"))
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            listed["runs"].as_array().map_or(0, Vec::len)
        }
    };
    let server = crate::support::ServeProcess::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(15);
    while count(server.admin.clone()).await < 2 {
        assert!(Instant::now() < deadline, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_hard();
    let killed = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarting = Utc::now();
    let server = crate::support::ServeProcess::start(dir.path());
    let before = count(server.admin.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while count(server.admin.clone()).await < before + 2 {
        assert!(Instant::now() < deadline, "the schedule did not go on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = server.terminate();
    assert!(status.success(), "{status}");

    let ticks = scheduled_ticks(&dir.path().join("hookflow.db"), "tick").await;
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(distinct, ticks, "a tick started two runs");
    let backlog: Vec<_> = ticks
        .iter()
        .filter(|t| {
            **t > killed + chrono::Duration::seconds(1)
                && **t < restarting - chrono::Duration::seconds(1)
        })
        .collect();
    assert!(
        backlog.is_empty(),
        "ticks of the downtime were fired: {backlog:?}"
    );
    assert!(
        ticks
            .iter()
            .any(|t| *t > restarting - chrono::Duration::seconds(1)),
        "{ticks:?}"
    );
}

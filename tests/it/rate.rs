//! Outgoing rate limits against a real server and a receiver that notes when each request
//! arrived: a step's `rate_limit` spaces its calls over every run, a `429` with `Retry-After`
//! holds the bucket, `rate_limits` in the settings paces every workflow calling a host, a turn
//! waited for survives a restart, and two processes on one PostgreSQL share one bucket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::postgres::TestSchema;
use crate::support::{Receiver, ServeProcess, TestServer, client, list_runs, step};

/// The most requests that arrived within any window of `window`.
fn busiest(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn paced_workflow(name: &str, receiver: &Receiver, rate_limit: &str) -> String {
    format!(
        r#"
name: {name}
on: {{ webhook: {{ path: /hooks/{name} }} }}
steps:
  - name: call
    rate_limit: {rate_limit}
    http: {{ url: "{url}", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
        url = receiver.url(&format!("/{name}"))
    )
}

/// Sends `count` webhooks to `path` at once; the run ids.
async fn send_all(server: &TestServer, path: &str, count: usize) -> Vec<String> {
    let sends: Vec<_> = (0..count)
        .map(|n| {
            let client = server.client.clone();
            let url = format!("{}{path}", server.base);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({ "n": n }))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 202);
                response.json::<serde_json::Value>().await.expect("json")
            })
        })
        .collect();
    let mut ids = Vec::new();
    for send in sends {
        let body = send.await.expect("task");
        ids.push(body["run_ids"][0].as_str().expect("run id").to_owned());
    }
    ids
}

async fn metrics(server: &TestServer) -> String {
    server
        .client
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_limit_of_5_per_second_paces_twenty_runs_and_none_fails() {
    let receiver = Receiver::start().await;
    let workflow = paced_workflow("paced", &receiver, "5/s");
    let server = TestServer::start(&[("paced.yaml", &workflow)]).await;
    let ids = send_all(&server, "/hooks/paced", 20).await;
    // While the later ones wait their turn, their runs say so.
    let mut saw_waiting = false;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !saw_waiting && Instant::now() < deadline {
        saw_waiting = list_runs(&server).await.iter().any(|run| {
            run["status"] == "retrying"
                && run["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("waits its turn in its rate limit"))
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_waiting, "no run was seen waiting for its turn");
    let received = receiver.wait_for(20).await;
    let arrivals: Vec<Instant> = received.iter().map(|r| r.at).collect();
    let most = busiest(&arrivals, Duration::from_secs(1));
    assert!(most <= 6, "{most} requests within one second under 5/s");
    let first = arrivals.iter().min().expect("first");
    let last = arrivals.iter().max().expect("last");
    eprintln!(
        "5/s: 20 calls over {:?}, at most {most} in any second",
        *last - *first
    );
    assert!(
        *last - *first >= Duration::from_millis(3600),
        "20 calls at 5/s took only {:?}",
        *last - *first
    );
    for id in &ids {
        let run = server.finished_run(id).await;
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
        // Waiting for a turn is no attempt.
        assert_eq!(step(&run, "call")["attempts"], 1, "{run}");
    }
    let text = metrics(&server).await;
    let waits = text
        .lines()
        .find(|l| l.starts_with("hookflow_rate_limit_waits_total{bucket=\"paced/call\"}"))
        .unwrap_or_else(|| panic!("no wait counted: {text}"));
    let count: u64 = waits
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(count >= 15, "{waits}");
    assert!(
        text.contains("hookflow_rate_limit_wait_seconds_count{bucket=\"paced/call\"}"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_holds_the_bucket_and_the_run_succeeds() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/held", 1, 429, &[("retry-after", "2")], "slow down");
    let workflow = paced_workflow("held", &receiver, "{ rate: 20/s, burst: 5 }");
    let server = TestServer::start(&[("held.yaml", &workflow)]).await;
    let first = send_all(&server, "/hooks/held", 1).await;
    let refused = receiver.wait_for(1).await[0].at;
    // Another run using the bucket after the 429 waits as well.
    let second = send_all(&server, "/hooks/held", 1).await;
    let received = receiver.wait_for(3).await;
    for later in &received[1..] {
        assert!(
            later.at.duration_since(refused) >= Duration::from_millis(1900),
            "a request came {:?} after the 429",
            later.at.duration_since(refused)
        );
    }
    let run = server.finished_run(&first[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    // The 429 was a wait the receiver asked for, not a failed attempt.
    assert_eq!(step(&run, "call")["attempts"], 1, "{run}");
    let run = server.finished_run(&second[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let text = metrics(&server).await;
    assert!(
        text.contains("hookflow_rate_limit_throttled_total{bucket=\"held/call\"} 1"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_limit_in_the_settings_paces_two_workflows_calling_that_host() {
    let receiver = Receiver::start().await;
    let one = format!(
        "name: one\non: {{ webhook: {{ path: /hooks/one }} }}\nsteps:\n  - http: {{ url: \"{}\" }}\n",
        receiver.url("/one")
    );
    let two = format!(
        "name: two\non: {{ webhook: {{ path: /hooks/two }} }}\nsteps:\n  - http: {{ url: \"{}\" }}\n",
        receiver.url("/two")
    );
    let server = TestServer::start_with(&[("one.yaml", &one), ("two.yaml", &two)], |settings| {
        let mut limits = BTreeMap::new();
        limits.insert(
            "127.0.0.1".to_owned(),
            hookflow::run::RateLimit {
                per_second: 4.0,
                burst: 1,
            },
        );
        settings.rate_limits = limits;
    })
    .await;
    let mut ids = send_all(&server, "/hooks/one", 6).await;
    ids.extend(send_all(&server, "/hooks/two", 6).await);
    let received = receiver.wait_for(12).await;
    assert!(received.iter().any(|r| r.uri == "/one") && received.iter().any(|r| r.uri == "/two"));
    let arrivals: Vec<Instant> = received.iter().map(|r| r.at).collect();
    let most = busiest(&arrivals, Duration::from_secs(1));
    assert!(
        most <= 5,
        "{most} requests to the host within one second under 4/s"
    );
    for id in &ids {
        assert_eq!(server.finished_run(id).await["run"]["status"], "succeeded");
    }
    assert!(
        metrics(&server)
            .await
            .contains("hookflow_rate_limit_waits_total{bucket=\"host:127.0.0.1\"}")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_turn_waited_for_is_kept_across_a_restart() {
    let receiver = Receiver::start().await;
    // One call every 3 seconds: the second run waits durably, not in place.
    let workflow = paced_workflow("slow", &receiver, "20/min");
    let server = TestServer::start(&[("slow.yaml", &workflow)]).await;
    let ids = send_all(&server, "/hooks/slow", 2).await;
    let first = receiver.wait_for(1).await[0].at;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let runs = list_runs(&server).await;
        if runs.iter().any(|r| r["status"] == "retrying") {
            break;
        }
        assert!(Instant::now() < deadline, "no run waits: {runs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = server.stop().await;
    assert_eq!(receiver.received().len(), 1);
    let server = TestServer::start_in(dir).await;
    let received = receiver.wait_for(2).await;
    let gap = received[1].at.duration_since(first);
    assert!(
        gap >= Duration::from_millis(2900),
        "the waiting call went {gap:?} after the first, before its turn"
    );
    for id in &ids {
        let run = server.finished_run(id).await;
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
        assert_eq!(step(&run, "call")["attempts"], 1, "{run}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_postgres_share_one_limit() {
    let Some(schema) = TestSchema::create("rate_two_processes").await else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("shared.yaml"),
        paced_workflow("shared", &receiver, "4/s"),
    )
    .expect("write");
    let nodes = [
        ServeProcess::start_with(dir.path(), &["--store", &schema.url]),
        ServeProcess::start_with(dir.path(), &["--store", &schema.url]),
    ];
    let http = client();
    let mut sends = Vec::new();
    for n in 0..16 {
        let url = format!("{}/hooks/shared", nodes[n % 2].webhook);
        let http = http.clone();
        sends.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({ "n": n }))
                .send()
                .await
                .expect("send")
                .status()
        }));
    }
    for send in sends {
        assert_eq!(send.await.expect("task"), 202);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().len() < 16 {
        assert!(
            Instant::now() < deadline,
            "got {} of 16",
            receiver.received().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrivals: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    let most = busiest(&arrivals, Duration::from_secs(1));
    let span = arrivals
        .iter()
        .max()
        .zip(arrivals.iter().min())
        .map(|(l, f)| *l - *f);
    eprintln!("shared 4/s on two processes: 16 calls over {span:?}, at most {most} in any second");
    assert!(
        most <= 5,
        "{most} requests within one second under a shared 4/s"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = schema
            .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            .await;
        if done == 16 {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of 16 runs succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        schema
            .count("SELECT count(*) FROM runs WHERE status = 'failed'")
            .await,
        0
    );
    for node in nodes {
        node.terminate();
    }
}

//! The UI's charts: runs per minute by status (all workflows, one workflow, with p50/p95) and
//! refusals per minute by reason, read from the served pages' SVG and held to the runs the
//! test made, to `/api/runs`, and, in a real browser, to what is drawn (with screenshots).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::support::{Receiver, TestServer};

/// A workflow whose delivery fails when the payload aims at the receiver's `/down`, and whose
/// filter drops `n: 0`.
fn charts_workflow(receiver: &Receiver) -> String {
    format!(
        r#"
name: charts
on: {{ webhook: {{ path: "/hooks/charts" }} }}
steps:
  - name: check
    filter: event.body.n > 0
  - name: deliver
    http:
      url: "{}/{{{{ event.body.target }}}}"
      json: {{ n: "{{{{ event.body.n }}}}" }}
"#,
        receiver.url("")
    )
}

const OTHER_WORKFLOW: &str = r#"
name: other
on: { webhook: { path: "/hooks/other" } }
steps:
  - name: note
    log: "other {{ event.body.n }}"
"#;

/// The bars of the chart with `id` in a page: the sum of `data-count` per `data-<key>`.
fn bar_counts(html: &str, id: &str, key: &str) -> BTreeMap<String, u64> {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id} in {html}"));
    let svg = &html[start..start + html[start..].find("</svg>").expect("svg end")];
    let mut counts = BTreeMap::new();
    for rect in svg.split("<rect class=\"bar\"").skip(1) {
        let attr = |name: &str| {
            let from = rect.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
            rect[from..].split('"').next().expect("value").to_owned()
        };
        let count: u64 = attr("data-count").parse().expect("a count");
        assert!(count > 0, "a bar of nothing: {rect}");
        let height: f64 = attr("height").parse().expect("a height");
        assert!(height > 0.0, "{rect}");
        *counts.entry(attr(&format!("data-{key}"))).or_default() += count;
    }
    counts
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Runs by status as `/api/runs` lists them, for one workflow or all.
async fn api_counts(server: &TestServer, workflow: Option<&str>) -> BTreeMap<String, u64> {
    let query = workflow.map_or(String::new(), |w| format!("&workflow={w}"));
    let listed = server
        .admin_json(&format!("/api/runs?limit=500{query}"))
        .await;
    let mut counts = BTreeMap::new();
    for run in listed["runs"].as_array().expect("runs") {
        let status = run["status"].as_str().expect("status").to_owned();
        *counts.entry(status).or_default() += 1;
    }
    counts
}

/// A server with 3 succeeded, 2 failed and 2 filtered runs of `charts`, 1 run of `other`, and
/// 2 requests refused for no route and 1 for its method.
async fn server_with_history() -> (TestServer, Receiver) {
    let receiver = Receiver::start().await;
    receiver.reply("/down", 500, "text/plain", "the receiver is down");
    let workflow = charts_workflow(&receiver);
    let server = TestServer::start(&[
        ("charts.yaml", workflow.as_str()),
        ("other.yaml", OTHER_WORKFLOW),
    ])
    .await;
    let payloads = [
        json!({"n": 1, "target": "up"}),
        json!({"n": 2, "target": "up"}),
        json!({"n": 3, "target": "up"}),
        json!({"n": 4, "target": "down"}),
        json!({"n": 5, "target": "down"}),
        json!({"n": 0, "target": "up"}),
        json!({"n": 0, "target": "down"}),
    ];
    let mut runs = Vec::new();
    for payload in &payloads {
        let body = serde_json::to_vec(payload).expect("json");
        runs.extend(
            server
                .accepted("/hooks/charts", "application/json", body)
                .await,
        );
    }
    runs.extend(
        server
            .accepted("/hooks/other", "application/json", b"{\"n\": 1}".to_vec())
            .await,
    );
    for run in &runs {
        let status = server.finished_run(run).await["run"]["status"].clone();
        assert!(
            ["succeeded", "failed", "filtered"].contains(&status.as_str().unwrap_or("")),
            "{status}"
        );
    }
    for _ in 0..2 {
        let refused = server
            .post("/hooks/nowhere", "application/json", b"{}".to_vec())
            .await;
        assert_eq!(refused.status(), 404);
    }
    let wrong_method = server
        .client
        .get(format!("{}/hooks/charts", server.base))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong_method.status(), 405);
    (server, receiver)
}

async fn page(server: &TestServer, path: &str) -> String {
    let answer = server
        .client
        .get(format!("{}{path}", server.admin))
        .send()
        .await
        .expect("page");
    assert_eq!(answer.status(), 200, "{path}");
    answer.text().await.expect("html")
}

#[tokio::test]
async fn the_charts_count_the_runs_by_status_and_the_refusals_by_reason() {
    let (server, _receiver) = server_with_history().await;
    let all = counts(&[("failed", 2), ("filtered", 2), ("succeeded", 4)]);
    let charts = counts(&[("failed", 2), ("filtered", 2), ("succeeded", 3)]);
    assert_eq!(api_counts(&server, None).await, all);
    assert_eq!(api_counts(&server, Some("charts")).await, charts);

    for window in ["", "?window=day"] {
        let html = page(&server, &format!("/ui/workflows{window}")).await;
        assert_eq!(bar_counts(&html, "runs-chart", "status"), all, "{window}");
        assert!(html.contains("role=\"img\""));
        assert!(html.contains("aria-label=\"Runs by status, last"), "{html}");
        // The page keeps its table of workflows.
        assert!(html.contains("tr class=\"workflow-row\" data-workflow=\"charts\""));

        let html = page(&server, &format!("/ui/workflows/charts{window}")).await;
        assert_eq!(
            bar_counts(&html, "runs-chart", "status"),
            charts,
            "{window}"
        );
        // Seven runs ran to the end (filtered ones too): p50 and p95 are shown.
        assert!(html.contains("Durations of the 7 finished runs"), "{html}");
        assert!(html.contains("id=\"p50\"") && html.contains("id=\"p95\""));

        let html = page(&server, &format!("/ui/workflows/other{window}")).await;
        assert_eq!(
            bar_counts(&html, "runs-chart", "status"),
            counts(&[("succeeded", 1)])
        );

        let html = page(&server, &format!("/ui/rejected{window}")).await;
        assert_eq!(
            bar_counts(&html, "rejected-chart", "reason"),
            counts(&[("method_not_allowed", 1), ("no_route", 2)])
        );
        assert!(html.contains("tr class=\"rejected-row\""), "the list stays");
    }
    let day = page(&server, "/ui/workflows?window=day").await;
    assert!(day.contains("data-bucket-minutes=\"15\""));
    assert!(day.contains("id=\"window-hour\""));
    let missing = server
        .client
        .get(format!("{}/ui/workflows/nope", server.admin))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_in_a_real_browser_draw_the_stored_counts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = match crate::ui::browser_setup(&root) {
        Ok(ui_script) => ui_script.with_file_name("charts.mjs"),
        Err(why) => {
            crate::support::skip(
                "the browser test of the charts",
                &format!("{why} (.ci/run installs it)"),
            );
            return;
        }
    };
    let (server, _receiver) = server_with_history().await;
    let expected = json!({
        "/ui/workflows": {"chart": "runs-chart", "key": "status",
            "counts": api_counts(&server, None).await},
        "/ui/workflows/charts": {"chart": "runs-chart", "key": "status",
            "counts": api_counts(&server, Some("charts")).await},
        "/ui/rejected": {"chart": "rejected-chart", "key": "reason",
            "counts": {"no_route": 2, "method_not_allowed": 1}},
    });
    let shots = tempfile::tempdir().expect("tempdir");
    let shots_dir = shots.path().to_owned();
    let admin = server.admin.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&admin)
            .arg(expected.to_string())
            .arg(&shots_dir)
            .current_dir(script.parent().expect("tests/browser"))
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("charts browser test passed"), "{stdout}");
    println!("{stdout}");
    // Kept where a person can look at them.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("ui-screenshots");
    std::fs::create_dir_all(&target).expect("screenshot dir");
    for name in ["workflows", "workflow-charts", "workflows-day", "rejected"] {
        let shot = shots.path().join(format!("{name}.png"));
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        let kept = target.join(format!("{name}.png"));
        std::fs::write(&kept, &png).expect("copy the screenshot");
        println!(
            "screenshot: {} (copied to {})",
            shot.display(),
            kept.display()
        );
    }
    server.stop().await;
}

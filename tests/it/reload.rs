//! Hot reload of the real binary when the workflows folder itself goes: moved away, replaced by
//! a new folder, moved back, emptied, unreadable or replaced by a file. The last good set keeps
//! serving (webhooks answer 202, never 404) and the log and `/api/workflows` say why.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{ServeProcess, client};

const ORDERS: &str = "on: { webhook: { path: /hooks/orders } }\nsteps:\n  - log: order\n";
const ORDERS_V2: &str = "on: { webhook: { path: /hooks/orders/v2 } }\nsteps:\n  - log: order\n";
const REFUNDS: &str = "on: { webhook: { path: /hooks/refunds } }\nsteps:\n  - log: refund\n";

/// A `serve` process on `dir`, whose `./workflows` holds `files`, and the log read so far.
struct Served {
    dir: tempfile::TempDir,
    process: ServeProcess,
    http: reqwest::Client,
    log: Vec<String>,
}

impl Served {
    fn start(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        write_folder(&dir.path().join("workflows"), files);
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> Self {
        let process = ServeProcess::start(dir.path());
        let log = process.startup.clone();
        Self {
            dir,
            process,
            http: client(),
            log,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    async fn post(&self, path: &str) -> u16 {
        self.http
            .post(format!("{}{path}", self.process.webhook))
            .body("{}")
            .send()
            .await
            .expect("post")
            .status()
            .as_u16()
    }

    async fn workflows(&self) -> Json {
        self.http
            .get(format!("{}/api/workflows", self.process.admin))
            .send()
            .await
            .expect("GET /api/workflows")
            .json()
            .await
            .expect("json")
    }

    /// Poll `/api/workflows` until `done` says yes; fail after 20 s with the last answer.
    async fn wait_for(&self, what: &str, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.workflows().await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "never {what}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the last reload was refused with a problem whose message has `needle`.
    async fn wait_for_refusal(&self, needle: &str) -> Json {
        self.wait_for(&format!("a reload refused with `{needle}`"), |body| {
            body["reload"]["refused"] == true && problems(body).contains(needle)
        })
        .await
    }

    /// Wait until a reload was accepted and serves exactly the workflows `names`.
    async fn wait_for_set(&self, names: &[&str]) -> Json {
        self.wait_for(&format!("an accepted reload serving {names:?}"), |body| {
            body["reload"]["refused"] == false
                && !body["reload"]["at"].is_null()
                && served(body) == names
        })
        .await
    }

    /// Whether a line logged so far has every one of `parts`.
    fn logged(&mut self, parts: &[&str]) -> bool {
        self.log.extend(self.process.logs());
        self.log
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    }

    fn hangup(&self) {
        let hup = Command::new("kill")
            .args(["-HUP", &self.process.child.id().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(hup.success());
    }
}

fn write_folder(folder: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(folder).expect("mkdir");
    for (name, text) in files {
        std::fs::write(folder.join(name), text).expect("write workflow");
    }
}

/// The names of the workflows listed.
fn served(body: &Json) -> Vec<String> {
    body["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .map(|w| w["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Every problem of the last reload, as the UI prints them.
fn problems(body: &Json) -> String {
    body["reload"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["text"].as_str().expect("text"))
        .collect()
}

#[tokio::test]
async fn a_workflows_folder_moved_away_under_load_keeps_every_route_until_a_new_folder_takes_its_place()
 {
    let mut server = Served::start(&[("orders.yaml", ORDERS), ("refunds.yaml", REFUNDS)]);
    assert_eq!(server.post("/hooks/orders").await, 202);

    // Webhooks keep coming while the folder goes, as they would in production.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (http, url, stop) = (
            server.http.clone(),
            format!("{}/hooks/orders", server.process.webhook),
            Arc::clone(&stop),
        );
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) && statuses.len() < 5000 {
                assert!(Instant::now() < deadline, "the load never stopped");
                let response = http.post(&url).body("{}").send().await.expect("post");
                statuses.push(response.status().as_u16());
            }
            statuses
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::rename(server.path("workflows"), server.path("workflows.old")).expect("mv");
    let body = server.wait_for_refusal("is missing").await;
    // Keep the load on a little past the reload that found the folder gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.expect("load");
    let refused: Vec<&u16> = statuses.iter().filter(|s| **s != 202).collect();
    assert!(statuses.len() > 10, "too little load: {}", statuses.len());
    eprintln!("{} webhooks sent while the folder went", statuses.len());
    assert!(
        refused.is_empty(),
        "{} of {} webhooks were not accepted while the folder was gone: {:?}",
        refused.len(),
        statuses.len(),
        &refused[..refused.len().min(10)]
    );

    // The API says why and lists the set still served; so do the log and the UI.
    assert_eq!(served(&body), ["orders", "refunds"], "{body}");
    let text = problems(&body);
    assert!(text.contains("./workflows"), "{text}");
    assert!(
        text.contains("the 2 workflow(s) loaded before keep serving"),
        "{text}"
    );
    assert!(
        server.logged(&[
            "WARN",
            "reload refused",
            "path=./workflows",
            "found=\"missing\"",
            "kept=2"
        ]),
        "no warning about the missing folder in {:#?}",
        server.log
    );
    assert!(
        !server.logged(&["serving no workflows"]),
        "{:#?}",
        server.log
    );
    let page = server
        .http
        .get(format!("{}/ui/workflows", server.process.admin))
        .send()
        .await
        .expect("ui")
        .text()
        .await
        .expect("html");
    assert!(page.contains("was refused"), "{page}");
    assert!(page.contains("is missing"), "{page}");
    assert_eq!(server.post("/hooks/refunds").await, 202);

    // A new folder of the same name, with a changed workflow, moved into place (`mv new workflows`).
    write_folder(
        &server.path("workflows.new"),
        &[("orders.yaml", ORDERS_V2), ("refunds.yaml", REFUNDS)],
    );
    std::fs::rename(server.path("workflows.new"), server.path("workflows")).expect("mv");
    let body = server.wait_for_set(&["orders", "refunds"]).await;
    assert_eq!(body["reload"]["problems"], serde_json::json!([]), "{body}");
    assert_eq!(server.post("/hooks/orders/v2").await, 202);
    assert_eq!(server.post("/hooks/orders").await, 404);

    // The new folder is the one watched now: a change in it is loaded.
    std::fs::remove_file(server.path("workflows/refunds.yaml")).expect("rm");
    server.wait_for_set(&["orders"]).await;
    assert_eq!(server.post("/hooks/refunds").await, 404);
    let (status, _) = server.process.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn a_folder_moved_away_and_back_is_watched_again_and_sighup_keeps_the_set_while_it_is_gone() {
    let server = Served::start(&[("orders.yaml", ORDERS)]);
    std::fs::rename(server.path("workflows"), server.path("elsewhere")).expect("mv");
    let first = server.wait_for_refusal("is missing").await;

    // SIGHUP finds the same: the set stays, and the refusal is recorded again.
    server.hangup();
    let again = server
        .wait_for("a second refusal after SIGHUP", |body| {
            body["reload"]["refused"] == true && body["reload"]["at"] != first["reload"]["at"]
        })
        .await;
    assert!(problems(&again).contains("is missing"), "{again}");
    assert_eq!(served(&again), ["orders"]);
    assert_eq!(server.post("/hooks/orders").await, 202);

    std::fs::rename(server.path("elsewhere"), server.path("workflows")).expect("mv back");
    server.wait_for_set(&["orders"]).await;
    // The watch follows the folder that is back: an edit in it is loaded.
    std::fs::write(server.path("workflows/orders.yaml"), ORDERS_V2).expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.post("/hooks/orders/v2").await != 202 {
        assert!(
            Instant::now() < deadline,
            "the edit in the folder moved back was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.post("/hooks/orders").await, 404);
    let (status, _) = server.process.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn an_emptied_folder_keeps_the_last_set_and_a_restart_on_it_serves_none() {
    let mut server = Served::start(&[("orders.yaml", ORDERS), ("refunds.yaml", REFUNDS)]);
    std::fs::remove_file(server.path("workflows/refunds.yaml")).expect("rm");
    server.wait_for_set(&["orders"]).await;

    // The last workflow file goes: the set it leaves is kept, not emptied.
    std::fs::remove_file(server.path("workflows/orders.yaml")).expect("rm");
    let body = server.wait_for_refusal("holds no workflow files").await;
    assert_eq!(served(&body), ["orders"]);
    assert!(
        problems(&body).contains("restart hookflow on the empty folder"),
        "{body}"
    );
    assert_eq!(server.post("/hooks/orders").await, 202);
    assert!(
        server.logged(&["WARN", "found=\"no workflow files\"", "kept=1"]),
        "{:#?}",
        server.log
    );

    // A file added back is loaded as usual.
    std::fs::write(server.path("workflows/refunds.yaml"), REFUNDS).expect("write");
    server.wait_for_set(&["refunds"]).await;
    assert_eq!(server.post("/hooks/orders").await, 404);

    // Serving nothing on purpose: a server started on the empty folder serves nothing.
    std::fs::remove_file(server.path("workflows/refunds.yaml")).expect("rm");
    server.wait_for_refusal("holds no workflow files").await;
    let (status, _) = server.process.terminate();
    assert!(status.success());
    let server = Served::start_in(server.dir);
    assert!(
        server
            .process
            .startup
            .iter()
            .any(|l| l.contains("hookflow is serving") && l.contains("workflows=0")),
        "{:#?}",
        server.process.startup
    );
    assert_eq!(server.post("/hooks/refunds").await, 404);
    assert_eq!(served(&server.workflows().await), Vec::<String>::new());
    let (status, _) = server.process.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn an_unreadable_folder_or_a_file_in_its_place_keeps_the_last_set() {
    let mut server = Served::start(&[("orders.yaml", ORDERS)]);
    let folder = server.path("workflows");

    // Mode 000 stops a reader without privileges; root reads it anyway.
    set_mode(&folder, 0o000);
    if std::fs::read_dir(&folder).is_ok() {
        eprintln!(
            "SKIPPED (in part): a folder of mode 000 is readable here (running as root), so only a file in the folder's place is tried"
        );
    } else {
        let body = server.wait_for_refusal("cannot be read").await;
        assert_eq!(served(&body), ["orders"]);
        assert_eq!(server.post("/hooks/orders").await, 202);
    }
    set_mode(&folder, 0o755);

    // A file where the folder was: nothing to read workflows from.
    std::fs::remove_dir_all(&folder).expect("rm -r");
    std::fs::write(&folder, "not a folder\n").expect("write");
    let body = server.wait_for_refusal("is not a folder").await;
    assert_eq!(served(&body), ["orders"]);
    assert_eq!(server.post("/hooks/orders").await, 202);
    assert!(
        server.logged(&["WARN", "found=\"not a folder\"", "kept=1"]),
        "{:#?}",
        server.log
    );

    // The folder back in its place is loaded.
    std::fs::remove_file(&folder).expect("rm");
    write_folder(&server.path("workflows.new"), &[("refunds.yaml", REFUNDS)]);
    std::fs::rename(server.path("workflows.new"), &folder).expect("mv");
    server.wait_for_set(&["refunds"]).await;
    assert_eq!(server.post("/hooks/refunds").await, 202);
    let (status, _) = server.process.terminate();
    assert!(status.success());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

//! Store faults injected under the real binary: an unwritable log or database file, a removed
//! log, a replaced database file, a full disk, a lock held by another process, and a failure in
//! the middle of concurrent accepts. For each, every webhook answered `2xx` is stored and its run
//! finishes (after recovery or a restart), every one not stored was answered `503` with
//! `Retry-After`, and no run that had succeeded runs again. Each test prints its counts.
//!
//! The faults need root on a file system with `chattr` (ext4 and most others) and the right to
//! mount a tmpfs; where the machine refuses, the test says so on stderr and passes, except under
//! `CI=true`, where it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookflow::run::RunStatus;
use hookflow::store::{OpenMode, Store};
use serde_json::Value as Json;

use crate::support::{ServeProcess, client};

/// A workflow whose one step has no effect: what is counted is the store and the runs.
const WORKFLOW: &str = r#"
on:
  webhook:
    path: /hooks/fault
steps:
  - name: note
    log: "event {{ event.body.n }}"
"#;

/// How one webhook was answered.
#[derive(Debug, Clone)]
struct Answer {
    n: usize,
    status: u16,
    retry_after: bool,
    run_ids: Vec<String>,
}

/// A server under test with its folder, the answers it gave and the runs it finished.
struct Scenario {
    dir: tempfile::TempDir,
    store_path: PathBuf,
    server: Option<ServeProcess>,
    answers: Vec<Answer>,
    /// Run id → how many times a server logged it finished `succeeded`.
    succeeded: HashMap<String, usize>,
    /// Run id → how many times a server logged that it could not record the run's end (the
    /// run had not succeeded as far as the store knows, so running it again is its due).
    unrecorded_ends: HashMap<String, usize>,
    next: usize,
}

impl Scenario {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store_path = dir.path().join("hookflow.db");
        Self::start_with_store(dir, store_path)
    }

    fn start_with_store(dir: tempfile::TempDir, store_path: PathBuf) -> Self {
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(&workflows).expect("mkdir");
        std::fs::write(workflows.join("fault.yaml"), WORKFLOW).expect("workflow");
        let mut scenario = Self {
            dir,
            store_path,
            server: None,
            answers: Vec::new(),
            succeeded: HashMap::new(),
            unrecorded_ends: HashMap::new(),
            next: 0,
        };
        scenario.serve();
        scenario
    }

    fn serve(&mut self) {
        let store = self.store_path.display().to_string();
        self.server = Some(ServeProcess::start_with(
            self.dir.path(),
            &["--store", &store, "--log-format", "json"],
        ));
    }

    fn server(&self) -> &ServeProcess {
        self.server.as_ref().expect("a server is running")
    }

    /// Send `count` webhooks, `concurrency` at a time; their answers are kept.
    async fn send(&mut self, count: usize, concurrency: usize) -> Vec<Answer> {
        let url = format!("{}/hooks/fault", self.server().webhook);
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut sends = Vec::new();
        for n in self.next..self.next + count {
            let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
            let url = url.clone();
            sends.push(tokio::spawn(async move {
                let answer = send_one(&url, n).await;
                drop(permit);
                answer
            }));
        }
        self.next += count;
        let mut answers = Vec::new();
        for send in sends {
            answers.push(send.await.expect("join"));
        }
        self.answers.extend(answers.iter().cloned());
        answers
    }

    async fn ready(&self) -> (u16, String) {
        let response = client()
            .get(format!("{}/readyz", self.server().admin))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Poll readiness until it answers `status`.
    async fn wait_ready(&self, status: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (now, body) = self.ready().await;
            if now == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {now} ({body}), expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Read what the running server logged so far.
    fn collect_logs(&mut self) -> Vec<Json> {
        let lines = self.server().logs();
        self.count_finished(lines)
    }

    fn count_finished(&mut self, lines: Vec<String>) -> Vec<Json> {
        let parsed: Vec<Json> = lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        for line in &parsed {
            if line["message"] == "run finished"
                && line["status"] == "succeeded"
                && let Some(id) = line["span"]["run_id"].as_str()
            {
                *self.succeeded.entry(id.to_owned()).or_default() += 1;
            }
            if line["message"] == "cannot record the end of the run"
                && let Some(id) = line["run_id"].as_str()
            {
                *self.unrecorded_ends.entry(id.to_owned()).or_default() += 1;
            }
        }
        parsed
    }

    fn kill_hard(&mut self) {
        let server = self.server.take().expect("a server is running");
        let lines = server.logs();
        self.count_finished(lines);
        server.kill_hard();
    }

    fn terminate(&mut self) -> Vec<Json> {
        let server = self.server.take().expect("a server is running");
        let (status, lines) = server.terminate();
        assert!(status.success(), "serve exited with {status}");
        self.count_finished(lines)
    }

    /// Stop, start again on the same store, wait for every accepted run, stop; then check
    /// the promises and print the counts.
    async fn restart_and_check(&mut self, fault: &str) {
        if self.server.is_some() {
            self.kill_hard();
        }
        self.serve();
        self.wait_for_accepted_runs().await;
        self.terminate();
        self.check(fault).await;
    }

    /// Wait until the store holds every accepted run finished (the logs alone cannot tell: a
    /// run whose end was committed in the batch that found the files replaced was told it was
    /// not recorded, yet the saved copy holds it).
    async fn wait_for_accepted_runs(&mut self) {
        let store = Store::open(&self.store_path.display().to_string(), OpenMode::Read)
            .await
            .expect("open the store");
        let mut unfinished: Vec<String> = self
            .answers
            .iter()
            .flat_map(|a| a.run_ids.iter().cloned())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !unfinished.is_empty() {
            let mut still = Vec::new();
            for id in unfinished {
                let detail = store.run(&id).await.expect("read");
                if !detail.is_some_and(|d| d.run.status.is_final()) {
                    still.push(id);
                }
            }
            unfinished = still;
            assert!(
                Instant::now() < deadline,
                "accepted runs never finished: {unfinished:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.collect_logs();
    }

    async fn check(&self, fault: &str) {
        let store = Store::open(&self.store_path.display().to_string(), OpenMode::Read)
            .await
            .expect("open the store");
        let accepted: Vec<&Answer> = self.answers.iter().filter(|a| a.status == 202).collect();
        let refused: Vec<&Answer> = self.answers.iter().filter(|a| a.status != 202).collect();
        let mut lost = 0;
        for answer in &accepted {
            for id in &answer.run_ids {
                match store.run(id).await.expect("read") {
                    Some(detail) if detail.run.status == RunStatus::Succeeded => {}
                    _ => lost += 1,
                }
            }
        }
        let badly_refused: Vec<&&Answer> = refused
            .iter()
            .filter(|a| a.status != 503 || !a.retry_after)
            .collect();
        let stored_events = count_events(&self.store_path);
        let unrecorded = |id: &String| self.unrecorded_ends.get(id).copied().unwrap_or(0);
        let ran_again: Vec<(&String, &usize)> = self
            .succeeded
            .iter()
            .filter(|(id, n)| **n > 1 + unrecorded(id))
            .collect();
        println!(
            "fault {fault}: {} sent, {} answered 202, {} answered 503 with Retry-After, \
             {} events stored, lost {lost}, runs executed again after succeeding {}",
            self.answers.len(),
            accepted.len(),
            refused.len() - badly_refused.len(),
            stored_events,
            ran_again.len()
        );
        assert_eq!(lost, 0, "{fault}: accepted runs missing or unfinished");
        assert!(
            badly_refused.is_empty(),
            "{fault}: refused without 503 + Retry-After: {badly_refused:?}"
        );
        assert!(
            ran_again.is_empty(),
            "{fault}: runs that had succeeded ran again: {ran_again:?}"
        );
        assert!(
            stored_events >= accepted.len(),
            "{fault}: fewer events stored ({stored_events}) than accepted ({})",
            accepted.len()
        );
    }
}

async fn send_one(url: &str, n: usize) -> Answer {
    let response = client()
        .post(url)
        .header("content-type", "application/json")
        .body(format!("{{\"n\": {n}}}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Json = response.json().await.unwrap_or(Json::Null);
    Answer {
        n,
        status,
        retry_after,
        run_ids: body["run_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Events in the store file, counted by the `sqlite3` program's library through Python (on
/// every machine the suite runs on), which reads the file as it is on disk.
fn count_events(store: &Path) -> usize {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM events').fetchone()[0])",
        ])
        .arg(store)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "counting events: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a count")
}

/// A fault this machine cannot inject: said where a person reads it, and a failure in CI.
fn cannot_inject(what: &str) {
    crate::support::skip(what, "the fault test did not run on this machine");
}

/// `chattr +i` / `-i`: a file nobody may write, root included.
fn immutable(path: &Path, on: bool) -> bool {
    Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

fn wal(store: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", store.display()))
}

/// Makes a file immutable and takes it back on drop, so a failing test leaves no file behind
/// that its temporary folder cannot remove.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Self> {
        immutable(path, true).then(|| Self(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        immutable(&self.0, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_log_answers_503_until_it_is_writable_and_loses_nothing() {
    let mut scenario = Scenario::start();
    let first = scenario.send(1, 1).await;
    assert_eq!(first[0].status, 202);
    let Some(guard) = Immutable::set(&wal(&scenario.store_path)) else {
        return cannot_inject("chattr +i is refused here");
    };
    let during = scenario.send(5, 1).await;
    for answer in &during {
        assert_eq!(
            (answer.status, answer.retry_after),
            (503, true),
            "webhook {} was answered while the log could not be written",
            answer.n
        );
    }
    let reason = scenario.wait_ready(503).await;
    assert!(reason.contains("cannot write"), "{reason}");
    drop(guard);
    scenario.wait_ready(200).await;
    let after = scenario.send(3, 1).await;
    assert!(after.iter().all(|a| a.status == 202), "{after:?}");
    scenario.restart_and_check("unwritable log").await;
    assert_eq!(count_events(&scenario.store_path), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_file_loses_nothing() {
    let mut scenario = Scenario::start();
    scenario.send(5, 2).await;
    let Some(guard) = Immutable::set(&scenario.store_path) else {
        return cannot_inject("chattr +i is refused here");
    };
    scenario.send(20, 4).await;
    drop(guard);
    scenario.send(5, 2).await;
    scenario.restart_and_check("unwritable database file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_log_is_noticed_refused_and_its_commits_survive_a_restart() {
    let mut scenario = Scenario::start();
    let before = scenario.send(20, 4).await;
    assert!(before.iter().all(|a| a.status == 202));
    std::fs::remove_file(wal(&scenario.store_path)).expect("rm the log");
    // Sent before the server looked: each is either stored for good or refused.
    scenario.send(5, 5).await;
    let reason = scenario.wait_ready(503).await;
    assert!(reason.contains("was removed"), "{reason}");
    assert!(reason.contains("restart hookflow"), "{reason}");
    let refused = scenario.send(5, 1).await;
    assert!(
        refused.iter().all(|a| a.status == 503 && a.retry_after),
        "{refused:?}"
    );
    let logged = scenario.collect_logs();
    assert!(
        logged.iter().any(|l| l["level"] == "ERROR"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("was removed"))),
        "the removed log is not logged as an error"
    );
    scenario.restart_and_check("removed log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_database_file_is_refused_and_a_copy_of_everything_is_saved() {
    let mut scenario = Scenario::start();
    scenario.send(10, 2).await;
    let moved = scenario.dir.path().join("moved.db");
    std::fs::rename(&scenario.store_path, &moved).expect("mv");
    std::fs::copy(&moved, &scenario.store_path).expect("cp");
    let reason = scenario.wait_ready(503).await;
    assert!(reason.contains("replaced"), "{reason}");
    let refused = scenario.send(3, 1).await;
    assert!(refused.iter().all(|a| a.status == 503), "{refused:?}");
    // The reason names the copy; it holds every accepted event.
    let copy = reason
        .split_whitespace()
        .find(|w| w.contains(".saved-"))
        .map(|w| w.trim_end_matches([';', ',', '"', '}']))
        .unwrap_or_else(|| panic!("no saved copy named in {reason}"));
    assert_eq!(count_events(Path::new(copy)), 10);
    scenario.kill_hard();
    // The operator's part: the saved copy goes in place of the file.
    std::fs::rename(copy, &scenario.store_path).expect("restore");
    // The log and shared memory beside the path belong to the file that was moved away.
    let _ = std::fs::remove_file(wal(&scenario.store_path));
    let _ = std::fs::remove_file(format!("{}-shm", scenario.store_path.display()));
    scenario.restart_and_check("replaced database file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_when_space_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return cannot_inject("mounting a small tmpfs is refused here");
    }
    let _unmount = Unmount(disk.clone());
    let mut scenario = Scenario::start_with_store(dir, disk.join("hookflow.db"));
    assert!(scenario.send(5, 1).await.iter().all(|a| a.status == 202));
    // Fill the disk to the last byte.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let mut full_refused = 0;
    for answer in scenario.send(60, 4).await {
        if answer.status == 503 {
            full_refused += 1;
        }
    }
    assert!(full_refused > 0, "a full disk refused nothing");
    scenario.wait_ready(503).await;
    std::fs::remove_file(&filler).expect("free the disk");
    scenario.wait_ready(200).await;
    let after = scenario.send(5, 1).await;
    assert!(after.iter().all(|a| a.status == 202), "{after:?}");
    scenario.restart_and_check("full disk").await;
}

/// Unmounts the test's tmpfs when the test ends, however it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_process_answers_503_then_recovers() {
    let mut scenario = Scenario::start();
    scenario.send(3, 1).await;
    // Another program holds the write lock for 7 s: longer than a write waits for it.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); \
             c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(7); c.execute('ROLLBACK')",
        ])
        .arg(&scenario.store_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "locked");
    // Refused once a write has waited its 5 s; a write that got the lock after those 7 s was
    // stored.
    let during = scenario.send(4, 4).await;
    assert!(during.iter().any(|a| a.status == 503), "{during:?}");
    holder.wait().expect("the lock holder ends");
    scenario.wait_ready(200).await;
    assert!(scenario.send(3, 1).await.iter().all(|a| a.status == 202));
    scenario
        .restart_and_check("lock held by another process")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_middle_of_concurrent_accepts_loses_nothing() {
    let mut scenario = Scenario::start();
    scenario.send(1, 1).await;
    let load = Load::start(format!("{}/hooks/fault", scenario.server().webhook), 32);
    load.wait_for(|accepted, _| accepted >= 100).await;
    let Some(guard) = Immutable::set(&wal(&scenario.store_path)) else {
        load.stop().await;
        return cannot_inject("chattr +i is refused here");
    };
    load.wait_for(|_, refused| refused >= 20).await;
    drop(guard);
    let accepted_before = load.counts().0;
    load.wait_for(|accepted, _| accepted >= accepted_before + 100)
        .await;
    scenario.answers.extend(load.stop().await);
    scenario
        .restart_and_check("failure amid concurrent accepts")
        .await;
}

/// Webhooks sent without pause, `concurrency` at a time, until stopped.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    answers: Arc<std::sync::Mutex<Vec<Answer>>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, concurrency: usize) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(1_000_000));
        let senders = (0..concurrency)
            .map(|_| {
                let (stop, answers, next, url) = (
                    Arc::clone(&stop),
                    Arc::clone(&answers),
                    Arc::clone(&next),
                    url.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let answer = send_one(&url, n).await;
                        answers.lock().expect("answers").push(answer);
                    }
                })
            })
            .collect();
        Self {
            stop,
            answers,
            senders,
        }
    }

    /// Answers so far: (202, 503).
    fn counts(&self) -> (usize, usize) {
        let answers = self.answers.lock().expect("answers");
        let count = |status| answers.iter().filter(|a| a.status == status).count();
        (count(202), count(503))
    }

    async fn wait_for(&self, done: impl Fn(usize, usize) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (accepted, refused) = self.counts();
            if done(accepted, refused) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the load did not get there: {accepted} accepted, {refused} refused"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for sender in self.senders {
            sender.await.expect("join");
        }
        std::mem::take(&mut *self.answers.lock().expect("answers"))
    }
}

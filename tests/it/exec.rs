//! `exec` steps on a real server running real processes: argv passed exactly and never through a
//! shell, env/cwd/stdin, exit codes, output caps, timeouts that kill the process group, the
//! server setting that enables them, and the deploy-script example.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{TestServer, fixture, set_env, step};

const BIN: &str = env!("CARGO_BIN_EXE_hookflow");
const DISABLED: &str = "`exec` steps are disabled on this server; enable them with `exec: { enabled: true }` in hookflow.yaml";

/// A temporary directory with its real path (scripts compare it with `pwd -P`).
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().canonicalize().expect("canonical tempdir");
    (dir, path)
}

/// An executable `/bin/sh` script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn exec_server(workflow: &str) -> TestServer {
    TestServer::start_with(&[("wf.yaml", workflow)], |s| s.exec_enabled = true).await
}

/// Post `body` to `path` and wait for the run to finish.
async fn run_once(server: &TestServer, path: &str, body: &Json) -> Json {
    let ids = server
        .accepted(
            path,
            "application/json",
            serde_json::to_vec(body).expect("json"),
        )
        .await;
    server.finished_run(&ids[0]).await
}

#[tokio::test]
async fn arguments_arrive_exactly_and_payload_text_is_never_parsed_by_a_shell() {
    let (_keep, dir) = workdir();
    let args = script(
        &dir,
        "args.sh",
        r#"for a in "$@"; do printf '[%s]\n' "$a"; done
printf 'MSG=[%s]\n' "$MSG""#,
    );
    let canary = dir.join("canary");
    std::fs::write(&canary, "still here").expect("canary");
    let d = dir.display();
    // Each of these would create a PWNED_* file or remove the canary if a shell parsed it.
    let hostile = format!(
        "$(touch {d}/PWNED_subst); rm -f {c} ; `touch {d}/PWNED_tick` | touch {d}/PWNED_pipe && touch {d}/PWNED_and > {d}/PWNED_redirect\n$HOME * 'q' \"dq\" %s",
        c = canary.display()
    );
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/exec/argv }} }}
steps:
  - name: args
    exec:
      command: [/bin/sh, "{script}", "--", "{{{{ event.body.msg }}}}", "two words", "", "{{{{ event.body.n }}}}", "-{{{{ event.body.flag }}}}"]
      env: {{ MSG: "{{{{ event.body.msg }}}}" }}
"#,
        script = args.display()
    );
    let server = exec_server(&workflow).await;
    let run = run_once(
        &server,
        "/hooks/exec/argv",
        &json!({ "msg": hostile, "n": 42, "flag": "rf" }),
    )
    .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let args_step = step(&run, "args");
    assert_eq!(
        args_step["output"]["stdout"],
        json!(format!(
            "[--]\n[{hostile}]\n[two words]\n[]\n[42]\n[-rf]\nMSG=[{hostile}]\n"
        )),
        "{args_step}"
    );
    assert_eq!(args_step["output"]["exit_code"], 0);
    assert_eq!(
        args_step["input"]["command"],
        json!([
            "/bin/sh",
            args.display().to_string(),
            "--",
            hostile,
            "two words",
            "",
            "42",
            "-rf"
        ])
    );
    let pwned: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("PWNED"))
        .collect();
    assert!(pwned.is_empty(), "a shell ran payload text: {pwned:?}");
    assert!(
        canary.exists(),
        "a shell ran payload text: the canary is gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn env_cwd_and_stdin_reach_the_command_and_nothing_else_of_the_server() {
    let (_keep, dir) = workdir();
    let work = dir.join("work");
    std::fs::create_dir(&work).expect("mkdir");
    script(
        &work,
        "show.sh",
        r#"printf 'pwd=%s\n' "$(pwd -P)"
printf 'deploy_env=%s\n' "$DEPLOY_ENV"
printf 'run=%s step=%s\n' "$HOOKFLOW_RUN_ID" "$HOOKFLOW_STEP"
printf 'leak=%s\n' "${EXEC_IT_SERVER_ONLY-unset}"
printf 'path=%s\n' "$PATH"
[ "$TOKEN" = "S3CRET-EXEC-TOKEN" ] && echo token=ok
printf 'stdin='
cat"#,
    );
    set_env("EXEC_IT_SERVER_ONLY", "server-only-value");
    set_env("EXEC_IT_TOKEN", "s3cret-exec-token");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/exec/env }} }}
secrets: [EXEC_IT_TOKEN]
steps:
  - name: show
    exec:
      command: [./show.sh]
      cwd: "{work}"
      env:
        DEPLOY_ENV: "{{{{ event.body.env }}}}"
        TOKEN: "{{{{ secrets.EXEC_IT_TOKEN | upper }}}}"
      stdin: "{{{{ event.body }}}}"
  - name: bare-name
    exec:
      command: [printf, "%s-%s", a, "{{{{ event.body.env }}}}"]
"#,
        work = work.display()
    );
    let server = exec_server(&workflow).await;
    let body = json!({ "env": "production", "items": [1, 2], "note": "a \"quoted\" $(x)" });
    let run = run_once(&server, "/hooks/exec/env", &body).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let run_id = run["run"]["id"].as_str().expect("run id");

    let show = step(&run, "show");
    let stdout = show["output"]["stdout"].as_str().expect("stdout");
    let (head, stdin) = stdout.split_once("stdin=").expect("stdin marker");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines,
        [
            format!("pwd={}", work.display()).as_str(),
            "deploy_env=production",
            format!("run={run_id} step=show").as_str(),
            "leak=unset",
            format!("path={}", std::env::var("PATH").expect("PATH")).as_str(),
            "token=ok",
        ],
        "{show}"
    );
    let piped: Json = serde_json::from_str(stdin).expect("stdin is JSON");
    assert_eq!(piped, body);

    // The record: the transformed secret is masked, the rest is as rendered.
    let input = &show["input"];
    assert_eq!(input["command"], json!(["./show.sh"]));
    assert_eq!(input["cwd"], json!(work.display().to_string()));
    assert_eq!(input["env"]["DEPLOY_ENV"], "production");
    assert_eq!(input["env"]["TOKEN"], "***");
    assert_eq!(input["env"]["HOOKFLOW_RUN_ID"], json!(run_id));
    assert_eq!(input["env"]["HOOKFLOW_STEP"], "show");
    assert!(!show.to_string().contains("S3CRET-EXEC-TOKEN"), "{show}");

    // A bare name is looked up in the server's PATH.
    assert_eq!(step(&run, "bare-name")["output"]["stdout"], "a-production");
    server.stop().await;
}

#[tokio::test]
async fn exit_codes_signals_and_missing_programs_fail_the_step() {
    let (_keep, dir) = workdir();
    let exit = script(
        &dir,
        "exit.sh",
        r#"echo "out $1"
echo "boom $1" >&2
exit "$1""#,
    );
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "not a program").expect("write");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/exec/exit }} }}
steps:
  - name: listed
    exec: {{ command: [/bin/sh, "{exit}", "3"], expect_exit: [0, 3] }}
  - name: unlisted
    continue_on_error: true
    exec: {{ command: [/bin/sh, "{exit}", "4"] }}
  - name: zero-not-listed
    continue_on_error: true
    exec: {{ command: [/bin/sh, "{exit}", "0"], expect_exit: 2 }}
  - name: signal
    continue_on_error: true
    exec: {{ command: [/bin/sh, -c, 'kill -TERM $$'] }}
  - name: missing
    continue_on_error: true
    exec: {{ command: [/nonexistent/deploy.sh] }}
  - name: not-executable
    continue_on_error: true
    exec: {{ command: ["{plain}"] }}
  - name: not-in-path
    continue_on_error: true
    exec: {{ command: [no-such-program-for-hookflow] }}
  - name: report
    log: "{{{{ steps.listed.exit_code }}}} {{{{ steps.unlisted.exit_code }}}} {{{{ steps.unlisted.failed }}}}"
"#,
        exit = exit.display(),
        plain = plain.display()
    );
    let server = exec_server(&workflow).await;
    let run = run_once(&server, "/hooks/exec/exit", &json!({})).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");

    let listed = step(&run, "listed");
    assert_eq!(listed["status"], "succeeded", "{listed}");
    assert_eq!(listed["output"]["exit_code"], 3);
    assert_eq!(listed["output"]["stdout"], "out 3\n");
    assert_eq!(listed["output"]["stderr"], "boom 3\n");

    let unlisted = step(&run, "unlisted");
    assert_eq!(unlisted["status"], "failed", "{unlisted}");
    assert_eq!(unlisted["error"], "/bin/sh: exit code 4: boom 4");
    assert_eq!(unlisted["output"]["exit_code"], 4, "the output is kept");
    assert_eq!(unlisted["output"]["stdout"], "out 4\n");

    let zero = step(&run, "zero-not-listed");
    assert_eq!(zero["status"], "failed", "expect_exit replaces [0]: {zero}");
    assert_eq!(zero["error"], "/bin/sh: exit code 0: boom 0");

    let signal = step(&run, "signal");
    assert_eq!(signal["status"], "failed", "{signal}");
    assert_eq!(signal["error"], "/bin/sh: killed by signal 15 (SIGTERM)");
    assert_eq!(signal["output"]["signal"], "SIGTERM");
    assert_eq!(signal["output"]["exit_code"], Json::Null);

    let missing = step(&run, "missing");
    assert_eq!(missing["status"], "failed");
    let error = missing["error"].as_str().expect("error");
    assert!(
        error.contains("/nonexistent/deploy.sh: no such file"),
        "{error}"
    );

    let not_executable = step(&run, "not-executable");
    let error = not_executable["error"].as_str().expect("error");
    assert!(
        error.contains(&format!("{}: permission denied", plain.display())),
        "{error}"
    );

    let not_in_path = step(&run, "not-in-path");
    let error = not_in_path["error"].as_str().expect("error");
    assert!(
        error.starts_with("program 'no-such-program-for-hookflow' was not found in PATH"),
        "{error}"
    );

    // Booleans print as JSON writes them, not in Python's words.
    assert_eq!(step(&run, "report")["output"]["message"], "3 4 true");
    server.stop().await;
}

#[tokio::test]
async fn output_is_capped_while_the_pipe_is_drained_and_bad_utf8_is_replaced() {
    let workflow = r#"
on: { webhook: { path: /hooks/exec/output } }
steps:
  - name: big
    exec:
      # A megabyte through a 64 KiB pipe: the command only finishes if the pipe is drained.
      command: [/bin/sh, -c, 'yes aaaaaaa | head -c 1000000; echo done >&2']
      output_limit: 1KiB
      timeout: 20s
  - name: bytes
    exec:
      command: [/bin/sh, -c, 'printf "\377ok"']
"#;
    let server = exec_server(workflow).await;
    let run = run_once(&server, "/hooks/exec/output", &json!({})).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let big = &step(&run, "big")["output"];
    let stdout = big["stdout"].as_str().expect("stdout");
    assert_eq!(stdout.len(), 1024, "cut at output_limit");
    assert!(stdout.starts_with("aaaaaaa\naaaaaaa\n"), "{stdout:.40}");
    assert_eq!(big["stdout_truncated"], true);
    assert_eq!(big["stderr"], "done\n");
    assert_eq!(big["stderr_truncated"], false);
    assert_eq!(big["exit_code"], 0);

    assert_eq!(step(&run, "bytes")["output"]["stdout"], "\u{FFFD}ok");
    server.stop().await;
}

/// Whether a process is alive (a zombie waiting for its reaper counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

fn wait_dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let (_keep, dir) = workdir();
    // The background `sleep` is a grandchild of hookflow: killing only the script would leave it.
    let background = script(
        &dir,
        "background.sh",
        r#"sleep 60 &
echo $! > "$1"
wait"#,
    );
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/exec/timeout }} }}
steps:
  - name: own-timeout
    continue_on_error: true
    exec:
      command: [/bin/sh, "{script}", "{dir}/exec.pid"]
      timeout: 500ms
  - name: step-timeout
    continue_on_error: true
    timeout: 500ms
    exec:
      command: [/bin/sh, "{script}", "{dir}/step.pid"]
"#,
        script = background.display(),
        dir = dir.display()
    );
    let server = exec_server(&workflow).await;
    let started = Instant::now();
    let run = run_once(&server, "/hooks/exec/timeout", &json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not killed on time"
    );
    assert_eq!(run["run"]["status"], "succeeded", "{run}");

    let own = step(&run, "own-timeout");
    assert_eq!(own["status"], "failed", "{own}");
    assert_eq!(
        own["error"],
        "/bin/sh: timed out after 500ms; its process group was killed"
    );
    assert_eq!(own["output"]["signal"], "SIGKILL");
    let generic = step(&run, "step-timeout");
    assert_eq!(generic["status"], "failed", "{generic}");
    assert_eq!(generic["error"], "timed out after 500ms");

    for file in ["exec.pid", "step.pid"] {
        let pid: u32 = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .parse()
            .expect("a pid");
        assert!(
            wait_dead(pid),
            "{file}: the grandchild {pid} outlived the step"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn background_processes_do_not_outlive_a_command_that_exited() {
    let (_keep, dir) = workdir();
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/exec/leftover }} }}
steps:
  - name: leaves-a-child
    exec:
      # The child keeps stdout open; the step still ends when the shell exits.
      command: [/bin/sh, -c, 'sleep 60 & echo $! > "$1"; echo started', sh, "{dir}/left.pid"]
"#,
        dir = dir.display()
    );
    let server = exec_server(&workflow).await;
    let started = Instant::now();
    let run = run_once(&server, "/hooks/exec/leftover", &json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the child"
    );
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(
        step(&run, "leaves-a-child")["output"]["stdout"],
        "started\n"
    );
    let pid: u32 = std::fs::read_to_string(dir.join("left.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        wait_dead(pid),
        "the background child {pid} was left running"
    );
    server.stop().await;
}

const EXEC_WORKFLOW: &str = r#"on: { webhook: { path: /hooks/exec/off } }
steps:
  - name: deploy
    exec:
      command: [/bin/echo, "{{ event.body.x }}"]
"#;

#[test]
fn validate_rejects_exec_unless_the_config_enables_it() {
    let (_keep, dir) = workdir();
    let file = dir.join("wf.yaml");
    std::fs::write(&file, EXEC_WORKFLOW).expect("write");
    // In a directory without hookflow.yaml: exec is off.
    let validate = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(&dir)
            .env_remove("HOOKFLOW_CONFIG")
            .arg("validate")
            .arg(&file)
            .args(extra)
            .output()
            .expect("run hookflow validate")
    };
    let output = validate(&[]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("{}:4:5: error: {DISABLED}", file.display())),
        "points at the `exec` key:\n{report}"
    );

    // ./hookflow.yaml is read...
    std::fs::write(dir.join("hookflow.yaml"), "exec: { enabled: true }\n").expect("write");
    let output = validate(&[]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.starts_with("ok:"), "{report}");

    // ...and --config wins over it.
    let off = dir.join("off.yaml");
    std::fs::write(&off, "exec: { enabled: false }\n").expect("write");
    let output = validate(&["--config", off.to_str().expect("utf-8 path")]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains(DISABLED), "{report}");
}

#[test]
fn serve_refuses_to_start_with_exec_disabled() {
    let (_keep, dir) = workdir();
    let workflows = dir.join("workflows");
    std::fs::create_dir(&workflows).expect("mkdir");
    std::fs::write(workflows.join("wf.yaml"), EXEC_WORKFLOW).expect("write");
    let mut child = Command::new(BIN)
        .current_dir(&dir)
        .env_remove("HOOKFLOW_CONFIG")
        .env_remove("RUST_LOG")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve started although a workflow uses `exec` and exec is disabled");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(DISABLED), "{stderr}");
    assert!(stderr.contains("wf.yaml:4:5"), "{stderr}");
    assert!(!dir.join("hookflow.db").exists(), "nothing was started");
}

#[test]
fn every_problem_of_an_exec_step_is_reported_in_one_pass() {
    let text = r#"steps:
  - exec:
      command: ["{{ event.body.program }}", ok]
      cwd: "/srv/{{ event.body.repo }}"
      env: { 1BAD: x, GOOD: "{{ event.body.v }}", A-B: y }
      expect_exit: [0, 256]
      output_limit: 1GiB
      timeout: 0s
      shell: true
  - exec:
      command: git pull --rebase
  - exec: { command: [] }
  - exec: { cwd: /tmp }
"#;
    let options = hookflow::workflow::CompileOptions {
        exec_enabled: true,
        ..Default::default()
    };
    let loaded = hookflow::workflow::load_sources(
        vec![hookflow::diag::SourceFile::new("wf.yaml", text)],
        &options,
    );
    let found: Vec<(usize, String)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.span.line, d.message.clone()))
        .collect();
    let expect = [
        (3, "the program must be written out, not a template"),
        (4, "`cwd` must be written out, not a template"),
        (5, "'1BAD' is not an environment variable name"),
        (5, "'A-B' is not an environment variable name"),
        (6, "`expect_exit` takes exit codes"),
        (7, "`output_limit` is at most 16MiB"),
        (8, "`timeout` must be longer than 0"),
        (9, "unknown key 'shell' in `exec`"),
        (11, "`command` must be a list"),
        (12, "`command` is empty"),
        (13, "`exec` is missing the required key 'command'"),
    ];
    for (line, message) in expect {
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == line && m.starts_with(message)),
            "no error {message:?} on line {line}; got {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    let hint = loaded
        .diagnostics
        .iter()
        .find(|d| d.message.starts_with("`command` must be a list"))
        .and_then(|d| d.hint.clone());
    assert_eq!(
        hint.as_deref(),
        Some(r#"write `command: ["git", "pull", "--rebase"]`"#)
    );
}

// --- the deploy-script example ---

fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/deploy-script")
}

/// `hookflow run` of the example with its own hookflow.yaml: (outcome, trace).
fn run_example(payload: &Path, dry_run: bool) -> (Json, String) {
    let dir = example_dir();
    let mut command = Command::new(BIN);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .arg(dir.join("workflow.yaml"))
        .arg("--config")
        .arg(dir.join("hookflow.yaml"))
        .arg("--payload")
        .arg(payload)
        .args(["-H", "X-GitHub-Event: push"]);
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("run hookflow");
    let trace = String::from_utf8_lossy(&output.stderr).into_owned();
    let outcome = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no outcome ({e}):\n{trace}"));
    (outcome, trace)
}

/// The JSON printed after `label` (`input` or `output`) of a step in a `hookflow run` trace.
fn traced(trace: &str, step: &str, label: &str) -> Json {
    let start = trace
        .find(&format!("] {step} ("))
        .unwrap_or_else(|| panic!("no step {step}:\n{trace}"));
    let rest = &trace[start..];
    let at = rest
        .find(&format!("    {label} "))
        .unwrap_or_else(|| panic!("no {label} for {step}:\n{trace}"));
    let json = &rest[at + label.len() + 5..];
    serde_json::Deserializer::from_str(json)
        .into_iter::<Json>()
        .next()
        .expect("a JSON value")
        .expect("valid JSON")
}

/// A changed payload in `<tempdir>/payload.json` (the extension makes it JSON for `hookflow run`).
fn variant(payload: &Json) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("payload.json");
    std::fs::write(&path, serde_json::to_vec(payload).expect("json")).expect("write");
    (dir, path)
}

#[test]
fn deploy_script_example_dry_runs_the_pushed_commit_and_runs_the_script() {
    let payload: Json = serde_json::from_slice(&fixture("github/push.json")).expect("json");
    let sha = payload["after"].as_str().expect("after");

    let (outcome, trace) = run_example(&example_dir().join("payload.json"), true);
    assert_eq!(outcome["status"], "succeeded", "{trace}");
    let input = traced(&trace, "deploy", "input");
    assert_eq!(
        input["command"],
        json!(["./deploy.sh", "--", sha, "master"])
    );
    assert_eq!(input["cwd"], "examples/deploy-script");
    assert_eq!(input["env"]["DEPLOY_REPOSITORY"], "Codertocat/Hello-World");
    // Nothing runs: the output is a sample of a command that exited 0 without output.
    let output = traced(&trace, "deploy", "output");
    assert_eq!(output["exit_code"], 0, "{trace}");
    assert_eq!(output["stdout"], "", "{trace}");
    assert!(
        trace.contains("answer a sample of the real answer (nothing was sent)"),
        "{trace}"
    );

    // Not a dry run: the example script really runs, from the repository root.
    let (outcome, trace) = run_example(&example_dir().join("payload.json"), false);
    assert_eq!(outcome["status"], "succeeded", "{trace}");
    let output = traced(&trace, "deploy", "output");
    assert_eq!(output["exit_code"], 0, "{trace}");
    assert_eq!(
        output["stdout"],
        json!(format!(
            "would deploy {sha} of Codertocat/Hello-World (master), pushed by Codertocat\n"
        ))
    );
}

#[test]
fn deploy_script_example_filters_arguments_that_could_be_options() {
    let mut payload: Json = serde_json::from_slice(&fixture("github/push.json")).expect("json");
    // A branch named like an option, on a repository whose default branch it is.
    for branch in ["--upload-pack=touch /tmp/x", "-rf", "main;reboot"] {
        payload["ref"] = json!(format!("refs/heads/{branch}"));
        payload["repository"]["default_branch"] = json!(branch);
        let (_keep, file) = variant(&payload);
        let (outcome, trace) = run_example(&file, true);
        assert_eq!(outcome["status"], "filtered", "{branch}: {trace}");
        assert!(trace.contains("] safe-arguments ("), "{trace}");
        assert!(!trace.contains("] deploy ("), "{branch}: {trace}");
    }
}

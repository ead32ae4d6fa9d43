//! `runs cancel`, `workflows pause` and `workflows resume`: clients of a running server's
//! admin API, naming the caller `cli:<user>` (`X-Hookflow-Actor`).

use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value as Json;

use super::{AdminServer, WorkflowsArgs, WorkflowsCommand};

pub async fn workflows(args: WorkflowsArgs) -> anyhow::Result<ExitCode> {
    let (name, reason, server, action) = match args.command {
        WorkflowsCommand::Pause {
            name,
            reason,
            server,
        } => (name, reason, server, "pause"),
        WorkflowsCommand::Resume {
            name,
            reason,
            server,
        } => (name, reason, server, "resume"),
    };
    let path = format!("/api/workflows/{}/{action}", url_segment(&name));
    let body = post(&server, &path, reason.as_deref()).await?;
    let changed = body["changed"].as_bool().unwrap_or(false);
    match (action, changed) {
        ("pause", true) => println!("{name} paused: its runs wait until it is resumed"),
        ("pause", false) => println!(
            "{name} was paused already (since {}, by {})",
            body["since"].as_str().unwrap_or("?"),
            body["by"].as_str().unwrap_or("?")
        ),
        (_, true) => println!("{name} resumed: its queued runs start"),
        (_, false) => println!("{name} was not paused"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `runs cancel ID [--reason TEXT]`.
pub async fn cancel(
    id: &str,
    reason: Option<&str>,
    server: &AdminServer,
) -> anyhow::Result<ExitCode> {
    let path = format!("/api/runs/{}/cancel", url_segment(id));
    let run = post(server, &path, reason).await?;
    let run_id = run["id"].as_str().unwrap_or(id);
    if run["status"] == "cancelled" {
        println!(
            "run {run_id} cancelled ({})",
            run["error"].as_str().unwrap_or_default()
        );
    } else {
        println!(
            "run {run_id} is {}: it stops at its next step",
            run["status"].as_str().unwrap_or("running")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// POST `path` with an optional reason; the JSON answer, or the server's error.
async fn post(server: &AdminServer, path: &str, reason: Option<&str>) -> anyhow::Result<Json> {
    crate::effects::http::install_crypto_provider();
    let url = format!("{}{path}", server.admin.trim_end_matches('/'));
    let body = match reason {
        Some(reason) => serde_json::json!({ "reason": reason }),
        None => serde_json::json!({}),
    };
    let mut request = reqwest::Client::new()
        .post(&url)
        .header(crate::http::pause::ACTOR_HEADER, actor())
        .json(&body);
    if let Some(token) = &server.admin_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the server at {} (is `hookflow serve` running?): {e}",
            server.admin
        )
    })?;
    let status = response.status();
    let body: Json = response.json().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    bail!(
        "{}",
        body["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the server answered {status}"))
    )
}

/// `cli:<user>`, or `cli` when the user is unknown.
fn actor() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .map(|user| format!("cli:{user}"))
        .unwrap_or_else(|_| "cli".to_owned())
}

/// Names and ids are letters, digits, '-', '_' and '.'; anything else is escaped.
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

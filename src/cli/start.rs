//! `hookflow start`: start a run of a workflow by hand through a running server's admin API.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::StartArgs;

pub async fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    let payload = match args.payload.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the payload from standard input")?;
            bytes
        }
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read the payload {path}"))?
        }
    };
    if !payload.iter().all(u8::is_ascii_whitespace)
        && let Err(err) = serde_json::from_slice::<serde_json::Value>(&payload)
    {
        bail!("the payload must be JSON: {err}");
    }
    crate::effects::http::install_crypto_provider();
    let url = format!(
        "{}/api/workflows/{}/start",
        args.admin.trim_end_matches('/'),
        url_segment(&args.workflow)
    );
    let started_by = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .map(|user| format!("cli:{user}"))
        .unwrap_or_else(|_| "cli".to_owned());
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hookflow-started-by", started_by)
        .body(payload);
    if let Some(token) = &args.admin_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the server at {} (is `hookflow serve` running?): {e}",
            args.admin
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        let run_id = body["run_id"].as_str().unwrap_or_default();
        println!("{run_id}");
        eprintln!(
            "started {}: run {run_id} (see `hookflow runs show {run_id}`)",
            args.workflow
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reason = body["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the server answered {status}"));
    bail!("cannot start {}: {reason}", args.workflow)
}

/// Workflow names are letters, digits, '-', '_' and '.'; anything else is escaped.
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

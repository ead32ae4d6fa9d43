//! `hookflow runs replay-all`: a workflow's finished runs that match, replayed at a rate through
//! a running server (`POST /api/workflows/{name}/replay`), or only counted with `--preview`.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value as Json, json};

/// What to replay, as the command line gave it.
pub struct ReplayAll {
    pub workflow: String,
    pub ask: Json,
    pub admin: String,
    pub admin_token: Option<String>,
}

pub async fn replay_all(request: ReplayAll) -> anyhow::Result<ExitCode> {
    crate::effects::http::install_crypto_provider();
    let url = format!(
        "{}/api/workflows/{}/replay",
        request.admin.trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(request.workflow.as_bytes()).collect::<String>()
    );
    let mut call = reqwest::Client::new().post(&url).json(&request.ask);
    if let Some(token) = &request.admin_token {
        call = call.bearer_auth(token);
    }
    let response = call.send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the server at {} (is `hookflow serve` running?): {e}",
            request.admin
        )
    })?;
    let status = response.status();
    let body: Json = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{}",
            body["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the server answered {status}"))
        );
    }
    report(&request.workflow, &body);
    Ok(ExitCode::SUCCESS)
}

fn report(workflow: &str, body: &Json) {
    let matched = body["matched"].as_u64().unwrap_or(0);
    if body["preview"] == json!(true) {
        println!("{matched} run(s) of {workflow} match (nothing replayed):");
        for id in body["run_ids"].as_array().into_iter().flatten() {
            println!("  {}", id.as_str().unwrap_or_default());
        }
    } else {
        println!(
            "replaying {matched} run(s) of {workflow}, {} a second (about {:.0} s); `hookflow runs list --workflow {workflow}` shows them",
            body["rate"].as_f64().unwrap_or(0.0),
            body["seconds"].as_f64().unwrap_or(0.0)
        );
    }
}

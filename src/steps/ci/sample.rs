//! What each provider answers a build it started, in the shape its API documents, for dry runs
//! and tests: later steps read `steps.build.url` and the provider's own fields from it.

use super::*;

/// The answer the provider would give `rendered` on success, with example values.
pub(super) fn answer(rendered: &RenderedCi) -> HttpResponse {
    let url = rendered.url.as_str();
    match rendered.provider {
        Provider::GithubActions => json_answer(200, github_actions(url)),
        Provider::GithubDispatch => empty_answer(204, Vec::new()),
        Provider::Gitlab => json_answer(201, gitlab(url)),
        Provider::Jenkins => empty_answer(201, vec![("location".into(), jenkins_queue(url))]),
        Provider::Buildkite => json_answer(201, buildkite(url)),
        Provider::Circleci => json_answer(201, circleci()),
        Provider::Generic => json_answer(200, serde_json::json!({})),
    }
}

fn json_answer(status: u16, body: Json) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn empty_answer(status: u16, headers: Vec<(String, String)>) -> HttpResponse {
    HttpResponse {
        status,
        headers,
        body: Vec::new(),
    }
}

/// The text of `url` before `marker`, or the whole URL.
fn before<'a>(url: &'a str, marker: &str) -> &'a str {
    url.find(marker).map_or(url, |at| &url[..at])
}

/// `POST .../repos/O/R/actions/workflows/W/dispatches` with `return_run_details`.
fn github_actions(url: &str) -> Json {
    let repo_api = before(url, "/actions/workflows/");
    let run_url = format!("{repo_api}/actions/runs/1");
    let html_url = match repo_api.split_once("/repos/") {
        Some((api, repo)) => {
            let site = api.replace("://api.", "://").replace("/api/v3", "");
            format!("{site}/{repo}/actions/runs/1")
        }
        None => run_url.clone(),
    };
    serde_json::json!({ "workflow_run_id": 1, "run_url": run_url, "html_url": html_url })
}

/// `POST {base}/api/v4/projects/{id}/trigger/pipeline` (or `/pipeline`).
fn gitlab(url: &str) -> Json {
    let base = before(url, "/api/v4/");
    let project = url
        .split("/projects/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("group%2Fproject")
        .replace("%2F", "/")
        .replace("%2f", "/");
    serde_json::json!({
        "id": 1,
        "iid": 1,
        "status": "created",
        "source": "trigger",
        "web_url": format!("{base}/{project}/-/pipelines/1"),
    })
}

/// Jenkins answers `201` with the queue item in `Location`.
fn jenkins_queue(url: &str) -> String {
    format!("{}/queue/item/1/", before(url, "/job/"))
}

/// `POST https://api.buildkite.com/v2/organizations/{org}/pipelines/{pipeline}/builds`.
fn buildkite(url: &str) -> Json {
    let path = url
        .split("/organizations/")
        .nth(1)
        .unwrap_or("org/pipelines/pipeline");
    let mut parts = path.split('/');
    let org = parts.next().unwrap_or("org");
    let pipeline = parts.nth(1).unwrap_or("pipeline");
    serde_json::json!({
        "id": "01890c6a-0000-4000-8000-000000000001",
        "number": 1,
        "state": "scheduled",
        "web_url": format!("https://buildkite.com/{org}/{pipeline}/builds/1"),
    })
}

fn circleci() -> Json {
    serde_json::json!({
        "id": "5034460f-c7c4-4c43-9457-de07e2029e7b",
        "number": 1,
        "state": "created",
        "created_at": "2026-01-01T00:00:00Z",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_answer_reads_like_the_provider() {
        let github = github_actions(
            "https://api.github.com/repos/acme/app/actions/workflows/build.yml/dispatches",
        );
        assert_eq!(
            github["html_url"],
            "https://github.com/acme/app/actions/runs/1"
        );
        assert_eq!(
            github["run_url"],
            "https://api.github.com/repos/acme/app/actions/runs/1"
        );
        let gitlab =
            gitlab("https://gitlab.example.test/api/v4/projects/acme%2Fapp/trigger/pipeline");
        assert_eq!(
            gitlab["web_url"],
            "https://gitlab.example.test/acme/app/-/pipelines/1"
        );
        assert_eq!(
            jenkins_queue("https://ci.example.test/job/app/buildWithParameters"),
            "https://ci.example.test/queue/item/1/"
        );
        let buildkite =
            buildkite("https://api.buildkite.com/v2/organizations/acme/pipelines/app/builds");
        assert_eq!(
            buildkite["web_url"],
            "https://buildkite.com/acme/app/builds/1"
        );
    }
}

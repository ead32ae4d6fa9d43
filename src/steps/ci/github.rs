//! `ci.github_actions` (workflow_dispatch) and `ci.github_dispatch` (repository_dispatch):
//! GitHub's REST API, on github.com or a GitHub Enterprise Server (`base_url`).

use serde_json::{Map, Value as Json};

use super::{
    Endpoint, Provider, RenderedCi, encode_segment, literal, optional_map, path_part, render_map,
    required_text,
};
use crate::lang::compile::{Compiler, Fields};
use crate::lang::yaml::Node;
use crate::steps::{StepError, StepIdentity};
use crate::template::{Scope, ValueTemplate};

/// The keys of `ci.github_actions`.
pub const ACTIONS_KEYS: &[&str] = &[
    "repo",
    "workflow",
    "ref",
    "inputs",
    "return_run_details",
    "token",
    "api_version",
    "base_url",
    "timeout",
];
/// The keys of `ci.github_dispatch`.
pub const DISPATCH_KEYS: &[&str] = &[
    "repo",
    "event_type",
    "client_payload",
    "token",
    "api_version",
    "base_url",
    "timeout",
];
pub const DEFAULT_BASE_URL: &str = "https://api.github.com";
/// The REST API version hookflow's requests are written against.
pub const DEFAULT_API_VERSION: &str = "2022-11-28";

/// What both GitHub calls share: the repository, the token and where the API is.
#[derive(Debug)]
struct Api {
    repo: ValueTemplate,
    token: ValueTemplate,
    api_version: String,
    endpoint: Endpoint,
}

impl Api {
    fn compile(c: &mut Compiler, fields: &Fields<'_>) -> Option<Self> {
        let repo_node = fields.get("repo")?;
        let repo = c.text(repo_node, "`repo`")?;
        if let Some(text) = literal(&repo)
            && let Err(problem) = owner_and_name(text)
        {
            c.error(repo_node.span.clone(), problem);
            return None;
        }
        let api_version = match fields.get("api_version") {
            Some(n) => c.string(n, "`api_version`")?,
            None => DEFAULT_API_VERSION.to_owned(),
        };
        Some(Self {
            repo,
            token: required_text(c, fields, "token")?,
            api_version,
            endpoint: Endpoint::compile(c, fields)?,
        })
    }

    /// `{base}/repos/{owner}/{repo}`.
    fn repo_url(&self, scope: &Scope<'_>) -> Result<String, StepError> {
        let base = self.endpoint.base(scope, DEFAULT_BASE_URL)?;
        let repo = self.repo.render_string(scope)?;
        let (owner, name) = owner_and_name(&repo).map_err(StepError::permanent)?;
        Ok(format!(
            "{base}/repos/{}/{}",
            encode_segment(owner),
            encode_segment(name)
        ))
    }

    /// The headers GitHub documents for every REST call, and the JSON body.
    fn request(
        &self,
        provider: Provider,
        url: String,
        body: Json,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let token = self.token.render_string(scope)?;
        RenderedCi::post(provider, url, self.endpoint.timeout)
            .header("Accept", "application/vnd.github+json")
            .credential_header(
                "Authorization",
                format!("Bearer {token}"),
                "Bearer ***",
                token,
            )
            .header("X-GitHub-Api-Version", self.api_version.clone())
            .json(body)
            .map(|r| r.idempotency_key(id))
    }
}

/// `owner/name`, both names (not empty, not `.` or `..`), nothing else.
fn owner_and_name(repo: &str) -> Result<(&str, &str), String> {
    let is_name = |part: &str| !matches!(part, "" | "." | "..") && !part.contains('/');
    match repo.trim().split_once('/') {
        Some((owner, name)) if is_name(owner) && is_name(name) => Ok((owner, name)),
        _ => Err(format!(
            "`repo` must be 'owner/name' (like 'octo-org/octo-repo'), not '{repo}'"
        )),
    }
}

/// `POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches` with `{ref, inputs}`.
#[derive(Debug)]
pub struct Actions {
    api: Api,
    workflow: ValueTemplate,
    git_ref: ValueTemplate,
    inputs: Option<Vec<(String, ValueTemplate)>>,
    return_run_details: Option<bool>,
}

impl Actions {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(
            node,
            "`ci.github_actions`",
            ACTIONS_KEYS,
            &["repo", "workflow", "ref", "token"],
        )?;
        let return_run_details = match fields.get("return_run_details") {
            Some(n) => Some(c.bool(n, "`return_run_details`")?),
            None => None,
        };
        Some(Self {
            workflow: required_text(c, &fields, "workflow")?,
            git_ref: required_text(c, &fields, "ref")?,
            inputs: optional_map(c, &fields, "inputs")?,
            return_run_details,
            api: Api::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let workflow = path_part(&self.workflow, scope, "workflow")?;
        let url = format!(
            "{}/actions/workflows/{}/dispatches",
            self.api.repo_url(scope)?,
            encode_segment(workflow.trim())
        );
        let mut body = Map::new();
        body.insert(
            "ref".into(),
            Json::String(self.git_ref.render_string(scope)?),
        );
        if let Some(inputs) = &self.inputs {
            body.insert("inputs".into(), Json::Object(render_map(inputs, scope)?));
        }
        // Sent only when asked: older GitHub Enterprise Server versions answer 400 to it.
        if let Some(details) = self.return_run_details {
            body.insert("return_run_details".into(), Json::Bool(details));
        }
        self.api
            .request(Provider::GithubActions, url, Json::Object(body), scope, id)
    }
}

/// `POST /repos/{owner}/{repo}/dispatches` with `{event_type, client_payload}`.
#[derive(Debug)]
pub struct Dispatch {
    api: Api,
    event_type: ValueTemplate,
    client_payload: Option<ValueTemplate>,
}

impl Dispatch {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(
            node,
            "`ci.github_dispatch`",
            DISPATCH_KEYS,
            &["repo", "event_type", "token"],
        )?;
        let client_payload = match fields.get("client_payload") {
            Some(n) => Some(c.value(n)?),
            None => None,
        };
        Some(Self {
            event_type: required_text(c, &fields, "event_type")?,
            client_payload,
            api: Api::compile(c, &fields)?,
        })
    }

    pub fn render(
        &self,
        scope: &Scope<'_>,
        id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        let url = format!("{}/dispatches", self.api.repo_url(scope)?);
        let mut body = Map::new();
        let event_type = self.event_type.render_string(scope)?;
        if event_type.trim().is_empty() {
            return Err(StepError::permanent("`event_type` is empty"));
        }
        body.insert("event_type".into(), Json::String(event_type));
        if let Some(payload) = &self.client_payload {
            let payload = payload.render(scope)?;
            if !payload.is_object() {
                return Err(StepError::permanent(format!(
                    "`client_payload` must be a mapping, not {payload}"
                )));
            }
            body.insert("client_payload".into(), payload);
        }
        self.api
            .request(Provider::GithubDispatch, url, Json::Object(body), scope, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_and_name() {
        assert_eq!(
            owner_and_name("Codertocat/Hello-World"),
            Ok(("Codertocat", "Hello-World"))
        );
        assert!(owner_and_name("Hello-World").is_err());
        assert!(owner_and_name("a/b/c").is_err());
        assert!(owner_and_name("/b").is_err());
        assert!(owner_and_name("a/").is_err());
        assert!(owner_and_name("../admin").is_err());
        assert!(owner_and_name("octo/..").is_err());
    }
}

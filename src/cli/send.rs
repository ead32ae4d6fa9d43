//! `hookflow send`: post a saved payload to a running server the way its provider would: to the
//! workflow's webhook path, with its first method, signed afresh with its `verify` presets and
//! their secrets, with the provider's event type and a fresh delivery id. Prints the answer.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Value as Json, json};

use super::SendArgs;
use crate::run::SavedPayload;
use crate::run::payload::is_credential_header;
use crate::secrets::SecretSource;
use crate::settings::{Overrides, ServeSettings};
use crate::template::Scope;
use crate::verify::{self, Outgoing, Scheme};
use crate::workflow::{VerifyPreset, WebhookTrigger, Workflow};

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let settings = ServeSettings::resolve(&Overrides {
        config: args.config.clone(),
        secrets_dir: args.secrets_dir.clone(),
        ..Overrides::default()
    })?;
    let (workflow, _) =
        super::run::find_workflow(&args.workflow, &args.workflows, &settings.compile_options())?;
    let Some(trigger) = workflow.webhook.as_ref() else {
        bail!(
            "workflow '{}' has no `on.webhook`: nothing listens for it (`hookflow start {}` starts it by hand)",
            workflow.name,
            workflow.name
        );
    };
    let mut url = target_url(&args.to, trigger, args.path.as_deref())?;
    let mut payload = super::payload::read(&args.payload)?;
    leave_out_credentials(&mut payload);
    let presets = trigger.verify.as_ref().map_or(&[][..], |v| &v.presets[..]);
    let id = args
        .delivery_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    provider_headers(&mut payload, presets, &id);
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("--header '{header}' is not 'Name: value'");
        };
        payload.set_header(name.trim(), value.trim());
    }
    if presets.is_empty() {
        eprintln!(
            "note: workflow '{}' verifies no signature: the request is sent unsigned",
            workflow.name
        );
    }
    let signer = Signer {
        workflow: &workflow,
        secrets: &settings.secrets,
        now: Utc::now().timestamp(),
    };
    for preset in ordered(presets) {
        signer.sign(preset, &mut payload, &mut url, &id)?;
    }
    let method = trigger.methods.first().map_or("POST", String::as_str);
    post(method, url, &payload).await
}

/// `--to` with the webhook's path added: the pattern itself, or `--path` when the pattern has
/// parameters (which `--path` must match).
fn target_url(to: &str, trigger: &WebhookTrigger, given: Option<&str>) -> anyhow::Result<url::Url> {
    let pattern = trigger.path.as_str();
    let path = match given {
        Some(path) if trigger.path.matches(path).is_some() => path,
        Some(path) => bail!("--path {path} does not match the workflow's path {pattern}"),
        None if pattern.contains('{') => bail!(
            "the workflow's path {pattern} has parameters: give the path to send to with --path, e.g. --path {}",
            example_path(pattern)
        ),
        None => pattern,
    };
    let joined = format!("{}{path}", to.trim_end_matches('/'));
    url::Url::parse(&joined).with_context(|| format!("{joined} is not a URL (--to {to})"))
}

/// The pattern with each `{name}` replaced by `name`, to show what `--path` looks like.
fn example_path(pattern: &str) -> String {
    pattern.replace(['{', '}'], "").replace('*', "")
}

/// Headers carrying a signature or a credential are not sent from the file: a captured
/// signature no longer matches, and the presets sign afresh.
fn leave_out_credentials(payload: &mut SavedPayload) {
    let stale: Vec<String> = payload
        .headers
        .iter()
        .filter(|(name, _)| is_credential_header(name))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &stale {
        payload.remove_header(name);
    }
    if !stale.is_empty() {
        eprintln!(
            "note: not sent from the headers file (a signature or credential, made afresh or given with --header): {}",
            stale.join(", ")
        );
    }
}

/// The provider's headers: its event type unless the file names one, and `id` in every header
/// that names a delivery, the presets' own and any a provider's headers file carries.
fn provider_headers(payload: &mut SavedPayload, presets: &[VerifyPreset], id: &str) {
    let mut id_headers: BTreeSet<String> = presets
        .iter()
        .filter_map(|p| p.preset.sent_id_header().map(str::to_owned))
        .collect();
    for scheme in Scheme::ALL {
        if let Some(name) = verify::Preset::new(scheme).sent_id_header()
            && payload.header(name).is_some()
        {
            id_headers.insert(name.to_owned());
        }
    }
    for name in &id_headers {
        payload.set_header(name, id);
    }
    for preset in presets {
        if let Some((name, default)) = preset.preset.scheme.event_header()
            && payload.header(name).is_none()
        {
            payload.set_header(name, default);
        }
    }
}

/// The presets in signing order: a scheme that signs the URL (Twilio) after those that add
/// to its query (a `token` preset in the query).
fn ordered(presets: &[VerifyPreset]) -> Vec<&VerifyPreset> {
    let mut ordered: Vec<&VerifyPreset> = presets.iter().collect();
    ordered.sort_by_key(|p| p.preset.scheme == Scheme::Twilio);
    ordered
}

/// Signs for one workflow: its secrets resolved as `serve` resolves them.
struct Signer<'a> {
    workflow: &'a Workflow,
    secrets: &'a SecretSource,
    now: i64,
}

impl Signer<'_> {
    fn sign(
        &self,
        preset: &VerifyPreset,
        payload: &mut SavedPayload,
        url: &mut url::Url,
        id: &str,
    ) -> anyhow::Result<()> {
        let scheme = preset.preset.scheme.as_str();
        let context = crate::template::to_template_value(
            &json!({ "secrets": self.secrets.resolve(&self.workflow.secrets) }),
        );
        let scope = Scope {
            templates: &self.workflow.templates,
            context: &context,
            event_body: &Json::Null,
        };
        let secret = self.secret(preset, &scope)?;
        let username = match &preset.username {
            Some(template) => Some(template.render_string(&scope).map_err(|e| {
                anyhow::anyhow!("the `{scheme}` verify username cannot be rendered: {e}")
            })?),
            None => None,
        };
        self.note_twilio_url(preset, &scope, url);
        let render =
            |inputs: verify::ContentInputs<'_>| render_content(self.workflow, preset, inputs);
        let sent_id = preset
            .preset
            .sent_id_header()
            .and_then(|name| payload.header(name))
            .unwrap_or(id)
            .to_owned();
        let form = payload.content_type().is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let outgoing = Outgoing {
            body: &payload.body,
            url: url.as_str(),
            form,
            id: &sent_id,
            content: Some(&render),
            username: username.as_deref(),
        };
        let signed = verify::sign(&preset.preset, &outgoing, self.now, &secret)
            .map_err(|e| anyhow::anyhow!("cannot sign for `{scheme}`: {e}"))?;
        for (name, value) in &signed.headers {
            payload.set_header(name, value);
        }
        for (name, value) in &signed.query {
            url.query_pairs_mut().append_pair(name, value);
        }
        Ok(())
    }

    /// The preset's first secret (the server accepts any of a rotation's): an error naming the
    /// unset secret and where it is looked for.
    fn secret(&self, preset: &VerifyPreset, scope: &Scope<'_>) -> anyhow::Result<String> {
        let scheme = preset.preset.scheme.as_str();
        let Some(template) = preset.secrets.first() else {
            bail!("the `{scheme}` verify has no secret");
        };
        match template.render_string(scope) {
            Ok(value) if !value.is_empty() => Ok(value),
            rendered => {
                let unset: Vec<String> = template
                    .variables(&self.workflow.templates)
                    .iter()
                    .filter_map(|v| v.strip_prefix("secrets."))
                    .filter(|name| self.secrets.get(name).is_none_or(|v| v.is_empty()))
                    .map(str::to_owned)
                    .collect();
                match (unset.first(), rendered) {
                    (Some(name), _) => bail!("{}", self.unset_secret(scheme, name)),
                    (None, Err(err)) => {
                        bail!("the `{scheme}` verify secret cannot be rendered: {err}")
                    }
                    (None, Ok(_)) => bail!("the `{scheme}` verify secret renders empty"),
                }
            }
        }
    }

    fn unset_secret(&self, scheme: &str, name: &str) -> String {
        let file = match &self.secrets.dir {
            Some(dir) => format!("the file {}", dir.join(name).display()),
            None => format!(
                "a file named {name} in a secrets folder (--secrets-dir or HOOKFLOW_SECRETS_DIR)"
            ),
        };
        format!(
            "the secret {name} of workflow '{}' (its `{scheme}` verify) is not set or empty: set the environment variable {name}, or write it to {file}",
            self.workflow.name
        )
    }

    /// Twilio signs the URL it calls: when that is not the `url` the workflow checks, the
    /// server will refuse the request, and the reason is worth saying before it does.
    fn note_twilio_url(&self, preset: &VerifyPreset, scope: &Scope<'_>, url: &url::Url) {
        let Some(template) = &preset.url else { return };
        let Ok(configured) = template.render_string(scope) else {
            return;
        };
        let called = url.as_str().split('?').next().unwrap_or_default();
        if configured.split('?').next() != Some(called) {
            eprintln!(
                "note: twilio signs the URL called, {called}; the workflow checks {configured}, so the server refuses unless they are the same (--to)"
            );
        }
    }
}

/// An `hmac` preset's `content`, rendered as the server renders it.
fn render_content(
    workflow: &Workflow,
    preset: &VerifyPreset,
    inputs: verify::ContentInputs<'_>,
) -> Option<String> {
    preset.render_content(&workflow.templates, inputs)?.ok()
}

/// Send the request; the status on stderr, the answer on stdout; 0 on 2xx, 1 otherwise.
async fn post(method: &str, url: url::Url, payload: &SavedPayload) -> anyhow::Result<ExitCode> {
    crate::effects::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build an HTTP client")?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .with_context(|| format!("{method} is not an HTTP method"))?;
    let request = client
        .request(method.clone(), url.clone())
        .headers(header_map(payload)?);
    let response = request
        .body(payload.body.clone())
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach the server at {url} (is `hookflow serve` running there? --to or HOOKFLOW_SEND_TO sets the address)"
            )
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    eprintln!("{method} {url}: {status}");
    println!("{body}");
    explain(status, &body);
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The payload's headers as sent, each checked, and a `User-Agent` unless one is given.
fn header_map(payload: &SavedPayload) -> anyhow::Result<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &payload.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("the value of header {name} cannot be sent"))?;
        headers.insert(header, value);
    }
    if payload.header("user-agent").is_none() {
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("hookflow-send/", env!("CARGO_PKG_VERSION"))),
        );
    }
    Ok(headers)
}

/// A line on stderr for the answers worth explaining.
fn explain(status: reqwest::StatusCode, body: &str) {
    let answer: Json = serde_json::from_str(body).unwrap_or_default();
    if status == reqwest::StatusCode::OK
        && answer.get("duplicate_of").is_some()
        && answer.get("run_ids").is_none()
    {
        eprintln!(
            "note: the server took this for a delivery it already has (its dedupe key): nothing ran again"
        );
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        eprintln!(
            "note: the server refused the signature: does it have the same secret as this command, and the same URL (twilio)?"
        );
    }
}

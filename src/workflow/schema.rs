//! The JSON Schema of a workflow file (`hookflow schema`), for editors: built from the key lists
//! the workflow compiler checks (the top level, `on`, `on.webhook`, `verify` presets,
//! `on.schedule`, `concurrency`) and the steps' own (`steps::schema`), described with the
//! language reference's words.

use serde_json::{Map, Value as Json, json};

use super::schedule::{CATCH_UP_MODES, SCHEDULE_KEYS};
use super::webhook::HTTP_METHODS;
use super::{
    CONCURRENCY_KEYS, CONCURRENCY_MODES, DEDUPE_KEYS, RATE_LIMIT_KEYS, TOP_LEVEL_KEYS,
    TRIGGER_KEYS, VERIFY_IP_ALLOW, VERIFY_PRESETS, WEBHOOK_KEYS, XmlMode,
};
use crate::lang::schema::{
    Builder, DIALECT, KeyList, SchemaDrift, boolean, describe, duration, examples, integer,
    key_list, mapping, name, one_of, one_of_any_case, one_or_list, rate, reference, size, text,
    value,
};
use crate::verify::{Algorithm, Encoding, Scheme};

/// Where the committed schema lives, for the editors' `$schema=` line.
pub const SCHEMA_PATH: &str = "docs/schema/workflow.schema.json";

/// The schema of a workflow file, or how it disagrees with the compiler's key lists.
pub fn workflow_schema() -> Result<Json, SchemaDrift> {
    let mut b = Builder::default();
    let schema = build(&mut b);
    b.finish(schema)
}

/// The schema, with every object recorded in `b`.
pub fn build(b: &mut Builder) -> Json {
    let mut defs = Map::new();
    crate::steps::schema::define(b, &mut defs);
    let top = top_level(b);
    let mut schema = json!({
        "$schema": DIALECT,
        "title": "hookflow workflow",
        "description": "A hookflow workflow: which webhook or schedule starts it (`on`), which secrets it reads, which values it computes first (`vars`), and what to do, step by step (`steps`). See docs/language.md.",
    });
    if let (Json::Object(schema), Json::Object(top)) = (&mut schema, top) {
        schema.extend(top);
        schema.insert("$defs".into(), Json::Object(defs));
    }
    schema
}

fn top_level(b: &mut Builder) -> Json {
    let secret_name = json!({ "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" });
    let described = vec![
        (
            "name",
            examples(
                describe(
                    name(),
                    "The workflow's name: letters, digits, `-`, `_`, `.`; unique among the loaded files. Default: the file name without its extension.",
                ),
                json!(["github-push-notify"]),
            ),
        ),
        ("description", describe(text(), "Free text for people.")),
        ("on", triggers(b)),
        (
            "secrets",
            examples(
                describe(
                    one_or_list(secret_name),
                    "Environment variables the templates may read as `secrets.NAME`.",
                ),
                json!([["GITHUB_WEBHOOK_SECRET", "CRM_TOKEN"]]),
            ),
        ),
        (
            "vars",
            examples(
                describe(
                    mapping(value()),
                    "Values computed in order before the first step, read as `vars.<name>`: constants, templates, or `{jsonpath: ...}`.",
                ),
                json!([{ "branch": "{{ event.body.ref | replace('refs/heads/', '') }}" }]),
            ),
        ),
        (
            "retry",
            describe(
                reference("retry"),
                "The default retry policy of every step in this workflow.",
            ),
        ),
        (
            "steps",
            describe(
                reference("steps"),
                "What to do, in order: at least one step.",
            ),
        ),
        (
            "on_error",
            describe(
                json!({ "type": "array", "items": reference("step") }),
                "Steps that run when the run fails for good; they see `run.error` and `run.failed_step`.",
            ),
        ),
        ("concurrency", concurrency(b)),
        (
            "timeout",
            examples(
                describe(
                    duration(),
                    "A run still going this long after it started fails (its `on_error` steps run).",
                ),
                json!(["10m"]),
            ),
        ),
    ];
    b.object(key_list!(TOP_LEVEL_KEYS), &["steps"], described)
}

fn triggers(b: &mut Builder) -> Json {
    let schedule_entry = schedule_entry(b);
    let schedule = json!({ "anyOf": [
        { "type": "string" },
        schedule_entry.clone(),
        { "type": "array", "items": { "anyOf": [{ "type": "string" }, schedule_entry] } }
    ] });
    let webhook = webhook(b);
    describe(
        b.object(
            key_list!(TRIGGER_KEYS),
            &[],
            vec![
                ("webhook", webhook),
                ("schedule", examples(describe(schedule, "Starts runs at the times a cron expression gives: one entry, a list of entries, or just the expression."), json!(["@hourly", { "cron": "30 2 * * *", "timezone": "Europe/Paris" }]))),
            ],
        ),
        "The triggers: `webhook`, `schedule`, both, or none (started by hand only).",
    )
}

fn schedule_entry(b: &mut Builder) -> Json {
    b.object(
        key_list!(SCHEDULE_KEYS),
        &["cron"],
        vec![
            ("cron", examples(describe(json!({ "type": "string" }), "The cron expression: 5 fields, 6 with seconds first, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`."), json!(["30 2 * * *", "*/15 * * * *"]))),
            ("timezone", examples(describe(json!({ "type": "string" }), "The IANA zone the fields are read in. Default `UTC`."), json!(["Europe/Paris", "America/New_York"]))),
            ("jitter", examples(describe(duration(), "Each tick fires up to this much later (the same delay for the same tick)."), json!(["30s"]))),
            ("catch_up", describe(one_of(CATCH_UP_MODES), "What a server that was stopped does with the ticks it missed: `last` starts one run for the most recent, `none` skips them. Default `last`.")),
        ],
    )
}

fn webhook(b: &mut Builder) -> Json {
    let dedupe = dedupe_object(b);
    let rate = rate();
    let rate_object = rate_limit_object(b);
    let described = vec![
        (
            "path",
            examples(
                describe(
                    json!({ "type": "string", "pattern": "^/" }),
                    "The request path; a `{name}` segment is a path parameter (`event.params.name`).",
                ),
                json!(["/hooks/github", "/hooks/{tenant}/orders"]),
            ),
        ),
        (
            "methods",
            describe(
                one_or_list(one_of_any_case(HTTP_METHODS)),
                "Methods that start a run. Default `[POST]`.",
            ),
        ),
        (
            "respond",
            describe(
                one_of(&["async", "sync"]),
                "`async`: answer 202 once the event is stored; `sync`: wait for the run and answer with its `respond` step. Default `async`.",
            ),
        ),
        (
            "max_body",
            examples(
                describe(
                    size(),
                    "Larger bodies are answered 413 and not stored. Default `1MiB`.",
                ),
                json!(["5MiB"]),
            ),
        ),
        (
            "dedupe",
            examples(
                describe(
                    json!({ "anyOf": [text(), dedupe] }),
                    "A delivery whose key was already seen starts no run: a text template, or `{ key, window }`.",
                ),
                json!(["{{ headers['x-github-delivery'] }}"]),
            ),
        ),
        ("verify", verify(b)),
        (
            "schema",
            examples(
                describe(
                    json!({ "anyOf": [
                        { "type": "string", "minLength": 1 },
                        { "type": "object" },
                    ] }),
                    "A JSON Schema the parsed body must match (inline, or a JSON or YAML file relative to the workflow file); a body that does not is answered 422 with its violations and not stored.",
                ),
                json!(["order.schema.json", { "type": "object", "required": ["id"] }]),
            ),
        ),
        (
            "xml",
            describe(
                one_of(XmlMode::NAMES),
                "How an XML body becomes `event.body`: `plain` keeps attributes (`@name`) and text (`#text`); `typed` reads Rails-style `type` and `nil` attributes (Recurly) as numbers, booleans, lists and null and drops attributes. Default `plain`.",
            ),
        ),
        (
            "rate_limit",
            examples(
                describe(
                    json!({ "anyOf": [rate, rate_object] }),
                    "A token bucket checked before the body is read; beyond it the request is answered 429.",
                ),
                json!(["50/s"]),
            ),
        ),
    ];
    describe(
        b.object(key_list!(WEBHOOK_KEYS), &["path"], described),
        "The webhook that starts the workflow.",
    )
}

/// `dedupe` as a mapping: the key template and how long it is remembered.
fn dedupe_object(b: &mut Builder) -> Json {
    b.object(
        key_list!(DEDUPE_KEYS),
        &["key"],
        vec![
            (
                "key",
                describe(
                    text(),
                    "A text template over the event's fields (`headers`, `body`, ...).",
                ),
            ),
            (
                "window",
                describe(duration(), "How long a key is remembered. Default 7 days."),
            ),
        ],
    )
}

/// `rate_limit`: the rate, the burst, and what one bucket counts.
fn rate_limit_object(b: &mut Builder) -> Json {
    let rate = rate();
    b.object(
        key_list!(RATE_LIMIT_KEYS),
        &["rate"],
        vec![
            (
                "rate",
                examples(
                    describe(rate.clone(), "Requests per second, minute or hour."),
                    json!(["50/s", "600/m"]),
                ),
            ),
            (
                "burst",
                describe(
                    integer(1, Some(i64::from(u32::MAX))),
                    "How many requests may arrive at once. Default: one second's worth.",
                ),
            ),
            (
                "per",
                describe(
                    one_of(&["route", "source"]),
                    "One bucket for the route, or one per client address. Default `route`.",
                ),
            ),
        ],
    )
}

fn concurrency(b: &mut Builder) -> Json {
    describe(
        b.object(
            key_list!(CONCURRENCY_KEYS),
            &["key"],
            vec![
                (
                    "key",
                    examples(
                        describe(
                            text(),
                            "A text template rendered from the event when it is accepted.",
                        ),
                        json!(["{{ body.repository.full_name }}"]),
                    ),
                ),
                (
                    "limit",
                    describe(
                        integer(1, Some(i64::from(u32::MAX))),
                        "How many runs with the key may be in progress at once. Default `1`.",
                    ),
                ),
                (
                    "mode",
                    describe(
                        one_of(CONCURRENCY_MODES),
                        "What happens to a run that finds no free slot. Default `queue`.",
                    ),
                ),
            ],
        ),
        "How many runs of the workflow with the same key run at once.",
    )
}

fn verify(b: &mut Builder) -> Json {
    let mut keys: Vec<&'static str> = VERIFY_PRESETS.to_vec();
    keys.push(VERIFY_IP_ALLOW);
    let list = KeyList::new(
        "workflow::VERIFY_PRESETS + workflow::VERIFY_IP_ALLOW",
        &keys,
    );
    let mut described: Vec<(&'static str, Json)> = Scheme::ALL
        .into_iter()
        .map(|scheme| (scheme.as_str(), preset(b, scheme)))
        .collect();
    described.push((
        VERIFY_IP_ALLOW,
        examples(
            describe(
                one_or_list(json!({ "type": "string" })),
                "Address blocks or single addresses the client address must be in.",
            ),
            json!([["192.0.2.0/24", "2001:db8::/32"]]),
        ),
    ));
    let mut object = b.object(list, &[], described);
    object["minProperties"] = json!(1);
    describe(
        object,
        "Signature checks on the raw body, before it is parsed or stored; every preset named must pass.",
    )
}

fn preset(b: &mut Builder, scheme: Scheme) -> Json {
    let name = format!("verify::Scheme::{}.keys()", scheme.as_str());
    let described: Vec<(&'static str, Json)> = scheme
        .keys()
        .iter()
        .map(|key| (*key, preset_key(scheme, key)))
        .collect();
    let mut object = b.object(
        KeyList::new(name, scheme.keys()),
        scheme.required_keys(),
        described,
    );
    if scheme == Scheme::Token {
        object["oneOf"] = json!([{ "required": ["header"] }, { "required": ["query"] }]);
    }
    describe(object, preset_description(scheme))
}

fn preset_description(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Github => "GitHub: `X-Hub-Signature-256`, the HMAC-SHA256 of the raw body.",
        Scheme::Gitlab => "GitLab: `X-Gitlab-Token` must equal the token.",
        Scheme::Stripe => "Stripe: `Stripe-Signature` over `<t>.<raw body>`.",
        Scheme::Shopify => {
            "Shopify: `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the raw body."
        }
        Scheme::Slack => "Slack: `X-Slack-Signature` over `v0:<timestamp>:<raw body>`.",
        Scheme::StandardWebhooks => {
            "Standard Webhooks (Svix): `webhook-signature` over `<id>.<timestamp>.<raw body>`."
        }
        Scheme::Bitbucket => "Bitbucket: `X-Hub-Signature: sha256=<hex>`.",
        Scheme::Gitea => "Gitea: `X-Gitea-Signature`, the hex HMAC-SHA256 of the raw body.",
        Scheme::Forgejo => "Forgejo: `X-Forgejo-Signature` (or `X-Gitea-Signature`).",
        Scheme::Twilio => {
            "Twilio: `X-Twilio-Signature` over the public URL and the form parameters."
        }
        Scheme::Hmac => "A generic HMAC for senders without a preset.",
        Scheme::Basic => "`Authorization: Basic` with a user name and password.",
        Scheme::Token => {
            "A shared token in a header or a query parameter (exactly one of `header`, `query`)."
        }
    }
}

fn preset_key(scheme: Scheme, key: &str) -> Json {
    let secret = || {
        examples(
            describe(
                one_or_list(text()),
                "A text template over `secrets`, or a list of them while a secret is rotated.",
            ),
            json!(["{{ secrets.WEBHOOK_SECRET }}"]),
        )
    };
    match (scheme, key) {
        (_, "secret" | "token" | "password") => secret(),
        (Scheme::Token, "value") => secret(),
        (_, "legacy_sha1") => describe(
            boolean(),
            "Also accept `X-Hub-Signature: sha1=<hex>` when `X-Hub-Signature-256` is missing. Default `false`.",
        ),
        (_, "tolerance") => examples(
            describe(
                duration(),
                "How far a signed timestamp may be from the server's clock. Default `300s`.",
            ),
            json!(["5m"]),
        ),
        (_, "url") => describe(
            text(),
            "The public URL the sender calls, a text template over `secrets`.",
        ),
        (Scheme::Token, "header") => describe(
            json!({ "type": "string" }),
            "The header the token is sent in.",
        ),
        (Scheme::Token, "query") => describe(
            json!({ "type": "string" }),
            "The query parameter the token is sent in.",
        ),
        (_, "header") => examples(
            describe(
                json!({ "type": "string" }),
                "The header carrying the signature.",
            ),
            json!(["X-Partner-Signature"]),
        ),
        (_, "algorithm") => describe(
            one_of(Algorithm::NAMES),
            "The HMAC's hash. Default `sha256`.",
        ),
        (_, "encoding") => describe(
            one_of(Encoding::NAMES),
            "How the MAC is written in the header. Default `hex`.",
        ),
        (_, "prefix") => examples(
            describe(
                json!({ "type": "string" }),
                "Text before the encoded MAC in the header. Default none.",
            ),
            json!(["sha256="]),
        ),
        (_, "content") => examples(
            describe(
                text(),
                "What is signed: a text template over `body`, `timestamp` and `id`. Default: the raw body.",
            ),
            json!(["{{ id }}.{{ timestamp }}.{{ body }}"]),
        ),
        (_, "timestamp_header") => describe(
            json!({ "type": "string" }),
            "A header holding unix seconds, checked against `tolerance`.",
        ),
        (_, "id_header") => describe(
            json!({ "type": "string" }),
            "A header that must be present, read as `id` in `content`.",
        ),
        (_, "username") => describe(text(), "The user name, a text template over `secrets`."),
        // Unknown to this schema: reported as a key without a description.
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests;

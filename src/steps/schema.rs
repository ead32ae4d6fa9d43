//! The JSON Schema of a step and of each kind, built from the key lists the kinds compile with
//! (`KEYS` beside each kind, [`COMMON_KEYS`], [`KindName::ALL`]); the descriptions are the
//! language reference's (docs/language.md).

use serde_json::{Map, Value as Json, json};

use super::{
    COMMON_KEYS, KindName, call, ci, email, exec, filter, foreach, http, parallel, respond,
};
use crate::lang::compile::CONTEXT_ROOTS;
use crate::lang::schema::{
    Builder, KeyList, boolean, describe, duration, examples, integer, key_list, mapping, name,
    one_of, one_of_any_case, one_or_list, rate, reference, size, status_pattern, template, text,
    value,
};

/// Adds the step definitions to `defs`: `step`, `steps`, `http` (shared with `ci.generic`),
/// `filter_rule` and `retry`.
pub fn define(b: &mut Builder, defs: &mut Map<String, Json>) {
    defs.insert("steps".into(), steps_list());
    defs.insert("step".into(), step(b));
    defs.insert("http".into(), http_request(b, "Sends one HTTP request."));
    defs.insert("filter_rule".into(), filter_rule(b));
    defs.insert("retry".into(), crate::lang::schema::retry(b));
}

fn steps_list() -> Json {
    json!({
        "description": "What to do, in order: a list of steps, at least one.",
        "type": "array",
        "minItems": 1,
        "items": reference("step")
    })
}

/// A step: the common keys and exactly one kind key.
fn step(b: &mut Builder) -> Json {
    let mut keys = COMMON_KEYS.to_vec();
    keys.extend(KindName::names());
    let list = KeyList::new("steps::COMMON_KEYS + steps::KindName::ALL", &keys);
    let mut described = common_keys();
    described.push(("rate_limit", step_rate_limit(b)));
    for kind in KindName::ALL {
        described.push((kind.as_str(), kind_schema(b, kind)));
    }
    let mut step = b.object(list, &[], described);
    let one_kind: Vec<Json> = KindName::names()
        .into_iter()
        .map(|kind| json!({ "required": [kind] }))
        .collect();
    step["oneOf"] = Json::Array(one_kind);
    describe(
        step,
        "A step: exactly one kind key (filter, set, template, http, email, ci, exec, log, respond, foreach, parallel, delay, call) and any of the common keys.",
    )
}

fn common_keys() -> Vec<(&'static str, Json)> {
    vec![
        (
            "name",
            examples(
                describe(
                    name(),
                    "The step's name: letters, digits, `-`, `_`, `.`; unique in the workflow (or in its loop or branch). Other steps read it as `steps.<name>`. Default `<kind>-<position>`.",
                ),
                json!(["notify", "post-json"]),
            ),
        ),
        (
            "if",
            examples(
                describe(
                    json!({ "type": ["string", "boolean"] }),
                    "An expression, without `{{ }}`: when false the step is `skipped`. Default: always run.",
                ),
                json!(["steps.post.failed", "event.body.action == 'opened'"]),
            ),
        ),
        (
            "timeout",
            examples(
                describe(
                    duration(),
                    "Limit on executing the step (after its templates are rendered). Default: none.",
                ),
                json!(["10s", "5m"]),
            ),
        ),
        (
            "continue_on_error",
            describe(
                boolean(),
                "When `true`, a failure of this step is recorded and the run goes on. Default `false`.",
            ),
        ),
        (
            "retry",
            describe(
                reference("retry"),
                "When and how often a failed step is tried again. Default: the workflow's `retry`, else the server's, else no retry.",
            ),
        ),
    ]
}

/// A step's `rate_limit`: a rate, or the rate, the burst and the bucket's key.
fn step_rate_limit(b: &mut Builder) -> Json {
    let object = b.object(
        key_list!(super::rate::RATE_LIMIT_KEYS),
        &["rate"],
        vec![
            ("rate", describe(rate(), "Calls per second, minute or hour.")),
            (
                "burst",
                describe(
                    integer(1, None),
                    "Calls that may go at once after a quiet spell. Default 1.",
                ),
            ),
            (
                "key",
                examples(
                    describe(
                        text(),
                        "A text template naming the bucket: steps (of any workflow) whose keys are equal share it. Default: one bucket for this step of this workflow.",
                    ),
                    json!(["{{ event.body.account_id }}"]),
                ),
            ),
        ],
    );
    examples(
        describe(
            json!({ "anyOf": [rate(), object] }),
            "For `http`, `ci` and `email` steps: at most this many calls, over every run; a step over the limit waits its turn (durably, as a `delay`), which is no attempt. A `429` answer with `Retry-After` holds the bucket that long. Default: none (the server's `rate_limits` per host still apply).",
        ),
        json!(["10/s", { "rate": "600/min", "burst": 20 }]),
    )
}

fn kind_schema(b: &mut Builder, kind: KindName) -> Json {
    match kind {
        KindName::Filter => describe(
            json!({ "anyOf": [{ "type": ["string", "boolean"] }, reference("filter_rule")] }),
            "Ends the run as `filtered` unless a condition holds: an expression (without `{{ }}`), `true`/`false`, or a rule tree (`all`, `any`, `not`, tests).",
        ),
        KindName::Set => describe(
            mapping(value()),
            "Assigns variables for the steps after it: each name becomes `vars.<name>`.",
        ),
        KindName::Template => template_step(b),
        KindName::Http => describe(reference("http"), "Sends one HTTP request."),
        KindName::Email => email_step(b),
        KindName::Ci => ci_step(b),
        KindName::Exec => exec_step(b),
        KindName::Log => examples(
            describe(
                text(),
                "Writes one line (a text template) to the run's record and to the server log.",
            ),
            json!(["received {{ event.method }} {{ event.path }}"]),
        ),
        KindName::Respond => respond_step(b),
        KindName::Foreach => foreach_step(b),
        KindName::Parallel => parallel_step(b),
        KindName::Delay => examples(
            describe(
                json!({ "anyOf": [duration(), template()] }),
                "Waits, durably: a duration (`10s`, `5m`), or a template giving a duration, a number of seconds or an RFC 3339 time.",
            ),
            json!(["10m", "{{ event.body.remind_at | default('1h') }}"]),
        ),
        KindName::Call => call_step(b),
    }
}

fn template_step(b: &mut Builder) -> Json {
    let object = b.object(
        key_list!(crate::steps::template::KEYS),
        &["text"],
        vec![
            ("text", describe(text(), "What to render: a text template.")),
            (
                "format",
                describe(
                    one_of(&["text", "json", "yaml"]),
                    "`json` / `yaml`: parse the rendered text into data. Default `text`.",
                ),
            ),
        ],
    );
    describe(
        json!({ "anyOf": [text(), object] }),
        "Renders a text, or data when `format` is `json` or `yaml`. A plain string is short for `{ text: ... }`.",
    )
}

/// `http`'s keys; `ci.generic` takes the same.
fn http_request(b: &mut Builder, description: &str) -> Json {
    let described = vec![
        (
            "method",
            describe(
                one_of_any_case(http::METHODS),
                "The method (any case). Default `GET`, or `POST` when `json`, `form` or `body` is given.",
            ),
        ),
        (
            "url",
            examples(
                describe(text(), "`http://` or `https://` URL (a text template)."),
                json!(["https://crm.example.test/api/contacts/{{ event.body.customer }}"]),
            ),
        ),
        ("headers", describe(mapping(value()), "Request headers.")),
        (
            "query",
            describe(
                mapping(value()),
                "Added to the URL, URL-encoded. A list repeats the parameter; `null` leaves it out.",
            ),
        ),
        (
            "json",
            describe(
                value(),
                "Body as JSON, with `Content-Type: application/json` unless `headers` sets one. Values keep their types.",
            ),
        ),
        (
            "form",
            describe(
                mapping(value()),
                "Body URL-encoded, with `Content-Type: application/x-www-form-urlencoded` unless set.",
            ),
        ),
        (
            "body",
            describe(
                text(),
                "Body as is, with `Content-Type: text/plain; charset=utf-8` unless set.",
            ),
        ),
        ("auth", auth(b)),
        (
            "timeout",
            examples(
                describe(
                    duration(),
                    "Limit for the whole request, reading the answer included. Default `30s`.",
                ),
                json!(["10s"]),
            ),
        ),
        (
            "expect",
            examples(
                describe(
                    one_or_list(status_pattern()),
                    "Answers that count as success: a code (`204`) or a class (`2xx`), or a list. Default `2xx`.",
                ),
                json!([["2xx", 409]]),
            ),
        ),
        (
            "follow_redirects",
            describe(
                boolean(),
                "Follow up to 5 redirects. Default `false`: a 3xx is the answer.",
            ),
        ),
        ("sign", sign(b)),
    ];
    let mut object = b.object(key_list!(http::KEYS), &["url"], described);
    // At most one of `json`, `form` and `body`.
    object["not"] = json!({ "anyOf": [
        { "required": ["json", "form"] },
        { "required": ["json", "body"] },
        { "required": ["form", "body"] }
    ] });
    describe(object, description)
}

fn auth(b: &mut Builder) -> Json {
    let basic = b.object(
        key_list!(http::BASIC_AUTH_KEYS),
        &["username", "password"],
        vec![
            ("username", describe(text(), "The user name.")),
            (
                "password",
                describe(text(), "The password, normally `{{ secrets.NAME }}`."),
            ),
        ],
    );
    let mut object = b.object(
        key_list!(http::AUTH_KEYS),
        &[],
        vec![
            (
                "bearer",
                examples(
                    describe(text(), "`Authorization: Bearer <token>`."),
                    json!(["{{ secrets.CRM_TOKEN }}"]),
                ),
            ),
            (
                "basic",
                describe(
                    basic,
                    "`Authorization: Basic <base64 of username:password>`.",
                ),
            ),
        ],
    );
    object["oneOf"] = json!([{ "required": ["bearer"] }, { "required": ["basic"] }]);
    describe(
        object,
        "The `Authorization` header: `{ bearer: TOKEN }` or `{ basic: { username, password } }`. Records show it as `***`.",
    )
}

fn sign(b: &mut Builder) -> Json {
    let standard = b.object(
        key_list!(http::SIGN_KEYS),
        &["secret"],
        vec![(
            "secret",
            examples(
                describe(
                    text(),
                    "The base64 secret (`whsec_` prefix optional), normally `{{ secrets.NAME }}`.",
                ),
                json!(["{{ secrets.PARTNER_WHSEC }}"]),
            ),
        )],
    );
    let mut object = b.object(
        key_list!(http::SIGN_SCHEMES),
        &[],
        vec![("standard_webhooks", describe(standard, "Adds `webhook-id`, `webhook-timestamp` and `webhook-signature` the Standard Webhooks way."))],
    );
    object["minProperties"] = json!(1);
    describe(
        object,
        "Sign the request for receivers that verify: `{ standard_webhooks: { secret: TEMPLATE } }`.",
    )
}

fn email_step(b: &mut Builder) -> Json {
    let addresses = || {
        json!({ "anyOf": [
            text(),
            { "type": "array", "items": text() },
            { "type": "null" },
            { "type": "object", "properties": { "jsonpath": { "type": "string" } }, "required": ["jsonpath"], "additionalProperties": false }
        ] })
    };
    let described = vec![
        (
            "to",
            examples(
                describe(
                    addresses(),
                    "Recipients: `ada@example.com` or `Ada <ada@example.com>`, several separated by commas, a list, or a template giving them.",
                ),
                json!(["{{ event.body.email }}"]),
            ),
        ),
        (
            "cc",
            describe(addresses(), "Recipients named in the `Cc` header."),
        ),
        (
            "bcc",
            describe(
                addresses(),
                "Hidden recipients: they get the message, no header names them.",
            ),
        ),
        (
            "from",
            examples(
                describe(
                    addresses(),
                    "The sender, one address. Default `email.from` of `hookflow.yaml`.",
                ),
                json!(["Example Shop <orders@shop.example.test>"]),
            ),
        ),
        (
            "reply_to",
            describe(addresses(), "Where answers go (`Reply-To`)."),
        ),
        (
            "subject",
            describe(text(), "One line (line breaks become spaces); any Unicode."),
        ),
        ("text", describe(text(), "The plain-text part.")),
        (
            "html",
            describe(
                text(),
                "The HTML part (no HTML escaping: use `escape` on payload values).",
            ),
        ),
        (
            "headers",
            describe(
                mapping(value()),
                "More headers (`X-Order-Id`, `List-Unsubscribe`, ...); the ones the keys above set are refused.",
            ),
        ),
        (
            "attachments",
            describe(
                json!({ "type": "array", "items": attachment(b) }),
                "Files attached to the message.",
            ),
        ),
    ];
    let mut object = b.object(key_list!(email::KEYS), &["subject"], described);
    object["allOf"] = json!([
        { "anyOf": [{ "required": ["text"] }, { "required": ["html"] }] },
        { "anyOf": [{ "required": ["to"] }, { "required": ["cc"] }, { "required": ["bcc"] }] }
    ]);
    describe(
        object,
        "Sends one email, over SMTP or into the outbox (the server decides). Needs `subject`, `text` or `html`, and a recipient.",
    )
}

fn attachment(b: &mut Builder) -> Json {
    b.object(
        key_list!(email::ATTACHMENT_KEYS),
        &["name", "content"],
        vec![
            ("name", describe(text(), "The file name the recipient sees.")),
            ("content_type", examples(describe(text(), "A MIME type. Default `application/octet-stream`."), json!(["text/csv; charset=utf-8", "application/pdf"]))),
            ("content", describe(value(), "Text is attached as its UTF-8 bytes, data as indented JSON, `null` as an empty file.")),
            ("base64", describe(boolean(), "`true`: `content` is base64 text, attached as the bytes it decodes to. Default `false`.")),
        ],
    )
}

fn ci_step(b: &mut Builder) -> Json {
    let described: Vec<(&'static str, Json)> = ci::PROVIDERS
        .iter()
        .map(|provider| (*provider, ci_provider(b, provider)))
        .collect();
    let mut object = b.object(key_list!(ci::PROVIDERS), &[], described);
    let one: Vec<Json> = ci::PROVIDERS
        .iter()
        .map(|p| json!({ "required": [p] }))
        .collect();
    object["oneOf"] = Json::Array(one);
    describe(
        object,
        "Starts a build on a CI service: exactly one provider key.",
    )
}

fn ci_provider(b: &mut Builder, provider: &str) -> Json {
    match provider {
        "github_actions" => describe(
            b.object(
                key_list!(ci::github::ACTIONS_KEYS),
                &["repo", "workflow", "ref", "token"],
                vec![
                    ("repo", examples(describe(text(), "`owner/name`."), json!(["{{ event.body.repository.full_name }}"]))),
                    ("workflow", examples(describe(text(), "The workflow's file name under `.github/workflows/` or its numeric id."), json!(["build.yml"]))),
                    ("ref", describe(text(), "The branch or tag the workflow runs on.")),
                    ("inputs", describe(mapping(value()), "The workflow's `workflow_dispatch` inputs; values keep their types.")),
                    ("return_run_details", describe(boolean(), "`true`: GitHub answers `200` with the run's id and URLs. Default: not sent.")),
                    ("token", describe(text(), "A token allowed to write Actions on the repository.")),
                    api_version(),
                    base_url("https://api.github.com"),
                    ci_timeout(),
                ],
            ),
            "`workflow_dispatch` of a GitHub Actions workflow.",
        ),
        "github_dispatch" => describe(
            b.object(
                key_list!(ci::github::DISPATCH_KEYS),
                &["repo", "event_type", "token"],
                vec![
                    ("repo", describe(text(), "`owner/name`.")),
                    ("event_type", examples(describe(text(), "What `on: repository_dispatch: types: [...]` matches in the receiving workflows."), json!(["deploy"]))),
                    ("client_payload", describe(value(), "Extra data for the workflows (`github.event.client_payload`); values keep their types.")),
                    ("token", describe(text(), "A token allowed to write contents on the repository.")),
                    api_version(),
                    base_url("https://api.github.com"),
                    ci_timeout(),
                ],
            ),
            "A GitHub `repository_dispatch` event.",
        ),
        "gitlab" => describe(
            b.object(
                key_list!(ci::gitlab::KEYS),
                &["project", "ref", "token"],
                vec![
                    ("project", examples(describe(text(), "The numeric project id or its path."), json!(["mike/diaspora", 15]))),
                    ("ref", describe(text(), "The branch or tag to run the pipeline on.")),
                    ("token", describe(text(), "A pipeline trigger token.")),
                    ("variables", describe(mapping(value()), "CI/CD variables for the pipeline; values are sent as text, `null` leaves one out.")),
                    base_url("https://gitlab.com"),
                    ci_timeout(),
                ],
            ),
            "A GitLab pipeline trigger.",
        ),
        "jenkins" => describe(
            b.object(
                key_list!(ci::jenkins::KEYS),
                &["base_url", "job"],
                vec![
                    base_url("none: required"),
                    ("job", examples(describe(text(), "The job's path, folders separated by `/`, without the `job/` parts of its URL."), json!(["platform/diaspora"]))),
                    ("parameters", describe(mapping(value()), "Build parameters, sent as a form to `buildWithParameters`; without it the request goes to `build`.")),
                    ("user", describe(text(), "The Jenkins user whose API token authenticates the request. Takes `api_token` with it.")),
                    ("api_token", describe(text(), "That user's API token.")),
                    ("token", describe(text(), "The job's \"Trigger builds remotely\" token, sent as `?token=`.")),
                    ci_timeout(),
                ],
            ),
            "A Jenkins build (`buildWithParameters`, or `build` without parameters).",
        ),
        "buildkite" => describe(buildkite(b), "A Buildkite build."),
        "circleci" => {
            let mut object = b.object(
                key_list!(ci::circleci::KEYS),
                &["project", "token"],
                vec![
                    ("project", examples(describe(text(), "The project slug: `gh/<org>/<repo>`, `bb/<org>/<repo>`, or `circleci/<org id>/<project id>`."), json!(["gh/acme/shop"]))),
                    ("token", describe(text(), "A personal API token, sent as `Circle-Token`.")),
                    ("branch", describe(text(), "The branch to build.")),
                    ("tag", describe(text(), "A tag to build instead of a branch.")),
                    ("parameters", describe(mapping(value()), "Pipeline parameters; values keep their types.")),
                    base_url("https://circleci.com"),
                    ci_timeout(),
                ],
            );
            object["not"] = json!({ "required": ["branch", "tag"] });
            describe(object, "A CircleCI pipeline; `branch` and `tag` exclude each other.")
        }
        "generic" => describe(reference("http"), "Anything else: the keys of `http`."),
        // Unknown to this schema: `Builder::object` reports it as undescribed.
        _ => json!({}),
    }
}

fn buildkite(b: &mut Builder) -> Json {
    let author = b.object(
        key_list!(ci::buildkite::AUTHOR_KEYS),
        &["name", "email"],
        vec![
            ("name", describe(text(), "The author's name.")),
            ("email", describe(text(), "The author's address.")),
        ],
    );
    b.object(
        key_list!(ci::buildkite::KEYS),
        &["organization", "pipeline", "token", "commit", "branch"],
        vec![
            ("organization", describe(text(), "The organization's slug.")),
            ("pipeline", describe(text(), "The pipeline's slug.")),
            (
                "token",
                describe(text(), "An API access token with the `write_builds` scope."),
            ),
            (
                "commit",
                describe(
                    text(),
                    "The commit SHA, ref or tag to build (`HEAD` for the branch's latest).",
                ),
            ),
            (
                "branch",
                describe(text(), "The branch the build belongs to."),
            ),
            ("message", describe(text(), "The build's message.")),
            (
                "author",
                describe(author, "Who the build is attributed to: `{ name, email }`."),
            ),
            (
                "env",
                describe(
                    mapping(value()),
                    "Environment variables for the build; values are sent as text.",
                ),
            ),
            (
                "meta_data",
                describe(
                    mapping(value()),
                    "Build meta-data; values are sent as text.",
                ),
            ),
            (
                "clean_checkout",
                describe(boolean(), "Force a fresh checkout."),
            ),
            base_url("https://api.buildkite.com"),
            ci_timeout(),
        ],
    )
}

fn api_version() -> (&'static str, Json) {
    (
        "api_version",
        describe(
            text(),
            "The `X-GitHub-Api-Version` header. Default `2022-11-28`.",
        ),
    )
}

fn base_url(default: &str) -> (&'static str, Json) {
    (
        "base_url",
        describe(
            text(),
            &format!("The API root, for a self-hosted server. Default: {default}."),
        ),
    )
}

fn ci_timeout() -> (&'static str, Json) {
    (
        "timeout",
        describe(
            duration(),
            "Limit for the request, reading the answer included. Default `30s`.",
        ),
    )
}

fn exec_step(b: &mut Builder) -> Json {
    let env_names = json!({ "type": "object", "propertyNames": { "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" }, "additionalProperties": text() });
    let exit_code = integer(0, Some(255));
    let described = vec![
        (
            "command",
            examples(
                describe(
                    json!({ "type": "array", "minItems": 1, "items": text() }),
                    "The program, then its arguments; never run through a shell. The first item is written out (no template).",
                ),
                json!([["/srv/app/deploy.sh", "--", "{{ event.body.after }}"]]),
            ),
        ),
        (
            "cwd",
            describe(
                json!({ "type": "string" }),
                "Working directory, written out (no template). Default: the server's.",
            ),
        ),
        (
            "env",
            describe(env_names, "Variables added to the child's environment."),
        ),
        (
            "stdin",
            describe(
                value(),
                "Written to standard input: text as is, `null` as nothing, anything else as JSON.",
            ),
        ),
        (
            "timeout",
            examples(
                describe(
                    duration(),
                    "When it passes, the program and its process group are killed. Default `60s`.",
                ),
                json!(["10m"]),
            ),
        ),
        (
            "output_limit",
            describe(
                size(),
                "What is kept of stdout and of stderr, each (at most `16MiB`). Default `64KiB`.",
            ),
        ),
        (
            "expect_exit",
            describe(
                one_or_list(exit_code),
                "Exit codes that count as success. Default `[0]`.",
            ),
        ),
    ];
    describe(
        b.object(key_list!(exec::KEYS), &["command"], described),
        "Runs one local program (off unless `exec: { enabled: true }` in hookflow.yaml).",
    )
}

fn respond_step(b: &mut Builder) -> Json {
    let status = json!({ "anyOf": [integer(100, Some(599)), template()] });
    describe(
        b.object(
            key_list!(respond::KEYS),
            &[],
            vec![
                (
                    "status",
                    describe(
                        status,
                        "100 to 599, or a template giving one. Default `200`.",
                    ),
                ),
                ("headers", describe(mapping(value()), "Answer headers.")),
                (
                    "body",
                    describe(
                        value(),
                        "Text is sent as `text/plain`, any other value as JSON. Default: empty.",
                    ),
                ),
            ],
        ),
        "The answer to the caller of a `respond: sync` webhook.",
    )
}

fn foreach_step(b: &mut Builder) -> Json {
    let mut binding = json!({ "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" });
    let mut reserved: Vec<&str> = CONTEXT_ROOTS.to_vec();
    reserved.push("loop");
    binding["not"] = json!({ "enum": reserved });
    describe(
        b.object(
            key_list!(foreach::KEYS),
            &["items", "steps"],
            vec![
                (
                    "items",
                    examples(
                        describe(
                            value(),
                            "What to iterate over: a template or `{jsonpath: ...}` giving a list.",
                        ),
                        json!(["{{ event.body.commits }}"]),
                    ),
                ),
                (
                    "as",
                    describe(
                        binding,
                        "The name each iteration reads its item under. Default `item`.",
                    ),
                ),
                (
                    "parallel",
                    describe(
                        integer(1, None),
                        "How many iterations run at once. Default `1`.",
                    ),
                ),
                (
                    "steps",
                    describe(reference("steps"), "What each iteration does."),
                ),
            ],
        ),
        "Runs nested `steps` once per item of a list.",
    )
}

fn parallel_step(b: &mut Builder) -> Json {
    let branch = b.object(
        key_list!(parallel::BRANCH_KEYS),
        &["steps"],
        vec![(
            "steps",
            describe(reference("steps"), "The branch's steps, run in order."),
        )],
    );
    let branches = json!({
        "type": "object",
        "minProperties": 1,
        "propertyNames": { "pattern": "^[A-Za-z0-9_-]+$" },
        "additionalProperties": branch
    });
    describe(
        b.object(
            key_list!(parallel::KEYS),
            &["branches"],
            vec![(
                "branches",
                describe(
                    branches,
                    "Branch names (letters, digits, `-`, `_`) to `{ steps: [...] }`.",
                ),
            )],
        ),
        "Runs named branches of nested steps at once.",
    )
}

fn call_step(b: &mut Builder) -> Json {
    describe(
        b.object(
            key_list!(call::KEYS),
            &["workflow"],
            vec![
                (
                    "workflow",
                    describe(
                        name(),
                        "A workflow loaded in the same set (a name, not a template).",
                    ),
                ),
                (
                    "payload",
                    describe(value(), "The called workflow's `event.body`. Default `{}`."),
                ),
            ],
        ),
        "Runs another loaded workflow with a payload as its event body, and waits for it.",
    )
}

/// A rule tree: `all`, `any`, `not`, or a test (a subject and one operator).
fn filter_rule(b: &mut Builder) -> Json {
    let mut rules: Vec<Json> = filter::COMBINATORS
        .iter()
        .map(|combinator| {
            let (inner, what) = match *combinator {
                "not" => (reference("filter_rule"), "The rule does not hold."),
                "all" => (
                    json!({ "type": "array", "items": reference("filter_rule") }),
                    "Every rule holds.",
                ),
                _ => (
                    json!({ "type": "array", "items": reference("filter_rule") }),
                    "At least one rule holds.",
                ),
            };
            let name = format!("steps::filter::COMBINATORS[{combinator}]");
            b.object(
                KeyList::new(name, &[*combinator]),
                &[*combinator],
                vec![(*combinator, describe(inner, what))],
            )
        })
        .collect();
    rules.push(filter_test(b));
    json!({ "anyOf": rules })
}

fn filter_test(b: &mut Builder) -> Json {
    let mut keys = filter::SUBJECTS.to_vec();
    keys.extend_from_slice(filter::OPERATORS);
    let list = KeyList::new("steps::filter::SUBJECTS + steps::filter::OPERATORS", &keys);
    let mut described = vec![
        (
            "jsonpath",
            examples(
                describe(
                    json!({ "type": "string" }),
                    "The nodes an RFC 9535 JSONPath query selects from `event.body`.",
                ),
                json!(["$.ref"]),
            ),
        ),
        (
            "value",
            describe(value(), "Exactly one value, rendered like any value."),
        ),
    ];
    for operator in filter::OPERATORS {
        described.push((*operator, operator_schema(operator)));
    }
    let mut object = b.object(list, &[], described);
    let subjects: Vec<Json> = filter::SUBJECTS
        .iter()
        .map(|s| json!({ "required": [s] }))
        .collect();
    let operators: Vec<Json> = filter::OPERATORS
        .iter()
        .map(|o| json!({ "required": [o] }))
        .collect();
    object["allOf"] = json!([{ "oneOf": subjects }, { "oneOf": operators }]);
    describe(
        object,
        "A test: a subject (`jsonpath` or `value`) and exactly one operator.",
    )
}

fn operator_schema(operator: &str) -> Json {
    match operator {
        "equals" => describe(value(), "Some selected node equals the operand."),
        "not_equals" => describe(value(), "No selected node equals the operand."),
        "in" => describe(
            value(),
            "Some node equals some item of the list (or template giving one).",
        ),
        "matches" => examples(
            describe(
                json!({ "type": "string" }),
                "A regular expression (not a template) that matches somewhere in some node's text.",
            ),
            json!(["^refs/heads/"]),
        ),
        "contains" => describe(
            value(),
            "Some node is text containing the operand, a list with it as an item, or a mapping with it as a key.",
        ),
        "exists" => describe(
            boolean(),
            "`true`: some selected node is not `null`; `false`: none is.",
        ),
        "gt" => describe(
            value(),
            "Some node is greater (numbers with numbers, text with text).",
        ),
        "gte" => describe(value(), "Some node is greater or equal."),
        "lt" => describe(value(), "Some node is less."),
        "lte" => describe(value(), "Some node is less or equal."),
        // Unknown to this schema: reported as a key without a description.
        _ => json!({}),
    }
}

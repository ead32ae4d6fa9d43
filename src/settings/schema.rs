//! The JSON Schema of `hookflow.yaml` (`hookflow schema --settings`): its keys are the fields
//! serde reads for [`ConfigFile`] and its nested structs (all `deny_unknown_fields`), described
//! with docs/cli.md's words.

use serde_json::{Value as Json, json};

use super::{
    ConfigFile, EgressConfig, EmailConfig, ExecConfig, RateBucketConfig, RetryConfig,
    TelemetryConfig, TlsConfig,
};
use crate::lang::schema::{
    Builder, DIALECT, KeyList, SchemaDrift, boolean, describe, duration, examples, integer, one_of,
    rate, size, struct_keys,
};
use crate::net::AddressClass;

/// Where the committed schema lives, for the editors' `$schema=` line.
pub const SCHEMA_PATH: &str = "docs/schema/settings.schema.json";

/// The schema of `hookflow.yaml`, or how it disagrees with the fields serde reads.
pub fn settings_schema() -> Result<Json, SchemaDrift> {
    let mut b = Builder::default();
    let top = config_file(&mut b);
    let mut schema = json!({
        "$schema": DIALECT,
        "title": "hookflow.yaml",
        "description": "hookflow server settings (not workflows): every key optional, an unknown key is an error. Flags and HOOKFLOW_* variables win over the file. See docs/cli.md.",
    });
    if let (Json::Object(schema), Json::Object(top)) = (&mut schema, top) {
        schema.extend(top);
    }
    b.finish(schema)
}

/// A struct's serde fields, named after it.
fn keys_of<T: serde::de::DeserializeOwned>(name: &str) -> KeyList {
    KeyList::new(format!("settings::{name}"), &struct_keys::<T>())
}

fn string() -> Json {
    json!({ "type": "string" })
}

fn strings() -> Json {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn config_file(b: &mut Builder) -> Json {
    let mut described = serving_keys();
    described.extend([("email", email(b)), ("exec", exec(b)), ("retry", retry(b))]);
    described.extend(store_keys());
    described.push(("egress", egress(b)));
    described.extend(request_limit_keys());
    described.push(("tls", tls(b)));
    described.push(("rate_limits", rate_limits(b)));
    described.push(("telemetry", telemetry(b)));
    b.object(keys_of::<ConfigFile>("ConfigFile"), &[], described)
}

/// The listeners, the admin API, the workflows, and how much runs at once.
fn serving_keys() -> Vec<(&'static str, Json)> {
    vec![
        (
            "listen",
            examples(
                describe(
                    string(),
                    "Address for webhooks, as `--listen`. Default `0.0.0.0:8080`.",
                ),
                json!(["0.0.0.0:8080"]),
            ),
        ),
        (
            "admin_listen",
            examples(
                describe(
                    string(),
                    "Address for the admin API, as `--admin-listen`. Default `127.0.0.1:9090`.",
                ),
                json!(["127.0.0.1:9090"]),
            ),
        ),
        (
            "admin_token",
            describe(
                string(),
                "Bearer token the admin API requires, as `--admin-token`.",
            ),
        ),
        (
            "admin_allowed_hosts",
            examples(
                describe(
                    strings(),
                    "`Host` names the admin listener answers to besides its own (a reverse proxy's), or `*`.",
                ),
                json!([["admin.example.com"]]),
            ),
        ),
        (
            "secrets_dir",
            describe(
                string(),
                "A directory with one file per secret, as `--secrets-dir`.",
            ),
        ),
        (
            "workflows",
            examples(
                describe(
                    string(),
                    "Workflow files (searched recursively), as `--workflows`. Default `./workflows`.",
                ),
                json!(["./workflows"]),
            ),
        ),
        (
            "store",
            examples(
                describe(
                    string(),
                    "SQLite database file, or a PostgreSQL URL, as `--store`. Default `./hookflow.db`.",
                ),
                json!([
                    "/var/lib/hookflow/hookflow.db",
                    "postgres://user:password@host:5432/db"
                ]),
            ),
        ),
        (
            "workers",
            describe(
                integer(1, None),
                "Runs this process executes at the same time, as `--workers`. Default `32`.",
            ),
        ),
        (
            "max_running",
            describe(
                integer(1, None),
                "Runs executing at once in the whole store, across every server sharing it, as `--max-running`.",
            ),
        ),
        (
            "run_window",
            describe(
                integer(1, None),
                "The runs a server holds in memory at once, queued or executing (at least `workers`). Default `256`.",
            ),
        ),
        (
            "max_backlog",
            describe(
                integer(1, None),
                "Runs waiting in the store's queue past which webhooks are answered `503`. Default `50000`.",
            ),
        ),
        (
            "sync_timeout",
            examples(
                describe(
                    duration(),
                    "How long a `respond: sync` webhook waits for its answer before answering 202. Default `30s`.",
                ),
                json!(["10s"]),
            ),
        ),
        (
            "shutdown_timeout",
            examples(
                describe(
                    duration(),
                    "At a stop, how long runs in flight may take to finish. Default `10s`.",
                ),
                json!(["30s"]),
            ),
        ),
    ]
}

/// Retention, the store's connections, leases and the proxies believed.
fn store_keys() -> Vec<(&'static str, Json)> {
    vec![
        (
            "retention",
            examples(
                describe(
                    duration(),
                    "How long finished runs and their events are kept. Default `30d`.",
                ),
                json!(["30d"]),
            ),
        ),
        (
            "store_pool_size",
            describe(
                integer(1, Some(1000)),
                "PostgreSQL connections per server process. Default: half of `workers` plus 4, from 8 to 64 (20 with the default 32 workers).",
            ),
        ),
        (
            "store_statement_timeout",
            describe(
                duration(),
                "The database cancels a statement running longer (PostgreSQL); `0s` for no limit. Default `30s`.",
            ),
        ),
        (
            "lease",
            describe(
                duration(),
                "How long a run claimed by a server stays its own without renewal (at least `1s`). Default `30s`.",
            ),
        ),
        (
            "trusted_proxies",
            examples(
                describe(
                    strings(),
                    "Addresses or blocks of the reverse proxies whose `X-Forwarded-For` is believed, as `--trusted-proxies`.",
                ),
                json!([["10.0.0.0/8", "192.0.2.7"]]),
            ),
        ),
    ]
}

/// How long and how large a request may be.
fn request_limit_keys() -> Vec<(&'static str, Json)> {
    vec![
        (
            "header_timeout",
            describe(
                duration(),
                "How long a client may take to send the request line and headers. More than `0s`. Default `10s`.",
            ),
        ),
        (
            "body_timeout",
            describe(
                duration(),
                "How long a client may take to send the body once its headers are in. More than `0s`. Default `60s`.",
            ),
        ),
        (
            "max_header_size",
            examples(
                describe(
                    size(),
                    "The largest header block accepted (at least `8KiB`). Default `64KiB`.",
                ),
                json!(["64KiB"]),
            ),
        ),
    ]
}

fn email(b: &mut Builder) -> Json {
    describe(
        b.object(
            keys_of::<EmailConfig>("EmailConfig"),
            &[],
            vec![
                ("smtp", examples(describe(string(), "The SMTP server of `email` steps: `smtp://user:pass@host:587` (STARTTLS), `smtps://...` (TLS), `smtp://host:25?tls=none`; `${NAME}` reads an environment variable. Without it, messages go to `outbox`."), json!(["smtp://apikey:${SMTP_PASSWORD}@smtp.example.com:587"]))),
                ("from", examples(describe(string(), "The sender of `email` steps that have no `from`."), json!(["Example Shop <orders@shop.example.com>"]))),
                ("outbox", describe(string(), "Without `smtp`, where each message is written as an `.eml` file. Default `./outbox`.")),
                ("timeout", describe(duration(), "How long to wait for the SMTP server to connect or answer one command. Default `30s`.")),
            ],
        ),
        "How `email` steps deliver.",
    )
}

fn exec(b: &mut Builder) -> Json {
    describe(
        b.object(
            keys_of::<ExecConfig>("ExecConfig"),
            &[],
            vec![(
                "enabled",
                describe(
                    boolean(),
                    "Allow `exec` steps, which run local programs. Default `false`.",
                ),
            )],
        ),
        "`exec` steps: off unless enabled here.",
    )
}

fn retry(b: &mut Builder) -> Json {
    describe(
        b.object(
            keys_of::<RetryConfig>("RetryConfig"),
            &[],
            vec![
                (
                    "attempts",
                    describe(
                        integer(1, Some(100)),
                        "Tries in all, the first one included. Default `1`.",
                    ),
                ),
                (
                    "backoff",
                    describe(one_of(&["exponential", "fixed"]), "Default `exponential`."),
                ),
                (
                    "initial",
                    describe(duration(), "The first delay. Default `1s`."),
                ),
                (
                    "max",
                    describe(duration(), "The longest delay. Default `5m`."),
                ),
            ],
        ),
        "The retry policy of steps whose workflow sets none.",
    )
}

fn egress(b: &mut Builder) -> Json {
    let classes = json!({ "type": "array", "items": one_of(AddressClass::NAMES) });
    describe(
        b.object(
            keys_of::<EgressConfig>("EgressConfig"),
            &[],
            vec![
                ("deny", describe(classes, "Address classes `http`, `ci` and `email` steps may not connect to.")),
                ("allow", examples(describe(strings(), "Host names and addresses or blocks reachable even when their class is denied."), json!([["crm.internal", "*.corp.example", "10.20.0.0/16"]]))),
            ],
        ),
        "Which addresses `http`, `ci` and `email` steps may reach.",
    )
}

/// `rate_limits:` a rate or `{ rate, burst }` per host.
fn rate_limits(b: &mut Builder) -> Json {
    let bucket = b.object(
        keys_of::<RateBucketConfig>("RateBucketConfig"),
        &["rate"],
        vec![
            (
                "rate",
                describe(rate(), "Calls per second, minute or hour."),
            ),
            (
                "burst",
                describe(
                    integer(1, None),
                    "Calls that may go at once after a quiet spell. Default 1.",
                ),
            ),
        ],
    );
    examples(
        describe(
            json!({
                "type": "object",
                "additionalProperties": { "anyOf": [rate(), bucket] }
            }),
            "Outgoing rate limits per host name, for every `http`, `ci` and `email` step calling it (an `email` step's host is its SMTP server's, or `email`). A step over the limit waits its turn, durably.",
        ),
        json!([{ "api.example.com": "10/s", "smtp.example.com": { "rate": "600/min", "burst": 5 } }]),
    )
}

fn tls(b: &mut Builder) -> Json {
    describe(
        b.object(
            keys_of::<TlsConfig>("TlsConfig"),
            &[],
            vec![
                (
                    "cert",
                    describe(string(), "The certificate chain (PEM), as `--tls-cert`."),
                ),
                (
                    "key",
                    describe(string(), "Its private key (PEM), as `--tls-key`."),
                ),
            ],
        ),
        "Serve webhooks over HTTPS with this certificate and key.",
    )
}

fn telemetry(b: &mut Builder) -> Json {
    describe(
        b.object(
            keys_of::<TelemetryConfig>("TelemetryConfig"),
            &[],
            vec![
                (
                    "otlp_endpoint",
                    examples(
                        describe(
                            string(),
                            "The OTLP/HTTP (protobuf) base URL, `http://` or `https://`; spans go to `<url>/v1/traces`. `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, the full URL) wins over it. Without any, no span is recorded.",
                        ),
                        json!(["http://127.0.0.1:4318"]),
                    ),
                ),
                (
                    "service_name",
                    describe(
                        string(),
                        "The `service.name` of the spans; `OTEL_SERVICE_NAME` wins over it. Default `hookflow`.",
                    ),
                ),
            ],
        ),
        "OpenTelemetry traces: a span per webhook request, run and step, exported over OTLP/HTTP.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_has_exactly_the_keys_serde_reads() {
        let schema = settings_schema().unwrap_or_else(|drift| panic!("{drift}"));
        let keys: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, struct_keys::<ConfigFile>());
        assert!(keys.contains(&"max_header_size") && keys.contains(&"egress"));
        let email: Vec<&str> = schema["properties"]["email"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(email, ["smtp", "from", "outbox", "timeout"]);
    }
}

//! `hookflow sign`: the signature headers a sender would send with a body, for a `verify`
//! scheme and a secret, to try a server with curl or another client.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::SignArgs;
use crate::verify::{Outgoing, sign};
use crate::verify::{Preset, Scheme};

pub fn sign_body(args: SignArgs) -> anyhow::Result<ExitCode> {
    let Some(scheme) = Scheme::from_name(&args.scheme) else {
        let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.as_str()).collect();
        bail!(
            "unknown scheme '{}'; known: {}",
            args.scheme,
            known.join(", ")
        );
    };
    if matches!(scheme, Scheme::Hmac | Scheme::Token) {
        bail!(
            "`{}` is configured per workflow (header, algorithm, where the token goes): sign with \
             `hookflow send WORKFLOW PAYLOAD`, which reads those settings",
            scheme.as_str()
        );
    }
    if scheme == Scheme::Twilio && args.url.is_none() {
        bail!("twilio signs the URL the request is sent to: give it with --url");
    }
    let body = read_body(args.file.as_ref())?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
    let outgoing = Outgoing {
        body: &body,
        url: args.url.as_deref().unwrap_or_default(),
        form: args.form,
        id: &id,
        content: None,
        username: args.username.as_deref(),
    };
    let now = args
        .timestamp
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    let signed = sign(&Preset::new(scheme), &outgoing, now, &args.secret)
        .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
    for (name, value) in &signed.headers {
        println!("{name}: {value}");
    }
    for (name, value) in &signed.query {
        println!("?{name}={value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The body: the file's bytes exactly, or standard input.
fn read_body(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read standard input")?;
            Ok(body)
        }
    }
}

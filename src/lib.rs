//! hookflow: incoming webhooks -> declarative YAML workflows, executed durably.
//!
//! Data flows one way: `http` (verify, parse, persist, answer) -> `store` -> `worker` ->
//! `engine` -> `steps` -> `effects`. See ARCHITECTURE.md for the codemap and invariants.

// A request or a workflow must never be able to panic the server: errors are values.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod diag;
pub mod effects;
pub mod engine;
pub mod future;
pub mod http;
pub mod jsonpath;
pub mod lang;
pub mod net;
pub mod observe;
pub mod run;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod steps;
pub mod store;
pub mod template;
pub mod testkit;
pub mod verify;
pub mod worker;
pub mod workflow;

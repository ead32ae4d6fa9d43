//! The integration tests: one binary that starts real servers on loopback, sends real payloads,
//! and checks what a real HTTP receiver got; plus CLI, golden and compliance tests.

mod admin;
mod backlog;
mod ci;
mod cli;
mod concurrency;
mod control;
mod crash;
mod docs;
mod durable;
mod e2e;
mod egress;
mod email;
mod examples;
mod exec;
mod faults;
mod golden;
mod ingress;
mod jsonpath_cts;
mod logs;
mod manual;
mod multinode;
mod payload_checks;
mod reload;
mod schedule;
mod secrets;
mod secrets_leak;
mod security;
mod smtp_server;
mod store;
mod support;
mod tidy;
mod tls;
mod ui;
mod verify;
mod workflow_steps;

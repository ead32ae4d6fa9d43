//! Process metrics: counters, gauges and histograms kept in memory and rendered in the
//! Prometheus text exposition format at `/metrics`. The names are documented in `docs/metrics.md`.
//!
//! One registry per process (a global): the instrumentation points in `http/`, `worker/` and
//! `store/` stay one line each instead of threading a handle through every layer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the histogram buckets: from a millisecond to a minute.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Observations by bucket, their count and their sum (microseconds, to stay an integer).
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = (seconds * 1_000_000.0).max(0.0) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{}le=\"{bound}\"}} {cumulative}",
                if labels.is_empty() { "" } else { "," }
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{}le=\"+Inf\"}} {count}",
            if labels.is_empty() { "" } else { "," }
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A counter per label set; label sets are few (routes, workflows, statuses), not per request.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, u64>>);

impl Counters {
    fn add(&self, labels: &[(&str, &str)], by: u64) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(label_text(labels)).or_default() += by;
        }
    }

    fn render(&self, out: &mut String, name: &str) {
        if let Ok(map) = self.0.lock() {
            for (labels, value) in map.iter() {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    }
}

/// A histogram per label set.
#[derive(Default)]
struct Histograms(Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>);

impl Histograms {
    fn observe(&self, labels: &[(&str, &str)], seconds: f64) {
        let histogram = match self.0.lock() {
            Ok(mut map) => std::sync::Arc::clone(map.entry(label_text(labels)).or_default()),
            Err(_) => return,
        };
        histogram.observe(seconds);
    }

    fn render(&self, out: &mut String, name: &str) {
        if let Ok(map) = self.0.lock() {
            for (labels, histogram) in map.iter() {
                histogram.render(out, name, labels);
            }
        }
    }
}

/// `a="x",b="y"`, values escaped as the exposition format wants.
fn label_text(labels: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    text
}

/// Every metric hookflow keeps.
#[derive(Default)]
pub struct Metrics {
    requests: Counters,
    runs_finished: Counters,
    step_retries: Counters,
    step_duration: Histograms,
    rate_limit_waits: Counters,
    rate_limit_wait: Histograms,
    rate_limit_throttled: Counters,
    store_commit: Histogram,
    queue_depth: AtomicI64,
    runs_in_flight: AtomicI64,
    runs_queued: AtomicI64,
    runs_left_in_store: AtomicI64,
    run_window_peak: AtomicI64,
    runs_cancelled: Counters,
    workflow_pauses: Counters,
    paused_workflows: AtomicI64,
    trace_spans: Counters,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// An answered HTTP request; `route` is the route pattern, never the raw path (bounded labels).
    pub fn request(&self, listener: &str, route: &str, status: u16) {
        self.requests.add(
            &[
                ("listener", listener),
                ("route", route),
                ("status", &status.to_string()),
            ],
            1,
        );
    }

    pub fn run_finished(&self, workflow: &str, status: &str) {
        self.runs_finished
            .add(&[("workflow", workflow), ("status", status)], 1);
    }

    /// A failed step that will be tried again.
    pub fn step_retry(&self, workflow: &str) {
        self.step_retries.add(&[("workflow", workflow)], 1);
    }

    pub fn step_duration(&self, kind: &str, duration: Duration) {
        self.step_duration
            .observe(&[("kind", kind)], duration.as_secs_f64());
    }

    /// A step with effects waits its turn in an outgoing rate bucket (`host:<name>`, or
    /// `<workflow>/<step>` for a step's own limit), for `waited`.
    pub fn rate_limit_wait(&self, bucket: &str, waited: Duration) {
        self.rate_limit_waits.add(&[("bucket", bucket)], 1);
        self.rate_limit_wait
            .observe(&[("bucket", bucket)], waited.as_secs_f64());
    }

    /// A receiver answered `429` with `Retry-After`, which held the bucket.
    pub fn rate_limit_throttled(&self, bucket: &str) {
        self.rate_limit_throttled.add(&[("bucket", bucket)], 1);
    }

    /// One store transaction, from begin to durable commit.
    pub fn store_commit(&self, duration: Duration) {
        self.store_commit.observe(duration.as_secs_f64());
    }

    /// Runs waiting for a free worker slot: +1 queued, -1 taken.
    pub fn queue_depth_add(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn runs_in_flight_add(&self, delta: i64) {
        self.runs_in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Runs in the store's queue, as last counted.
    pub fn set_runs_queued(&self, queued: usize) {
        self.runs_queued
            .store(i64::try_from(queued).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Runs left in the store's queue because the worker's window was full.
    pub fn runs_left_in_store(&self, runs: usize) {
        self.runs_left_in_store
            .fetch_add(i64::try_from(runs).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// The most fresh runs the worker held in memory at once.
    pub fn run_window_held(&self, held: usize) {
        self.run_window_peak
            .fetch_max(i64::try_from(held).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// A run cancelled (or asked to stop) through `via`: `api`, `ui` or `cli`.
    pub fn run_cancelled(&self, via: &str) {
        self.runs_cancelled.add(&[("via", via)], 1);
    }

    /// A workflow paused or resumed (`action`) through `via`.
    pub fn workflow_pause(&self, action: &str, via: &str) {
        self.workflow_pauses
            .add(&[("action", action), ("via", via)], 1);
    }

    /// The workflows paused now, as the store holds them (read when the metrics are served, so
    /// a pause made through another process counts too).
    pub fn set_paused_workflows(&self, paused: usize) {
        self.paused_workflows
            .store(i64::try_from(paused).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Spans handed to the trace exporter, by what became of them: `exported`, `dropped` (the
    /// queue was full) or `failed` (the collector refused them or could not be reached).
    pub fn trace_spans(&self, outcome: &str, count: u64) {
        self.trace_spans.add(&[("outcome", outcome)], count);
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4). Refused requests
    /// are counted by the rejected-requests record (`http::rejected`), which is handed in.
    pub fn render(&self, rejected_by_reason: &BTreeMap<&str, u64>) -> String {
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            &mut out,
            "hookflow_http_requests_total",
            "counter",
            "HTTP requests answered, by listener, route pattern and status code.",
        );
        self.requests
            .render(&mut out, "hookflow_http_requests_total");
        header(
            &mut out,
            "hookflow_rejected_requests_total",
            "counter",
            "Webhook requests refused before they were stored, by reason.",
        );
        for (reason, count) in rejected_by_reason {
            let _ = writeln!(
                out,
                "hookflow_rejected_requests_total{{{}}} {count}",
                label_text(&[("reason", reason)])
            );
        }
        header(
            &mut out,
            "hookflow_runs_finished_total",
            "counter",
            "Runs that reached a final status, by workflow and status.",
        );
        self.runs_finished
            .render(&mut out, "hookflow_runs_finished_total");
        header(
            &mut out,
            "hookflow_step_retries_total",
            "counter",
            "Failed steps scheduled to be tried again, by workflow.",
        );
        self.step_retries
            .render(&mut out, "hookflow_step_retries_total");
        header(
            &mut out,
            "hookflow_step_duration_seconds",
            "histogram",
            "How long steps took, by step kind.",
        );
        self.step_duration
            .render(&mut out, "hookflow_step_duration_seconds");
        header(
            &mut out,
            "hookflow_rate_limit_waits_total",
            "counter",
            "Steps that waited for their turn in an outgoing rate bucket, by bucket.",
        );
        self.rate_limit_waits
            .render(&mut out, "hookflow_rate_limit_waits_total");
        header(
            &mut out,
            "hookflow_rate_limit_wait_seconds",
            "histogram",
            "How long steps waited for their turn in an outgoing rate bucket, by bucket.",
        );
        self.rate_limit_wait
            .render(&mut out, "hookflow_rate_limit_wait_seconds");
        header(
            &mut out,
            "hookflow_rate_limit_throttled_total",
            "counter",
            "Answers 429 with Retry-After that held an outgoing rate bucket, by bucket.",
        );
        self.rate_limit_throttled
            .render(&mut out, "hookflow_rate_limit_throttled_total");
        header(
            &mut out,
            "hookflow_store_commit_seconds",
            "histogram",
            "How long a store transaction took to commit (a group commit counts once).",
        );
        self.store_commit
            .render(&mut out, "hookflow_store_commit_seconds", "");
        header(
            &mut out,
            "hookflow_queue_depth",
            "gauge",
            "Runs waiting for a free worker slot.",
        );
        let _ = writeln!(
            out,
            "hookflow_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "hookflow_runs_in_flight",
            "gauge",
            "Runs executing now.",
        );
        let _ = writeln!(
            out,
            "hookflow_runs_in_flight {}",
            self.runs_in_flight.load(Ordering::Relaxed)
        );
        let gauges = [
            (
                "hookflow_runs_queued",
                "gauge",
                "Runs waiting in the store's queue, as last counted (for max_backlog).",
                &self.runs_queued,
            ),
            (
                "hookflow_runs_left_in_store_total",
                "counter",
                "Fresh runs left in the store's queue because the worker's window was full.",
                &self.runs_left_in_store,
            ),
            (
                "hookflow_run_window_peak",
                "gauge",
                "The most fresh runs the worker held in memory with their events at once.",
                &self.run_window_peak,
            ),
        ];
        for (name, kind, help, value) in gauges {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        self.render_pauses(&mut out);
        header(
            &mut out,
            "hookflow_trace_spans_total",
            "counter",
            "Spans handed to the OTLP exporter, by outcome (exported, dropped, failed).",
        );
        self.trace_spans
            .render(&mut out, "hookflow_trace_spans_total");
        out
    }

    /// Cancels, pauses and resumes, and the paused workflows.
    fn render_pauses(&self, out: &mut String) {
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            out,
            "hookflow_runs_cancelled_total",
            "counter",
            "Runs cancelled (or asked to stop, when running) by hand, by where it was asked: api, ui or cli.",
        );
        self.runs_cancelled
            .render(out, "hookflow_runs_cancelled_total");
        header(
            out,
            "hookflow_workflow_pauses_total",
            "counter",
            "Workflows paused or resumed, by action (pause, resume) and where it was asked.",
        );
        self.workflow_pauses
            .render(out, "hookflow_workflow_pauses_total");
        header(
            out,
            "hookflow_paused_workflows",
            "gauge",
            "Workflows paused now: their runs wait in the queue.",
        );
        let _ = writeln!(
            out,
            "hookflow_paused_workflows {}",
            self.paused_workflows.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_with_sum_and_count() {
        let metrics = Metrics::default();
        metrics.step_duration("http", Duration::from_millis(3));
        metrics.step_duration("http", Duration::from_millis(200));
        let text = metrics.render(&BTreeMap::new());
        assert!(
            text.contains("hookflow_step_duration_seconds_bucket{kind=\"http\",le=\"0.001\"} 0")
        );
        assert!(
            text.contains("hookflow_step_duration_seconds_bucket{kind=\"http\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("hookflow_step_duration_seconds_bucket{kind=\"http\",le=\"0.25\"} 2")
        );
        assert!(
            text.contains("hookflow_step_duration_seconds_bucket{kind=\"http\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("hookflow_step_duration_seconds_count{kind=\"http\"} 2"));
        assert!(text.contains("hookflow_step_duration_seconds_sum{kind=\"http\"} 0.203"));
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.run_finished("a\"b\\c", "failed");
        assert!(
            metrics
                .render(&BTreeMap::new())
                .contains(r#"hookflow_runs_finished_total{workflow="a\"b\\c",status="failed"} 1"#)
        );
    }
}

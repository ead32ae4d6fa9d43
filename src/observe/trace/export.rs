//! The exporter: spans go into a bounded queue (a full queue drops the span and counts it,
//! never making a request or a run wait), and one task sends them in batches, as OTLP/HTTP
//! protobuf, through the HTTP client the steps use.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::otlp::{Resource, export_request};
use super::{Span, TraceSettings};
use crate::future::BoxFuture;

/// Spans waiting to be sent; past this, new ones are dropped.
const QUEUE: usize = 4096;
/// Spans in one request at most.
const BATCH: usize = 512;
/// How long a batch waits for more spans before it is sent.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a flush at shutdown waits for the queue to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

enum Message {
    Span(Box<Span>),
    /// Send everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handle every instrumentation point holds (when traces are on): cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    queue: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

/// How export requests reach the collector: `serve` hands in the HTTP client the steps use
/// (this module sits below `effects`, so it names none).
pub trait CollectorClient: Send + Sync {
    /// POST `body` (`application/x-protobuf`) to `url`; the answer's status, or why there was
    /// none.
    fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u16, String>>;
}

impl Tracer {
    /// Start the exporting task on the current runtime, sending through `client`.
    pub fn start(settings: &TraceSettings, client: Arc<dyn CollectorClient>) -> Self {
        let (queue, spans) = mpsc::channel(QUEUE);
        let exporter = Exporter {
            client,
            settings: settings.clone(),
            failing: false,
        };
        tokio::spawn(exporter.run(spans));
        info!(endpoint = %settings.traces_url, service = %settings.service_name, "exporting traces");
        Self { queue }
    }

    /// Queue a finished span; an unsampled one is not recorded, and one the full queue has no
    /// room for is dropped and counted.
    pub fn record(&self, span: Span) {
        if !span.context.sampled {
            return;
        }
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            crate::observe::metrics::metrics().trace_spans("dropped", 1);
        }
    }

    /// Send every span queued so far (at shutdown), waiting a few seconds at most.
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        let flushed = async {
            if self.queue.send(Message::Flush(done)).await.is_ok() {
                let _ = sent.await;
            }
        };
        if tokio::time::timeout(FLUSH_TIMEOUT, flushed).await.is_err() {
            warn!("traces not all sent at shutdown");
        }
    }
}

struct Exporter {
    client: Arc<dyn CollectorClient>,
    settings: TraceSettings,
    /// The last export failed: said once when it starts failing and once when it recovers.
    failing: bool,
}

impl Exporter {
    async fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        while let Some(first) = queue.recv().await {
            take(first, &mut batch, &mut flushes);
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < BATCH && flushes.is_empty() {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(message)) => take(message, &mut batch, &mut flushes),
                    Ok(None) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.send(std::mem::take(&mut batch)).await;
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    async fn send(&mut self, spans: Vec<Span>) {
        let resource = Resource {
            service_name: &self.settings.service_name,
            scope_version: env!("CARGO_PKG_VERSION"),
        };
        let body = export_request(&resource, &spans);
        let count = spans.len() as u64;
        let answer = self
            .client
            .post(&self.settings.traces_url, body, EXPORT_TIMEOUT)
            .await;
        let problem = match answer {
            Ok(status) if (200..300).contains(&status) => None,
            Ok(status) => Some(format!("the collector answered {status}")),
            Err(err) => Some(err),
        };
        let metrics = crate::observe::metrics::metrics();
        match problem {
            None => {
                metrics.trace_spans("exported", count);
                if std::mem::replace(&mut self.failing, false) {
                    info!("traces are exported again");
                }
            }
            Some(problem) => {
                metrics.trace_spans("failed", count);
                if !std::mem::replace(&mut self.failing, true) {
                    warn!(endpoint = %self.settings.traces_url, %problem, "cannot export traces; spans are dropped until it works");
                }
            }
        }
    }
}

fn take(message: Message, batch: &mut Vec<Span>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Span(span) => batch.push(*span),
        Message::Flush(done) => flushes.push(done),
    }
}

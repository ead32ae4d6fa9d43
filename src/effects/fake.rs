//! Stand-ins for the outside world, for tests of the engine and of workflows: HTTP answers
//! scripted per method and URL, emails and commands recorded with scripted results, and a
//! clock that moves only when told. Nothing here opens a socket or starts a process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::clock::ManualClock;
use super::mail::{Delivery, Email, MailError, Mailer};
use super::process::{ProcessError, ProcessOutput, ProcessRequest, ProcessRunner};
use super::{Effects, HttpClient, HttpError, HttpRequest, HttpResponse};
use crate::future::BoxFuture;

pub(super) fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock still left consistent data behind.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A sequence of results: each call takes the next; the last repeats once the others are used.
#[derive(Debug)]
pub(super) struct Script<T> {
    next: VecDeque<T>,
}

impl<T: Clone> Script<T> {
    pub(super) fn new(results: Vec<T>) -> Self {
        Self {
            next: results.into(),
        }
    }

    pub(super) fn take(&mut self) -> Option<T> {
        if self.next.len() > 1 {
            self.next.pop_front()
        } else {
            self.next.front().cloned()
        }
    }
}

/// Which requests an HTTP answer is for.
#[derive(Debug, Clone)]
pub struct HttpMatch {
    /// Any method when `None`; compared without regard to case.
    pub method: Option<String>,
    /// A part of the URL (`"/orders"`, `"https://ci.example.com/"`).
    pub url_contains: String,
}

impl HttpMatch {
    fn matches(&self, request: &HttpRequest) -> bool {
        let method_matches = self
            .method
            .as_ref()
            .is_none_or(|method| method.eq_ignore_ascii_case(&request.method));
        method_matches && request.url.contains(&self.url_contains)
    }
}

type HttpScript = Script<Result<HttpResponse, HttpError>>;
type ProcessScript = Script<Result<ProcessOutput, ProcessError>>;

/// An HTTP client that answers from a script and keeps every request it was given.
#[derive(Debug, Default)]
pub struct FakeHttp {
    answers: Mutex<Vec<(HttpMatch, HttpScript)>>,
    sent: Mutex<Vec<HttpRequest>>,
}

impl FakeHttp {
    /// Requests matching `to` get `answers` in turn (the last one repeats). The first matching
    /// script of those given answers.
    pub fn answer(&self, to: HttpMatch, answers: Vec<Result<HttpResponse, HttpError>>) {
        locked(&self.answers).push((to, Script::new(answers)));
    }

    /// Every request sent, in order.
    pub fn sent(&self) -> Vec<HttpRequest> {
        locked(&self.sent).clone()
    }
}

/// A response with `status`, a JSON content type when `body` parses as JSON, and `body`.
pub fn http_response(status: u16, body: &str) -> HttpResponse {
    let json = serde_json::from_str::<serde_json::Value>(body).is_ok();
    let content_type = if json {
        "application/json"
    } else {
        "text/plain"
    };
    HttpResponse {
        status,
        headers: vec![("content-type".to_owned(), content_type.to_owned())],
        body: body.as_bytes().to_vec(),
    }
}

impl HttpClient for FakeHttp {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let answer = locked(&self.answers)
            .iter_mut()
            .find(|(to, _)| to.matches(&request))
            .and_then(|(_, script)| script.take());
        let answer = answer.unwrap_or_else(|| {
            Err(HttpError::InvalidRequest(format!(
                "no stub answers {} {}",
                request.method, request.url
            )))
        });
        locked(&self.sent).push(request);
        Box::pin(std::future::ready(answer))
    }
}

/// A mailer that keeps every email and answers from a script (delivered by default).
#[derive(Debug, Default)]
pub struct FakeMailer {
    results: Mutex<Option<Script<Result<Delivery, MailError>>>>,
    sent: Mutex<Vec<Email>>,
}

impl FakeMailer {
    /// The results of the next sends in turn (the last one repeats).
    pub fn answer(&self, results: Vec<Result<Delivery, MailError>>) {
        *locked(&self.results) = Some(Script::new(results));
    }

    /// Every email given to the mailer, in order.
    pub fn sent(&self) -> Vec<Email> {
        locked(&self.sent).clone()
    }
}

impl Mailer for FakeMailer {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<Delivery, MailError>> {
        let scripted = locked(&self.results).as_mut().and_then(Script::take);
        let result = scripted.unwrap_or_else(|| {
            Ok(Delivery::Smtp {
                reply: "250 accepted by the fake mailer".to_owned(),
                recipients: email.to.len() + email.cc.len() + email.bcc.len(),
            })
        });
        locked(&self.sent).push(email);
        Box::pin(std::future::ready(result))
    }
}

/// A process runner that runs nothing: it keeps every request and answers per program.
#[derive(Debug, Default)]
pub struct FakeProcess {
    results: Mutex<Vec<(String, ProcessScript)>>,
    ran: Mutex<Vec<ProcessRequest>>,
}

impl FakeProcess {
    /// The results of the next runs of `program` (as the step writes it), in turn.
    pub fn answer(&self, program: &str, results: Vec<Result<ProcessOutput, ProcessError>>) {
        locked(&self.results).push((program.to_owned(), Script::new(results)));
    }

    /// Every command asked for, in order.
    pub fn ran(&self) -> Vec<ProcessRequest> {
        locked(&self.ran).clone()
    }
}

impl ProcessRunner for FakeProcess {
    fn run(&self, request: ProcessRequest) -> BoxFuture<'_, Result<ProcessOutput, ProcessError>> {
        let scripted = locked(&self.results)
            .iter_mut()
            .find(|(program, _)| *program == request.program)
            .and_then(|(_, script)| script.take());
        let result =
            scripted.unwrap_or_else(|| Err(ProcessError::NotFound(request.program.clone())));
        locked(&self.ran).push(request);
        Box::pin(std::future::ready(result))
    }
}

/// One fake of each effect and the clock, and the [`Effects`] that use them.
#[derive(Debug, Clone)]
pub struct FakeWorld {
    pub http: Arc<FakeHttp>,
    pub mail: Arc<FakeMailer>,
    pub process: Arc<FakeProcess>,
    pub clock: Arc<ManualClock>,
}

impl FakeWorld {
    /// A world whose clock reads `now` until moved.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            http: Arc::default(),
            mail: Arc::default(),
            process: Arc::default(),
            clock: Arc::new(ManualClock::at(now)),
        }
    }

    pub fn effects(&self) -> Effects {
        Effects {
            http: self.http.clone(),
            mail: self.mail.clone(),
            process: self.process.clone(),
            clock: self.clock.clone(),
            // The clock moves only when told: a turn not free now is a durable wait.
            rate: crate::effects::rate::RateGate {
                patience: std::time::Duration::ZERO,
                ..Default::default()
            },
            stand_ins: None,
        }
    }
}

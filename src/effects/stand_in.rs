//! Stand-ins for the world, chosen per step: `hookflow test` answers each step's effects from the
//! stubs its case gives, and dry runs answer them with what the real service would say. Nothing
//! here opens a socket, sends mail or starts a process.

use std::sync::{Arc, Mutex};

use super::clock::Clock;
use super::fake::{Script, locked};
use super::mail::{Delivery, Email, MailError, Mailer};
use super::process::{ProcessError, ProcessOutput, ProcessRequest, ProcessRunner};
use super::{Effects, HttpClient, HttpError, HttpRequest, HttpResponse};
use crate::future::BoxFuture;

/// Gives each step the effects it acts through.
pub trait StandIns: Send + Sync {
    /// The effects of the step recorded as `step` (`notify`, or `orders[2].notify` inside a
    /// loop). `sample` is what the step's kind says a real service would answer, for a world
    /// that answers unstubbed effects with it.
    fn for_step(&self, step: &str, sample: Option<SampleAnswer>) -> Effects;
}

/// What a step gets from the outside world when nothing more specific is said.
#[derive(Debug, Clone)]
pub enum SampleAnswer {
    Http(HttpResponse),
    Mail(Delivery),
    Process(ProcessOutput),
}

/// One scripted answer of a stub.
#[derive(Debug, Clone)]
pub enum StubAnswer {
    Http(Result<HttpResponse, HttpError>),
    Mail(Result<Delivery, MailError>),
    Process(Result<ProcessOutput, ProcessError>),
}

impl StubAnswer {
    fn effect(&self) -> Effect {
        match self {
            StubAnswer::Http(_) => Effect::Http,
            StubAnswer::Mail(_) => Effect::Mail,
            StubAnswer::Process(_) => Effect::Process,
        }
    }
}

/// Which effects a stub answers.
#[derive(Debug, Clone)]
pub enum StubTarget {
    /// Every effect of the step of this name (in a loop or branch, each iteration's).
    Step(String),
    /// HTTP requests with this method (any when `None`) whose URL matches the pattern, where
    /// `*` stands for any run of characters.
    Http { method: Option<String>, url: String },
}

/// A stub: what it answers, its answers in turn (the last one repeats), and where it was
/// written, for messages.
#[derive(Debug)]
pub struct Stub {
    pub target: StubTarget,
    pub origin: String,
    answers: Script<StubAnswer>,
}

impl Stub {
    pub fn new(target: StubTarget, answers: Vec<StubAnswer>, origin: impl Into<String>) -> Self {
        Self {
            target,
            origin: origin.into(),
            answers: Script::new(answers),
        }
    }

    fn matches(&self, step: &str, request: &Request<'_>) -> bool {
        match (&self.target, request) {
            (StubTarget::Step(name), _) => step_matches(name, step),
            (StubTarget::Http { method, url }, Request::Http(sent)) => {
                method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&sent.method))
                    && glob_matches(url, &sent.url)
            }
            (StubTarget::Http { .. }, _) => false,
        }
    }
}

/// `name` is the step's own name or its full record name (`orders[2].notify`).
fn step_matches(name: &str, recorded: &str) -> bool {
    recorded == name
        || recorded
            .strip_suffix(name)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// A pattern where `*` matches any run of characters, compared with the whole text.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What to do with an effect no stub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstubbed {
    /// Fail the step, saying no stub answers it.
    Refuse,
    /// Answer with the step kind's sample answer.
    Sample,
}

/// How one effect was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnsweredBy {
    /// The stub written at this place.
    Stub(String),
    /// The kind's sample answer.
    Sample,
    /// Nothing: the step failed for want of a stub.
    Nothing,
}

/// One effect a step asked for, as the world saw it.
#[derive(Debug, Clone)]
pub struct EffectCall {
    /// The step's record name.
    pub step: String,
    /// `POST https://...`, `email to a@example.test`, `exec ./deploy.sh`.
    pub summary: String,
    pub answered_by: AnsweredBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Http,
    Mail,
    Process,
}

impl Effect {
    fn noun(self) -> &'static str {
        match self {
            Effect::Http => "an HTTP request",
            Effect::Mail => "an email",
            Effect::Process => "a command",
        }
    }
}

enum Request<'a> {
    Http(&'a HttpRequest),
    Mail(&'a Email),
    Process(&'a ProcessRequest),
}

impl Request<'_> {
    fn effect(&self) -> Effect {
        match self {
            Request::Http(_) => Effect::Http,
            Request::Mail(_) => Effect::Mail,
            Request::Process(_) => Effect::Process,
        }
    }

    fn summary(&self) -> String {
        match self {
            Request::Http(r) => format!("{} {}", r.method, r.url),
            Request::Mail(e) => {
                let to: Vec<String> = e.to.iter().map(ToString::to_string).collect();
                format!("email to {}", to.join(", "))
            }
            Request::Process(p) => format!("exec {}", p.program),
        }
    }
}

/// A world answered by stubs, shared by every step of a run; it keeps each effect asked for.
#[derive(Clone)]
pub struct StubbedWorld {
    inner: Arc<Inner>,
}

struct Inner {
    stubs: Mutex<Vec<Stub>>,
    unstubbed: Unstubbed,
    calls: Mutex<Vec<EffectCall>>,
    clock: Arc<dyn Clock>,
}

impl StubbedWorld {
    pub fn new(stubs: Vec<Stub>, unstubbed: Unstubbed, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                stubs: Mutex::new(stubs),
                unstubbed,
                calls: Mutex::new(Vec::new()),
                clock,
            }),
        }
    }

    /// Effects whose every step acts through this world.
    pub fn effects(&self) -> Effects {
        let mut effects = self.for_step("", None);
        effects.stand_ins = Some(Arc::new(self.clone()));
        effects
    }

    /// Every effect asked for so far, in order.
    pub fn calls(&self) -> Vec<EffectCall> {
        locked(&self.inner.calls).clone()
    }
}

impl StandIns for StubbedWorld {
    fn for_step(&self, step: &str, sample: Option<SampleAnswer>) -> Effects {
        let scoped = Arc::new(StepWorld {
            inner: Arc::clone(&self.inner),
            step: step.to_owned(),
            sample,
        });
        Effects {
            http: scoped.clone(),
            mail: scoped.clone(),
            process: scoped,
            clock: Arc::clone(&self.inner.clock),
            // Every turn not free now is a wait on the (virtual) clock, which the driver passes.
            rate: crate::effects::rate::RateGate {
                patience: std::time::Duration::ZERO,
                ..Default::default()
            },
            stand_ins: None,
        }
    }
}

/// The world as one step sees it.
struct StepWorld {
    inner: Arc<Inner>,
    step: String,
    sample: Option<SampleAnswer>,
}

impl StepWorld {
    /// The stub's next answer, the sample, or why there is none; the call is kept either way.
    fn answer(&self, request: Request<'_>) -> Result<StubAnswer, String> {
        let (answer, answered_by) = match self.stubbed(&request) {
            Some((answer, origin)) => (Ok(answer), AnsweredBy::Stub(origin)),
            None => match (self.inner.unstubbed, self.sample_answer()) {
                (Unstubbed::Sample, Some(sample)) => (Ok(sample), AnsweredBy::Sample),
                _ => (Err(self.no_stub(&request)), AnsweredBy::Nothing),
            },
        };
        locked(&self.inner.calls).push(EffectCall {
            step: self.step.clone(),
            summary: request.summary(),
            answered_by,
        });
        let effect = request.effect();
        match answer {
            Ok(answer) if answer.effect() != effect => Err(format!(
                "the stub for step '{}' answers {}, but the step sends {}",
                self.step,
                answer.effect().noun(),
                effect.noun()
            )),
            other => other,
        }
    }

    fn stubbed(&self, request: &Request<'_>) -> Option<(StubAnswer, String)> {
        let mut stubs = locked(&self.inner.stubs);
        let stub = stubs.iter_mut().find(|s| s.matches(&self.step, request))?;
        let answer = stub.answers.take()?;
        Some((answer, stub.origin.clone()))
    }

    fn sample_answer(&self) -> Option<StubAnswer> {
        Some(match self.sample.clone()? {
            SampleAnswer::Http(response) => StubAnswer::Http(Ok(response)),
            SampleAnswer::Mail(delivery) => StubAnswer::Mail(Ok(delivery)),
            SampleAnswer::Process(output) => StubAnswer::Process(Ok(output)),
        })
    }

    fn no_stub(&self, request: &Request<'_>) -> String {
        format!(
            "no stub answers step '{}' ({}); nothing is sent in a test: add one under `stubs`",
            self.step,
            request.summary()
        )
    }
}

impl HttpClient for StepWorld {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        let result = match self.answer(Request::Http(&request)) {
            Ok(StubAnswer::Http(answer)) => answer,
            Ok(_) => Err(HttpError::InvalidRequest("mismatched stub".into())),
            Err(message) => Err(HttpError::InvalidRequest(message)),
        };
        Box::pin(std::future::ready(result))
    }
}

impl Mailer for StepWorld {
    fn send(&self, email: Email) -> BoxFuture<'_, Result<Delivery, MailError>> {
        let result = match self.answer(Request::Mail(&email)) {
            Ok(StubAnswer::Mail(answer)) => answer,
            Ok(_) => Err(MailError::Invalid("mismatched stub".into())),
            Err(message) => Err(MailError::Invalid(message)),
        };
        Box::pin(std::future::ready(result))
    }
}

impl ProcessRunner for StepWorld {
    fn run(&self, request: ProcessRequest) -> BoxFuture<'_, Result<ProcessOutput, ProcessError>> {
        let result = match self.answer(Request::Process(&request)) {
            Ok(StubAnswer::Process(answer)) => answer,
            Ok(_) => Err(ProcessError::Invalid("mismatched stub".into())),
            Err(message) => Err(ProcessError::Invalid(message)),
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_the_whole_text() {
        assert!(glob_matches(
            "https://crm.example.test/*",
            "https://crm.example.test/a/b"
        ));
        assert!(glob_matches("*/orders", "https://x.test/orders"));
        assert!(!glob_matches("*/orders", "https://x.test/orders/1"));
        assert!(glob_matches(
            "https://*.test/*/1",
            "https://x.test/orders/1"
        ));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("a*a", "a"));
    }

    #[test]
    fn a_step_name_matches_its_iterations() {
        assert!(step_matches("notify", "notify"));
        assert!(step_matches("notify", "orders[2].notify"));
        assert!(step_matches("orders[2].notify", "orders[2].notify"));
        assert!(!step_matches("notify", "renotify"));
        assert!(!step_matches("notify", "notify.other"));
    }
}

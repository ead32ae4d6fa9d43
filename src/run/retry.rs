//! A step's retry policy as workflows write it: how many attempts, which backoff, which
//! statuses besides the transient ones. Whether and when to retry is the engine's arithmetic.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Exponential,
    Fixed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 means no retry.
    pub attempts: u32,
    pub backoff: Backoff,
    pub initial: Duration,
    pub max: Duration,
    /// Statuses retried besides the transient ones (connection errors, timeouts, 408, 429, 5xx).
    pub on: Vec<StatusPattern>,
}

impl Default for RetryPolicy {
    /// No retries: a failed step fails at once.
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Backoff::Exponential,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            on: Vec::new(),
        }
    }
}

/// An HTTP status as workflows write it: an exact code, or a class such as `2xx` (in `expect`
/// and in `retry.on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    Exact(u16),
    Class(u16),
}

impl StatusPattern {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Exact(code) => code == status,
            StatusPattern::Class(class) => status / 100 == class,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if let Some(class) = text.strip_suffix("xx") {
            return class
                .parse()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusPattern::Class);
        }
        text.parse()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(StatusPattern::Exact)
    }
}

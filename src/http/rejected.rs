//! The record of refused webhook requests: a bounded ring, newest first, of what was refused,
//! where from and why, with a count per reason since start. The caller only ever sees a bare
//! status; the operator reads the reason here (`GET /api/rejected`), in the log and in metrics.
//! Nothing recorded carries a secret or the request body.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;

/// How many refused requests are kept; older ones are forgotten (their counts stay).
pub const DEFAULT_CAPACITY: usize = 1000;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// No workflow is bound to the path (404).
    NoRoute,
    /// The method is not accepted on the path (405).
    MethodNotAllowed,
    /// The source address is outside `verify.ip_allow` (401).
    IpNotAllowed,
    /// Over the route's `rate_limit` (429).
    RateLimited,
    /// Over the route's `max_body` (413).
    BodyTooLarge,
    /// The body could not be read off the connection, e.g. the client was too slow (400/408).
    BodyUnreadable,
    /// A header a `verify` preset needs is missing (401).
    MissingHeader,
    /// A query parameter a `verify` preset needs is missing (401).
    MissingQueryParameter,
    /// No signature, token or password matches (401).
    BadSignature,
    /// The signed timestamp is outside the tolerance (401).
    StaleTimestamp,
    /// A signature header that does not have the scheme's shape (401).
    MalformedSignature,
    /// The workflow's `verify` cannot be used: a secret unset, empty or not in the scheme's
    /// format (401; the operator must act).
    VerifyMisconfigured,
    /// The body does not parse as its content type, or is nested too deep (400).
    BadBody,
    /// The parsed body does not match the webhook's `schema` (422).
    InvalidBody,
    /// The store's queue holds `max_backlog` runs: the sender is asked to retry later (503).
    BacklogFull,
}

impl RejectReason {
    /// Every reason, in the order the UI's chart stacks them.
    pub const ALL: [RejectReason; 15] = [
        Self::NoRoute,
        Self::MethodNotAllowed,
        Self::IpNotAllowed,
        Self::RateLimited,
        Self::BodyTooLarge,
        Self::BodyUnreadable,
        Self::MissingHeader,
        Self::MissingQueryParameter,
        Self::BadSignature,
        Self::StaleTimestamp,
        Self::MalformedSignature,
        Self::VerifyMisconfigured,
        Self::BadBody,
        Self::InvalidBody,
        Self::BacklogFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::RateLimited => "rate_limited",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::MissingHeader => "missing_header",
            Self::MissingQueryParameter => "missing_query_parameter",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::MalformedSignature => "malformed_signature",
            Self::VerifyMisconfigured => "verify_misconfigured",
            Self::BadBody => "bad_body",
            Self::InvalidBody => "invalid_body",
            Self::BacklogFull => "backlog_full",
        }
    }

    /// The reason of a failed `verify` check.
    pub fn of_verify(rejection: &crate::verify::Rejection) -> Self {
        use crate::verify::Rejection;
        match rejection {
            Rejection::MissingHeader(_) | Rejection::MissingNamedHeader(_) => Self::MissingHeader,
            Rejection::MissingQueryParameter(_) => Self::MissingQueryParameter,
            Rejection::BadSignature => Self::BadSignature,
            Rejection::StaleTimestamp => Self::StaleTimestamp,
            Rejection::Malformed(_) | Rejection::Repeated(_) => Self::MalformedSignature,
            Rejection::UnusableSecret(_) => Self::VerifyMisconfigured,
        }
    }
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedRequest {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    /// The matched route pattern, when the path matched one.
    pub route: Option<String>,
    /// The workflows bound to the route and method.
    pub workflows: Vec<String>,
    /// The client address (after trusted proxies), when known.
    pub source: Option<IpAddr>,
    pub status: u16,
    pub reason: RejectReason,
    /// The reason in words, e.g. "the header x-hub-signature-256 is missing"; never a secret or
    /// a piece of the body.
    pub detail: String,
}

/// Refused requests, shared by the webhook listener (which writes) and the admin API, UI and
/// metrics (which read).
#[derive(Debug)]
pub struct RejectedLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Newest at the front.
    recent: VecDeque<RejectedRequest>,
    counts: BTreeMap<RejectReason, u64>,
    /// Refusals per minute and reason over the last day (oldest first): the UI's chart,
    /// whatever the ring has forgotten. At most 1440 small maps.
    minutes: VecDeque<(DateTime<Utc>, BTreeMap<RejectReason, u64>)>,
}

/// How long the per-minute counts are kept.
pub const MINUTES_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Inner {
    fn count_minute(&mut self, at: DateTime<Utc>, reason: RejectReason) {
        let minute = at
            .duration_trunc(chrono::TimeDelta::minutes(1))
            .unwrap_or(at);
        // Requests are recorded about in time order; one finished a little late lands in its
        // own minute, a few places from the end.
        let place = self.minutes.iter().rposition(|(m, _)| *m <= minute);
        match place {
            Some(i) if self.minutes[i].0 == minute => {
                *self.minutes[i].1.entry(reason).or_default() += 1;
            }
            _ => {
                let at = place.map_or(0, |i| i + 1);
                self.minutes
                    .insert(at, (minute, BTreeMap::from([(reason, 1)])));
            }
        }
        let newest = self.minutes.back().map_or(minute, |(m, _)| *m);
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| *m <= newest - MINUTES_KEPT)
        {
            self.minutes.pop_front();
        }
    }
}

impl Default for RejectedLog {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl RejectedLog {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keep one refused request (forgetting the oldest when full), count it, and log it.
    pub fn record(&self, mut request: RejectedRequest) {
        // What the sender wrote (path, method, a content type in `detail`) is cut short: a full
        // ring of 64 KiB paths would otherwise hold tens of megabytes for the price of 1000
        // requests to no route.
        for text in [&mut request.method, &mut request.path, &mut request.detail] {
            shorten(text);
        }
        tracing::warn!(
            method = %request.method,
            path = %request.path,
            route = request.route.as_deref().unwrap_or(""),
            workflows = %request.workflows.join(","),
            source = %request.source.map(|s| s.to_string()).unwrap_or_default(),
            status = request.status,
            reason = request.reason.as_str(),
            detail = %request.detail,
            "request rejected"
        );
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        *inner.counts.entry(request.reason).or_default() += 1;
        inner.count_minute(request.at, request.reason);
        if inner.recent.len() >= self.capacity {
            inner.recent.pop_back();
        }
        inner.recent.push_front(request);
    }

    /// The newest `limit` refused requests, newest first.
    pub fn recent(&self, limit: usize) -> Vec<RejectedRequest> {
        self.inner
            .lock()
            .map(|inner| inner.recent.iter().take(limit).cloned().collect())
            .unwrap_or_default()
    }

    /// How many requests were refused for each reason since the server started (including
    /// those the ring has forgotten). Reasons never seen are absent.
    pub fn counts_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .lock()
            .map(|inner| {
                inner
                    .counts
                    .iter()
                    .map(|(reason, count)| (reason.as_str(), *count))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl RejectedLog {
    /// Refusals per minute and reason since `since` (kept for [`MINUTES_KEPT`]), oldest
    /// minute first: `(minute, reason, count)`.
    pub fn per_minute(&self, since: DateTime<Utc>) -> Vec<(DateTime<Utc>, &'static str, u64)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .minutes
            .iter()
            .filter(|(minute, _)| *minute >= since)
            .flat_map(|(minute, reasons)| {
                reasons
                    .iter()
                    .map(|(reason, count)| (*minute, reason.as_str(), *count))
            })
            .collect()
    }
}

/// The most bytes of sender-written text a record keeps per field.
pub const MAX_FIELD_LEN: usize = 256;

fn shorten(text: &mut String) {
    if text.len() > MAX_FIELD_LEN {
        let mut end = MAX_FIELD_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str, reason: RejectReason) -> RejectedRequest {
        RejectedRequest {
            at: Utc::now(),
            method: "POST".into(),
            path: path.into(),
            route: None,
            workflows: Vec::new(),
            source: None,
            status: 401,
            reason,
            detail: String::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_first_and_counts_everything() {
        let log = RejectedLog::with_capacity(3);
        for i in 0..5 {
            let reason = if i % 2 == 0 {
                RejectReason::BadSignature
            } else {
                RejectReason::RateLimited
            };
            log.record(refused(&format!("/p{i}"), reason));
        }
        let paths: Vec<String> = log.recent(10).into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/p4", "/p3", "/p2"]);
        assert_eq!(log.recent(1)[0].path, "/p4");
        let counts = log.counts_by_reason();
        assert_eq!(counts.get("bad_signature"), Some(&3));
        assert_eq!(counts.get("rate_limited"), Some(&2));
        assert_eq!(counts.get("no_route"), None);
        let json = serde_json::to_value(&log.recent(1)[0]).unwrap();
        assert_eq!(json["reason"], "bad_signature");
    }

    #[test]
    fn refusals_are_counted_per_minute_for_a_day_beyond_the_ring() {
        let log = RejectedLog::with_capacity(1);
        let base = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |seconds: i64, reason| {
            let mut request = refused("/x", reason);
            request.at = base + chrono::TimeDelta::seconds(seconds);
            request
        };
        log.record(at(5, RejectReason::NoRoute));
        log.record(at(70, RejectReason::BadSignature));
        log.record(at(50, RejectReason::NoRoute)); // late, in the first minute
        log.record(at(75, RejectReason::BadSignature));
        let minute = |m: i64| base + chrono::TimeDelta::minutes(m);
        assert_eq!(
            log.per_minute(base),
            vec![(minute(0), "no_route", 2), (minute(1), "bad_signature", 2)]
        );
        assert_eq!(log.per_minute(minute(1)).len(), 1);
        // A day later the first minutes are forgotten.
        log.record(at(24 * 3600 + 60, RejectReason::RateLimited));
        let kept = log.per_minute(base);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].1, "rate_limited");
        assert_eq!(RejectReason::ALL.len(), 15);
    }

    #[test]
    fn what_the_sender_wrote_is_kept_short() {
        let log = RejectedLog::with_capacity(2);
        let long = format!("/{}", "é".repeat(40_000));
        let mut request = refused(&long, RejectReason::NoRoute);
        request.detail = format!("the body does not parse as {}", "x".repeat(60_000));
        log.record(request);
        let kept = &log.recent(1)[0];
        assert!(kept.path.len() <= MAX_FIELD_LEN + 3, "{}", kept.path.len());
        assert!(kept.path.ends_with("...") && kept.path.starts_with("/éé"));
        assert!(kept.detail.len() <= MAX_FIELD_LEN + 3);
        log.record(refused("/short", RejectReason::NoRoute));
        assert_eq!(log.recent(1)[0].path, "/short");
    }
}

//! The admin listener's query strings, read by hand so that every mistake gets a message: the
//! API reads them strictly, as its OpenAPI description says (a parameter given empty is an
//! error), the UI leniently (its filter form sends every field, empty ones included).

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::run::RunStatus;
use crate::store::{RunCursor, RunFilter};

/// Runs per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// The most runs one page holds.
pub const MAX_PAGE: u32 = 500;

/// How a parameter given with an empty value is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// The API: an empty value is a mistake (400); a parameter left out means any.
    Refused,
    /// The UI's forms: an empty value means any, and values are trimmed.
    Any,
}

/// Read a query string into `T`; what cannot be read is a message for a 400.
pub fn read<T: DeserializeOwned>(query: Option<&str>) -> Result<T, String> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|err| format!("the query string cannot be read: {err}"))
}

/// The runs listing's query: `workflow`, `status`, `since`/`until` (RFC 3339), `cursor` (the
/// `next` of the previous page) and `limit`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub workflow: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

/// The value of a parameter, `None` when it means any.
fn given<'a>(
    name: &str,
    value: &'a Option<String>,
    empty: Empty,
) -> Result<Option<&'a str>, String> {
    match (value.as_deref(), empty) {
        (None, _) => Ok(None),
        (Some(text), Empty::Any) => Ok(Some(text.trim()).filter(|t| !t.is_empty())),
        (Some(""), Empty::Refused) => Err(format!("`{name}` is empty; leave it out to mean any")),
        (Some(text), Empty::Refused) => Ok(Some(text)),
    }
}

/// A whole number from `min` to `max`, digits only (no sign, no spaces).
fn whole_number(name: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    let number = if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
    {
        text.parse::<u64>().ok()
    } else {
        None
    };
    number.filter(|n| (min..=max).contains(n)).ok_or_else(|| {
        format!(
            "`{name}` must be a whole number from {min} to {max}, not '{}'",
            shorten(text)
        )
    })
}

fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

/// A cursor as this server writes them (`RunCursor::encode`: `<unix micros>.<run id>`), the
/// shape the OpenAPI description gives as a pattern: `-?[0-9]{1,16}\.[0-9a-f-]{1,36}`.
fn cursor_shaped(text: &str) -> bool {
    let Some((micros, id)) = text.split_once('.') else {
        return false;
    };
    let digits = micros.strip_prefix('-').unwrap_or(micros);
    (1..=16).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

impl ListQuery {
    /// The store filter; a bad value is a message for a 400.
    pub fn filter(&self, empty: Empty) -> Result<RunFilter, String> {
        let time = |name: &str, value: &Option<String>| -> Result<_, String> {
            given(name, value, empty)?
                .map(|text| {
                    chrono::DateTime::parse_from_rfc3339(text)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| format!("`{name}` must be an RFC 3339 time: {e}"))
                })
                .transpose()
        };
        let status = match given("status", &self.status, empty)? {
            None => None,
            Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
                format!("unknown status '{}'; expected queued, running, retrying, succeeded, failed, filtered or cancelled", shorten(text))
            })?),
        };
        let before = match given("cursor", &self.cursor, empty)? {
            None => None,
            Some(text) => Some(
                Some(text)
                    .filter(|t| cursor_shaped(t))
                    .and_then(RunCursor::decode)
                    .ok_or("the cursor is not one this server gave")?,
            ),
        };
        let limit = match given("limit", &self.limit, empty)? {
            None => DEFAULT_PAGE,
            // At most MAX_PAGE, so it fits.
            Some(text) => whole_number("limit", text, 1, u64::from(MAX_PAGE))? as u32,
        };
        Ok(RunFilter {
            workflow: given("workflow", &self.workflow, empty)?.map(str::to_owned),
            status,
            limit,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            before,
        })
    }
}

/// `GET /api/rejected`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct RejectedQuery {
    pub limit: Option<String>,
}

impl RejectedQuery {
    /// How many refused requests to list: `limit`, or `default`.
    pub fn limit(&self, default: usize) -> Result<usize, String> {
        match given("limit", &self.limit, Empty::Refused)? {
            None => Ok(default),
            // The record holds fewer than that; a larger value lists them all.
            Some(text) => whole_number("limit", text, 0, u32::MAX.into()).map(|n| n as usize),
        }
    }
}

/// `POST /api/runs/{id}/replay`'s query.
#[derive(Debug, Default, Deserialize)]
pub struct ReplayQuery {
    pub from_start: Option<String>,
    pub latest: Option<String>,
}

impl ReplayQuery {
    /// Run every step again instead of resuming at the failed one.
    pub fn from_start(&self) -> Result<bool, String> {
        flag("from_start", self.from_start.as_deref())
    }

    /// Run the workflow's definition as the server has it now, not the run's own.
    pub fn latest(&self) -> Result<bool, String> {
        flag("latest", self.latest.as_deref())
    }
}

/// A yes-or-no parameter: absent is no.
fn flag(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!(
            "`{name}` must be true or false, not '{}'",
            shorten(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(query: &str, empty: Empty) -> Result<RunFilter, String> {
        read::<ListQuery>(Some(query))?.filter(empty)
    }

    #[test]
    fn the_api_reads_its_runs_query_strictly() {
        let filter = list(
            "workflow=orders&status=failed&limit=20&since=2026-01-01T00:00:00Z",
            Empty::Refused,
        )
        .unwrap();
        assert_eq!(filter.workflow.as_deref(), Some("orders"));
        assert_eq!(filter.limit, 20);
        assert!(filter.since.is_some() && filter.until.is_none());
        assert_eq!(list("", Empty::Refused).unwrap().limit, DEFAULT_PAGE);
        assert_eq!(list("limit=500", Empty::Refused).unwrap().limit, 500);
        for (query, expected) in [
            ("limit=abc", "`limit` must be a whole number from 1 to 500"),
            ("limit=0", "from 1 to 500, not '0'"),
            ("limit=501", "not '501'"),
            ("limit=-1", "not '-1'"),
            ("limit=%2B5", "not '+5'"),
            ("limit=+5", "not ' 5'"),
            ("limit=", "`limit` is empty"),
            ("since=", "`since` is empty"),
            ("until=", "`until` is empty"),
            ("status=", "`status` is empty"),
            ("cursor=", "`cursor` is empty"),
            ("workflow=", "`workflow` is empty"),
            ("since=yesterday", "`since` must be an RFC 3339 time"),
            (
                "since=%202026-01-01T00:00:00Z",
                "`since` must be an RFC 3339 time",
            ),
            ("status=done", "unknown status 'done'"),
            ("cursor=__proto__", "the cursor is not one this server gave"),
            ("cursor=%2B5.abc", "the cursor is not one this server gave"),
            ("limit=1&limit=2", "the query string cannot be read"),
        ] {
            let err = list(query, Empty::Refused).unwrap_err();
            assert!(err.contains(expected), "{query}: {err}");
        }
    }

    #[test]
    fn the_ui_takes_empty_values_as_any() {
        let filter = list("workflow=&status=&cursor=&since=+&limit=", Empty::Any).unwrap();
        assert_eq!(filter.workflow, None);
        assert_eq!(filter.status, None);
        assert_eq!(filter.limit, DEFAULT_PAGE);
        assert!(list("limit=0", Empty::Any).is_err());
    }

    #[test]
    fn cursors_are_read_as_written() {
        let cursor =
            RunCursor::decode("1780000000000000.01a24ea9-1c79-75fe-9b00-162e0197f9c9").unwrap();
        let text = cursor.encode();
        assert!(cursor_shaped(&text), "{text}");
        assert!(
            list(&format!("cursor={text}"), Empty::Refused)
                .unwrap()
                .before
                .is_some()
        );
        for bad in [
            "5",
            ".abc",
            "5.",
            "x5.abc",
            "12345678901234567.abc",
            "5.ABC",
            "5.a b",
        ] {
            assert!(!cursor_shaped(bad), "{bad}");
        }
        assert!(cursor_shaped("-5.abc"));
    }

    #[test]
    fn replay_and_rejected_queries_say_what_is_wrong() {
        let replay = |q: &str| read::<ReplayQuery>(Some(q)).and_then(|r| r.from_start());
        assert_eq!(replay(""), Ok(false));
        assert_eq!(replay("from_start=true"), Ok(true));
        assert_eq!(replay("from_start=false"), Ok(false));
        assert!(
            replay("from_start=null")
                .unwrap_err()
                .contains("true or false")
        );
        assert!(replay("from_start=").is_err());
        assert!(replay("from_start=true&from_start=true").is_err());
        let latest = |q: &str| read::<ReplayQuery>(Some(q)).and_then(|r| r.latest());
        assert_eq!(latest("from_start=true"), Ok(false));
        assert_eq!(latest("latest=true"), Ok(true));
        assert_eq!(
            latest("latest=yes"),
            Err("`latest` must be true or false, not 'yes'".into())
        );
        let rejected = |q: &str| read::<RejectedQuery>(Some(q)).and_then(|r| r.limit(1000));
        assert_eq!(rejected(""), Ok(1000));
        assert_eq!(rejected("limit=0"), Ok(0));
        assert_eq!(rejected("limit=20"), Ok(20));
        for bad in ["limit=-1", "limit=abc", "limit=", "limit=1.5"] {
            assert!(rejected(bad).is_err(), "{bad}");
        }
    }
}

//! The run data model every layer shares: the event a run runs on, the run's and its steps'
//! states, step records, a synchronous answer, retry policies and rate limits, a new run's keys
//! and an event saved as payload files, and the trace context a run carries. Plain data with no
//! behaviour beyond parsing and printing itself; the interpreter lives in `engine`.

mod admission;
mod event;
pub mod multipart;
pub mod payload;
pub mod rate;
mod record;
mod retry;
mod status;
mod trace;

pub use admission::{ConcurrencyMode, DedupeKey, NewRun, RunConcurrency};
pub use event::{Event, Trigger};
pub use payload::SavedPayload;
pub use rate::RateLimit;
pub use record::{Attempt, MASK, StepRecord, SyncResponse};
pub use retry::{Backoff, RetryPolicy, StatusPattern};
pub use status::{RunStatus, StepStatus, TRANSITIONS};
pub use trace::{BadTraceParent, TraceParent, hex};

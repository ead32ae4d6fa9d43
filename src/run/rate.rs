//! Outgoing rate limits as data, and their arithmetic: GCRA (the generic cell rate algorithm), a
//! token bucket kept as one time per bucket, so a store can hold it in one column and update
//! it in one statement.
//!
//! A bucket's state is its *theoretical arrival time* (TAT): when it would be empty again had
//! every slot taken so far been spaced exactly one `interval` apart. A slot is free at
//! `TAT - tolerance` (the burst lets that many slots come early) or now, whichever is later.
//! Taking a slot always reserves it, even one in the future, and moves the TAT on by one
//! interval: callers waiting their turn queue up in the order they asked.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// `rate_limit:` of a step or of a host: `per_second` slots a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Times as the buckets keep them: microseconds since the Unix epoch.
pub type Micros = i64;

/// A slot taken: when its holder may go, and the bucket's state after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: Micros,
    pub tat: Micros,
}

impl RateLimit {
    /// The spacing of slots at the steady rate, at least one microsecond.
    pub fn interval(&self) -> Micros {
        let micros = (1_000_000.0 / self.per_second).ceil();
        if micros.is_finite() {
            (micros as Micros).max(1)
        } else {
            Micros::MAX / 4
        }
    }

    /// How far ahead of the steady rate a burst may run.
    pub fn tolerance(&self) -> Micros {
        self.interval()
            .saturating_mul(Micros::from(self.burst.max(1) - 1))
    }

    /// The slot the next caller gets from a bucket in state `tat` (none: never used) at `now`.
    pub fn take(&self, tat: Option<Micros>, now: Micros) -> Slot {
        let tat = tat.unwrap_or(now).max(now).saturating_add(self.interval());
        Slot {
            at: self.slot_of(tat, now),
            tat,
        }
    }

    /// When the slot that moved the bucket to `tat` is free, at `now`: the one formula the
    /// stores share, as they compute the new TAT in their own statements.
    pub fn slot_of(&self, tat: Micros, now: Micros) -> Micros {
        tat.saturating_sub(self.interval())
            .saturating_sub(self.tolerance())
            .max(now)
    }

    /// The bucket's state once no slot may be free before `until` (a receiver's `429` with
    /// `Retry-After`): a later state is kept.
    pub fn hold(&self, tat: Option<Micros>, until: Micros) -> Micros {
        let held = until.saturating_add(self.tolerance());
        tat.map_or(held, |tat| tat.max(held))
    }
}

/// Buckets kept in memory, for a process alone with its buckets (a SQLite store, a test, a dry
/// run): the same arithmetic as a shared store's table.
#[derive(Debug, Default)]
pub struct MemoryBuckets {
    tats: Mutex<HashMap<String, Micros>>,
}

impl MemoryBuckets {
    pub fn take(&self, key: &str, limit: &RateLimit, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = to_micros(now);
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        // A bucket whose TAT has passed is as good as new: dropping it keeps the map small.
        tats.retain(|_, tat| *tat > now);
        let slot = limit.take(tats.get(key).copied(), now);
        tats.insert(key.to_owned(), slot.tat);
        from_micros(slot.at)
    }

    pub fn hold(&self, key: &str, limit: &RateLimit, until: DateTime<Utc>) {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let held = limit.hold(tats.get(key).copied(), to_micros(until));
        tats.insert(key.to_owned(), held);
    }
}

pub fn to_micros(at: DateTime<Utc>) -> Micros {
    at.timestamp_micros()
}

pub fn from_micros(micros: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Micros = 1_000_000;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn slots_are_spaced_at_the_rate_and_queue_in_order() {
        let l = limit(5.0, 1);
        assert_eq!(l.interval(), SECOND / 5);
        assert_eq!(l.tolerance(), 0);
        let now = 100 * SECOND;
        let first = l.take(None, now);
        assert_eq!(first.at, now);
        let second = l.take(Some(first.tat), now);
        assert_eq!(second.at, now + SECOND / 5);
        let third = l.take(Some(second.tat), now);
        assert_eq!(third.at, now + 2 * SECOND / 5);
        // Any window of a second holds at most 5 slots.
        let mut tat = None;
        let ats: Vec<Micros> = (0..20)
            .map(|_| {
                let slot = l.take(tat, now);
                tat = Some(slot.tat);
                slot.at
            })
            .collect();
        for (i, at) in ats.iter().enumerate() {
            let within = ats[i..].iter().filter(|t| **t < at + SECOND).count();
            assert!(within <= 5, "{within} slots in a second from {at}");
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rate_holds() {
        let l = limit(2.0, 3);
        let now = 10 * SECOND;
        let mut tat = None;
        let mut ats = Vec::new();
        for _ in 0..5 {
            let slot = l.take(tat, now);
            tat = Some(slot.tat);
            ats.push(slot.at - now);
        }
        assert_eq!(ats, vec![0, 0, 0, SECOND / 2, SECOND]);
    }

    #[test]
    fn an_idle_bucket_fills_up_again_but_no_further_than_its_burst() {
        let l = limit(1.0, 2);
        let now = 10 * SECOND;
        let first = l.take(None, now);
        let later = now + 60 * SECOND;
        let a = l.take(Some(first.tat), later);
        let b = l.take(Some(a.tat), later);
        let c = l.take(Some(b.tat), later);
        assert_eq!((a.at, b.at, c.at), (later, later, later + SECOND));
    }

    #[test]
    fn a_hold_pushes_the_next_slot_to_its_end_and_keeps_a_later_state() {
        let l = limit(10.0, 3);
        let now = 10 * SECOND;
        let until = now + 2 * SECOND;
        let held = l.hold(Some(now), until);
        assert_eq!(l.take(Some(held), now).at, until);
        // A bucket already booked past the hold keeps its queue.
        let booked = now + 5 * SECOND;
        assert_eq!(l.hold(Some(booked), until), booked);
        assert_eq!(l.take(None, now).at, now);
        assert_eq!(l.take(Some(l.hold(None, until)), now).at, until);
    }

    #[test]
    fn times_convert_both_ways() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_micros(to_micros(at)), at);
    }
}

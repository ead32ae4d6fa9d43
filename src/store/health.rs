//! Whether the store can write right now: what readiness reports, and what lets a store that
//! lost its files refuse every write instead of answering for events it cannot keep.

use std::sync::Mutex;

/// The store's ability to write, as its last write (or probe) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    Writable,
    /// The last write failed (a full disk, a file that cannot be written, a lock held too long);
    /// the next write tries again, so the store recovers by itself when the disk does.
    Failing {
        reason: String,
    },
    /// The store's files were removed or replaced under the server: writes would go to files
    /// nobody will find after a restart, so none is made until the server is restarted.
    Broken {
        reason: String,
    },
}

/// Shared by a store's handle (readiness) and its writer (which sets it).
#[derive(Debug)]
pub struct StoreHealth {
    state: Mutex<HealthState>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self {
            state: Mutex::new(HealthState::Writable),
        }
    }
}

impl StoreHealth {
    pub fn state(&self) -> HealthState {
        match self.state.lock() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A write committed: the store works again, unless it is broken for good.
    pub fn wrote(&self) {
        self.update(|state| {
            if matches!(state, HealthState::Failing { .. }) {
                tracing::info!("the store can write again");
                *state = HealthState::Writable;
            }
        });
    }

    /// A write failed for a reason of the disk or the files, not of the write itself.
    pub fn failed(&self, reason: &str) {
        self.update(|state| match state {
            HealthState::Broken { .. } => {}
            HealthState::Failing { reason: known } if known == reason => {}
            _ => {
                tracing::error!(
                    reason,
                    "the store cannot write; webhooks are answered 503 until it can"
                );
                *state = HealthState::Failing {
                    reason: reason.to_owned(),
                };
            }
        });
    }

    pub fn broke(&self, reason: &str) {
        self.update(|state| {
            if !matches!(state, HealthState::Broken { .. }) {
                tracing::error!(reason, "the store stops accepting writes until restarted");
                *state = HealthState::Broken {
                    reason: reason.to_owned(),
                };
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut HealthState)) {
        match self.state.lock() {
            Ok(mut state) => change(&mut state),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_recovers_on_its_next_write_but_a_broken_one_does_not() {
        let health = StoreHealth::default();
        health.failed("disk I/O error");
        assert_eq!(
            health.state(),
            HealthState::Failing {
                reason: "disk I/O error".into()
            }
        );
        health.wrote();
        assert_eq!(health.state(), HealthState::Writable);
        health.broke("the write-ahead log was removed");
        health.wrote();
        health.failed("disk I/O error");
        assert!(matches!(health.state(), HealthState::Broken { .. }));
    }
}

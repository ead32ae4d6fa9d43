//! The window: how many fresh runs the worker holds in memory with their events, queued or
//! executing (`run_window`); past it a run stays in the store's queue, where it already is.

use super::*;

/// The runs the worker holds in memory, queued or executing (a fresh one with its event). Past
/// `limit`, a run is left in the store's queue (it is committed there already) and taken from
/// there when slots free: memory stays flat whatever the backlog.
pub(super) struct Window {
    pub(super) limit: usize,
    pub(super) held: AtomicUsize,
    /// Runs were left in the store's queue since it was last emptied into the worker.
    pub(super) spilled: AtomicBool,
    /// When a run was last left behind, for the taker, which leaves the youngest runs to the
    /// requests that accepted them for `HANDOFF`.
    pub(super) last_spill: Mutex<Option<Instant>>,
}

impl Window {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            held: AtomicUsize::new(0),
            spilled: AtomicBool::new(false),
            last_spill: Mutex::new(None),
        }
    }

    /// A place for one more fresh run, or none when the window is full.
    pub(super) fn take(self: &Arc<Self>) -> Option<WindowPlace> {
        let place = self.take_up_to(1).pop();
        if place.is_none() {
            self.spill(1);
        }
        place
    }

    /// Up to `wanted` places at once, for runs about to be claimed.
    pub(super) fn take_up_to(self: &Arc<Self>, wanted: usize) -> Vec<WindowPlace> {
        let before = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held + wanted.min(self.limit.saturating_sub(held)))
            });
        let taken = before.map_or(0, |before| wanted.min(self.limit.saturating_sub(before)));
        if let (true, Ok(before)) = (taken > 0, before) {
            crate::observe::metrics::metrics().run_window_held(before + taken);
        }
        (0..taken).map(|_| WindowPlace(Arc::clone(self))).collect()
    }

    /// A place for a run already claimed (it holds a lease), even past the limit.
    pub(super) fn force(self: &Arc<Self>) -> WindowPlace {
        let held = self.held.fetch_add(1, Ordering::AcqRel) + 1;
        crate::observe::metrics::metrics().run_window_held(held);
        WindowPlace(Arc::clone(self))
    }

    /// `runs` were left in the store's queue for want of room.
    pub(super) fn spill(&self, runs: usize) {
        crate::observe::metrics::metrics().runs_left_in_store(runs);
        if let Ok(mut last) = self.last_spill.lock() {
            *last = Some(Instant::now());
        }
        self.spilled.store(true, Ordering::Release);
    }

    /// Whether a run was left behind so recently that a look may have found it too young.
    pub(super) fn spilled_lately(&self) -> bool {
        self.last_spill
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < HANDOFF * 2)
    }

    /// How many more runs fit.
    pub(super) fn room(&self) -> usize {
        self.limit.saturating_sub(self.held.load(Ordering::Acquire))
    }
}

/// Window places reserved for the runs of one request before they are accepted.
pub struct FreshPlaces {
    pub(super) places: Vec<WindowPlace>,
    pub(super) lease: Option<Lease>,
}

impl FreshPlaces {
    /// The lease to claim the runs with in their accept, when they all have a place.
    pub fn lease(&self) -> Option<Lease> {
        self.lease.clone()
    }
}

/// One fresh run's place in the window, given back when its event is dropped.
pub(super) struct WindowPlace(pub(super) Arc<Window>);

impl Drop for WindowPlace {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many runs wait in the store's queue: counted by the store every
/// `BACKLOG_RECOUNT`, plus the runs accepted since.
pub(super) struct BacklogEstimate {
    pub(super) max: usize,
    pub(super) counted: AtomicUsize,
    pub(super) accepted_since: AtomicUsize,
}

/// How often the store's queue is counted for `max_backlog`.
pub(super) const BACKLOG_RECOUNT: Duration = Duration::from_millis(250);

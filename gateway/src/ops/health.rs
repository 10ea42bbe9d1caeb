//! Whether each tenant's records are being stored, for `/health/tenants`,
//! `/readyz`'s body and `/metrics`.
//!
//! A tenant is degraded while its writer is down (it panicked, or its sink
//! cannot be opened again, and it is being restarted with backoff), or when
//! its store has failed for longer than `pipeline.unhealthy_after_ms`: every
//! write since, or the health check its writer makes of a sink just opened
//! (at start-up and on reload, before any batch). `/health/tenants` names
//! it, `/readyz` stays 200 and lists it in its body (every node shares the
//! tenant's store: pulling nodes for it would pull them all), and
//! `awp_tenant_degraded{tenant}` is 1.
//!
//! It also notes the tenants whose old store is still written after a
//! reload (their writer ending its write on the old table, or a removed
//! tenant's writer writing what was queued): `/readyz` names them, still
//! ready, until they are done, so an operator knows when an old table may
//! be retired.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// One tenant's writer and sink, as far as health goes.
#[derive(Debug, Default)]
pub struct TenantHealth {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Why the writer is down, while it is.
    down: Option<String>,
    /// Since when every write has failed, and the last failure.
    failing: Option<(Instant, String)>,
}

impl TenantHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write (or the health check) succeeded.
    pub fn write_ok(&self) {
        self.state().failing = None;
    }

    /// A write (or the health check) failed.
    pub fn write_failed(&self, error: &str) {
        let mut state = self.state();
        let since = state.failing.as_ref().map_or_else(Instant::now, |(since, _)| *since);
        state.failing = Some((since, error.to_owned()));
    }

    /// The writer is down (and being restarted).
    pub fn down(&self, why: String) {
        self.state().down = Some(why);
    }

    /// The writer runs again.
    pub fn up(&self) {
        self.state().down = None;
    }

    /// What is wrong, if anything: the writer is down, or every write has
    /// failed for longer than `unhealthy_after` (never, if it is zero).
    pub fn problem(&self, unhealthy_after: Duration) -> Option<String> {
        let state = self.state();
        if let Some(why) = &state.down {
            return Some(format!("writer down: {why}"));
        }
        match &state.failing {
            Some((since, error)) if !unhealthy_after.is_zero() && since.elapsed() >= unhealthy_after => Some(format!(
                "its store has failed for {} s: {error}",
                since.elapsed().as_secs()
            )),
            _ => None,
        }
    }
}

/// Every tenant's health.
#[derive(Debug, Default)]
pub struct Health {
    /// A reload adds and removes tenants.
    tenants: RwLock<Vec<(String, Arc<TenantHealth>)>>,
    unhealthy_after: Duration,
    /// Old stores still written after a reload.
    draining: Mutex<Drains>,
}

/// The notes of old stores still written, and the last note's number.
#[derive(Debug, Default)]
struct Drains {
    last: u64,
    /// (note, tenant, what).
    notes: Vec<(u64, String, &'static str)>,
}

/// A note that a tenant's old store is still written ([`Health::draining`]).
#[derive(Debug)]
#[must_use = "the note stays until it is given to Health::drained"]
pub struct DrainNote(u64);

impl Health {
    /// Health for `tenants`; a sink failing every write for `unhealthy_after`
    /// degrades its tenant (zero: never).
    pub fn new(tenants: impl IntoIterator<Item = String>, unhealthy_after: Duration) -> Health {
        Health {
            tenants: RwLock::new(tenants.into_iter().map(|t| (t, Arc::default())).collect()),
            unhealthy_after,
            draining: Mutex::default(),
        }
    }

    /// Notes that `tenant`'s old store is still written (`what` says how),
    /// until [`Health::drained`].
    pub fn draining(&self, tenant: &str, what: &'static str) -> DrainNote {
        let mut draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        draining.last += 1;
        let id = draining.last;
        draining.notes.push((id, tenant.to_owned(), what));
        DrainNote(id)
    }

    /// The old store of a [`DrainNote`] is no longer written.
    pub fn drained(&self, note: DrainNote) {
        self.draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .notes
            .retain(|(id, _, _)| *id != note.0);
    }

    /// Each tenant whose old store is still written, and how.
    pub fn drains(&self) -> Vec<(String, &'static str)> {
        let draining = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        draining.notes.iter().map(|(_, t, what)| (t.clone(), *what)).collect()
    }

    fn tenants(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Arc<TenantHealth>)>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a reload: `tenants`, keeping the records of those already here.
    pub fn set_tenants<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let mut current = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let next = tenants
            .into_iter()
            .map(|id| {
                let kept = current.iter().find(|(t, _)| t == id).map(|(_, h)| h.clone());
                (id.to_owned(), kept.unwrap_or_default())
            })
            .collect();
        *current = next;
    }

    /// A tenant's record, for its writer.
    pub fn tenant(&self, id: &str) -> Arc<TenantHealth> {
        self.tenants()
            .iter()
            .find(|(t, _)| t == id)
            .map_or_else(Arc::default, |(_, h)| h.clone())
    }

    /// Each tenant and what is wrong with it, if anything.
    pub fn report(&self) -> Vec<(String, Option<String>)> {
        self.tenants()
            .iter()
            .map(|(t, h)| (t.clone(), h.problem(self.unhealthy_after)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_degraded_while_down_or_failing_too_long() {
        let health = Health::new(["a".to_owned(), "b".to_owned()], Duration::from_millis(50));
        let a = health.tenant("a");
        assert!(health.report().iter().all(|(_, p)| p.is_none()));
        a.down("panicked".into());
        assert_eq!(health.report()[0].1.as_deref(), Some("writer down: panicked"));
        a.up();
        a.write_failed("disk full");
        assert!(a.problem(Duration::from_millis(50)).is_none(), "not for long yet");
        std::thread::sleep(Duration::from_millis(60));
        assert!(a.problem(Duration::from_millis(50)).unwrap().contains("disk full"));
        assert!(a.problem(Duration::ZERO).is_none(), "zero turns the rule off");
        a.write_ok();
        assert!(a.problem(Duration::from_millis(50)).is_none());
        assert!(health.tenant("b").problem(Duration::from_millis(50)).is_none());
    }
}

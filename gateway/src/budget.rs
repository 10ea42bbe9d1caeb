//! The memory budget: a bound, in bytes, on the batches the gateway holds.
//!
//! A BATCH takes its share before it is inflated and decoded, and gives it
//! back when its sink write has completed (or it was answered otherwise):
//! its inflated size plus [`PER_BATCH_OVERHEAD`] for what the gateway keeps
//! beside its bytes. Two semaphores hold the bytes, the global budget and
//! the tenant's share of it; a batch needs both, so a tenant whose store
//! stalls fills its own share and leaves the rest to the others.
//!
//! Waiting is first come, first served (tokio's semaphore queues waiters in
//! order and hands released bytes to the first of them), and a connection
//! that waits keeps its place in that queue while it goes on answering PING
//! and BYE (see `session.rs`). Taking budget without waiting never jumps the
//! queue either: while anybody waits, released bytes go to the waiters.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a held batch costs beside its inflated bytes: its queue entry, its
/// context, its place in the session's window and the answer's channel.
pub const PER_BATCH_OVERHEAD: usize = 512;

/// The global budget and every tenant's share.
#[derive(Debug)]
pub struct MemoryBudget {
    global: Arc<Semaphore>,
    total: usize,
    tenant_share: usize,
    /// Each tenant's share; a reload adds and removes tenants.
    tenants: RwLock<HashMap<String, Arc<Semaphore>>>,
}

impl MemoryBudget {
    /// `total` bytes in all, of which one tenant may hold `tenant_share`.
    pub fn new(total: usize, tenant_share: usize, tenants: impl IntoIterator<Item = String>) -> MemoryBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        let tenant_share = tenant_share.min(total);
        MemoryBudget {
            global: Arc::new(Semaphore::new(total)),
            total,
            tenant_share,
            tenants: RwLock::new(
                tenants
                    .into_iter()
                    .map(|t| (t, Arc::new(Semaphore::new(tenant_share))))
                    .collect(),
            ),
        }
    }

    fn shares(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a reload: a share for each of `tenants`, kept as it is for
    /// those that had one (their batches hold it), new for the others;
    /// removed tenants lose theirs (their remaining batches keep what they
    /// hold until written).
    pub fn set_tenants<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let mut shares = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::new();
        for t in tenants {
            let share = shares
                .remove(t)
                .unwrap_or_else(|| Arc::new(Semaphore::new(self.tenant_share)));
            next.insert(t.to_owned(), share);
        }
        *shares = next;
    }

    /// The whole budget, bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// A tenant's part of the budget, or `None` for a tenant not configured.
    pub fn tenant(&self, tenant: &str) -> Option<TenantBudget> {
        self.shares().get(tenant).map(|share| TenantBudget {
            share: share.clone(),
            global: self.global.clone(),
        })
    }

    /// The tenants with a share.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.shares().keys().cloned().collect()
    }

    /// Bytes `tenant`'s batches hold now (0 for an unknown tenant), for `/metrics`.
    pub fn used(&self, tenant: &str) -> usize {
        self.shares()
            .get(tenant)
            .map_or(0, |s| self.tenant_share - s.available_permits())
    }
}

/// What one tenant's connections take budget from.
#[derive(Debug, Clone)]
pub struct TenantBudget {
    share: Arc<Semaphore>,
    global: Arc<Semaphore>,
}

/// Budget held by one batch; given back when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    _share: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// A request for budget that could not be met at once (see
/// [`TenantBudget::take`]).
#[derive(Debug)]
pub struct BudgetRequest {
    budget: TenantBudget,
    bytes: u32,
}

impl TenantBudget {
    /// The cost of holding a batch of `inflated` bytes, as permits.
    pub fn cost(inflated: usize) -> u32 {
        u32::try_from(inflated.saturating_add(PER_BATCH_OVERHEAD)).unwrap_or(u32::MAX)
    }

    /// Takes `bytes` now if both the tenant's share and the global budget
    /// have them and nobody is waiting for them.
    pub fn try_take(&self, bytes: u32) -> Option<BudgetPermit> {
        let share = self.share.clone().try_acquire_many_owned(bytes).ok()?;
        let global = self.global.clone().try_acquire_many_owned(bytes).ok()?;
        Some(BudgetPermit {
            _share: share,
            _global: global,
        })
    }

    /// A request to wait for `bytes` (see [`BudgetRequest::granted`]).
    pub fn request(&self, bytes: u32) -> BudgetRequest {
        BudgetRequest {
            budget: self.clone(),
            bytes,
        }
    }
}

impl BudgetRequest {
    /// The bytes asked for.
    #[cfg(test)]
    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Waits in line for the bytes: first the tenant's share, then the
    /// global budget (always in that order, so two waiters never hold each
    /// other's). Keep the future to keep the place in line.
    pub async fn granted(self) -> BudgetPermit {
        let TenantBudget { share, global } = self.budget;
        // The semaphores are never closed, so acquiring only ends in a permit.
        let share = loop {
            if let Ok(p) = share.clone().acquire_many_owned(self.bytes).await {
                break p;
            }
        };
        let global = loop {
            if let Ok(p) = global.clone().acquire_many_owned(self.bytes).await {
                break p;
            }
        };
        BudgetPermit {
            _share: share,
            _global: global,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget() -> MemoryBudget {
        MemoryBudget::new(1000, 600, ["a".to_owned(), "b".to_owned()])
    }

    #[test]
    fn a_tenant_holds_at_most_its_share() {
        let b = budget();
        let a = b.tenant("a").unwrap();
        let first = a.try_take(500).unwrap();
        assert!(a.try_take(200).is_none(), "over a's share of 600");
        let other = b.tenant("b").unwrap();
        let second = other.try_take(500).unwrap();
        assert!(other.try_take(1).is_none(), "the global 1000 is gone");
        assert_eq!((b.used("a"), b.used("b"), b.used("c")), (500, 500, 0));
        drop(first);
        assert!(a.try_take(100).is_some());
        drop(second);
        assert!(b.tenant("nobody").is_none());
    }

    #[tokio::test]
    async fn waiting_is_first_come_first_served_and_taking_does_not_jump_the_line() {
        let b = budget();
        let a = b.tenant("a").unwrap();
        let held = a.try_take(600).unwrap();
        let mut big = Box::pin(a.request(400).granted());
        let mut small = Box::pin(a.request(50).granted());
        // Both wait; polling them registers them in order.
        assert!(tokio::time::timeout(Duration::from_millis(10), &mut big).await.is_err());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut small)
                .await
                .is_err()
        );
        drop(held);
        // The first in line gets its 400; the small one behind it, then its 50.
        let _big = tokio::time::timeout(Duration::from_secs(1), &mut big).await.unwrap();
        let _small = tokio::time::timeout(Duration::from_secs(1), &mut small).await.unwrap();
        // 150 remain: a newcomer may take them, nobody waits.
        assert!(a.try_take(150).is_some());
    }

    #[tokio::test]
    async fn a_newcomer_cannot_take_what_a_waiter_is_owed() {
        let b = budget();
        let a = b.tenant("a").unwrap();
        let held = a.try_take(500).unwrap();
        let mut waiter = Box::pin(a.request(300).granted());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut waiter)
                .await
                .is_err()
        );
        // 100 are free, but they are the waiter's first.
        assert!(a.try_take(100).is_none());
        drop(held);
        let _w = tokio::time::timeout(Duration::from_secs(1), &mut waiter).await.unwrap();
    }

    #[test]
    fn a_reload_keeps_the_shares_of_kept_tenants() {
        let b = budget();
        let held = b.tenant("a").unwrap().try_take(500).unwrap();
        b.set_tenants(["a", "c"]);
        assert_eq!(b.used("a"), 500, "a's batches still count against its share");
        assert!(b.tenant("a").unwrap().try_take(200).is_none());
        assert!(b.tenant("b").is_none(), "b was removed");
        assert!(b.tenant("c").unwrap().try_take(400).is_some(), "c has a share");
        drop(held);
        assert_eq!(b.used("a"), 0);
    }

    #[test]
    fn costs_count_the_overhead() {
        assert_eq!(TenantBudget::cost(1000), 1000 + PER_BATCH_OVERHEAD as u32);
        assert_eq!(TenantBudget::cost(usize::MAX), u32::MAX);
    }
}

//! The memory budget: a bound, in bytes, on the batches the gateway holds.
//!
//! A BATCH takes its share before it is inflated and decoded, and gives it
//! back when its sink write has completed (or it was answered otherwise):
//! its inflated size plus [`PER_BATCH_OVERHEAD`] for what the gateway keeps
//! beside its bytes.
//!
//! # Who gets what
//!
//! The budget is shared so that a slow tenant cannot starve the others:
//!
//! - **A cap.** One tenant's batches hold at most `tenant_share` bytes
//!   (`pipeline.tenant_budget_percent`).
//! - **A guarantee.** Half the budget is set aside in equal parts, one per
//!   configured tenant: a tenant holding less than its part can always take
//!   up to it, whatever the others hold. The other half, and whatever part
//!   of a guarantee its tenant does not use, is shared: a tenant beyond its
//!   guarantee borrows from it, but never from another tenant's unused
//!   guarantee. So two tenants whose stores stall, each filling its cap,
//!   leave every other tenant its guarantee (`docs/architecture.md`,
//!   "Memory budget").
//! - **Turns.** A batch that cannot take its bytes waits: first come, first
//!   served within its tenant, and tenants with waiting batches are served
//!   in turn as bytes come back, so a tenant waiting for the shared part
//!   does not hold back another's batches. Taking without waiting never
//!   jumps a line: not the tenant's own, and not another tenant's for the
//!   shared part (a take within the tenant's own guarantee is its own).
//!
//! A connection that waits keeps its place in line while it goes on
//! answering PING and BYE (see `session/`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// What a held batch costs beside its inflated bytes: its queue entry, its
/// context, its place in the session's window and the answer's channel.
pub const PER_BATCH_OVERHEAD: usize = 512;

/// A tenant's id as the budget keeps it: one pointer wide, as every
/// session holds one ([`TenantBudget`]) and an idle agent's memory counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TenantKey(Arc<String>);

impl std::borrow::Borrow<str> for TenantKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TenantKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TenantKey {
    fn from(id: &str) -> TenantKey {
        TenantKey(Arc::new(id.to_owned()))
    }
}

/// The global budget and every tenant's part of it.
#[derive(Debug)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    total: usize,
    tenant_share: usize,
    state: Mutex<State>,
}

/// One tenant's bytes and waiting batches.
#[derive(Debug, Default)]
struct Account {
    used: usize,
    /// Configured now (a removed tenant's account stays while its batches
    /// hold bytes; it has no guarantee).
    configured: bool,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    bytes: usize,
    grant: oneshot::Sender<BudgetPermit>,
}

#[derive(Debug, Default)]
struct State {
    used: usize,
    accounts: HashMap<TenantKey, Account>,
    /// Each configured tenant's guarantee.
    guarantee: usize,
    /// The configured tenants' guarantees not used: Σ max(0, guarantee − used).
    unused_guarantees: usize,
    /// Tenants with waiting batches, in the order they are served.
    turns: VecDeque<TenantKey>,
    next_waiter: u64,
}

impl State {
    fn unused_of(&self, account: &Account) -> usize {
        if account.configured {
            self.guarantee.saturating_sub(account.used)
        } else {
            0
        }
    }

    /// Whether `tenant` may take `bytes` now.
    fn fits(&self, total: usize, tenant_share: usize, account: &Account, bytes: usize) -> bool {
        let others_unused = self.unused_guarantees - self.unused_of(account);
        account.used + bytes <= tenant_share && self.used + bytes + others_unused <= total
    }

    /// Whether taking `bytes` stays within the tenant's own guarantee.
    fn within_guarantee(&self, account: &Account, bytes: usize) -> bool {
        account.configured && account.used + bytes <= self.guarantee
    }

    /// Moves `bytes` to or from `tenant` (`taking`), keeping the sums.
    fn charge(&mut self, tenant: &str, bytes: usize, taking: bool) {
        let Some(account) = self.accounts.get(tenant) else {
            return;
        };
        let before = self.unused_of(account);
        let account = self.accounts.get_mut(tenant).expect("looked up above");
        if taking {
            account.used += bytes;
        } else {
            account.used = account.used.saturating_sub(bytes);
        }
        let account = &self.accounts[tenant];
        let after = self.unused_of(account);
        self.unused_guarantees = self.unused_guarantees - before + after;
        if taking {
            self.used += bytes;
        } else {
            self.used = self.used.saturating_sub(bytes);
        }
    }

    fn recount_guarantees(&mut self) {
        self.unused_guarantees = self.accounts.values().map(|a| self.unused_of(a)).sum();
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves waiting batches in turn while bytes allow; the grants are
    /// sent by the caller once the lock is let go (a refused grant's permit
    /// gives its bytes back, which takes the lock).
    fn serve(self: &Arc<Self>, state: &mut State) -> Vec<(oneshot::Sender<BudgetPermit>, BudgetPermit)> {
        let mut grants = Vec::new();
        let mut idle_turns = 0;
        while idle_turns < state.turns.len() {
            let Some(tenant) = state.turns.pop_front() else { break };
            let served = match self.first_in_line(state, &tenant) {
                Some(grant) => {
                    grants.push(grant);
                    true
                }
                None => false,
            };
            let waiting = state.accounts.get(&tenant).is_some_and(|a| !a.waiters.is_empty());
            if waiting {
                state.turns.push_back(tenant);
            } else {
                Self::forget_if_done(state, &tenant);
            }
            idle_turns = if served { 0 } else { idle_turns + 1 };
        }
        grants
    }

    /// The grant of `tenant`'s first waiting batch, if its bytes fit now.
    fn first_in_line(
        self: &Arc<Self>,
        state: &mut State,
        tenant: &TenantKey,
    ) -> Option<(oneshot::Sender<BudgetPermit>, BudgetPermit)> {
        let account = state.accounts.get_mut(tenant)?;
        // A waiter whose connection went away holds no place.
        while account.waiters.front().is_some_and(|w| w.grant.is_closed()) {
            account.waiters.pop_front();
        }
        let bytes = account.waiters.front()?.bytes;
        if !state.fits(self.total, self.tenant_share, &state.accounts[tenant], bytes) {
            return None;
        }
        let waiter = state.accounts.get_mut(tenant)?.waiters.pop_front()?;
        state.charge(tenant, bytes, true);
        Some((waiter.grant, self.permit(tenant, bytes)))
    }

    fn permit(self: &Arc<Self>, tenant: &TenantKey, bytes: usize) -> BudgetPermit {
        BudgetPermit {
            shared: self.clone(),
            tenant: tenant.clone(),
            bytes,
        }
    }

    /// Drops a removed tenant's account once nothing of it is held.
    fn forget_if_done(state: &mut State, tenant: &str) {
        if state
            .accounts
            .get(tenant)
            .is_some_and(|a| !a.configured && a.used == 0 && a.waiters.is_empty())
        {
            state.accounts.remove(tenant);
        }
    }

    fn give_back(self: &Arc<Self>, tenant: &str, bytes: usize) {
        let grants = {
            let mut state = self.state();
            state.charge(tenant, bytes, false);
            let grants = self.serve(&mut state);
            Self::forget_if_done(&mut state, tenant);
            grants
        };
        send(grants);
    }
}

/// Hands out grants; a batch that stopped waiting gives its bytes back.
fn send(grants: Vec<(oneshot::Sender<BudgetPermit>, BudgetPermit)>) {
    for (to, permit) in grants {
        // Refused only if the waiter is gone: the permit is dropped, and its
        // bytes go to the next in line.
        let _ = to.send(permit);
    }
}

impl MemoryBudget {
    /// `total` bytes in all, of which one tenant may hold `tenant_share`.
    pub fn new(total: usize, tenant_share: usize, tenants: impl IntoIterator<Item = String>) -> MemoryBudget {
        let budget = MemoryBudget {
            shared: Arc::new(Shared {
                total,
                tenant_share: tenant_share.min(total),
                state: Mutex::default(),
            }),
        };
        let tenants: Vec<String> = tenants.into_iter().collect();
        budget.set_tenants(tenants.iter().map(String::as_str));
        budget
    }

    /// After a reload (and at start): `tenants` are the configured ones,
    /// each with its guarantee; removed tenants' batches keep what they
    /// hold until written.
    pub fn set_tenants<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let grants = {
            let mut state = self.shared.state();
            for account in state.accounts.values_mut() {
                account.configured = false;
            }
            let mut configured = 0;
            for t in tenants {
                state.accounts.entry(TenantKey::from(t)).or_default().configured = true;
                configured += 1;
            }
            state
                .accounts
                .retain(|_, a| a.configured || a.used > 0 || !a.waiters.is_empty());
            state.guarantee = self.shared.total / (2 * configured.max(1));
            state.recount_guarantees();
            self.shared.serve(&mut state)
        };
        send(grants);
    }

    /// The whole budget, bytes.
    pub fn total(&self) -> usize {
        self.shared.total
    }

    /// Each configured tenant's guarantee, bytes.
    #[cfg(test)]
    pub fn guarantee(&self) -> usize {
        self.shared.state().guarantee
    }

    /// A tenant's part of the budget, or `None` for a tenant not configured.
    pub fn tenant(&self, tenant: &str) -> Option<TenantBudget> {
        let state = self.shared.state();
        let (id, account) = state.accounts.get_key_value(tenant)?;
        account.configured.then(|| TenantBudget {
            shared: self.shared.clone(),
            tenant: id.clone(),
        })
    }

    /// The tenants with a part of the budget.
    pub fn tenant_ids(&self) -> Vec<String> {
        let state = self.shared.state();
        state
            .accounts
            .iter()
            .filter(|(_, a)| a.configured)
            .map(|(t, _)| t.0.as_str().to_owned())
            .collect()
    }

    /// Bytes `tenant`'s batches hold now (0 for an unknown tenant), for `/metrics`.
    pub fn used(&self, tenant: &str) -> usize {
        self.shared.state().accounts.get(tenant).map_or(0, |a| a.used)
    }
}

/// What one tenant's connections take budget from.
#[derive(Debug, Clone)]
pub struct TenantBudget {
    shared: Arc<Shared>,
    tenant: TenantKey,
}

/// Budget held by one batch; given back when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    shared: Arc<Shared>,
    tenant: TenantKey,
    bytes: usize,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.shared.give_back(&self.tenant, self.bytes);
    }
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

    /// Takes `bytes` now if the tenant may (module doc: its cap, its
    /// guarantee or the shared part) and no batch waits for them.
    pub fn try_take(&self, bytes: u32) -> Option<BudgetPermit> {
        let bytes = bytes as usize;
        let mut state = self.shared.state();
        let account = state.accounts.get(&self.tenant)?;
        let jumps = !account.waiters.is_empty() || (!state.turns.is_empty() && !state.within_guarantee(account, bytes));
        if jumps || !state.fits(self.shared.total, self.shared.tenant_share, account, bytes) {
            return None;
        }
        state.charge(&self.tenant, bytes, true);
        Some(self.shared.permit(&self.tenant, bytes))
    }

    /// A request to wait for `bytes` (see [`BudgetRequest::granted`]).
    pub fn request(&self, bytes: u32) -> BudgetRequest {
        BudgetRequest {
            budget: self.clone(),
            bytes,
        }
    }
}

/// Takes a waiter out of its line when its wait is dropped.
struct Place {
    shared: Arc<Shared>,
    tenant: TenantKey,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        let grants = {
            let mut state = self.shared.state();
            if let Some(account) = state.accounts.get_mut(&self.tenant) {
                account.waiters.retain(|w| w.id != self.id);
            }
            // A waiter at the head may have held back the ones behind it.
            self.shared.serve(&mut state)
        };
        send(grants);
    }
}

impl BudgetRequest {
    /// The bytes asked for.
    #[cfg(test)]
    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Waits in line for the bytes (module doc). Keep the future to keep
    /// the place in line; dropping it leaves the line.
    pub async fn granted(self) -> BudgetPermit {
        let TenantBudget { shared, tenant } = self.budget;
        let bytes = self.bytes as usize;
        loop {
            let (grant, granted) = oneshot::channel();
            let (place, grants) = {
                let mut state = shared.state();
                let Some(account) = state.accounts.get(&tenant) else {
                    // A removed tenant: its batches still hold their bytes.
                    // Served from the shared part like any borrower.
                    state.accounts.insert(tenant.clone(), Account::default());
                    continue;
                };
                let nobody_ahead =
                    account.waiters.is_empty() && (state.turns.is_empty() || state.within_guarantee(account, bytes));
                if nobody_ahead && state.fits(shared.total, shared.tenant_share, account, bytes) {
                    state.charge(&tenant, bytes, true);
                    return shared.permit(&tenant, bytes);
                }
                state.next_waiter += 1;
                let id = state.next_waiter;
                let account = state.accounts.get_mut(&tenant).expect("looked up above");
                account.waiters.push_back(Waiter { id, bytes, grant });
                if !state.turns.contains(&tenant) {
                    state.turns.push_back(tenant.clone());
                }
                // In line now; it may fit already, behind others in turn:
                // serve the lines rather than wait for bytes to come back.
                let grants = shared.serve(&mut state);
                (
                    Place {
                        shared: shared.clone(),
                        tenant: tenant.clone(),
                        id,
                    },
                    grants,
                )
            };
            send(grants);
            if let Ok(permit) = granted.await {
                drop(place);
                return permit;
            }
            // The grant's sender went without a grant (cannot happen: a
            // waiter leaves its line only with one): wait again.
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

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_line_and_lets_the_next_through() {
        let b = budget();
        let a = b.tenant("a").unwrap();
        let held = a.try_take(500).unwrap();
        let mut first = Box::pin(a.request(300).granted());
        let mut second = Box::pin(a.request(100).granted());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut first)
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut second)
                .await
                .is_err()
        );
        // The first gives up (its connection closed): the second fits the 100 left.
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(1), &mut second).await.unwrap();
        assert_eq!(b.used("a"), 600);
        drop(held);
    }

    #[test]
    fn a_reload_keeps_what_kept_tenants_hold() {
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
    fn two_stalled_tenants_at_their_caps_leave_a_third_its_guarantee() {
        // 1200 bytes, a cap of 50% each, three tenants: a guarantee of 200 each.
        let b = MemoryBudget::new(1200, 600, ["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        assert_eq!(b.guarantee(), 200);
        let (a, bb, c) = (b.tenant("a").unwrap(), b.tenant("b").unwrap(), b.tenant("c").unwrap());
        // a takes its cap; b can then take 400 only: c's 200 stay c's.
        let _a = a.try_take(600).unwrap();
        let _b = bb.try_take(400).unwrap();
        assert!(bb.try_take(1).is_none(), "c's guarantee is not b's to borrow");
        let _c = c.try_take(200).expect("c takes its guarantee");
        assert!(c.try_take(1).is_none(), "and no more: the rest is held");
    }

    #[tokio::test]
    async fn a_tenant_waiting_to_borrow_does_not_hold_back_one_within_its_guarantee() {
        let b = MemoryBudget::new(1200, 600, ["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        let (a, bb, c) = (b.tenant("a").unwrap(), b.tenant("b").unwrap(), b.tenant("c").unwrap());
        let _a = a.try_take(600).unwrap();
        let _b = bb.try_take(400).unwrap();
        // b waits in line to borrow more.
        let mut waiting = Box::pin(bb.request(100).granted());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut waiting)
                .await
                .is_err()
        );
        // c, within its guarantee, is not behind b.
        let first = c.try_take(150).expect("not behind b's wait");
        let _second = tokio::time::timeout(Duration::from_secs(1), c.request(50).granted())
            .await
            .expect("within its guarantee");
        drop(first);
        drop(_a);
        let _b_more = tokio::time::timeout(Duration::from_secs(1), &mut waiting)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn tenants_waiting_for_the_shared_part_are_served_in_turn() {
        // Two tenants, a guarantee of 250 each, 500 shared; caps of 1000.
        let b = MemoryBudget::new(1000, 1000, ["a".to_owned(), "b".to_owned()]);
        let (a, bb) = (b.tenant("a").unwrap(), b.tenant("b").unwrap());
        let _a = a.try_take(550).unwrap();
        let some = a.try_take(200).unwrap();
        let _b = bb.try_take(250).unwrap();
        // a queues two borrows, then b one.
        let mut a1 = Box::pin(a.request(100).granted());
        let mut a2 = Box::pin(a.request(100).granted());
        let mut b1 = Box::pin(bb.request(100).granted());
        for w in [&mut a1, &mut a2, &mut b1] {
            assert!(tokio::time::timeout(Duration::from_millis(10), w).await.is_err());
        }
        // 200 come back: a's first, then b's, before a's second.
        drop(some);
        assert!(a.try_take(1).is_none(), "waiters first");
        let _a1 = tokio::time::timeout(Duration::from_secs(1), &mut a1).await.unwrap();
        let _b1 = tokio::time::timeout(Duration::from_secs(1), &mut b1).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(10), &mut a2).await.is_err());
        drop(_a);
        let _a2 = tokio::time::timeout(Duration::from_secs(1), &mut a2).await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_that_fits_is_served_even_when_it_queued_behind_a_waiting_tenant() {
        // Three tenants, a guarantee of 200 each; caps of 600.
        let b = MemoryBudget::new(1200, 600, ["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        let (a, c) = (b.tenant("a").unwrap(), b.tenant("c").unwrap());
        // a is at its cap and waits for more: it is in turn.
        let _held = a.try_take(600).unwrap();
        let mut a_waits = Box::pin(a.request(100).granted());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut a_waits)
                .await
                .is_err()
        );
        // c borrows beyond its guarantee: 300 fit (1200 - 600 held - b's 200),
        // and nothing comes back meanwhile.
        let granted = tokio::time::timeout(Duration::from_millis(200), c.request(300).granted()).await;
        assert!(granted.is_ok(), "served at once, not when a's bytes come back");
    }

    #[test]
    fn costs_count_the_overhead() {
        assert_eq!(TenantBudget::cost(1000), 1000 + PER_BATCH_OVERHEAD as u32);
        assert_eq!(TenantBudget::cost(usize::MAX), u32::MAX);
    }
}

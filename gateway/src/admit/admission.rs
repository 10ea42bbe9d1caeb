//! Who may hold a connection, and how many.
//!
//! Two pools, so that connections that have not authenticated cannot crowd
//! out agents:
//!
//! - **Waiting to authenticate** ([`Waiting`]): every accepted connection,
//!   from accept through the PROXY header and the TLS handshake to its
//!   HELLO, holds a place in a small pool (`max_unauthenticated`, and
//!   `max_unauthenticated_per_source` per source: an IPv4 address, or an
//!   IPv6 /64, which one host usually holds whole). Behind a balancer the
//!   place is taken at accept, counted against no source (every agent
//!   comes through the balancer's few addresses), and moves to the agent's
//!   address once its PROXY header is read. When the pool (or the source's share) is full, the
//!   connection that has waited longest is evicted to make room: silent or
//!   trickling connections cannot keep a real agent, which sends HELLO right
//!   after connecting, from getting in.
//! - **Authenticated** ([`Admitted`]): a HELLO that authenticates takes a
//!   place among `max_connections` and among its tenant's
//!   `max_connections`, if it has one; without a place the agent gets
//!   `ERROR(SERVER_BUSY)`. It also takes its device's slot: a device that
//!   connects again replaces its older session, which is told to go away
//!   (GOAWAY), so a stolen token or an agent stuck in a reconnect loop cannot
//!   pile up sessions.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::admit::tenant::Proof;
use crate::pipeline::mailbox::Mailbox;
use crate::telemetry;

/// What the registry keeps of an admitted session to check it again: what
/// it proved, and whether it came over TLS.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its token or certificate chain.
    pub proof: Proof,
    /// Whether the connection is TLS (a tenant may come to require it).
    pub tls: bool,
}

/// How long a connection may wait before it can be evicted: long enough
/// for an agent's HELLO to be read and checked even while a reconnect storm
/// keeps the gateway busy, short against the HELLO deadline.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// How far the pool may run over its size (and a source over its share)
/// while every connection in it is within [`EVICTION_GRACE`]; beyond, the
/// connection waiting longest is evicted all the same.
pub const OVERFLOW_FACTOR: usize = 4;

/// The pool of connections waiting to authenticate.
#[derive(Debug)]
pub struct WaitingPool {
    max: usize,
    per_source: usize,
    grace: Duration,
    inner: Mutex<WaitingInner>,
}

/// An entry: the source it counts against (none before a PROXY header is
/// read), where it comes from, when it came, and how to tell it it was
/// evicted.
type Entry = (Option<IpAddr>, IpAddr, Instant, Arc<Mailbox>);

/// What a connection from `ip` counts against: the address, or for IPv6 its
/// /64 (an IPv4 address in its IPv6-mapped form is IPv4).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct WaitingInner {
    next_id: u64,
    /// By id, which is by age: the first is the one waiting longest.
    entries: BTreeMap<u64, Entry>,
    by_source: HashMap<IpAddr, usize>,
}

impl WaitingInner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        if let Some(source) = entry.0
            && let Some(n) = self.by_source.get_mut(&source)
        {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
        Some(entry)
    }

    fn evict(&mut self, id: u64) {
        if let Some((_, _, _, mailbox)) = self.remove(id) {
            telemetry::global().connection_evicted();
            // Remembered if the connection is not waiting on it yet.
            mailbox.evict();
        }
    }

    /// Makes room by evicting the oldest connection that `matches`, if it
    /// has waited out the grace; false if there is none.
    fn evict_oldest(&mut self, now: Instant, grace: Duration, matches: impl Fn(&Option<IpAddr>) -> bool) -> bool {
        let oldest = self
            .entries
            .iter()
            .find(|(_, (source, _, _, _))| matches(source))
            .filter(|(_, (_, _, since, _))| now.saturating_duration_since(*since) >= grace)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.evict(id);
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the [`WaitingPool`]; it leaves when dropped.
#[derive(Debug)]
pub struct Waiting {
    pool: Arc<WaitingPool>,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl WaitingPool {
    /// A pool of `max` places, `per_source` of them for any one address.
    pub fn new(max: usize, per_source: usize) -> Arc<WaitingPool> {
        Self::with_grace(max, per_source, EVICTION_GRACE)
    }

    /// [`WaitingPool::new`] with another grace (tests).
    pub fn with_grace(max: usize, per_source: usize, grace: Duration) -> Arc<WaitingPool> {
        Arc::new(WaitingPool {
            max: max.max(1),
            per_source: per_source.max(1),
            grace,
            inner: Mutex::default(),
        })
    }

    /// A place for a connection from `source`, never refused. When the
    /// pool (or the source's share) is full, the connection that has waited
    /// longest (from the same source first) is evicted once it has waited
    /// out the grace: in a reconnect storm agents whose HELLO is on its way
    /// are not evicted, and the pool runs over instead. At
    /// [`OVERFLOW_FACTOR`] times its size the longest waiting goes, grace or
    /// not, so that a flood of new connections is bounded too.
    pub fn enter(self: &Arc<Self>, addr: IpAddr) -> Waiting {
        self.enter_as(addr, Some(source_of(addr)))
    }

    /// A place for a connection from a trusted balancer whose PROXY header
    /// is not read yet: counted in the pool, against no source, until
    /// [`Waiting::move_to`] gives it the agent's.
    pub fn enter_unattributed(self: &Arc<Self>, addr: IpAddr) -> Waiting {
        self.enter_as(addr, None)
    }

    fn enter_as(self: &Arc<Self>, addr: IpAddr, source: Option<IpAddr>) -> Waiting {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = inner.next_id;
        inner.next_id += 1;
        let mailbox = Arc::new(Mailbox::default());
        self.place(&mut inner, id, source, addr, Instant::now(), mailbox.clone());
        Waiting {
            pool: self.clone(),
            id,
            mailbox,
        }
    }

    /// Puts entry `id` from `addr`, counted against `source`, in the pool,
    /// making room as [`WaitingPool::enter`] says.
    fn place(
        &self,
        inner: &mut WaitingInner,
        id: u64,
        source: Option<IpAddr>,
        addr: IpAddr,
        since: Instant,
        mailbox: Arc<Mailbox>,
    ) {
        let now = Instant::now();
        if let Some(source) = source {
            let from_source = inner.by_source.get(&source).copied().unwrap_or(0);
            if from_source >= self.per_source
                && !inner.evict_oldest(now, self.grace, |s| *s == Some(source))
                && from_source >= self.per_source * OVERFLOW_FACTOR
            {
                inner.evict_oldest(now, Duration::ZERO, |s| *s == Some(source));
            }
        }
        if inner.entries.len() >= self.max
            && !inner.evict_oldest(now, self.grace, |_| true)
            && inner.entries.len() >= self.max * OVERFLOW_FACTOR
        {
            inner.evict_oldest(now, Duration::ZERO, |_| true);
        }
        inner.entries.insert(id, (source, addr, since, mailbox));
        if let Some(source) = source {
            *inner.by_source.entry(source).or_default() += 1;
        }
        telemetry::global().connections_waiting(inner.entries.len());
    }

    /// Connections waiting now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

impl Waiting {
    /// Resolves when the connection was evicted to make room for a newer one.
    pub async fn evicted(&self) {
        self.mailbox.evicted().await;
    }

    /// Where the connection comes from (the agent's address behind a
    /// balancer speaking the PROXY protocol); read from the pool rather
    /// than kept here, where every connection's task would carry it twice.
    pub fn source(&self) -> Option<IpAddr> {
        let inner = self.pool.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.get(&self.id).map(|(_, addr, _, _)| *addr)
    }

    /// The connection turned out to come from `addr` (its PROXY header):
    /// its place counts against that source from now on, which may evict
    /// that source's longest waiting connection. It keeps its age in the
    /// pool. Nothing happens to a connection evicted meanwhile.
    pub fn move_to(&self, addr: IpAddr) {
        let mut inner = self.pool.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, since, mailbox)) = inner.remove(self.id) {
            self.pool
                .place(&mut inner, self.id, Some(source_of(addr)), addr, since, mailbox);
        }
    }

    /// The connection's mailbox, told when it is evicted.
    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut inner = self.pool.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.remove(self.id);
        telemetry::global().connections_waiting(inner.entries.len());
    }
}

/// The places of authenticated connections, and each device's session.
#[derive(Debug)]
pub struct Admission {
    connections: Arc<Places>,
    /// Tenants with a limit of their own; a reload changes them.
    tenants: RwLock<HashMap<String, Arc<Places>>>,
    /// Each connected device's session: its connection's mailbox (whose
    /// identity tells sessions apart) and what it authenticated with.
    devices: Mutex<HashMap<DeviceKey, (Arc<Mailbox>, Session)>>,
}

/// A number of places, some taken. The limit can change while places are
/// taken (a reload): lowering it admits nobody new until enough leave, and
/// never closes a connection.
#[derive(Debug)]
struct Places {
    limit: AtomicUsize,
    taken: AtomicUsize,
}

impl Places {
    fn new(limit: usize) -> Arc<Places> {
        Arc::new(Places {
            limit: AtomicUsize::new(limit),
            taken: AtomicUsize::new(0),
        })
    }

    fn take(self: &Arc<Self>) -> Option<Place> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()?;
        Some(Place(self.clone()))
    }
}

/// A taken place; given back when dropped.
#[derive(Debug)]
struct Place(Arc<Places>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A device: (tenant, device id).
/// A device: its tenant and its id, as `TENANT\nDEVICE` (a tenant id has no
/// newline), in one allocation shared by the map and the session: with a
/// hundred thousand agents, each byte here is 100 kB.
type DeviceKey = Arc<str>;

fn device_key(tenant: &str, device: &str) -> DeviceKey {
    let mut key = String::with_capacity(tenant.len() + 1 + device.len());
    key.push_str(tenant);
    key.push('\n');
    key.push_str(device);
    Arc::from(key)
}

/// Why a HELLO that authenticated is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `max_connections` authenticated connections are open.
    #[error("server at its connection limit; retry later")]
    ServerFull,
    /// The tenant's `max_connections` are open.
    #[error("tenant at its connection limit; retry later")]
    TenantFull,
}

/// An authenticated connection's places; given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    _connection: Place,
    _tenant: Place,
    _device: DeviceSlot,
}

#[derive(Debug)]
struct DeviceSlot {
    admission: Arc<Admission>,
    key: DeviceKey,
    mailbox: Arc<Mailbox>,
}

impl Admission {
    /// `max_connections` authenticated connections in all, and per tenant
    /// the limits given (tenants not named have none of their own).
    pub fn new(max_connections: usize, tenant_limits: impl IntoIterator<Item = (String, usize)>) -> Arc<Admission> {
        let admission = Arc::new(Admission {
            connections: Places::new(max_connections),
            tenants: RwLock::default(),
            devices: Mutex::default(),
        });
        admission.set_limits(max_connections, tenant_limits);
        admission
    }

    /// After a reload: the new limits, for connections admitted from now on.
    pub fn set_limits(&self, max_connections: usize, tenant_limits: impl IntoIterator<Item = (String, usize)>) {
        self.connections.limit.store(max_connections, Ordering::Relaxed);
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let limits: HashMap<String, usize> = tenant_limits.into_iter().collect();
        // A tenant that lost its limit keeps its count (its connections
        // still hold places), with no limit.
        for (tenant, places) in tenants.iter() {
            if !limits.contains_key(tenant) {
                places.limit.store(usize::MAX, Ordering::Relaxed);
            }
        }
        for (tenant, limit) in limits {
            match tenants.get(&tenant) {
                Some(places) => places.limit.store(limit, Ordering::Relaxed),
                None => {
                    tenants.insert(tenant, Places::new(limit));
                }
            }
        }
    }

    /// Tells every session of `tenant` to go away (a reload removed the
    /// tenant); returns how many were told.
    pub fn tell_tenant_to_go(&self, tenant: &str) -> usize {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let mut told = 0;
        for (key, (mailbox, _)) in devices.iter() {
            if key.split_once('\n').is_some_and(|(t, _)| t == tenant) {
                mailbox.tell_to_go();
                told += 1;
            }
        }
        told
    }

    /// Checks every session of the `tenants` again (a reload changed their
    /// credentials) with `still_valid(tenant, device, proof)`, and tells
    /// those that fail that their credentials were revoked (GOAWAY); returns
    /// how many were told. The checks run outside the registry's lock: a
    /// certificate check takes tens of microseconds, and HELLOs go on.
    pub fn recheck(
        &self,
        tenants: &std::collections::HashSet<String>,
        still_valid: impl Fn(&str, &str, &Session) -> bool,
    ) -> usize {
        if tenants.is_empty() {
            return 0;
        }
        let sessions: Vec<(DeviceKey, Arc<Mailbox>, Session)> = {
            let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
            devices
                .iter()
                .filter(|(key, _)| key.split_once('\n').is_some_and(|(t, _)| tenants.contains(t)))
                .map(|(key, (mailbox, session))| (key.clone(), mailbox.clone(), session.clone()))
                .collect()
        };
        let mut told = 0;
        for (key, mailbox, proof) in sessions {
            let Some((tenant, device)) = key.split_once('\n') else {
                continue;
            };
            if !still_valid(tenant, device, &proof) {
                mailbox.revoke();
                told += 1;
            }
        }
        told
    }

    /// Admits an authenticated connection of `device` of `tenant`, whose
    /// connection's mailbox is `mailbox`, or says why not. An older session
    /// of the same device is told to go away.
    pub fn admit(
        self: &Arc<Self>,
        tenant: &str,
        device: &str,
        mailbox: &Arc<Mailbox>,
        session: Session,
    ) -> Result<Admitted, Refusal> {
        let connection = self.connections.take().ok_or(Refusal::ServerFull)?;
        // Every tenant's connections are counted, limit or not, so that a
        // limit a reload gives counts the connections already open.
        let known = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned();
        let places = known.unwrap_or_else(|| {
            let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
            tenants
                .entry(tenant.to_owned())
                .or_insert_with(|| Places::new(usize::MAX))
                .clone()
        });
        let tenant_permit = places.take().ok_or(Refusal::TenantFull)?;
        let key = device_key(tenant, device);
        let older = self
            .devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), (mailbox.clone(), session));
        if let Some((older, _)) = older {
            telemetry::global().session_replaced();
            older.tell_to_go();
        }
        Ok(Admitted {
            _connection: connection,
            _tenant: tenant_permit,
            _device: DeviceSlot {
                admission: self.clone(),
                key,
                mailbox: mailbox.clone(),
            },
        })
    }
}

impl Drop for DeviceSlot {
    fn drop(&mut self) {
        let mut devices = self.admission.devices.lock().unwrap_or_else(PoisonError::into_inner);
        // Only if it is still this session's: a newer one has its own.
        if devices
            .get(&self.key)
            .is_some_and(|(m, _)| Arc::ptr_eq(m, &self.mailbox))
        {
            devices.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn proof() -> Session {
        Session {
            proof: Proof::Token {
                expiry: 0,
                token: [0; 32],
            },
            tls: false,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    async fn was_evicted(w: &Waiting) -> bool {
        tokio::time::timeout(Duration::from_millis(20), w.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_ipv6_64_is_one_source_and_a_place_moves_to_the_agents_address() {
        let pool = WaitingPool::with_grace(100, 1, Duration::ZERO);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        assert_eq!(source_of("::ffff:10.0.0.1".parse().unwrap()), ip_v4(10, 0, 0, 1));
        let first = pool.enter(a);
        let second = pool.enter(b);
        assert!(was_evicted(&first).await, "one /64, one place");
        let other = pool.enter(c);
        assert!(!was_evicted(&second).await && !was_evicted(&other).await);
        // Behind a balancer: entered under its address, moved to the agent's.
        let balancer = ip(9);
        let via = pool.enter(balancer);
        let also = pool.enter(balancer);
        assert!(
            was_evicted(&via).await,
            "two waiting from the balancer, one place per source"
        );
        also.move_to(a);
        assert_eq!(also.source(), Some(a));
        assert!(was_evicted(&second).await, "the agent's /64 had its one place taken");
        let again = pool.enter(balancer);
        assert!(!was_evicted(&again).await, "the balancer's place was freed by the move");
    }

    fn ip_v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    #[tokio::test]
    async fn a_full_pool_evicts_the_connection_waiting_longest() {
        let pool = WaitingPool::with_grace(3, 10, Duration::ZERO);
        let a = pool.enter(ip(1));
        let b = pool.enter(ip(2));
        let c = pool.enter(ip(3));
        let d = pool.enter(ip(4));
        assert!(was_evicted(&a).await);
        assert!(!was_evicted(&b).await && !was_evicted(&c).await && !was_evicted(&d).await);
        assert_eq!(pool.len(), 3);
        drop(a);
        assert_eq!(pool.len(), 3, "an evicted place is not counted twice");
        drop(b);
        assert_eq!(pool.len(), 2);
    }

    #[tokio::test]
    async fn one_source_cannot_hold_more_than_its_share() {
        let pool = WaitingPool::with_grace(100, 2, Duration::ZERO);
        let a1 = pool.enter(ip(1));
        let other = pool.enter(ip(2));
        let a2 = pool.enter(ip(1));
        let a3 = pool.enter(ip(1));
        assert!(was_evicted(&a1).await, "the source's oldest goes");
        assert!(!was_evicted(&other).await, "not another source's");
        assert!(!was_evicted(&a2).await && !was_evicted(&a3).await);
        assert_eq!(pool.len(), 3);
    }

    #[tokio::test]
    async fn connections_within_their_grace_are_evicted_only_when_the_pool_runs_far_over() {
        let pool = WaitingPool::with_grace(2, 100, Duration::from_secs(60));
        // A storm: none has had time to send HELLO, so none is evicted...
        let storm: Vec<_> = (0..2 * OVERFLOW_FACTOR).map(|i| pool.enter(ip(i as u8))).collect();
        for w in &storm {
            assert!(!was_evicted(w).await);
        }
        assert_eq!(pool.len(), 2 * OVERFLOW_FACTOR);
        // ...until the pool is four times over: then the longest waiting goes.
        let late = pool.enter(ip(200));
        assert!(was_evicted(&storm[0]).await);
        assert!(!was_evicted(&storm[1]).await && !was_evicted(&late).await);
        // The same holds for one source's share.
        let pool = WaitingPool::with_grace(100, 1, Duration::from_secs(60));
        let one: Vec<_> = (0..OVERFLOW_FACTOR).map(|_| pool.enter(ip(1))).collect();
        let other = pool.enter(ip(2));
        let again = pool.enter(ip(1));
        assert!(was_evicted(&one[0]).await, "the source's oldest");
        assert!(!was_evicted(&other).await && !was_evicted(&again).await);
    }

    /// A connection's mailbox, and whether it was told to go away.
    fn mailbox() -> Arc<Mailbox> {
        Arc::new(Mailbox::default())
    }

    #[test]
    fn limits_hold_and_a_device_has_one_session() {
        let admission = Admission::new(3, [("small".to_owned(), 1)]);
        let (m1, m2, m3) = (mailbox(), mailbox(), mailbox());
        let first = admission.admit("small", "d1", &m1, proof()).unwrap();
        assert_eq!(
            admission.admit("small", "d2", &mailbox(), proof()).unwrap_err(),
            Refusal::TenantFull
        );
        let second = admission.admit("big", "d1", &m2, proof()).unwrap();
        let again = admission.admit("big", "d1", &m3, proof()).unwrap();
        // The same device of the same tenant: the older session is told.
        assert!(m2.take_told_to_go());
        assert!(!m1.take_told_to_go() && !m3.take_told_to_go());
        assert_eq!(
            admission.admit("big", "d3", &mailbox(), proof()).unwrap_err(),
            Refusal::ServerFull
        );
        drop(second);
        // The older session ending does not free the newer one's slot.
        assert_eq!(admission.devices.lock().unwrap().len(), 2);
        drop(again);
        drop(first);
        assert!(admission.devices.lock().unwrap().is_empty());
        assert!(admission.admit("small", "d2", &mailbox(), proof()).is_ok());
    }

    #[test]
    fn a_reload_changes_limits_without_closing_anybody_and_tells_removed_tenants() {
        let admission = Admission::new(10, [("t".to_owned(), 2)]);
        let a = admission.admit("t", "a", &mailbox(), proof()).unwrap();
        let b = admission.admit("t", "b", &mailbox(), proof()).unwrap();
        let other_told = mailbox();
        let _other = admission.admit("u", "x", &other_told, proof()).unwrap();
        // Lowered below what is open: nobody new until enough leave.
        admission.set_limits(10, [("t".to_owned(), 1)]);
        assert_eq!(
            admission.admit("t", "c", &mailbox(), proof()).unwrap_err(),
            Refusal::TenantFull
        );
        drop(a);
        assert_eq!(
            admission.admit("t", "c", &mailbox(), proof()).unwrap_err(),
            Refusal::TenantFull
        );
        drop(b);
        let c_told = mailbox();
        let _c = admission.admit("t", "c", &c_told, proof()).unwrap();
        // The limit removed: the open connection still counts if it returns.
        admission.set_limits(10, []);
        let d_told = mailbox();
        let _d = admission.admit("t", "d", &d_told, proof()).unwrap();
        admission.set_limits(10, [("t".to_owned(), 2)]);
        assert_eq!(
            admission.admit("t", "e", &mailbox(), proof()).unwrap_err(),
            Refusal::TenantFull
        );
        // The global limit too.
        admission.set_limits(3, []);
        assert_eq!(
            admission.admit("v", "y", &mailbox(), proof()).unwrap_err(),
            Refusal::ServerFull
        );
        // A removed tenant's sessions are told; the others are not.
        assert_eq!(admission.tell_tenant_to_go("t"), 2);
        assert!(c_told.take_told_to_go() && d_told.take_told_to_go());
        assert!(!other_told.take_told_to_go());
    }
}

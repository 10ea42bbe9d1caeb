//! Quotas against noisy neighbours: token buckets per tenant for records/s
//! and bytes/s (inflated), shared by all the tenant's connections on this
//! node, and per device for records/s, held by the device's session (a
//! device has one session per node).
//!
//! A bucket is a GCRA (the generic cell rate algorithm: one atomic time,
//! when the bucket will be full again). It holds one second of its rate,
//! and never less than the largest batch (`max_batch_records`,
//! `max_batch_bytes`), so any batch the gateway accepts passes an idle
//! bucket. A batch larger than the bucket (a session's WELCOME allowed it,
//! and a reload lowered the limits since) passes a full bucket and leaves
//! it in debt for the rest: the long-run rate holds, and no connected agent
//! is stranded with a batch no bucket can ever take. A batch over quota is
//! answered ACK RETRY with `retry_after_ms` = the time until the bucket has
//! room for it, plus up to half that again as jitter; nothing of it is
//! stored. The device bucket is checked first, then the tenant's; a batch
//! refused by one takes nothing from the others.
//!
//! Quotas are per node: behind a load balancer over N nodes, a tenant gets
//! up to N times its quota.
//!
//! A reload (`ops/reload.rs`) keeps a tenant's buckets when its quota settings
//! did not change, so that reloading cannot be used to refill them; when
//! they did, the tenant's sessions all move to the new buckets at once
//! (the tenant holds them in a [`SharedQuota`]). A changed device quota
//! applies to sessions that start after the reload.
//!
//! A device's bucket outlives its session: the tenant keeps one per device
//! while a session holds it or it is not yet full again, so a device cannot
//! refill its bucket by reconnecting (a session of the same device on this
//! node, new or old, shares it). Buckets that are full and held by no
//! session carry nothing and are dropped, a few at a time as devices
//! connect: the map holds the devices connected now and those that sent
//! within their bucket's span before leaving (about 150 bytes each;
//! docs/architecture.md, "The worst case in bytes").

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// Which quota a batch went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The device's records/s.
    Device = 0,
    /// The tenant's records/s or bytes/s.
    Tenant = 1,
}

impl Scope {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::Tenant => "tenant",
        }
    }
}

/// A batch over quota: which one, and how long until it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    /// The quota it went over.
    pub scope: Scope,
    /// How long until the bucket has room for the batch.
    pub wait: Duration,
}

/// A tenant's quotas as its sessions see them: replaced whole when a reload
/// changes them.
pub type SharedQuota = Arc<ArcSwap<TenantQuota>>;

/// What a tenant's buckets are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// The tenant's records a second.
    pub records_per_second: Option<NonZeroU32>,
    /// The tenant's inflated bytes a second.
    pub bytes_per_second: Option<NonZeroU32>,
    /// Each device's records a second.
    pub device_records_per_second: Option<NonZeroU32>,
    /// The largest batch, records: the least a records bucket holds.
    pub max_batch_records: u32,
    /// The largest batch, bytes: the least the bytes bucket holds.
    pub max_batch_bytes: u32,
}

/// Nanoseconds on the process's monotonic clock (since its first reading).
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How a bucket fills: `rate` units a second, holding `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per unit.
    interval_ns: u64,
    /// Nanoseconds a full bucket is worth: `burst` units.
    capacity_ns: u64,
}

impl Rate {
    /// `rate` a second, holding one second of it and never less than `largest`.
    fn new(rate: NonZeroU32, largest: u32) -> Rate {
        let interval_ns = (1_000_000_000 / u64::from(rate.get())).max(1);
        let burst = u64::from(rate.get().max(largest));
        Rate {
            interval_ns,
            capacity_ns: burst.saturating_mul(interval_ns),
        }
    }
}

/// A token bucket (GCRA): `full_at` is when it will be full again, on the
/// [`now_ns`] clock; it is full whenever that is not in the future.
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    full_at: AtomicU64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            full_at: AtomicU64::new(0),
        }
    }

    /// Whether the bucket is full at `now` (it then remembers nothing).
    fn is_full_at(&self, now: u64) -> bool {
        self.full_at.load(Ordering::Acquire) <= now
    }

    /// Takes `n` units at time `now`, or says how long until they could be
    /// taken. More than the bucket holds is taken from a full bucket, the
    /// rest as debt.
    fn take_at(&self, n: u32, now: u64) -> Result<(), Duration> {
        let cost = u64::from(n).saturating_mul(self.rate.interval_ns);
        let mut full_at = self.full_at.load(Ordering::Acquire);
        loop {
            let from = full_at.max(now);
            let next = from.saturating_add(cost);
            // Allowed when what is then owed fits the bucket, or, for a
            // batch larger than the bucket, when the bucket is full.
            let ready_at = if cost > self.rate.capacity_ns {
                full_at
            } else {
                next.saturating_sub(self.rate.capacity_ns)
            };
            if ready_at > now {
                return Err(Duration::from_nanos(ready_at - now));
            }
            match self
                .full_at
                .compare_exchange_weak(full_at, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => full_at = seen,
            }
        }
    }

    /// Gives back `n` units taken by [`Bucket::take_at`] (a batch another
    /// bucket refused).
    fn give_back(&self, n: u32) {
        let cost = u64::from(n).saturating_mul(self.rate.interval_ns);
        let _ = self
            .full_at
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_sub(cost)));
    }
}

/// A tenant's quotas; none when the tenant has none.
#[derive(Debug)]
pub struct TenantQuota {
    settings: Option<QuotaSettings>,
    /// The least the buckets hold (records, bytes): the largest batch any
    /// session may have been told it can send, across reloads.
    floors: (u32, u32),
    records: Option<Bucket>,
    bytes: Option<Bucket>,
    device_records: Option<Rate>,
    /// Each device's bucket, kept across its sessions (module doc).
    devices: Mutex<DeviceBuckets>,
}

/// The devices' buckets, and when to sweep them next.
#[derive(Debug, Default)]
struct DeviceBuckets {
    by_device: HashMap<Box<str>, Arc<Bucket>>,
    sweep_at_len: usize,
}

/// The fewest buckets kept before a sweep.
const SWEEP_AT_LEAST: usize = 64;

/// One device's bucket, held by its session (and by its tenant until it is
/// full again).
#[derive(Debug)]
pub struct DeviceQuota(Arc<Bucket>);

impl TenantQuota {
    /// From the tenant's configured rates; `max_batch_records` and
    /// `max_batch_bytes` are the least a bucket holds.
    #[cfg(test)]
    pub fn new(
        records_per_second: Option<NonZeroU32>,
        bytes_per_second: Option<NonZeroU32>,
        device_records_per_second: Option<NonZeroU32>,
        max_batch_records: u32,
        max_batch_bytes: u32,
    ) -> TenantQuota {
        Self::from_settings(QuotaSettings {
            records_per_second,
            bytes_per_second,
            device_records_per_second,
            max_batch_records,
            max_batch_bytes,
        })
    }

    /// Buckets made from `settings`.
    pub fn from_settings(settings: QuotaSettings) -> TenantQuota {
        Self::with_floors(settings, (settings.max_batch_records, settings.max_batch_bytes))
    }

    /// The buckets that take over from `previous` when a reload changes the
    /// settings: they hold at least what `previous`'s did (a session keeps
    /// the limits its WELCOME told it, so its batches must still pass a
    /// full bucket), and, when the device rate did not change, the devices'
    /// buckets go on as they were (a reload does not refill them).
    pub fn succeeding(previous: &TenantQuota, settings: QuotaSettings) -> TenantQuota {
        let floors = (
            settings.max_batch_records.max(previous.floors.0),
            settings.max_batch_bytes.max(previous.floors.1),
        );
        let next = Self::with_floors(settings, floors);
        let same_device_rate = previous
            .settings
            .is_some_and(|p| p.device_records_per_second == settings.device_records_per_second);
        if same_device_rate {
            let kept = std::mem::take(&mut *previous.devices.lock().unwrap_or_else(PoisonError::into_inner));
            *next.devices.lock().unwrap_or_else(PoisonError::into_inner) = kept;
        }
        next
    }

    fn with_floors(settings: QuotaSettings, (max_batch_records, max_batch_bytes): (u32, u32)) -> TenantQuota {
        let QuotaSettings {
            records_per_second,
            bytes_per_second,
            device_records_per_second,
            ..
        } = settings;
        TenantQuota {
            settings: Some(settings),
            floors: (max_batch_records, max_batch_bytes),
            records: records_per_second.map(|r| Bucket::new(Rate::new(r, max_batch_records))),
            bytes: bytes_per_second.map(|r| Bucket::new(Rate::new(r, max_batch_bytes))),
            device_records: device_records_per_second.map(|r| Rate::new(r, max_batch_records)),
            devices: Mutex::default(),
        }
    }

    /// No quota at all.
    #[cfg(any(test, feature = "test-support"))]
    pub fn none() -> TenantQuota {
        TenantQuota {
            settings: None,
            floors: (0, 0),
            records: None,
            bytes: None,
            device_records: None,
            devices: Mutex::default(),
        }
    }

    /// What the buckets were made from.
    pub fn settings(&self) -> Option<QuotaSettings> {
        self.settings
    }

    /// `device`'s bucket, if devices have a quota: the one it had, if it
    /// is still kept (held by another session, or not yet full), else a
    /// full one.
    pub fn device(&self, device: &str) -> Option<DeviceQuota> {
        let rate = self.device_records?;
        let mut buckets = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.by_device.get(device) {
            return Some(DeviceQuota(bucket.clone()));
        }
        if buckets.by_device.len() >= buckets.sweep_at_len {
            // Full and held by no session: nothing to remember.
            let now = now_ns();
            buckets
                .by_device
                .retain(|_, b| Arc::strong_count(b) > 1 || !b.is_full_at(now));
            buckets.sweep_at_len = (2 * buckets.by_device.len()).max(SWEEP_AT_LEAST);
        }
        let bucket = Arc::new(Bucket::new(rate));
        buckets.by_device.insert(device.into(), bucket.clone());
        Some(DeviceQuota(bucket))
    }

    /// Devices whose bucket is kept now.
    #[cfg(test)]
    fn devices_kept(&self) -> usize {
        self.devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_device
            .len()
    }

    /// Takes `records` and `bytes` from the buckets, or says which quota
    /// the batch is over and for how long. A batch that does not pass takes
    /// nothing from any bucket.
    pub fn admit(&self, device: Option<&DeviceQuota>, records: u32, bytes: u32) -> Result<(), OverQuota> {
        self.admit_at(device, records, bytes, now_ns())
    }

    fn admit_at(&self, device: Option<&DeviceQuota>, records: u32, bytes: u32, now: u64) -> Result<(), OverQuota> {
        let checks = [
            (device.map(|d| &*d.0), records, Scope::Device),
            (self.records.as_ref(), records, Scope::Tenant),
            (self.bytes.as_ref(), bytes, Scope::Tenant),
        ];
        for (i, (bucket, n, scope)) in checks.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            if let Err(wait) = bucket.take_at(*n, now) {
                for (taken, n, _) in &checks[..i] {
                    if let Some(taken) = taken {
                        taken.give_back(*n);
                    }
                }
                return Err(OverQuota { scope: *scope, wait });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn a_tenant_over_its_records_is_told_how_long_to_wait() {
        // 100 records a second, batches of at most 50: the bucket holds 100.
        let q = TenantQuota::new(rate(100), None, None, 50, 1 << 20);
        assert_eq!(q.admit(None, 50, 1000), Ok(()));
        assert_eq!(q.admit(None, 50, 1000), Ok(()));
        let over = q.admit(None, 50, 1000).unwrap_err();
        assert_eq!(over.scope, Scope::Tenant);
        // 50 records at 100 a second: about half a second.
        assert!(
            over.wait > Duration::from_millis(400) && over.wait <= Duration::from_millis(500),
            "{over:?}"
        );
    }

    #[test]
    fn a_bucket_always_holds_the_largest_batch() {
        let q = TenantQuota::new(rate(10), rate(1000), None, 1000, 4096);
        assert_eq!(q.admit(None, 1000, 4096), Ok(()), "an idle bucket passes any batch");
        assert!(q.admit(None, 1, 1).is_err());
    }

    #[test]
    fn a_device_over_its_quota_does_not_spend_its_tenants() {
        // Tenant: 100 records a second; each device 10 (batches of at most 10).
        let q = TenantQuota::new(rate(100), None, rate(10), 10, 1 << 20);
        let first = q.device("first").unwrap();
        assert_eq!(q.admit(Some(&first), 10, 1), Ok(()));
        assert_eq!(q.admit(Some(&first), 10, 1).unwrap_err().scope, Scope::Device);
        // The refused batch took nothing from the tenant: 90 are left, for
        // nine other devices, and then the tenant is full.
        for n in 0..9 {
            assert_eq!(q.admit(Some(&q.device(&format!("d{n}")).unwrap()), 10, 1), Ok(()));
        }
        assert_eq!(
            q.admit(Some(&q.device("d9").unwrap()), 10, 1).unwrap_err().scope,
            Scope::Tenant
        );
        assert!(TenantQuota::none().device("any").is_none());
        assert_eq!(TenantQuota::none().admit(None, 1000, 1 << 30), Ok(()));
    }

    #[test]
    fn a_batch_refused_by_the_tenant_takes_nothing_from_its_device() {
        // The device may send 10 a second, the tenant 10 in all.
        let q = TenantQuota::new(rate(10), None, rate(10), 10, 1 << 20);
        let (a, b) = (q.device("a").unwrap(), q.device("b").unwrap());
        assert_eq!(q.admit_at(Some(&a), 10, 1, 0), Ok(()));
        // b's batch passes its own bucket but not the tenant's: b keeps its 10.
        assert_eq!(q.admit_at(Some(&b), 10, 1, 0).unwrap_err().scope, Scope::Tenant);
        assert_eq!(b.0.take_at(10, 0), Ok(()));
    }

    #[test]
    fn a_device_that_reconnects_keeps_its_bucket_and_full_unheld_ones_are_dropped() {
        // 5 records a second, batches of up to 5.
        let q = TenantQuota::new(None, None, rate(5), 5, 1 << 20);
        let session = q.device("phone").unwrap();
        assert_eq!(q.admit(Some(&session), 5, 1), Ok(()));
        drop(session);
        // Reconnecting: the same, empty, bucket.
        let again = q.device("phone").unwrap();
        assert_eq!(q.admit(Some(&again), 5, 1).unwrap_err().scope, Scope::Device);
        drop(again);
        // Many devices connect and leave with full buckets: they are swept.
        for n in 0..1000 {
            drop(q.device(&format!("idle-{n}")).unwrap());
        }
        assert!(q.devices_kept() <= 2 * SWEEP_AT_LEAST, "{}", q.devices_kept());
    }

    #[test]
    fn buckets_that_succeed_others_hold_as_much_and_keep_the_devices() {
        let settings = |max_batch_records, device| QuotaSettings {
            records_per_second: rate(10),
            bytes_per_second: None,
            device_records_per_second: rate(device),
            max_batch_records,
            max_batch_bytes: 1 << 20,
        };
        let old = TenantQuota::from_settings(settings(500, 5));
        let phone = old.device("phone").unwrap();
        assert!(old.admit(Some(&phone), 5, 1).is_ok());
        // A reload lowers max_batch_records to 100: a session told 500 still
        // gets its 500 through a full bucket, without going into debt.
        let next = TenantQuota::succeeding(&old, settings(100, 5));
        assert_eq!(next.admit_at(None, 500, 1, now_ns()), Ok(()));
        // The device's bucket went on, as full as it was.
        let again = next.device("phone").unwrap();
        assert!(Arc::ptr_eq(&again.0, &phone.0));
        // A changed device rate starts the devices afresh.
        let other = TenantQuota::succeeding(&next, settings(100, 50));
        assert!(!Arc::ptr_eq(&other.device("phone").unwrap().0, &phone.0));
    }

    #[test]
    fn a_batch_larger_than_the_bucket_passes_a_full_one_and_leaves_it_in_debt() {
        // Made for batches of 100 at 10 a second; a session whose WELCOME
        // allowed 500 (before a reload lowered max_batch_records) sends 500.
        let second = 1_000_000_000u64;
        let q = TenantQuota::new(rate(10), None, None, 100, 1 << 20);
        assert_eq!(q.admit_at(None, 500, 1, 0), Ok(()), "a full bucket takes it");
        // 50 s of debt: the long-run rate holds.
        let over = q.admit_at(None, 1, 1, second).unwrap_err();
        assert_eq!(over.wait, Duration::from_secs(50 - 10) - Duration::from_millis(900));
        assert!(q.admit_at(None, 500, 1, 49 * second).is_err());
        assert_eq!(
            q.admit_at(None, 500, 1, 50 * second),
            Ok(()),
            "full again, it passes again"
        );
        // In debt again until 90 s: 1,000 records in 100 s, 10 a second.
        assert!(q.admit_at(None, 1, 1, 60 * second).is_err());
    }
}

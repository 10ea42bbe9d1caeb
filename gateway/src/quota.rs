//! Quotas against noisy neighbours: token buckets (GCRA, `governor`) per
//! tenant for records/s and bytes/s (inflated), shared by all the tenant's
//! connections on this node, and per device for records/s, held by the
//! device's session (a device has one session per node).
//!
//! A bucket holds one second of its rate, and never less than the largest
//! batch (`max_batch_records`, `max_batch_bytes`), so any batch the gateway
//! accepts can pass an idle bucket. A batch over quota is answered ACK RETRY
//! with `retry_after_ms` = the time until the bucket has room for it, plus
//! up to half that again as jitter; nothing of it is stored. The device
//! bucket is checked first, then the tenant's: a device over its own quota
//! does not spend its tenant's.
//!
//! Quotas are per node: behind a load balancer over N nodes, a tenant gets
//! up to N times its quota.
//!
//! A reload (`reload.rs`) keeps a tenant's buckets when its quota settings
//! did not change, so that reloading cannot be used to refill them; when
//! they did, the tenant's sessions all move to the new buckets at once
//! (the tenant holds them in a [`SharedQuota`]). A device's bucket is made at
//! HELLO: a changed device quota applies to sessions that start after the
//! reload.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

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

/// A tenant's quotas; none when the tenant has none.
#[derive(Debug)]
pub struct TenantQuota {
    settings: Option<QuotaSettings>,
    records: Option<DefaultDirectRateLimiter>,
    bytes: Option<DefaultDirectRateLimiter>,
    device_records: Option<Quota>,
}

/// One device's bucket, held by its session.
#[derive(Debug)]
pub struct DeviceQuota(DefaultDirectRateLimiter);

/// A bucket of `rate` a second holding at least `largest` (one batch).
fn quota(rate: NonZeroU32, largest: u32) -> Quota {
    let burst = NonZeroU32::new(rate.get().max(largest)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl TenantQuota {
    /// From the tenant's configured rates; `max_batch_records` and
    /// `max_batch_bytes` are the least a bucket holds.
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
        let QuotaSettings {
            records_per_second,
            bytes_per_second,
            device_records_per_second,
            max_batch_records,
            max_batch_bytes,
        } = settings;
        TenantQuota {
            settings: Some(settings),
            records: records_per_second.map(|r| RateLimiter::direct(quota(r, max_batch_records))),
            bytes: bytes_per_second.map(|r| RateLimiter::direct(quota(r, max_batch_bytes))),
            device_records: device_records_per_second.map(|r| quota(r, max_batch_records)),
        }
    }

    /// No quota at all.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn none() -> TenantQuota {
        TenantQuota {
            settings: None,
            records: None,
            bytes: None,
            device_records: None,
        }
    }

    /// What the buckets were made from.
    pub fn settings(&self) -> Option<QuotaSettings> {
        self.settings
    }

    /// A bucket for one of the tenant's devices, if devices have a quota.
    pub fn device(&self) -> Option<DeviceQuota> {
        self.device_records.map(|q| DeviceQuota(RateLimiter::direct(q)))
    }

    /// Takes `records` and `bytes` from the buckets, or says which quota
    /// the batch is over and for how long. Takes nothing from a bucket
    /// when a batch does not pass it.
    pub fn admit(&self, device: Option<&DeviceQuota>, records: u32, bytes: u32) -> Result<(), OverQuota> {
        if let Some(DeviceQuota(bucket)) = device {
            take(bucket, records, Scope::Device)?;
        }
        if let Some(bucket) = &self.records {
            take(bucket, records, Scope::Tenant)?;
        }
        if let Some(bucket) = &self.bytes {
            take(bucket, bytes, Scope::Tenant)?;
        }
        Ok(())
    }
}

fn take(bucket: &DefaultDirectRateLimiter, n: u32, scope: Scope) -> Result<(), OverQuota> {
    let Some(n) = NonZeroU32::new(n) else {
        return Ok(());
    };
    match bucket.check_n(n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(OverQuota {
            scope,
            wait: not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())),
        }),
        // Larger than the bucket: cannot happen, buckets hold the largest
        // batch; answered as a full bucket's worth of waiting, never a panic.
        Err(_) => Err(OverQuota {
            scope,
            wait: Duration::from_secs(1),
        }),
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
        let first = q.device().unwrap();
        assert_eq!(q.admit(Some(&first), 10, 1), Ok(()));
        assert_eq!(q.admit(Some(&first), 10, 1).unwrap_err().scope, Scope::Device);
        // The refused batch took nothing from the tenant: 90 are left, for
        // nine other devices, and then the tenant is full.
        for _ in 0..9 {
            assert_eq!(q.admit(Some(&q.device().unwrap()), 10, 1), Ok(()));
        }
        assert_eq!(
            q.admit(Some(&q.device().unwrap()), 10, 1).unwrap_err().scope,
            Scope::Tenant
        );
        assert!(TenantQuota::none().device().is_none());
        assert_eq!(TenantQuota::none().admit(None, 1000, 1 << 30), Ok(()));
    }
}

//! Coordinator timing and balancing knobs, with KCL's defaults.

use std::time::Duration;

/// How a [`crate::Coordinator`] times renewals and takes and how far it balances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease duration: a lease whose counter has not changed for this long (by the
    /// observer's clock) is expired, and a holder whose last successful renew is older than
    /// this considers the lease lost. Default 10 s.
    pub failover: Duration,
    /// Safety margin subtracted from the renew interval and added to the take interval.
    /// Default 25 ms.
    pub epsilon: Duration,
    /// How often held leases are renewed. Default `failover / 3 - epsilon` (3.308 s).
    pub renew_interval: Duration,
    /// How often the table is scanned to take expired leases and balance.
    /// Default `2 × (failover + epsilon)` (20.05 s).
    pub take_interval: Duration,
    /// Most leases stolen from the most loaded worker per take round. Default 1.
    pub max_steal: usize,
    /// Most leases this worker holds. Default unlimited.
    pub max_leases: usize,
    /// A lease unowned or unrenewed for this multiple of `failover` is "very old" and taken
    /// before other expired leases. Default 3.
    pub very_old_factor: u32,
    /// Also scan when a lease owned by another worker would expire (by this worker's
    /// observation) before the next take round. KCL scans only every `take_interval`, so a
    /// dead worker's leases move within `2 × take_interval` of its last renewal (the first
    /// scan sees the last counter change, the next one sees it expired); with this on they
    /// move within `failover + take_interval` of its death, for about twice the scans.
    /// Default false (KCL).
    pub scan_at_expiry: bool,
    /// How often finished leases whose children have all progressed are deleted.
    /// Default 5 min.
    pub cleanup_interval: Duration,
}

impl LeaseConfig {
    /// KCL's defaults derived from `failover` (renew `failover/3 − ε`, take `2(failover + ε)`).
    pub fn with_failover(failover: Duration) -> Self {
        let epsilon = Duration::from_millis(25);
        // KCL divides milliseconds: 10 000 / 3 − 25 = 3 308 ms.
        let third =
            Duration::from_millis(u64::try_from(failover.as_millis() / 3).unwrap_or(u64::MAX));
        LeaseConfig {
            failover,
            epsilon,
            renew_interval: third.saturating_sub(epsilon).max(Duration::from_millis(1)),
            take_interval: (failover + epsilon) * 2,
            max_steal: 1,
            max_leases: usize::MAX,
            very_old_factor: 3,
            scan_at_expiry: false,
            cleanup_interval: Duration::from_secs(300),
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::with_failover(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcl_defaults() {
        let c = LeaseConfig::default();
        assert_eq!(c.failover, Duration::from_secs(10));
        assert_eq!(c.renew_interval, Duration::from_millis(3308));
        assert_eq!(c.take_interval, Duration::from_millis(20_050));
        assert_eq!(c.max_steal, 1);
    }
}

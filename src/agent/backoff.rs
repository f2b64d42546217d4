//! Per-resource exponential back-off, kubelet style (10 s doubling to 5 min by default): a
//! resource whose actions failed is left alone until its time comes, so one broken resource
//! never keeps the others waiting and never hammers the daemon. Owned by the agent loop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::desired::ResourceKey;

/// Back-off bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl BackoffPolicy {
    /// The wait after `failures` failures in a row: `initial` doubled per failure after the
    /// first, at most `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// The back-off state of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Not retried before this instant.
    pub until: Instant,
    /// The last error, for status and `get`.
    pub last_error: String,
}

/// Back-off of every failing resource.
#[derive(Clone, Debug, Default)]
pub struct Backoffs {
    policy: BackoffPolicy,
    entries: BTreeMap<ResourceKey, Backoff>,
}

impl Backoffs {
    /// Empty, with the given bounds.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            entries: BTreeMap::new(),
        }
    }

    /// Records a failed attempt at `now`; returns the delay until the next one.
    pub fn failed(
        &mut self,
        key: &ResourceKey,
        error: impl Into<String>,
        now: Instant,
    ) -> Duration {
        let failures = self.entries.get(key).map_or(0, |b| b.failures) + 1;
        let delay = self.policy.delay(failures);
        self.entries.insert(
            key.clone(),
            Backoff {
                failures,
                until: now + delay,
                last_error: error.into(),
            },
        );
        delay
    }

    /// A successful attempt clears the resource's back-off.
    pub fn succeeded(&mut self, key: &ResourceKey) {
        self.entries.remove(key);
    }

    /// Forget resources that are no longer declared.
    pub fn retain(&mut self, keep: impl Fn(&ResourceKey) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// True while `key` must not be retried.
    pub fn waiting(&self, key: &ResourceKey, now: Instant) -> bool {
        self.entries.get(key).is_some_and(|b| b.until > now)
    }

    /// The earliest instant at which some resource may be retried.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .map(|b| b.until)
            .filter(|u| *u > now)
            .min()
    }

    /// The back-off of one resource.
    pub fn get(&self, key: &ResourceKey) -> Option<&Backoff> {
        self.entries.get(key)
    }

    /// Resources waiting at `now`.
    pub fn waiting_keys(&self, now: Instant) -> impl Iterator<Item = &ResourceKey> {
        self.entries
            .iter()
            .filter(move |(_, b)| b.until > now)
            .map(|(k, _)| k)
    }

    /// Number of resources currently waiting.
    pub fn count_waiting(&self, now: Instant) -> usize {
        self.entries.values().filter(|b| b.until > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Kind;

    #[test]
    fn doubles_up_to_the_cap_and_clears_on_success() {
        let mut b = Backoffs::new(BackoffPolicy::default());
        let k = ResourceKey::new(Kind::Container, "default", "web");
        let now = Instant::now();
        let delays: Vec<u64> = (0..8)
            .map(|_| b.failed(&k, "boom", now).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(b.waiting(&k, now));
        assert!(!b.waiting(&k, now + Duration::from_secs(301)));
        assert_eq!(b.next_retry(now), Some(now + Duration::from_secs(300)));
        b.succeeded(&k);
        assert!(!b.waiting(&k, now));
        assert_eq!(b.next_retry(now), None);
    }
}

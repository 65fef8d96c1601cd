//! A token bucket (`rate` tokens per second, up to `burst` saved), pure over the time it is
//! given, and keyed sets of them: per endpoint for deliveries, per tenant for API calls.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

impl TokenBucket {
    fn has_limits(&self, rate_per_second: f64, burst: u32) -> bool {
        self.rate == rate_per_second.max(f64::MIN_POSITIVE) && self.burst == f64::from(burst.max(1))
    }
}

/// One bucket per key, each with its own limits (e.g. an endpoint's `rate_limit`); a bucket
/// whose key's limits changed starts afresh.
pub struct KeyedBuckets<K> {
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash + Clone> Default for KeyedBuckets<K> {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedBuckets<K> {
    pub fn take(&self, key: &K, rate_per_second: f64, burst: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > 100_000 {
            buckets.clear();
        }
        let bucket = buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(rate_per_second, burst, now));
        if !bucket.has_limits(rate_per_second, burst) {
            *bucket = TokenBucket::new(rate_per_second, burst, now);
        }
        bucket.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3, start);
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        let wait = bucket.take(start).expect_err("burst spent");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9);
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
    }

    proptest! {
        #[test]
        fn never_grants_more_than_burst_plus_rate_times_elapsed(
            rate in 0.5f64..100.0, burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..200, 1..400),
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(rate, burst, start);
            let mut now = start;
            let mut granted = 0u64;
            for gap in gaps {
                now += Duration::from_millis(gap);
                match bucket.take(now) {
                    Ok(()) => granted += 1,
                    Err(wait) => prop_assert!(wait > Duration::ZERO && wait.as_secs_f64() <= 1.0 / rate + 1e-9),
                }
                let allowed = f64::from(burst) + rate * (now - start).as_secs_f64();
                prop_assert!(granted as f64 <= allowed + 1e-6, "{granted} > {allowed}");
            }
        }
    }
}

//! A per-key token bucket, so one VM flooding DHCP cannot starve the controller or the
//! other ports. Time is passed in (`now`), which keeps it pure and testable without sleeps.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by port (any `K`: an ofport, a port UUID...).
#[derive(Debug, Clone)]
pub struct RateLimiter<K = u32> {
    rate_per_sec: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate_per_sec` tokens are added per second up to `burst`; a new key starts full.
    /// A burst of 0 is treated as 1 so that a configured limiter never blocks everything.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            rate_per_sec: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `key` at `now`; false means "drop this packet". A `now` earlier
    /// than the previous call for the key adds nothing (clocks are not trusted to be
    /// monotonic across callers).
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        let (rate, burst) = (self.rate_per_sec, self.burst);
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        if now > b.last {
            b.last = now;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forget a key (the port was deleted).
    pub fn remove(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    /// Drop buckets idle long enough to be full again: they behave exactly like new ones,
    /// so this bounds memory without changing any decision.
    pub fn prune(&mut self, now: Instant) {
        let refill = if self.rate_per_sec > 0.0 {
            Duration::from_secs_f64(self.burst / self.rate_per_sec)
        } else {
            Duration::MAX
        };
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
    }

    /// Number of keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 3);
        assert!(rl.allow(1, t0));
        assert!(rl.allow(1, t0));
        assert!(rl.allow(1, t0));
        assert!(!rl.allow(1, t0), "burst of 3 exhausted");
        // Another port is unaffected.
        assert!(rl.allow(2, t0));
        // 10/s: one token after 100 ms, not before.
        assert!(!rl.allow(1, t0 + Duration::from_millis(99)));
        // 150 ms: 1.5 tokens accumulated, one is taken, half a token is left.
        assert!(rl.allow(1, t0 + Duration::from_millis(150)));
        assert!(!rl.allow(1, t0 + Duration::from_millis(150)));
        // Long idle refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(rl.allow(1, later));
        assert!(rl.allow(1, later));
        assert!(rl.allow(1, later));
        assert!(!rl.allow(1, later));
    }

    #[test]
    fn flood_is_bounded_by_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(100, 10);
        // 10,000 packets over one second from one port: burst + rate*1s pass.
        let passed = (0..10_000)
            .filter(|i| rl.allow("p", t0 + Duration::from_micros(i * 100)))
            .count();
        assert!((105..=111).contains(&passed), "passed {passed}");
    }

    #[test]
    fn backwards_time_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut rl = RateLimiter::new(1, 1);
        assert!(rl.allow(0, t0));
        assert!(!rl.allow(0, t0 - Duration::from_secs(5)));
        assert!(!rl.allow(0, t0));
        assert!(rl.allow(0, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn prune_and_remove() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5);
        rl.allow(1, t0);
        rl.allow(2, t0 + Duration::from_secs(1));
        rl.prune(t0 + Duration::from_millis(1200));
        assert_eq!(
            rl.len(),
            1,
            "key 1 idle 1.2 s >= 0.5 s refill time is pruned"
        );
        rl.remove(&2);
        assert!(rl.is_empty());
    }
}

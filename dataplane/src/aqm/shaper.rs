//! A token-bucket shaper: `rate` bits per second with a `burst`-octet bucket, so a lab can make
//! a bottleneck on any link. Time comes in as an argument.

use super::Nanos;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bits per second.
    pub rate_bps: u64,
    /// Bucket size, octets.
    pub burst: usize,
    /// Tokens in bits × 1e9, so a refill is the integer `rate_bps × dt_ns`.
    tokens: u128,
    last: Nanos,
}

const SCALE: u128 = 8_000_000_000; // octets → bit·ns

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate_bps: u64, burst: usize, now: Nanos) -> Self {
        TokenBucket {
            rate_bps,
            burst,
            tokens: burst as u128 * SCALE,
            last: now,
        }
    }

    fn refill(&mut self, now: Nanos) {
        let dt = now.saturating_sub(self.last) as u128;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate_bps as u128).min(self.burst as u128 * SCALE);
    }

    /// Tokens a frame of `len` octets needs: a frame larger than the bucket needs a full one,
    /// so it waits but never deadlocks.
    fn need(&self, len: usize) -> u128 {
        len.min(self.burst) as u128 * SCALE
    }

    /// Take `len` octets' worth if the bucket holds them.
    pub fn try_consume(&mut self, now: Nanos, len: usize) -> bool {
        self.refill(now);
        let need = self.need(len);
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }

    /// The earliest time at which `len` octets can go.
    pub fn ready_at(&mut self, now: Nanos, len: usize) -> Nanos {
        self.refill(now);
        let need = self.need(len);
        if self.tokens >= need || self.rate_bps == 0 {
            return now;
        }
        let wait = (need - self.tokens).div_ceil(self.rate_bps as u128);
        now + wait as Nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_burst() {
        // 8 Mb/s = 1 octet per µs; 3000-octet bucket.
        let mut tb = TokenBucket::new(8_000_000, 3000, 0);
        assert!(tb.try_consume(0, 1500));
        assert!(tb.try_consume(0, 1500));
        assert!(!tb.try_consume(0, 1500), "bucket empty");
        assert_eq!(tb.ready_at(0, 1500), 1_500_000);
        assert!(!tb.try_consume(1_499_999, 1500));
        assert!(tb.try_consume(1_500_000, 1500));
        // Idle for a long time: only `burst` accumulates.
        assert!(tb.try_consume(1_000_000_000, 3000));
        assert!(!tb.try_consume(1_000_000_000, 1));
        // A frame bigger than the bucket goes once the bucket is full.
        assert_eq!(tb.ready_at(1_000_000_000, 9000), 1_003_000_000);
        assert!(tb.try_consume(1_003_000_000, 9000));
    }
}

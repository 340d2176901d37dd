//! RED (Floyd & Jacobson 1993) with the gentle variant, count-based spacing of marks, idle-time
//! decay of the average, and optional adaptive max_p (Floyd, Gummadi & Shenker 2001). Queue sizes
//! are in packets, as in Floyd's settings.

use super::{Decision, Nanos, QueueState};

/// RED's parameters; `Default` is Floyd's settings for a 5-packet min_th.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedParams {
    pub min_th: f64,
    pub max_th: f64,
    pub w_q: f64,
    pub max_p: f64,
    pub gentle: bool,
    pub adaptive: bool,
    pub ecn: bool,
    /// Typical transmission time of a packet (the idle decay's `s`), ns.
    pub tx_time: Nanos,
}

impl Default for RedParams {
    fn default() -> Self {
        RedParams {
            min_th: 5.0,
            max_th: 15.0,
            w_q: 0.002,
            max_p: 0.1,
            gentle: true,
            adaptive: false,
            ecn: true,
            tx_time: 120_000, // 1500 octets at 100 Mb/s
        }
    }
}

/// The RED state machine of one queue.
#[derive(Debug, Clone)]
pub struct Red {
    pub params: RedParams,
    avg: f64,
    /// Packets since the last mark or drop; -1 below min_th (Floyd's initial value).
    count: i64,
    /// When the queue went idle, if it is.
    idle_since: Option<Nanos>,
    max_p: f64,
    last_p: f64,
    next_adapt: Nanos,
}

/// Adaptive RED's interval (Floyd et al. 2001: 0.5 s).
const ADAPT_INTERVAL: Nanos = 500_000_000;

impl Red {
    pub fn new(params: RedParams) -> Self {
        Red {
            params,
            avg: 0.0,
            count: -1,
            idle_since: Some(0),
            max_p: params.max_p,
            last_p: 0.0,
            next_adapt: ADAPT_INTERVAL,
        }
    }

    pub fn avg(&self) -> f64 {
        self.avg
    }

    pub fn max_p(&self) -> f64 {
        self.max_p
    }

    pub fn last_probability(&self) -> f64 {
        self.last_p
    }

    /// `p_b`: the base probability at average `avg` (gentle above max_th).
    pub fn p_b(&self, avg: f64) -> f64 {
        let p = &self.params;
        if avg < p.min_th {
            0.0
        } else if avg < p.max_th {
            self.max_p * (avg - p.min_th) / (p.max_th - p.min_th)
        } else if p.gentle && avg < 2.0 * p.max_th {
            self.max_p + (1.0 - self.max_p) * (avg - p.max_th) / p.max_th
        } else {
            1.0
        }
    }

    /// `p_a = p_b / (1 − count·p_b)`, at least p_b and at most 1.
    pub fn p_a(p_b: f64, count: i64) -> f64 {
        let d = 1.0 - count.max(0) as f64 * p_b;
        if d <= 0.0 {
            1.0
        } else {
            (p_b / d).min(1.0)
        }
    }

    fn update_avg(&mut self, now: Nanos, q: QueueState) {
        let w = self.params.w_q;
        match self.idle_since.take() {
            Some(since) if q.packets == 0 => {
                // As if (idle time / s) empty-queue arrivals had passed.
                let m = now.saturating_sub(since) as f64 / self.params.tx_time.max(1) as f64;
                self.avg *= (1.0 - w).powf(m);
            }
            _ => self.avg = (1.0 - w) * self.avg + w * q.packets as f64,
        }
    }

    fn adapt(&mut self, now: Nanos) {
        if !self.params.adaptive || now < self.next_adapt {
            return;
        }
        self.next_adapt = now + ADAPT_INTERVAL;
        let p = &self.params;
        let lo = p.min_th + 0.4 * (p.max_th - p.min_th);
        let hi = p.min_th + 0.6 * (p.max_th - p.min_th);
        if self.avg > hi && self.max_p <= 0.5 {
            self.max_p += (0.01f64).min(self.max_p / 4.0);
        } else if self.avg < lo && self.max_p >= 0.01 {
            self.max_p *= 0.9;
        }
    }

    pub fn on_enqueue(
        &mut self,
        now: Nanos,
        q: QueueState,
        ecn_capable: bool,
        uniform: f64,
    ) -> Decision {
        self.update_avg(now, q);
        self.adapt(now);
        let p = self.params;
        let avg = self.avg;
        let hard = if p.gentle { 2.0 * p.max_th } else { p.max_th };
        let decide = |ecn_ok: bool| {
            if p.ecn && ecn_ok {
                Decision::Mark
            } else {
                Decision::Drop
            }
        };
        if avg < p.min_th {
            self.count = -1;
            self.last_p = 0.0;
            return Decision::Enqueue;
        }
        if avg >= hard {
            self.count = 0;
            self.last_p = 1.0;
            return decide(ecn_capable);
        }
        self.count += 1;
        let p_b = self.p_b(avg);
        let p_a = Self::p_a(p_b, self.count);
        self.last_p = p_a;
        if uniform < p_a {
            self.count = 0;
            return decide(ecn_capable);
        }
        Decision::Enqueue
    }

    /// A departure; note when the queue empties for the idle decay.
    pub fn on_dequeue(&mut self, now: Nanos, q: QueueState) {
        if q.packets == 0 {
            self.idle_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn p_b_and_p_a_with_count() {
        let red = Red::new(RedParams::default());
        assert_eq!(red.p_b(4.9), 0.0);
        assert!(close(red.p_b(10.0), 0.05));
        assert!(close(red.p_b(15.0), 0.1), "gentle starts at max_p");
        assert!(close(red.p_b(22.5), 0.1 + 0.9 * 0.5));
        assert_eq!(red.p_b(30.0), 1.0);
        assert!(close(Red::p_a(0.05, 0), 0.05));
        assert!(close(Red::p_a(0.05, 10), 0.05 / 0.5));
        assert_eq!(Red::p_a(0.05, 20), 1.0);
        let hard = Red::new(RedParams {
            gentle: false,
            ..RedParams::default()
        });
        assert_eq!(hard.p_b(15.0), 1.0);
    }

    #[test]
    fn average_follows_w_q_and_decays_when_idle() {
        let mut red = Red::new(RedParams::default());
        let q = QueueState {
            packets: 10,
            bytes: 15_000,
        };
        red.on_enqueue(0, QueueState::default(), true, 0.5);
        red.on_enqueue(1, q, true, 0.5);
        assert!(close(red.avg(), 0.02));
        red.on_dequeue(1_000, QueueState::default());
        // 1000 transmission times idle: avg × 0.998^1000.
        red.on_enqueue(1_000 + 120_000_000, QueueState::default(), true, 0.5);
        assert!(
            close(red.avg(), 0.02 * 0.998f64.powf(1000.0)),
            "{}",
            red.avg()
        );
    }

    #[test]
    fn count_spaces_the_marks() {
        // Hold avg at 10 packets (w_q = 1), p_b = 0.05: with a draw of 0.09, the mark comes when
        // p_a = 0.05 / (1 − count·0.05) first exceeds 0.09, at count 9: the tenth arrival
        // (count starts at −1 below min_th and is 0 on the first arrival above it).
        let mut red = Red::new(RedParams {
            w_q: 1.0,
            ..RedParams::default()
        });
        let q = QueueState {
            packets: 10,
            bytes: 15_000,
        };
        let mut decisions = Vec::new();
        for _ in 0..10 {
            decisions.push(red.on_enqueue(0, q, true, 0.09));
        }
        assert_eq!(decisions[..9], [Decision::Enqueue; 9]);
        assert_eq!(decisions[9], Decision::Mark);
        assert_eq!(
            red.on_enqueue(0, q, false, 0.0),
            Decision::Drop,
            "Not-ECT is dropped"
        );
    }

    #[test]
    fn adaptive_max_p_moves_toward_the_target_band() {
        let mut red = Red::new(RedParams {
            w_q: 1.0,
            adaptive: true,
            ..RedParams::default()
        });
        let high = QueueState {
            packets: 14,
            bytes: 0,
        };
        red.on_enqueue(ADAPT_INTERVAL, high, true, 1.0);
        assert!(close(red.max_p(), 0.11));
        let low = QueueState {
            packets: 6,
            bytes: 0,
        };
        red.on_enqueue(3 * ADAPT_INTERVAL, low, true, 1.0);
        assert!(close(red.max_p(), 0.11 * 0.9));
    }
}

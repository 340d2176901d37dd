//! PIE, Proportional Integral controller Enhanced (RFC 8033), as the RFC writes it rather than
//! as Linux's sch_pie does (no +2 % above 250 ms, decay by 2 %, not 1/64): the periodic
//! drop-probability update with auto-tuned alpha/beta, the 2 % cap above 10 %, the idle decay,
//! the enqueue bypass rules, the burst allowance, de-randomization, the 10 % ECN threshold, and
//! queue delay from timestamps or from the departure-rate estimate.

use super::{Decision, Nanos, QueueState};

const MS: Nanos = 1_000_000;

/// How PIE learns the queue delay (RFC 8033 §4.3, §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueDelayMode {
    /// The sojourn time of the last dequeued packet (enqueue/dequeue timestamps).
    Timestamps,
    /// Queue bytes over the departure rate measured in DQ_THRESHOLD-octet cycles.
    DepartureRate,
}

/// PIE's parameters; `Default` is RFC 8033 §5's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PieParams {
    /// QDELAY_REF.
    pub target: Nanos,
    /// T_UPDATE.
    pub t_update: Nanos,
    /// alpha, per second.
    pub alpha: f64,
    /// beta, per second.
    pub beta: f64,
    /// MAX_BURST.
    pub max_burst: Nanos,
    /// DQ_THRESHOLD, octets.
    pub dq_threshold: usize,
    /// Mark ECN-capable packets while drop_prob is at most this (RFC 8033 §5.1: 10 %).
    pub mark_ecn_threshold: f64,
    pub ecn: bool,
    pub derandomize: bool,
    pub mode: QueueDelayMode,
    /// Typical packet size for the "queue ≤ 2 packets" bypass, octets.
    pub mean_pkt_size: usize,
}

impl Default for PieParams {
    fn default() -> Self {
        PieParams {
            target: 15 * MS,
            t_update: 15 * MS,
            alpha: 0.125,
            beta: 1.25,
            max_burst: 150 * MS,
            dq_threshold: 1 << 14,
            mark_ecn_threshold: 0.1,
            ecn: true,
            derandomize: true,
            mode: QueueDelayMode::Timestamps,
            mean_pkt_size: 1500,
        }
    }
}

/// The PIE state machine of one queue.
#[derive(Debug, Clone)]
pub struct Pie {
    pub params: PieParams,
    drop_prob: f64,
    qdelay: Nanos,
    qdelay_old: Nanos,
    burst_allowance: Nanos,
    accu_prob: f64,
    next_update: Option<Nanos>,
    /// Departure-rate estimate (RFC 8033 §5.3).
    dq_count: Option<usize>,
    dq_tstamp: Nanos,
    avg_dq_time: f64,
}

/// RFC 8033 §4.2 auto-tuning: scale the controller's output down while drop_prob is small.
pub fn autotune(p: f64, drop_prob: f64) -> f64 {
    let scale = if drop_prob < 0.000_001 {
        1.0 / 2048.0
    } else if drop_prob < 0.000_01 {
        1.0 / 512.0
    } else if drop_prob < 0.000_1 {
        1.0 / 128.0
    } else if drop_prob < 0.001 {
        1.0 / 32.0
    } else if drop_prob < 0.01 {
        1.0 / 8.0
    } else if drop_prob < 0.1 {
        1.0 / 2.0
    } else {
        1.0
    };
    p * scale
}

impl Pie {
    pub fn new(params: PieParams) -> Self {
        Pie {
            params,
            drop_prob: 0.0,
            qdelay: 0,
            qdelay_old: 0,
            burst_allowance: params.max_burst,
            accu_prob: 0.0,
            next_update: None,
            dq_count: None,
            dq_tstamp: 0,
            avg_dq_time: 0.0,
        }
    }

    pub fn drop_prob(&self) -> f64 {
        self.drop_prob
    }

    /// The queue delay the last update used.
    pub fn qdelay(&self) -> Nanos {
        self.qdelay
    }

    pub fn burst_allowance(&self) -> Nanos {
        self.burst_allowance
    }

    /// Run every periodic update due by `now` (RFC 8033 §5.2).
    fn catch_up(&mut self, now: Nanos, q: QueueState) {
        let next = *self.next_update.get_or_insert(now + self.params.t_update);
        if now < next {
            return;
        }
        let mut at = next;
        while at <= now {
            self.update(q);
            at += self.params.t_update;
        }
        self.next_update = Some(at);
    }

    /// One T_UPDATE step: the PI controller with auto-tuning, the cap, the decay and the burst
    /// allowance bookkeeping.
    pub fn update(&mut self, q: QueueState) {
        let p = &self.params;
        if p.mode == QueueDelayMode::DepartureRate {
            self.qdelay = if self.avg_dq_time > 0.0 {
                (q.bytes as f64 * self.avg_dq_time / p.dq_threshold as f64) as Nanos
            } else {
                0
            };
        }
        let secs = |ns: Nanos| ns as f64 / 1e9;
        let raw = p.alpha * (secs(self.qdelay) - secs(p.target))
            + p.beta * (secs(self.qdelay) - secs(self.qdelay_old));
        let mut delta = autotune(raw, self.drop_prob);
        // RFC 8033 §4.2: at 10 % and above, never add more than 2 % in one step.
        if self.drop_prob >= 0.1 && delta > 0.02 {
            delta = 0.02;
        }
        self.drop_prob += delta;
        // §4.2: decay while the queue stays idle.
        if self.qdelay == 0 && self.qdelay_old == 0 {
            self.drop_prob *= 0.98;
        }
        self.drop_prob = self.drop_prob.clamp(0.0, 1.0);
        // §4.4 burst allowance: spend it while it lasts; refill once the queue has calmed down.
        self.burst_allowance = self.burst_allowance.saturating_sub(p.t_update);
        if self.drop_prob == 0.0 && self.qdelay < p.target / 2 && self.qdelay_old < p.target / 2 {
            self.burst_allowance = p.max_burst;
        }
        self.qdelay_old = self.qdelay;
    }

    /// RFC 8033 §5.1 enqueue: the bypass rules, then the (de-randomized) random decision.
    pub fn on_enqueue(
        &mut self,
        now: Nanos,
        q: QueueState,
        ecn_capable: bool,
        uniform: f64,
    ) -> Decision {
        self.catch_up(now, q);
        let p = self.params;
        if self.burst_allowance > 0 {
            return Decision::Enqueue;
        }
        if self.qdelay_old < p.target / 2 && self.drop_prob < 0.2 {
            return Decision::Enqueue;
        }
        if q.bytes <= 2 * p.mean_pkt_size {
            return Decision::Enqueue;
        }
        let drop = if p.derandomize {
            // §5.4: accumulate the probability; never below 0.85, always at 8.5.
            if self.drop_prob == 0.0 {
                self.accu_prob = 0.0;
            }
            self.accu_prob += self.drop_prob;
            if self.accu_prob < 0.85 {
                false
            } else if self.accu_prob >= 8.5 {
                true
            } else {
                uniform < self.drop_prob
            }
        } else {
            uniform < self.drop_prob
        };
        if !drop {
            return Decision::Enqueue;
        }
        self.accu_prob = 0.0;
        if p.ecn && ecn_capable && self.drop_prob <= p.mark_ecn_threshold {
            Decision::Mark
        } else {
            Decision::Drop
        }
    }

    /// RFC 8033 §5.3 dequeue: the delay sample (timestamps) or the departure-rate cycle.
    pub fn on_dequeue(&mut self, now: Nanos, len: usize, sojourn: Nanos, q: QueueState) {
        match self.params.mode {
            QueueDelayMode::Timestamps => {
                self.qdelay = if q.packets == 0 && q.bytes == 0 && sojourn == 0 {
                    0
                } else {
                    sojourn
                };
            }
            QueueDelayMode::DepartureRate => {
                let th = self.params.dq_threshold;
                if self.dq_count.is_none() && q.bytes + len >= th {
                    self.dq_tstamp = now;
                    self.dq_count = Some(0);
                }
                if let Some(c) = self.dq_count.as_mut() {
                    *c += len;
                    if *c >= th {
                        let dq_int = now.saturating_sub(self.dq_tstamp) as f64;
                        self.avg_dq_time = if self.avg_dq_time == 0.0 {
                            dq_int
                        } else {
                            dq_int * 0.125 + self.avg_dq_time * 0.875
                        };
                        self.dq_count = (q.bytes >= th).then_some(0);
                        self.dq_tstamp = now;
                    }
                }
            }
        }
        if q.packets == 0 {
            // An empty queue has no delay, whichever way it is measured.
            if self.params.mode == QueueDelayMode::Timestamps {
                self.qdelay = 0;
            }
        }
    }

    /// Force the controller's memory, for tests that pin one formula.
    pub fn set_state(&mut self, drop_prob: f64, qdelay: Nanos, qdelay_old: Nanos, burst: Nanos) {
        self.drop_prob = drop_prob;
        self.qdelay = qdelay;
        self.qdelay_old = qdelay_old;
        self.burst_allowance = burst;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// RFC 8033 §4.2's table, row by row, with p = 0.01 from the controller.
    #[test]
    fn autotune_table() {
        let rows = [
            (0.0, 0.01 / 2048.0),
            (0.000_000_9, 0.01 / 2048.0),
            (0.000_001, 0.01 / 512.0),
            (0.000_009, 0.01 / 512.0),
            (0.000_01, 0.01 / 128.0),
            (0.000_1, 0.01 / 32.0),
            (0.001, 0.01 / 8.0),
            (0.009, 0.01 / 8.0),
            (0.01, 0.01 / 2.0),
            (0.099, 0.01 / 2.0),
            (0.1, 0.01),
            (0.5, 0.01),
        ];
        for (drop_prob, want) in rows {
            assert!(
                close(autotune(0.01, drop_prob), want),
                "drop_prob {drop_prob}"
            );
        }
    }

    #[test]
    fn controller_step_and_two_percent_cap() {
        let mut pie = Pie::new(PieParams::default());
        // qdelay 25 ms, old 15 ms, drop_prob 5 %: p = 0.125·0.010 + 1.25·0.010 = 0.01375 → /2.
        pie.set_state(0.05, 25 * MS, 15 * MS, 0);
        pie.update(QueueState::default());
        assert!(
            close(pie.drop_prob(), 0.05 + 0.01375 / 2.0),
            "{}",
            pie.drop_prob()
        );
        // At 20 %, a large step is capped at 2 %.
        pie.set_state(0.2, 200 * MS, 15 * MS, 0);
        pie.update(QueueState::default());
        assert!(close(pie.drop_prob(), 0.22), "{}", pie.drop_prob());
        // Below 10 % the cap does not apply (only the auto-tuning scale does).
        pie.set_state(0.09, 200 * MS, 15 * MS, 0);
        pie.update(QueueState::default());
        let raw = 0.125 * 0.185 + 1.25 * 0.185;
        assert!(close(pie.drop_prob(), 0.09 + raw / 2.0));
    }

    #[test]
    fn decay_when_idle_and_clamp() {
        let mut pie = Pie::new(PieParams::default());
        pie.set_state(0.5, 0, 0, 0);
        pie.update(QueueState::default());
        // p = -0.125·0.015 = -0.001875 (no scaling at ≥ 10 %), then ×0.98.
        assert!(close(pie.drop_prob(), (0.5 - 0.001_875) * 0.98));
        pie.set_state(0.000_1, 0, 0, 0);
        for _ in 0..10 {
            pie.update(QueueState::default());
        }
        assert_eq!(pie.drop_prob(), 0.0, "clamped at zero");
        pie.set_state(0.999, 500 * MS, 0, 0);
        pie.update(QueueState::default());
        assert_eq!(pie.drop_prob(), 1.0, "clamped at one");
    }

    #[test]
    fn bypass_rules() {
        let busy = QueueState {
            packets: 100,
            bytes: 150_000,
        };
        let mut pie = Pie::new(PieParams::default());
        // Burst allowance left: always enqueue.
        pie.set_state(0.9, 100 * MS, 100 * MS, 10 * MS);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Enqueue);
        // Old delay under target/2 with drop_prob < 0.2: enqueue.
        pie.set_state(0.19, 100 * MS, 7 * MS, 0);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Enqueue);
        // Queue of at most two packets: enqueue.
        pie.set_state(0.9, 100 * MS, 100 * MS, 0);
        let small = QueueState {
            packets: 2,
            bytes: 3000,
        };
        assert_eq!(pie.on_enqueue(0, small, false, 0.0), Decision::Enqueue);
    }

    #[test]
    fn derandomization_thresholds() {
        let busy = QueueState {
            packets: 100,
            bytes: 150_000,
        };
        let mut pie = Pie::new(PieParams::default());
        // drop_prob 0.3: accu 0.3, 0.6 (< 0.85: never drop even with draw 0), 0.9 (random).
        pie.set_state(0.3, 100 * MS, 100 * MS, 0);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Enqueue);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Enqueue);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.99), Decision::Enqueue);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Drop);
        // After a drop the accumulator restarts: a tiny probability reaches 8.5 and drops for
        // sure even with the highest draw.
        pie.set_state(0.25, 100 * MS, 100 * MS, 0);
        let mut n = 0;
        while pie.on_enqueue(0, busy, false, 0.999_999) == Decision::Enqueue {
            n += 1;
        }
        assert_eq!(n, 33, "8.5 / 0.25 = 34 arrivals, the 34th dropped");
    }

    #[test]
    fn ecn_marks_up_to_ten_percent_then_drops() {
        let busy = QueueState {
            packets: 100,
            bytes: 150_000,
        };
        let mut pie = Pie::new(PieParams {
            derandomize: false,
            ..PieParams::default()
        });
        pie.set_state(0.1, 100 * MS, 100 * MS, 0);
        assert_eq!(pie.on_enqueue(0, busy, true, 0.0), Decision::Mark);
        assert_eq!(pie.on_enqueue(0, busy, false, 0.0), Decision::Drop);
        pie.set_state(0.11, 100 * MS, 100 * MS, 0);
        assert_eq!(pie.on_enqueue(0, busy, true, 0.0), Decision::Drop);
    }

    #[test]
    fn burst_allowance_runs_out_and_refills() {
        let mut pie = Pie::new(PieParams::default());
        assert_eq!(pie.burst_allowance(), 150 * MS);
        pie.set_state(0.01, 30 * MS, 30 * MS, 150 * MS);
        for _ in 0..10 {
            pie.update(QueueState::default());
        }
        assert_eq!(pie.burst_allowance(), 0);
        pie.set_state(0.0, 0, 0, 0);
        pie.update(QueueState::default());
        assert_eq!(pie.burst_allowance(), 150 * MS);
    }

    #[test]
    fn departure_rate_estimate() {
        let mut pie = Pie::new(PieParams {
            mode: QueueDelayMode::DepartureRate,
            ..PieParams::default()
        });
        // 16 KiB leaves every 1.31 ms (100 Mb/s); 64 KiB queued → about 5.24 ms of delay.
        let q = QueueState {
            packets: 44,
            bytes: 65_536,
        };
        // One 1024-octet packet leaves every 131 072 ns. The first cycle starts at the first
        // dequeue and so spans 15 gaps; the second spans 16; the average weighs the new 1/8.
        let gap = 131_072.0;
        let mut now = 0;
        for _ in 0..40 {
            now += 131_072;
            pie.on_dequeue(now, 1024, 0, q);
        }
        pie.update(q);
        let avg = 16.0 * gap * 0.125 + 15.0 * gap * 0.875;
        let want = (65_536.0 * avg / 16_384.0) as Nanos;
        assert_eq!(pie.qdelay(), want);
    }
}

//! An egress queue: packet and byte limits, the AQM decision at enqueue with ECN marking
//! (RFC 3168: mark ECT where the AQM would drop, drop Not-ECT, CE stays CE, a full queue drops
//! whatever the codepoint), the shaper at dequeue, enqueue timestamps for the sojourn time, and
//! counters by ECN codepoint. The ring is allocated once, at its limit.

use std::collections::VecDeque;

use super::ecn::{self, Ecn};
use super::{Aqm, Decision, Nanos, QueueState, Rng, TokenBucket};
use crate::frame::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub packets: usize,
    pub bytes: usize,
}

/// Counters of one queue, each indexed by the arriving packet's ECN codepoint (`Ecn as usize`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub enqueued: [u64; 4],
    pub marked: [u64; 4],
    pub early_drops: [u64; 4],
    pub overflow_drops: [u64; 4],
    pub dequeued: u64,
    pub dequeued_bytes: u64,
}

impl QueueCounters {
    /// Add another queue's (or worker's) counters into these.
    pub fn merge(&mut self, o: &QueueCounters) {
        for k in 0..4 {
            self.enqueued[k] += o.enqueued[k];
            self.marked[k] += o.marked[k];
            self.early_drops[k] += o.early_drops[k];
            self.overflow_drops[k] += o.overflow_drops[k];
        }
        self.dequeued += o.dequeued;
        self.dequeued_bytes += o.dequeued_bytes;
    }
}

/// A queue's depth and counters, as a worker reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: usize,
    pub counters: QueueCounters,
}

impl QueueStats {
    pub fn merge(&mut self, o: &QueueStats) {
        self.depth += o.depth;
        self.counters.merge(&o.counters);
    }
}

/// A queued frame with what the egress side needs to know.
#[derive(Debug)]
pub struct Entry<B> {
    pub frame: Frame<B>,
    pub enqueued_at: Nanos,
    /// Packets ahead of this one when it arrived: the queue depth it reports.
    pub depth_at_enqueue: u32,
    pub ecn: Ecn,
}

/// Why a frame did not get into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Overflow,
    Early,
}

#[derive(Debug)]
pub struct EgressQueue<B> {
    ring: VecDeque<Entry<B>>,
    bytes: usize,
    pub limits: QueueLimits,
    pub aqm: Aqm,
    pub shaper: Option<TokenBucket>,
    rng: Rng,
    pub counters: QueueCounters,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> EgressQueue<B> {
    pub fn new(limits: QueueLimits, aqm: Aqm, shaper: Option<TokenBucket>, seed: u64) -> Self {
        EgressQueue {
            ring: VecDeque::with_capacity(limits.packets),
            bytes: 0,
            limits,
            aqm,
            shaper,
            rng: Rng::new(seed),
            counters: QueueCounters::default(),
        }
    }

    pub fn state(&self) -> QueueState {
        QueueState {
            packets: self.ring.len(),
            bytes: self.bytes,
        }
    }

    /// Room for `packets` frames without growing later.
    pub(super) fn reserve(&mut self, packets: usize) {
        self.ring.reserve(packets.saturating_sub(self.ring.len()));
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            depth: self.ring.len(),
            counters: self.counters.clone(),
        }
    }

    /// Take every frame out, shaper or not (a worker stopping gives its buffers back).
    pub fn drain(&mut self) -> impl Iterator<Item = Entry<B>> + '_ {
        self.bytes = 0;
        self.ring.drain(..)
    }

    /// Offer a frame; a refused frame comes back so its buffer can be reused.
    pub fn enqueue(&mut self, now: Nanos, mut frame: Frame<B>) -> Result<(), (Frame<B>, Refused)> {
        let ecn = ecn::codepoint(frame.bytes()).unwrap_or(Ecn::NotEct);
        let e = ecn as usize;
        let len = frame.len();
        if self.ring.len() >= self.limits.packets || self.bytes + len > self.limits.bytes {
            self.counters.overflow_drops[e] += 1;
            return Err((frame, Refused::Overflow));
        }
        let uniform = self.rng.uniform();
        match self
            .aqm
            .on_enqueue(now, self.state(), ecn.is_capable(), uniform)
        {
            Decision::Enqueue => {}
            Decision::Mark => {
                if !ecn::mark_ce(frame.bytes_mut()) {
                    self.counters.early_drops[e] += 1;
                    return Err((frame, Refused::Early));
                }
                self.counters.marked[e] += 1;
            }
            Decision::Drop => {
                self.counters.early_drops[e] += 1;
                return Err((frame, Refused::Early));
            }
        }
        self.counters.enqueued[e] += 1;
        self.bytes += len;
        let depth_at_enqueue = self.ring.len() as u32;
        self.ring.push_back(Entry {
            frame,
            enqueued_at: now,
            depth_at_enqueue,
            ecn,
        });
        Ok(())
    }

    /// Take the head frame if the shaper lets it go at `now`.
    pub fn dequeue(&mut self, now: Nanos) -> Option<Entry<B>> {
        let len = self.ring.front()?.frame.len();
        if let Some(tb) = self.shaper.as_mut() {
            if !tb.try_consume(now, len) {
                return None;
            }
        }
        let entry = self.ring.pop_front()?;
        self.bytes -= len;
        self.counters.dequeued += 1;
        self.counters.dequeued_bytes += len as u64;
        let sojourn = now.saturating_sub(entry.enqueued_at);
        let state = self.state();
        self.aqm.on_dequeue(now, len, sojourn, state);
        Some(entry)
    }

    /// When the head frame entered the queue; `None` when empty.
    pub fn head_enqueued_at(&self) -> Option<Nanos> {
        self.ring.front().map(|e| e.enqueued_at)
    }

    /// When the head frame may leave (now if unshaped); `None` when empty.
    pub fn next_departure(&mut self, now: Nanos) -> Option<Nanos> {
        let len = self.ring.front()?.frame.len();
        Some(match self.shaper.as_mut() {
            Some(tb) => tb.ready_at(now, len),
            None => now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aqm::{Pie, PieParams, Red, RedParams};
    use crate::frame::HEADROOM;

    /// A 1000-octet IPv6 frame with the given ECN bits.
    fn frame(ecn: u8) -> Frame<Vec<u8>> {
        let mut f = vec![0u8; 1000];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[15] = ecn << 4;
        f[18..20].copy_from_slice(&(1000u16 - 54).to_be_bytes());
        f[20] = 17;
        f[21] = 64;
        Frame::from_bytes(vec![0u8; HEADROOM + 1500], &f).unwrap()
    }

    /// A responsive sender into a queue shaped to one 1000-octet packet per ms (8 Mb/s): it
    /// sends at `rate` packets per ms, adds one packet per 40 ms RTT per RTT (0.025/40 per ms), and halves on a mark or drop at most
    /// once per 40 ms (an RTT), as an AIMD transport does. Returns the counters after `secs`.
    fn closed_loop(aqm: Aqm, ecn: u8, secs: u64) -> QueueCounters {
        let mut q = shaped(aqm);
        let (mut rate, mut credit, mut last_cut) = (0.9f64, 0.0f64, 0u64);
        for ms in 0..secs * 1000 {
            let now = ms * 1_000_000;
            credit += rate;
            let before = (
                q.counters.marked,
                q.counters.early_drops,
                q.counters.overflow_drops,
            );
            while credit >= 1.0 {
                credit -= 1.0;
                let _ = q.enqueue(now, frame(ecn));
            }
            let signalled = before
                != (
                    q.counters.marked,
                    q.counters.early_drops,
                    q.counters.overflow_drops,
                );
            if signalled && ms >= last_cut + 40 {
                rate *= 0.5;
                last_cut = ms;
            } else {
                rate += 0.025 / 40.0;
            }
            while q.dequeue(now).is_some() {}
        }
        q.counters
    }

    /// A 1000-packet queue shaped to 8 Mb/s: one 1000-octet packet per ms.
    fn shaped(aqm: Aqm) -> EgressQueue<Vec<u8>> {
        EgressQueue::new(
            QueueLimits {
                packets: 1000,
                bytes: 1_000_000,
            },
            aqm,
            Some(TokenBucket::new(8_000_000, 1000, 0)),
            7,
        )
    }

    /// Bursts of 40 back-to-back packets every 50 ms (80 % load): a standing queue that comes
    /// and goes, as a video source makes.
    fn bursts(aqm: Aqm, ecn: u8, secs: u64) -> QueueCounters {
        let mut q = shaped(aqm);
        let mut now = 0;
        while now < secs * 1_000_000_000 {
            if now % 50_000_000 == 0 {
                for _ in 0..40 {
                    let _ = q.enqueue(now, frame(ecn));
                }
            }
            while q.dequeue(now).is_some() {}
            now += 100_000;
        }
        q.counters
    }

    /// Offer an unresponsive stream, one packet every `gap` ns, for `secs` seconds.
    fn open_loop(aqm: Aqm, ecn: u8, secs: u64, gap: u64) -> QueueCounters {
        let mut q = shaped(aqm);
        let mut now = 0;
        while now < secs * 1_000_000_000 {
            let _ = q.enqueue(now, frame(ecn));
            while q.dequeue(now).is_some() {}
            now += gap;
        }
        q.counters
    }

    fn pie(target_ms: u64, ecn: bool) -> Aqm {
        Aqm::Pie(Pie::new(PieParams {
            target: target_ms * 1_000_000,
            ecn,
            ..PieParams::default()
        }))
    }

    fn red(w_q: f64, ecn: bool) -> Aqm {
        Aqm::Red(Red::new(RedParams {
            w_q,
            ecn,
            tx_time: 1_000_000,
            ..RedParams::default()
        }))
    }

    const ECT0: u8 = 0b10;

    #[test]
    fn ecn_on_with_ect_traffic_marks_and_does_not_drop_early() {
        for aqm in [pie(15, true), red(0.02, true)] {
            let c = closed_loop(aqm, ECT0, 20);
            let e = Ecn::Ect0 as usize;
            assert!(c.marked[e] > 20, "{c:?}");
            assert_eq!(c.early_drops[e], 0, "{c:?}");
        }
    }

    #[test]
    fn not_ect_traffic_is_dropped_never_marked() {
        for aqm in [pie(15, true), red(0.02, true)] {
            let c = closed_loop(aqm, 0, 20);
            assert!(c.early_drops[Ecn::NotEct as usize] > 20, "{c:?}");
            assert_eq!(c.marked, [0; 4]);
        }
    }

    #[test]
    fn ecn_off_drops_only() {
        for aqm in [pie(15, false), red(0.002, false)] {
            let c = closed_loop(aqm, ECT0, 20);
            assert!(c.early_drops[Ecn::Ect0 as usize] > 20, "{c:?}");
            assert_eq!(c.marked, [0; 4]);
        }
    }

    #[test]
    fn lower_target_or_higher_w_q_acts_more() {
        let e = Ecn::NotEct as usize;
        // Unresponsive traffic 25 % over the rate for 2 s: how soon and how hard the AQM acts.
        let loose = open_loop(pie(30, true), 0, 2, 800_000).early_drops[e];
        let tight = open_loop(pie(5, true), 0, 2, 800_000).early_drops[e];
        assert!(tight > loose, "PIE target 5 ms {tight} vs 30 ms {loose}");
        // Bursts: a faster average sees them, a slower one barely does.
        let slow = bursts(red(0.002, true), 0, 10).early_drops[e];
        let fast = bursts(red(0.02, true), 0, 10).early_drops[e];
        assert!(fast > slow, "RED w_q 0.02 {fast} vs 0.002 {slow}");
    }

    #[test]
    fn full_queue_drops_whatever_the_codepoint() {
        let mut q: EgressQueue<Vec<u8>> = EgressQueue::new(
            QueueLimits {
                packets: 2,
                bytes: 10_000,
            },
            Aqm::None,
            None,
            1,
        );
        q.enqueue(0, frame(ECT0)).unwrap();
        q.enqueue(0, frame(0b11)).unwrap();
        let (_, why) = q.enqueue(0, frame(0b11)).unwrap_err();
        assert_eq!(why, Refused::Overflow);
        assert_eq!(q.counters.overflow_drops[Ecn::Ce as usize], 1);
        let head = q.dequeue(5).unwrap();
        assert_eq!((head.enqueued_at, head.depth_at_enqueue), (0, 0));
        assert_eq!(q.dequeue(5).unwrap().depth_at_enqueue, 1);
    }

    #[test]
    fn a_new_config_keeps_queued_frames_and_resets_only_what_changed() {
        use crate::aqm::{AqmConfig, QueueConfig};
        let pie_cfg = |target_ms: u64| QueueConfig {
            limits: QueueLimits {
                packets: 1000,
                bytes: 1_000_000,
            },
            shaper: Some((8_000_000, 1000)),
            aqm: AqmConfig::Pie(PieParams {
                target: target_ms * 1_000_000,
                ecn: true,
                ..PieParams::default()
            }),
        };
        let mut q: EgressQueue<Vec<u8>> = pie_cfg(15).build(0, 7);
        for _ in 0..3 {
            q.enqueue(0, frame(1)).unwrap();
        }
        if let Aqm::Pie(p) = &mut q.aqm {
            p.set_state(0.25, 0, 0, 0);
        }
        // Same parameters: the AQM's state survives.
        pie_cfg(15).apply_to(&mut q, 1);
        assert!(matches!(&q.aqm, Aqm::Pie(p) if p.drop_prob() == 0.25));
        // A new target: a fresh PIE with it; the frames are still there, in order.
        pie_cfg(5).apply_to(&mut q, 2);
        assert!(
            matches!(&q.aqm, Aqm::Pie(p) if p.drop_prob() == 0.0 && p.params.target == 5_000_000)
        );
        assert_eq!(q.len(), 3);
        // RED with a bigger limit, no shaper.
        let red = QueueConfig {
            limits: QueueLimits {
                packets: 5000,
                bytes: 5_000_000,
            },
            shaper: None,
            aqm: AqmConfig::Red(RedParams::default()),
        };
        red.apply_to(&mut q, 3);
        assert!(matches!(q.aqm, Aqm::Red(_)));
        assert!(q.shaper.is_none());
        assert_eq!(q.limits.packets, 5000);
        let mut n = 0;
        while q.dequeue(4).is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }
}

//! Active queue management on egress queues: PIE (RFC 8033) and RED (Floyd & Jacobson 1993,
//! gentle and adaptive variants) as pure state machines that take `now` and a random draw as
//! arguments, the ECN rules of RFC 3168 ([`ecn`]), a token-bucket [`shaper`], and the
//! [`queue`] that ties them to frames. Nothing here reads a clock or allocates per packet.
#![forbid(unsafe_code)]

pub mod ecn;
pub mod pie;
pub mod queue;
pub mod red;
pub mod shaper;

pub use ecn::Ecn;
pub use pie::{Pie, PieParams, QueueDelayMode};
pub use queue::{EgressQueue, QueueCounters, QueueLimits, QueueStats};
pub use red::{Red, RedParams};
pub use shaper::TokenBucket;

/// What an AQM decides for an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Enqueue,
    /// Enqueue with the CE codepoint set (the packet was ECN-capable).
    Mark,
    /// Drop early (the packet was Not-ECT, or marking is not allowed at this probability).
    Drop,
}

/// Nanoseconds, the unit of every `now` in this module.
pub type Nanos = u64;

/// The queue as an AQM sees it on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueState {
    pub packets: usize,
    pub bytes: usize,
}

/// Either AQM, chosen per port by configuration.
#[derive(Debug, Clone)]
pub enum Aqm {
    None,
    Pie(Pie),
    Red(Red),
}

impl Aqm {
    /// Decide for an arriving packet of `len` octets; `uniform` is a draw from [0, 1).
    pub fn on_enqueue(
        &mut self,
        now: Nanos,
        q: QueueState,
        ecn_capable: bool,
        uniform: f64,
    ) -> Decision {
        match self {
            Aqm::None => Decision::Enqueue,
            Aqm::Pie(p) => p.on_enqueue(now, q, ecn_capable, uniform),
            Aqm::Red(r) => r.on_enqueue(now, q, ecn_capable, uniform),
        }
    }

    /// Tell the AQM a packet of `len` octets left after `sojourn` ns, leaving `q` behind.
    pub fn on_dequeue(&mut self, now: Nanos, len: usize, sojourn: Nanos, q: QueueState) {
        match self {
            Aqm::None => {}
            Aqm::Pie(p) => p.on_dequeue(now, len, sojourn, q),
            Aqm::Red(r) => r.on_dequeue(now, q),
        }
    }

    /// The current drop/mark probability, for telemetry and plots.
    pub fn probability(&self) -> f64 {
        match self {
            Aqm::None => 0.0,
            Aqm::Pie(p) => p.drop_prob(),
            Aqm::Red(r) => r.last_probability(),
        }
    }
}

/// Which AQM a queue runs, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum AqmConfig {
    None,
    Pie(PieParams),
    Red(RedParams),
}

/// An egress queue's configuration: limits, an optional shaper, the AQM.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub limits: QueueLimits,
    /// Rate in bits per second and bucket size in octets.
    pub shaper: Option<(u64, usize)>,
    pub aqm: AqmConfig,
}

impl QueueConfig {
    /// A queue in this configuration, its shaper's bucket full at `now`.
    pub fn build<B: AsRef<[u8]> + AsMut<[u8]>>(&self, now: Nanos, seed: u64) -> EgressQueue<B> {
        let aqm = match &self.aqm {
            AqmConfig::None => Aqm::None,
            AqmConfig::Pie(p) => Aqm::Pie(Pie::new(*p)),
            AqmConfig::Red(r) => Aqm::Red(Red::new(*r)),
        };
        let shaper = self
            .shaper
            .map(|(rate, burst)| TokenBucket::new(rate, burst, now));
        EgressQueue::new(self.limits, aqm, shaper, seed)
    }

    /// Give a running queue this configuration, between batches: the frames in it stay; the AQM
    /// starts from its initial state when its kind or parameters changed, the shaper's bucket
    /// refills. The ring grows (once) when the new packet limit is above its capacity; frames
    /// beyond a lowered limit leave by dequeue as usual.
    pub fn apply_to<B: AsRef<[u8]> + AsMut<[u8]>>(&self, q: &mut EgressQueue<B>, now: Nanos) {
        let fresh: EgressQueue<B> = self.build(now, 1);
        q.limits = self.limits;
        q.reserve(self.limits.packets);
        if !same_aqm(&q.aqm, &self.aqm) {
            q.aqm = fresh.aqm;
        }
        let same_shaper = match (&q.shaper, self.shaper) {
            (Some(b), Some((rate, burst))) => b.rate_bps == rate && b.burst == burst,
            (None, None) => true,
            _ => false,
        };
        if !same_shaper {
            q.shaper = fresh.shaper;
        }
    }
}

/// Whether a running AQM already has these parameters.
fn same_aqm(running: &Aqm, cfg: &AqmConfig) -> bool {
    match (running, cfg) {
        (Aqm::None, AqmConfig::None) => true,
        (Aqm::Pie(p), AqmConfig::Pie(c)) => p.params == *c,
        (Aqm::Red(r), AqmConfig::Red(c)) => r.params == *c,
        _ => false,
    }
}

/// A small, fast, deterministic PRNG (xorshift64*) for AQM draws: the data path must not lock a
/// shared generator or make a syscall per packet.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// A draw from [0, 1).
    pub fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

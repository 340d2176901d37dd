//! The exporter thread: drains the workers' postcard rings, batches postcards into IPFIX
//! messages no larger than the configured MTU, and sends them over UDP to the first collector
//! that answers, with template refresh, per-collector sequence numbers, failover, a bounded
//! buffer while no collector answers, and a postcard rate cap.
//!
//! It never pushes back on the data path: the rings are the only link, and when the exporter
//! falls behind the rings fill and the workers count lost postcards. Everything this thread
//! drops it counts too: `lost` (buffer overflow, or no collector at shutdown) and `suppressed`
//! (over the rate cap).
//!
//! Failure detection is UDP's: a connected socket whose peer has no listener gets an ICMP port
//! unreachable, and the *next* send on it fails with ECONNREFUSED without sending. The datagram
//! the ICMP was about is the one sent just before, so the exporter keeps that last data message
//! and sends it again to the next collector: on a path where the ICMP comes back before the next
//! send (loopback, a LAN) failover loses nothing; on a longer path a few messages can be lost.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mtnode_dataplane::export::PostcardRing;
use serde::Serialize;

use crate::ipfix::{self, ExporterStatsRecord, MessageBuilder, DEFAULT_ENTERPRISE_NUMBER};

/// How the exporter behaves; [`Default`] gives the documented defaults (docs/ipfix.md).
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterConfig {
    /// Collectors in order of preference: the exporter sends to the first that answers and goes
    /// back to an earlier one once its `retry_interval` has passed.
    pub collectors: Vec<SocketAddr>,
    /// Private Enterprise Number of mtnode's enterprise-specific Information Elements.
    pub enterprise_number: u32,
    pub observation_domain_id: u32,
    /// Largest IPFIX message (UDP payload), octets. 1400 leaves room for IPv6 and UDP headers and
    /// a tunnel or two under a 1500-octet path MTU.
    pub mtu: usize,
    /// Resend the templates this often (RFC 7011 §8.4: over UDP templates are resent
    /// periodically, since a collector may restart or lose them) ...
    pub template_refresh: Duration,
    /// ... and at least every this many data messages (0: by time only).
    pub template_refresh_messages: u32,
    /// Postcards per second exported at most (None: no cap); the rest are `suppressed`.
    pub rate_limit: Option<f64>,
    /// Postcards the rate cap lets through at once after an idle spell.
    pub rate_burst: f64,
    /// Postcards held in encoded messages while no collector answers; beyond it the oldest
    /// messages are dropped and their postcards counted `lost`.
    pub buffer_postcards: usize,
    /// How long a collector whose send failed is skipped before it is tried again.
    pub retry_interval: Duration,
    /// Longest a partly filled message waits for more postcards while they keep coming.
    pub flush_interval: Duration,
    /// Sleep when the rings are empty (the thread polls; it is not woken by the workers).
    pub idle_sleep: Duration,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            collectors: Vec::new(),
            enterprise_number: DEFAULT_ENTERPRISE_NUMBER,
            observation_domain_id: 0,
            mtu: 1400,
            template_refresh: Duration::from_secs(10),
            template_refresh_messages: 1000,
            rate_limit: None,
            rate_burst: 1000.0,
            buffer_postcards: 65536,
            retry_interval: Duration::from_secs(1),
            flush_interval: Duration::from_millis(10),
            idle_sleep: Duration::from_micros(200),
        }
    }
}

/// The exporter's counters. `sent + lost + suppressed` is every postcard taken off the rings
/// once the exporter has stopped (and, while it runs, plus `buffered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ExporterStats {
    /// Postcards in messages a collector's socket accepted.
    pub sent: u64,
    /// Postcards dropped from the bounded buffer, or still in it at shutdown.
    pub lost: u64,
    /// Postcards over the rate cap.
    pub suppressed: u64,
    /// Data messages sent.
    pub messages: u64,
    /// Template messages sent (templates plus the reliability statistics record).
    pub template_messages: u64,
    /// Times a collector's send failed and the exporter moved on.
    pub failovers: u64,
    /// Postcards encoded and waiting for a collector.
    pub buffered: u64,
}

/// A token bucket over postcards; time comes in as an argument.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Full at `now`.
    pub fn new(rate_per_s: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate_per_s.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Add the tokens earned since the last refill.
    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take one token if there is one.
    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct SharedStats {
    sent: AtomicU64,
    lost: AtomicU64,
    suppressed: AtomicU64,
    messages: AtomicU64,
    template_messages: AtomicU64,
    failovers: AtomicU64,
    buffered: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    stats: SharedStats,
    /// Index of the collector in use, or `usize::MAX` for none.
    active: AtomicUsize,
}

/// Starts exporter threads.
#[derive(Debug)]
pub struct Exporter;

impl Exporter {
    /// Start the exporter thread over `rings`. Errs when `config` names no collector or a socket
    /// cannot be opened.
    pub fn spawn(
        config: ExporterConfig,
        rings: Vec<Arc<PostcardRing>>,
    ) -> io::Result<ExporterHandle> {
        if config.collectors.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the exporter needs at least one collector",
            ));
        }
        let mut sockets = Vec::with_capacity(config.collectors.len());
        for c in &config.collectors {
            let bind: SocketAddr = if c.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let s = UdpSocket::bind(bind)?;
            s.connect(c)?;
            sockets.push(s);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats: SharedStats::default(),
            active: AtomicUsize::new(usize::MAX),
        });
        let mut worker = Worker::new(config, rings, sockets, shared.clone());
        let thread = std::thread::Builder::new()
            .name("mtnode-exporter".into())
            .spawn(move || worker.run())?;
        Ok(ExporterHandle {
            shared,
            thread: Some(thread),
        })
    }
}

/// A running exporter. Dropping it stops the thread the same way [`Self::shutdown`] does.
#[derive(Debug)]
pub struct ExporterHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ExporterHandle {
    /// The counters as the thread last published them (once per poll).
    pub fn stats(&self) -> ExporterStats {
        let s = &self.shared.stats;
        ExporterStats {
            sent: s.sent.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            suppressed: s.suppressed.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            template_messages: s.template_messages.load(Ordering::Relaxed),
            failovers: s.failovers.load(Ordering::Relaxed),
            buffered: s.buffered.load(Ordering::Relaxed),
        }
    }

    /// The index (in `collectors`) of the collector in use, if any answers.
    pub fn active_collector(&self) -> Option<usize> {
        match self.shared.active.load(Ordering::Relaxed) {
            usize::MAX => None,
            i => Some(i),
        }
    }

    /// Stop: drain the rings, send what is buffered (postcards no collector takes count as
    /// lost), join the thread, and return the final counters.
    pub fn shutdown(mut self) -> ExporterStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // A panic in the exporter thread has been printed already; the counters stand.
            let _ = t.join();
        }
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An encoded data message waiting to go out: header fields are stamped when it is sent.
#[derive(Debug)]
struct Msg {
    bytes: Vec<u8>,
    records: u32,
}

#[derive(Debug, Default)]
struct CollectorState {
    /// Skip this collector until then (its last send failed).
    down_until: Option<Instant>,
    /// Data records sent on this transport session: the next message's sequence number.
    sequence: u32,
    /// When the templates last went to it; None: they must go before any data.
    template_at: Option<Instant>,
    messages_since_template: u32,
}

/// Postcards taken from each ring per turn, so that one busy worker cannot starve the others.
const RING_TURN: usize = 256;

#[derive(Debug)]
struct Worker {
    config: ExporterConfig,
    rings: Vec<Arc<PostcardRing>>,
    sockets: Vec<UdpSocket>,
    collectors: Vec<CollectorState>,
    active: Option<usize>,
    shared: Arc<Shared>,
    builder: MessageBuilder,
    /// When the first postcard of the message being built arrived.
    started: Instant,
    queue: VecDeque<Msg>,
    queued_records: u64,
    /// The last datagram a socket accepted, if it was a data message: resent on failover.
    last_sent: Option<Msg>,
    free: Vec<Vec<u8>>,
    template_buf: Vec<u8>,
    bucket: Option<TokenBucket>,
    stats: ExporterStats,
}

impl Worker {
    fn new(
        config: ExporterConfig,
        rings: Vec<Arc<PostcardRing>>,
        sockets: Vec<UdpSocket>,
        shared: Arc<Shared>,
    ) -> Self {
        let now = Instant::now();
        Worker {
            builder: MessageBuilder::new(config.mtu, config.observation_domain_id),
            collectors: sockets.iter().map(|_| CollectorState::default()).collect(),
            bucket: config
                .rate_limit
                .map(|r| TokenBucket::new(r, config.rate_burst, now)),
            config,
            rings,
            sockets,
            active: None,
            shared,
            started: now,
            queue: VecDeque::new(),
            queued_records: 0,
            last_sent: None,
            free: Vec::new(),
            template_buf: Vec::new(),
            stats: ExporterStats::default(),
        }
    }

    fn run(&mut self) {
        loop {
            let stopping = self.shared.stop.load(Ordering::Acquire);
            let now = Instant::now();
            if let Some(b) = &mut self.bucket {
                b.refill(now);
            }
            let mut taken = 0;
            for r in 0..self.rings.len() {
                for _ in 0..RING_TURN {
                    let Some(p) = self.rings[r].pop() else { break };
                    taken += 1;
                    if self.bucket.as_mut().is_some_and(|b| !b.take()) {
                        self.stats.suppressed += 1;
                        continue;
                    }
                    if self.builder.records() == 0 {
                        self.started = now;
                    }
                    if !self.builder.push(&p) {
                        self.close_message();
                        self.started = now;
                        let fits = self.builder.push(&p);
                        debug_assert!(fits, "an empty message holds any postcard");
                    }
                }
            }
            if self.builder.records() > 0
                && (taken == 0 || now.duration_since(self.started) >= self.config.flush_interval)
            {
                self.close_message();
            }
            self.send_queued(now);
            if stopping && taken == 0 {
                // The rings are empty and will stay so once the workers have stopped: what no
                // collector took is lost.
                self.stats.lost += self.queued_records;
                self.queued_records = 0;
                self.queue.clear();
                self.publish();
                return;
            }
            self.publish();
            if taken == 0 {
                std::thread::sleep(self.config.idle_sleep);
            }
        }
    }

    fn publish(&self) {
        let s = &self.shared.stats;
        let t = &self.stats;
        s.sent.store(t.sent, Ordering::Relaxed);
        s.lost.store(t.lost, Ordering::Relaxed);
        s.suppressed.store(t.suppressed, Ordering::Relaxed);
        s.messages.store(t.messages, Ordering::Relaxed);
        s.template_messages
            .store(t.template_messages, Ordering::Relaxed);
        s.failovers.store(t.failovers, Ordering::Relaxed);
        s.buffered.store(self.queued_records, Ordering::Relaxed);
        self.shared
            .active
            .store(self.active.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Move the message being built into the queue, dropping the oldest over the bound.
    fn close_message(&mut self) {
        let records = self.builder.records();
        if records == 0 {
            return;
        }
        let mut bytes = self.free.pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(self.builder.finish(0, 0));
        self.builder.reset();
        self.queue.push_back(Msg { bytes, records });
        self.queued_records += records as u64;
        while self.queued_records > self.config.buffer_postcards as u64 {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            self.queued_records -= old.records as u64;
            self.stats.lost += old.records as u64;
            self.free.push(old.bytes);
        }
    }

    /// The collector to send to: the first one not marked down. Switching to one makes its
    /// templates due, since it may never have had them or may have restarted.
    fn pick(&mut self, now: Instant) -> Option<usize> {
        let c = self
            .collectors
            .iter()
            .position(|c| c.down_until.is_none_or(|t| now >= t))?;
        if self.active != Some(c) {
            self.collectors[c].template_at = None;
            self.active = Some(c);
            // Whatever was sent before went to another collector: nothing to resend here.
            if let Some(m) = self.last_sent.take() {
                self.free.push(m.bytes);
            }
        }
        Some(c)
    }

    fn fail(&mut self, c: usize, now: Instant) {
        let st = &mut self.collectors[c];
        st.down_until = Some(now + self.config.retry_interval);
        st.template_at = None;
        self.stats.failovers += 1;
        self.active = None;
        // The refused datagram was the one before this send: put it back at the head.
        if let Some(m) = self.last_sent.take() {
            self.queued_records += m.records as u64;
            self.stats.sent -= m.records as u64;
            self.stats.messages -= 1;
            self.queue.push_front(m);
        }
    }

    fn templates_due(&self, c: usize, now: Instant) -> bool {
        let st = &self.collectors[c];
        match st.template_at {
            None => true,
            Some(t) => {
                now.duration_since(t) >= self.config.template_refresh
                    || (self.config.template_refresh_messages > 0
                        && st.messages_since_template >= self.config.template_refresh_messages)
            }
        }
    }

    fn send_templates(&mut self, c: usize, now: Instant) -> bool {
        let stats = ExporterStatsRecord {
            observation_domain_id: self.config.observation_domain_id,
            messages: self.stats.messages,
            records: self.stats.sent,
            not_sent: self.stats.lost + self.stats.suppressed,
        };
        let mut b = MessageBuilder::new(self.config.mtu, self.config.observation_domain_id);
        b.push_templates(self.config.enterprise_number, &stats);
        self.template_buf.clear();
        self.template_buf
            .extend_from_slice(b.finish(export_time(), self.collectors[c].sequence));
        match self.sockets[c].send(&self.template_buf) {
            Ok(_) => {
                let st = &mut self.collectors[c];
                // The statistics record is a data record too (RFC 7011 §3.1).
                st.sequence = st.sequence.wrapping_add(1);
                st.template_at = Some(now);
                st.messages_since_template = 0;
                self.stats.template_messages += 1;
                if let Some(m) = self.last_sent.take() {
                    self.free.push(m.bytes);
                }
                true
            }
            Err(_) => {
                self.fail(c, now);
                false
            }
        }
    }

    fn send_queued(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let Some(c) = self.pick(now) else { return };
            if self.templates_due(c, now) && !self.send_templates(c, now) {
                continue;
            }
            let mut m = self.queue.pop_front().expect("checked non-empty");
            ipfix::stamp_header(&mut m.bytes, export_time(), self.collectors[c].sequence);
            match self.sockets[c].send(&m.bytes) {
                Ok(_) => {
                    let st = &mut self.collectors[c];
                    st.sequence = st.sequence.wrapping_add(m.records);
                    st.messages_since_template += 1;
                    self.queued_records -= m.records as u64;
                    self.stats.sent += m.records as u64;
                    self.stats.messages += 1;
                    if let Some(old) = self.last_sent.replace(m) {
                        self.free.push(old.bytes);
                    }
                }
                Err(_) => {
                    self.queue.push_front(m);
                    self.fail(c, now);
                }
            }
        }
    }
}

/// Export time: seconds since the Unix epoch (RFC 7011 §3.1), read once per message.
fn export_time() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_caps_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 10.0, t0);
        let mut passed = (0..100).filter(|_| b.take()).count();
        assert_eq!(passed, 10, "a full bucket lets the burst through");
        // 50 ms at 1000/s earns 50 tokens, but the bucket holds 10.
        b.refill(t0 + Duration::from_millis(50));
        passed = (0..100).filter(|_| b.take()).count();
        assert_eq!(passed, 10);
        b.refill(t0 + Duration::from_millis(55));
        passed = (0..100).filter(|_| b.take()).count();
        assert_eq!(passed, 5);
        // Time going backwards earns nothing.
        b.refill(t0);
        assert!(!b.take());
    }
}

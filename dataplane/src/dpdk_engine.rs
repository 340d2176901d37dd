//! The live node on DPDK ports: start the EAL with the configured arguments, one mbuf pool per
//! queue, every port with that many RX/TX queue pairs, then one worker thread per queue that
//! owns that queue on every port, pinned to a core and registered as an EAL thread (so it gets
//! its own mempool caches), busy-polling in batches: clock once per batch, configuration
//! snapshot picked up between batches, replicas from the worker's pool, per-worker counters and
//! latency histogram, published to a [`DpdkMonitor`] when someone asks (between two polls, once
//! per request: the control API's `/v1/stats`) and merged at the end. Shutdown stops the workers, then the ports (stopped
//! and closed), then frees the pools and cleans the EAL up, in that order by construction.
//!
//! The worker's contract with its backend is [`QueueIo`]'s five calls (`rx`, `alloc`, `send`,
//! `free`, `flush`) and `held`, the same shape as the AF_XDP engine's socket set, so one worker
//! loop generic over the two can replace both once they meet on main.
//!
//! Two clocks: the system clock (read once per batch, after the RX poll) or the device's RX timestamps. With the
//! device clock a batch is, as in `mtnode replay`, the packets that arrived within a window of
//! the first (at most `batch_size`), and its time is its last arrival; over `net_pcap` that is
//! the pcap's own timestamps, so the node's output can be compared with replay's byte for byte.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::aqm::QueueStats;
use crate::egress::{self, Egress};
use crate::export::PostcardRing;
use crate::io::dpdk::{
    DpdkError, Eal, EthPort, Mbuf, Mempool, PortSetup, PortSpec, PortStats, QueueCounters, QueueIo,
    RxClock,
};
use crate::pipeline::{Counters, CountingSink, Packet, Pipeline, Verdict, MAX_PORTS};
use crate::snapshot::ConfigCell;
use crate::worker::{self, lock, new_histogram, now_ns, LatencySummary, IDLE_POLLS_BEFORE_SLEEP};

/// A node port on a DPDK device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkPort {
    /// Index of the port in the node's configuration.
    pub port: u16,
    pub device: PortSpec,
}

/// Where the batch's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `CLOCK_REALTIME`, read once per batch.
    System,
    /// The device's RX timestamps times `scale` (ns per device unit); batches are the packets
    /// within `window_ns` of the batch's first.
    Device { scale: u64, window_ns: u64 },
}

/// How the DPDK node runs.
#[derive(Debug, Clone)]
pub struct DpdkEngineConfig {
    /// EAL arguments, e.g. `["-l", "0-1", "--no-huge", "-m", "512", "--vdev", "net_pcap0,..."]`.
    pub eal_args: Vec<String>,
    /// RX/TX queue pairs per port: one worker each.
    pub queues: u16,
    /// Packets taken from each port per poll.
    pub batch_size: usize,
    /// Cores to pin workers to, cycled; empty: every core but the first (all on one core).
    pub cores: Vec<usize>,
    /// Mbufs in each queue's pool.
    pub mbufs_per_queue: u32,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub clock: Clock,
    /// 0: spin while idle. Otherwise sleep this long after 64 empty polls in a row.
    pub idle_sleep_us: u64,
    /// One postcard ring per worker (queue order), for an exporter.
    pub postcards: Vec<Arc<PostcardRing>>,
}

impl Default for DpdkEngineConfig {
    fn default() -> Self {
        DpdkEngineConfig {
            eal_args: Vec::new(),
            queues: 1,
            batch_size: 32,
            cores: Vec::new(),
            mbufs_per_queue: 8191,
            rx_desc: 1024,
            tx_desc: 1024,
            clock: Clock::System,
            idle_sleep_us: 0,
            postcards: Vec::new(),
        }
    }
}

/// When to stop, besides `stop` being set.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopWhen {
    /// After this long.
    pub duration: Option<Duration>,
    /// Once traffic has been seen and none arrived for this long (a finite pcap ran out).
    pub idle: Option<Duration>,
}

/// One worker's final numbers.
#[derive(Debug, Clone)]
pub struct DpdkWorkerStats {
    pub queue: u16,
    pub core: Option<usize>,
    pub lcore: Option<u32>,
    pub counters: Counters,
    pub io: QueueCounters,
    pub batches: u64,
    pub idle_polls: u64,
    pub traces: u64,
    pub no_port: u64,
    /// Mbufs the worker still held when it stopped (0 unless something leaked).
    pub held_at_exit: u32,
    pub latency: Histogram<u64>,
    /// The configuration epoch the worker last applied.
    pub epoch: u32,
    /// Per node port, the worker's egress queue (`[port.queue]`; zero without one).
    pub queues: Vec<QueueStats>,
}

impl DpdkWorkerStats {
    fn new(queue: u16) -> DpdkWorkerStats {
        DpdkWorkerStats {
            queue,
            core: None,
            lcore: None,
            counters: Counters::default(),
            io: QueueCounters::default(),
            batches: 0,
            idle_polls: 0,
            traces: 0,
            no_port: 0,
            held_at_exit: 0,
            latency: new_histogram(),
            epoch: 0,
            queues: Vec::new(),
        }
    }
}

/// The node's final numbers.
#[derive(Debug, Clone)]
pub struct DpdkRunStats {
    pub counters: Counters,
    pub io: QueueCounters,
    pub workers: Vec<DpdkWorkerStats>,
    /// Per node port with a device: (node port, device name, device counters).
    pub ports: Vec<(u16, String, PortStats)>,
    /// Mbufs out of each pool after the workers stopped and before the ports closed (RX rings
    /// hold theirs until then).
    pub pool_in_use_before_close: Vec<u32>,
    pub latency: Histogram<u64>,
    /// Per node port, its egress queues summed over the workers.
    pub queues: Vec<QueueStats>,
    /// From the first received packet to the last, over all workers.
    pub active: Duration,
    pub batches: u64,
    pub traces: u64,
}

/// Shared between the workers and the thread that watches them: no per-packet traffic.
struct Progress {
    /// System-clock ns of the first and the latest batch that received anything (the batch's
    /// own clock reading: no extra read).
    first_rx: AtomicU64,
    last_rx: AtomicU64,
}

impl Progress {
    fn mark(&self, now: u64) {
        let t = now.max(1);
        let _ = self
            .first_rx
            .compare_exchange(0, t, Ordering::AcqRel, Ordering::Acquire);
        self.last_rx.store(t, Ordering::Release);
    }
}

/// One worker's mailbox: a request counter the worker checks once per poll, and the report it
/// leaves there (under a lock taken once per request, never per packet).
struct Slot {
    request: AtomicU64,
    served: AtomicU64,
    report: Mutex<DpdkWorkerStats>,
}

/// The running node's numbers, as [`DpdkMonitor::stats`] merges them.
#[derive(Debug, Clone)]
pub struct DpdkLiveStats {
    pub counters: Counters,
    pub io: QueueCounters,
    pub latency: LatencySummary,
    /// Workers polling (0 before the node is up and after it stopped).
    pub workers: usize,
    pub batches: u64,
    pub traces: u64,
    /// The configuration epoch each worker last applied, in queue order.
    pub epochs: Vec<u32>,
    /// Per node port, its egress queues summed over the workers.
    pub queues: Vec<QueueStats>,
}

/// The handle the control plane holds on a running DPDK node: [`run`] registers its workers
/// here, and [`DpdkMonitor::stats`] asks each for its numbers (answered between two polls) and
/// merges them, as [`crate::engine::Engine::stats`] does for AF_XDP workers.
#[derive(Default)]
pub struct DpdkMonitor {
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl std::fmt::Debug for DpdkMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkMonitor")
            .field("workers", &lock(&self.slots).len())
            .finish()
    }
}

impl DpdkMonitor {
    pub fn new() -> DpdkMonitor {
        DpdkMonitor::default()
    }

    /// Ask every worker for its numbers and merge them. A worker that does not answer within
    /// 1 s (or has stopped) contributes its last report.
    pub fn stats(&self) -> DpdkLiveStats {
        let slots: Vec<Arc<Slot>> = lock(&self.slots).clone();
        let reqs: Vec<u64> = slots
            .iter()
            .map(|s| s.request.fetch_add(1, Ordering::AcqRel) + 1)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(1);
        for (s, req) in slots.iter().zip(reqs) {
            while s.served.load(Ordering::Acquire) < req && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let mut out = DpdkLiveStats {
            counters: Counters::default(),
            io: QueueCounters::default(),
            latency: LatencySummary::default(),
            workers: slots.len(),
            batches: 0,
            traces: 0,
            epochs: Vec::new(),
            queues: Vec::new(),
        };
        let mut hist = new_histogram();
        for s in &slots {
            let r = lock(&s.report);
            out.counters.merge(&r.counters);
            add_io(&mut out.io, &r.io);
            let _ = hist.add(&r.latency);
            out.batches += r.batches;
            out.traces += r.traces;
            out.epochs.push(r.epoch);
            egress::merge_stats(&mut out.queues, &r.queues);
        }
        out.latency = LatencySummary::of(&hist);
        out
    }

    fn register(&self, queues: u16) -> Vec<Arc<Slot>> {
        let slots: Vec<Arc<Slot>> = (0..queues)
            .map(|q| {
                Arc::new(Slot {
                    request: AtomicU64::new(0),
                    served: AtomicU64::new(0),
                    report: Mutex::new(DpdkWorkerStats::new(q)),
                })
            })
            .collect();
        lock(&self.slots).clone_from(&slots);
        slots
    }

    fn clear(&self) {
        lock(&self.slots).clear();
    }
}

fn add_io(to: &mut QueueCounters, c: &QueueCounters) {
    to.rx += c.rx;
    to.tx += c.tx;
    to.tx_dropped += c.tx_dropped;
    to.rx_unusable += c.rx_unusable;
    to.relocated += c.relocated;
    to.alloc_failed += c.alloc_failed;
    to.unstamped += c.unstamped;
}

/// Run the node on DPDK ports until `stop` is set or `when` says so; `ready` is called once
/// every port is started and every worker is polling. Returns the final numbers after a clean
/// shutdown, or the first error (EAL arguments, a missing port, pool memory) with everything
/// started so far torn down. While it runs, `monitor` gives the workers' numbers on request.
pub fn run(
    cell: Arc<ConfigCell>,
    ports: &[DpdkPort],
    config: &DpdkEngineConfig,
    stop: &AtomicBool,
    when: StopWhen,
    monitor: &DpdkMonitor,
    ready: impl FnOnce(&[(u16, String)]),
) -> Result<DpdkRunStats, DpdkError> {
    let node_ports = cell.load().ports.len();
    if ports.is_empty() {
        return Err(DpdkError::Port("the node has no DPDK port".into()));
    }
    for p in ports {
        if p.port as usize >= node_ports.min(MAX_PORTS) {
            return Err(DpdkError::Port(format!(
                "node port index {} out of range",
                p.port
            )));
        }
        if ports.iter().filter(|q| q.device == p.device).count() > 1 {
            return Err(DpdkError::Port(format!(
                "DPDK port {} is given to two node ports",
                p.device
            )));
        }
    }
    if config.queues == 0 || config.batch_size == 0 {
        return Err(DpdkError::Port(
            "queues and batch_size must be at least 1".into(),
        ));
    }

    // Before the EAL starts: it narrows this thread's affinity to its main lcore.
    let cores = worker::cores(&config.cores);

    let eal = Eal::init(&config.eal_args)?;
    let pools = (0..config.queues)
        .map(|q| {
            Mempool::new(
                &eal,
                &format!("mtnode_q{q}"),
                config.mbufs_per_queue,
                256.min(config.mbufs_per_queue / 8),
                -1,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pool_refs: Vec<&Mempool<'_>> = pools.iter().collect();
    let setup = PortSetup {
        queues: config.queues,
        rx_desc: config.rx_desc,
        tx_desc: config.tx_desc,
        rx_timestamp: matches!(config.clock, Clock::Device { .. }),
    };
    let eth = ports
        .iter()
        .map(|p| EthPort::open(&eal, &p.device, &setup, &pool_refs).map(|e| (p.port, e)))
        .collect::<Result<Vec<_>, _>>()?;
    // Node port index -> its device, for every worker.
    let mut by_node: Vec<Option<&EthPort<'_>>> = vec![None; node_ports];
    for (i, e) in &eth {
        by_node[*i as usize] = Some(e);
    }

    let progress = Progress {
        first_rx: AtomicU64::new(0),
        last_rx: AtomicU64::new(0),
    };
    let quit = AtomicBool::new(false);
    let slots = monitor.register(config.queues);
    let workers = std::thread::scope(|s| -> Result<Vec<DpdkWorkerStats>, DpdkError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), DpdkError>>();
        let mut handles = Vec::new();
        for q in 0..config.queues {
            let ctx = Worker {
                queue: q,
                core: cores.get(q as usize % cores.len().max(1)).copied(),
                eal: &eal,
                ports: by_node.clone(),
                pool: &pools[q as usize],
                cell: Arc::clone(&cell),
                config,
                quit: &quit,
                progress: &progress,
                postcards: config.postcards.get(q as usize).cloned(),
                ready: ready_tx.clone(),
                slot: Arc::clone(&slots[q as usize]),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("mtnode-dpdk-q{q}"))
                    .spawn_scoped(s, move || ctx.run())
                    .map_err(|e| DpdkError::Port(format!("spawning a worker: {e}")))?,
            );
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..handles.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        if failure.is_none() {
            let names: Vec<(u16, String)> = eth
                .iter()
                .map(|(i, e)| (*i, e.name().to_string()))
                .collect();
            ready(&names);
            let t0 = Instant::now();
            loop {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if when.duration.is_some_and(|d| t0.elapsed() >= d) {
                    break;
                }
                if let Some(idle) = when.idle {
                    let last = progress.last_rx.load(Ordering::Acquire);
                    if last > 0 {
                        let since = now_ns().saturating_sub(last);
                        if since >= idle.as_nanos() as u64 {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        quit.store(true, Ordering::Release);
        let mut stats = Vec::new();
        for h in handles {
            match h.join() {
                Ok(w) => stats.push(w),
                Err(_) => {
                    failure.get_or_insert(DpdkError::Port("a worker panicked".into()));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    });
    monitor.clear();
    let workers = workers?;

    let pool_in_use_before_close = pools.iter().map(|p| p.in_use()).collect();
    let port_stats = eth
        .iter()
        .map(|(i, e)| (*i, e.name().to_string(), e.stats()))
        .collect();
    // Ports close before the pools their rings hold mbufs of; the EAL goes last.
    drop(by_node);
    drop(eth);
    drop(pool_refs);
    drop(pools);
    drop(eal);

    let mut counters = Counters::default();
    let mut io = QueueCounters::default();
    let mut latency = new_histogram();
    let mut queues = Vec::new();
    let (mut batches, mut traces) = (0, 0);
    for w in &workers {
        counters.merge(&w.counters);
        egress::merge_stats(&mut queues, &w.queues);
        add_io(&mut io, &w.io);
        let _ = latency.add(&w.latency);
        batches += w.batches;
        traces += w.traces;
    }
    let first = progress.first_rx.load(Ordering::Acquire);
    let last = progress.last_rx.load(Ordering::Acquire);
    Ok(DpdkRunStats {
        counters,
        io,
        workers,
        ports: port_stats,
        pool_in_use_before_close,
        latency,
        queues,
        active: Duration::from_nanos(last.saturating_sub(first)),
        batches,
        traces,
    })
}

/// What a worker thread starts with.
struct Worker<'s, 'p> {
    queue: u16,
    core: Option<usize>,
    eal: &'s Eal,
    ports: Vec<Option<&'s EthPort<'p>>>,
    pool: &'p Mempool<'p>,
    cell: Arc<ConfigCell>,
    config: &'s DpdkEngineConfig,
    quit: &'s AtomicBool,
    progress: &'s Progress,
    postcards: Option<Arc<PostcardRing>>,
    ready: std::sync::mpsc::Sender<Result<(), DpdkError>>,
    slot: Arc<Slot>,
}

impl<'p> Worker<'_, 'p> {
    fn run(self) -> DpdkWorkerStats {
        let pinned = self
            .core
            .is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
        // After pinning: DPDK takes the thread's affinity as the lcore's.
        let registration = self.eal.register_thread();
        let mut stats = DpdkWorkerStats {
            core: if pinned { self.core } else { None },
            lcore: registration.as_ref().map(|r| r.lcore_id()),
            ..DpdkWorkerStats::new(self.queue)
        };
        let batch_size = self.config.batch_size;
        let mut io = match QueueIo::new(
            self.queue,
            &self.ports,
            self.pool,
            batch_size,
            matches!(self.config.clock, Clock::Device { .. }),
        ) {
            Ok(io) => io,
            Err(e) => {
                let _ = self.ready.send(Err(e));
                return stats;
            }
        };
        let mut reader = self.cell.reader();
        let mut pipeline = Pipeline::new(self.cell.load());
        pipeline.postcards = self.postcards.clone();
        let nports = self.ports.iter().flatten().count().max(1);
        // Every received packet may fan out to every port of the node.
        let cap = batch_size * nports * (1 + MAX_PORTS.min(self.ports.len() + 1));
        let mut batch: Vec<Packet<Mbuf<'p>>> = Vec::with_capacity(cap);
        let mut pending: Vec<Packet<Mbuf<'p>>> = Vec::with_capacity(cap);
        let mut idle_run = 0u32;
        let mut prev = (0u64, 0u64);
        let sleep = Duration::from_micros(self.config.idle_sleep_us);
        let mut served = 0u64;
        let mut queues = Egress::default();
        queues.reconfigure(pipeline.config(), now_ns(), &mut io);
        let mut lane = Lane {
            pipeline,
            io,
            queues,
            sink: CountingSink::default(),
        };
        let _ = self.ready.send(Ok(()));

        while !self.quit.load(Ordering::Acquire) {
            let req = self.slot.request.load(Ordering::Acquire);
            if req != served {
                stats.epoch = reader.epoch();
                stats.queues = lane.queues.stats();
                self.publish(&mut stats, &lane);
                served = req;
                self.slot.served.store(req, Ordering::Release);
            }
            if let Some(cfg) = reader.poll() {
                lane.queues.reconfigure(&cfg, now_ns(), &mut lane.io);
                lane.pipeline.set_config(cfg);
                reader.applied();
            }
            match self.config.clock {
                Clock::System => {
                    // Receive first, then read the clock: no frame is stamped before it
                    // arrived, so stamps along a path are in causal order (as on AF_XDP).
                    let n = lane.io.rx(batch_size, RxClock::Batch(0), &mut batch);
                    let now = now_ns();
                    if prev.1 > 0 {
                        stats
                            .latency
                            .saturating_record_n(now.saturating_sub(prev.0).max(1), prev.1);
                        prev.1 = 0;
                    }
                    if n == 0 {
                        // Nothing new: send what the shapers let go now ([`Lane::process`]
                        // does the same after a batch's own frames).
                        let node_id = lane.pipeline.config().node_id;
                        let queued =
                            lane.queues
                                .drain(node_id, now, &mut lane.io, &mut stats.latency);
                        lane.io.flush();
                        stats.idle_polls += 1;
                        idle_run = idle_run.saturating_add(1);
                        if !sleep.is_zero() && idle_run > IDLE_POLLS_BEFORE_SLEEP && queued == 0 {
                            std::thread::sleep(sleep);
                        } else {
                            std::hint::spin_loop();
                        }
                        continue;
                    }
                    idle_run = 0;
                    for p in &mut batch {
                        p.rx_ns = now;
                    }
                    self.progress.mark(now);
                    let sent = lane.process(now, &mut batch, &mut stats.latency);
                    stats.batches += 1;
                    prev = (now, sent);
                }
                Clock::Device { scale, window_ns } => {
                    let polled = now_ns();
                    let clock = RxClock::Device {
                        scale,
                        fallback: polled,
                    };
                    let n = lane.io.rx(batch_size, clock, &mut pending);
                    if n == 0 && pending.is_empty() {
                        stats.idle_polls += 1;
                        std::hint::spin_loop();
                        continue;
                    }
                    if n > 0 {
                        self.progress.mark(polled);
                    }
                    while let Some(first) = pending.first().map(|p| p.rx_ns) {
                        let mut k = 1;
                        while k < pending.len()
                            && k < batch_size
                            && pending[k].rx_ns.saturating_sub(first) <= window_ns
                        {
                            k += 1;
                        }
                        // The window may still grow with the next poll's packets.
                        if k == pending.len() && k < batch_size && n > 0 {
                            break;
                        }
                        batch.extend(pending.drain(..k));
                        let now = batch.last().map_or(first, |p| p.rx_ns);
                        lane.process(now, &mut batch, &mut stats.latency);
                        stats.batches += 1;
                    }
                }
            }
        }
        // Whatever a device-clock worker still held back leaves as a last batch.
        if let Some(now) = pending.last().map(|p| p.rx_ns) {
            batch.append(&mut pending);
            lane.process(now, &mut batch, &mut stats.latency);
            stats.batches += 1;
        }
        match self.config.clock {
            // A finite input ended: what its queues hold leaves, unshaped.
            Clock::Device { .. } => lane.queues.flush_all(&mut lane.io),
            // A live node stops: what is still queued is dropped, as on AF_XDP.
            Clock::System => lane.queues.discard(&mut lane.io),
        }
        stats.queues = lane.queues.stats();
        lane.io.flush();
        stats.counters = lane.pipeline.counters().clone();
        stats.io = lane.io.counters;
        stats.no_port = lane.io.no_port;
        stats.traces = lane.sink.traces;
        stats.held_at_exit = lane.io.held();
        stats.epoch = reader.epoch();
        drop(lane);
        drop(registration);
        lock(&self.slot.report).clone_from(&stats);
        self.slot.served.store(u64::MAX, Ordering::Release);
        stats
    }

    /// Leave this worker's numbers so far in its slot (once per request).
    fn publish(&self, stats: &mut DpdkWorkerStats, lane: &Lane<'p>) {
        stats.counters.clone_from(lane.pipeline.counters());
        stats.io = lane.io.counters;
        stats.no_port = lane.io.no_port;
        stats.traces = lane.sink.traces;
        let mut r = lock(&self.slot.report);
        r.clone_from(stats);
    }
}

/// A worker's packet path: its pipeline, its queue's ports, the egress queues in front of them
/// and what the pipeline's traces count.
struct Lane<'p> {
    pipeline: Pipeline,
    io: QueueIo<'p>,
    queues: Egress<Mbuf<'p>>,
    sink: CountingSink,
}

impl<'p> Lane<'p> {
    /// One batch through the pipeline and out (through the egress queues of the ports that
    /// have one); returns how many frames were sent straight away. `hist` gets the sojourns of
    /// queued frames sent now.
    fn process(
        &mut self,
        now: u64,
        batch: &mut Vec<Packet<Mbuf<'p>>>,
        hist: &mut Histogram<u64>,
    ) -> u64 {
        let Lane {
            pipeline,
            io,
            queues,
            sink,
        } = self;
        pipeline.buffer_occupancy = io.held();
        pipeline.process_replicating(now, batch, &mut || io.alloc(), sink);
        let mut sent = 0;
        for p in batch.drain(..) {
            match p.verdict {
                Verdict::Forward(port) => {
                    if queues.forward(port, p.frame, now, io) {
                        sent += 1;
                    }
                }
                _ => io.free(p.frame.into_buf()),
            }
        }
        queues.drain(pipeline.config().node_id, now, io, hist);
        io.flush();
        sent
    }
}

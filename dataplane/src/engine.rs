//! The live node's workers: one thread per queue, owning one socket per port on that queue over
//! one shared UMEM ([`XskSet`]), pinned to a core, busy-polling in batches.
//!
//! Per batch a worker receives from each socket, then reads the clock once (after the poll, so
//! that no frame is stamped before it arrived), picks up a new configuration snapshot if one
//! was published ([`ConfigReader::poll`]), runs the pipeline (replicas from the same UMEM),
//! sends, reclaims completions and refills the fill rings. Counters are
//! the worker's own plain integers; they reach the [`Engine`] handle only when asked for
//! ([`Engine::stats`]), once per request, never per packet. Latency (from the clock
//! read after the RX poll to the next one, after the TX submission) is a per-worker
//! hdrhistogram recorded once per batch, merged on request.
//!
//! A port with a managed egress queue (`[port.queue]`) gets one per worker ([`Egress`]):
//! forwarded frames are enqueued, and every loop sends what the shaper lets go with IOAM's
//! egress fields written. A worker with frames queued does not sleep.
//!
//! It never allocates, locks or makes a syscall per packet: syscalls are per batch (TX kick,
//! fill-ring wakeup), the stats lock is taken per request.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::aqm::QueueStats;
use crate::egress::{self, Egress};
use crate::export::PostcardRing;
use crate::io::afxdp::{
    BindMode, UmemAccounting, UmemBuf, XskConfig, XskPortSpec, XskPortStats, XskSet,
};
use crate::pipeline::{Counters, CountingSink, Packet, Pipeline, Verdict, MAX_PORTS};
use crate::snapshot::ConfigCell;
use crate::worker::{self, lock, new_histogram, now_ns, LatencySummary, IDLE_POLLS_BEFORE_SLEEP};

/// A port of the node on a live interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePort {
    /// Index of the port in the node's configuration.
    pub port: u16,
    pub interface: String,
    /// The queues to bind; every port of a node lists the same ones, and each queue gets a
    /// worker that owns every port's socket on it.
    pub queue_ids: Vec<u32>,
}

/// How the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Packets taken from each socket per batch.
    pub batch_size: usize,
    /// Cores to pin the workers to, in worker order (cycled); empty: every core but the first
    /// (all of them on a single-core machine).
    pub cores: Vec<usize>,
    pub xsk: XskConfig,
    /// 0: spin while idle (pure busy-polling). Otherwise, after 64 empty polls in a row, sleep
    /// this long between polls until traffic returns (for machines that share their cores).
    pub idle_sleep_us: u64,
    /// Give each worker a postcard ring of this many records (for the exporter).
    pub postcard_ring: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 64,
            cores: Vec::new(),
            xsk: XskConfig::default(),
            idle_sleep_us: 0,
            postcard_ring: None,
        }
    }
}

/// Why the engine could not start or stopped badly.
#[derive(Debug)]
pub enum EngineError {
    Config(String),
    Worker { queue_id: u32, reason: String },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Config(s) => write!(f, "engine: {s}"),
            EngineError::Worker { queue_id, reason } => {
                write!(f, "worker for queue {queue_id}: {reason}")
            }
        }
    }
}

impl std::error::Error for EngineError {}

/// One worker's numbers, as of its last report.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub queue_id: u32,
    pub core: Option<usize>,
    pub mode: Option<BindMode>,
    pub counters: Counters,
    pub ports: Vec<XskPortStats>,
    /// Per port, its egress queue (default where the port has none).
    pub queues: Vec<QueueStats>,
    /// RX-poll-to-TX-submission latency of forwarded packets, ns.
    pub latency: Histogram<u64>,
    pub batches: u64,
    /// Batches that received nothing.
    pub idle_polls: u64,
    /// Decapsulated traces (the live node counts them; postcards carry them out).
    pub traces: u64,
    pub relocated: u64,
    /// Frames forwarded to a port with no socket on this worker.
    pub no_socket: u64,
    pub umem: UmemAccounting,
    /// The config epoch the worker runs.
    pub epoch: u32,
    /// True once the worker has stopped: these are its final numbers.
    pub finished: bool,
}

impl WorkerStats {
    fn new(queue_id: u32) -> WorkerStats {
        WorkerStats {
            queue_id,
            core: None,
            mode: None,
            counters: Counters::default(),
            ports: Vec::new(),
            queues: Vec::new(),
            latency: new_histogram(),
            batches: 0,
            idle_polls: 0,
            traces: 0,
            relocated: 0,
            no_socket: 0,
            umem: UmemAccounting::default(),
            epoch: 0,
            finished: false,
        }
    }
}

/// Every worker's numbers merged.
#[derive(Debug, Clone)]
pub struct EngineStats {
    pub counters: Counters,
    /// Per port (summed over its queues), in port order.
    pub ports: Vec<XskPortStats>,
    /// Per port, its egress queues summed over the workers.
    pub queues: Vec<QueueStats>,
    pub latency: LatencySummary,
    pub umem: UmemAccounting,
    pub workers: Vec<WorkerStats>,
    pub batches: u64,
    pub traces: u64,
    pub relocated: u64,
    pub no_socket: u64,
    pub uptime: Duration,
}

struct Shared {
    request: AtomicU64,
    served: AtomicU64,
    slot: Mutex<WorkerStats>,
}

struct Worker {
    queue_id: u32,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The running workers: the handle the control plane holds.
pub struct Engine {
    cell: Arc<ConfigCell>,
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
    rings: Vec<Arc<PostcardRing>>,
    notes: Vec<String>,
    started: Instant,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.workers.len())
            .field("epoch", &self.cell.epoch())
            .finish()
    }
}

impl Engine {
    /// Bind every port's sockets, one worker per queue, and start forwarding under `cell`'s
    /// configuration. Returns once every worker is bound and running, or with the first
    /// worker's error (the others are stopped and their sockets closed).
    pub fn start(
        cell: Arc<ConfigCell>,
        ports: &[LivePort],
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let Some(first) = ports.first() else {
            return Err(EngineError::Config("no live ports".into()));
        };
        let queues = first.queue_ids.clone();
        if queues.is_empty() {
            return Err(EngineError::Config(format!(
                "port {} lists no queue",
                first.interface
            )));
        }
        for p in ports {
            if p.queue_ids != queues {
                return Err(EngineError::Config(format!(
                    "every port must list the same queues ({} has {:?}, {} has {:?})",
                    first.interface, queues, p.interface, p.queue_ids
                )));
            }
            if p.port as usize >= MAX_PORTS {
                return Err(EngineError::Config(format!("port index {}", p.port)));
            }
        }
        if config.batch_size == 0 {
            return Err(EngineError::Config("batch_size must be at least 1".into()));
        }
        let cores = worker::cores(&config.cores);

        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut rings = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel::<(u32, Result<Vec<String>, String>)>();
        for (w, &queue_id) in queues.iter().enumerate() {
            let specs: Vec<XskPortSpec> = ports
                .iter()
                .map(|p| XskPortSpec {
                    port: p.port,
                    interface: p.interface.clone(),
                    queue_id,
                })
                .collect();
            let core = cores.get(w % cores.len().max(1)).copied();
            let ring = config.postcard_ring.map(|n| Arc::new(PostcardRing::new(n)));
            if let Some(r) = &ring {
                rings.push(Arc::clone(r));
            }
            let shared = Arc::new(Shared {
                request: AtomicU64::new(0),
                served: AtomicU64::new(0),
                slot: Mutex::new(WorkerStats::new(queue_id)),
            });
            let ctx = WorkerCtx {
                queue_id,
                core,
                specs,
                config: config.clone(),
                cell: Arc::clone(&cell),
                stop: Arc::clone(&stop),
                shared: Arc::clone(&shared),
                postcards: ring,
                ready: ready_tx.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("mtnode-q{queue_id}"))
                .spawn(move || ctx.run())
                .map_err(|e| EngineError::Config(format!("spawning a worker: {e}")))?;
            workers.push(Worker {
                queue_id,
                shared,
                thread: Some(thread),
            });
        }
        drop(ready_tx);

        let mut engine = Engine {
            cell,
            stop,
            workers,
            rings,
            notes: Vec::new(),
            started: Instant::now(),
        };
        let deadline = Instant::now() + config.xsk.bind_timeout * 2 + Duration::from_secs(5);
        let mut waiting = engine.workers.len();
        let mut failure = None;
        while waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok((q, Ok(notes))) => {
                    waiting -= 1;
                    engine
                        .notes
                        .extend(notes.into_iter().map(|n| format!("queue {q}: {n}")));
                }
                Ok((queue_id, Err(reason))) => {
                    waiting -= 1;
                    failure.get_or_insert(EngineError::Worker { queue_id, reason });
                }
                Err(_) => {
                    failure.get_or_insert(EngineError::Config(
                        "workers did not report ready in time".into(),
                    ));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let _ = engine.shutdown();
            return Err(e);
        }
        engine.started = Instant::now();
        Ok(engine)
    }

    /// The configuration cell the workers read: publish to it to change the running config.
    pub fn config(&self) -> &Arc<ConfigCell> {
        &self.cell
    }

    /// One postcard ring per worker, when the engine was started with rings.
    pub fn postcard_rings(&self) -> &[Arc<PostcardRing>] {
        &self.rings
    }

    /// What the workers reported while binding (modes, fallbacks, retries, cores).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Ask every worker for its numbers (each answers between two batches) and merge them.
    /// A worker that does not answer within 1 s contributes its last report.
    pub fn stats(&self) -> EngineStats {
        let reqs: Vec<u64> = self
            .workers
            .iter()
            .map(|w| w.shared.request.fetch_add(1, Ordering::AcqRel) + 1)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(1);
        for (w, req) in self.workers.iter().zip(reqs) {
            while w.shared.served.load(Ordering::Acquire) < req && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.merge()
    }

    fn merge(&self) -> EngineStats {
        let mut counters = Counters::default();
        let mut ports: Vec<XskPortStats> = Vec::new();
        let mut queues: Vec<QueueStats> = Vec::new();
        let mut hist = new_histogram();
        let mut umem = UmemAccounting::default();
        let mut workers = Vec::new();
        let (mut batches, mut traces, mut relocated, mut no_socket) = (0, 0, 0, 0);
        for w in &self.workers {
            let s = lock(&w.shared.slot).clone();
            counters.merge(&s.counters);
            for p in &s.ports {
                match ports.iter_mut().find(|q| q.port == p.port) {
                    Some(q) => q.merge(p),
                    None => ports.push(XskPortStats {
                        queue_id: u32::MAX,
                        ..p.clone()
                    }),
                }
            }
            egress::merge_stats(&mut queues, &s.queues);
            let _ = hist.add(&s.latency);
            umem.merge(&s.umem);
            batches += s.batches;
            traces += s.traces;
            relocated += s.relocated;
            no_socket += s.no_socket;
            workers.push(s);
        }
        ports.sort_by_key(|p| p.port);
        let latency = LatencySummary::of(&hist);
        EngineStats {
            counters,
            ports,
            queues,
            latency,
            umem,
            workers,
            batches,
            traces,
            relocated,
            no_socket,
            uptime: self.started.elapsed(),
        }
    }

    /// Ask the workers to stop (they finish their batch, drain their TX rings and close their
    /// sockets), without waiting.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stop every worker and return the final numbers, with each worker's UMEM accounting
    /// taken after its last transmission completed.
    pub fn shutdown(mut self) -> Result<EngineStats, EngineError> {
        self.request_stop();
        let mut panicked = None;
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    panicked.get_or_insert(w.queue_id);
                }
            }
        }
        if let Some(queue_id) = panicked {
            return Err(EngineError::Worker {
                queue_id,
                reason: "the worker panicked".into(),
            });
        }
        Ok(self.merge())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// What a worker thread starts with.
struct WorkerCtx {
    queue_id: u32,
    core: Option<usize>,
    specs: Vec<XskPortSpec>,
    config: EngineConfig,
    cell: Arc<ConfigCell>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    postcards: Option<Arc<PostcardRing>>,
    ready: mpsc::Sender<(u32, Result<Vec<String>, String>)>,
}

impl WorkerCtx {
    fn run(self) {
        let mut notes = Vec::new();
        let pinned = match self.core {
            Some(id) => core_affinity::set_for_current(core_affinity::CoreId { id }),
            None => false,
        };
        notes.push(match (self.core, pinned) {
            (Some(c), true) => format!("pinned to core {c}"),
            (Some(c), false) => format!("could not pin to core {c}; running unpinned"),
            (None, _) => "no core to pin to; running unpinned".to_string(),
        });
        let mut set = match XskSet::open(&self.specs, &self.config.xsk) {
            Ok(s) => s,
            Err(e) => {
                let mut slot = lock(&self.shared.slot);
                slot.finished = true;
                drop(slot);
                self.shared.served.store(u64::MAX, Ordering::Release);
                let _ = self.ready.send((self.queue_id, Err(e.to_string())));
                return;
            }
        };
        notes.extend(set.notes().iter().cloned());
        let mut reader = self.cell.reader();
        let mut pipeline = Pipeline::new(self.cell.load());
        pipeline.postcards = self.postcards.clone();
        let mut sink = CountingSink::default();
        let batch_size = self.config.batch_size;
        // Every received packet may fan out to every port.
        let mut batch: Vec<Packet<_>> =
            Vec::with_capacity(batch_size * set.sockets() * (1 + MAX_PORTS.min(set.sockets() + 1)));
        let mut hist = new_histogram();
        let mut batches = 0u64;
        let mut idle_polls = 0u64;
        let mut idle_run = 0u32;
        let mut prev_now = 0u64;
        let mut prev_forwarded = 0u64;
        let sleep = Duration::from_micros(self.config.idle_sleep_us);
        let mut served = 0u64;
        let mut queues = Egress::default();
        queues.reconfigure(pipeline.config(), now_ns(), &mut set);
        {
            let mut slot = lock(&self.shared.slot);
            slot.core = if pinned { self.core } else { None };
            slot.mode = Some(set.mode());
            slot.epoch = reader.epoch();
        }
        let _ = self.ready.send((self.queue_id, Ok(notes)));

        let publish = |set: &XskSet,
                       queues: &Egress<UmemBuf>,
                       pipeline: &Pipeline,
                       hist: &Histogram<u64>,
                       batches: u64,
                       idle_polls: u64,
                       traces: u64,
                       epoch: u32,
                       umem: Option<UmemAccounting>| {
            let mut slot = lock(&self.shared.slot);
            slot.counters.clone_from(pipeline.counters());
            slot.ports = set.port_stats();
            slot.queues = queues.stats();
            slot.latency.reset();
            let _ = slot.latency.add(hist);
            slot.batches = batches;
            slot.idle_polls = idle_polls;
            slot.traces = traces;
            slot.relocated = set.relocated;
            slot.no_socket = set.no_socket;
            slot.umem = umem.unwrap_or_else(|| set.accounting(0));
            slot.epoch = epoch;
            slot.finished = umem.is_some();
        };

        loop {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let req = self.shared.request.load(Ordering::Acquire);
            if req != served {
                publish(
                    &set,
                    &queues,
                    &pipeline,
                    &hist,
                    batches,
                    idle_polls,
                    sink.traces,
                    reader.epoch(),
                    None,
                );
                served = req;
                self.shared.served.store(req, Ordering::Release);
            }
            // Receive first, then read the clock: a frame's stamp never predates its arrival,
            // so the stamps nodes write along a path are in causal order on a shared clock (a
            // worker preempted between reading the clock and polling would otherwise stamp
            // frames that arrived while it was away with a time before their upstream's).
            let n = set.rx(batch_size, 0, &mut batch);
            let now = now_ns();
            if prev_forwarded > 0 {
                hist.saturating_record_n(now.saturating_sub(prev_now).max(1), prev_forwarded);
                prev_forwarded = 0;
            }
            if let Some(cfg) = reader.poll() {
                queues.reconfigure(&cfg, now, &mut set);
                pipeline.set_config(cfg);
                reader.applied();
            }

            let node_id = pipeline.config().node_id;
            if n == 0 {
                // Nothing new: send what the shapers let go now, reclaim and refill. A batch
                // does the same after its own frames (below), once.
                let queued = queues.drain(node_id, now, &mut set, &mut hist);
                set.flush();
                idle_polls += 1;
                idle_run = idle_run.saturating_add(1);
                if !sleep.is_zero() && idle_run > IDLE_POLLS_BEFORE_SLEEP && queued == 0 {
                    std::thread::sleep(sleep);
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            for p in &mut batch {
                p.rx_ns = now;
            }
            idle_run = 0;
            batches += 1;
            pipeline.buffer_occupancy = set.in_use() as u32;
            pipeline.process_replicating(now, &mut batch, &mut || set.alloc(), &mut sink);
            let mut forwarded = 0u64;
            for p in batch.drain(..) {
                match p.verdict {
                    Verdict::Forward(port) => {
                        if queues.forward(port, p.frame, now, &mut set) {
                            forwarded += 1;
                        }
                    }
                    _ => set.free(p.frame.into_buf()),
                }
            }
            queues.drain(node_id, now, &mut set, &mut hist);
            set.flush();
            prev_now = now;
            prev_forwarded = forwarded;
        }

        queues.discard(&mut set);
        let umem = set.close(Duration::from_secs(1));
        publish(
            &set,
            &queues,
            &pipeline,
            &hist,
            batches,
            idle_polls,
            sink.traces,
            reader.epoch(),
            Some(umem),
        );
        // The sockets close here; then the final numbers are visible.
        drop(set);
        self.shared.served.store(u64::MAX, Ordering::Release);
    }
}

//! The steady state allocates nothing: after a warm-up, encapsulating, transit, decapsulating
//! and passthrough nodes process 10 000 packets of each input, in batches of 32, and a counting
//! global allocator sees no allocation, reallocation or deallocation on this thread. Once with
//! frames the batch owns, once with buffers from a `BufPool` as `mtnode replay` uses them.
//!
//! Counting is per thread so that the test harness's own threads cannot disturb it. On the first
//! counted allocation the allocator records a backtrace, which the failure message prints: that
//! names the line that allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::Arc;

use mtnode_dataplane::frame::{Frame, HEADROOM};
use mtnode_dataplane::io::{Buf, BufPool};
use mtnode_dataplane::ioam::{EncapPlan, NodeData, Role, TimestampFormat};
use mtnode_dataplane::mcast::{Oif, PimTable, SgRoute};
use mtnode_dataplane::pipeline::{
    CountingSink, Forwarding, MalformedPolicy, Namespace, NodeConfig, Packet, Pipeline, Port,
    Prefix, Selector, TraceMode, Verdict,
};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCS: Cell<u64> = const { Cell::new(0) };
    static FIRST: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    if !COUNTING.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = counter.try_with(|c| c.set(c.get() + 1));
    // Capturing allocates: stop counting while the first offender is written down.
    COUNTING.with(|c| c.set(false));
    let _ = FIRST.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            if f.is_none() {
                *f = Some(Backtrace::force_capture().to_string());
            }
        }
    });
    COUNTING.with(|c| c.set(true));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the bookkeeping touches only const-initialised thread-locals, which
// neither allocate nor unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&DEALLOCS);
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCS);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 32;
const PACKETS: usize = 10_000;
const NOW_NS: u64 = 1_700_000_000_000_010_000;

fn fixture(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcap-fixtures")
        .join(name);
    let file = std::fs::File::open(&path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

fn config(role: Option<Role>, id: u32) -> Arc<NodeConfig> {
    let node = NodeData {
        node_id: id,
        node_id_wide: id as u64,
        namespace_data: 0,
        namespace_data_wide: 0,
        timestamp_format: TimestampFormat::Ptp,
        snapshot: None,
    };
    let mut ff00 = [0u8; 16];
    ff00[0] = 0xff;
    let namespaces = role
        .map(|role| Namespace {
            id: 1,
            role,
            mode: TraceMode::Trace,
            node,
            plan: Some(EncapPlan::new(1, 0xF8_0000, 8, &node)),
            dex: None,
            select: vec![Selector {
                dst: Some(Prefix { addr: ff00, len: 8 }),
                ..Default::default()
            }],
        })
        .into_iter()
        .collect();
    let port = |i: u16| Port {
        name: format!("p{i}"),
        if_id: i,
        if_id_wide: i as u32,
        capacity_bps: 10_000_000_000,
        queue: None,
    };
    Arc::new(NodeConfig {
        name: format!("node{id}"),
        node_id: id,
        forwarding: Forwarding::Bump,
        malformed: MalformedPolicy::Forward,
        timestamp_format: TimestampFormat::Ptp,
        ports: vec![port(0), port(1)],
        routes6: Vec::new(),
        routes4: Vec::new(),
        namespaces,
        pim: PimTable::default(),
        bifts: Vec::new(),
        epoch: 0,
    })
}

/// Load the next `BATCH` frames of `input` (cycling) into the batch, as a backend's receive
/// would, then run each node in turn over it.
fn round(
    nodes: &mut [Pipeline],
    batch: &mut Vec<Packet<Vec<u8>>>,
    input: &[Vec<u8>],
    next: &mut usize,
    sink: &mut CountingSink,
) {
    for p in batch.iter_mut() {
        p.frame.set_bytes(&input[*next % input.len()]).unwrap();
        *next += 1;
        p.rx_port = 0;
        p.rx_ns = NOW_NS - 1_500;
        p.verdict = Verdict::Pending;
    }
    for node in nodes.iter_mut() {
        node.process(NOW_NS, batch, sink);
        next_hop(batch);
    }
}

/// What one node forwarded enters the next on port 0, pending again; drops stay dropped.
fn next_hop<B>(batch: &mut [Packet<B>]) {
    for p in batch.iter_mut() {
        if let Verdict::Forward(_) = p.verdict {
            p.verdict = Verdict::Pending;
            p.rx_port = 0;
        }
    }
}

/// Run `f` with this thread's allocations counted; panics naming the first one if there was any.
fn assert_no_alloc(what: &str, f: impl FnOnce()) {
    ALLOCS.with(|c| c.set(0));
    DEALLOCS.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(Cell::get);
    let deallocs = DEALLOCS.with(Cell::get);
    let first = FIRST.with(|f| f.borrow_mut().take());
    assert_eq!(
        (allocs, deallocs),
        (0, 0),
        "{what}: allocations, deallocations in the steady state; the first one:\n{}",
        first.unwrap_or_default()
    );
}

fn nodes() -> [Pipeline; 4] {
    [
        Pipeline::new(config(Some(Role::Encap), 1)),
        Pipeline::new(config(Some(Role::Transit), 2)),
        Pipeline::new(config(Some(Role::Decap), 3)),
        Pipeline::new(config(None, 4)),
    ]
}

/// The sweep (66, 512, 1500 octets), then every fixture kind, then one broken packet per
/// malformed reason: the malformed path must not allocate either.
fn inputs() -> [Vec<Vec<u8>>; 3] {
    [
        fixture("ipv6-mcast-ssm.pcap"),
        fixture("mixed.pcap"),
        fixture("malformed.pcap"),
    ]
}

#[test]
fn steady_state_allocates_nothing() {
    let mut nodes = nodes();
    let mut batch: Vec<Packet<Vec<u8>>> = (0..BATCH)
        .map(|_| Packet {
            frame: Frame::from_bytes(vec![0u8; HEADROOM + 2048], &[]).unwrap(),
            rx_port: 0,
            rx_ns: 0,
            verdict: Verdict::Pending,
        })
        .collect();
    let mut sink = CountingSink::default();
    let inputs = inputs();

    let mut next = 0;
    for input in &inputs {
        round(&mut nodes, &mut batch, input, &mut next, &mut sink);
    }
    let before = nodes[0].counters().packets_in;

    assert_no_alloc("frames owned by the batch", || {
        for input in &inputs {
            let mut next = 0;
            for _ in 0..PACKETS.div_ceil(BATCH) {
                round(&mut nodes, &mut batch, input, &mut next, &mut sink);
            }
        }
    });

    // The work really happened: every node saw every packet, and traces went round the chain.
    let per_input = (PACKETS.div_ceil(BATCH) * BATCH) as u64;
    for n in &nodes {
        assert_eq!(n.counters().packets_in - before, 3 * per_input);
    }
    assert!(nodes[0].counters().encap >= per_input);
    assert!(nodes[1].counters().transit >= per_input);
    assert!(nodes[2].counters().decap >= per_input);
    assert!(nodes[0].counters().malformed.iter().sum::<u64>() > 0);
    assert!(sink.traces >= per_input);
}

/// A routing transit node that is a PIM-SSM branch point for the fixtures' (S,G): in on port
/// 0, a copy out of ports 1 and 2, each with its own IOAM entry.
fn branch_node() -> Pipeline {
    let mut c = Arc::unwrap_or_clone(config(Some(Role::Transit), 5));
    c.forwarding = Forwarding::Route;
    c.ports.push(Port {
        name: "p2".into(),
        if_id: 2,
        if_id_wide: 2,
        capacity_bps: 10_000_000_000,
        queue: None,
    });
    let mut source = [0u8; 16];
    source[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    source[5] = 1;
    source[15] = 0x10;
    let mut group = [0u8; 16];
    group[..2].copy_from_slice(&[0xff, 0x3e]);
    group[12] = 0x80;
    group[15] = 1;
    c.pim = PimTable {
        routes: vec![SgRoute {
            source,
            group,
            iif: 0,
            oil: (1..=2)
                .map(|port| Oif {
                    port,
                    ttl_threshold: 1,
                })
                .collect(),
        }],
    };
    Pipeline::new(Arc::new(c))
}

/// As `mtnode replay` and the lab run it: buffers from a `BufPool`, a batch `Vec` filled and
/// drained every round, replicas in pool buffers appended to it, buffers returned after the
/// verdicts are read. A PIM branch point sits between encap and decap, so the batch doubles.
#[test]
fn pooled_buffers_allocate_nothing() {
    let [encap, transit, decap, passthrough] = nodes();
    let mut nodes = [encap, transit, branch_node(), decap, passthrough];
    const FANOUT: usize = 2;
    let mut pool = BufPool::new(2 * BATCH * FANOUT);
    let mut batch: Vec<Packet<Buf>> = Vec::with_capacity(BATCH * FANOUT);
    let mut sink = CountingSink::default();
    let inputs = inputs();
    let mut forwarded = 0u64;
    let mut run = |input: &[Vec<u8>], rounds: usize| {
        let mut next = 0;
        for _ in 0..rounds {
            for _ in 0..BATCH {
                let frame = pool.frame(&input[next % input.len()]).unwrap();
                next += 1;
                batch.push(Packet {
                    frame,
                    rx_port: 0,
                    rx_ns: NOW_NS - 1_500,
                    verdict: Verdict::Pending,
                });
            }
            for node in nodes.iter_mut() {
                node.buffer_occupancy = pool.in_use() as u32;
                node.process_replicating(NOW_NS, &mut batch, &mut || pool.take(), &mut sink);
                next_hop(&mut batch);
            }
            // What the last node forwarded is pending again after `next_hop`.
            for p in batch.drain(..) {
                forwarded += (p.verdict == Verdict::Pending) as u64;
                pool.put(p.frame);
            }
        }
    };
    for input in &inputs {
        run(input, 1);
    }
    assert_no_alloc("pooled buffers", || {
        for input in &inputs {
            run(input, PACKETS.div_ceil(BATCH));
        }
    });
    assert!(forwarded >= 3 * PACKETS as u64);
    assert_eq!(pool.in_use(), 0);
    // The branch point really replicated, and the decap node took traces off both copies.
    assert!(nodes[2].counters().replicas >= PACKETS as u64);
    assert!(sink.traces >= 2 * PACKETS as u64);
}

//! The cost of a PIM branch point per replica: one packet in, N copies out (N = 2, 8, 64), each
//! with its own IOAM entry, for 64- and 1500-octet frames; and per-hop DEX: a transit node's
//! export, and a branch node stamping branch IDs at fan-out 8. Buffers come from a free list,
//! as in the lab and replay, and go back to it after each round.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtnode_dataplane::branch::BranchEncoding;
use mtnode_dataplane::export::PostcardRing;
use mtnode_dataplane::frame::{Frame, HEADROOM};
use mtnode_dataplane::ioam::{EncapPlan, NodeData, Role, TimestampFormat};
use mtnode_dataplane::mcast::{Oif, PimTable, SgRoute};
use mtnode_dataplane::pipeline::{
    CountingSink, DexConfig, Forwarding, MalformedPolicy, Namespace, NodeConfig, Packet, Pipeline,
    Port, Selector, TraceMode, Verdict,
};

const S: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const G: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];

fn node(id: u32) -> NodeData {
    NodeData {
        node_id: id,
        node_id_wide: id as u64,
        namespace_data: 0,
        namespace_data_wide: 0,
        timestamp_format: TimestampFormat::Ptp,
        snapshot: None,
    }
}

fn config(id: u32, role: Role, fanout: usize) -> NodeConfig {
    config_mode(id, role, fanout, TraceMode::Trace)
}

fn config_mode(id: u32, role: Role, fanout: usize, mode: TraceMode) -> NodeConfig {
    let n = node(id);
    NodeConfig {
        name: format!("n{id}"),
        node_id: id,
        forwarding: Forwarding::Route,
        malformed: MalformedPolicy::Drop,
        timestamp_format: TimestampFormat::Ptp,
        ports: (0..=fanout as u16)
            .map(|k| Port {
                name: format!("p{k}"),
                if_id: k,
                if_id_wide: k as u32,
                queue: None,
                capacity_bps: 10_000_000_000,
            })
            .collect(),
        routes6: vec![],
        routes4: vec![],
        namespaces: vec![Namespace {
            id: 1,
            role,
            mode,
            node: n,
            plan: (role == Role::Encap).then(|| EncapPlan::new(1, 0xf8_0000, 8, &n)),
            dex: (mode == TraceMode::PerHop).then_some(DexConfig {
                flow_id: 1,
                trace_type: 0xf8_0000,
                encoding: BranchEncoding::Explicit,
                flag_bit: 2,
                sum_gap: 16,
                rate_divisor: 1,
            }),
            select: vec![Selector::default()],
        }],
        pim: PimTable {
            routes: vec![SgRoute {
                source: S,
                group: G,
                iif: 0,
                oil: (1..=fanout as u16)
                    .map(|port| Oif {
                        port,
                        ttl_threshold: 1,
                    })
                    .collect(),
            }],
        },
        bifts: vec![],
        epoch: 0,
    }
}

/// An SSM frame of `len` octets, already carrying node 1's trace (or its DEX option).
fn frame(len: usize) -> Vec<u8> {
    frame_mode(len, TraceMode::Trace)
}

fn frame_mode(len: usize, mode: TraceMode) -> Vec<u8> {
    let mut p = vec![0x33, 0x33, 0x80, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    let payload = (len - 54) as u16;
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&payload.to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&S);
    p.extend_from_slice(&G);
    p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89]);
    p.extend_from_slice(&payload.to_be_bytes());
    p.resize(len, 0xab);
    let mut encap = Pipeline::new(Arc::new(config_mode(1, Role::Encap, 1, mode)));
    let mut batch = vec![packet(&p)];
    encap.process(0, &mut batch, &mut CountingSink::default());
    batch.remove(0).frame.bytes().to_vec()
}

fn packet(bytes: &[u8]) -> Packet<Vec<u8>> {
    Packet {
        frame: Frame::from_bytes(vec![0u8; HEADROOM + 2048], bytes).unwrap(),
        rx_port: 0,
        rx_ns: 0,
        verdict: Verdict::Pending,
    }
}

fn replication(c: &mut Criterion) {
    let mut g = c.benchmark_group("pim_branch");
    for len in [64usize, 1500] {
        let input = frame(len);
        for fanout in [2usize, 8, 64] {
            let mut p = Pipeline::new(Arc::new(config(2, Role::Transit, fanout)));
            let mut free: Vec<Vec<u8>> = (0..=fanout).map(|_| vec![0u8; HEADROOM + 2048]).collect();
            let mut batch: Vec<Packet<Vec<u8>>> = Vec::with_capacity(fanout + 1);
            let mut sink = CountingSink::default();
            // Throughput in replicas: time per copy.
            g.throughput(Throughput::Elements(fanout as u64));
            g.bench_function(BenchmarkId::new(format!("{len}B"), fanout), |b| {
                b.iter(|| {
                    let buf = free.pop().expect("a free buffer");
                    batch.push(Packet {
                        frame: Frame::from_bytes(buf, &input).expect("fits"),
                        rx_port: 0,
                        rx_ns: 0,
                        verdict: Verdict::Pending,
                    });
                    p.process_replicating(0, &mut batch, &mut || free.pop(), &mut sink);
                    let n = batch.len();
                    for out in batch.drain(..) {
                        free.push(out.frame.into_buf());
                    }
                    black_box(n)
                })
            });
        }
    }
    g.finish();
}

/// DEX per hop: a transit node exports its postcard (into a ring drained each round), for one
/// copy, and a branch node with fan-out 8 also stamps each copy's branch ID.
fn dex(c: &mut Criterion) {
    let mut g = c.benchmark_group("dex");
    for (name, fanout) in [("transit_export", 1usize), ("branch_stamp_fanout8", 8)] {
        for len in [64usize, 1500] {
            let input = frame_mode(len, TraceMode::PerHop);
            let ring = Arc::new(PostcardRing::new(64));
            let mut p = Pipeline::new(Arc::new(config_mode(
                2,
                Role::Transit,
                fanout,
                TraceMode::PerHop,
            )));
            p.postcards = Some(Arc::clone(&ring));
            let mut free: Vec<Vec<u8>> = (0..=fanout).map(|_| vec![0u8; HEADROOM + 2048]).collect();
            let mut batch: Vec<Packet<Vec<u8>>> = Vec::with_capacity(fanout + 1);
            let mut sink = CountingSink::default();
            let mut now = 0u64;
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(name, format!("{len}B")), |b| {
                b.iter(|| {
                    now += 1_000_000; // keep the export cap's bucket full
                    let buf = free.pop().expect("a free buffer");
                    batch.push(Packet {
                        frame: Frame::from_bytes(buf, &input).expect("fits"),
                        rx_port: 0,
                        rx_ns: now,
                        verdict: Verdict::Pending,
                    });
                    p.process_replicating(now, &mut batch, &mut || free.pop(), &mut sink);
                    for out in batch.drain(..) {
                        free.push(out.frame.into_buf());
                    }
                    black_box(ring.pop())
                })
            });
            assert_eq!(p.counters().postcards_suppressed, 0);
        }
    }
    g.finish();
}

criterion_group!(benches, replication, dex);
criterion_main!(benches);

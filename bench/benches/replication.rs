//! The cost of a PIM branch point per replica: one packet in, N copies out (N = 2, 8, 64), each
//! with its own IOAM entry, for 64- and 1500-octet frames. Buffers come from a free list, as in
//! the lab and replay, and go back to it after each round.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtnode_dataplane::frame::{Frame, HEADROOM};
use mtnode_dataplane::ioam::{EncapPlan, NodeData, Role, TimestampFormat};
use mtnode_dataplane::mcast::{Oif, PimTable, SgRoute};
use mtnode_dataplane::pipeline::{
    CountingSink, Forwarding, MalformedPolicy, Namespace, NodeConfig, Packet, Pipeline, Port,
    Selector, TraceMode, Verdict,
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
            mode: TraceMode::Trace,
            node: n,
            plan: (role == Role::Encap).then(|| EncapPlan::new(1, 0xf8_0000, 8, &n)),
            dex: None,
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

/// An SSM frame of `len` octets, already carrying node 1's trace.
fn frame(len: usize) -> Vec<u8> {
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
    let mut encap = Pipeline::new(Arc::new(config(1, Role::Encap, 1)));
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

criterion_group!(benches, replication);
criterion_main!(benches);

//! IPFIX export and collection costs: postcards encoded into MTU-sized messages on one thread
//! (the exporter's work per postcard, sockets aside); the whole exporter thread, from a full ring
//! to datagrams sent to a loopback socket; and the collector's decode of those messages by a
//! template learned from the wire.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mtnode_control::collector::Collector;
use mtnode_control::exporter::{Exporter, ExporterConfig};
use mtnode_control::ipfix::{
    sample_postcard, ExporterStatsRecord, MessageBuilder, DEFAULT_ENTERPRISE_NUMBER,
};
use mtnode_dataplane::export::PostcardRing;

/// Postcards per iteration.
const BATCH: usize = 10_000;

/// IOAM data sizes: one hop-postcard entry (16 octets), a 4-hop section (64), a full trace (244).
const DATA_LENS: [usize; 3] = [16, 64, 244];

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipfix_encode");
    for len in DATA_LENS {
        let ps: Vec<_> = (0..BATCH as u32).map(|n| sample_postcard(n, len)).collect();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("postcards_data{len}"), |b| {
            let mut m = MessageBuilder::new(1400, 1);
            let mut seq = 0u32;
            b.iter(|| {
                for p in &ps {
                    if !m.push(p) {
                        let n = m.records();
                        black_box(m.finish(0, seq));
                        seq = seq.wrapping_add(n);
                        m.reset();
                        m.push(p);
                    }
                }
            })
        });
    }
    g.finish();
}

/// Postcards per exporter run.
const RUN: usize = 200_000;

fn exporter_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipfix_exporter_thread");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RUN as u64));
    // A sink that nobody reads: the kernel drops what overflows its buffer, which costs the
    // sender nothing more.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    for len in [16, 64] {
        let ps: Vec<_> = (0..RUN as u32).map(|n| sample_postcard(n, len)).collect();
        g.bench_function(format!("postcards_data{len}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ring = Arc::new(PostcardRing::new(RUN));
                    for p in &ps {
                        ring.push(*p);
                    }
                    let t0 = Instant::now();
                    let h = Exporter::spawn(
                        ExporterConfig {
                            collectors: vec![to],
                            ..ExporterConfig::default()
                        },
                        vec![ring],
                    )
                    .unwrap();
                    while h.stats().sent < RUN as u64 {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    total += t0.elapsed();
                    h.shutdown();
                }
                total
            })
        });
    }
    g.finish();
}

fn messages(len: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut m = MessageBuilder::new(1400, 1);
    m.push_templates(DEFAULT_ENTERPRISE_NUMBER, &ExporterStatsRecord::default());
    out.push(m.finish(0, 0).to_vec());
    m.reset();
    for n in 0..BATCH as u32 {
        let p = sample_postcard(n, len);
        if !m.push(&p) {
            out.push(m.finish(0, 0).to_vec());
            m.reset();
            m.push(&p);
        }
    }
    out.push(m.finish(0, 0).to_vec());
    out
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipfix_collect");
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for len in DATA_LENS {
        let msgs = messages(len);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("postcards_data{len}"), |b| {
            b.iter_batched(
                || {
                    let mut col = Collector::new(DEFAULT_ENTERPRISE_NUMBER);
                    col.ingest(from, &msgs[0]).unwrap();
                    col
                },
                |mut col| {
                    for m in &msgs[1..] {
                        col.ingest(from, m).unwrap();
                    }
                    col
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, encode, exporter_thread, decode);
criterion_main!(benches);

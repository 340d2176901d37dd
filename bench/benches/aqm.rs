//! AQM costs per packet: the PIE and RED decisions alone (enqueue + dequeue), the whole
//! egress queue with frames (ECN read, decision, mark, ring), and the token-bucket shaper.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mtnode_dataplane::aqm::{
    Aqm, EgressQueue, Pie, PieParams, QueueLimits, QueueState, Red, RedParams, Rng, TokenBucket,
};
use mtnode_dataplane::frame::{Frame, HEADROOM};

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("aqm_decision");
    g.throughput(Throughput::Elements(1));
    let q = QueueState {
        packets: 120,
        bytes: 180_000,
    };
    for (name, mut aqm) in [
        ("pie", Aqm::Pie(Pie::new(PieParams::default()))),
        ("red", Aqm::Red(Red::new(RedParams::default()))),
    ] {
        let mut rng = Rng::new(1);
        let mut now = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 120_000; // one 1500-octet packet time at 100 Mb/s
                let d = aqm.on_enqueue(now, q, true, rng.uniform());
                aqm.on_dequeue(now, 1500, 15_000_000, q);
                black_box(d)
            })
        });
    }
    g.finish();
}

fn ipv6_frame() -> Frame<Vec<u8>> {
    let mut f = vec![0u8; 1514];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[15] = 0x20; // ECT(0)
    f[18..20].copy_from_slice(&1460u16.to_be_bytes());
    f[20] = 17;
    f[21] = 64;
    Frame::from_bytes(vec![0u8; HEADROOM + 2048], &f).unwrap()
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("egress_queue");
    g.throughput(Throughput::Elements(1));
    for (name, aqm) in [
        ("none", Aqm::None),
        ("pie", Aqm::Pie(Pie::new(PieParams::default()))),
        ("red", Aqm::Red(Red::new(RedParams::default()))),
    ] {
        let limits = QueueLimits {
            packets: 1024,
            bytes: 1 << 21,
        };
        let mut q = EgressQueue::new(limits, aqm, None, 1);
        // A standing queue of 100 frames; each iteration adds one and takes one.
        for _ in 0..100 {
            q.enqueue(0, ipv6_frame()).unwrap();
        }
        let mut spare = Some(ipv6_frame());
        let mut now = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 120_000;
                if let Some(f) = spare.take() {
                    if let Err((f, _)) = q.enqueue(now, f) {
                        spare = Some(f);
                    }
                }
                if spare.is_none() {
                    spare = q.dequeue(now).map(|e| e.frame);
                }
                black_box(q.len())
            })
        });
    }
    g.finish();
}

fn shaper(c: &mut Criterion) {
    let mut g = c.benchmark_group("shaper");
    g.throughput(Throughput::Elements(1));
    let mut tb = TokenBucket::new(10_000_000_000, 1 << 20, 0);
    let mut now = 0u64;
    g.bench_function("try_consume", |b| {
        b.iter(|| {
            now += 1_200;
            black_box(tb.try_consume(now, black_box(1500)))
        })
    });
    g.finish();
}

criterion_group!(benches, decisions, queue, shaper);
criterion_main!(benches);

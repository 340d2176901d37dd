//! IOAM roles per packet: transit update, encapsulation, decapsulation, and the parse-and-forward
//! baseline, over the frame-size sweep. Each iteration is one `Pipeline::process` call over a
//! batch of 32 identical frames, preceded by the reset that puts them back to their input bytes;
//! `reset_only` times that reset alone so it can be subtracted. Divide the median by 32 for
//! ns/packet (`scripts/bench-ioam` does).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtnode_bench::{Role, RoleBench, BATCH, FRAME_LENS};

fn roles(c: &mut Criterion) {
    for role in Role::ALL {
        let mut g = c.benchmark_group(role.name());
        g.throughput(Throughput::Elements(BATCH as u64));
        for len in FRAME_LENS {
            let mut b = RoleBench::new(role, len);
            g.bench_function(BenchmarkId::new("batch32", len), |it| {
                it.iter(|| {
                    b.reset();
                    b.process();
                    black_box(&b.batch);
                })
            });
            if role != Role::Passthrough {
                let mut b = RoleBench::new(role, len);
                g.bench_function(BenchmarkId::new("reset_only", len), |it| {
                    it.iter(|| {
                        b.reset();
                        black_box(&b.batch);
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, roles);
criterion_main!(benches);

//! The replay path over `mixed.pcap` (45 frames, every fixture kind, cycled 32 times so every
//! batch is full) with the capture already in memory: copy into frame buffers, process, read
//! verdicts. Throughput is in packets; criterion prints it as elem/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mtnode_bench::{mixed_for, Replay, Role};

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_mixed");
    let cases: [(&str, &[Role]); 4] = [
        ("encap_node", &[Role::Encap]),
        ("transit_node", &[Role::Transit]),
        ("decap_node", &[Role::Decap]),
        (
            "chain_encap_transit_decap",
            &[Role::Encap, Role::Transit, Role::Decap],
        ),
    ];
    for (name, roles) in cases {
        let mut r = Replay::new(roles, mixed_for(roles[0], 32));
        g.throughput(Throughput::Elements(r.frames.len() as u64));
        g.bench_function(name, |it| it.iter(|| black_box(r.run())));
    }
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);

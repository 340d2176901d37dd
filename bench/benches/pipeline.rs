//! `mtnode replay`'s loop over `mixed.pcap` (45 frames of every fixture kind, cycled 32 times)
//! with the capture already in memory and no output files: pool buffers, batching, process,
//! verdicts. Throughput is in packets (criterion's elem/s).
//!
//! Two arrival patterns: `batch32` re-times the frames 100 ns apart so every batch is full, as on
//! a loaded port; `as_captured` keeps the fixture's 1 ms spacing, which `mtnode replay` turns
//! into batches of one packet. Sinks count traces, except `decap_node_json`, which also encodes
//! each one as `traces.jsonl` would (into nothing).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mtnode_bench::{mixed_for, node_config, JsonSink, Replay, Role};
use mtnode_dataplane::pipeline::{CountingSink, Sink};

const TIMES: usize = 32;

fn case<S: Sink>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    roles: &[Role],
    spacing_ns: u64,
    sink: S,
) {
    let configs = roles.iter().map(|&r| node_config(r)).collect();
    let mut r = Replay::new(configs, mixed_for(roles[0], TIMES, spacing_ns), sink);
    g.throughput(Throughput::Elements(r.frames.len() as u64));
    g.bench_function(name, |it| it.iter(|| black_box(r.run())));
}

fn replay(c: &mut Criterion) {
    let nodes: [(&str, &[Role]); 4] = [
        ("encap_node", &[Role::Encap]),
        ("transit_node", &[Role::Transit]),
        ("decap_node", &[Role::Decap]),
        (
            "chain_encap_transit_decap",
            &[Role::Encap, Role::Transit, Role::Decap],
        ),
    ];
    for (group, spacing_ns) in [
        ("replay_mixed_batch32", 100),
        ("replay_mixed_as_captured", 1_000_000),
    ] {
        let mut g = c.benchmark_group(group);
        for (name, roles) in nodes {
            case(&mut g, name, roles, spacing_ns, CountingSink::default());
        }
        if spacing_ns == 100 {
            case(
                &mut g,
                "decap_node_json",
                &[Role::Decap],
                spacing_ns,
                JsonSink::default(),
            );
        }
        g.finish();
    }
}

criterion_group!(benches, replay);
criterion_main!(benches);

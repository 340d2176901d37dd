//! Runs one IOAM role, or the replay loop, over a number of packets for callgrind, which counts
//! instructions exactly where wall time on a shared machine is noise:
//!
//! ```text
//! ioam_count <transit|encap|decap|passthrough> <66|512|1500> [packets]
//! ioam_count replay <encap|transit|decap|chain> [packets]
//! valgrind --tool=callgrind --toggle-collect='*measured_process*' ioam_count transit 512 10000
//! ```
//!
//! Toggle collection on `measured_process` (the `Pipeline::process` calls, or whole replay
//! passes over `mixed.pcap` in full batches) or `measured_reset` (putting the batch back); the
//! set-up and a warm-up pass run outside both. Divide by the `packets=` figure printed.

use std::hint::black_box;
use std::process::ExitCode;

use mtnode_bench::{mixed_for, node_config, Replay, Role, RoleBench, BATCH, FRAME_LENS};
use mtnode_dataplane::pipeline::CountingSink;

#[inline(never)]
fn measured_process(b: &mut RoleBench) {
    b.process();
}

#[inline(never)]
fn measured_reset(b: &mut RoleBench) {
    b.reset();
}

#[inline(never)]
fn measured_process_replay(r: &mut Replay<CountingSink>) -> usize {
    r.run()
}

const USAGE: &str =
    "usage: ioam_count <transit|encap|decap|passthrough> <66|512|1500> [packets]\n       \
                     ioam_count replay <encap|transit|decap|chain> [packets]";

fn role_run(role: Role, len: usize, packets: usize) {
    let mut b = RoleBench::new(role, len);
    b.reset();
    b.process();
    let batches = packets.div_ceil(BATCH);
    for _ in 0..batches {
        measured_reset(&mut b);
        measured_process(&mut b);
    }
    black_box(&b.batch);
    println!(
        "role={} frame={len} packets={}",
        role.name(),
        batches * BATCH
    );
}

fn replay_run(node: &str, packets: usize) -> Result<(), String> {
    let roles: &[Role] = match node {
        "encap" => &[Role::Encap],
        "transit" => &[Role::Transit],
        "decap" => &[Role::Decap],
        "chain" => &[Role::Encap, Role::Transit, Role::Decap],
        _ => return Err(format!("unknown replay node `{node}`")),
    };
    let configs = roles.iter().map(|&r| node_config(r)).collect();
    // 45 frames × 32, 100 ns apart: every batch full.
    let mut r = Replay::new(
        configs,
        mixed_for(roles[0], 32, 100),
        CountingSink::default(),
    );
    r.run();
    let per_pass = r.frames.len();
    let passes = packets.div_ceil(per_pass);
    for _ in 0..passes {
        measured_process_replay(&mut r);
    }
    println!("replay={node} packets={}", passes * per_pass);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let packets = match args.get(2).map_or(Ok(10_000), |s| s.parse::<usize>()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("packets: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (Some(what), Some(arg)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if what == "replay" {
        return match replay_run(arg, packets) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}\n{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    let role = Role::parse(what);
    let len = arg.parse::<usize>().ok().filter(|l| FRAME_LENS.contains(l));
    let (Some(role), Some(len)) = (role, len) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    role_run(role, len, packets);
    ExitCode::SUCCESS
}

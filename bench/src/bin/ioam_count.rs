//! Runs one IOAM role over `packets` frames for callgrind, which counts instructions exactly where
//! wall time on a shared machine is noise:
//!
//! ```text
//! ioam_count <transit|encap|decap|passthrough> <66|512|1500> [packets]
//! valgrind --tool=callgrind --toggle-collect='*measured_process*' ioam_count transit 512 10000
//! ```
//!
//! Only `measured_process` (the `Pipeline::process` calls) and `measured_reset` (putting the
//! batch back) are worth toggling on; the set-up and a warm-up batch run outside both.

use std::hint::black_box;
use std::process::ExitCode;

use mtnode_bench::{Role, RoleBench, BATCH, FRAME_LENS};

#[inline(never)]
fn measured_process(b: &mut RoleBench) {
    b.process();
}

#[inline(never)]
fn measured_reset(b: &mut RoleBench) {
    b.reset();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).and_then(|s| Role::parse(s));
    let len = args.get(2).and_then(|s| s.parse::<usize>().ok());
    let packets = args.get(3).map_or(Ok(10_000), |s| s.parse::<usize>());
    let (Some(role), Some(len), Ok(packets)) = (role, len, packets) else {
        eprintln!("usage: ioam_count <transit|encap|decap|passthrough> <66|512|1500> [packets]");
        return ExitCode::from(2);
    };
    if !FRAME_LENS.contains(&len) {
        eprintln!("frame length must be one of {FRAME_LENS:?}");
        return ExitCode::from(2);
    }
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
        "role={} frame={} packets={}",
        role.name(),
        len,
        batches * BATCH
    );
    ExitCode::SUCCESS
}

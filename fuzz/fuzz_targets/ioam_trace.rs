//! The input as a Hop-by-Hop header (`find_trace`) and as trace data: `IoamTrace::new_checked`,
//! `Hops` and `record` into a copy for nodes with and without a snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtnode_fuzz::ioam_trace(data));

//! mtnode's packet core: zero-copy wire views ([`wire`]), the IOAM roles ([`ioam`]), the
//! per-batch packet graph ([`pipeline`]) and the I/O backends that feed it ([`io`]).
//!
//! Nothing outside [`io`] opens a socket, reads a clock or allocates per packet: the caller passes
//! `now` and the batch. Unsafe code may only ever appear in `io` backends.

pub mod aqm;
pub mod branch;
#[cfg(feature = "dpdk")]
pub mod dpdk_engine;
pub mod egress;
pub mod engine;
pub mod export;
pub mod frame;
pub mod io;
pub mod ioam;
pub mod mcast;
pub mod pipeline;
pub mod snapshot;
pub mod wire;
pub mod worker;

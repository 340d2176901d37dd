//! I/O backends that feed the pipeline: [`pcap`] file replay and [`mem`] in-process links, over
//! buffers from a [`BufPool`], [`afxdp`], live ports whose buffers are frames of an AF_XDP
//! UMEM, and (with the `dpdk` feature) `dpdk`, live ports whose buffers are mbufs. These are the
//! only places buffers are created, and the only modules of the crate where unsafe code may
//! appear: `afxdp` and `dpdk` hold all of it, every other module forbids it.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;
pub mod pcap;

use crate::frame::{Frame, HEADROOM};

/// Room for the largest frame a backend accepts, after the headroom.
pub const MAX_FRAME: usize = 2048;

/// A buffer big enough for headroom plus the largest frame.
pub type Buf = Box<[u8]>;

/// A free list of equal-sized buffers, filled once at start so the steady state allocates
/// nothing.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<Buf>,
    total: usize,
}

impl BufPool {
    pub fn new(count: usize) -> Self {
        BufPool {
            free: (0..count)
                .map(|_| vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice())
                .collect(),
            total: count,
        }
    }

    /// A frame holding a copy of `bytes`, or `None` if the pool is empty or the frame too big.
    pub fn frame(&mut self, bytes: &[u8]) -> Option<Frame<Buf>> {
        if bytes.len() > MAX_FRAME {
            return None;
        }
        let buf = self.free.pop()?;
        Frame::from_bytes(buf, bytes)
    }

    /// An empty buffer, for a replica the pipeline fills.
    pub fn take(&mut self) -> Option<Buf> {
        self.free.pop()
    }

    /// Return a frame's buffer to the pool.
    pub fn put(&mut self, frame: Frame<Buf>) {
        self.free.push(frame.into_buf());
    }

    /// Buffers handed out and not yet returned: IOAM's buffer occupancy.
    pub fn in_use(&self) -> usize {
        self.total - self.free.len()
    }
}

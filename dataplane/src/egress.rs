//! A live worker's managed egress queues (`[port.queue]`: limits, token-bucket shaper, PIE or
//! RED with ECN), whichever backend sends: one [`EgressQueue`] per queued port, given new
//! parameters when a configuration arrives ([`Egress::reconfigure`]), filled by
//! [`Egress::forward`] (the AQM marks or drops at enqueue; a port without a queue sends
//! straight away) and emptied every loop by [`Egress::drain`], which writes each frame's IOAM
//! egress fields (queue depth, transit delay including the queueing, buffer occupancy) as the
//! lab does before the backend sends it.
//!
//! Both live engines own one per worker: the AF_XDP engine over its socket set, the DPDK engine
//! over its queue's ports. A backend is anything that can send a frame on a port ([`Tx`]).
#![forbid(unsafe_code)]

use hdrhistogram::Histogram;

use crate::aqm::{EgressQueue, QueueStats};
use crate::frame::Frame;
use crate::io::afxdp::{UmemBuf, XskSet};
#[cfg(feature = "dpdk")]
use crate::io::dpdk::{Mbuf, QueueIo};
use crate::ioam::{patch_egress, EgressFacts};
use crate::pipeline::NodeConfig;

/// The transmit side of a worker's backend.
pub trait Tx<B> {
    /// Stage `frame` for transmission on `port`. False when the backend dropped it instead
    /// (it frees the frame either way).
    fn send(&mut self, port: u16, frame: Frame<B>) -> bool;
    /// Give a buffer back.
    fn free(&mut self, buf: B);
    /// Buffers the worker holds now (IOAM's buffer occupancy).
    fn in_use(&self) -> u32;
}

impl Tx<UmemBuf> for XskSet {
    #[inline]
    fn send(&mut self, port: u16, frame: Frame<UmemBuf>) -> bool {
        XskSet::send(self, port, frame)
    }

    fn free(&mut self, buf: UmemBuf) {
        XskSet::free(self, buf);
    }

    fn in_use(&self) -> u32 {
        XskSet::in_use(self) as u32
    }
}

#[cfg(feature = "dpdk")]
impl<'p> Tx<Mbuf<'p>> for QueueIo<'p> {
    #[inline]
    fn send(&mut self, port: u16, frame: Frame<Mbuf<'p>>) -> bool {
        QueueIo::send(self, port, frame)
    }

    fn free(&mut self, buf: Mbuf<'p>) {
        QueueIo::free(self, buf);
    }

    fn in_use(&self) -> u32 {
        self.held()
    }
}

/// One worker's egress queues, by port index (`None`: the port sends straight away).
#[derive(Debug)]
pub struct Egress<B> {
    queues: Vec<Option<EgressQueue<B>>>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Default for Egress<B> {
    fn default() -> Self {
        Egress { queues: Vec::new() }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Egress<B> {
    /// Give the ports the queues `cfg` asks for: a running queue takes new parameters and keeps
    /// its frames; a queue the configuration no longer has sends what it holds straight away.
    pub fn reconfigure<T: Tx<B>>(&mut self, cfg: &NodeConfig, now: u64, tx: &mut T) {
        self.queues
            .resize_with(cfg.ports.len().max(self.queues.len()), || None);
        for (i, slot) in self.queues.iter_mut().enumerate() {
            match (
                cfg.ports.get(i).and_then(|p| p.queue.as_ref()),
                slot.as_mut(),
            ) {
                (Some(qc), Some(q)) => qc.apply_to(q, now),
                (Some(qc), None) => *slot = Some(qc.build(now, i as u64 + 1)),
                (None, Some(q)) => {
                    send_all(i as u16, q, tx);
                    *slot = None;
                }
                (None, None) => {}
            }
        }
    }

    /// A frame the pipeline forwards on `port`: into the port's queue, or to the backend when
    /// the port has none. True when it was handed to the backend now.
    #[inline]
    pub fn forward<T: Tx<B>>(&mut self, port: u16, frame: Frame<B>, now: u64, tx: &mut T) -> bool {
        match self.queues.get_mut(port as usize) {
            Some(Some(q)) => {
                if let Err((frame, _)) = q.enqueue(now, frame) {
                    tx.free(frame.into_buf());
                }
                false
            }
            _ => tx.send(port, frame),
        }
    }

    /// Send what the shapers let go at `now`, each frame's IOAM egress fields (for node
    /// `node_id`'s entry) written first; returns how many frames stay queued. `hist` gets each
    /// sent frame's sojourn.
    pub fn drain<T: Tx<B>>(
        &mut self,
        node_id: u32,
        now: u64,
        tx: &mut T,
        hist: &mut Histogram<u64>,
    ) -> usize {
        let mut left = 0;
        for (port, q) in self.queues.iter_mut().enumerate() {
            let Some(q) = q else { continue };
            while let Some(mut e) = q.dequeue(now) {
                let sojourn = now.saturating_sub(e.enqueued_at);
                patch_egress(
                    e.frame.bytes_mut(),
                    &EgressFacts {
                        node_id,
                        queue_depth: e.depth_at_enqueue,
                        queue_sojourn_ns: sojourn,
                        buffer_occupancy: tx.in_use(),
                    },
                );
                if tx.send(port as u16, e.frame) {
                    hist.saturating_record(sojourn.max(1));
                }
            }
            left += q.len();
        }
        left
    }

    /// Send everything queued now, unshaped (a finite input's end: nothing more will come).
    pub fn flush_all<T: Tx<B>>(&mut self, tx: &mut T) {
        for (port, q) in self.queues.iter_mut().enumerate() {
            if let Some(q) = q {
                send_all(port as u16, q, tx);
            }
        }
    }

    /// Give every queued frame back (shutdown).
    pub fn discard<T: Tx<B>>(&mut self, tx: &mut T) {
        for q in self.queues.iter_mut().flatten() {
            for e in q.drain() {
                tx.free(e.frame.into_buf());
            }
        }
    }

    /// Per port, its queue's numbers (zero for a port without one).
    pub fn stats(&self) -> Vec<QueueStats> {
        self.queues
            .iter()
            .map(|q| q.as_ref().map(EgressQueue::stats).unwrap_or_default())
            .collect()
    }
}

/// Send everything `q` holds on `port`, unshaped.
fn send_all<B: AsRef<[u8]> + AsMut<[u8]>, T: Tx<B>>(port: u16, q: &mut EgressQueue<B>, tx: &mut T) {
    for e in q.drain() {
        tx.send(port, e.frame);
    }
}

/// Add one worker's per-port queue numbers to a node's.
pub fn merge_stats(into: &mut Vec<QueueStats>, worker: &[QueueStats]) {
    if into.len() < worker.len() {
        into.resize(worker.len(), QueueStats::default());
    }
    for (q, w) in into.iter_mut().zip(worker) {
        q.merge(w);
    }
}

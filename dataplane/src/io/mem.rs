//! In-process links between nodes, for the lab and tests: a bounded FIFO of frames per
//! direction with an optional fixed delay and random loss, as a real link would have. A full
//! link drops the frame and counts it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use super::Buf;
use crate::aqm::Rng;
use crate::frame::Frame;

/// A frame in flight on a link, with the time it left the sender (ns since the Unix epoch).
#[derive(Debug)]
pub struct InFlight {
    pub frame: Frame<Buf>,
    pub sent_ns: u64,
}

/// One direction of a link.
#[derive(Debug)]
pub struct MemLink {
    queue: VecDeque<InFlight>,
    capacity: usize,
    /// Propagation delay: a frame can be received this long after it was sent.
    pub delay_ns: u64,
    /// Probability that a frame is lost on the way.
    pub loss: f64,
    rng: Rng,
    /// Frames refused because the link was full.
    pub dropped: u64,
    /// Frames the link lost on purpose (`loss`).
    pub lost: u64,
    /// Frames and octets carried.
    pub packets: u64,
    pub bytes: u64,
}

impl MemLink {
    pub fn new(capacity: usize) -> Self {
        MemLink {
            queue: VecDeque::with_capacity(capacity),
            capacity,
            delay_ns: 0,
            loss: 0.0,
            rng: Rng::new(1),
            dropped: 0,
            lost: 0,
            packets: 0,
            bytes: 0,
        }
    }

    /// A link with a delay and a loss rate; `seed` makes the losses repeatable.
    pub fn with_impairments(capacity: usize, delay_ns: u64, loss: f64, seed: u64) -> Self {
        MemLink {
            delay_ns,
            loss,
            rng: Rng::new(seed),
            ..MemLink::new(capacity)
        }
    }

    /// Queue a frame; a full link, or one that loses it, hands it back so the caller can return
    /// its buffer.
    pub fn send(&mut self, f: InFlight) -> Result<(), InFlight> {
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            return Err(f);
        }
        if self.loss > 0.0 && self.rng.uniform() < self.loss {
            self.lost += 1;
            return Err(f);
        }
        self.packets += 1;
        self.bytes += f.frame.len() as u64;
        self.queue.push_back(f);
        Ok(())
    }

    /// The next frame whose delay has passed by `now`.
    pub fn recv(&mut self, now: u64) -> Option<InFlight> {
        if self.queue.front()?.sent_ns + self.delay_ns > now {
            return None;
        }
        self.queue.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::BufPool;

    #[test]
    fn full_link_hands_the_frame_back() {
        let mut pool = BufPool::new(3);
        let mut link = MemLink::new(2);
        for i in 0..2u8 {
            let frame = pool.frame(&[i; 60]).unwrap();
            link.send(InFlight { frame, sent_ns: 0 }).unwrap();
        }
        let frame = pool.frame(&[9; 60]).unwrap();
        let back = link.send(InFlight { frame, sent_ns: 0 }).unwrap_err();
        assert_eq!(back.frame.bytes()[0], 9);
        assert_eq!((link.packets, link.bytes, link.dropped), (2, 120, 1));
        assert_eq!(pool.in_use(), 3);
        pool.put(back.frame);
        assert_eq!(link.recv(0).unwrap().frame.bytes()[0], 0);
        assert_eq!(pool.in_use(), 2);
    }

    #[test]
    fn delay_and_loss() {
        let mut pool = BufPool::new(1100);
        let mut link = MemLink::with_impairments(2000, 1_000, 0.1, 42);
        for _ in 0..1000 {
            let frame = pool.frame(&[0; 60]).unwrap();
            if let Err(back) = link.send(InFlight { frame, sent_ns: 5 }) {
                pool.put(back.frame);
            }
        }
        assert_eq!(link.lost + link.packets, 1000);
        assert!(
            (70..=130).contains(&link.lost),
            "{} lost of 1000 at 10 %",
            link.lost
        );
        assert!(link.recv(1_004).is_none(), "not before the delay");
        assert!(link.recv(1_005).is_some());
    }
}

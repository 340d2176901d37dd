//! In-process links between nodes, for the lab and tests: a bounded single-producer queue of
//! frames per direction. A full link drops the frame and counts it, as a real link would.

use crossbeam::queue::ArrayQueue;

use super::Buf;
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
    queue: ArrayQueue<InFlight>,
    /// Frames refused because the link was full.
    pub dropped: u64,
    /// Frames and octets carried.
    pub packets: u64,
    pub bytes: u64,
}

impl MemLink {
    pub fn new(capacity: usize) -> Self {
        MemLink {
            queue: ArrayQueue::new(capacity),
            dropped: 0,
            packets: 0,
            bytes: 0,
        }
    }

    /// Queue a frame; a full link hands it back so the caller can return its buffer.
    pub fn send(&mut self, f: InFlight) -> Result<(), InFlight> {
        let len = f.frame.len() as u64;
        match self.queue.push(f) {
            Ok(()) => {
                self.packets += 1;
                self.bytes += len;
                Ok(())
            }
            Err(f) => {
                self.dropped += 1;
                Err(f)
            }
        }
    }

    pub fn recv(&self) -> Option<InFlight> {
        self.queue.pop()
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
        assert_eq!(link.recv().unwrap().frame.bytes()[0], 0);
        assert_eq!(pool.in_use(), 2);
    }
}

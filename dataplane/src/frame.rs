//! A frame inside a buffer with headroom in front of it. Owns the headroom arithmetic that lets
//! IOAM insertion move the few header octets in front of the insertion point instead of the
//! payload behind it; the buffer itself belongs to whichever backend lent it.
#![forbid(unsafe_code)]

/// Headroom every backend leaves in front of a received frame: the largest IOAM insertion
/// (a new Hop-by-Hop header with a 244-octet trace: 264 octets) plus room for a DEX option, rounded
/// up to a cache line.
pub const HEADROOM: usize = 320;

/// A frame occupying `buf[head..head + len]`.
#[derive(Debug)]
pub struct Frame<B> {
    buf: B,
    head: usize,
    len: usize,
}

/// Not enough headroom (or tailroom) for what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl<B: AsRef<[u8]> + AsMut<[u8]>> Frame<B> {
    /// A frame of `len` octets starting at `head`; panics if that is outside `buf`.
    pub fn new(buf: B, head: usize, len: usize) -> Self {
        assert!(head + len <= buf.as_ref().len(), "frame outside its buffer");
        Frame { buf, head, len }
    }

    /// Copy `bytes` into `buf` after `HEADROOM` octets; `None` if they do not fit.
    pub fn from_bytes(mut buf: B, bytes: &[u8]) -> Option<Self> {
        let end = HEADROOM.checked_add(bytes.len())?;
        buf.as_mut().get_mut(HEADROOM..end)?.copy_from_slice(bytes);
        Some(Frame {
            buf,
            head: HEADROOM,
            len: bytes.len(),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf.as_ref()[self.head..self.head + self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[self.head..self.head + self.len]
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn head(&self) -> usize {
        self.head
    }

    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Open a gap of `n` octets at offset `at` of the frame by moving the `at` octets in front
    /// of it into the headroom. The gap's contents are unspecified.
    pub fn insert_gap(&mut self, at: usize, n: usize) -> Result<(), NoRoom> {
        if n > self.head || at > self.len {
            return Err(NoRoom);
        }
        let old = self.head;
        self.head -= n;
        self.len += n;
        self.buf.as_mut().copy_within(old..old + at, self.head);
        Ok(())
    }

    /// Remove `n` octets at offset `at` by moving the `at` octets in front of them forward.
    pub fn remove_range(&mut self, at: usize, n: usize) {
        assert!(at + n <= self.len, "range outside the frame");
        let old = self.head;
        self.head += n;
        self.len -= n;
        self.buf.as_mut().copy_within(old..old + at, self.head);
    }

    /// Give the buffer back to its owner.
    pub fn into_buf(self) -> B {
        self.buf
    }

    /// Reset to an empty frame at the standard headroom, for reuse.
    pub fn reset(&mut self) {
        self.head = HEADROOM.min(self.buf.as_ref().len());
        self.len = 0;
    }

    /// Overwrite the frame with `bytes` at the standard headroom.
    pub fn set_bytes(&mut self, bytes: &[u8]) -> Result<(), NoRoom> {
        let end = HEADROOM + bytes.len();
        let dst = self.buf.as_mut().get_mut(HEADROOM..end).ok_or(NoRoom)?;
        dst.copy_from_slice(bytes);
        self.head = HEADROOM;
        self.len = bytes.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_moves_the_front_not_the_back() {
        let mut f = Frame::from_bytes(vec![0u8; HEADROOM + 16], &[1, 2, 3, 4, 5, 6]).unwrap();
        f.insert_gap(2, 3).unwrap();
        f.bytes_mut()[2..5].copy_from_slice(&[9, 9, 9]);
        assert_eq!(f.bytes(), &[1, 2, 9, 9, 9, 3, 4, 5, 6]);
        assert_eq!(f.head(), HEADROOM - 3);
        f.remove_range(2, 3);
        assert_eq!(f.bytes(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(f.head(), HEADROOM);
    }

    #[test]
    fn no_room_is_an_error() {
        let mut f = Frame::new(vec![0u8; 8], 2, 4);
        assert_eq!(f.insert_gap(0, 3), Err(NoRoom));
        assert!(Frame::from_bytes(vec![0u8; HEADROOM], &[1]).is_none());
    }
}

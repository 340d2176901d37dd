//! The IPv4 header (RFC 791) with its checksum, including the RFC 1624 incremental updates a
//! router needs for TTL and ECN changes. Options are carried, not interpreted.

use super::{be16, checksum_finish, checksum_sum, checksum_update, put16, Error, Layer, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

pub const HEADER_LEN: usize = 20;

#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks version 4, IHL ≥ 5, and that the header and Total Length fit the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Ipv4));
        }
        if p.version() != 4 || p.header_len() < HEADER_LEN {
            return Err(Error::BadField(Layer::Ipv4));
        }
        let total = p.total_len() as usize;
        if total < p.header_len() || total > b.len() {
            return Err(Error::BadLength(Layer::Ipv4));
        }
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    pub fn header_len(&self) -> usize {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize * 4
    }

    /// The whole TOS octet: DSCP in the upper six bits, ECN in the lower two.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    pub fn flags_frag(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }

    pub fn dst_addr(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }

    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        checksum_finish(checksum_sum(0, &b[..self.header_len()])) == 0
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Recompute the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        put16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let len = self.header_len();
        let sum = checksum_finish(checksum_sum(0, &self.buffer.as_ref()[..len]));
        put16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }

    /// Set the TTL, updating the checksum incrementally (RFC 1624).
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::TTL);
        b[field::TTL] = ttl;
        let new = be16(b, field::TTL);
        let hc = checksum_update(be16(b, field::CHECKSUM), old, new);
        put16(b, field::CHECKSUM, hc);
    }

    /// Set the TOS octet, updating the checksum incrementally (RFC 1624).
    pub fn set_tos(&mut self, tos: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::VER_IHL);
        b[field::TOS] = tos;
        let new = be16(b, field::VER_IHL);
        let hc = checksum_update(be16(b, field::CHECKSUM), old, new);
        put16(b, field::CHECKSUM, hc);
    }
}

/// The high-level form of an option-less IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub tos: u8,
    pub ident: u16,
    pub flags_frag: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Parses headers without options; a header with options is refused as `BadField`.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if p.header_len() != HEADER_LEN {
            return Err(Error::BadField(Layer::Ipv4));
        }
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            tos: p.tos(),
            ident: p.ident(),
            flags_frag: p.flags_frag(),
            ttl: p.ttl(),
            protocol: p.protocol(),
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            payload_len: p.total_len() - HEADER_LEN as u16,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::VER_IHL] = 0x45;
        buf[field::TOS] = self.tos;
        put16(buf, field::TOTAL_LEN, HEADER_LEN as u16 + self.payload_len);
        put16(buf, field::IDENT, self.ident);
        put16(buf, field::FLAGS_FRAG, self.flags_frag);
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = self.protocol;
        buf[field::SRC].copy_from_slice(&self.src_addr);
        buf[field::DST].copy_from_slice(&self.dst_addr);
        Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]).fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REFERENCES.md: `4501 0054 0000 4000 4001 26a6 0a00 0001 0a00 0002`, ECT(1).
    static HEADER: [u8; 20] = [
        0x45, 0x01, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x26, 0xa6, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            tos: 0x01,
            ident: 0,
            flags_frag: 0x4000,
            ttl: 64,
            protocol: 1,
            src_addr: [10, 0, 0, 1],
            dst_addr: [10, 0, 0, 2],
            payload_len: 0x54 - 20,
        }
    }

    fn packet() -> [u8; 0x54] {
        let mut p = [0u8; 0x54];
        p[..20].copy_from_slice(&HEADER);
        p
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 1);
        assert_eq!(p.total_len(), 0x54);
        assert_eq!(p.flags_frag(), 0x4000);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 1);
        assert_eq!(p.checksum(), 0x26a6);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 20];
        repr().emit(&mut b);
        assert_eq!(b, HEADER);
    }

    #[test]
    fn parse() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0u8; 20];
        Ipv4Repr {
            tos: 0xbb,
            ..repr()
        }
        .emit(&mut b);
        assert!(Ipv4Packet::new_unchecked(&b[..]).verify_checksum());
    }

    /// The RFC 1624 vectors in REFERENCES.md.
    #[test]
    fn incremental_checksum_vectors() {
        let cases = [(0x01, 0x26a6, 0x03, 0x26a4), (0x02, 0x26a5, 0x03, 0x26a4)];
        for (tos, before, new_tos, after) in cases {
            let mut b = HEADER;
            b[1] = tos;
            b[10..12].copy_from_slice(&u16::to_be_bytes(before));
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            assert!(p.verify_checksum());
            p.set_tos(new_tos);
            assert_eq!(p.checksum(), after, "tos {tos:#x}");
            assert!(p.verify_checksum());
        }
        for (tos, before) in [(0xb9u8, 0x25eeu16), (0xba, 0x25ed)] {
            let mut b = HEADER;
            b[1] = tos;
            b[10..12].copy_from_slice(&before.to_be_bytes());
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            p.set_tos(0xbb);
            assert_eq!(p.checksum(), 0x25ec, "tos {tos:#x}");
        }
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut b = HEADER;
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_ttl(63);
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0x27a6);
    }

    #[test]
    fn errors() {
        let b = packet();
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]).unwrap_err(),
            Error::Truncated(Layer::Ipv4)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&b[..40]).unwrap_err(),
            Error::BadLength(Layer::Ipv4)
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::BadField(Layer::Ipv4)
        );
        let mut bad_sum = b;
        bad_sum[11] ^= 1;
        let p = Ipv4Packet::new_checked(&bad_sum[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::Checksum);
    }
}

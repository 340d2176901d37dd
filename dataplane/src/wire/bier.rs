//! The BIER header over Ethernet (RFC 8296 §2, EtherType 0xAB37, no MPLS label stack): BIFT-id,
//! TTL, BSL, Proto, BFIR-id and the BitString. Forwarding over it is `mcast`'s, not this
//! module's.

use super::{be16, be32, put16, put32, Error, Layer, Result};

/// Fixed header before the BitString.
pub const HEADER_LEN: usize = 12;

/// The Proto field's codepoints (RFC 8296 §2.1.2).
pub mod proto {
    pub const MPLS_DOWNSTREAM: u8 = 1;
    pub const MPLS_UPSTREAM: u8 = 2;
    pub const ETHERNET: u8 = 3;
    pub const IPV4: u8 = 4;
    pub const OAM: u8 = 5;
    pub const IPV6: u8 = 6;
}

/// BitString octets for a BSL codepoint 1..=7 (64 … 4096 bits): `1 << (BSL + 2)`.
pub fn bitstring_len(bsl: u8) -> Option<usize> {
    (1..=7).contains(&bsl).then(|| 1usize << (bsl + 2))
}

#[derive(Debug, Clone)]
pub struct BierHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BierHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        BierHeader { buffer }
    }

    /// Checks the fixed header, the nibble 0101, a valid BSL and that the BitString is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let h = Self::new_unchecked(buffer);
        let b = h.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Bier));
        }
        if h.nibble() != 0b0101 {
            return Err(Error::BadField(Layer::Bier));
        }
        let Some(bits) = bitstring_len(h.bsl()) else {
            return Err(Error::BadBsl);
        };
        if b.len() < HEADER_LEN + bits {
            return Err(Error::BadLength(Layer::Bier));
        }
        Ok(h)
    }

    fn word(&self, at: usize) -> u32 {
        be32(self.buffer.as_ref(), at)
    }

    pub fn bift_id(&self) -> u32 {
        self.word(0) >> 12
    }

    pub fn tc(&self) -> u8 {
        ((self.word(0) >> 9) & 0x7) as u8
    }

    pub fn s(&self) -> bool {
        self.word(0) & 0x100 != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    pub fn nibble(&self) -> u8 {
        self.buffer.as_ref()[4] >> 4
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[4] & 0x0f
    }

    pub fn bsl(&self) -> u8 {
        self.buffer.as_ref()[5] >> 4
    }

    pub fn entropy(&self) -> u32 {
        self.word(4) & 0x000f_ffff
    }

    pub fn oam(&self) -> u8 {
        self.buffer.as_ref()[8] >> 6
    }

    pub fn rsv(&self) -> u8 {
        (self.buffer.as_ref()[8] >> 4) & 0x3
    }

    pub fn dscp(&self) -> u8 {
        ((be16(self.buffer.as_ref(), 8) >> 6) & 0x3f) as u8
    }

    pub fn proto(&self) -> u8 {
        self.buffer.as_ref()[9] & 0x3f
    }

    pub fn bfir_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }

    /// Header plus BitString.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + bitstring_len(self.bsl()).unwrap_or(0)
    }

    /// The BitString; bit position 1 is the least significant bit of its last octet.
    pub fn bitstring(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BierHeader<T> {
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[3] = ttl;
    }

    pub fn bitstring_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The high-level form of a BIER header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BierRepr<'a> {
    pub bift_id: u32,
    pub tc: u8,
    pub s: bool,
    pub ttl: u8,
    pub version: u8,
    pub bsl: u8,
    pub entropy: u32,
    pub oam: u8,
    pub dscp: u8,
    pub proto: u8,
    pub bfir_id: u16,
    pub bitstring: &'a [u8],
}

impl<'a> BierRepr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &'a BierHeader<&'a T>) -> Result<Self> {
        Ok(BierRepr {
            bift_id: h.bift_id(),
            tc: h.tc(),
            s: h.s(),
            ttl: h.ttl(),
            version: h.version(),
            bsl: h.bsl(),
            entropy: h.entropy(),
            oam: h.oam(),
            dscp: h.dscp(),
            proto: h.proto(),
            bfir_id: h.bfir_id(),
            bitstring: h.bitstring(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.bitstring.len()
    }

    pub fn emit(&self, buf: &mut [u8]) {
        put32(
            buf,
            0,
            (self.bift_id & 0xf_ffff) << 12
                | (self.tc as u32 & 7) << 9
                | (self.s as u32) << 8
                | self.ttl as u32,
        );
        put32(
            buf,
            4,
            0x5 << 28
                | (self.version as u32 & 0xf) << 24
                | (self.bsl as u32 & 0xf) << 20
                | (self.entropy & 0xf_ffff),
        );
        put16(
            buf,
            8,
            (self.oam as u16 & 3) << 14 | (self.dscp as u16 & 0x3f) << 6 | self.proto as u16 & 0x3f,
        );
        put16(buf, 10, self.bfir_id);
        buf[HEADER_LEN..HEADER_LEN + self.bitstring.len()].copy_from_slice(self.bitstring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIFT-id 0x12345, TC 0, S 1, TTL 64; nibble 5, ver 0, BSL 1 (64 bits), entropy 0xabcde;
    /// OAM 0, DSCP 0, proto IPv6, BFIR-id 4; BitString 0111 (BFR-ids 1, 2, 3).
    static HEADER: [u8; 20] = [
        0x12, 0x34, 0x51, 0x40, 0x50, 0x1a, 0xbc, 0xde, 0x00, 0x06, 0x00, 0x04, 0, 0, 0, 0, 0, 0,
        0, 0x07,
    ];

    fn repr() -> BierRepr<'static> {
        BierRepr {
            bift_id: 0x12345,
            tc: 0,
            s: true,
            ttl: 64,
            version: 0,
            bsl: 1,
            entropy: 0xabcde,
            oam: 0,
            dscp: 0,
            proto: proto::IPV6,
            bfir_id: 4,
            bitstring: &HEADER[12..],
        }
    }

    #[test]
    fn deconstruct() {
        let h = BierHeader::new_checked(&HEADER[..]).unwrap();
        assert_eq!(h.bift_id(), 0x12345);
        assert!(h.s());
        assert_eq!(h.ttl(), 64);
        assert_eq!(h.nibble(), 5);
        assert_eq!(h.bsl(), 1);
        assert_eq!(h.entropy(), 0xabcde);
        assert_eq!(h.proto(), 6);
        assert_eq!(h.bfir_id(), 4);
        assert_eq!(h.bitstring(), &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(h.header_len(), 20);
    }

    #[test]
    fn construct() {
        let mut b = HEADER;
        let mut h = BierHeader::new_unchecked(&mut b[..]);
        h.set_ttl(63);
        h.bitstring_mut()[7] = 0x03;
        assert_eq!(b[3], 63);
        assert_eq!(b[19], 0x03);
    }

    #[test]
    fn parse() {
        let h = BierHeader::new_checked(&HEADER[..]).unwrap();
        assert_eq!(BierRepr::parse(&h).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0xffu8; 20];
        repr().emit(&mut b);
        assert_eq!(b, HEADER);
    }

    #[test]
    fn every_bsl_has_its_length() {
        let lens: Vec<_> = (0..=8).map(bitstring_len).collect();
        assert_eq!(
            lens,
            [
                None,
                Some(8),
                Some(16),
                Some(32),
                Some(64),
                Some(128),
                Some(256),
                Some(512),
                None
            ]
        );
    }

    #[test]
    fn errors() {
        let mut bad = HEADER;
        bad[5] = 0x8a;
        assert_eq!(
            BierHeader::new_checked(&bad[..]).unwrap_err(),
            Error::BadBsl
        );
        let mut bad = HEADER;
        bad[4] = 0x40;
        assert_eq!(
            BierHeader::new_checked(&bad[..]).unwrap_err(),
            Error::BadField(Layer::Bier)
        );
        assert_eq!(
            BierHeader::new_checked(&HEADER[..19]).unwrap_err(),
            Error::BadLength(Layer::Bier)
        );
        assert_eq!(
            BierHeader::new_checked(&HEADER[..11]).unwrap_err(),
            Error::Truncated(Layer::Bier)
        );
    }
}

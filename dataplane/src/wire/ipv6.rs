//! The fixed IPv6 header (RFC 8200 §3). Owns its layout; extension headers live in
//! [`super::ipv6ext`].

use super::{be16, be32, put16, put32, Error, Layer, Result};

mod field {
    use core::ops::Range;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;

/// Next Header codepoints (IANA protocol numbers) mtnode acts on.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks version 6, the fixed header and that Payload Length fits the buffer (trailing
    /// Ethernet padding is allowed).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Ipv6));
        }
        if b[0] >> 4 != 6 {
            return Err(Error::BadField(Layer::Ipv6));
        }
        if HEADER_LEN + p.payload_len() as usize > b.len() {
            return Err(Error::BadLength(Layer::Ipv6));
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), 0) >> 4) as u8
    }

    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }

    pub fn dst_addr(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }

    /// The bytes Payload Length covers (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let w = be32(b, 0);
        put32(b, 0, (w & 0xf00f_ffff) | (tc as u32) << 20);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = nh;
    }

    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hl;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.payload_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..HEADER_LEN + len]
    }
}

/// The high-level form of the fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self> {
        Ok(Ipv6Repr {
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
            payload_len: p.payload_len(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) {
        put32(
            buf,
            0,
            6 << 28 | (self.traffic_class as u32) << 20 | (self.flow_label & 0x000f_ffff),
        );
        put16(buf, field::PAYLOAD_LEN, self.payload_len);
        buf[field::NEXT_HEADER] = self.next_header;
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC].copy_from_slice(&self.src_addr);
        buf[field::DST].copy_from_slice(&self.dst_addr);
    }
}

/// Is `a` an IPv6 multicast address (ff00::/8)?
pub fn is_multicast(a: &[u8; 16]) -> bool {
    a[0] == 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET: [u8; 44] = [
        0x6b, 0x81, 0x23, 0x45, // v6, TC 0xb8, flow 0x12345
        0x00, 0x04, 0x11, 0x40, // payload 4, UDP, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
        0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x01, // ff3e::8000:1
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            payload_len: 4,
            next_header: next_header::UDP,
            hop_limit: 64,
            src_addr: PACKET[8..24].try_into().unwrap(),
            dst_addr: PACKET[24..40].try_into().unwrap(),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.dst_addr()[0], 0xff);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 44];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        repr().emit(p.buffer.as_mut());
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, PACKET);
    }

    #[test]
    fn parse() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut buf = [0u8; 40];
        repr().emit(&mut buf);
        assert_eq!(&buf[..], &PACKET[..40]);
    }

    #[test]
    fn setters() {
        let mut buf = PACKET;
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_traffic_class(0xbb);
        p.set_hop_limit(63);
        assert_eq!(p.traffic_class(), 0xbb);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.hop_limit(), 63);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..39]).unwrap_err(),
            Error::Truncated(Layer::Ipv6)
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..43]).unwrap_err(),
            Error::BadLength(Layer::Ipv6)
        );
        let mut v4 = PACKET;
        v4[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            Error::BadField(Layer::Ipv6)
        );
    }
}

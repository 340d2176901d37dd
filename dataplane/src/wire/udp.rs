//! UDP (RFC 768) and its checksum over the IPv4 and IPv6 pseudo-headers (RFC 8200 §8.1).

use super::{be16, checksum_finish, checksum_sum, put16, Error, Layer, Result};

pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Checks the header is present and Length is between 8 and the bytes present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Udp));
        }
        let len = p.len() as usize;
        if len < HEADER_LEN || len > b.len() {
            return Err(Error::BadLength(Layer::Udp));
        }
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The Length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// Does the checksum verify over the IPv6 pseudo-header?
    pub fn verify_checksum_ipv6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let b = &self.buffer.as_ref()[..self.len() as usize];
        checksum_finish(checksum_sum(pseudo_ipv6(src, dst, b.len() as u32), b)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Compute and write the checksum over the IPv6 pseudo-header (a zero result is sent as
    /// 0xffff, RFC 8200 §8.1).
    pub fn fill_checksum_ipv6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let len = self.len() as usize;
        put16(self.buffer.as_mut(), 6, 0);
        let sum = checksum_sum(
            pseudo_ipv6(src, dst, len as u32),
            &self.buffer.as_ref()[..len],
        );
        let c = match checksum_finish(sum) {
            0 => 0xffff,
            c => c,
        };
        put16(self.buffer.as_mut(), 6, c);
    }

    /// Compute and write the checksum over the IPv4 pseudo-header.
    pub fn fill_checksum_ipv4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        let len = self.len() as usize;
        put16(self.buffer.as_mut(), 6, 0);
        let mut pseudo = checksum_sum(0, src);
        pseudo = checksum_sum(pseudo, dst);
        pseudo += 17 + len as u32;
        let sum = checksum_sum(pseudo, &self.buffer.as_ref()[..len]);
        let c = match checksum_finish(sum) {
            0 => 0xffff,
            c => c,
        };
        put16(self.buffer.as_mut(), 6, c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

fn pseudo_ipv6(src: &[u8; 16], dst: &[u8; 16], len: u32) -> u32 {
    let s = checksum_sum(checksum_sum(0, src), dst);
    s + (len >> 16) + (len & 0xffff) + 17
}

/// The high-level form of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self> {
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len() - HEADER_LEN as u16,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header with a zero checksum; fill it with `fill_checksum_*` once the payload is
    /// in place.
    pub fn emit(&self, buf: &mut [u8]) {
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put16(buf, 4, HEADER_LEN as u16 + self.payload_len);
        put16(buf, 6, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const DST: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x01];

    /// 5000 → 5001, payload `00 00 00 01`; checksum computed independently below by etherparse.
    fn datagram() -> [u8; 12] {
        let mut b = [0x13, 0x88, 0x13, 0x89, 0x00, 0x0c, 0, 0, 0, 0, 0, 1];
        UdpPacket::new_unchecked(&mut b[..]).fill_checksum_ipv6(&SRC, &DST);
        b
    }

    #[test]
    fn deconstruct() {
        let b = datagram();
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 5000);
        assert_eq!(p.dst_port(), 5001);
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), &[0, 0, 0, 1]);
        assert!(p.verify_checksum_ipv6(&SRC, &DST));
    }

    #[test]
    fn construct_matches_etherparse() {
        let b = datagram();
        let h = etherparse::UdpHeader {
            source_port: 5000,
            destination_port: 5001,
            length: 12,
            checksum: 0,
        };
        let ip = etherparse::Ipv6Header {
            payload_length: 12,
            next_header: etherparse::IpNumber::UDP,
            hop_limit: 64,
            source: SRC,
            destination: DST,
            ..Default::default()
        };
        let want = h.calc_checksum_ipv6(&ip, &[0, 0, 0, 1]).unwrap();
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap().checksum(), want);
    }

    #[test]
    fn parse_emit() {
        let b = datagram();
        let r = UdpRepr::parse(&UdpPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            UdpRepr {
                src_port: 5000,
                dst_port: 5001,
                payload_len: 4
            }
        );
        let mut out = [0u8; 12];
        r.emit(&mut out);
        out[8..].copy_from_slice(&[0, 0, 0, 1]);
        UdpPacket::new_unchecked(&mut out[..]).fill_checksum_ipv6(&SRC, &DST);
        assert_eq!(out, b);
    }

    #[test]
    fn errors() {
        let b = datagram();
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).unwrap_err(),
            Error::Truncated(Layer::Udp)
        );
        assert_eq!(
            UdpPacket::new_checked(&b[..10]).unwrap_err(),
            Error::BadLength(Layer::Udp)
        );
    }
}

//! Ethernet II frames with at most one IEEE 802.1Q tag: the outermost layer every backend hands
//! the pipeline. Owns the MAC header layout; knows nothing of what the payload holds.

use super::{be16, put16, Error, Layer, Result};

/// EtherType codepoints mtnode acts on; all others are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Ipv6,
    Vlan,
    /// BIER without MPLS (RFC 8296 §2.2).
    Bier,
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            0xab37 => EtherType::Bier,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::Bier => 0xab37,
            EtherType::Unknown(other) => other,
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const VLAN_TCI: usize = 14;
    pub const INNER_ETHERTYPE: usize = 16;
}

/// Length of an untagged header.
pub const HEADER_LEN: usize = 14;
/// Length of a header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap without checks; accessors may panic on short buffers.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wrap after checking the whole header, tag included, is present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        let b = f.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(Layer::Ethernet));
        }
        if be16(b, field::ETHERTYPE) == 0x8100 && b.len() < VLAN_HEADER_LEN {
            return Err(Error::Truncated(Layer::Ethernet));
        }
        Ok(f)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }

    pub fn src_addr(&self) -> [u8; 6] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }

    /// The 802.1Q TCI when the frame is tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (be16(b, field::ETHERTYPE) == 0x8100).then(|| be16(b, field::VLAN_TCI))
    }

    /// The EtherType of the payload (the inner one for a tagged frame).
    pub fn ethertype(&self) -> EtherType {
        let b = self.buffer.as_ref();
        match be16(b, field::ETHERTYPE) {
            0x8100 => be16(b, field::INNER_ETHERTYPE).into(),
            other => other.into(),
        }
    }

    /// 14, or 18 with a tag.
    pub fn header_len(&self) -> usize {
        if self.vlan_tci().is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// The high-level form of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: [u8; 6],
    pub dst_addr: [u8; 6],
    pub vlan_tci: Option<u16>,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_tci: frame.vlan_tci(),
            ethertype: frame.ethertype(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Write the header into the first `buffer_len()` bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::DST].copy_from_slice(&self.dst_addr);
        buf[field::SRC].copy_from_slice(&self.src_addr);
        match self.vlan_tci {
            Some(tci) => {
                put16(buf, field::ETHERTYPE, 0x8100);
                put16(buf, field::VLAN_TCI, tci);
                put16(buf, field::INNER_ETHERTYPE, self.ethertype.into());
            }
            None => put16(buf, field::ETHERTYPE, self.ethertype.into()),
        }
    }
}

/// The IPv6 multicast MAC for a group (RFC 2464 §7): 33:33 + the group's low 32 bits.
pub fn ipv6_multicast_mac(group: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    static TAGGED: [u8; 20] = [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, // src
        0x81, 0x00, 0x20, 0x64, // 802.1Q, PCP 1, VID 100
        0x86, 0xdd, // IPv6
        0xaa, 0xbb,
    ];

    fn repr() -> EthernetRepr {
        EthernetRepr {
            dst_addr: [0x33, 0x33, 0, 0, 0, 1],
            src_addr: [2, 0, 0, 0, 0, 0x0a],
            vlan_tci: Some(0x2064),
            ethertype: EtherType::Ipv6,
        }
    }

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.dst_addr(), [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(f.vlan_tci(), Some(0x2064));
        assert_eq!(f.ethertype(), EtherType::Ipv6);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 20];
        repr().emit(&mut buf);
        buf[18..].copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, TAGGED);
    }

    #[test]
    fn parse() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&f).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let r = EthernetRepr {
            vlan_tci: None,
            ..repr()
        };
        let mut buf = [0u8; 14];
        r.emit(&mut buf);
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
        assert_eq!(r.buffer_len(), 14);
    }

    #[test]
    fn truncated_tag_is_an_error() {
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..16]).unwrap_err(),
            Error::Truncated(Layer::Ethernet)
        );
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..13]).unwrap_err(),
            Error::Truncated(Layer::Ethernet)
        );
    }

    #[test]
    fn multicast_mac() {
        let g: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x01];
        assert_eq!(ipv6_multicast_mac(&g), [0x33, 0x33, 0x80, 0, 0, 1]);
    }
}

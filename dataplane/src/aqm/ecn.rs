//! ECN codepoints (RFC 3168 §5) and CE marking in the packet: IPv4 with the RFC 1624 checksum
//! update, IPv6 Traffic Class, and the inner IP header of a BIER packet (BIER has no ECN field).

use crate::wire::bier::{self, BierHeader};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet};

/// The two ECN bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecn {
    NotEct = 0b00,
    Ect1 = 0b01,
    Ect0 = 0b10,
    Ce = 0b11,
}

impl Ecn {
    pub const ALL: [Ecn; 4] = [Ecn::NotEct, Ecn::Ect1, Ecn::Ect0, Ecn::Ce];

    pub fn from_bits(b: u8) -> Ecn {
        match b & 0b11 {
            0b00 => Ecn::NotEct,
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// ECT(0), ECT(1) and CE packets come from ECN-capable transports.
    pub fn is_capable(self) -> bool {
        self != Ecn::NotEct
    }

    pub fn name(self) -> &'static str {
        match self {
            Ecn::NotEct => "not_ect",
            Ecn::Ect1 => "ect1",
            Ecn::Ect0 => "ect0",
            Ecn::Ce => "ce",
        }
    }
}

/// Where the IP header whose ECN bits count sits in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpAt {
    V4(usize),
    V6(usize),
}

fn locate(frame: &[u8]) -> Option<IpAt> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    match eth.ethertype() {
        EtherType::Ipv4 => Some(IpAt::V4(l3)),
        EtherType::Ipv6 => Some(IpAt::V6(l3)),
        EtherType::Bier => {
            let h = BierHeader::new_checked(&frame[l3..]).ok()?;
            let inner = l3 + h.header_len();
            match h.proto() {
                bier::proto::IPV4 => Some(IpAt::V4(inner)),
                bier::proto::IPV6 => Some(IpAt::V6(inner)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The ECN codepoint of a frame's IP header; `None` if it has none we can read.
pub fn codepoint(frame: &[u8]) -> Option<Ecn> {
    match locate(frame)? {
        IpAt::V4(at) => Some(Ecn::from_bits(
            Ipv4Packet::new_checked(&frame[at..]).ok()?.tos(),
        )),
        IpAt::V6(at) => Some(Ecn::from_bits(
            Ipv6Packet::new_checked(&frame[at..]).ok()?.traffic_class(),
        )),
    }
}

/// Set CE on an ECN-capable frame (RFC 3168 §6.1.1.1); a CE frame stays CE. Returns false, and
/// leaves the frame alone, for Not-ECT or a frame without a readable IP header.
pub fn mark_ce(frame: &mut [u8]) -> bool {
    match locate(frame) {
        Some(IpAt::V4(at)) => {
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[at..]) else {
                return false;
            };
            let tos = ip.tos();
            if !Ecn::from_bits(tos).is_capable() {
                return false;
            }
            if tos & 3 != 3 {
                ip.set_tos(tos | 3);
            }
            true
        }
        Some(IpAt::V6(at)) => {
            let Ok(mut ip) = Ipv6Packet::new_checked(&mut frame[at..]) else {
                return false;
            };
            let tc = ip.traffic_class();
            if !Ecn::from_bits(tc).is_capable() {
                return false;
            }
            ip.set_traffic_class(tc | 3);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(tos: u8, sum: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut h = vec![
            0x45, tos, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0, 0, 0x0a, 0x00, 0x00,
            0x01, 0x0a, 0x00, 0x00, 0x02,
        ];
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&h);
        f.resize(14 + 0x54, 0);
        f
    }

    /// The RFC 1624 vectors of REFERENCES.md, through the marking path.
    #[test]
    fn ipv4_marks_with_incremental_checksum() {
        for (tos, before, after_tos, after) in [
            (0x01u8, 0x26a6u16, 0x03u8, 0x26a4u16),
            (0x02, 0x26a5, 0x03, 0x26a4),
            (0xb9, 0x25ee, 0xbb, 0x25ec),
            (0xba, 0x25ed, 0xbb, 0x25ec),
        ] {
            let mut f = v4(tos, before);
            assert!(mark_ce(&mut f));
            assert_eq!(f[15], after_tos);
            assert_eq!(u16::from_be_bytes([f[24], f[25]]), after, "tos {tos:#x}");
            assert_eq!(codepoint(&f), Some(Ecn::Ce));
        }
    }

    #[test]
    fn not_ect_is_never_marked_and_ce_stays_ce() {
        let mut f = v4(0x00, 0x26a7);
        let before = f.clone();
        assert!(!mark_ce(&mut f));
        assert_eq!(f, before);
        let mut f = v4(0x03, 0x26a4);
        assert!(mark_ce(&mut f));
        assert_eq!(u16::from_be_bytes([f[24], f[25]]), 0x26a4);
    }

    fn v6(tc: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&[0x60 | tc >> 4, tc << 4 | 0x0a, 0xbc, 0xde, 0, 0, 17, 64]);
        f.resize(14 + 40, 0);
        f
    }

    #[test]
    fn ipv6_traffic_class_keeps_dscp_and_flow_label() {
        let mut f = v6(0x8a); // AF41 + ECT(0)
        assert!(mark_ce(&mut f));
        assert_eq!(&f[14..18], &[0x68, 0xba, 0xbc, 0xde]);
        assert_eq!(codepoint(&f), Some(Ecn::Ce));
        let mut f = v6(0x88); // Not-ECT
        assert!(!mark_ce(&mut f));
    }

    #[test]
    fn bier_marks_the_inner_header() {
        let inner = v6(0x01);
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0xab, 0x37]);
        let mut b = [0u8; 20];
        crate::wire::BierRepr {
            bift_id: 1,
            tc: 0,
            s: true,
            ttl: 64,
            version: 0,
            bsl: 1,
            entropy: 0,
            oam: 0,
            dscp: 0,
            proto: bier::proto::IPV6,
            bfir_id: 1,
            bitstring: &[0, 0, 0, 0, 0, 0, 0, 1],
        }
        .emit(&mut b);
        f.extend_from_slice(&b);
        f.extend_from_slice(&inner[14..]);
        assert_eq!(codepoint(&f), Some(Ecn::Ect1));
        let outer = f[..34].to_vec();
        assert!(mark_ce(&mut f));
        assert_eq!(codepoint(&f), Some(Ecn::Ce));
        assert_eq!(&f[..34], &outer[..], "the BIER header is untouched");
        assert_eq!(f[34 + 1] >> 4 & 3, 3);
    }
}

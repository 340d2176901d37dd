//! The valid fixtures (files 1–7 of the README), built with etherparse's `PacketBuilder`.
//!
//! etherparse computes lengths, next-header chains and the IPv4 and UDP checksums; that is the point
//! of using it: the fixtures do not share code, or bugs, with mtnode's own packet writer. Only the
//! option bytes inside extension headers are written here by hand, and the IOAM header (which
//! etherparse cannot express as an option) is inserted by [`crate::ioam`].

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, Ipv6RawExtHeader,
    PacketBuilder, VlanId,
};

use crate::ioam;

/// Source MAC of every frame.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Destination MAC of the unicast frames.
pub const UNICAST_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Source of every IPv6 packet, the S of the (S,G).
pub const SSM_SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The SSM group (FF3x::/32 is the SSM range, RFC 4607).
pub const SSM_GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 0x0001);
/// Destination of `ipv6-unicast.pcap`.
pub const UNICAST_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20);
/// Source of the IPv4 packets.
pub const IPV4_SOURCE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The IPv4 SSM group (232/8).
pub const IPV4_GROUP: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);

pub const UDP_SRC_PORT: u16 = 5000;
pub const UDP_DST_PORT: u16 = 5001;
pub const HOP_LIMIT: u8 = 64;
/// VLAN ID of `vlan-ipv6-mcast.pcap`; PCP and DEI are 0, so the TCI is 0x0064.
pub const VLAN_ID: u16 = 100;

/// The frame-size sweep, captured length without FCS. One round is one frame of each size.
pub const SIZE_CLASSES: [usize; 3] = [64, 512, 1500];
/// Every UDP payload starts with a big-endian sequence number of this many bytes.
pub const SEQ_LEN: usize = 4;

/// Traffic Class of the odd-numbered packets of the alternating files:
/// DSCP AF41 (34) in the top six bits, ECT(0) (0b10) in the ECN bits.
pub const TC_AF41_ECT0: u8 = (34 << 2) | 0b10;

/// The Router Alert Hop-by-Hop header after its first two bytes (Next Header, Hdr Ext Len),
/// RFC 2711: option type 5, length 2, value 0 (MLD), then PadN of length 0 to reach 8 octets.
const ROUTER_ALERT_BODY: [u8; 6] = [0x05, 0x02, 0x00, 0x00, 0x01, 0x00];

/// The Destination Options header after its first two bytes: an option of type 0x1e (action bits
/// 00 = skip if unknown, chg bit 0 = does not change en route) with four data bytes. Two header
/// bytes + six option bytes are already 8 octets, so no padding follows.
const UNKNOWN_DESTOPT_BODY: [u8; 6] = [0x1e, 0x04, 0xde, 0xad, 0xbe, 0xef];

/// Ethernet destination for an IPv6 multicast group: 33:33 + the group's low 32 bits (RFC 2464 §7).
pub fn ipv6_mcast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// Ethernet destination for an IPv4 multicast group: 01:00:5e + the group's low 23 bits
/// (RFC 1112 §6.4).
pub fn ipv4_mcast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The frame lengths of a file: `rounds` times 64, 512, 1500, in that order.
pub fn frame_lens(rounds: usize) -> impl Iterator<Item = usize> {
    SIZE_CLASSES
        .into_iter()
        .cycle()
        .take(rounds * SIZE_CLASSES.len())
}

/// The UDP payload of packet `seq`: the sequence number, then payload byte k is `k mod 256`.
pub fn udp_payload(seq: u32, len: usize) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..len).map(|k| (k % 256) as u8).collect();
    payload[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
    payload
}

/// Where a UDP frame goes and what its IP header (and extension headers) look like.
#[derive(Clone, Debug)]
struct Flow {
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    ip: IpHeaders,
}

impl Flow {
    /// Builds frame `seq` of this flow with `frame_len` bytes on the wire (no FCS).
    ///
    /// When the headers leave less than [`SEQ_LEN`] bytes of payload (IPv6 at 64 bytes), the frame
    /// grows to the smallest length that still carries the whole sequence number.
    fn udp_frame(&self, seq: u32, frame_len: usize) -> anyhow::Result<Vec<u8>> {
        let eth = PacketBuilder::ethernet2(SRC_MAC, self.dst_mac);
        let ip = match self.vlan {
            Some(vid) => eth.single_vlan(VlanId::try_new(vid)?).ip(self.ip.clone()),
            None => eth.ip(self.ip.clone()),
        };
        let builder = ip.udp(UDP_SRC_PORT, UDP_DST_PORT);
        let payload_len = frame_len.saturating_sub(builder.size(0)).max(SEQ_LEN);
        let payload = udp_payload(seq, payload_len);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, &payload)?;
        Ok(frame)
    }

    /// `rounds` rounds of the size sweep, sequence numbers 0, 1, 2, …
    fn sweep(&self, rounds: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        frame_lens(rounds)
            .zip(0u32..)
            .map(|(len, seq)| self.udp_frame(seq, len))
            .collect()
    }
}

/// An IPv6 header from [`SSM_SOURCE`]; etherparse fills in payload length and next header.
fn ipv6(destination: Ipv6Addr, traffic_class: u8, exts: Ipv6Extensions) -> IpHeaders {
    IpHeaders::Ipv6(
        Ipv6Header {
            traffic_class,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: 0,
            next_header: IpNumber::UDP,
            hop_limit: HOP_LIMIT,
            source: SSM_SOURCE.octets(),
            destination: destination.octets(),
        },
        exts,
    )
}

/// A multicast flow to [`SSM_GROUP`].
fn ssm_flow(traffic_class: u8, vlan: Option<u16>, exts: Ipv6Extensions) -> Flow {
    Flow {
        dst_mac: ipv6_mcast_mac(SSM_GROUP),
        vlan,
        ip: ipv6(SSM_GROUP, traffic_class, exts),
    }
}

/// Traffic Class of packet `seq` in the alternating files: even 0x00, odd AF41 + ECT(0).
fn alternating_tc(seq: u32) -> u8 {
    if seq % 2 == 0 {
        0
    } else {
        TC_AF41_ECT0
    }
}

/// `rounds` rounds of the SSM sweep whose Traffic Class alternates per packet.
fn alternating_ssm(rounds: usize, vlan: Option<u16>) -> anyhow::Result<Vec<Vec<u8>>> {
    frame_lens(rounds)
        .zip(0u32..)
        .map(|(len, seq)| {
            ssm_flow(alternating_tc(seq), vlan, Ipv6Extensions::default()).udp_frame(seq, len)
        })
        .collect()
}

/// The plain multicast frame that the IOAM and malformed fixtures start from.
pub fn plain_ssm_frame(seq: u32, frame_len: usize) -> anyhow::Result<Vec<u8>> {
    ssm_flow(0, None, Ipv6Extensions::default()).udp_frame(seq, frame_len)
}

/// File 1: 12 packets to the SSM group, Traffic Class alternating 0x00 / 0x8a.
pub fn ipv6_mcast_ssm() -> anyhow::Result<Vec<Vec<u8>>> {
    alternating_ssm(4, None)
}

/// File 2: 6 unicast packets.
pub fn ipv6_unicast() -> anyhow::Result<Vec<Vec<u8>>> {
    Flow {
        dst_mac: UNICAST_DST_MAC,
        vlan: None,
        ip: ipv6(UNICAST_DST, 0, Ipv6Extensions::default()),
    }
    .sweep(2)
}

/// File 3: 6 multicast packets with a Hop-by-Hop header holding Router Alert.
pub fn ipv6_hbh_router_alert() -> anyhow::Result<Vec<Vec<u8>>> {
    let exts = Ipv6Extensions {
        // The next header given here is a placeholder: PacketBuilder rewrites the chain.
        hop_by_hop_options: Some(Ipv6RawExtHeader::new_raw(
            IpNumber::UDP,
            &ROUTER_ALERT_BODY,
        )?),
        ..Default::default()
    };
    ssm_flow(0, None, exts).sweep(2)
}

/// File 4: 6 multicast packets with a Destination Options header holding an unknown option.
pub fn ipv6_destopts() -> anyhow::Result<Vec<Vec<u8>>> {
    let exts = Ipv6Extensions {
        destination_options: Some(Ipv6RawExtHeader::new_raw(
            IpNumber::UDP,
            &UNKNOWN_DESTOPT_BODY,
        )?),
        ..Default::default()
    };
    ssm_flow(0, None, exts).sweep(2)
}

/// File 5: 6 IPv4 multicast packets (etherparse sets DF and identification 0).
pub fn ipv4_mcast() -> anyhow::Result<Vec<Vec<u8>>> {
    let header = Ipv4Header::new(
        0,
        HOP_LIMIT,
        IpNumber::UDP,
        IPV4_SOURCE.octets(),
        IPV4_GROUP.octets(),
    )?;
    Flow {
        dst_mac: ipv4_mcast_mac(IPV4_GROUP),
        vlan: None,
        ip: IpHeaders::Ipv4(header, Default::default()),
    }
    .sweep(2)
}

/// File 6: file 1's packets with an 802.1Q tag, two rounds.
pub fn vlan_ipv6_mcast() -> anyhow::Result<Vec<Vec<u8>>> {
    alternating_ssm(2, Some(VLAN_ID))
}

/// File 7: plain multicast frames of 64/512/1500 bytes, then a Linux-style Hop-by-Hop header with
/// a pre-allocated trace that two nodes have already written is inserted (the frame grows by it).
pub fn ioam_trace() -> anyhow::Result<Vec<Vec<u8>>> {
    let hbh = ioam::linux_hbh(&ioam::two_hop_trace_option(
        ioam::NODE_LEN,
        ioam::IOAM_PREALLOC_TRACE,
    ));
    frame_lens(1)
        .zip(0u32..)
        .map(|(len, seq)| Ok(ioam::insert_hop_by_hop(&plain_ssm_frame(seq, len)?, &hbh)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_macs() {
        assert_eq!(ipv6_mcast_mac(SSM_GROUP), [0x33, 0x33, 0x80, 0, 0, 0x01]);
        assert_eq!(
            ipv4_mcast_mac(IPV4_GROUP),
            [0x01, 0, 0x5e, 0x01, 0x01, 0x01]
        );
        assert_eq!(
            ipv4_mcast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0, 0x5e, 0x01, 0x02, 0x03]
        );
    }

    #[test]
    fn tc_af41_ect0_is_0x8a() {
        assert_eq!(TC_AF41_ECT0, 0x8a);
    }

    #[test]
    fn payload_starts_with_sequence_number() {
        let p = udp_payload(0x0102_0304, 8);
        assert_eq!(p, [1, 2, 3, 4, 4, 5, 6, 7]);
    }

    /// The hand-inserted IOAM header must give the same bytes as etherparse's own extension-header
    /// writer, so the insertion (next header, payload length, UDP checksum untouched) is checked by
    /// an independent implementation.
    #[test]
    fn ioam_insertion_matches_etherparse() {
        let hbh = ioam::linux_hbh(&ioam::two_hop_trace_option(
            ioam::NODE_LEN,
            ioam::IOAM_PREALLOC_TRACE,
        ));
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(Ipv6RawExtHeader::new_raw(IpNumber::UDP, &hbh[2..]).unwrap()),
            ..Default::default()
        };
        let flow = ssm_flow(0, None, exts);
        for (frame, (len, seq)) in ioam_trace().unwrap().iter().zip(frame_lens(1).zip(0u32..)) {
            let plain_len = plain_ssm_frame(seq, len).unwrap().len();
            let by_etherparse = flow.udp_frame(seq, plain_len + hbh.len()).unwrap();
            assert_eq!(frame, &by_etherparse);
        }
    }
}

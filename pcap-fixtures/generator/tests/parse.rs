//! Reads the committed fixtures back with etherparse's slicer and checks them against the
//! README's description: addresses, frame lengths, sequence numbers, checksums, extension headers.
//! The expectations are written out here rather than imported from the generator, so a mistake in
//! the generator's constants shows up as a disagreement.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{
    Ipv6ExtensionSlice, LinkExtSlice, LinkSlice, NetSlice, SlicedPacket, TransportSlice,
};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SSM_MAC: [u8; 6] = [0x33, 0x33, 0x80, 0, 0, 0x01];
const SOURCE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
const START: Duration = Duration::from_secs(1_700_000_000);

/// Frame lengths of `rounds` rounds of the sweep whose smallest frame is `small` bytes.
fn sweep(small: usize, rounds: usize) -> Vec<usize> {
    [small, 512, 1500].repeat(rounds)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ext {
    None,
    /// A Hop-by-Hop header whose bytes after Next Header / Hdr Ext Len start with these.
    HopByHop(&'static [u8]),
    /// A Destination Options header with exactly these bytes after the first two.
    DestOpts(&'static [u8]),
}

#[derive(Debug)]
struct Expect {
    name: &'static str,
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    lens: Vec<usize>,
    alternating_tc: bool,
    ext: Ext,
}

/// IOAM Hop-by-Hop header after its first two bytes: PadN(0), option 0x31 with Opt Data Len 170,
/// reserved 0, Pre-allocated Trace, Namespace-ID 1, NodeLen 5 / Flags 0 / RemainingLen 30,
/// trace type 0xF80000, reserved.
const IOAM_HBH_START: &[u8] = &[
    0x01, 0x00, 0x31, 170, 0, 0, 0x00, 0x01, 0x28, 0x1e, 0xf8, 0x00, 0x00, 0x00,
];

fn expectations() -> Vec<Expect> {
    let ssm = |name, vlan, small, rounds, alternating_tc, ext| Expect {
        name,
        dst_mac: SSM_MAC,
        vlan,
        src: SOURCE6.into(),
        dst: GROUP6.into(),
        lens: sweep(small, rounds),
        alternating_tc,
        ext,
    };
    vec![
        // IPv6 + UDP headers are 62 bytes, so the smallest frame that carries the 4-byte sequence
        // number is 66, not 64.
        ssm("ipv6-mcast-ssm.pcap", None, 66, 4, true, Ext::None),
        Expect {
            name: "ipv6-unicast.pcap",
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlan: None,
            src: SOURCE6.into(),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20).into(),
            lens: sweep(66, 2),
            alternating_tc: false,
            ext: Ext::None,
        },
        ssm(
            "ipv6-hbh-router-alert.pcap",
            None,
            74,
            2,
            false,
            Ext::HopByHop(&[0x05, 0x02, 0x00, 0x00, 0x01, 0x00]),
        ),
        ssm(
            "ipv6-destopts.pcap",
            None,
            74,
            2,
            false,
            Ext::DestOpts(&[0x1e, 0x04, 0xde, 0xad, 0xbe, 0xef]),
        ),
        Expect {
            name: "ipv4-mcast.pcap",
            dst_mac: [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
            vlan: None,
            src: Ipv4Addr::new(192, 0, 2, 10).into(),
            dst: Ipv4Addr::new(232, 1, 1, 1).into(),
            lens: sweep(64, 2),
            alternating_tc: false,
            ext: Ext::None,
        },
        ssm("vlan-ipv6-mcast.pcap", Some(100), 70, 2, true, Ext::None),
        Expect {
            // 66/512/1500 plain frames, each grown by the 176-byte Hop-by-Hop header.
            lens: vec![66 + 176, 512 + 176, 1500 + 176],
            ..ssm(
                "ioam-trace.pcap",
                None,
                0,
                0,
                false,
                Ext::HopByHop(IOAM_HBH_START),
            )
        },
    ]
}

#[test]
fn valid_fixtures_parse_as_described() {
    for expect in expectations() {
        let frames = common::read_pcap(&common::fixtures_dir().join(expect.name));
        let lens: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
        assert_eq!(lens, expect.lens, "{}: frame lengths", expect.name);
        for (seq, frame) in (0u32..).zip(&frames) {
            let what = format!("{} packet {seq}", expect.name);
            assert_eq!(
                frame.timestamp,
                START + Duration::from_millis(seq.into()),
                "{what}"
            );
            assert_eq!(frame.orig_len as usize, frame.data.len(), "{what}");
            check_frame(&expect, seq, &frame.data, &what);
        }
    }
}

fn check_frame(expect: &Expect, seq: u32, data: &[u8], what: &str) {
    let packet = SlicedPacket::from_ethernet(data).unwrap_or_else(|e| panic!("{what}: {e}"));

    let Some(LinkSlice::Ethernet2(eth)) = &packet.link else {
        panic!("{what}: not Ethernet II");
    };
    assert_eq!(eth.source(), SRC_MAC, "{what}");
    assert_eq!(eth.destination(), expect.dst_mac, "{what}");
    let vlan = packet.link_exts.iter().find_map(|ext| match ext {
        LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        LinkExtSlice::Macsec(_) => None,
    });
    assert_eq!(vlan, expect.vlan, "{what}");
    if let Some(LinkExtSlice::Vlan(v)) = packet.link_exts.first() {
        assert_eq!(&v.header_slice()[..2], &[0x00, 0x64], "{what}: TCI");
    }

    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        panic!("{what}: no UDP");
    };
    assert_eq!(udp.source_port(), 5000, "{what}");
    assert_eq!(udp.destination_port(), 5001, "{what}");
    let payload = udp.payload();
    assert_eq!(&payload[..4], &seq.to_be_bytes(), "{what}: sequence number");
    for (k, &byte) in payload.iter().enumerate().skip(4) {
        assert_eq!(byte, (k % 256) as u8, "{what}: payload byte {k}");
    }

    match packet
        .net
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no IP"))
    {
        NetSlice::Ipv6(ip) => {
            let header = ip.header();
            assert_eq!(IpAddr::from(header.source_addr()), expect.src, "{what}");
            assert_eq!(
                IpAddr::from(header.destination_addr()),
                expect.dst,
                "{what}"
            );
            assert_eq!(header.hop_limit(), 64, "{what}");
            let tc = if expect.alternating_tc && seq % 2 == 1 {
                0x8a
            } else {
                0
            };
            assert_eq!(header.traffic_class(), tc, "{what}: traffic class");
            assert_eq!(
                usize::from(header.payload_length()),
                ip.extensions().slice().len() + udp.slice().len(),
                "{what}: payload length"
            );
            let checksum = udp
                .to_header()
                .calc_checksum_ipv6(&header.to_header(), payload)
                .unwrap();
            assert_eq!(udp.checksum(), checksum, "{what}: UDP checksum");
            check_extensions(expect.ext, ip.extensions().clone(), what);
        }
        NetSlice::Ipv4(ip) => {
            let header = ip.header();
            assert_eq!(IpAddr::from(header.source_addr()), expect.src, "{what}");
            assert_eq!(
                IpAddr::from(header.destination_addr()),
                expect.dst,
                "{what}"
            );
            assert_eq!(header.ttl(), 64, "{what}");
            let full = header.to_header();
            assert_eq!(
                header.header_checksum(),
                full.calc_header_checksum(),
                "{what}"
            );
            let checksum = udp.to_header().calc_checksum_ipv4(&full, payload).unwrap();
            assert_eq!(udp.checksum(), checksum, "{what}: UDP checksum");
        }
        NetSlice::Arp(_) => panic!("{what}: ARP"),
    }
}

fn check_extensions(expect: Ext, exts: etherparse::Ipv6ExtensionsSlice<'_>, what: &str) {
    let found: Vec<Ipv6ExtensionSlice<'_>> = exts.into_iter().collect();
    match (expect, found.as_slice()) {
        (Ext::None, []) => {}
        (Ext::HopByHop(start), [Ipv6ExtensionSlice::HopByHop(hbh)]) => {
            assert!(
                hbh.payload().starts_with(start),
                "{what}: {:02x?}",
                hbh.payload()
            );
            if start == IOAM_HBH_START {
                check_ioam_trace(hbh.slice(), what);
            }
        }
        (Ext::DestOpts(body), [Ipv6ExtensionSlice::DestinationOptions(opts)]) => {
            assert_eq!(opts.payload(), body, "{what}");
        }
        (expect, found) => panic!("{what}: expected {expect:?}, found {found:?}"),
    }
}

/// The trace data: 160 bytes from byte 16 of the header; node 2 at data offset 120, node 1 at 140,
/// everything before unwritten.
fn check_ioam_trace(hbh: &[u8], what: &str) {
    assert_eq!(hbh.len(), 176, "{what}: Hop-by-Hop length");
    assert_eq!(hbh[1], 21, "{what}: Hdr Ext Len");
    let data = &hbh[16..];
    assert_eq!(data.len(), 160, "{what}");
    assert!(data[..120].iter().all(|&b| b == 0), "{what}: free space");
    let word = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    // [hop_lim | node_id], [ingress | egress], seconds, fraction, transit delay
    let node2 = [(63 << 24) | 2, (20 << 16) | 21, 1_700_000_000, 9000, 2000];
    let node1 = [(64 << 24) | 1, (10 << 16) | 11, 1_700_000_000, 500, 1000];
    for (base, node) in [(120, node2), (140, node1)] {
        let got: Vec<u32> = (0..5).map(|i| word(base + 4 * i)).collect();
        assert_eq!(got, node, "{what}: node data at {base}");
    }
}

#[test]
fn malformed_cases_have_the_documented_lengths() {
    let frames = common::read_pcap(&common::fixtures_dir().join("malformed.pcap"));
    let lens: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
    // a b c d e f g h
    assert_eq!(lens, [10, 44, 66, 74, 242, 122, 242, 114]);
    // etherparse checks lengths but not options: it must reject a, b and c, and accept the rest.
    for (index, frame) in frames.iter().enumerate() {
        let parsed = SlicedPacket::from_ethernet(&frame.data);
        assert_eq!(parsed.is_err(), index < 3, "case index {index}: {parsed:?}");
    }
}

#[test]
fn mixed_is_the_round_robin_of_files_one_to_seven() {
    let files: Vec<Vec<common::Frame>> = expectations()
        .iter()
        .map(|e| common::read_pcap(&common::fixtures_dir().join(e.name)))
        .collect();
    let mut expected = Vec::new();
    for i in 0..files.iter().map(Vec::len).max().unwrap() {
        expected.extend(
            files
                .iter()
                .filter_map(|f| f.get(i))
                .map(|f| f.data.clone()),
        );
    }
    let mixed = common::read_pcap(&common::fixtures_dir().join("mixed.pcap"));
    assert_eq!(mixed.len(), 45);
    for (i, frame) in mixed.iter().enumerate() {
        assert_eq!(frame.data, expected[i], "mixed packet {i}");
        let millis = u64::try_from(i).unwrap();
        assert_eq!(
            frame.timestamp,
            START + Duration::from_millis(millis),
            "mixed packet {i}"
        );
    }
}

//! Shared helpers for the end-to-end tests.
//!
//! - [`netns`]: network namespaces joined by veth pairs, the kernel IOAM chain topology, packet
//!   injection (tcpreplay) and capture (tcpdump), for the root-only tests. Everything it creates
//!   is removed on drop, panics included, and every wait is bounded.
//! - [`frames`]: raw-byte builders and readers for the frames those tests send. They do not use
//!   `mtnode-dataplane` on purpose: a test that checks the dataplane must not share its parser.
//! - [`copies`]: a live branch node's copies checked packet by packet, IOAM entry included.
//! - [`pcapio`]: read and write classic pcap files.
//! - [`scratch`]: temporary directories and the repository's fixtures and example configs, for
//!   the tests that replay pcaps through mtnode.
//!
//! The helpers panic with the failing command and its stderr rather than return errors: they
//! serve tests only, and unwinding still runs every cleanup `Drop`.

#![forbid(unsafe_code)]

pub mod frames {
    //! Builds and reads Ethernet + IPv6 (+ Hop-by-Hop) + UDP frames from raw bytes.
    //! Never panics on received bytes: readers return `None` for anything they do not expect.

    use std::net::Ipv6Addr;

    pub const ETHERTYPE_IPV6: u16 = 0x86dd;
    pub const ETH_HEADER_LEN: usize = 14;
    pub const IPV6_HEADER_LEN: usize = 40;
    pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
    pub const NEXT_HEADER_UDP: u8 = 17;
    /// Hop-by-Hop option type of the IOAM Pre-allocated Trace (RFC 9486 §3: chg bit set).
    pub const OPTION_IOAM_PREALLOC: u8 = 0x31;
    /// IOAM Option-Type of the Pre-allocated Trace (RFC 9197 §4.4).
    pub const IOAM_TYPE_PREALLOC_TRACE: u8 = 0;
    /// The Overflow flag in [`PreallocTrace::flags`] (RFC 9197 §4.4.1: most significant flag bit).
    pub const TRACE_FLAG_OVERFLOW: u8 = 0b1000;

    /// RFC 2464 §7: 33:33 followed by the low 32 bits of the group address.
    pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
        let o = group.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    }

    /// A UDP datagram over IPv6 in an Ethernet frame, optionally with a Hop-by-Hop header.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Udp6 {
        pub src_mac: [u8; 6],
        pub dst_mac: [u8; 6],
        pub src: Ipv6Addr,
        pub dst: Ipv6Addr,
        pub hop_limit: u8,
        pub src_port: u16,
        pub dst_port: u16,
        /// The Hop-by-Hop options area: everything after Next Header and Hdr Ext Len. Its length
        /// plus 2 must be a multiple of 8 (RFC 8200 §4.3).
        pub hop_by_hop: Option<Vec<u8>>,
        pub payload: Vec<u8>,
    }

    impl Udp6 {
        /// Hop limit 64, ports 4000 → 5000, source MAC 02:00:00:00:00:01; the destination MAC
        /// is the group's for multicast and 02:00:00:00:00:02 (the fixtures' router) otherwise.
        pub fn new(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Udp6 {
            let dst_mac = if dst.is_multicast() {
                multicast_mac(dst)
            } else {
                [0x02, 0, 0, 0, 0, 0x02]
            };
            Udp6 {
                src_mac: [0x02, 0, 0, 0, 0, 0x01],
                dst_mac,
                src,
                dst,
                hop_limit: 64,
                src_port: 4000,
                dst_port: 5000,
                hop_by_hop: None,
                payload: payload.to_vec(),
            }
        }

        pub fn with_hop_by_hop(mut self, options: Vec<u8>) -> Udp6 {
            self.hop_by_hop = Some(options);
            self
        }

        pub fn emit(&self) -> Vec<u8> {
            let udp_len = 8 + self.payload.len();
            let mut udp = Vec::with_capacity(udp_len);
            udp.extend_from_slice(&self.src_port.to_be_bytes());
            udp.extend_from_slice(&self.dst_port.to_be_bytes());
            udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&self.payload);
            let sum = udp6_checksum(self.src, self.dst, &udp);
            udp[6..8].copy_from_slice(&sum.to_be_bytes());

            let mut ext = Vec::new();
            let next_header = match &self.hop_by_hop {
                None => NEXT_HEADER_UDP,
                Some(options) => {
                    assert!(
                        (options.len() + 2) % 8 == 0,
                        "Hop-by-Hop options area of {} octets is not 8n - 2",
                        options.len()
                    );
                    ext.push(NEXT_HEADER_UDP);
                    ext.push(((options.len() + 2) / 8 - 1) as u8);
                    ext.extend_from_slice(options);
                    NEXT_HEADER_HOP_BY_HOP
                }
            };

            let mut f = Vec::with_capacity(ETH_HEADER_LEN + IPV6_HEADER_LEN + ext.len() + udp_len);
            f.extend_from_slice(&self.dst_mac);
            f.extend_from_slice(&self.src_mac);
            f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext.len() + udp_len) as u16).to_be_bytes());
            f.push(next_header);
            f.push(self.hop_limit);
            f.extend_from_slice(&self.src.octets());
            f.extend_from_slice(&self.dst.octets());
            f.extend_from_slice(&ext);
            f.extend_from_slice(&udp);
            f
        }
    }

    /// RFC 8200 §8.1: the UDP checksum over the IPv6 pseudo-header; 0 is sent as 0xffff.
    pub fn udp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for c in bytes.chunks(2) {
                let word = if c.len() == 2 {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], 0])
                };
                sum += u32::from(word);
            }
        };
        add(&src.octets());
        add(&dst.octets());
        add(&(udp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, NEXT_HEADER_UDP]);
        add(udp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        match !(sum as u16) {
            0 => 0xffff,
            s => s,
        }
    }

    /// The options area of a Hop-by-Hop header holding one empty Pre-allocated Trace, laid out
    /// as Linux lays it out: `[PadN 01 00][0x31 | len | 0 | 0][trace header][type][zeros]`, the
    /// PadN putting the option's data on a 4n boundary (RFC 9486 §3), plus a trailing PadN when
    /// `remaining_len` is odd. `remaining_len` ≤ 61 keeps the option within 255 octets.
    pub fn ioam_prealloc_options(
        namespace: u16,
        node_len: u8,
        trace_type: u32,
        remaining_len: u8,
    ) -> Vec<u8> {
        assert!(node_len < 32 && remaining_len < 128 && trace_type < 1 << 24);
        let data_len = usize::from(remaining_len) * 4;
        let mut o = vec![0x01, 0x00];
        o.push(OPTION_IOAM_PREALLOC);
        o.push(u8::try_from(2 + 8 + data_len).expect("IOAM option over 255 octets"));
        o.push(0); // reserved
        o.push(IOAM_TYPE_PREALLOC_TRACE);
        o.extend_from_slice(&namespace.to_be_bytes());
        o.push(node_len << 3); // NodeLen(5) | Flags(4) high 3 bits, all 0
        o.push(remaining_len); // Flags low bit 0 | RemainingLen(7)
        o.extend_from_slice(&(trace_type << 8).to_be_bytes()); // type(24) | reserved(8)
        o.resize(o.len() + data_len, 0);
        if (o.len() + 2) % 8 != 0 {
            o.extend_from_slice(&[0x01, 0x02, 0, 0]);
        }
        o
    }

    /// What the tests look at in a received Ethernet + IPv6 frame.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Ipv6Frame<'a> {
        pub dst_mac: [u8; 6],
        pub src_mac: [u8; 6],
        pub hop_limit: u8,
        pub src: Ipv6Addr,
        pub dst: Ipv6Addr,
        /// The IPv6 packet: fixed header onwards.
        pub packet: &'a [u8],
        /// The whole Hop-by-Hop header (Next Header and Hdr Ext Len included), if first.
        pub hop_by_hop: Option<&'a [u8]>,
        /// Offset of the Hop-by-Hop header in `packet`.
        pub hop_by_hop_offset: usize,
    }

    pub fn parse_ipv6(frame: &[u8]) -> Option<Ipv6Frame<'_>> {
        if frame.len() < ETH_HEADER_LEN + IPV6_HEADER_LEN
            || frame[12..14] != ETHERTYPE_IPV6.to_be_bytes()
            || frame[14] >> 4 != 6
        {
            return None;
        }
        let packet = &frame[ETH_HEADER_LEN..];
        let octets = |r: std::ops::Range<usize>| -> [u8; 16] { packet[r].try_into().unwrap() };
        let hop_by_hop = if packet[6] == NEXT_HEADER_HOP_BY_HOP {
            let len = (usize::from(*packet.get(IPV6_HEADER_LEN + 1)?) + 1) * 8;
            Some(packet.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + len)?)
        } else {
            None
        };
        Some(Ipv6Frame {
            dst_mac: frame[0..6].try_into().unwrap(),
            src_mac: frame[6..12].try_into().unwrap(),
            hop_limit: packet[7],
            src: Ipv6Addr::from(octets(8..24)),
            dst: Ipv6Addr::from(octets(24..40)),
            packet,
            hop_by_hop,
            hop_by_hop_offset: IPV6_HEADER_LEN,
        })
    }

    /// A Pre-allocated Trace option as found in a Hop-by-Hop header (RFC 9197 §4.4).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PreallocTrace {
        /// Offset of the option's type octet within the Hop-by-Hop header.
        pub option_offset: usize,
        pub namespace: u16,
        pub node_len: u8,
        /// The 4 flag bits, Overflow the most significant ([`TRACE_FLAG_OVERFLOW`]).
        pub flags: u8,
        pub remaining_len: u8,
        pub trace_type: u32,
        pub data: Vec<u8>,
    }

    impl PreallocTrace {
        /// The node data written so far, newest first (the lowest offset is the last hop).
        pub fn filled_nodes(&self) -> Vec<&[u8]> {
            let start = usize::from(self.remaining_len) * 4;
            let step = usize::from(self.node_len).max(1) * 4;
            self.data
                .get(start..)
                .unwrap_or_default()
                .chunks(step)
                .collect()
        }
    }

    /// Finds the first Pre-allocated Trace among the options of a whole Hop-by-Hop header.
    /// The first five words of the only filled entry of the Hop-by-Hop header's trace, read
    /// by the harness's own parser (panics unless exactly one node filled its slot).
    pub fn single_entry_words(hop_by_hop: &[u8]) -> [u32; 5] {
        let raw = parse_prealloc_trace(hop_by_hop).expect("a Pre-allocated Trace (harness)");
        let nodes = raw.filled_nodes();
        assert_eq!(nodes.len(), 1, "one filled entry");
        let w = |k: usize| u32::from_be_bytes(nodes[0][4 * k..4 * k + 4].try_into().unwrap());
        [w(0), w(1), w(2), w(3), w(4)]
    }

    pub fn parse_prealloc_trace(hop_by_hop: &[u8]) -> Option<PreallocTrace> {
        let mut off = 2;
        while off < hop_by_hop.len() {
            let opt_type = hop_by_hop[off];
            if opt_type == 0 {
                off += 1; // Pad1
                continue;
            }
            let len = usize::from(*hop_by_hop.get(off + 1)?);
            let data = hop_by_hop.get(off + 2..off + 2 + len)?;
            if opt_type == OPTION_IOAM_PREALLOC
                && data.len() >= 10
                && data[1] == IOAM_TYPE_PREALLOC_TRACE
            {
                let t = &data[2..];
                return Some(PreallocTrace {
                    option_offset: off,
                    namespace: u16::from_be_bytes([t[0], t[1]]),
                    node_len: t[2] >> 3,
                    flags: ((t[2] & 0x07) << 1) | (t[3] >> 7),
                    remaining_len: t[3] & 0x7f,
                    trace_type: u32::from_be_bytes([0, t[4], t[5], t[6]]),
                    data: t[8..].to_vec(),
                });
            }
            off += 2 + len;
        }
        None
    }
}

#[cfg(test)]
mod frames_tests {
    use super::frames::*;
    use std::net::Ipv6Addr;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);

    #[test]
    fn prealloc_options_match_the_linux_layout() {
        let o = ioam_prealloc_options(1, 5, 0xF8_0000, 40);
        assert_eq!(o.len() + 2, 176);
        assert_eq!(
            o[..14],
            [
                0x01,
                0x00,
                0x31,
                170,
                0,
                0,
                0x00,
                0x01,
                5 << 3,
                40,
                0xf8,
                0,
                0,
                0
            ]
        );
        assert!(o[14..].iter().all(|&b| b == 0));
        // An odd RemainingLen needs 4 octets of padding to reach 8n.
        assert_eq!(ioam_prealloc_options(1, 5, 0xF8_0000, 7).len() + 2, 48);
    }

    #[test]
    fn built_trace_parses_back() {
        let f = Udp6::new(SRC, DST, b"x")
            .with_hop_by_hop(ioam_prealloc_options(7, 5, 0xF8_0000, 40))
            .emit();
        let p = parse_ipv6(&f).unwrap();
        assert_eq!((p.src, p.dst, p.hop_limit), (SRC, DST, 64));
        assert_eq!(p.dst_mac, [2, 0, 0, 0, 0, 2]);
        let hbh = p.hop_by_hop.unwrap();
        assert_eq!((hbh[0], hbh[1]), (NEXT_HEADER_UDP, 21));
        let t = parse_prealloc_trace(hbh).unwrap();
        assert_eq!(
            (
                t.option_offset,
                t.namespace,
                t.node_len,
                t.flags,
                t.remaining_len,
                t.trace_type
            ),
            (4, 7, 5, 0, 40, 0xF8_0000)
        );
        assert_eq!(t.data.len(), 160);
        assert!(t.filled_nodes().is_empty());
    }

    #[test]
    fn udp_checksum_verifies_and_multicast_mac_maps() {
        let f = Udp6::new(SRC, DST, b"odd").emit();
        let udp = &f[14 + 40..];
        // Summing over a correct checksum gives zero after complement.
        assert_eq!(udp6_checksum(SRC, DST, udp), 0xffff);
        let g = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
        assert_eq!(multicast_mac(g), [0x33, 0x33, 0x80, 0, 0, 1]);
        assert_eq!(Udp6::new(SRC, g, b"").dst_mac, multicast_mac(g));
    }
}

pub mod copies {
    //! A live branch node's copies on one branch, checked the same way whichever backend
    //! forwarded them: exactly one copy of every packet sent (a sequence number opens each UDP
    //! payload), routed (hop limit 63), the packet's own UDP datagram, and exactly this node's
    //! IOAM entry of trace type 0xF80000 in namespace 1, read by `mtnode_dataplane::ioam` and
    //! octet for octet by the harness's own reader ([`super::frames`]).

    use std::net::Ipv6Addr;

    use mtnode_dataplane::ioam::{find_trace, Hops};
    use mtnode_dataplane::wire::IoamTrace;

    use super::frames::{parse_ipv6, single_entry_words};

    /// What one branch's copies must be.
    #[derive(Debug, Clone, Copy)]
    pub struct Branch<'a> {
        pub name: &'a str,
        pub source: Ipv6Addr,
        pub group: Ipv6Addr,
        /// The frames sent, by sequence number.
        pub sent: &'a [Vec<u8>],
        pub node_id: u32,
        pub ingress_if: u16,
        pub egress_if: u16,
        /// The trace's node length (words) and hops of room.
        pub node_len: u8,
        pub hops: u8,
        /// Wall-clock ns within which the stream was sent.
        pub window: (u64, u64),
    }

    pub fn check(frames: &[Vec<u8>], b: &Branch<'_>, ctx: &str) {
        let (name, n) = (b.name, b.sent.len());
        assert_eq!(frames.len(), n, "copies on {name}: {ctx}");
        let mut seen = vec![false; n];
        for f in frames {
            let g = parse_ipv6(f).expect("IPv6 copy");
            assert_eq!((g.src, g.dst), (b.source, b.group));
            assert_eq!(g.hop_limit, 63, "route mode decrements the hop limit");
            let hbh = g.hop_by_hop.expect("a Hop-by-Hop header on every copy");
            let udp = &g.packet[40 + hbh.len()..];
            let seq = u32::from_be_bytes(udp[8..12].try_into().unwrap()) as usize;
            assert!(seq < n, "{name}: sequence {seq}");
            assert!(!seen[seq], "{name}: sequence {seq} twice");
            seen[seq] = true;
            // The payload (and UDP header) is the packet's own, untouched.
            let orig = parse_ipv6(&b.sent[seq]).unwrap();
            let orig_udp = &orig.packet[40 + orig.hop_by_hop.map_or(0, |h| h.len())..];
            assert_eq!(udp, orig_udp, "{name}: packet {seq}'s UDP datagram");

            // mtnode's decoder.
            let loc = find_trace(f, 14 + 40)
                .expect("well-formed Hop-by-Hop")
                .expect("a trace");
            let trace = IoamTrace::new_checked(&f[loc.trace_range()]).expect("trace");
            assert_eq!(
                (trace.namespace_id(), trace.node_len(), trace.flags()),
                (1, b.node_len, 0),
                "{name} packet {seq}"
            );
            assert_eq!(trace.remaining_len(), (b.hops - 1) * b.node_len);
            let hops: Vec<_> = Hops::new(trace).collect();
            assert_eq!(hops.len(), 1, "{name} packet {seq}: one entry");
            let h = hops[0];
            assert_eq!(h.node_id, Some(b.node_id), "{name} packet {seq}");
            assert_eq!(h.hop_limit, Some(63));
            assert_eq!(
                (h.ingress_if, h.egress_if),
                (Some(b.ingress_if), Some(b.egress_if)),
                "{name} packet {seq}: interface IDs"
            );
            let ts = u64::from(h.timestamp_secs.unwrap()) * 1_000_000_000
                + u64::from(h.timestamp_frac.unwrap());
            let (before, after) = b.window;
            assert!(
                ts + 1_000_000_000 >= before && ts <= after,
                "{name} packet {seq}: timestamp {ts} outside [{before}, {after}]"
            );
            assert!(
                h.transit_delay.unwrap() < 1_000_000_000,
                "{name} packet {seq}: transit delay {:?}",
                h.transit_delay
            );
            // The harness's own reader agrees on every octet of the entry.
            assert_eq!(
                single_entry_words(hbh),
                [
                    63 << 24 | b.node_id,
                    u32::from(b.ingress_if) << 16 | u32::from(b.egress_if),
                    h.timestamp_secs.unwrap(),
                    h.timestamp_frac.unwrap(),
                    h.transit_delay.unwrap(),
                ],
                "{name} packet {seq}"
            );
        }
    }
}

pub mod pcapio {
    //! Classic pcap files (Ethernet link type), as tcpreplay reads and tcpdump writes them.

    use std::fs::File;
    use std::io::{BufReader, BufWriter};
    use std::path::Path;
    use std::time::Duration;

    use anyhow::Context as _;
    use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};

    /// Writes `frames` 1 µs apart.
    pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> anyhow::Result<()> {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut w = PcapWriter::new(BufWriter::new(file))?;
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_micros(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))?;
        }
        Ok(())
    }

    pub fn read_pcap(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(read_pcap_timed(path)?.into_iter().map(|(_, f)| f).collect())
    }

    /// Every frame with its capture time.
    pub fn read_pcap_timed(path: &Path) -> anyhow::Result<Vec<(std::time::Duration, Vec<u8>)>> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut r = PcapReader::new(BufReader::new(file))
            .with_context(|| format!("read pcap header of {}", path.display()))?;
        let mut frames = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.with_context(|| format!("read {}", path.display()))?;
            frames.push((p.timestamp, p.data.into_owned()));
        }
        Ok(frames)
    }
}

pub mod netns {
    //! Network namespaces for root-only tests, and the kernel IOAM chain built from them.
    //!
    //! Every namespace, daemon and capture started here is torn down on drop, also when a test
    //! panics; a namespace left behind by a killed test process (its name carries the pid) is
    //! removed by the next one. When a test panics, the namespace's work directory (captures,
    //! daemon configs and logs) is kept and its path printed. No wait is unbounded.

    use std::ffi::OsStr;
    use std::fmt::Display;
    use std::io::{BufRead, BufReader, Read, Write as _};
    use std::net::Ipv6Addr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{mpsc, Mutex, Once};
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use anyhow::{anyhow, bail, Context as _};

    /// Bound for one short command (ip, sysctl, kill).
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
    /// Bound for a daemon or capture to become ready.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

    /// The effective uid, from `/proc/self/status` (no libc, no unsafe).
    pub fn euid() -> Option<u32> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        line.split_whitespace().nth(2)?.parse().ok()
    }

    /// True when the test may run. Otherwise says so loudly on stderr, or, under `CI=true`,
    /// panics: CI must never pass by skipping.
    pub fn require_root(test: &str) -> bool {
        if euid() == Some(0) {
            return true;
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test} needs root and CI=true: CI never skips the netns tests");
        }
        say_skipped("needs root", test);
        false
    }

    /// True when the kernel routes IPv6 multicast (ip6mr, for smcroute's static routes: the
    /// kernel's side of a branch point). A kernel built without `CONFIG_IPV6_MROUTE` has no
    /// `/proc/net/ip6_mr_vif`; then the test says SKIPPED loudly with the reason, CI included:
    /// no code of ours can give the machine's kernel a feature it was built without.
    pub fn require_kernel_mroute(test: &str) -> bool {
        if std::path::Path::new("/proc/net/ip6_mr_vif").exists() {
            return true;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let why = format!(
            "kernel {} has no IPv6 multicast routing, CONFIG_IPV6_MROUTE",
            release.trim()
        );
        say_skipped(&why, test);
        false
    }

    /// `SKIPPED (why): test` in a banner, straight to the stderr handle (libtest captures
    /// eprintln!, and a skip must be seen) in one write, so that parallel tests' output cannot
    /// split the line `scripts/test` counts.
    fn say_skipped(why: &str, test: &str) {
        let banner = "**********************************************";
        let text = format!("\n{banner}\nSKIPPED ({why}): {test}\n{banner}\n");
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    fn describe(cmd: &Command) -> String {
        let mut s = cmd.get_program().to_string_lossy().into_owned();
        for a in cmd.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
        cmd.spawn().map_err(|e| {
            let prog = cmd.get_program().to_string_lossy().into_owned();
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("{prog} not found: run scripts/setup as root")
            } else {
                anyhow!("spawn {}: {e}", describe(cmd))
            }
        })
    }

    fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }

    /// Polls `child` until it exits or `deadline`; `None` on timeout (the child still runs).
    fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => return None,
            }
        }
    }

    fn kill_and_reap(child: &mut Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs `cmd` to completion, killing it after `timeout`. Errors unless it exits with 0;
    /// the error names the command and carries its stderr.
    pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(cmd)?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = wait_until(&mut child, Instant::now() + timeout);
        if status.is_none() {
            kill_and_reap(&mut child);
        }
        let output = Output {
            status: status.unwrap_or_else(|| child.wait().expect("reaped child status")),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        match status {
            None => bail!("{} timed out after {timeout:?}: {stderr}", describe(cmd)),
            Some(s) if !s.success() => bail!("{} failed ({s}): {}", describe(cmd), stderr.trim()),
            Some(_) => Ok(output),
        }
    }

    /// [`run_bounded`] with [`COMMAND_TIMEOUT`], panicking on failure.
    pub fn run_ok(cmd: &mut Command) -> Output {
        run_bounded(cmd, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn ip_cmd<I, S>(args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("ip");
        c.args(args);
        c
    }

    const NAME_PREFIX: &str = "mtn-";
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    /// `ip netns add` races with itself on the first mount of /run/netns.
    static CREATE_LOCK: Mutex<()> = Mutex::new(());
    static SWEEP: Once = Once::new();

    /// Removes namespaces named by this harness whose creating process is gone (a test killed
    /// before its drops ran), with whatever still runs inside them.
    fn sweep_stale() {
        let Ok(list) = run_bounded(&mut ip_cmd(["netns", "list"]), COMMAND_TIMEOUT) else {
            return;
        };
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = name
                .strip_prefix(NAME_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = writeln!(
                    std::io::stderr(),
                    "netns: removing stale namespace {name} (pid {pid} is gone)"
                );
                remove_namespace(name);
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(name));
            }
        }
    }

    fn kill_pids_in(name: &str) {
        if let Ok(out) = run_bounded(&mut ip_cmd(["netns", "pids", name]), COMMAND_TIMEOUT) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = run_bounded(Command::new("kill").args(["-KILL", pid]), COMMAND_TIMEOUT);
            }
        }
    }

    /// Never panics: it runs from `Drop`, possibly while unwinding.
    fn remove_namespace(name: &str) {
        kill_pids_in(name);
        if let Err(e) = run_bounded(&mut ip_cmd(["netns", "del", name]), COMMAND_TIMEOUT) {
            eprintln!("netns: could not delete {name}: {e:#}");
        }
    }

    /// A network namespace, deleted on drop together with every process left inside it.
    #[derive(Debug)]
    pub struct Netns {
        name: String,
        role: String,
        workdir: PathBuf,
    }

    impl Netns {
        /// Creates `mtn-<pid>-<n>` (at most 15 characters) with `lo` up and duplicate address
        /// detection off, so addresses are usable at once. `role` only labels messages.
        pub fn new(role: &str) -> Netns {
            SWEEP.call_once(sweep_stale);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{NAME_PREFIX}{}-{n}", std::process::id());
            assert!(name.len() <= 15, "namespace name {name} over 15 characters");
            let workdir = std::env::temp_dir().join(&name);
            {
                let _guard = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                run_ok(&mut ip_cmd(["netns", "add", &name]));
            }
            // From here on, Drop cleans up whatever fails below.
            let ns = Netns {
                name,
                role: role.to_owned(),
                workdir,
            };
            std::fs::create_dir_all(&ns.workdir)
                .unwrap_or_else(|e| panic!("create {}: {e}", ns.workdir.display()));
            ns.ip(["link", "set", "lo", "up"]);
            ns.sysctls(&[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                // Fewer stray packets in captures.
                ("net.ipv6.conf.default.router_solicitations", "0"),
            ]);
            ns
        }

        pub fn name(&self) -> &str {
            &self.name
        }

        pub fn role(&self) -> &str {
            &self.role
        }

        /// A directory for this namespace's files (captures, configs, logs), removed on drop
        /// unless the test panicked.
        pub fn workdir(&self) -> &Path {
            &self.workdir
        }

        /// `ip netns exec NAME args…`, not yet run.
        pub fn command<I, S>(&self, args: I) -> Command
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.name]).args(args);
            c
        }

        /// Runs `args` inside the namespace; errors name the command and carry its stderr.
        pub fn try_exec<I, S>(&self, args: I) -> anyhow::Result<Output>
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            run_bounded(&mut self.command(args), COMMAND_TIMEOUT)
                .with_context(|| format!("in {} ({})", self.name, self.role))
        }

        /// curl (an HTTP client independent of ours) inside the namespace, 5 s at most: the
        /// status (0 when there was no answer) and the body.
        pub fn curl(&self, args: &[&str]) -> (u16, String) {
            let mut all = vec!["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}"];
            all.extend_from_slice(args);
            let out = self.exec(&all);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
            (code.trim().parse().unwrap_or(0), body.to_string())
        }

        /// `PATCH url` with a JSON `body`, with `token` as the bearer token when given.
        pub fn curl_patch(&self, url: &str, token: Option<&str>, body: &str) -> (u16, String) {
            let auth = token.map(|t| format!("Authorization: Bearer {t}"));
            let mut args = vec!["-X", "PATCH", "-H", "Content-Type: application/json"];
            if let Some(a) = &auth {
                args.extend(["-H", a.as_str()]);
            }
            args.extend(["-d", body, url]);
            self.curl(&args)
        }

        /// Runs `args` inside the namespace; panics with the command and its stderr on failure.
        pub fn exec<I, S>(&self, args: I) -> Output
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            self.try_exec(args).unwrap_or_else(|e| panic!("{e:#}"))
        }

        /// `ip -n NAME args…`; panics on failure.
        pub fn ip<I, S>(&self, args: I) -> Output
        where
            I: IntoIterator<Item = S>,
            S: AsRef<OsStr>,
        {
            let mut c = ip_cmd(["-n", &self.name]);
            c.args(args);
            run_bounded(&mut c, COMMAND_TIMEOUT)
                .with_context(|| format!("in {} ({})", self.name, self.role))
                .unwrap_or_else(|e| panic!("{e:#}"))
        }

        pub fn sysctl(&self, key: &str, value: impl Display) {
            self.sysctls(&[(key, &value.to_string())]);
        }

        pub fn sysctls(&self, settings: &[(&str, &str)]) {
            let mut args = vec!["sysctl".to_owned(), "-qw".to_owned()];
            args.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
            self.exec(args);
        }

        /// No IPv6 on any interface of this namespace: no router solicitation or MLD report
        /// reaches the links, so a node sees exactly the test's packets.
        pub fn ipv6_off(&self) {
            self.sysctls(&[
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
            ]);
        }

        pub fn read_sysctl(&self, key: &str) -> String {
            let out = self.exec(["sysctl", "-n", key]);
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }

        pub fn link_up(&self, ifname: &str) {
            self.ip(["link", "set", "dev", ifname, "up"]);
        }

        /// Adds an address without duplicate address detection, usable at once.
        pub fn add_addr(&self, ifname: &str, cidr: &str) {
            self.ip(["addr", "add", cidr, "dev", ifname, "nodad"]);
        }

        pub fn add_route(&self, prefix: &str, via: &str) {
            self.ip(["route", "add", prefix, "via", via]);
        }

        /// A permanent neighbor entry: no neighbor discovery delay nor queueing on first use.
        pub fn add_neigh(&self, addr: &str, ifname: &str, mac: &str) {
            self.ip([
                "neigh",
                "replace",
                addr,
                "lladdr",
                mac,
                "dev",
                ifname,
                "nud",
                "permanent",
            ]);
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            remove_namespace(&self.name);
            if thread::panicking() {
                eprintln!(
                    "netns: kept {} ({}) for inspection",
                    self.workdir.display(),
                    self.role
                );
            } else {
                let _ = std::fs::remove_dir_all(&self.workdir);
            }
        }
    }

    /// MTU of the veth pairs: a 1500-octet packet plus a large IOAM trace still fits.
    pub const VETH_MTU: u32 = 9000;

    /// Generator, node and sink in a line: `g0` (gen) — `n_in` (node) and `n_out` (node) —
    /// `s0` (sink), with the kernel's IPv6 off in all three (only the test's packets cross the
    /// links) and MTU 3000 (veth takes native XDP below a page).
    #[derive(Debug)]
    pub struct Line {
        pub gen: Netns,
        pub node: Netns,
        pub sink: Netns,
    }

    pub fn line() -> Line {
        let l = Line {
            gen: Netns::new("gen"),
            node: Netns::new("node"),
            sink: Netns::new("sink"),
        };
        for ns in [&l.gen, &l.node, &l.sink] {
            ns.ipv6_off();
        }
        xdp_veth(&l.gen, "g0", &l.node, "n_in");
        xdp_veth(&l.node, "n_out", &l.sink, "s0");
        l
    }

    /// Below a page: what veth needs to run XDP programs natively (AF_XDP copy mode on veth).
    pub const XDP_MTU: &str = "3000";

    /// [`veth`] with MTU [`XDP_MTU`] at both ends.
    pub fn xdp_veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
        veth(a, a_if, b, b_if);
        a.ip(["link", "set", "dev", a_if, "mtu", XDP_MTU]);
        b.ip(["link", "set", "dev", b_if, "mtu", XDP_MTU]);
    }

    /// A veth pair `a_if` in `a` — `b_if` in `b`, MTU [`VETH_MTU`], both ends up.
    pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
        veth_with_macs(a, a_if, None, b, b_if, None);
    }

    /// [`veth`] with chosen MAC addresses, set before the links come up.
    pub fn veth_with_macs(
        a: &Netns,
        a_if: &str,
        a_mac: Option<&str>,
        b: &Netns,
        b_if: &str,
        b_mac: Option<&str>,
    ) {
        let mtu = VETH_MTU.to_string();
        let mut args = vec!["link", "add", a_if, "mtu", &mtu];
        if let Some(m) = a_mac {
            args.extend(["address", m]);
        }
        args.extend(["type", "veth", "peer", "name", b_if, "mtu", &mtu]);
        if let Some(m) = b_mac {
            args.extend(["address", m]);
        }
        args.extend(["netns", b.name()]);
        a.ip(args);
        a.link_up(a_if);
        b.link_up(b_if);
    }

    /// Sends a pcap out of `iface` in `ns` as fast as tcpreplay can (bounded to 10 s).
    pub fn inject(ns: &Netns, iface: &str, pcap: &Path) {
        inject_with(ns, iface, pcap, &["--topspeed"]);
    }

    /// Sends a pcap at `pps` packets per second (bounded to 10 s + the pcap's duration).
    pub fn inject_pps(ns: &Netns, iface: &str, pcap: &Path, pps: u32) {
        inject_with(ns, iface, pcap, &[&format!("--pps={pps}")]);
    }

    fn inject_with(ns: &Netns, iface: &str, pcap: &Path, rate: &[&str]) {
        let mut cmd = ns.command(["tcpreplay", "-q", "-i", iface]);
        cmd.args(rate).arg(pcap);
        let timeout = COMMAND_TIMEOUT + pcap_duration_bound(pcap, rate);
        run_bounded(&mut cmd, timeout)
            .with_context(|| format!("inject into {iface} in {}", ns.role()))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn pcap_duration_bound(pcap: &Path, rate: &[&str]) -> Duration {
        let pps = rate
            .iter()
            .find_map(|r| r.strip_prefix("--pps="))
            .and_then(|p| p.parse::<u64>().ok());
        match (pps, crate::pcapio::read_pcap(pcap)) {
            (Some(pps), Ok(frames)) if pps > 0 => {
                Duration::from_secs(frames.len() as u64 / pps + 1)
            }
            _ => Duration::ZERO,
        }
    }

    /// A running tcpdump writing a pcap; see [`capture`].
    #[derive(Debug)]
    pub struct Capture {
        child: Option<Child>,
        ns_role: String,
        path: PathBuf,
        deadline: Instant,
        stderr: Option<JoinHandle<String>>,
    }

    /// Starts tcpdump on `iface` in `ns` and returns once it is capturing. It stops after
    /// `count` packets matching `filter` (pcap-filter syntax; "" for all) or at `timeout` from
    /// now, whichever comes first; [`Capture::finish`] waits for that and gives the pcap.
    pub fn capture(
        ns: &Netns,
        iface: &str,
        filter: &str,
        count: usize,
        timeout: Duration,
    ) -> Capture {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = ns.workdir().join(format!("capture-{iface}-{n}.pcap"));
        let count = count.to_string();
        let mut cmd = ns.command([
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-s",
            "0",
            // With -s 0 each ring slot is as big as the largest packet, so the default 2 MB
            // holds only a handful: a burst from a busy-polling sender overflows it.
            "-B",
            "32768",
            // Per-packet delivery and flushing: the count and the file are right at once.
            "--immediate-mode",
            "-U",
            // 32 MiB of kernel buffer (KiB): a loaded machine may not schedule tcpdump for a
            // while, and the default 2 MiB then drops packets the test counts.
            "-B",
            "32768",
            // Debian's tcpdump drops to user tcpdump, who may not write in the workdir.
            "-Z",
            "root",
            "-c",
            &count,
            "-w",
        ]);
        cmd.arg(&path);
        if !filter.is_empty() {
            cmd.arg(filter);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(&mut cmd).unwrap_or_else(|e| panic!("{e:#}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut cap = Capture {
            child: Some(child),
            ns_role: ns.role().to_owned(),
            path,
            deadline: Instant::now() + timeout,
            stderr: Some(reader),
        };
        // Ok also when tcpdump exited already: then its stderr says why, below.
        if ready_rx.recv_timeout(READY_TIMEOUT).is_err() {
            cap.stop();
            let log = cap.stderr_text();
            panic!(
                "tcpdump on {iface} in {} not ready within {READY_TIMEOUT:?}: {log}",
                ns.role()
            );
        }
        cap
    }

    impl Capture {
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Waits until tcpdump has its count or its time is up, stops it, and returns the pcap
        /// (valid while the namespace lives).
        pub fn finish(mut self) -> PathBuf {
            let timed_out = match self.child.as_mut() {
                Some(child) => wait_until(child, self.deadline).is_none(),
                None => false,
            };
            if timed_out {
                self.stop();
            } else if let Some(status) = self.child.take().and_then(|mut c| c.wait().ok()) {
                if !status.success() {
                    let log = self.stderr_text();
                    panic!("tcpdump in {} failed ({status}): {log}", self.ns_role);
                }
            }
            self.path.clone()
        }

        /// [`Capture::finish`], read into frames.
        pub fn finish_frames(self) -> Vec<Vec<u8>> {
            let path = self.finish();
            crate::pcapio::read_pcap(&path).unwrap_or_else(|e| panic!("{e:#}"))
        }

        /// SIGINT lets tcpdump flush and close the file; SIGKILL if it does not exit soon.
        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let pid = child.id().to_string();
                let _ = run_bounded(Command::new("kill").args(["-INT", &pid]), COMMAND_TIMEOUT);
                if wait_until(&mut child, Instant::now() + Duration::from_secs(1)).is_none() {
                    kill_and_reap(&mut child);
                }
            }
        }

        fn stderr_text(&mut self) -> String {
            self.stderr
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default()
        }
    }

    impl Drop for Capture {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// An `smcrouted` (static multicast routes) running in a namespace; killed on drop.
    #[derive(Debug)]
    pub struct Smcrouted {
        child: Child,
        log: PathBuf,
    }

    impl Smcrouted {
        /// Starts smcrouted in `ns` with `conf` (smcroute.conf syntax), its socket, pid file and
        /// log in the namespace's workdir, and waits until the kernel lists as many multicast
        /// routes as `conf` has `mroute` lines.
        pub fn start(ns: &Netns, ident: &str, conf: &str) -> Smcrouted {
            let dir = ns.workdir();
            let conf_path = dir.join(format!("{ident}.conf"));
            let log = dir.join(format!("{ident}.log"));
            std::fs::write(&conf_path, conf)
                .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
            let mut cmd = ns.command(["smcrouted", "-n", "-N", "-l", "info", "-i", ident, "-f"]);
            cmd.arg(&conf_path)
                .arg("-u")
                .arg(dir.join(format!("{ident}.sock")))
                .arg("-P")
                .arg(dir.join(format!("{ident}.pid")))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log file"))
                .stderr(log_file);
            let child = spawn(&mut cmd).unwrap_or_else(|e| panic!("{e:#}"));
            let mut d = Smcrouted { child, log };

            let want = conf
                .lines()
                .filter(|l| l.trim_start().starts_with("mroute"))
                .count();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(Some(status)) = d.child.try_wait() {
                    panic!(
                        "smcrouted in {} exited ({status}): {}",
                        ns.role(),
                        d.log_text()
                    );
                }
                let have: usize = ["-4", "-6"]
                    .iter()
                    .filter_map(|family| {
                        let mut c = ip_cmd(["-n", ns.name(), *family, "mroute", "show"]);
                        run_bounded(&mut c, COMMAND_TIMEOUT).ok()
                    })
                    .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
                    .sum();
                if have >= want {
                    return d;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "smcrouted in {}: {have} of {want} routes after {READY_TIMEOUT:?}: {}",
                        ns.role(),
                        d.log_text()
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
        }

        pub fn log_text(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }
    }

    impl Drop for Smcrouted {
        fn drop(&mut self) {
            kill_and_reap(&mut self.child);
        }
    }

    /// A live mtnode (`mtnode run`, or the tests' `mtnode-cli run`) in a namespace. Started with
    /// [`LiveNode::start`], which returns once the node has bound its sockets; stopped with
    /// SIGTERM by [`LiveNode::stop`], which returns its final statistics (`--json`). Killed on
    /// drop if still running.
    #[derive(Debug)]
    pub struct LiveNode {
        child: Option<Child>,
        role: String,
        stdout: Option<JoinHandle<Vec<u8>>>,
        stderr: Option<JoinHandle<String>>,
    }

    /// Bound for a live node to bind its sockets (it retries busy binds for up to 5 s).
    pub const LIVE_READY_TIMEOUT: Duration = Duration::from_secs(20);

    impl LiveNode {
        /// Runs `bin run --config CONFIG --json` in `ns` (`bin`: `mtnode` or the tests'
        /// `mtnode-cli`), and waits for its "ready" line.
        pub fn start(ns: &Netns, bin: &Path, config: &Path) -> LiveNode {
            let mut cmd = ns.command([bin.as_os_str()]);
            cmd.arg("run");
            cmd.arg("--config")
                .arg(config)
                .arg("--json")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = spawn(&mut cmd).unwrap_or_else(|e| panic!("{e:#}"));
            let stdout = drain(child.stdout.take());
            let err = child.stderr.take().expect("piped stderr");
            let (ready_tx, ready_rx) = mpsc::channel();
            let stderr = thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.starts_with("mtnode run:") && line.contains(" ready on ") {
                        let _ = ready_tx.send(());
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            });
            let mut node = LiveNode {
                child: Some(child),
                role: ns.role().to_owned(),
                stdout: Some(stdout),
                stderr: Some(stderr),
            };
            if ready_rx.recv_timeout(LIVE_READY_TIMEOUT).is_err() {
                node.kill();
                let log = node.stderr_text();
                panic!(
                    "live node in {} not ready within {LIVE_READY_TIMEOUT:?}: {log}",
                    node.role
                );
            }
            node
        }

        /// SIGTERM, wait (bounded) for the final statistics, and return them with the node's
        /// stderr. Panics when it does not exit cleanly.
        pub fn stop(mut self) -> (serde_json::Value, String) {
            let mut child = self.child.take().expect("running");
            let pid = child.id().to_string();
            run_ok(Command::new("kill").args(["-TERM", &pid]));
            let status = wait_until(&mut child, Instant::now() + Duration::from_secs(15));
            if status.is_none() {
                kill_and_reap(&mut child);
            }
            let out = self
                .stdout
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default();
            let log = self.stderr_text();
            match status {
                Some(s) if s.success() => {}
                other => panic!("live node in {} ended with {other:?}: {log}", self.role),
            }
            let v = serde_json::from_slice(&out).unwrap_or_else(|e| {
                panic!(
                    "live node in {}: stdout is not JSON ({e}): {}\n{log}",
                    self.role,
                    String::from_utf8_lossy(&out)
                )
            });
            (v, log)
        }

        fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                kill_and_reap(&mut c);
            }
        }

        fn stderr_text(&mut self) -> String {
            self.stderr
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default()
        }
    }

    impl Drop for LiveNode {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// `src — r1 — r2 — dst`, four namespaces in a line, the routers being Linux with IOAM
    /// transit enabled on their ingress interfaces: the kernel peer of the interop tests.
    ///
    /// | link | addresses | interfaces (MAC) |
    /// |---|---|---|
    /// | a | 2001:db8:a::1 src, ::2 r1 | `s0` (02:00:00:00:0a:01) — `r1a` (02:00:00:00:00:02) |
    /// | b | 2001:db8:b::1 r1, ::2 r2 | `r1b` (02:00:00:00:0b:01) — `r2a` (02:00:00:00:0b:02) |
    /// | c | 2001:db8:c::1 r2, ::2 dst | `r2b` (02:00:00:00:0c:01) — `d0` (02:00:00:00:0c:02) |
    ///
    /// src also holds 2001:db8:1::10/64 and dst 2001:db8:2::10/64 (the fixtures' unicast source
    /// and destination); both prefixes are routed along the chain both ways, every next hop has a
    /// permanent neighbor entry, and r1's ingress carries the fixtures' destination MAC, so a
    /// frame replayed on `s0` reaches r1 as it is. A unicast frame to any other MAC is dropped
    /// by r1 (PACKET_OTHERHOST), promiscuous mode or not.
    ///
    /// IOAM: namespace 1 in both routers; node IDs 101 and 102; interface IDs r1a 11, r1b 12,
    /// r2a 21, r2b 22; `ioam6_enabled` on r1a and r2a only. Wide IDs are left unset.
    #[derive(Debug)]
    pub struct KernelIoamChain {
        // Fields drop in order: the daemons before the namespaces they run in.
        smcrouted: Vec<Smcrouted>,
        pub src: Netns,
        pub r1: Netns,
        pub r2: Netns,
        pub dst: Netns,
    }

    impl KernelIoamChain {
        pub const SRC_IF: &'static str = "s0";
        pub const R1_IN: &'static str = "r1a";
        pub const R1_OUT: &'static str = "r1b";
        pub const R2_IN: &'static str = "r2a";
        pub const R2_OUT: &'static str = "r2b";
        pub const DST_IF: &'static str = "d0";

        pub const IOAM_NAMESPACE: u16 = 1;
        pub const R1_NODE_ID: u32 = 101;
        pub const R2_NODE_ID: u32 = 102;
        pub const R1_IN_ID: u16 = 11;
        pub const R1_OUT_ID: u16 = 12;
        pub const R2_IN_ID: u16 = 21;
        pub const R2_OUT_ID: u16 = 22;

        /// The MAC on r1's ingress: the destination MAC of the unicast fixtures.
        pub const R1_IN_MAC: &'static str = "02:00:00:00:00:02";
        pub const UNICAST_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
        pub const UNICAST_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10);
        pub const MCAST_SOURCE: Ipv6Addr = Self::UNICAST_SRC;
        pub const MCAST_GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);

        /// The chain for unicast; see [`KernelIoamChain::with_multicast`] for (S,G) routes.
        pub fn new() -> KernelIoamChain {
            let mut chain = KernelIoamChain {
                smcrouted: Vec::new(),
                src: Netns::new("src"),
                r1: Netns::new("r1"),
                r2: Netns::new("r2"),
                dst: Netns::new("dst"),
            };
            chain.build();
            chain
        }

        /// The chain plus smcrouted in r1 and r2 routing (MCAST_SOURCE, MCAST_GROUP) from each
        /// router's ingress to its egress.
        pub fn with_multicast() -> KernelIoamChain {
            let mut chain = KernelIoamChain::new();
            chain.start_multicast();
            chain
        }

        fn build(&mut self) {
            let (src, r1, r2, dst) = (&self.src, &self.r1, &self.r2, &self.dst);
            let (s0_mac, r1b_mac) = ("02:00:00:00:0a:01", "02:00:00:00:0b:01");
            let (r2a_mac, r2b_mac, d0_mac) = (
                "02:00:00:00:0b:02",
                "02:00:00:00:0c:01",
                "02:00:00:00:0c:02",
            );
            veth_with_macs(
                src,
                Self::SRC_IF,
                Some(s0_mac),
                r1,
                Self::R1_IN,
                Some(Self::R1_IN_MAC),
            );
            veth_with_macs(
                r1,
                Self::R1_OUT,
                Some(r1b_mac),
                r2,
                Self::R2_IN,
                Some(r2a_mac),
            );
            veth_with_macs(
                r2,
                Self::R2_OUT,
                Some(r2b_mac),
                dst,
                Self::DST_IF,
                Some(d0_mac),
            );

            src.add_addr(Self::SRC_IF, "2001:db8:a::1/64");
            src.add_addr(Self::SRC_IF, "2001:db8:1::10/64");
            r1.add_addr(Self::R1_IN, "2001:db8:a::2/64");
            r1.add_addr(Self::R1_OUT, "2001:db8:b::1/64");
            r2.add_addr(Self::R2_IN, "2001:db8:b::2/64");
            r2.add_addr(Self::R2_OUT, "2001:db8:c::1/64");
            dst.add_addr(Self::DST_IF, "2001:db8:c::2/64");
            dst.add_addr(Self::DST_IF, "2001:db8:2::10/64");

            src.add_neigh("2001:db8:a::2", Self::SRC_IF, Self::R1_IN_MAC);
            r1.add_neigh("2001:db8:a::1", Self::R1_IN, s0_mac);
            r1.add_neigh("2001:db8:b::2", Self::R1_OUT, r2a_mac);
            r2.add_neigh("2001:db8:b::1", Self::R2_IN, r1b_mac);
            r2.add_neigh("2001:db8:c::2", Self::R2_OUT, d0_mac);
            dst.add_neigh("2001:db8:c::1", Self::DST_IF, r2b_mac);

            src.add_route("default", "2001:db8:a::2");
            for prefix in ["2001:db8:2::/64", "2001:db8:c::/64"] {
                r1.add_route(prefix, "2001:db8:b::2");
            }
            r1.add_route("2001:db8:1::/64", "2001:db8:a::1");
            r2.add_route("2001:db8:2::/64", "2001:db8:c::2");
            for prefix in ["2001:db8:1::/64", "2001:db8:a::/64"] {
                r2.add_route(prefix, "2001:db8:b::1");
            }
            dst.add_route("default", "2001:db8:c::1");

            for (r, node_id, (in_if, in_id), (out_if, out_id)) in [
                (
                    r1,
                    Self::R1_NODE_ID,
                    (Self::R1_IN, Self::R1_IN_ID),
                    (Self::R1_OUT, Self::R1_OUT_ID),
                ),
                (
                    r2,
                    Self::R2_NODE_ID,
                    (Self::R2_IN, Self::R2_IN_ID),
                    (Self::R2_OUT, Self::R2_OUT_ID),
                ),
            ] {
                let (node_id, in_id, out_id) =
                    (node_id.to_string(), in_id.to_string(), out_id.to_string());
                r.sysctls(&[
                    ("net.ipv6.conf.all.forwarding", "1"),
                    ("net.ipv6.ioam6_id", &node_id),
                    (&format!("net.ipv6.conf.{in_if}.ioam6_enabled"), "1"),
                    (&format!("net.ipv6.conf.{in_if}.ioam6_id"), &in_id),
                    (&format!("net.ipv6.conf.{out_if}.ioam6_id"), &out_id),
                ]);
                r.ip([
                    "ioam",
                    "namespace",
                    "add",
                    &Self::IOAM_NAMESPACE.to_string(),
                ]);
            }
        }

        /// Starts smcrouted in r1 and r2 with the (MCAST_SOURCE, MCAST_GROUP) route.
        pub fn start_multicast(&mut self) {
            for (r, ident, iif, oif) in [
                (&self.r1, "mtn-r1", Self::R1_IN, Self::R1_OUT),
                (&self.r2, "mtn-r2", Self::R2_IN, Self::R2_OUT),
            ] {
                let conf = format!(
                    "phyint {iif} enable\nphyint {oif} enable\n\
                     mroute from {iif} source {} group {} to {oif}\n",
                    Self::MCAST_SOURCE,
                    Self::MCAST_GROUP
                );
                self.smcrouted.push(Smcrouted::start(r, ident, &conf));
            }
        }
    }

    impl Default for KernelIoamChain {
        fn default() -> Self {
            Self::new()
        }
    }
}

pub mod scratch {
    //! Temporary directories, the fixtures directory, and mtnode node configurations for the
    //! replay-based tests (tshark cross-check, kernel interop).

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use mtnode_dataplane::pipeline::NodeConfig;

    /// `pcap-fixtures/` at the workspace root.
    pub fn fixtures_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("pcap-fixtures")
    }

    /// A fixture file by name, e.g. `ipv6-unicast.pcap`.
    pub fn fixture(name: &str) -> PathBuf {
        fixtures_dir().join(name)
    }

    /// An example configuration from `pcap-fixtures/configs/`, e.g. `transit.toml`.
    pub fn example_config(name: &str) -> Arc<NodeConfig> {
        let path = fixtures_dir().join("configs").join(name);
        Arc::new(mtnode_control::config::load(&path).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Configuration text parsed into a node configuration; `name` labels errors.
    pub fn inline_config(name: &str, toml: &str) -> Arc<NodeConfig> {
        Arc::new(mtnode_control::config::parse(name, toml).unwrap_or_else(|e| panic!("{e}")))
    }

    /// `configs/encap.toml` with a second selector for the unicast fixture's destination
    /// (2001:db8:2::/64): node 1, bump, ports `in` (if 10) and `out` (if 11), namespace 1,
    /// trace type 0xF80000, room for 8 hops.
    pub const ENCAP_MCAST_AND_UNICAST_TOML: &str = r#"
[node]
name = "encap"
node_id = 1
forwarding = "bump"
timestamp_format = "ptp"
malformed = "forward"

[[port]]
name = "in"
if_id = 10

[[port]]
name = "out"
if_id = 11

[[namespace]]
id = 1
role = "encap"
trace_type = 0xF80000
hops = 8

[[namespace.select]]
dst = "ff00::/8"

[[namespace.select]]
dst = "2001:db8:2::/64"
"#;

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    /// A fresh directory `mtnode-<label>-<pid>-<n>` under the system temp directory, removed on
    /// drop. When the test panics it is kept, and its path printed, for inspection.
    #[derive(Debug)]
    pub struct ScratchDir {
        path: PathBuf,
    }

    impl ScratchDir {
        pub fn new(label: &str) -> ScratchDir {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("mtnode-{label}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            ScratchDir { path }
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        /// A subdirectory path (not created: `replay` creates its output directory).
        pub fn join(&self, name: &str) -> PathBuf {
            self.path.join(name)
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("scratch: kept {} for inspection", self.path.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}

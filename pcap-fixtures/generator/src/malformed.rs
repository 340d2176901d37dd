//! `malformed.pcap`: one deliberately broken packet per case, in the order of [`CASES`].
//!
//! Each case starts from the plain 64-byte-class multicast frame of the valid fixtures (66 bytes,
//! sequence number = case index) and breaks exactly one thing, so a parser's per-reason counters
//! can be asserted packet by packet. The README lists the same order; keep the two in step.

use crate::ioam::{self, NodeData, TraceHeader};
use crate::valid;

/// A case: its README letter, what it breaks, and how.
#[derive(Debug)]
pub struct Case {
    pub letter: char,
    pub what: &'static str,
    build: fn(Vec<u8>) -> Vec<u8>,
}

/// The cases, in packet order.
pub const CASES: [Case; 8] = [
    Case {
        letter: 'a',
        what: "truncated Ethernet header (10 bytes)",
        build: truncated_ethernet,
    },
    Case {
        letter: 'b',
        what: "truncated IPv6 header (14 + 30 bytes)",
        build: truncated_ipv6,
    },
    Case {
        letter: 'c',
        what: "IPv6 Payload Length 100 bytes past the frame",
        build: payload_len_past_frame,
    },
    Case {
        letter: 'd',
        what: "Hop-by-Hop PadN length past the header",
        build: hbh_option_past_header,
    },
    Case {
        letter: 'e',
        what: "IOAM NodeLen 3 disagrees with trace type 0xF80000",
        build: node_len_disagrees,
    },
    Case {
        letter: 'f',
        what: "IOAM RemainingLen 40 words with 10 words of data",
        build: remaining_len_past_data,
    },
    Case {
        letter: 'g',
        what: "unknown IOAM Option-Type 9",
        build: unknown_ioam_type,
    },
    Case {
        letter: 'h',
        what: "IOAM option (Opt Data Len 170) overruns a 48-byte Hop-by-Hop header",
        build: truncated_ioam_option,
    },
];

/// Frame size class the cases start from.
const BASE_FRAME_LEN: usize = 64;

/// Every case's frame, in [`CASES`] order.
pub fn all_cases() -> anyhow::Result<Vec<Vec<u8>>> {
    CASES
        .iter()
        .zip(0u32..)
        .map(|(case, seq)| Ok((case.build)(valid::plain_ssm_frame(seq, BASE_FRAME_LEN)?)))
        .collect()
}

/// a. The frame ends after the destination MAC and four bytes of the source MAC, short of the
/// 14-byte Ethernet header.
fn truncated_ethernet(mut frame: Vec<u8>) -> Vec<u8> {
    frame.truncate(10);
    frame
}

/// b. The frame ends 30 bytes into the 40-byte IPv6 header (inside the destination address).
fn truncated_ipv6(mut frame: Vec<u8>) -> Vec<u8> {
    frame.truncate(14 + 30);
    frame
}

/// c. Payload Length claims 100 bytes more than follow the IPv6 header.
fn payload_len_past_frame(mut frame: Vec<u8>) -> Vec<u8> {
    let at = ioam::IPV6_PAYLOAD_LEN_OFFSET;
    let claimed = u16::from_be_bytes([frame[at], frame[at + 1]]) + 100;
    frame[at..at + 2].copy_from_slice(&claimed.to_be_bytes());
    frame
}

/// d. An 8-byte Hop-by-Hop header (Hdr Ext Len 0) whose PadN says 10 data bytes follow, where only
/// 4 remain in the header.
fn hbh_option_past_header(frame: Vec<u8>) -> Vec<u8> {
    // Next Header (set on insertion), Hdr Ext Len 0, PadN with length 10, four zero bytes.
    let hbh = [0x00, 0x00, 0x01, 10, 0, 0, 0, 0];
    ioam::insert_hop_by_hop(&frame, &hbh)
}

/// e. `ioam-trace.pcap`'s header, but NodeLen says 3 words where trace type 0xF80000 needs 5.
fn node_len_disagrees(frame: Vec<u8>) -> Vec<u8> {
    let option = ioam::two_hop_trace_option(3, ioam::IOAM_PREALLOC_TRACE);
    ioam::insert_hop_by_hop(&frame, &ioam::linux_hbh(&option))
}

/// f. Room for 2 hops (10 words, 40 bytes, nothing written yet) but RemainingLen says 40 words.
fn remaining_len_past_data(frame: Vec<u8>) -> Vec<u8> {
    let header = TraceHeader {
        namespace_id: ioam::NAMESPACE_ID,
        node_len: ioam::NODE_LEN,
        flags: 0,
        remaining_len: 40,
        trace_type: ioam::TRACE_TYPE,
    };
    let data = ioam::trace_data(2 * usize::from(ioam::NODE_LEN) * 4, &[] as &[NodeData]);
    let option = ioam::trace_option(ioam::IOAM_PREALLOC_TRACE, header, &data);
    ioam::insert_hop_by_hop(&frame, &ioam::linux_hbh(&option))
}

/// g. `ioam-trace.pcap`'s option with IOAM Option-Type 9, which no RFC assigns.
fn unknown_ioam_type(frame: Vec<u8>) -> Vec<u8> {
    let option = ioam::two_hop_trace_option(ioam::NODE_LEN, 9);
    ioam::insert_hop_by_hop(&frame, &ioam::linux_hbh(&option))
}

/// h. `ioam-trace.pcap`'s option cut to its first 44 bytes (option header, trace header, 32 data
/// bytes) in a 48-byte Hop-by-Hop header (Hdr Ext Len 5); Opt Data Len still says 170, so the
/// option runs 128 bytes past the header into the UDP header.
fn truncated_ioam_option(frame: Vec<u8>) -> Vec<u8> {
    let mut option = ioam::two_hop_trace_option(ioam::NODE_LEN, ioam::IOAM_PREALLOC_TRACE);
    option.truncate(44);
    ioam::insert_hop_by_hop(&frame, &ioam::linux_hbh(&option))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_in_order() {
        let letters: String = CASES.iter().map(|c| c.letter).collect();
        assert_eq!(letters, "abcdefgh");
    }

    #[test]
    fn case_lengths() {
        let lens: Vec<usize> = all_cases().unwrap().iter().map(Vec::len).collect();
        // a, b cut; c unchanged length; d +8; e, g +176; f +2+2+4+8+40 = 56; h +48.
        assert_eq!(lens, [10, 44, 66, 74, 242, 122, 242, 114]);
    }

    #[test]
    fn truncated_option_claims_more_than_its_header() {
        let frame = &all_cases().unwrap()[7];
        let hbh = &frame[ioam::IPV6_PAYLOAD_OFFSET..];
        assert_eq!(hbh[1], 5, "Hdr Ext Len");
        assert_eq!(&hbh[4..6], &[ioam::OPT_IOAM, 170]);
    }
}

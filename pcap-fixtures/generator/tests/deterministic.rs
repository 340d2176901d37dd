//! The committed fixtures are exactly what the generator writes today: regenerate into a fresh
//! directory and compare byte for byte. A failure means either the generator changed (regenerate
//! with `cargo run -p fixture-gen -- pcap-fixtures` and commit the new files) or a fixture was
//! edited by hand (don't).

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every file the README promises.
const EXPECTED: [&str; 9] = [
    "ioam-trace.pcap",
    "ipv4-mcast.pcap",
    "ipv6-destopts.pcap",
    "ipv6-hbh-router-alert.pcap",
    "ipv6-mcast-ssm.pcap",
    "ipv6-unicast.pcap",
    "malformed.pcap",
    "mixed.pcap",
    "vlan-ipv6-mcast.pcap",
];

#[test]
fn regenerated_fixtures_match_committed_ones() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let out = std::env::temp_dir().join(format!("fixture-gen-test-{}-{nanos}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_fixture-gen"))
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "fixture-gen failed: {status}");

    let committed = common::fixtures_dir();
    assert_eq!(common::pcap_names(&out), EXPECTED, "generated set");
    assert_eq!(common::pcap_names(&committed), EXPECTED, "committed set");
    let mut differing = Vec::new();
    for name in EXPECTED {
        let fresh = std::fs::read(out.join(name)).unwrap();
        let stored = std::fs::read(committed.join(name)).unwrap();
        if fresh != stored {
            differing.push(name);
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
    assert!(
        differing.is_empty(),
        "regenerated fixtures differ from the committed ones: {differing:?}"
    );
}

/// The pcap global header is the one the README describes, byte for byte.
#[test]
fn global_header_is_classic_little_endian_microsecond_ethernet() {
    for name in EXPECTED {
        let bytes = std::fs::read(common::fixtures_dir().join(name)).unwrap();
        assert_eq!(
            &bytes[..24],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian, microseconds
                2, 0, 4, 0, // version 2.4
                0, 0, 0, 0, // thiszone
                0, 0, 0, 0, // sigfigs
                0xff, 0xff, 0, 0, // snaplen 65535
                1, 0, 0, 0, // LINKTYPE_ETHERNET
            ],
            "{name}"
        );
    }
}

//! Side by side at a multicast branch point: the Linux kernel (ip6mr with smcroute static
//! routes, `ioam6_enabled`) fills its IOAM slot at ingress, before replicating, so every copy
//! carries the same entry, whose egress ID is the ingress interface's; mtnode records its slot
//! per copy, so each branch carries its own egress. Root only (namespaces).

use std::sync::Arc;
use std::time::Duration;

use mtnode_control::{config, replay};
use mtnode_dataplane::ioam::{find_trace, HopRecord, Hops};
use mtnode_dataplane::wire::IoamTrace;
use mtnode_tests::netns::{
    capture, inject, require_kernel_mroute, require_root, veth_with_macs, Netns, Smcrouted,
};
use mtnode_tests::pcapio::read_pcap;
use mtnode_tests::scratch::{fixture, ScratchDir};

const SOURCE: &str = "2001:db8:1::10";
const GROUP: &str = "ff3e::8000:1";

/// The newest entry of each frame's trace and its raw octets.
fn newest(frame: &[u8]) -> (HopRecord, Vec<u8>) {
    let loc = find_trace(frame, 54).unwrap().expect("a trace");
    let t = IoamTrace::new_checked(&frame[loc.trace_range()]).unwrap();
    let at = t.remaining_len() as usize * 4;
    let raw = t.data()[at..at + 20].to_vec();
    (Hops::new(t).next().unwrap(), raw)
}

/// Encapsulate the SSM fixture with mtnode (node 1), as both sides' input.
fn encapsulated(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = Arc::new(config::load(&fixture("configs/encap.toml")).unwrap());
    replay::replay(cfg, &fixture("ipv6-mcast-ssm.pcap"), &dir.join("encap"), 0).unwrap();
    dir.join("encap/out.pcap")
}

#[test]
fn kernel_copies_share_one_entry_mtnode_copies_carry_their_branch() {
    if !require_root("kernel_copies_share_one_entry_mtnode_copies_carry_their_branch")
        || !require_kernel_mroute("kernel_copies_share_one_entry_mtnode_copies_carry_their_branch")
    {
        return;
    }
    let dir = ScratchDir::new("branch");
    let input = encapsulated(dir.path());
    let n = read_pcap(&input).unwrap().len();

    // The kernel as the branch router: src -> r -> {d1, d2}.
    let (src, r, d1, d2) = (
        Netns::new("src"),
        Netns::new("br"),
        Netns::new("d1"),
        Netns::new("d2"),
    );
    veth_with_macs(&src, "s0", None, &r, "ra", None);
    veth_with_macs(&r, "rb1", None, &d1, "x1", None);
    veth_with_macs(&r, "rb2", None, &d2, "x2", None);
    // ip6mr wants addressed interfaces, as in the harness's chain.
    src.add_addr("s0", "2001:db8:a::1/64");
    src.add_addr("s0", "2001:db8:1::10/64");
    r.add_addr("ra", "2001:db8:a::2/64");
    r.add_addr("rb1", "2001:db8:b::1/64");
    r.add_addr("rb2", "2001:db8:c::1/64");
    d1.add_addr("x1", "2001:db8:b::2/64");
    d2.add_addr("x2", "2001:db8:c::2/64");
    r.sysctls(&[
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv6.ioam6_id", "201"),
        ("net.ipv6.conf.ra.ioam6_enabled", "1"),
        ("net.ipv6.conf.ra.ioam6_id", "1"),
        ("net.ipv6.conf.rb1.ioam6_id", "2"),
        ("net.ipv6.conf.rb2.ioam6_id", "3"),
    ]);
    r.ip(["ioam", "namespace", "add", "1"]);
    let conf = format!(
        "phyint ra enable\nphyint rb1 enable\nphyint rb2 enable\n\
         mroute from ra source {SOURCE} group {GROUP} to rb1 rb2\n"
    );
    let _smcrouted = Smcrouted::start(&r, "mtn-br", &conf);
    let filter = format!("ip6 and src host {SOURCE}");
    let c1 = capture(&d1, "x1", &filter, n, Duration::from_secs(10));
    let c2 = capture(&d2, "x2", &filter, n, Duration::from_secs(10));
    inject(&src, "s0", &input);
    let (k1, k2) = (c1.finish_frames(), c2.finish_frames());
    assert_eq!(
        (k1.len(), k2.len()),
        (n, n),
        "the kernel copied every packet to both branches"
    );
    for (a, b) in k1.iter().zip(&k2) {
        let ((ha, ra), (_, rb)) = (newest(a), newest(b));
        assert_eq!(ha.node_id, Some(201));
        assert_eq!(ra, rb, "the kernel's two copies carry the same entry");
        assert_eq!(
            (ha.ingress_if, ha.egress_if),
            (Some(1), Some(1)),
            "egress = ingress"
        );
    }

    // mtnode as the branch router, same input, same shape.
    let toml = r#"
[node]
name = "branch"
node_id = 201
forwarding = "route"

[[port]]
name = "ra"
if_id = 1

[[port]]
name = "rb1"
if_id = 2

[[port]]
name = "rb2"
if_id = 3

[[mroute]]
source = "2001:db8:1::10"
group = "ff3e::8000:1"
iif = "ra"
oil = ["rb1", "rb2"]

[[namespace]]
id = 1
role = "transit"
"#;
    let cfg = Arc::new(config::parse("branch", toml).unwrap());
    let out = dir.path().join("mtnode");
    let rep = replay::replay(cfg, &input, &out, 0).unwrap();
    assert_eq!(rep.counters.replicas, n as u64);
    let (m1, m2) = (
        read_pcap(&out.join("rb1.pcap")).unwrap(),
        read_pcap(&out.join("rb2.pcap")).unwrap(),
    );
    assert_eq!((m1.len(), m2.len()), (n, n));
    for (a, b) in m1.iter().zip(&m2) {
        let ((ha, _), (hb, _)) = (newest(a), newest(b));
        assert_eq!(ha.node_id, Some(201));
        assert_eq!(
            (ha.ingress_if, ha.egress_if),
            (Some(1), Some(2)),
            "branch 1's own egress"
        );
        assert_eq!(
            (hb.ingress_if, hb.egress_if),
            (Some(1), Some(3)),
            "branch 2's own egress"
        );
        assert_eq!(ha.hop_limit, hb.hop_limit);
    }
}

//! `mtnode replay` against committed golden outputs, the encap → decap round trip on every
//! fixture, and the malformed set counted by reason. Goldens live in pcap-fixtures/golden/ and
//! are rewritten only on purpose: `MTNODE_BLESS=1 cargo test -p mtnode-tests --test replay_golden`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtnode_control::{config, replay};
use mtnode_tests::pcapio::read_pcap;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("pcap-fixtures").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mtnode-golden-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(config_name: &str, input: &Path, out: &Path) -> replay::ReplayReport {
    let cfg = config::load(&fixture(&format!("configs/{config_name}.toml"))).unwrap();
    replay::replay(Arc::new(cfg), input, out, 0).unwrap()
}

/// Compare (or, when blessing, write) every output file of a replay with its golden copy.
fn check_golden(case: &str, out: &Path) {
    let golden = fixture("golden").join(case);
    let bless = std::env::var_os("MTNODE_BLESS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let got = std::fs::read(out.join(&name)).unwrap();
        let path = golden.join(&name);
        if bless {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with MTNODE_BLESS=1)", path.display()));
        assert!(
            got == want,
            "{case}/{} differs from its golden ({} vs {} octets)",
            name.to_string_lossy(),
            got.len(),
            want.len()
        );
    }
}

#[test]
fn encap_transit_decap_goldens() {
    let dir = scratch("chain");
    let (e, t, d) = (dir.join("encap"), dir.join("transit"), dir.join("decap"));
    let re = run("encap", &fixture("mixed.pcap"), &e);
    let rt = run("transit", &e.join("out.pcap"), &t);
    let rd = run("decap", &t.join("out.pcap"), &d);
    // mixed.pcap: 45 packets; 30 IPv6 multicast without a trace are encapsulated, the 6
    // unicast and 6 IPv4 pass, and the 3 that already carry a namespace-1 trace pass the
    // encapsulating node untouched and are transited and decapsulated downstream.
    assert_eq!(re.counters.packets_in, 45);
    assert_eq!((re.counters.encap, re.counters.passthrough), (30, 15));
    assert_eq!((rt.counters.transit, rt.counters.passthrough), (33, 12));
    assert_eq!((rd.counters.decap, rd.counters.passthrough), (33, 12));
    assert_eq!(rd.traces, 33);
    for r in [&re, &rt, &rd] {
        assert_eq!(r.counters.packets_out, 45);
        assert_eq!(r.counters.dropped_total(), 0);
    }
    // Every decapsulated packet is the original again (bump nodes change nothing else), but
    // for the three from ioam-trace.pcap (mixed.pcap indices 6, 13, 20), which arrived with a
    // trace and leave without its 176-octet Hop-by-Hop header.
    let back = read_pcap(&d.join("out.pcap")).unwrap();
    let original = read_pcap(&fixture("mixed.pcap")).unwrap();
    assert_eq!(back.len(), original.len());
    for (i, (b, o)) in back.iter().zip(&original).enumerate() {
        if [6, 13, 20].contains(&i) {
            assert_eq!(b.len() + 176, o.len(), "packet {i}");
        } else {
            assert!(b == o, "packet {i} not restored");
        }
    }
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(d.join("traces.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<u64> = first["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(first["remaining_len"], 40 - 15);
    check_golden("encap-mixed", &e);
    check_golden("transit-mixed", &t);
    check_golden("decap-mixed", &d);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_set_is_counted_by_reason_and_forwarded_untouched() {
    let dir = scratch("malformed");
    let r = run("encap", &fixture("malformed.pcap"), &dir);
    let m = &r.stats["malformed"];
    // pcap-fixtures/README.md, cases a-h in order.
    assert_eq!(m["truncated_ethernet"], 1, "a");
    assert_eq!(m["truncated_ipv6"], 1, "b");
    assert_eq!(m["bad_length_ipv6"], 1, "c");
    assert_eq!(m["option_overrun"], 2, "d and h");
    assert_eq!(m["ioam_node_len_mismatch"], 1, "e");
    assert_eq!(m["ioam_remaining_len_overrun"], 1, "f");
    assert_eq!(m["ioam_unknown_option_type"], 1, "g");
    assert_eq!(r.stats["malformed_total"], 8);
    assert_eq!((r.counters.packets_out, r.counters.dropped_total()), (8, 0));
    assert_eq!(
        read_pcap(&dir.join("out.pcap")).unwrap(),
        read_pcap(&fixture("malformed.pcap")).unwrap(),
        "the forward policy sends malformed packets on untouched"
    );
    check_golden("malformed-encap", &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn drop_policy_drops_and_counts() {
    let src = std::fs::read_to_string(fixture("configs/decap.toml"))
        .unwrap()
        .replace("malformed = \"forward\"", "malformed = \"drop\"");
    let cfg = Arc::new(config::parse("decap-drop", &src).unwrap());
    let dir = scratch("drop");
    let r = replay::replay(cfg, &fixture("malformed.pcap"), &dir, 0).unwrap();
    assert_eq!(r.stats["dropped_by_reason"]["malformed"], 8);
    assert_eq!(r.counters.packets_out, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Encapsulate then decapsulate every fixture: bump nodes give back every byte; routing nodes
/// every byte but the hop limit (IPv4: TTL and checksum).
#[test]
fn encap_decap_restores_every_fixture() {
    let routed = |role: &str, id: u32| {
        format!(
            "[node]\nname = \"{role}\"\nnode_id = {id}\nforwarding = \"route\"\n\
             [[port]]\nname = \"in\"\nif_id = 1\n[[port]]\nname = \"out\"\nif_id = 2\n\
             [[route]]\nprefix = \"::/0\"\nport = \"out\"\n[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"out\"\n\
             [[namespace]]\nid = 1\nrole = \"{role}\"\n{}",
            if role == "encap" {
                "[[namespace.select]]\ndst = \"ff00::/8\"\n[[namespace.select]]\ndst = \"2001:db8::/32\"\n"
            } else {
                ""
            }
        )
    };
    let fixtures = [
        "ipv6-mcast-ssm.pcap",
        "ipv6-unicast.pcap",
        "ipv6-hbh-router-alert.pcap",
        "ipv6-destopts.pcap",
        "ipv4-mcast.pcap",
        "vlan-ipv6-mcast.pcap",
    ];
    for name in fixtures {
        let original = read_pcap(&fixture(name)).unwrap();
        for route in [false, true] {
            let dir = scratch(&format!("rt-{name}-{route}"));
            let (e, d) = (dir.join("e"), dir.join("d"));
            let (re, rd) = if route {
                let enc = Arc::new(config::parse("e", &routed("encap", 1)).unwrap());
                let dec = Arc::new(config::parse("d", &routed("decap", 2)).unwrap());
                (
                    replay::replay(enc, &fixture(name), &e, 0).unwrap(),
                    replay::replay(dec, &e.join("out.pcap"), &d, 0).unwrap(),
                )
            } else {
                let re = run("encap", &fixture(name), &e);
                (re, run("decap", &e.join("out.pcap"), &d))
            };
            let back = read_pcap(&d.join("out.pcap")).unwrap();
            assert_eq!(back.len(), original.len(), "{name}");
            let is_v4 = name.starts_with("ipv4");
            let ioam = !is_v4
                && (route
                    || name.contains("mcast")
                    || name.contains("hbh")
                    || name.contains("destopts"));
            assert_eq!(
                re.counters.encap,
                if ioam { original.len() as u64 } else { 0 },
                "{name} route={route}"
            );
            assert_eq!(rd.counters.decap, re.counters.encap, "{name} route={route}");
            for (i, (b, o)) in back.iter().zip(&original).enumerate() {
                let mut want = o.clone();
                if route {
                    let l3 = if u16::from_be_bytes([o[12], o[13]]) == 0x8100 {
                        18
                    } else {
                        14
                    };
                    if is_v4 {
                        want[l3 + 8] -= 2;
                        let sum = u16::from_be_bytes([want[l3 + 10], want[l3 + 11]]) + 0x200;
                        want[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
                    } else {
                        want[l3 + 7] -= 2;
                    }
                }
                assert!(b == &want, "{name} packet {i} route={route}: not restored");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// A shaped, PIE-managed egress in replay: frames leave at the shaper's pace (the output pcap's
/// times are departure times), and the node's IOAM slot carries the queue it waited in.
#[test]
fn shaped_egress_queue_in_replay() {
    let toml = std::fs::read_to_string(fixture("configs/encap.toml"))
        .unwrap()
        .replace("trace_type = 0xF80000", "trace_type = 0xFA0000")
        .replace(
            "if_id = 11\n",
            "if_id = 11\n\n[port.queue]\nrate_mbps = 1\nburst_bytes = 2048\naqm = \"pie\"\n",
        );
    let cfg = Arc::new(config::parse("shaped", &toml).unwrap());
    let dir = scratch("shaped");
    let r = replay::replay(cfg, &fixture("ipv6-mcast-ssm.pcap"), &dir, 0).unwrap();
    assert_eq!(r.stats["packets_out"], 12, "{:#}", r.stats["queues"]);
    assert_eq!(r.stats["queues"]["out"]["dequeued"], 12);
    let mut reader =
        pcap_file::pcap::PcapReader::new(std::fs::File::open(dir.join("out.pcap")).unwrap())
            .unwrap();
    let mut times = Vec::new();
    let mut depths = Vec::new();
    let mut bits = 0u64;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        times.push(p.timestamp.as_nanos() as u64);
        bits += p.data.len() as u64 * 8;
        let loc = mtnode_dataplane::ioam::find_trace(&p.data, 54)
            .unwrap()
            .unwrap();
        let t = mtnode_dataplane::wire::IoamTrace::new_checked(&p.data[loc.trace_range()]).unwrap();
        let hop = mtnode_dataplane::ioam::Hops::new(t).next().unwrap();
        depths.push(hop.queue_depth.unwrap());
        assert!(
            hop.transit_delay.unwrap() as u64 <= times.last().unwrap() - 1_700_000_000_000_000_000
        );
    }
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "departures in order"
    );
    // At 1 Mb/s with a 2048-octet bucket, the last frame leaves once all but the bucket's worth
    // has been sent: (bits − 1600·8) µs after the first arrival, give or take one frame.
    let span = times.last().unwrap() - 1_700_000_000_000_000_000;
    let want = (bits - 2048 * 8) * 1_000;
    assert!(span.abs_diff(want) < 1_800 * 8 * 1_000, "{span} vs {want}");
    assert!(
        depths.iter().max().unwrap() >= &5,
        "the queue built up: {depths:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// DEX insert → strip gives back every IPv6 fixture packet byte for byte (bump nodes).
#[test]
fn dex_insert_strip_restores_every_fixture() {
    let node = |role: &str, id: u32| {
        format!(
            "[node]\nname = \"{role}\"\nnode_id = {id}\nforwarding = \"bump\"\n\
             [[port]]\nname = \"in\"\nif_id = 1\n[[port]]\nname = \"out\"\nif_id = 2\n\
             [[namespace]]\nid = 7\nrole = \"{role}\"\nmode = \"per-hop\"\nflow_id = 99\n{}",
            if role == "encap" {
                "[[namespace.select]]\ndst = \"::/0\"\n"
            } else {
                ""
            }
        )
    };
    for name in [
        "ipv6-mcast-ssm.pcap",
        "ipv6-unicast.pcap",
        "ipv6-hbh-router-alert.pcap",
        "ipv6-destopts.pcap",
        "vlan-ipv6-mcast.pcap",
    ] {
        let dir = scratch(&format!("dex-{name}"));
        let (e, d) = (dir.join("e"), dir.join("d"));
        let enc = Arc::new(config::parse("e", &node("encap", 1)).unwrap());
        let dec = Arc::new(config::parse("d", &node("decap", 2)).unwrap());
        let re = replay::replay(enc, &fixture(name), &e, 0).unwrap();
        let rd = replay::replay(dec, &e.join("out.pcap"), &d, 0).unwrap();
        let original = read_pcap(&fixture(name)).unwrap();
        assert_eq!(re.counters.encap, original.len() as u64, "{name}");
        assert_eq!(rd.counters.decap, original.len() as u64, "{name}");
        // The DEX option rides in the middle: 8-octet block with flow ID, sequence, branch.
        let mid = read_pcap(&e.join("out.pcap")).unwrap();
        for (m, o) in mid.iter().zip(&original) {
            assert_eq!(
                m.len(),
                o.len() + 32,
                "{name}: PadN, 4 + 8 + 12 octets of DEX, PadN"
            );
        }
        let back = read_pcap(&d.join("out.pcap")).unwrap();
        for (i, (b, o)) in back.iter().zip(&original).enumerate() {
            assert!(b == o, "{name} packet {i}: not restored");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A reload between packets switches the branch encoding while the replay runs: the packets
/// before it carry the explicit field `[16, 0]`, the packets after it the sum field, each with
/// its own flag, and the decapsulating node (still on explicit) restores them all.
#[test]
fn reload_switches_the_branch_encoding_between_packets() {
    let node = |role: &str, id: u32, enc: &str| {
        format!(
            "[node]\nname = \"{role}\"\nnode_id = {id}\nforwarding = \"bump\"\n\
             [[port]]\nname = \"in\"\nif_id = 1\n[[port]]\nname = \"out\"\nif_id = 2\n\
             [[namespace]]\nid = 7\nrole = \"{role}\"\nmode = \"per-hop\"\n\
             branch_encoding = \"{enc}\"\n{}",
            if role == "encap" {
                "[[namespace.select]]\ndst = \"::/0\"\n"
            } else {
                ""
            }
        )
    };
    let dir = scratch("reload");
    let (e, d) = (dir.join("e"), dir.join("d"));
    let first = Arc::new(config::parse("explicit", &node("encap", 16, "explicit")).unwrap());
    let then = config::parse("sum", &node("encap", 16, "sum")).unwrap();
    let r = replay::replay_reloading(
        first,
        None,
        &[(6, then)],
        &fixture("ipv6-mcast-ssm.pcap"),
        &e,
        0,
    )
    .unwrap();
    assert_eq!(r.counters.encap, 12);
    let out = read_pcap(&e.join("out.pcap")).unwrap();
    for (i, f) in out.iter().enumerate() {
        let loc = mtnode_dataplane::ioam::find_dex(f, 54).unwrap().unwrap();
        let dex = mtnode_dataplane::wire::IoamDex::new_checked(&f[loc.trace_range()]).unwrap();
        assert_eq!(
            dex.sequence_number(),
            Some(i as u32),
            "sequence continues across the reload"
        );
        if i < 6 {
            assert_eq!(
                (dex.ext_flags(), dex.extension(2)),
                (0xe0, Some(16 << 8)),
                "packet {i}"
            );
        } else {
            assert_eq!(
                (dex.ext_flags(), dex.extension(4)),
                (0xc8, Some(16)),
                "packet {i}"
            );
        }
    }
    let dec = Arc::new(config::parse("d", &node("decap", 32, "explicit")).unwrap());
    replay::replay(dec, &e.join("out.pcap"), &d, 0).unwrap();
    assert_eq!(
        read_pcap(&d.join("out.pcap")).unwrap(),
        read_pcap(&fixture("ipv6-mcast-ssm.pcap")).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

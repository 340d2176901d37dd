//! The control API of a live node on AF_XDP sockets (root only): `mtnode run` with an `[api]`
//! section, in its own namespace, forwarding a PIM (S,G) stream from a generator namespace to a
//! sink namespace, while curl (an independent HTTP client, inside the node's namespace, on its
//! loopback) changes the node ID 20 times.
//!
//! Checked: every packet arrives (no loss across the changes); every copy carries one of the
//! configured node IDs, and in sequence order the IDs follow the epochs' order (a packet is
//! processed under one snapshot, and a worker never goes back to an older one); the changes
//! landed under traffic (several IDs seen); `/v1/stats` and `/metrics` give the node's numbers;
//! the final stats agree.
//!
//! Off root it prints `SKIPPED (needs root)`; under CI=true it fails instead.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use mtnode_dataplane::ioam::{find_trace, Hops};
use mtnode_dataplane::wire::IoamTrace;
use mtnode_tests::frames::{ioam_prealloc_options, parse_ipv6, Udp6};
use mtnode_tests::netns::{capture, inject_pps, line, require_root, Line, LiveNode};
use mtnode_tests::pcapio::write_pcap;
use serde_json::Value;

const N: usize = 2000;
const PPS: u32 = 2000;
const CHANGES: u32 = 20;
const SOURCE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
const TOKEN: &str = "live-api-test-token";
const API: &str = "http://127.0.0.1:8686";

fn config(token_file: &Path) -> String {
    format!(
        r#"
[node]
name = "live-api"
node_id = 1000
forwarding = "route"

[[port]]
name = "in"
if_id = 30
interface = "n_in"

[[port]]
name = "out"
if_id = 31
interface = "n_out"

[[mroute]]
source = "{SOURCE}"
group = "{GROUP}"
iif = "in"
oil = ["out"]

[[namespace]]
id = 1
role = "transit"
trace_type = 0xF80000

[engine]
batch_size = 32
idle_sleep_us = 20

[api]
listen = "127.0.0.1:8686"
token_file = "{}"
"#,
        token_file.display()
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn live_node_id_changes_over_the_api_lose_nothing() {
    if !require_root("live_node_id_changes_over_the_api_lose_nothing") {
        return;
    }
    let Line { gen, node, sink } = line();
    let token_file = node.workdir().join("api.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let conf = node.workdir().join("live.toml");
    std::fs::write(&conf, config(&token_file)).unwrap();

    // Packets with an empty 8-hop trace, sequence number first in the payload.
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut payload = vec![0u8; 200];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            Udp6::new(SOURCE, GROUP, &payload)
                .with_hop_by_hop(ioam_prealloc_options(1, 5, 0xF8_0000, 40))
                .emit()
        })
        .collect();
    let input = gen.workdir().join("stream.pcap");
    write_pcap(&input, &sent).unwrap();

    let live = LiveNode::start(&node, Path::new(env!("CARGO_BIN_EXE_mtnode-cli")), &conf);
    let (status, body) = node.curl(&[&format!("{API}/v1/config")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["config"]["node"]["node_id"], 1000);

    let cap = capture(
        &sink,
        "s0",
        &format!("ip6 and src host {SOURCE}"),
        N,
        Duration::from_secs(30),
    );
    // epoch k runs node ID 1000 + k.
    std::thread::scope(|s| {
        let sender = s.spawn(|| inject_pps(&gen, "g0", &input, PPS));
        std::thread::sleep(Duration::from_millis(100));
        for k in 1..=CHANGES {
            let body = format!(r#"{{"node":{{"node_id":{}}}}}"#, 1000 + k);
            let (status, reply) = node.curl_patch(&format!("{API}/v1/config"), Some(TOKEN), &body);
            assert_eq!(status, 200, "change {k}: {reply}");
            let reply = json(&reply);
            assert_eq!(
                (reply["epoch"].as_u64(), reply["applied"].as_bool()),
                (Some(k as u64), Some(true))
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        sender.join().unwrap();
    });
    let frames = cap.finish_frames();

    // Live stats and metrics before the node stops.
    let (status, body) = node.curl(&[&format!("{API}/v1/stats")]);
    assert_eq!(status, 200, "{body}");
    let stats = json(&body);
    assert_eq!(stats["epoch"], CHANGES);
    assert_eq!(stats["packets_in"], N as u64, "{stats:#}");
    assert_eq!(stats["workers"], 1);
    let (status, metrics) = node.curl(&[&format!("{API}/metrics")]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("\nmtnode_packets_in_total {N}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("\nmtnode_config_epoch {CHANGES}\n")),
        "{metrics}"
    );
    // A change without the token is refused and changes nothing.
    let (status, _) = node.curl_patch(&format!("{API}/v1/config"), None, "{}");
    assert_eq!(status, 401);

    let (final_stats, log) = live.stop();
    assert_eq!(final_stats["packets_in"], N as u64, "{log}");
    assert_eq!(final_stats["packets_out"], N as u64, "{log}");
    assert_eq!(final_stats["dropped"], 0, "{log}");

    assert_eq!(frames.len(), N, "every packet arrives: {log}");
    let mut by_seq: Vec<Option<u32>> = vec![None; N];
    for f in &frames {
        let loc = find_trace(f, 14 + 40).expect("Hop-by-Hop").expect("trace");
        let trace = IoamTrace::new_checked(&f[loc.trace_range()]).expect("trace");
        let hops: Vec<_> = Hops::new(trace).collect();
        assert_eq!(hops.len(), 1);
        let id = hops[0].node_id.expect("node ID");
        assert!((1000..=1000 + CHANGES).contains(&id), "node ID {id}");
        let g = parse_ipv6(f).expect("IPv6");
        let udp = &g.packet[40 + g.hop_by_hop.expect("Hop-by-Hop").len()..];
        let seq = u32::from_be_bytes(udp[8..12].try_into().unwrap()) as usize;
        assert!(by_seq[seq].replace(id).is_none(), "sequence {seq} twice");
    }
    let ids: Vec<u32> = by_seq.iter().map(|x| x.expect("every sequence")).collect();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "node IDs follow the epochs in packet order"
    );
    let distinct = ids.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    assert!(
        distinct >= 5,
        "changes landed under traffic: {distinct} node IDs seen"
    );
    eprintln!("{N} packets, {distinct} node IDs seen in order across {CHANGES} changes");
}

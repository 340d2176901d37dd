//! `mtnode lab`: in-process nodes joined by memory links. The default is a linear chain
//! encap → transit → transit → decap that carries IPv6 SSM traffic, rebuilds the path from the
//! decapsulated traces and compares it with the configured one. Every node is configured
//! through the same TOML validation as a file, and runs the same pipeline as replay.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use mtnode_dataplane::io::mem::{InFlight, MemLink};
use mtnode_dataplane::io::{Buf, BufPool};
use mtnode_dataplane::ioam::HopRecord;
use mtnode_dataplane::pipeline::{NodeConfig, Packet, Pipeline, Sink, TraceEvent, Verdict};
use mtnode_dataplane::wire::{
    ethernet, ipv6, EtherType, EthernetRepr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};
use serde_json::{json, Value};

use crate::{config, trace_json};

/// The chain's node IDs, in path order.
pub const CHAIN: [u32; 4] = [1, 2, 3, 4];
const SOURCE: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const GROUP: [u8; 16] = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x01];
/// UDP payload octets per packet (a 1316-octet MPEG-TS-over-UDP payload, as video streams use).
const PAYLOAD: usize = 1316;

fn node_toml(i: usize) -> String {
    let id = CHAIN[i];
    let role = match i {
        0 => "encap",
        3 => "decap",
        _ => "transit",
    };
    let select = if i == 0 {
        "\n[[namespace.select]]\ndst = \"ff00::/8\"\n"
    } else {
        ""
    };
    format!(
        r#"[node]
name = "node{id}"
node_id = {id}
forwarding = "route"

[[port]]
name = "in"
if_id = {in_if}

[[port]]
name = "out"
if_id = {out_if}

[[route]]
prefix = "::/0"
port = "out"

[[namespace]]
id = 1
role = "{role}"
trace_type = 0xF80000
hops = 8
{select}"#,
        in_if = id * 10,
        out_if = id * 10 + 1,
    )
}

/// The chain's node configurations, validated like files.
pub fn chain_configs() -> Result<Vec<Arc<NodeConfig>>> {
    (0..CHAIN.len())
        .map(|i| {
            config::parse(&format!("lab node {}", CHAIN[i]), &node_toml(i))
                .map(Arc::new)
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// A source packet: IPv6 UDP from the SSM source to the group, sequence number first.
fn source_packet(seq: u32, out: &mut Vec<u8>) {
    out.clear();
    let udp_len = 8 + PAYLOAD;
    let eth = EthernetRepr {
        src_addr: [2, 0, 0, 0, 0, 1],
        dst_addr: ethernet::ipv6_multicast_mac(&GROUP),
        vlan_tci: None,
        ethertype: EtherType::Ipv6,
    };
    let ip = Ipv6Repr {
        traffic_class: 0,
        flow_label: 0,
        payload_len: udp_len as u16,
        next_header: ipv6::next_header::UDP,
        hop_limit: 64,
        src_addr: SOURCE,
        dst_addr: GROUP,
    };
    out.resize(eth.buffer_len() + ip.buffer_len() + udp_len, 0);
    eth.emit(out);
    let l3 = eth.buffer_len();
    ip.emit(&mut out[l3..]);
    let l4 = l3 + ipv6::HEADER_LEN;
    UdpRepr {
        src_port: 5000,
        dst_port: 5001,
        payload_len: PAYLOAD as u16,
    }
    .emit(&mut out[l4..]);
    out[l4 + 8..l4 + 12].copy_from_slice(&seq.to_be_bytes());
    let mut udp = UdpPacket::new_unchecked(&mut out[l4..]);
    udp.fill_checksum_ipv6(&SOURCE, &GROUP);
    debug_assert!(Ipv6Packet::new_checked(&out[l3..]).is_ok());
}

/// Collects the decapsulating node's traces, in path order.
#[derive(Default)]
struct Collector {
    paths: Vec<Vec<HopRecord>>,
    last: Option<Value>,
}

impl Sink for Collector {
    fn trace(&mut self, e: &TraceEvent<'_>) {
        self.paths.push(trace_json::path(&e.trace).0);
        self.last = Some(trace_json::trace(&e.trace, e.timestamp_format));
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Run the default chain with `packets` packets; returns the report as JSON.
pub fn run_chain(packets: u32) -> Result<Value> {
    ensure!(packets > 0, "--packets must be at least 1");
    let configs = chain_configs()?;
    let mut nodes: Vec<Pipeline> = configs.iter().cloned().map(Pipeline::new).collect();
    let mut links: Vec<MemLink> = (0..CHAIN.len()).map(|_| MemLink::new(256)).collect();
    let mut pool = BufPool::new(1024);
    let mut collector = Collector::default();
    let mut bytes = Vec::new();
    let mut batch: Vec<Packet<Buf>> = Vec::with_capacity(32);
    let mut plain_len = 0;
    let mut delivered = 0u64;
    let mut sent = 0u32;

    // links[0] feeds node 0 from the source; links[i] joins node i-1's "out" to node i's "in".
    while sent < packets || links.iter().any(|l| !l.is_empty()) {
        for _ in 0..32 {
            if sent == packets {
                break;
            }
            source_packet(sent, &mut bytes);
            plain_len = bytes.len();
            let frame = pool.frame(&bytes).context("buffer pool exhausted")?;
            if let Err(back) = links[0].send(InFlight {
                frame,
                sent_ns: now_ns(),
            }) {
                pool.put(back.frame);
            }
            sent += 1;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let now = now_ns();
            while batch.len() < 32 {
                let Some(f) = links[i].recv() else { break };
                // A zero-latency link: the frame arrived when its sender sent it, so transit
                // delay covers the time it waited on this node's ingress.
                batch.push(Packet {
                    frame: f.frame,
                    rx_port: 0,
                    rx_ns: f.sent_ns,
                    verdict: Verdict::Pending,
                });
            }
            node.buffer_occupancy = pool.in_use() as u32;
            node.process(now, &mut batch, &mut collector);
            for p in batch.drain(..) {
                match (p.verdict, links.get_mut(i + 1)) {
                    (Verdict::Forward(_), Some(next)) => {
                        if let Err(back) = next.send(InFlight {
                            frame: p.frame,
                            sent_ns: now,
                        }) {
                            pool.put(back.frame);
                        }
                    }
                    (Verdict::Forward(_), None) => {
                        delivered += 1;
                        pool.put(p.frame);
                    }
                    _ => pool.put(p.frame),
                }
            }
        }
    }

    let configured: Vec<[u32; 2]> = CHAIN.windows(2).map(|w| [w[0], w[1]]).collect();
    let mut rebuilt: Vec<[u32; 2]> = Vec::new();
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); configured.len()];
    for path in &collector.paths {
        for w in path.windows(2) {
            let (Some(a), Some(b)) = (w[0].node_id, w[1].node_id) else {
                continue;
            };
            if !rebuilt.contains(&[a, b]) {
                rebuilt.push([a, b]);
            }
            let ts = |h: &HopRecord| {
                Some(
                    configs[0]
                        .timestamp_format
                        .to_ns(h.timestamp_secs?, h.timestamp_frac?),
                )
            };
            if let (Some(i), Some(ta), Some(tb)) = (
                configured.iter().position(|e| *e == [a, b]),
                ts(&w[0]),
                ts(&w[1]),
            ) {
                delays[i].push(tb.saturating_sub(ta) as f64 / 1000.0);
            }
        }
    }
    let link_stats: Vec<(u64, u64)> = links[1..].iter().map(|l| (l.packets, l.bytes)).collect();
    let ioam_bytes: u64 = link_stats
        .iter()
        .map(|(p, b)| b - p * plain_len as u64)
        .sum();
    let edges: Vec<Value> = configured
        .iter()
        .zip(delays.iter_mut())
        .enumerate()
        .map(|(i, (e, d))| {
            d.sort_by(f64::total_cmp);
            let carried = link_stats[i].0;
            json!({
                "parent": e[0],
                "child": e[1],
                "branch_index": 0,
                "delay_us_p50": percentile(d, 0.5),
                "delay_us_p99": percentile(d, 0.99),
                "loss": 1.0 - carried as f64 / sent as f64,
            })
        })
        .collect();
    Ok(json!({
        "mode": "trace",
        "topology": "chain",
        "tree_matches": rebuilt == configured,
        "configured_edges": configured,
        "rebuilt_edges": rebuilt,
        "telemetry_bytes_per_packet": if delivered > 0 { ioam_bytes as f64 / delivered as f64 } else { 0.0 },
        "packets_sent": sent,
        "packets_delivered": delivered,
        "traces": collector.paths.len(),
        "edges": edges,
        "last_trace": collector.last,
    }))
}

/// The human form of [`run_chain`]'s report.
pub fn render(r: &Value) -> String {
    let mut s = String::new();
    let path = |k: &str| {
        r[k].as_array()
            .map(|es| {
                let mut ids: Vec<String> = es.iter().take(1).map(|e| e[0].to_string()).collect();
                ids.extend(es.iter().map(|e| e[1].to_string()));
                ids.join(" -> ")
            })
            .unwrap_or_default()
    };
    s += &format!(
        "mtnode lab: chain encap -> transit -> transit -> decap, mode {}\n",
        r["mode"].as_str().unwrap_or("?")
    );
    s += &format!("  configured path: {}\n", path("configured_edges"));
    s += &format!(
        "  rebuilt path:    {}   ({})\n",
        path("rebuilt_edges"),
        if r["tree_matches"] == true {
            "matches"
        } else {
            "DIFFERS"
        }
    );
    s += &format!(
        "  delivered {}/{} packets, {} traces, {:.0} telemetry bytes per delivered packet\n",
        r["packets_delivered"],
        r["packets_sent"],
        r["traces"],
        r["telemetry_bytes_per_packet"].as_f64().unwrap_or(0.0)
    );
    s += "  edges:\n";
    for e in r["edges"].as_array().into_iter().flatten() {
        s += &format!(
            "    {} -> {}  delay p50 {:.1} us  p99 {:.1} us  loss {:.3}\n",
            e["parent"],
            e["child"],
            e["delay_us_p50"].as_f64().unwrap_or(0.0),
            e["delay_us_p99"].as_f64().unwrap_or(0.0),
            e["loss"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(t) = r["last_trace"].as_object() {
        s += &format!(
            "  last trace: namespace {}, trace type {}, {} hops\n",
            t["namespace"],
            t["trace_type"].as_str().unwrap_or(""),
            t["hops"].as_array().map_or(0, |h| h.len())
        );
        s += "    hop  node_id  hop_lim  in_if  out_if  timestamp_ns          transit_delay_ns\n";
        for (i, h) in t["hops"].as_array().into_iter().flatten().enumerate() {
            let f = |k: &str| h[k].to_string();
            s += &format!(
                "    {:<4} {:<8} {:<8} {:<6} {:<7} {:<21} {}\n",
                i + 1,
                f("node_id"),
                f("hop_lim"),
                f("ingress_if"),
                f("egress_if"),
                f("timestamp_ns"),
                f("transit_delay_ns")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_rebuilds_its_path_with_hop_limits() {
        let r = run_chain(100).unwrap();
        assert_eq!(r["tree_matches"], true);
        assert_eq!(r["packets_delivered"], 100);
        assert_eq!(r["traces"], 100);
        assert_eq!(r["rebuilt_edges"], json!([[1, 2], [2, 3], [3, 4]]));
        // Three links carry the 176-octet Hop-by-Hop header (8 hops × 20 + 16).
        assert_eq!(r["telemetry_bytes_per_packet"], 3.0 * 176.0);
        let hops = r["last_trace"]["hops"].as_array().unwrap();
        let ids: Vec<_> = hops
            .iter()
            .map(|h| h["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let hl: Vec<_> = hops
            .iter()
            .map(|h| h["hop_lim"].as_u64().unwrap())
            .collect();
        assert_eq!(hl, [63, 62, 61, 60]);
        let ifs: Vec<_> = hops
            .iter()
            .map(|h| {
                (
                    h["ingress_if"].as_u64().unwrap(),
                    h["egress_if"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ifs, [(10, 11), (20, 21), (30, 31), (40, 41)]);
        assert_eq!(r["last_trace"]["remaining_len"], 40 - 20);
    }
}

//! `mtnode lab`: in-process nodes joined by memory links. The default is a linear chain
//! encap → transit → transit → decap that carries IPv6 SSM traffic, rebuilds the path from the
//! decapsulated traces and compares it with the configured one. Every node is configured
//! through the same TOML validation as a file, and runs the same pipeline as replay.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use mtnode_dataplane::aqm::{
    Aqm, Ecn, EgressQueue, Pie, PieParams, QueueCounters, QueueLimits, Red, RedParams, TokenBucket,
};
use mtnode_dataplane::io::mem::{InFlight, MemLink};
use mtnode_dataplane::io::{Buf, BufPool};
use mtnode_dataplane::ioam::{patch_egress, EgressFacts, HopRecord};
use mtnode_dataplane::pipeline::{NodeConfig, Packet, Pipeline, Sink, TraceEvent, Verdict};
use mtnode_dataplane::wire::{
    ethernet, ipv6, EtherType, EthernetRepr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};
use serde_json::{json, Value};

use crate::sim::AqmKind;
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
trace_type = 0xFA0000
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
/// Octets of a source frame.
fn source_len() -> usize {
    14 + ipv6::HEADER_LEN + 8 + PAYLOAD
}

fn source_packet(seq: u32, ecn: bool, out: &mut Vec<u8>) {
    out.clear();
    let udp_len = 8 + PAYLOAD;
    let eth = EthernetRepr {
        src_addr: [2, 0, 0, 0, 0, 1],
        dst_addr: ethernet::ipv6_multicast_mac(&GROUP),
        vlan_tci: None,
        ethertype: EtherType::Ipv6,
    };
    let ip = Ipv6Repr {
        traffic_class: if ecn { Ecn::Ect0 as u8 } else { 0 },
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

/// An AQM-managed, shaped bottleneck on one of the chain's links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bottleneck {
    /// The node (1-based position in the chain, 1..=3) whose egress is shaped.
    pub after_node: usize,
    pub rate_mbps: f64,
    pub aqm: AqmKind,
    /// Queue limit, packets.
    pub limit: usize,
}

/// What `mtnode lab` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabOptions {
    pub packets: u32,
    /// Source rate in Mb/s (frames on the wire); `None` sends as fast as the nodes take them.
    pub source_mbps: Option<f64>,
    /// Send ECT(0) packets, so an AQM marks instead of dropping.
    pub ecn: bool,
    pub bottleneck: Option<Bottleneck>,
}

impl LabOptions {
    pub fn new(packets: u32) -> Self {
        LabOptions {
            packets,
            source_mbps: None,
            ecn: false,
            bottleneck: None,
        }
    }
}

fn egress_queue(b: Option<&Bottleneck>, now: u64, seed: u64) -> EgressQueue<Buf> {
    let Some(b) = b else {
        return EgressQueue::new(
            QueueLimits {
                packets: 1024,
                bytes: 1024 * 2048,
            },
            Aqm::None,
            None,
            seed,
        );
    };
    let rate_bps = (b.rate_mbps * 1e6) as u64;
    let pkts_per_s = rate_bps as f64 / (1400.0 * 8.0);
    let aqm = match b.aqm {
        AqmKind::Pie => Aqm::Pie(Pie::new(PieParams {
            mean_pkt_size: 1400,
            ..PieParams::default()
        })),
        AqmKind::Red => {
            let min_th = (0.005 * pkts_per_s).max(5.0);
            Aqm::Red(Red::new(RedParams {
                min_th,
                max_th: 3.0 * min_th,
                w_q: 1.0 - (-1.0 / pkts_per_s).exp(),
                tx_time: (1e9 / pkts_per_s) as u64,
                ..RedParams::default()
            }))
        }
    };
    EgressQueue::new(
        QueueLimits {
            packets: b.limit,
            bytes: b.limit * 2048,
        },
        aqm,
        Some(TokenBucket::new(rate_bps, 3000, now)),
        seed,
    )
}

/// Run the default chain; returns the report as JSON.
pub fn run_chain(opts: &LabOptions) -> Result<Value> {
    let packets = opts.packets;
    ensure!(packets > 0, "--packets must be at least 1");
    if let Some(b) = &opts.bottleneck {
        ensure!(
            (1..CHAIN.len()).contains(&b.after_node),
            "--bottleneck: the chain's links leave nodes 1..={}",
            CHAIN.len() - 1
        );
        ensure!(
            b.rate_mbps > 0.0 && b.limit > 0,
            "--bottleneck-rate and the queue limit must be positive"
        );
    }
    let configs = chain_configs()?;
    let mut nodes: Vec<Pipeline> = configs.iter().cloned().map(Pipeline::new).collect();
    let mut links: Vec<MemLink> = (0..CHAIN.len()).map(|_| MemLink::new(256)).collect();
    let start = now_ns();
    // Every node's "out" port has an egress queue; only the bottleneck's is shaped and managed.
    let mut queues: Vec<EgressQueue<Buf>> = (0..CHAIN.len())
        .map(|i| {
            let b = opts.bottleneck.as_ref().filter(|b| b.after_node == i + 1);
            egress_queue(b, start, i as u64 + 1)
        })
        .collect();
    let mut pool = BufPool::new(4096);
    let mut collector = Collector::default();
    let mut bytes = Vec::new();
    let mut batch: Vec<Packet<Buf>> = Vec::with_capacity(32);
    let mut plain_len = 0;
    let mut delivered = 0u64;
    let mut sent = 0u32;

    // links[0] feeds node 0 from the source; links[i] joins node i-1's "out" to node i's "in".
    while sent < packets
        || links.iter().any(|l| !l.is_empty())
        || queues.iter().any(|q| q.len() > 0)
    {
        let now = now_ns();
        let due = match opts.source_mbps {
            Some(mbps) => {
                let frame_bits = (source_len() * 8) as f64;
                let n = ((now - start) as f64 * mbps * 1e6 / 1e9 / frame_bits) as u32 + 1;
                n.min(packets)
            }
            None => (sent + 32).min(packets),
        };
        while sent < due {
            source_packet(sent, opts.ecn, &mut bytes);
            plain_len = bytes.len();
            let frame = pool.frame(&bytes).context("buffer pool exhausted")?;
            if let Err(back) = links[0].send(InFlight {
                frame,
                sent_ns: now,
            }) {
                pool.put(back.frame);
            }
            sent += 1;
        }
        let mut idle = true;
        for (i, node) in nodes.iter_mut().enumerate() {
            let now = now_ns();
            while batch.len() < 32 {
                let Some(f) = links[i].recv(now) else { break };
                // A zero-latency link: the frame arrived when its sender sent it, so transit
                // delay covers the time it waited on this node's ingress.
                batch.push(Packet {
                    frame: f.frame,
                    rx_port: 0,
                    rx_ns: f.sent_ns,
                    verdict: Verdict::Pending,
                });
            }
            idle &= batch.is_empty();
            node.buffer_occupancy = pool.in_use() as u32;
            node.process(now, &mut batch, &mut collector);
            for p in batch.drain(..) {
                match p.verdict {
                    Verdict::Forward(_) => {
                        if let Err((frame, _)) = queues[i].enqueue(now, p.frame) {
                            pool.put(frame);
                        }
                    }
                    _ => pool.put(p.frame),
                }
            }
            while let Some(e) = queues[i].dequeue(now) {
                idle = false;
                let mut frame = e.frame;
                patch_egress(
                    frame.bytes_mut(),
                    &EgressFacts {
                        node_id: CHAIN[i],
                        queue_depth: e.depth_at_enqueue,
                        queue_sojourn_ns: now - e.enqueued_at,
                        buffer_occupancy: pool.in_use() as u32,
                    },
                );
                match links.get_mut(i + 1) {
                    Some(next) => {
                        if let Err(back) = next.send(InFlight {
                            frame,
                            sent_ns: now,
                        }) {
                            pool.put(back.frame);
                        }
                    }
                    None => {
                        delivered += 1;
                        pool.put(frame);
                    }
                }
            }
        }
        if idle && sent == due && opts.source_mbps.is_some() {
            // Waiting for the source's next packet or a shaper's tokens: don't spin a core.
            std::thread::sleep(std::time::Duration::from_micros(50));
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
    // links[i] carries what enters node i; links[0] is the source's.
    let into: Vec<u64> = links.iter().map(|l| l.packets).collect();
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
                "loss": if into[i] > 0 { 1.0 - carried as f64 / into[i] as f64 } else { 0.0 },
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
        "nodes": node_reports(&collector.paths, &queues, opts.bottleneck.as_ref()),
        "last_trace": collector.last,
    }))
}

/// Per node: what IOAM reported of its egress (queue depth, transit delay) and what its egress
/// queue counted.
fn node_reports(
    paths: &[Vec<HopRecord>],
    queues: &[EgressQueue<Buf>],
    bottleneck: Option<&Bottleneck>,
) -> Vec<Value> {
    CHAIN
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let hops = paths
                .iter()
                .filter_map(|p| p.iter().find(|h| h.node_id == Some(id)));
            let (mut depth, mut delay): (Vec<f64>, Vec<f64>) = hops
                .map(|h| {
                    (
                        h.queue_depth.unwrap_or(0) as f64,
                        h.transit_delay.unwrap_or(0) as f64 / 1000.0,
                    )
                })
                .unzip();
            depth.sort_by(f64::total_cmp);
            delay.sort_by(f64::total_cmp);
            let c: &QueueCounters = &queues[i].counters;
            let sum = |a: [u64; 4]| a.iter().sum::<u64>();
            let mut v = json!({
                "node_id": id,
                "ioam_queue_depth_p50": percentile(&depth, 0.5),
                "ioam_queue_depth_max": depth.last().copied().unwrap_or(0.0),
                "ioam_transit_delay_us_p50": percentile(&delay, 0.5),
                "ioam_transit_delay_us_p99": percentile(&delay, 0.99),
                "egress": {
                    "enqueued": sum(c.enqueued),
                    "ce_marked": sum(c.marked),
                    "early_drops": sum(c.early_drops),
                    "overflow_drops": sum(c.overflow_drops),
                },
            });
            if let Some(b) = bottleneck.filter(|b| b.after_node == i + 1) {
                v["bottleneck"] = json!({
                    "rate_mbps": b.rate_mbps,
                    "aqm": match b.aqm { AqmKind::Pie => "pie", AqmKind::Red => "red" },
                    "limit_packets": b.limit,
                    "probability": queues[i].aqm.probability(),
                });
            }
            v
        })
        .collect()
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
    s += "  nodes (IOAM queue depth and transit delay, egress queue counters):\n";
    for n in r["nodes"].as_array().into_iter().flatten() {
        let g = |k: &str| n[k].as_f64().unwrap_or(0.0);
        let e = &n["egress"];
        s += &format!(
            "    node {}: depth p50 {:.0} max {:.0}  delay p50 {:.1} us p99 {:.1} us  enqueued {} marked {} early drops {} overflow {}{}\n",
            n["node_id"],
            g("ioam_queue_depth_p50"),
            g("ioam_queue_depth_max"),
            g("ioam_transit_delay_us_p50"),
            g("ioam_transit_delay_us_p99"),
            e["enqueued"],
            e["ce_marked"],
            e["early_drops"],
            e["overflow_drops"],
            n.get("bottleneck").map_or(String::new(), |b| format!(
                "  [bottleneck {} Mb/s {}]",
                b["rate_mbps"], b["aqm"].as_str().unwrap_or("")
            ))
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
        let r = run_chain(&LabOptions::new(100)).unwrap();
        assert_eq!(r["tree_matches"], true);
        assert_eq!(r["packets_delivered"], 100);
        assert_eq!(r["traces"], 100);
        assert_eq!(r["rebuilt_edges"], json!([[1, 2], [2, 3], [3, 4]]));
        // Three links carry the 208-octet Hop-by-Hop header (8 hops × 24 + 16).
        assert_eq!(r["telemetry_bytes_per_packet"], 3.0 * 208.0);
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
        assert_eq!(r["last_trace"]["remaining_len"], 48 - 24);
    }

    /// A 10 Mb/s PIE bottleneck after node 2, fed 20 Mb/s of ECT(0) video: node 2's egress
    /// queue builds, PIE marks (and, past 10 %, drops), and IOAM shows the queue on node 2's hop
    /// only.
    #[test]
    fn bottleneck_shows_in_ioam_on_its_hop() {
        let r = run_chain(&LabOptions {
            packets: 600,
            source_mbps: Some(20.0),
            ecn: true,
            bottleneck: Some(Bottleneck {
                after_node: 2,
                rate_mbps: 10.0,
                aqm: AqmKind::Pie,
                limit: 1000,
            }),
        })
        .unwrap();
        assert_eq!(r["tree_matches"], true);
        let nodes = r["nodes"].as_array().unwrap();
        let depth = |i: usize| nodes[i]["ioam_queue_depth_max"].as_f64().unwrap();
        assert!(depth(1) > 20.0, "{:#}", nodes[1]);
        for i in [0, 2, 3] {
            assert!(
                depth(i) <= 32.0,
                "node {} has no bottleneck: {:#}",
                i + 1,
                nodes[i]
            );
        }
        let delay = |i: usize| nodes[i]["ioam_transit_delay_us_p99"].as_f64().unwrap();
        assert!(delay(1) > 10.0 * delay(0).max(100.0), "{:#}", nodes[1]);
        let e = &nodes[1]["egress"];
        assert!(e["ce_marked"].as_u64().unwrap() > 0, "{e:#}");
        let sent = r["packets_sent"].as_u64().unwrap();
        let lost = e["early_drops"].as_u64().unwrap() + e["overflow_drops"].as_u64().unwrap();
        assert_eq!(r["packets_delivered"].as_u64().unwrap(), sent - lost);
        let loss = r["edges"][1]["loss"].as_f64().unwrap();
        assert!(
            (loss - lost as f64 / sent as f64).abs() < 1e-9,
            "{:#}",
            r["edges"]
        );
    }
}

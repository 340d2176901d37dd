//! tshark as an independent decoder of what mtnode writes. Every valid fixture is replayed
//! through an encapsulating node (1 hop written) and its output through a transit node (2 hops),
//! and every output pcap is read by tshark 4.0. For every packet that carries an IOAM trace:
//!
//! - tshark reports no expert info whose name or message says "invalid", "malformed" or
//!   "mismatch", and none of severity Warning or Error (UDP checksum checking on);
//! - tshark's Namespace-ID, NodeLen, Flags, RemainingLen and Trace-Type, and for every node its
//!   hop limit, node ID, ingress and egress interface IDs, timestamp seconds and fraction and
//!   transit delay, equal mtnode's own decode of the same packet, number for number;
//! - tshark and mtnode agree on which packets carry a trace, and their number is the node's
//!   encap (or transit) counter plus the traces already in its input.
//!
//! Not root-only. tshark must be installed (`scripts/setup` installs it); without it the test
//! fails and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mtnode_control::replay::{replay, ReplayReport};
use mtnode_dataplane::ioam::{find_trace, HopRecord, Hops};
use mtnode_dataplane::pipeline::NodeConfig;
use mtnode_dataplane::wire::{EtherType, EthernetFrame, IoamTrace, Ipv6Packet};
use mtnode_tests::netns::run_bounded;
use mtnode_tests::pcapio::read_pcap;
use mtnode_tests::scratch::{
    example_config, fixture, fixtures_dir, inline_config, ScratchDir, ENCAP_MCAST_AND_UNICAST_TOML,
};
use serde_json::Value;

const TSHARK_TIMEOUT: Duration = Duration::from_secs(60);

/// Read options common to every tshark run: the fixtures' UDP port 5000 belongs to TAPA, which
/// would flag the smallest frames (see pcap-fixtures/README.md); names are not resolved; UDP
/// checksums are checked, so a broken one shows up as expert info.
const TSHARK_READ_OPTS: &[&str] = &[
    "-n",
    "--disable-protocol",
    "tapa",
    "-o",
    "udp.check_checksum:TRUE",
];

/// Field order of [`tshark_fields`]; node fields list one value per node, newest first.
const FIELDS: &[&str] = &[
    "frame.number",
    "ipv6.opt.ioam.trace.ns",
    "ipv6.opt.ioam.trace.nodelen",
    "ipv6.opt.ioam.trace.flags",
    "ipv6.opt.ioam.trace.flag.o",
    "ipv6.opt.ioam.trace.remlen",
    "ipv6.opt.ioam.trace.type",
    "ipv6.opt.ioam.trace.node.hlim",
    "ipv6.opt.ioam.trace.node.id",
    "ipv6.opt.ioam.trace.node.iif",
    "ipv6.opt.ioam.trace.node.eif",
    "ipv6.opt.ioam.trace.node.tss",
    "ipv6.opt.ioam.trace.node.tsf",
    "ipv6.opt.ioam.trace.node.trdelay",
];

/// Expert info severities (epan/proto.h: PI_WARN, PI_ERROR).
const SEVERITY_WARN: u64 = 0x0060_0000;

fn require_tshark() {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "tshark --version failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "tshark is not installed ({e}): this test needs it as an independent IOAM decoder; \
             run scripts/setup as root, which installs it"
        ),
    }
}

fn tshark(pcap: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args(TSHARK_READ_OPTS).args(args);
    run_bounded(&mut cmd, TSHARK_TIMEOUT)
        .unwrap_or_else(|e| panic!("tshark on {}: {e:#}", pcap.display()))
        .stdout
}

/// One packet's IOAM fields as tshark reports them (empty when it has no trace).
#[derive(Debug, Default)]
struct TsharkRow {
    frame: u64,
    /// Values per field of [`FIELDS`] after `frame.number`, split on the aggregator.
    values: BTreeMap<&'static str, Vec<String>>,
}

impl TsharkRow {
    fn has_trace(&self) -> bool {
        !self.values["ipv6.opt.ioam.trace.ns"].is_empty()
    }
}

fn tshark_fields(pcap: &Path) -> Vec<TsharkRow> {
    let mut args = vec!["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"];
    args.extend(["-E", "aggregator=,"]);
    for f in FIELDS {
        args.extend(["-e", f]);
    }
    let out = tshark(pcap, &args);
    String::from_utf8_lossy(&out)
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), FIELDS.len(), "tshark fields line {line:?}");
            let mut row = TsharkRow {
                frame: cols[0].parse().expect("frame.number"),
                values: BTreeMap::new(),
            };
            for (f, c) in FIELDS.iter().zip(&cols).skip(1) {
                let v = c
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                row.values.insert(f, v);
            }
            row
        })
        .collect()
}

/// An expert info item: the field names it carries (e.g. `ipv6.opt.ioam.trace.invalid_remlen`),
/// its message and severity.
#[derive(Debug, Clone)]
struct Expert {
    frame: u64,
    names: Vec<String>,
    message: String,
    severity: u64,
}

impl Expert {
    fn is_bad(&self) -> bool {
        let text = format!("{} {}", self.names.join(" "), self.message).to_lowercase();
        self.severity >= SEVERITY_WARN
            || ["invalid", "malformed", "mismatch"]
                .iter()
                .any(|w| text.contains(w))
    }

    fn label(&self) -> String {
        let sev = match self.severity {
            s if s >= 0x0080_0000 => "Error",
            s if s >= SEVERITY_WARN => "Warning",
            s if s >= 0x0040_0000 => "Note",
            _ => "Chat",
        };
        format!("{sev}: {} [{}]", self.message, self.names.join(","))
    }
}

fn collect_expert(frame: u64, v: &Value, out: &mut Vec<Expert>) {
    match v {
        Value::Array(items) => items.iter().for_each(|x| collect_expert(frame, x, out)),
        Value::Object(m) => {
            let text = |k: &str| match m.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(Expert {
                frame,
                names: m
                    .keys()
                    .filter(|k| !k.starts_with("_ws.expert"))
                    .cloned()
                    .collect(),
                message: text("_ws.expert.message"),
                severity: text("_ws.expert.severity").parse().unwrap_or(u64::MAX),
            });
        }
        _ => {}
    }
}

fn walk_experts(frame: u64, v: &Value, out: &mut Vec<Expert>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "_ws.expert" {
                    collect_expert(frame, x, out);
                } else {
                    walk_experts(frame, x, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| walk_experts(frame, x, out)),
        _ => {}
    }
}

/// Every expert info item tshark attaches to any packet of `pcap`.
fn tshark_experts(pcap: &Path) -> Vec<Expert> {
    let out = tshark(pcap, &["-T", "json", "--no-duplicate-keys"]);
    let packets: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("tshark JSON of {}: {e}", pcap.display()));
    let mut experts = Vec::new();
    for p in packets
        .as_array()
        .expect("tshark JSON is an array of packets")
    {
        let layers = &p["_source"]["layers"];
        let frame = layers["frame"]["frame.number"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("frame.number in tshark JSON");
        walk_experts(frame, layers, &mut experts);
    }
    experts
}

/// mtnode's decode of the Pre-allocated Trace a frame carries; hops newest first, as they lie
/// in the data (and as tshark lists them).
#[derive(Debug)]
struct MtnodeTrace {
    namespace: u16,
    node_len: u8,
    flags: u8,
    remaining_len: u8,
    trace_type: u32,
    hops: Vec<HopRecord>,
}

fn mtnode_decode(frame: &[u8]) -> Result<Option<MtnodeTrace>, String> {
    let eth = EthernetFrame::new_checked(frame).map_err(|e| e.to_string())?;
    if eth.ethertype() != EtherType::Ipv6 {
        return Ok(None);
    }
    let l3 = eth.header_len();
    let ip = Ipv6Packet::new_checked(&frame[l3..]).map_err(|e| e.to_string())?;
    if ip.next_header() != 0 {
        return Ok(None);
    }
    let Some(loc) = find_trace(frame, l3 + 40).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let trace = IoamTrace::new_checked(&frame[loc.trace_range()]).map_err(|e| e.to_string())?;
    let mut it = Hops::new(trace.clone());
    let hops: Vec<HopRecord> = it.by_ref().collect();
    if it.truncated {
        return Err("trace data ends inside a node".into());
    }
    Ok(Some(MtnodeTrace {
        namespace: trace.namespace_id(),
        node_len: trace.node_len(),
        flags: trace.flags(),
        remaining_len: trace.remaining_len(),
        trace_type: trace.trace_type(),
        hops,
    }))
}

/// tshark prints unsigned fields in hex (`0x…`) or decimal depending on the field, and
/// booleans as 0/1 or False/True.
fn tshark_number(s: &str) -> Option<u64> {
    match s {
        "True" | "true" => Some(1),
        "False" | "false" => Some(0),
        _ => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
    }
}

/// Compares tshark's values of one packet with mtnode's decode; each disagreement is one line.
fn compare(at: &str, row: &TsharkRow, m: &MtnodeTrace, mismatches: &mut Vec<String>) {
    let mut check = |field: &str, mtnode: Vec<Option<u64>>| {
        let tshark: Vec<Option<u64>> = row.values[field].iter().map(|s| tshark_number(s)).collect();
        if tshark != mtnode {
            mismatches.push(format!(
                "{at} frame {}: {field}: mtnode {mtnode:?}, tshark {tshark:?} (raw {:?})",
                row.frame, row.values[field]
            ));
        }
    };
    let one = |v: u64| vec![Some(v)];
    check("ipv6.opt.ioam.trace.ns", one(m.namespace.into()));
    check("ipv6.opt.ioam.trace.nodelen", one(m.node_len.into()));
    check("ipv6.opt.ioam.trace.flags", one(m.flags.into()));
    check("ipv6.opt.ioam.trace.flag.o", one(u64::from(m.flags >> 3)));
    check("ipv6.opt.ioam.trace.remlen", one(m.remaining_len.into()));
    check("ipv6.opt.ioam.trace.type", one(m.trace_type.into()));
    let per_hop = |f: fn(&HopRecord) -> Option<u64>| m.hops.iter().map(f).collect();
    check(
        "ipv6.opt.ioam.trace.node.hlim",
        per_hop(|h| h.hop_limit.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.id",
        per_hop(|h| h.node_id.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.iif",
        per_hop(|h| h.ingress_if.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.eif",
        per_hop(|h| h.egress_if.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.tss",
        per_hop(|h| h.timestamp_secs.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.tsf",
        per_hop(|h| h.timestamp_frac.map(u64::from)),
    );
    check(
        "ipv6.opt.ioam.trace.node.trdelay",
        per_hop(|h| h.transit_delay.map(u64::from)),
    );
}

/// What checking one pcap found.
#[derive(Debug, Default)]
struct PcapCheck {
    /// Packets with a trace, by number of hops written.
    traced_by_hops: BTreeMap<usize, u64>,
    traced: u64,
}

/// Checks every packet of `pcap` (labelled `at` in messages) against tshark.
fn check_pcap(
    at: &str,
    pcap: &Path,
    mismatches: &mut Vec<String>,
    experts_seen: &mut BTreeMap<String, u64>,
) -> PcapCheck {
    let frames = read_pcap(pcap).unwrap_or_else(|e| panic!("{e:#}"));
    let rows = tshark_fields(pcap);
    let experts = tshark_experts(pcap);
    assert_eq!(rows.len(), frames.len(), "{at}: tshark rows vs frames");
    let mut result = PcapCheck::default();
    for (i, (frame, row)) in frames.iter().zip(&rows).enumerate() {
        assert_eq!(row.frame, i as u64 + 1, "{at}: tshark frame order");
        let ours = match mtnode_decode(frame) {
            Ok(t) => t,
            Err(e) => {
                mismatches.push(format!(
                    "{at} frame {}: mtnode cannot decode: {e}",
                    row.frame
                ));
                continue;
            }
        };
        match (&ours, row.has_trace()) {
            (Some(m), true) => {
                compare(at, row, m, mismatches);
                result.traced += 1;
                *result.traced_by_hops.entry(m.hops.len()).or_default() += 1;
            }
            (None, false) => {}
            (Some(_), false) => mismatches.push(format!(
                "{at} frame {}: mtnode finds a trace, tshark none",
                row.frame
            )),
            (None, true) => mismatches.push(format!(
                "{at} frame {}: tshark finds a trace, mtnode none",
                row.frame
            )),
        }
        for e in experts.iter().filter(|e| e.frame == row.frame) {
            *experts_seen.entry(e.label()).or_default() += 1;
            if e.is_bad() {
                mismatches.push(format!(
                    "{at} frame {}: tshark expert info {} (trace: {})",
                    row.frame,
                    e.label(),
                    ours.is_some()
                ));
            }
        }
    }
    result
}

/// Traced packets in a pcap as tshark sees them.
fn tshark_traced(pcap: &Path) -> u64 {
    tshark_fields(pcap).iter().filter(|r| r.has_trace()).count() as u64
}

/// Replays `input` through `config` into `out`, then checks each port's output pcap. Returns
/// the report, the traced packets in all outputs, and the outputs by hop count.
fn stage(
    label: &str,
    config: &Arc<NodeConfig>,
    input: &Path,
    out: &Path,
    mismatches: &mut Vec<String>,
    experts_seen: &mut BTreeMap<String, u64>,
) -> (ReplayReport, PcapCheck) {
    let report = replay(Arc::clone(config), input, out, 0)
        .unwrap_or_else(|e| panic!("{label}: replay {}: {e:#}", input.display()));
    let mut total = PcapCheck::default();
    for port in &config.ports {
        let pcap = out.join(format!("{}.pcap", port.name));
        let at = format!("{label} {}.pcap", port.name);
        let c = check_pcap(&at, &pcap, mismatches, experts_seen);
        total.traced += c.traced;
        for (k, v) in c.traced_by_hops {
            *total.traced_by_hops.entry(k).or_default() += v;
        }
    }
    (report, total)
}

/// The valid fixtures: every `ipv6-*.pcap`, the VLAN one and the interleaved mix.
fn valid_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("read pcap-fixtures/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("ipv6-") && name.ends_with(".pcap")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the ipv6-* fixtures, found {files:?}"
    );
    files.push(fixture("vlan-ipv6-mcast.pcap"));
    files.push(fixture("mixed.pcap"));
    files
}

#[test]
fn tshark_decodes_mtnode_traces_as_mtnode_does() {
    require_tshark();
    let encap = inline_config("encap (mcast + unicast)", ENCAP_MCAST_AND_UNICAST_TOML);
    let transit = example_config("transit.toml");
    let scratch = ScratchDir::new("tshark");
    let mut mismatches = Vec::new();
    let mut experts_seen = BTreeMap::new();

    for input in valid_fixtures() {
        let name = input.file_stem().unwrap().to_string_lossy().into_owned();
        let frames = read_pcap(&input).unwrap().len() as u64;
        let traced_in = tshark_traced(&input);

        let encap_dir = scratch.join(&format!("{name}-encap"));
        let label = format!("{name} → encap");
        let (e, e_out) = stage(
            &label,
            &encap,
            &input,
            &encap_dir,
            &mut mismatches,
            &mut experts_seen,
        );
        assert!(e.counters.encap > 0, "{label}: nothing encapsulated");
        assert_eq!(e.counters.packets_out, frames, "{label}: packets out");
        assert_eq!(
            e_out.traced,
            e.counters.encap + traced_in,
            "{label}: traced packets out = encap counter + traced packets in ({traced_in})"
        );
        assert_eq!(
            e_out.traced_by_hops.get(&1).copied().unwrap_or(0),
            e.counters.encap,
            "{label}: one hop in each new trace: {:?}",
            e_out.traced_by_hops
        );

        let transit_dir = scratch.join(&format!("{name}-transit"));
        let label = format!("{name} → encap → transit");
        let (t, t_out) = stage(
            &label,
            &transit,
            &encap_dir.join("out.pcap"),
            &transit_dir,
            &mut mismatches,
            &mut experts_seen,
        );
        assert_eq!(t.counters.packets_out, frames, "{label}: packets out");
        assert_eq!(
            t.counters.transit, e_out.traced,
            "{label}: transit counter = traced packets in"
        );
        assert_eq!(t_out.traced, e_out.traced, "{label}: traced packets out");
        assert_eq!(
            t_out.traced_by_hops.get(&2).copied().unwrap_or(0),
            e.counters.encap,
            "{label}: two hops in each trace mtnode started: {:?}",
            t_out.traced_by_hops
        );
        eprintln!(
            "{name}: {frames} packets, encap {} (+{traced_in} traced already), transit {}; \
             hops {:?} → {:?}",
            e.counters.encap, t.counters.transit, e_out.traced_by_hops, t_out.traced_by_hops
        );
    }

    eprintln!("tshark expert info on mtnode's outputs: {experts_seen:#?}");
    assert!(
        mismatches.is_empty(),
        "{} disagreements between mtnode and tshark:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// The checker is not vacuous: on the malformed fixture, it sees tshark's complaints about the
/// broken traces (cases e and f, frames 5 and 6) and none on the unbroken-looking case d.
#[test]
fn expert_check_flags_the_malformed_fixture() {
    require_tshark();
    let experts = tshark_experts(&fixture("malformed.pcap"));
    let bad_frames = |frame: u64| -> Vec<String> {
        experts
            .iter()
            .filter(|e| e.frame == frame && e.is_bad())
            .map(Expert::label)
            .collect()
    };
    let e = bad_frames(5);
    assert!(
        e.iter()
            .any(|l| l.contains("ipv6.opt.ioam.trace.invalid_type")),
        "case e: {e:?}"
    );
    let f = bad_frames(6);
    assert!(
        f.iter()
            .any(|l| l.contains("ipv6.opt.ioam.trace.invalid_remlen")),
        "case f: {f:?}"
    );
    assert!(bad_frames(4).is_empty(), "case d: {:?}", bad_frames(4));
    for frame in [1, 2, 3, 8] {
        assert!(!bad_frames(frame).is_empty(), "frame {frame} not flagged");
    }
    // And the fields reader finds the valid trace fixture's two nodes.
    let rows = tshark_fields(&fixture("ioam-trace.pcap"));
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            r.values["ipv6.opt.ioam.trace.node.id"],
            ["0x000002", "0x000001"]
        );
    }
}

/// tshark's number formats, as [`compare`] reads them.
#[test]
fn tshark_numbers_parse() {
    assert_eq!(tshark_number("0x00f80000"), Some(0xf8_0000));
    assert_eq!(tshark_number("63"), Some(63));
    assert_eq!(tshark_number("True"), Some(1));
    assert_eq!(tshark_number("x"), None::<u64>);
}

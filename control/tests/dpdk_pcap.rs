//! The DPDK node against `mtnode replay`: every fixture through the encap, transit and decap
//! configurations (and a PIM branch that replicates), on `net_pcap` virtual devices
//! (`--no-huge --no-pci`, no NIC needed), must leave every port with exactly the frames replay
//! writes, byte for byte, and the same counters. The node runs as a subprocess (the `mtnode`
//! binary) because DPDK's EAL initialises once per process. Its clock is the device's: net_pcap
//! stamps each packet with the file's time, so IOAM timestamps and transit delays agree too.
//!
//! Also: bad EAL arguments and a missing port are clean errors (exit 2, DPDK's reason), not
//! crashes. Needs root (DPDK's devices and memory); says SKIPPED loudly otherwise, and fails
//! under CI=true.
#![cfg(feature = "dpdk")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtnode_control::config;
use mtnode_control::replay;
use serde_json::Value;

/// Bound for one node run (EAL start, the file, the idle wait, shutdown).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../pcap-fixtures")).to_path_buf()
}

const PCAPS: [&str; 9] = [
    "ipv6-mcast-ssm.pcap",
    "ipv6-unicast.pcap",
    "ipv6-hbh-router-alert.pcap",
    "ipv6-destopts.pcap",
    "ipv4-mcast.pcap",
    "vlan-ipv6-mcast.pcap",
    "ioam-trace.pcap",
    "malformed.pcap",
    "mixed.pcap",
];

fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// True when the test may run; otherwise says so loudly, or fails under CI=true.
fn require_root(test: &str) -> bool {
    if euid() == Some(0) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root and CI=true: CI never skips the DPDK tests");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n**********************************************\n\
         SKIPPED (needs root): {test}\n\
         **********************************************\n"
    );
    false
}

/// A scratch directory, removed when the test ends (kept, with its path printed, on failure).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mtnode-dpdk-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A pcap with no packets, for the RX side of output-only ports.
fn empty_pcap(path: &Path) {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(path, h).unwrap();
}

/// `base` with every port on a net_pcap device (`net_pcapK` for the K-th port): the first
/// reads `input`, the others an empty file, and each writes `out_dir/<port>.pcap`. The
/// `[dpdk]` section runs without hugepages or PCI and with the device clock.
fn dpdk_config(base: &str, input: &Path, dir: &Path, out_dir: &Path) -> String {
    let node = config::parse_all("base.toml", base).unwrap().node;
    let empty = dir.join("empty.pcap");
    empty_pcap(&empty);
    let mut src = String::new();
    let mut k = 0;
    for line in base.lines() {
        src.push_str(line);
        src.push('\n');
        if line.trim() == "[[port]]" {
            src.push_str(&format!(
                "backend = \"dpdk\"\ndpdk_port = \"net_pcap{k}\"\n"
            ));
            k += 1;
        }
    }
    assert_eq!(k, node.ports.len());
    let mut eal = vec![
        "--no-huge".to_string(),
        "--no-pci".into(),
        "--no-shconf".into(),
        "--no-telemetry".into(),
        "--file-prefix".into(),
        dir.file_name().unwrap().to_string_lossy().into_owned(),
        "-m".into(),
        "256".into(),
        "-l".into(),
        "0".into(),
        "--log-level".into(),
        "lib.eal:error".into(),
    ];
    for (i, p) in node.ports.iter().enumerate() {
        let rx = if i == 0 { input } else { &empty };
        eal.push("--vdev".into());
        eal.push(format!(
            "net_pcap{i},rx_pcap={},tx_pcap={}",
            rx.display(),
            out_dir.join(format!("{}.pcap", p.name)).display()
        ));
    }
    src.push_str(&format!(
        "\n[dpdk]\neal_args = {}\nclock = \"device\"\n",
        serde_json::to_string(&eal).unwrap()
    ));
    src
}

/// Run `mtnode run` on `config` until its input has been idle for 300 ms; bounded.
fn run_node(config: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtnode"))
        .args(["run", "--json", "--exit-when-idle-ms", "300", "--config"])
        .arg(config)
        .env("MTNODE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mtnode");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "mtnode run did not finish in {RUN_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

/// The DPDK node's per-port output, stats and trace count for `base` over `input` equal
/// replay's; returns the node's statistics.
fn same_as_replay(tag: &str, base: &str, input: &Path) -> Value {
    let scratch = Scratch::new(tag);
    let dir = &scratch.0;
    let node_out = dir.join("dpdk");
    let replay_out = dir.join("replay");
    std::fs::create_dir_all(&node_out).unwrap();
    let cfg_path = dir.join("node.toml");
    std::fs::write(&cfg_path, dpdk_config(base, input, dir, &node_out)).unwrap();

    let loaded = config::load_all(&cfg_path).unwrap();
    let report = replay::replay(Arc::new(loaded.node.clone()), input, &replay_out, 0).unwrap();

    let out = run_node(&cfg_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{tag}: mtnode run failed:\n{stderr}"
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();

    for p in &loaded.node.ports {
        let want = frames(&replay_out.join(format!("{}.pcap", p.name)));
        let got = frames(&node_out.join(format!("{}.pcap", p.name)));
        assert_eq!(
            got.len(),
            want.len(),
            "{tag}: frames out of port {}",
            p.name
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "{tag}: port {} frame {i} differs:\n dpdk   {g:02x?}\n replay {w:02x?}",
                p.name
            );
        }
    }
    for key in [
        "packets_in",
        "packets_out",
        "bytes_in",
        "bytes_out",
        "dropped",
        "dropped_by_reason",
        "malformed",
        "roles",
        "overflow",
        "tx_by_port",
    ] {
        assert_eq!(stats[key], report.stats[key], "{tag}: stats key {key}");
    }
    assert_eq!(stats["dpdk"]["traces"], report.traces, "{tag}: traces");
    let d = &stats["dpdk"];
    // Every mbuf went back: none held by the worker, none out of the pool before the ports
    // closed beyond what their RX rings hold, none dropped at TX, every packet device-stamped.
    assert_eq!(d["mbufs_held_at_exit"], 0, "{tag}");
    assert_eq!(d["tx_dropped"], 0, "{tag}");
    assert_eq!(d["unstamped"], 0, "{tag}");
    assert_eq!(d["rx"], frames(input).len() as u64, "{tag}: rx");
    assert_eq!(d["tx"], stats["packets_out"], "{tag}: tx");
    stats
}

fn fixture_config(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("configs").join(name)).unwrap()
}

fn every_fixture_through(config_name: &str) {
    let base = fixture_config(config_name);
    let mut forwarded = 0;
    for pcap in PCAPS {
        let tag = format!("{config_name}-{pcap}");
        let stats = same_as_replay(&tag, &base, &fixtures().join(pcap));
        forwarded += stats["packets_out"].as_u64().unwrap();
        // An encapsulation (a 176-octet Hop-by-Hop header, or a 168-octet option in an
        // existing one) outgrows DPDK's 128 octets of headroom: each such frame, and no other,
        // is moved once on its way out.
        assert_eq!(
            stats["dpdk"]["relocated"], stats["roles"]["encap"],
            "{tag}: relocated frames"
        );
    }
    assert!(forwarded > 0);
}

#[test]
fn encap_node_on_net_pcap_equals_replay() {
    if require_root("encap_node_on_net_pcap_equals_replay") {
        every_fixture_through("encap.toml");
    }
}

#[test]
fn transit_node_on_net_pcap_equals_replay() {
    if require_root("transit_node_on_net_pcap_equals_replay") {
        every_fixture_through("transit.toml");
    }
}

#[test]
fn decap_node_on_net_pcap_equals_replay() {
    if require_root("decap_node_on_net_pcap_equals_replay") {
        every_fixture_through("decap.toml");
    }
}

/// A PIM branch: replicas come from the worker's mempool.
const BRANCH: &str = r#"
[node]
name = "branch"
node_id = 4
forwarding = "route"
timestamp_format = "ptp"
malformed = "forward"

[[port]]
name = "in"
if_id = 40

[[port]]
name = "b1"
if_id = 41

[[port]]
name = "b2"
if_id = 42

[[route]]
prefix = "::/0"
port = "b1"

[[mroute]]
source = "2001:db8:1::10"
group = "ff3e::8000:1"
iif = "in"
oil = ["b1", "b2"]

[[namespace]]
id = 1
role = "transit"
"#;

#[test]
fn branch_node_replicates_on_net_pcap_like_replay() {
    if !require_root("branch_node_replicates_on_net_pcap_like_replay") {
        return;
    }
    // ioam-trace: 3 multicast packets with a trace, 2 copies each.
    let stats = same_as_replay("branch-ioam", BRANCH, &fixtures().join("ioam-trace.pcap"));
    assert_eq!(stats["packets_out"], 6);
    assert_eq!(stats["tx_by_port"]["b1"], 3);
    assert_eq!(stats["tx_by_port"]["b2"], 3);
    same_as_replay("branch-mixed", BRANCH, &fixtures().join("mixed.pcap"));
}

fn run_config(tag: &str, port_lines: [&str; 2], eal: &[&str]) -> (Option<i32>, String) {
    let scratch = Scratch::new(tag);
    let base = fixture_config("transit.toml");
    let mut k = 0;
    let mut src = String::new();
    for line in base.lines() {
        src.push_str(line);
        src.push('\n');
        if line.trim() == "[[port]]" {
            src.push_str(port_lines[k]);
            src.push('\n');
            k += 1;
        }
    }
    let empty = scratch.0.join("empty.pcap");
    empty_pcap(&empty);
    let eal: Vec<String> = eal
        .iter()
        .map(|a| a.replace("EMPTY", &empty.display().to_string()))
        .collect();
    src.push_str(&format!(
        "\n[dpdk]\neal_args = {}\n",
        serde_json::to_string(&eal).unwrap()
    ));
    let cfg = scratch.0.join("node.toml");
    std::fs::write(&cfg, src).unwrap();
    let out = run_node(&cfg);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_eal_arguments_are_an_error_not_a_crash() {
    if !require_root("bad_eal_arguments_are_an_error_not_a_crash") {
        return;
    }
    let ports = [
        "backend = \"dpdk\"\ndpdk_port = 0",
        "backend = \"dpdk\"\ndpdk_port = 1",
    ];
    let (code, err) = run_config(
        "bad-eal",
        ports,
        &["--no-huge", "--no-shconf", "--no-such-eal-option"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("mtnode: DPDK node: DPDK EAL: rte_eal_init failed: Invalid argument"),
        "{err}"
    );
}

#[test]
fn a_missing_port_is_an_error_that_lists_the_ports() {
    if !require_root("a_missing_port_is_an_error_that_lists_the_ports") {
        return;
    }
    let eal = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "256",
        "-l",
        "0",
        "--vdev",
        "net_pcap0,rx_pcap=EMPTY,tx_pcap=/dev/null",
    ];
    let (code, err) = run_config(
        "missing-name",
        [
            "backend = \"dpdk\"\ndpdk_port = \"net_pcap0\"",
            "backend = \"dpdk\"\ndpdk_port = \"net_pcap9\"",
        ],
        &eal,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "mtnode: DPDK node: DPDK port: no DPDK port named `net_pcap9`; ports: 0=net_pcap0"
        ),
        "{err}"
    );
    let (code, err) = run_config(
        "missing-id",
        [
            "backend = \"dpdk\"\ndpdk_port = 0",
            "backend = \"dpdk\"\ndpdk_port = 5",
        ],
        &eal,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("mtnode: DPDK node: DPDK port: no DPDK port 5; ports: 0=net_pcap0"),
        "{err}"
    );
}

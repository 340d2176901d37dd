//! `mtnode lab --netns` (root only): Figure 5 as eight `mtnode run` processes on AF_XDP
//! sockets, one network namespace each, fed by `mtnode gen` and exporting postcards over IPFIX
//! to `mtnode collect`. Per-hop (DEX postcards) and trace mode: the rebuilt tree is the
//! configured one and the in-process lab's, every receiver gets every packet, and the run
//! leaves no namespace behind, also when interrupted with SIGINT halfway.
//!
//! With the `dpdk` feature, the same lab with every node on DPDK (`net_af_packet` devices on
//! the veths, per-section mode) and with a mix of the two backends (BIER, per-hop): the same
//! tree, the same telemetry bytes, no mbuf held at exit.
//!
//! Off root it prints `SKIPPED (needs root)`; under CI=true it fails instead. Every run is
//! bounded in time.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mtnode_tests::netns::{require_root, run_bounded};
use serde_json::Value;

/// One lab at a time: each runs nine busy processes, and the machine may have two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mtnode-cli"))
}

/// The lab's namespaces (`mtl<pid>-<n>`) that exist now, of process `pid` or of any.
fn lab_namespaces(pid: Option<u32>) -> Vec<String> {
    let out = run_bounded(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let prefix = match pid {
        Some(p) => format!("mtl{p}-"),
        None => "mtl".to_owned(),
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn lab(mode: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.args([
        "lab",
        "--netns",
        "--topology",
        "figure5",
        "--mode",
        mode,
        "--packets",
        "200",
        "--json",
    ]);
    cmd.args(extra);
    let out = run_bounded(&mut cmd, Duration::from_secs(150)).unwrap_or_else(|e| panic!("{e:#}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Run the lab in `mode` (with `extra` arguments) and check it against the in-process lab;
/// returns each live node's socket mode (`copy`, `dpdk`, ...) by name.
fn check(mode: &str, extra: &[&str]) -> Vec<(String, String)> {
    let r = lab(mode, extra);
    let ctx = format!("{r:#}");
    assert_eq!(r["mode"], mode);
    assert_eq!(r["tree_matches"], true, "{ctx}");
    assert_eq!(r["rebuilt_edges"], r["configured_edges"], "{ctx}");
    assert_eq!(
        r["rebuilt_edges"], r["in_process"]["rebuilt_edges"],
        "{ctx}"
    );
    assert_eq!(r["in_process"]["tree_matches"], true, "{ctx}");
    assert_eq!(r["packets_sent"], 200, "{ctx}");
    assert_eq!(r["receivers"], 4, "{ctx}");
    assert_eq!(
        r["packets_delivered"].as_u64(),
        Some(200 * 4),
        "every receiver gets every packet: {ctx}"
    );
    assert_eq!(r["postcards"], r["in_process"]["postcards"], "{ctx}");
    assert_eq!(r["matches_in_process"], true, "{ctx}");
    // The same frames carry the same telemetry, live or in process.
    assert_eq!(
        r["telemetry_bytes_per_packet"], r["in_process"]["telemetry_bytes_per_packet"],
        "{ctx}"
    );
    let edges = r["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 7, "{ctx}");
    for e in edges {
        assert_eq!(e["loss"].as_f64(), Some(0.0), "{ctx}");
        let d = e["delay_us_p50"].as_f64().expect("a delay per edge");
        assert!(d < 1_000_000.0, "edge delay {d} µs: {ctx}");
    }
    let mut modes = Vec::new();
    for n in r["live_nodes"].as_array().expect("live nodes") {
        assert_eq!(n["frames_leaked"], 0, "{ctx}");
        assert_eq!(n["postcards_lost"], 0, "{ctx}");
        assert_eq!(n["dropped"], 0, "{ctx}");
        modes.push((
            n["name"].as_str().unwrap_or("?").to_owned(),
            n["socket_mode"].as_str().unwrap_or("?").to_owned(),
        ));
    }
    assert!(
        lab_namespaces(None).is_empty(),
        "namespaces left behind: {:?}",
        lab_namespaces(None)
    );
    modes
}

#[test]
fn figure5_per_hop_and_trace_rebuild_the_in_process_tree() {
    if !require_root("figure5_per_hop_and_trace_rebuild_the_in_process_tree") {
        return;
    }
    let _one = serial();
    for mode in ["per-hop", "trace"] {
        let nodes = check(mode, &[]);
        assert_eq!(nodes.len(), 8);
        assert!(nodes.iter().all(|(_, m)| m != "dpdk"), "{nodes:?}");
    }
}

/// Every node on DPDK: eight EALs of their own, each node's ports `net_af_packet` devices on
/// its veths.
#[cfg(feature = "dpdk")]
#[test]
fn figure5_on_dpdk_nodes_rebuilds_the_in_process_tree() {
    if !require_root("figure5_on_dpdk_nodes_rebuilds_the_in_process_tree") {
        return;
    }
    let _one = serial();
    let nodes = check("per-section", &["--dpdk-nodes", "all"]);
    assert_eq!(nodes.len(), 8);
    assert!(nodes.iter().all(|(_, m)| m == "dpdk"), "{nodes:?}");
}

/// The branch nodes B and D and the leaf F on DPDK, the rest on AF_XDP: frames cross from one
/// backend to the other on every kind of link (AF_XDP → DPDK, DPDK → AF_XDP, DPDK → DPDK).
/// BIER per-hop: the inner hop limit does not change along a BIER path, so the collector
/// orders C and D (both under B's branch 0) by their timestamps, which hold only if no node
/// stamps a frame before it arrived (the clock is read after the RX poll; read before it, this
/// run rebuilt the extra edges B → D and D → C in 5 of 6 runs).
#[cfg(feature = "dpdk")]
#[test]
fn figure5_mixing_backends_rebuilds_the_in_process_tree() {
    if !require_root("figure5_mixing_backends_rebuilds_the_in_process_tree") {
        return;
    }
    let _one = serial();
    let nodes = check(
        "per-hop",
        &["--replication", "bier", "--dpdk-nodes", "B,D,F"],
    );
    let dpdk: Vec<&str> = nodes
        .iter()
        .filter(|(_, m)| m == "dpdk")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(dpdk, ["B", "D", "F"], "{nodes:?}");
}

/// SIGINT once the namespaces exist: the lab stops, says why, and removes all of them.
#[test]
fn interrupted_lab_removes_its_namespaces() {
    if !require_root("interrupted_lab_removes_its_namespaces") {
        return;
    }
    let _one = serial();
    let mut child = Command::new(bin())
        .args(["lab", "--netns", "--mode", "per-hop", "--packets", "3000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mtnode-cli");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lab_namespaces(Some(pid)).len() < 5 {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the lab did not create its namespaces"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Some time into it: nodes starting or traffic flowing.
    std::thread::sleep(Duration::from_millis(1500));
    run_bounded(
        Command::new("kill").args(["-INT", &pid.to_string()]),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the lab did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "an interrupted lab reports failure: {err}"
    );
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(lab_namespaces(Some(pid)), Vec::<String>::new(), "{err}");
}

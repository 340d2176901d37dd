//! The `mtnode` binary as a user runs it: exit codes, JSON on stdout, errors on stderr.

use std::path::Path;
use std::process::Command;

fn mtnode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mtnode"))
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../pcap-fixtures"))
}

#[test]
fn lab_json_has_the_design_keys() {
    let out = mtnode()
        .args(["lab", "--packets", "50", "--source-rate", "0", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // No --mode: Figure 5 in both modes, one report each.
    let reports = v.as_array().expect("an array of reports");
    let modes: Vec<_> = reports
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["trace", "per-section", "per-hop"]);
    for r in reports {
        assert_eq!(r["tree_matches"], true);
        assert_eq!(r["packets_sent"], 50);
        assert_eq!(r["packets_delivered"], 50 * 4);
        assert_eq!(r["configured_edges"], r["rebuilt_edges"]);
        assert!(r["telemetry_bytes_per_packet"].as_f64().unwrap() > 0.0);
        let edges = r["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 7);
        for k in [
            "parent",
            "child",
            "branch_index",
            "delay_us_p50",
            "delay_us_p99",
            "loss",
        ] {
            assert!(edges[0].get(k).is_some(), "edge key {k}");
        }
    }
}

#[test]
fn replay_writes_stats_and_prints_them_with_json() {
    let dir = std::env::temp_dir().join(format!("mtnode-cli-{}", std::process::id()));
    let out = mtnode()
        .arg("replay")
        .arg("--config")
        .arg(fixtures().join("configs/encap.toml"))
        .arg("--input")
        .arg(fixtures().join("ipv6-mcast-ssm.pcap"))
        .arg("--output-dir")
        .arg(&dir)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["packets_in"].as_u64(), v["packets_out"].as_u64()),
        (Some(12), Some(12))
    );
    assert_eq!(v["roles"]["encap"], 12);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("stats.json")).unwrap()).unwrap();
    assert_eq!(file, v);
    assert!(dir.join("out.pcap").exists() && dir.join("in.pcap").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_config_is_refused_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("mtnode-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    let text = std::fs::read_to_string(fixtures().join("configs/encap.toml"))
        .unwrap()
        .replace("if_id = 11", "if_id = 70000");
    std::fs::write(&cfg, text).unwrap();
    let out = mtnode()
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg("--input")
        .arg(fixtures().join("ipv6-mcast-ssm.pcap"))
        .arg("--output-dir")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:18: field `port.if_id`: 70000 is out of range 0..=65535"),
        "{err}"
    );
    assert!(
        !dir.join("out").exists(),
        "nothing is written for a refused config"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

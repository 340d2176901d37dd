//! The lab rebuilds the configured tree from postcards: the RFC 8279 §6.3 BIER topology and
//! 100 random trees (up to 30 nodes, fan-out up to 8), each by PIM and by BIER, in trace and
//! per-section mode, and in per-hop mode in each branch-ID encoding.

use mtnode_control::lab::{self, LabOptions};
use mtnode_control::topology::{Replication, Topology};

fn rebuilt(t: &Topology, mode: &str) {
    let r = lab::run(t, mode, &LabOptions::fast(8)).unwrap();
    assert_eq!(
        r["tree_matches"],
        true,
        "{} {:?} {mode}:\n{}",
        t.name,
        t.replication,
        lab::render(&r)
    );
    assert_eq!(
        r["packets_delivered"].as_u64().unwrap(),
        8 * t.leaves().len() as u64,
        "{} {mode}",
        t.name
    );
}

#[test]
fn rfc8279_bier_topology() {
    for mode in ["trace", "per-section"] {
        rebuilt(&Topology::rfc8279(), mode);
    }
}

#[test]
fn hundred_random_trees_by_pim_and_bier_in_both_modes() {
    for seed in 1..=100u64 {
        let n = 3 + (seed as usize * 7) % 28; // 3..=30 nodes
        for replication in [Replication::Pim, Replication::Bier] {
            let t = Topology::random(seed, n, 8, 10, replication);
            for mode in ["trace", "per-section"] {
                rebuilt(&t, mode);
            }
        }
    }
}

/// Per-hop DEX postcards with branch IDs rebuild the same 100 random trees, by PIM and BIER, in
/// each of the three encodings.
#[test]
fn hundred_random_trees_per_hop_in_every_encoding() {
    for seed in 1..=100u64 {
        let n = 3 + (seed as usize * 7) % 28;
        for replication in [Replication::Pim, Replication::Bier] {
            for enc in ["explicit", "split", "sum"] {
                let mut t = Topology::random(seed, n, 8, 10, replication);
                t.branch_encoding = enc.to_string();
                rebuilt(&t, "per-hop");
            }
        }
    }
}

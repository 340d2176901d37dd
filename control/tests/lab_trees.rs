//! The lab rebuilds the configured tree from postcards: the RFC 8279 §6.3 BIER topology and
//! 100 random trees (up to 30 nodes, fan-out up to 8), each by PIM and by BIER, in trace and
//! per-section mode.

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

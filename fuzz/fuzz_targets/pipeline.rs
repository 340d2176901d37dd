//! The input as one Ethernet frame through every node (trace-mode encap, transit and decap,
//! bump and routing, both malformed policies; a PIM branch point in per-section mode; per-hop
//! DEX encap, branch and decap; a BIER BFR and BFER), also in BIER through the BIER nodes and
//! three at a time through the nodes that replicate, then along the chains, which must give
//! the packet back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtnode_fuzz::pipeline(data));

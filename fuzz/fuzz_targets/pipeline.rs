//! The input as one Ethernet frame through an encapsulating, a transit and a decapsulating node
//! (bump and routing, both malformed policies), then through the encap → transit → decap chain,
//! which must give the packet back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtnode_fuzz::pipeline(data));

//! Every wire view, accessor and `Repr` on the input, at offset 0 and at each header a checked
//! walk from Ethernet finds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mtnode_fuzz::wire_views(data));

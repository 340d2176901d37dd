//! JSON form of a decoded IOAM trace, shared by `replay`'s traces.jsonl and the lab report, so
//! scripts read the same keys everywhere.

use mtnode_dataplane::ioam::{HopRecord, Hops, TimestampFormat};
use mtnode_dataplane::wire::ioam::flags;
use mtnode_dataplane::wire::IoamTrace;
use serde_json::{json, Map, Value};

/// The hops of a trace in path order (first hop first), and whether the data ended early.
pub fn path(trace: &IoamTrace<&[u8]>) -> (Vec<HopRecord>, bool) {
    let mut hops = Hops::new(trace.clone());
    let mut v: Vec<HopRecord> = hops.by_ref().collect();
    v.reverse();
    (v, hops.truncated)
}

/// `{namespace, trace_type, node_len, flags, overflow, remaining_len, truncated, hops: [...]}`.
pub fn trace(trace: &IoamTrace<&[u8]>, ts: TimestampFormat) -> Value {
    let (hops, truncated) = path(trace);
    let data = trace.data();
    json!({
        "namespace": trace.namespace_id(),
        "trace_type": format!("{:#08x}", trace.trace_type()),
        "node_len": trace.node_len(),
        "flags": trace.flags(),
        "overflow": trace.flags() & flags::OVERFLOW != 0,
        "remaining_len": trace.remaining_len(),
        "truncated": truncated,
        "hops": hops.iter().map(|h| hop(h, ts, data)).collect::<Vec<_>>(),
    })
}

/// One hop with the fields its trace type has.
pub fn hop(h: &HopRecord, ts: TimestampFormat, data: &[u8]) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(v) = h.node_id {
        put("node_id", v.into());
    }
    if let Some(v) = h.hop_limit {
        put("hop_lim", v.into());
    }
    if let Some(v) = h.ingress_if {
        put("ingress_if", v.into());
    }
    if let Some(v) = h.egress_if {
        put("egress_if", v.into());
    }
    if let Some(v) = h.timestamp_secs {
        put("timestamp_secs", v.into());
    }
    if let Some(v) = h.timestamp_frac {
        put("timestamp_frac", v.into());
    }
    if let (Some(s), Some(f)) = (h.timestamp_secs, h.timestamp_frac) {
        if s != u32::MAX || f != u32::MAX {
            put("timestamp_ns", ts.to_ns(s, f).into());
        }
    }
    if let Some(v) = h.transit_delay {
        put("transit_delay_ns", v.into());
    }
    if let Some(v) = h.namespace_data {
        put("namespace_data", v.into());
    }
    if let Some(v) = h.queue_depth {
        put("queue_depth", v.into());
    }
    if let Some(v) = h.checksum_complement {
        put("checksum_complement", v.into());
    }
    if let Some(v) = h.hop_limit_wide {
        put("hop_lim_wide", v.into());
    }
    if let Some(v) = h.node_id_wide {
        put("node_id_wide", v.into());
    }
    if let Some(v) = h.ingress_if_wide {
        put("ingress_if_wide", v.into());
    }
    if let Some(v) = h.egress_if_wide {
        put("egress_if_wide", v.into());
    }
    if let Some(v) = h.namespace_data_wide {
        put("namespace_data_wide", v.into());
    }
    if let Some(v) = h.buffer_occupancy {
        put("buffer_occupancy", v.into());
    }
    if let Some((schema, at, len)) = h.snapshot {
        let hex: String = data[at..at + len]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        put("opaque_state", json!({"schema_id": schema, "data": hex}));
    }
    Value::Object(m)
}

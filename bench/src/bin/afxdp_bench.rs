//! The two ends of `scripts/bench-afxdp`, on the same AF_XDP backend as mtnode
//! (`dataplane::io::afxdp`), and its baseline forwarder:
//!
//! - `ends`: one thread that transmits IPv6 UDP frames carrying an empty IOAM Pre-allocated
//!   Trace (namespace 1, type 0xF80000, 8 hops: 176 octets of Hop-by-Hop) out of one interface
//!   as fast as its TX ring takes them, and counts the frames of that size that come back on
//!   the sink interfaces during the measurement window. Prints JSON.
//! - `fwd`: the plain AF_XDP forwarder (xsk-rs's forwarding example's design): every frame
//!   received on `--in` goes to `--out`'s TX ring as it is, out of the same UMEM, with no
//!   processing at all. Prints JSON.
//!
//! `--size` is the frame size before the trace (64, 512, 1500): frames on the wire are 176
//! octets longer. Safe code only: the sockets are `XskSet`'s.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mtnode_dataplane::frame::Frame;
use mtnode_dataplane::io::afxdp::{XskConfig, XskPortSpec, XskSet, ZeroCopy};
use mtnode_dataplane::pipeline::Packet;
use serde_json::json;

const HBH_LEN: usize = 176;

struct Args(Vec<String>);

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn req(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or(format!("--{name} is required"))
    }
    fn num(&self, name: &str, default: f64) -> Result<f64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name} {v}: not a number")),
        }
    }
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{s}: not a MAC"))?;
    v.try_into().map_err(|_| format!("{s}: not a MAC"))
}

/// Ethernet + IPv6 (hop limit 64) + the empty trace + UDP, `size + 176` octets in all.
fn template(size: usize, dst_mac: [u8; 6], multicast: bool) -> Vec<u8> {
    let src = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let dst: [u8; 16] = if multicast {
        [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1]
    } else {
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]
    };
    let udp_len = size - 14 - 40;
    let mut f = Vec::with_capacity(size + HBH_LEN);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&((HBH_LEN + udp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    // Hop-by-Hop: next header UDP, PadN(0), IOAM trace option (0x31), 8 hops of 5 words.
    f.extend_from_slice(&[17, (HBH_LEN / 8 - 1) as u8, 0x01, 0x00]);
    f.extend_from_slice(&[0x31, (HBH_LEN - 6) as u8, 0, 0]);
    f.extend_from_slice(&[0, 1, 5 << 3, 40, 0xf8, 0, 0, 0]);
    f.resize(14 + 40 + HBH_LEN, 0);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(size + HBH_LEN, 0xa5);
    f
}

fn pin(args: &Args) -> Result<(), String> {
    if let Some(c) = args.get("core") {
        let id = c.parse().map_err(|_| format!("--core {c}"))?;
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            return Err(format!("could not pin to core {id}"));
        }
    }
    Ok(())
}

fn xsk_config() -> XskConfig {
    XskConfig {
        zero_copy: ZeroCopy::Auto,
        ..XskConfig::default()
    }
}

fn ends(args: &Args) -> Result<serde_json::Value, String> {
    pin(args)?;
    let tx_if = args.req("tx")?;
    let rx_ifs: Vec<&str> = args.req("rx")?.split(',').collect();
    let size = args.num("size", 64.0)? as usize;
    if !(64..=1500).contains(&size) {
        return Err("--size is 64..=1500".into());
    }
    let multicast = args.get("kind").unwrap_or("multicast") == "multicast";
    let dst_mac = match args.get("dst-mac") {
        Some(m) => mac(m)?,
        None if multicast => [0x33, 0x33, 0x80, 0, 0, 1],
        None => return Err("--dst-mac is required for unicast".into()),
    };
    let warmup = Duration::from_secs_f64(args.num("warmup", 1.0)?);
    let window = Duration::from_secs_f64(args.num("seconds", 3.0)?);
    let frame = template(size, dst_mac, multicast);

    let mut specs = vec![XskPortSpec {
        port: 0,
        interface: tx_if.to_string(),
        queue_id: 0,
    }];
    for (i, r) in rx_ifs.iter().enumerate() {
        specs.push(XskPortSpec {
            port: i as u16 + 1,
            interface: r.to_string(),
            queue_id: 0,
        });
    }
    let mut set = XskSet::open(&specs, &xsk_config()).map_err(|e| e.to_string())?;
    for n in set.notes() {
        eprintln!("afxdp-bench ends: {n}");
    }
    let mut batch: Vec<Packet<_>> = Vec::with_capacity(64 * specs.len());
    let mut rx = vec![0u64; specs.len()];
    let (mut sent, mut sent_window) = (0u64, 0u64);
    let start = Instant::now();
    let (from, to) = (start + warmup, start + warmup + window);
    loop {
        let now = Instant::now();
        if now >= to {
            break;
        }
        let measuring = now >= from;
        let room = set.tx_room(0).min(64);
        for _ in 0..room {
            let Some(buf) = set.alloc() else { break };
            let f = Frame::from_bytes(buf, &frame).ok_or("frame does not fit")?;
            if set.send(0, f) {
                sent += 1;
                sent_window += measuring as u64;
            }
        }
        set.flush();
        set.rx(64, 0, &mut batch);
        for p in batch.drain(..) {
            if measuring && p.frame.len() == frame.len() {
                rx[p.rx_port as usize] += 1;
            }
            set.free(p.frame.into_buf());
        }
    }
    set.close(Duration::from_millis(200));
    let secs = window.as_secs_f64();
    Ok(json!({
        "size": size,
        "wire_size": frame.len(),
        "sent": sent,
        "sent_pps": sent_window as f64 / secs,
        "rx": rx[1..].to_vec(),
        "rx_pps": rx[1..].iter().map(|n| *n as f64 / secs).collect::<Vec<_>>(),
        "mode": set.mode().name(),
    }))
}

fn fwd(args: &Args) -> Result<serde_json::Value, String> {
    pin(args)?;
    let seconds = Duration::from_secs_f64(args.num("seconds", 10.0)?);
    let specs = [
        XskPortSpec {
            port: 0,
            interface: args.req("in")?.to_string(),
            queue_id: 0,
        },
        XskPortSpec {
            port: 1,
            interface: args.req("out")?.to_string(),
            queue_id: 0,
        },
    ];
    let mut set = XskSet::open(&specs, &xsk_config()).map_err(|e| e.to_string())?;
    for n in set.notes() {
        eprintln!("afxdp-bench fwd: {n}");
    }
    // Scripts wait for this line.
    eprintln!("afxdp-bench fwd: ready");
    let mut batch: Vec<Packet<_>> = Vec::with_capacity(128);
    let mut forwarded = 0u64;
    let end = Instant::now() + seconds;
    let mut polls = 0u32;
    loop {
        polls = polls.wrapping_add(1);
        if polls % 1024 == 0 && Instant::now() >= end {
            break;
        }
        set.flush();
        if set.rx(64, 0, &mut batch) == 0 {
            continue;
        }
        for p in batch.drain(..) {
            if p.rx_port == 0 {
                forwarded += set.send(1, p.frame) as u64;
            } else {
                set.free(p.frame.into_buf());
            }
        }
        set.flush();
    }
    let acc = set.close(Duration::from_millis(200));
    Ok(json!({ "forwarded": forwarded, "mode": set.mode().name(), "umem_leaked": acc.leaked }))
}

fn main() -> ExitCode {
    mtnode_dataplane::io::afxdp::quiet_libbpf();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = Args(argv.clone());
    let r = match argv.first().map(String::as_str) {
        Some("ends") => ends(&args),
        Some("fwd") => fwd(&args),
        _ => Err("usage: afxdp-bench ends --tx IF --rx IF[,IF…] --size N [--kind unicast|multicast] [--dst-mac MAC] [--warmup S] [--seconds S] [--core C]\n       afxdp-bench fwd --in IF --out IF [--seconds S] [--core C]".into()),
    };
    match r {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("afxdp-bench: {e}");
            ExitCode::from(2)
        }
    }
}

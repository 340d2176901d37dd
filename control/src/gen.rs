//! `mtnode gen`: a traffic generator and receiver on AF_XDP sockets, for the lab and the
//! benchmarks. It sends multicast UDP streams (IPv6 SSM, IPv4, or IPv6 inside BIER) at a packet
//! rate or at one of the seed's video bitrates, with an ECN codepoint, and a payload carrying the
//! stream, a sequence number and the send time; in receive mode it counts, per stream, what
//! arrives: loss, duplicates, reordering, ECN codepoints (CE marks from an AQM on the way) and
//! one-way delay (sender and receiver share the host's clock).
//!
//! Payload (after the UDP header): `"MTNG" | stream (16) | balance (16) | seq (64) | sent ns (64)`,
//! then filler. `balance` keeps the one's-complement sum of the payload constant, so the UDP
//! checksum computed once for the template stays valid whatever the sequence number and time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mtnode_dataplane::frame::Frame;
use mtnode_dataplane::io::afxdp::{XskConfig, XskPortSpec, XskSet};
use mtnode_dataplane::pipeline::Packet;
use serde_json::{json, Value};

/// Marks a generator payload.
pub const MAGIC: [u8; 4] = *b"MTNG";
/// Octets of the payload header (magic, stream, balance, seq, time).
pub const PAYLOAD_HEADER: usize = 24;

/// What kind of stream to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Ipv6Ssm,
    Ipv4,
    /// IPv6 SSM inside BIER (RFC 8296 over Ethernet, BSL 64).
    Bier,
}

/// `mtnode gen`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Send out of this interface.
    #[arg(long)]
    pub tx: Option<String>,
    /// Receive and count on these interfaces (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub rx: Vec<String>,
    /// The interfaces' queue to bind (on veth, a frame sent on queue N arrives on the peer's
    /// queue N).
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// ipv6-ssm, ipv4 or bier.
    #[arg(long, default_value = "ipv6-ssm")]
    pub stream: String,
    /// Streams, sent round-robin; stream i goes to the group + i.
    #[arg(long, default_value_t = 1)]
    pub streams: u16,
    /// Packets per second over all streams (0: as fast as the TX ring takes them).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Per stream, a video bitrate of the seed instead of --rate: 480p, 720p, 1080p, 2160p
    /// (typical), or with :peak.
    #[arg(long)]
    pub video: Option<String>,
    /// Frame size, octets (Ethernet header to the end of the payload).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// ECN codepoint: not-ect, ect0, ect1 or ce.
    #[arg(long, default_value = "not-ect")]
    pub ecn: String,
    /// Source and group (IPv6 for ipv6-ssm and bier, IPv4 for ipv4).
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    /// BIER: the BFR-ids to address (bit positions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub bier_bits: Vec<u16>,
    /// Destination MAC (default: the group's multicast MAC; BIER: broadcast).
    #[arg(long)]
    pub dst_mac: Option<String>,
    /// Stop after sending this many packets.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds (default 5).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Keep receiving this long after the last packet is sent.
    #[arg(long, default_value_t = 0.5)]
    pub linger: f64,
    #[arg(long)]
    pub json: bool,
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{s}: not a MAC address"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("{s}: not a MAC address"))
}

/// The seed's video bitrates at 60 fps, Mb/s (typical, peak).
fn video_mbps(spec: &str) -> Result<f64> {
    let (res, which) = spec.split_once(':').unwrap_or((spec, "typical"));
    let (typ, peak) = match res {
        "480p" => (1.3, 3.0),
        "720p" => (3.6, 5.0),
        "1080p" => (8.1, 18.0),
        "2160p" => (32.0, 70.0),
        _ => bail!("--video {spec}: 480p, 720p, 1080p or 2160p"),
    };
    match which {
        "typical" => Ok(typ),
        "peak" => Ok(peak),
        _ => bail!("--video {spec}: :typical or :peak"),
    }
}

fn ecn_bits(s: &str) -> Result<u8> {
    Ok(match s {
        "not-ect" => 0,
        "ect1" => 1,
        "ect0" => 2,
        "ce" => 3,
        _ => bail!("--ecn {s}: not-ect, ect0, ect1 or ce"),
    })
}

fn sum16(b: &[u8]) -> u32 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One stream's template frame and where its payload starts.
struct Template {
    frame: Vec<u8>,
    payload: usize,
}

fn build(args: &GenArgs, kind: StreamKind, stream: u16, ecn: u8) -> Result<Template> {
    let mut f = Vec::with_capacity(args.size.max(128));
    let bier_len = if kind == StreamKind::Bier { 12 + 8 } else { 0 };
    let (l3_len, v6) = match kind {
        StreamKind::Ipv4 => (20, false),
        _ => (40, true),
    };
    let min = 14 + bier_len + l3_len + 8 + PAYLOAD_HEADER;
    if args.size < min || args.size > mtnode_dataplane::io::MAX_FRAME {
        bail!(
            "--size {}: {min}..={} for this stream",
            args.size,
            mtnode_dataplane::io::MAX_FRAME
        );
    }
    let udp_len = args.size - 14 - bier_len - l3_len;
    let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
        let s: std::net::Ipv6Addr = args
            .source
            .as_deref()
            .unwrap_or("2001:db8:1::10")
            .parse()
            .context("--source: an IPv6 address")?;
        let g: std::net::Ipv6Addr = args
            .group
            .as_deref()
            .unwrap_or("ff3e::8000:1")
            .parse()
            .context("--group: an IPv6 address")?;
        let g = std::net::Ipv6Addr::from(u128::from(g) + u128::from(stream));
        (s.octets().to_vec(), g.octets().to_vec())
    } else {
        let s: std::net::Ipv4Addr = args
            .source
            .as_deref()
            .unwrap_or("192.0.2.10")
            .parse()
            .context("--source: an IPv4 address")?;
        let g: std::net::Ipv4Addr = args
            .group
            .as_deref()
            .unwrap_or("232.1.1.1")
            .parse()
            .context("--group: an IPv4 address")?;
        let g = std::net::Ipv4Addr::from(u32::from(g) + u32::from(stream));
        (s.octets().to_vec(), g.octets().to_vec())
    };
    let dst_mac = match (&args.dst_mac, kind) {
        (Some(m), _) => parse_mac(m)?,
        (None, StreamKind::Bier) => [0xff; 6],
        (None, StreamKind::Ipv4) => [0x01, 0x00, 0x5e, dst[1] & 0x7f, dst[2], dst[3]],
        (None, _) => [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]],
    };
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0x6e, 0x01]);
    let ethertype: u16 = match kind {
        StreamKind::Bier => 0xab37,
        StreamKind::Ipv4 => 0x0800,
        StreamKind::Ipv6Ssm => 0x86dd,
    };
    f.extend_from_slice(&ethertype.to_be_bytes());
    if kind == StreamKind::Bier {
        let mut bits = [0u8; 8];
        for &k in &args.bier_bits {
            if !(1..=64).contains(&k) {
                bail!("--bier-bits: {k} is not a bit position of a 64-bit BitString");
            }
            let k = usize::from(k - 1);
            bits[7 - k / 8] |= 1 << (k % 8);
        }
        // BIFT-id 1, TC 0, S 1, TTL 64 | 0101 ver 0 BSL 1 entropy | OAM 0 DSCP 0 proto 6 | BFIR 1.
        f.extend_from_slice(&((1u32 << 12) | (1 << 8) | 64).to_be_bytes());
        f.extend_from_slice(&((0x5u32 << 28) | (1 << 20) | u32::from(stream)).to_be_bytes());
        f.extend_from_slice(&6u16.to_be_bytes());
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(&bits);
    }
    let l3 = f.len();
    if v6 {
        f.extend_from_slice(&[0x60 | (ecn >> 2), ecn << 4, 0, 0]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
    } else {
        f.extend_from_slice(&[0x45, ecn]);
        f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let c = !fold(sum16(&f[l3..l3 + 20]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&5001u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    let payload = f.len();
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&stream.to_be_bytes());
    f.resize(args.size, 0);
    for (i, b) in f[payload + PAYLOAD_HEADER..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // UDP checksum over the pseudo-header and the datagram, with seq, time and balance 0.
    let mut s = sum16(&src) + sum16(&dst) + 17 + udp_len as u32;
    s += sum16(&f[l4..]);
    let mut c = !fold(s);
    if c == 0 {
        c = 0xffff;
    }
    f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    Ok(Template { frame: f, payload })
}

/// Write seq and time into a frame's payload and rebalance its one's-complement sum.
fn stamp(bytes: &mut [u8], payload: usize, seq: u64, sent_ns: u64) {
    let p = &mut bytes[payload..payload + PAYLOAD_HEADER];
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..24].copy_from_slice(&sent_ns.to_be_bytes());
    let s = fold(sum16(&p[8..24]));
    // s + !s = 0xffff, one's-complement zero: the datagram's sum is what it was.
    p[6..8].copy_from_slice(&(!s).to_be_bytes());
}

/// Find a generator payload in a received frame: (stream, seq, sent ns, ECN codepoint).
pub fn parse_payload(f: &[u8]) -> Option<(u16, u64, u64, u8)> {
    let mut ethertype = u16::from_be_bytes(f.get(12..14)?.try_into().ok()?);
    let mut at = 14;
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes(f.get(16..18)?.try_into().ok()?);
        at = 18;
    }
    if ethertype == 0xab37 {
        let bsl = f.get(at + 5)? >> 4;
        let proto = f.get(at + 9)? & 0x3f;
        at += 12 + (1usize << (bsl + 2));
        ethertype = match proto {
            4 => 0x0800,
            6 => 0x86dd,
            _ => return None,
        };
    }
    let (ecn, l4) = match ethertype {
        0x86dd => {
            let h = f.get(at..at + 40)?;
            let ecn = (u16::from_be_bytes([h[0], h[1]]) >> 4) as u8 & 3;
            let mut nh = h[6];
            let mut off = at + 40;
            while matches!(nh, 0 | 43 | 60) {
                nh = *f.get(off)?;
                off += (usize::from(*f.get(off + 1)?) + 1) * 8;
            }
            if nh != 17 {
                return None;
            }
            (ecn, off)
        }
        0x0800 => {
            let h = f.get(at..at + 20)?;
            if h[9] != 17 {
                return None;
            }
            (h[1] & 3, at + usize::from(h[0] & 0xf) * 4)
        }
        _ => return None,
    };
    let p = f.get(l4 + 8..l4 + 8 + PAYLOAD_HEADER)?;
    if p[..4] != MAGIC {
        return None;
    }
    Some((
        u16::from_be_bytes([p[4], p[5]]),
        u64::from_be_bytes(p[8..16].try_into().ok()?),
        u64::from_be_bytes(p[16..24].try_into().ok()?),
        ecn,
    ))
}

/// What a receiver saw of one stream.
#[derive(Debug)]
struct RxStream {
    received: u64,
    /// Sequence numbers seen, as a bitmap (grows with the highest one).
    seen: Vec<u64>,
    max_seq: Option<u64>,
    duplicates: u64,
    reordered: u64,
    last_seq: Option<u64>,
    ecn: [u64; 4],
    delay: Histogram<u64>,
}

impl RxStream {
    fn new() -> RxStream {
        RxStream {
            received: 0,
            seen: Vec::new(),
            max_seq: None,
            duplicates: 0,
            reordered: 0,
            last_seq: None,
            ecn: [0; 4],
            delay: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
        }
    }

    fn record(&mut self, seq: u64, delay_ns: u64, ecn: u8) {
        self.received += 1;
        self.ecn[usize::from(ecn & 3)] += 1;
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.seen.len() {
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[w] |= 1 << b;
        if self.last_seq.is_some_and(|l| seq < l) {
            self.reordered += 1;
        }
        self.last_seq = Some(seq);
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        self.delay.saturating_record(delay_ns.max(1));
    }

    fn json(&self, stream: u16, sent: Option<u64>) -> Value {
        let unique = self.received - self.duplicates;
        let expected = sent.unwrap_or(self.max_seq.map_or(0, |m| m + 1));
        let us = |q: f64| self.delay.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "stream": stream,
            "received": self.received,
            "unique": unique,
            "expected": expected,
            "lost": expected.saturating_sub(unique),
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "ecn": {"not-ect": self.ecn[0], "ect1": self.ecn[1], "ect0": self.ecn[2], "ce": self.ecn[3]},
            "delay_us_p50": us(0.5),
            "delay_us_p99": us(0.99),
            "delay_us_max": self.delay.max() as f64 / 1000.0,
        })
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Run the generator and/or the receiver; the report as JSON.
pub fn run(args: &GenArgs) -> Result<Value> {
    mtnode_dataplane::io::afxdp::quiet_libbpf();
    if args.tx.is_none() && args.rx.is_empty() {
        bail!("give --tx IF to send, --rx IF[,IF…] to receive, or both");
    }
    let kind = match args.stream.as_str() {
        "ipv6-ssm" => StreamKind::Ipv6Ssm,
        "ipv4" => StreamKind::Ipv4,
        "bier" => StreamKind::Bier,
        s => bail!("--stream {s}: ipv6-ssm, ipv4 or bier"),
    };
    let ecn = ecn_bits(&args.ecn)?;
    let streams = args.streams.max(1);
    let templates: Vec<Template> = (0..streams)
        .map(|s| build(args, kind, s, ecn))
        .collect::<Result<_>>()?;
    let rate = match &args.video {
        Some(v) => video_mbps(v)? * 1e6 / (args.size as f64 * 8.0) * f64::from(streams),
        None => args.rate,
    };

    let mut specs = Vec::new();
    if let Some(tx) = &args.tx {
        specs.push(XskPortSpec {
            port: 0,
            interface: tx.clone(),
            queue_id: args.queue,
        });
    }
    for (i, r) in args.rx.iter().enumerate() {
        specs.push(XskPortSpec {
            port: i as u16 + 1,
            interface: r.clone(),
            queue_id: args.queue,
        });
    }
    let mut set = XskSet::open(&specs, &XskConfig::default())?;
    for n in set.notes() {
        eprintln!("mtnode gen: {n}");
    }
    eprintln!("mtnode gen: ready");

    // Per receiving interface (a branch of the tree), per stream.
    let mut rx: Vec<Vec<RxStream>> = args
        .rx
        .iter()
        .map(|_| (0..streams).map(|_| RxStream::new()).collect())
        .collect();
    let mut batch: Vec<Packet<_>> = Vec::with_capacity(64 * specs.len());
    let mut seqs = vec![0u64; usize::from(streams)];
    let mut sent = 0u64;
    let mut foreign = 0u64;
    let start = Instant::now();
    let send_until = start + Duration::from_secs_f64(args.duration.max(0.0));
    let stop_at = send_until + Duration::from_secs_f64(args.linger.max(0.0));
    let limit = args.count.unwrap_or(u64::MAX);
    let sending = args.tx.is_some();
    loop {
        let now = Instant::now();
        let wall = now_ns();
        let still_sending = sending && now < send_until && sent < limit;
        if !still_sending && (now >= stop_at || args.rx.is_empty()) {
            break;
        }
        if still_sending {
            let due = if rate > 0.0 {
                ((now - start).as_secs_f64() * rate) as u64
            } else {
                u64::MAX
            };
            let n = due
                .min(limit)
                .saturating_sub(sent)
                .min(set.tx_room(0) as u64)
                .min(64);
            for _ in 0..n {
                let s = (sent % u64::from(streams)) as usize;
                let t = &templates[s];
                let Some(buf) = set.alloc() else { break };
                let Some(mut f) = Frame::from_bytes(buf, &t.frame) else {
                    bail!("frame does not fit a UMEM frame")
                };
                stamp(f.bytes_mut(), t.payload, seqs[s], wall);
                seqs[s] += 1;
                if set.send(0, f) {
                    sent += 1;
                }
            }
        }
        set.flush();
        set.rx(64, wall, &mut batch);
        for p in batch.drain(..) {
            if p.rx_port > 0 {
                match parse_payload(p.frame.bytes()) {
                    Some((s, seq, t, e)) if s < streams => rx[usize::from(p.rx_port) - 1]
                        [usize::from(s)]
                    .record(seq, wall.saturating_sub(t), e),
                    _ => foreign += 1,
                }
            }
            set.free(p.frame.into_buf());
        }
        if !still_sending && rate > 0.0 {
            std::hint::spin_loop();
        }
    }
    let acc = set.close(Duration::from_millis(200));
    let elapsed = start.elapsed().as_secs_f64();
    let mut report = json!({
        "stream": args.stream,
        "size": args.size,
        "mode": set.mode().name(),
        "umem_leaked": acc.leaked,
    });
    if sending {
        report["tx"] = json!({
            "interface": args.tx,
            "sent": sent,
            "per_stream": seqs,
            "rate_pps": sent as f64 / elapsed.min(args.duration.max(1e-9)),
            "ecn": args.ecn,
        });
    }
    if !args.rx.is_empty() {
        report["rx"] = json!({
            "foreign": foreign,
            "interfaces": args.rx.iter().zip(&rx).map(|(name, streams)| json!({
                "interface": name,
                "streams": streams.iter().enumerate().map(|(i, s)| {
                    s.json(i as u16, sending.then(|| seqs[i]))
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
    }
    Ok(report)
}

/// A short human summary.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    if let Some(tx) = v.get("tx") {
        out.push_str(&format!(
            "mtnode gen: sent {} packets ({:.0} pps) on {}\n",
            tx["sent"],
            tx["rate_pps"].as_f64().unwrap_or(0.0),
            tx["interface"]
        ));
    }
    for i in v["rx"]["interfaces"].as_array().into_iter().flatten() {
        for s in i["streams"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} stream {}: received {} lost {} dup {} reordered {} CE {} delay p50 {:.1} us p99 {:.1} us\n",
                i["interface"].as_str().unwrap_or("?"), s["stream"], s["received"], s["lost"], s["duplicates"], s["reordered"],
                s["ecn"]["ce"], s["delay_us_p50"].as_f64().unwrap_or(0.0),
                s["delay_us_p99"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        g: GenArgs,
    }

    fn args(extra: &[&str]) -> GenArgs {
        let mut v = vec!["gen", "--tx", "x"];
        v.extend_from_slice(extra);
        Cli::parse_from(v).g
    }

    fn udp_checksum_ok(f: &[u8], l3: usize, v6: bool) -> bool {
        let (src, dst, l4) = if v6 {
            (&f[l3 + 8..l3 + 24], &f[l3 + 24..l3 + 40], l3 + 40)
        } else {
            (&f[l3 + 12..l3 + 16], &f[l3 + 16..l3 + 20], l3 + 20)
        };
        let udp = &f[l4..];
        fold(sum16(src) + sum16(dst) + 17 + udp.len() as u32 + sum16(udp)) == 0xffff
    }

    #[test]
    fn stamped_frames_keep_a_valid_udp_checksum_and_parse_back() {
        for (stream, l3, v6, ecn) in [
            ("ipv6-ssm", 14, true, "ect0"),
            ("ipv4", 14, false, "ce"),
            ("bier", 14 + 20, true, "ect1"),
        ] {
            let a = args(&["--stream", stream, "--ecn", ecn, "--size", "200"]);
            let kind = match stream {
                "ipv4" => StreamKind::Ipv4,
                "bier" => StreamKind::Bier,
                _ => StreamKind::Ipv6Ssm,
            };
            let t = build(&a, kind, 3, ecn_bits(ecn).unwrap()).unwrap();
            assert_eq!(t.frame.len(), 200);
            let mut f = t.frame.clone();
            assert!(udp_checksum_ok(&f, l3, v6), "{stream} template");
            for (seq, ns) in [(0u64, 0u64), (1, 1_795_000_000_123_456_789), (u64::MAX, 7)] {
                stamp(&mut f, t.payload, seq, ns);
                assert!(udp_checksum_ok(&f, l3, v6), "{stream} seq {seq}");
                assert_eq!(
                    parse_payload(&f),
                    Some((3, seq, ns, ecn_bits(ecn).unwrap())),
                    "{stream}"
                );
            }
        }
    }

    #[test]
    fn receiver_counts_loss_duplicates_and_reordering() {
        let mut s = RxStream::new();
        for seq in [0, 1, 3, 2, 3, 5] {
            s.record(seq, 1000, 3);
        }
        let v = s.json(0, Some(7));
        assert_eq!(
            (
                v["received"].as_u64(),
                v["unique"].as_u64(),
                v["lost"].as_u64()
            ),
            (Some(6), Some(5), Some(2))
        );
        assert_eq!(
            (v["duplicates"].as_u64(), v["reordered"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["ecn"]["ce"].as_u64(), Some(6));
    }

    #[test]
    fn video_rates_are_the_seeds() {
        assert_eq!(video_mbps("1080p").unwrap(), 8.1);
        assert_eq!(video_mbps("2160p:peak").unwrap(), 70.0);
        assert!(video_mbps("4k").is_err());
    }
}

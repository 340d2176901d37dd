//! `mtnode sim aqm`: a closed-loop check of the egress queue and its AQM. Simulated
//! congestion-responsive senders (Reno's AIMD(1, 0.5) and CUBIC's Reno-friendly AIMD(0.529, 0.7),
//! slow start first, a CE mark or a loss taken as one congestion signal per RTT, RFC 3168) and
//! optional unresponsive video streams send real IPv6 frames through the real `EgressQueue`, PIE
//! or RED and ECN code, drained at the bottleneck rate. Time is simulated, so a run is
//! deterministic and takes a fraction of its simulated duration.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mtnode_dataplane::aqm::ecn::{self, Ecn};
use mtnode_dataplane::aqm::queue::Refused;
use mtnode_dataplane::aqm::{Aqm, EgressQueue, Pie, PieParams, QueueLimits, Red, RedParams};
use mtnode_dataplane::io::{Buf, BufPool};
use mtnode_dataplane::wire::{ipv6, EtherType, EthernetRepr, Ipv6Packet, Ipv6Repr};
use serde_json::{json, Value};

const NS: u64 = 1_000_000_000;
/// Frame size of every sender's packets (a full 1500-octet IPv6 packet plus Ethernet).
const FRAME: usize = 1514;

/// Which AQM the bottleneck runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AqmKind {
    Pie,
    Red,
}

/// A congestion-responsive sender's response (RFC 8312 §4.3 for CUBIC's Reno-friendly region).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    pub name: &'static str,
    /// Additive increase, packets per RTT.
    pub a: f64,
    /// Multiplicative decrease factor.
    pub b: f64,
}

pub const RENO: Aimd = Aimd {
    name: "reno",
    a: 1.0,
    b: 0.5,
};
pub const CUBIC: Aimd = Aimd {
    name: "cubic",
    a: 0.529,
    b: 0.7,
};

/// Video bitrates from the seed documents (60 fps, typical), bits per second.
pub const VIDEO_PROFILES: [(&str, u64); 4] = [
    ("480p", 1_300_000),
    ("720p", 3_600_000),
    ("1080p", 8_100_000),
    ("2160p", 32_000_000),
];

#[derive(Debug, Clone)]
pub struct SimParams {
    pub aqm: AqmKind,
    pub flows: Vec<Aimd>,
    /// Unresponsive video streams, bits per second each.
    pub video: Vec<u64>,
    pub rate_mbps: f64,
    pub rtt_ms: f64,
    pub duration_s: f64,
    /// Statistics start after this much simulated time (the slow-start transient).
    pub warmup_s: f64,
    pub ecn: bool,
    pub seed: u64,
}

/// `reno:N,cubic:M` into a list of senders.
pub fn parse_flows(spec: &str) -> Result<Vec<Aimd>> {
    let mut flows = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (kind, n) = part.split_once(':').unwrap_or((part, "1"));
        let n: usize = n
            .parse()
            .with_context(|| format!("--flows: `{part}`: count is not a number"))?;
        let aimd = match kind {
            "reno" => RENO,
            "cubic" => CUBIC,
            other => bail!("--flows: unknown sender `{other}` (reno or cubic)"),
        };
        flows.extend(std::iter::repeat_n(aimd, n));
    }
    Ok(flows)
}

/// `1080p:2,720p` into bitrates.
pub fn parse_video(spec: &str) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (name, n) = part.split_once(':').unwrap_or((part, "1"));
        let n: usize = n
            .parse()
            .with_context(|| format!("--video: `{part}`: count is not a number"))?;
        let Some(&(_, bps)) = VIDEO_PROFILES.iter().find(|(p, _)| *p == name) else {
            bail!("--video: unknown profile `{name}` (480p, 720p, 1080p, 2160p)");
        };
        v.extend(std::iter::repeat_n(bps, n));
    }
    Ok(v)
}

struct Flow {
    aimd: Aimd,
    cwnd: f64,
    ssthresh: f64,
    inflight: u32,
    last_cut: Option<u64>,
    delivered: u64,
    delivered_measured: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// An ACK reaches flow `.1`, echoing CE if `.2`.
    Ack(u32, bool),
    /// The sender of flow `.1` learns of a lost packet.
    Loss(u32),
    /// Video stream `.1` sends its next packet.
    Video(u32),
}

/// The frame a sender puts on the wire: IPv6/UDP-sized, flow number in the flow label.
fn build_frame(flow: u32, ect: bool, out: &mut [u8; FRAME]) {
    let eth = EthernetRepr {
        src_addr: [2, 0, 0, 0, 0, 1],
        dst_addr: [2, 0, 0, 0, 0, 2],
        vlan_tci: None,
        ethertype: EtherType::Ipv6,
    };
    eth.emit(out);
    Ipv6Repr {
        traffic_class: if ect { Ecn::Ect0 as u8 } else { 0 },
        flow_label: flow,
        payload_len: (FRAME - 14 - ipv6::HEADER_LEN) as u16,
        next_header: ipv6::next_header::UDP,
        hop_limit: 64,
        src_addr: [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        dst_addr: [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    }
    .emit(&mut out[14..]);
}

/// RED for a link of `pkts_per_s`, with the automatic settings of Adaptive RED (Floyd, Gummadi
/// & Shenker 2001): min_th = max(5, target delay × C / 2) with a 10 ms target, max_th = 3·min_th,
/// w_q = 1 − exp(−1/C), and max_p adapted every 0.5 s to keep the average in the middle of the
/// band. Floyd's fixed w_q = 0.002 is meant for slow links; at 100 Mb/s it tracks bursts.
fn red_params(pkts_per_s: f64, ecn: bool) -> RedParams {
    let min_th = (0.010 * pkts_per_s / 2.0).max(5.0);
    RedParams {
        min_th,
        max_th: 3.0 * min_th,
        w_q: 1.0 - (-1.0 / pkts_per_s).exp(),
        adaptive: true,
        ecn,
        tx_time: (NS as f64 / pkts_per_s) as u64,
        ..RedParams::default()
    }
}

/// Samples every 10 ms of simulated time: `(t_s, queue_delay_ms, probability)`.
pub type Series = Vec<(f64, f64, f64)>;

/// Run the simulation; returns the report (the DESIGN.md keys and more) and its [`Series`].
pub fn run(p: &SimParams) -> Result<(Value, Series)> {
    if p.flows.is_empty() && p.video.is_empty() {
        bail!("nothing to send: give --flows and/or --video");
    }
    if !(p.rate_mbps > 0.0 && p.rtt_ms > 0.0 && p.duration_s > p.warmup_s) {
        bail!("--rate, --rtt must be positive and --duration longer than the warm-up");
    }
    let rate_bps = p.rate_mbps * 1e6;
    let tx_ns = |len: usize| (len as f64 * 8.0 * NS as f64 / rate_bps).ceil() as u64;
    let pkts_per_s = rate_bps / (FRAME as f64 * 8.0);
    let rtt = (p.rtt_ms * 1e6) as u64;
    let bdp = (pkts_per_s * p.rtt_ms / 1000.0).ceil() as usize;
    let limit = (4 * bdp).max(200);
    let red = red_params(pkts_per_s, p.ecn);
    let aqm = match p.aqm {
        AqmKind::Pie => Aqm::Pie(Pie::new(PieParams {
            ecn: p.ecn,
            mean_pkt_size: FRAME,
            ..PieParams::default()
        })),
        AqmKind::Red => Aqm::Red(Red::new(red)),
    };
    let mut queue: EgressQueue<Buf> = EgressQueue::new(
        QueueLimits {
            packets: limit,
            bytes: limit * FRAME,
        },
        aqm,
        None,
        p.seed,
    );
    let mut pool = BufPool::new(limit + 16);
    let mut frame = [0u8; FRAME];
    let mut flows: Vec<Flow> = p
        .flows
        .iter()
        .map(|&aimd| Flow {
            aimd,
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            inflight: 0,
            last_cut: None,
            delivered: 0,
            delivered_measured: 0,
        })
        .collect();
    let video_base = flows.len() as u32;
    let mut events: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    // Start flows a little apart, as real ones do.
    for i in 0..flows.len() as u32 {
        events.push(Reverse((i as u64 * rtt / 16, Event::Ack(i, false))));
        flows[i as usize].inflight = 1;
    }
    for (j, _) in p.video.iter().enumerate() {
        events.push(Reverse((j as u64 * 1_000_000, Event::Video(j as u32))));
    }
    let end = (p.duration_s * NS as f64) as u64;
    let warm = (p.warmup_s * NS as f64) as u64;
    let mut delay = Histogram::<u64>::new_with_bounds(1, 60 * NS, 3)?;
    let (mut delay_sum, mut delay_n) = (0u128, 0u64);
    let (mut marks, mut early, mut overflow) = ([0u64; 4], [0u64; 4], [0u64; 4]);
    let mut busy_ns = 0u64;
    let mut max_prob: f64 = 0.0;
    let mut prob_at_marks: f64 = 0.0;
    let mut link_free = 0u64;
    let mut series = Vec::new();
    let mut next_sample = 0u64;
    let mut red_avg_sum = 0.0;
    let mut red_avg_n = 0u64;
    let mut now = 0u64;

    while now < end {
        // The next thing to happen: an event, or the link finishing its current frame.
        let next_event = events.peek().map(|Reverse((t, _))| *t).unwrap_or(u64::MAX);
        let next_tx = if queue.len() > 0 {
            link_free.max(now)
        } else {
            u64::MAX
        };
        now = next_event.min(next_tx).min(next_sample);
        if now >= end {
            break;
        }
        if now == next_sample {
            let qd = queue.state().bytes as f64 * 8.0 / rate_bps * 1e3;
            series.push((now as f64 / NS as f64, qd, queue.aqm.probability()));
            next_sample += 10_000_000;
            if now >= warm {
                max_prob = max_prob.max(queue.aqm.probability());
                if let Aqm::Red(r) = &queue.aqm {
                    red_avg_sum += r.avg();
                    red_avg_n += 1;
                }
            }
            continue;
        }
        if now == next_tx && next_tx <= next_event {
            let entry = queue.dequeue(now).context("queue lost its head")?;
            let len = entry.frame.len();
            let sojourn = now - entry.enqueued_at;
            let ce = ecn::codepoint(entry.frame.bytes()) == Some(Ecn::Ce);
            let flow = Ipv6Packet::new_checked(&entry.frame.bytes()[14..])
                .map(|ip| ip.flow_label())
                .unwrap_or(u32::MAX);
            pool.put(entry.frame);
            link_free = now + tx_ns(len);
            if now >= warm {
                busy_ns += tx_ns(len);
                delay.record(sojourn.max(1))?;
                delay_sum += sojourn as u128;
                delay_n += 1;
            }
            if flow < video_base {
                events.push(Reverse((now + tx_ns(len) + rtt, Event::Ack(flow, ce))));
            }
            continue;
        }
        let Some(Reverse((t, ev))) = events.pop() else {
            break;
        };
        debug_assert_eq!(t, now);
        let (flow_id, ect) = match ev {
            Event::Video(j) => {
                let bps = p.video[j as usize];
                let gap = (FRAME as f64 * 8.0 * NS as f64 / bps as f64) as u64;
                events.push(Reverse((now + gap, Event::Video(j))));
                (video_base + j, false)
            }
            Event::Ack(i, ce) => {
                let f = &mut flows[i as usize];
                f.inflight = f.inflight.saturating_sub(1);
                f.delivered += 1;
                if now >= warm {
                    f.delivered_measured += 1;
                }
                if ce {
                    signal(f, now, rtt);
                } else if f.cwnd < f.ssthresh {
                    f.cwnd += 1.0;
                } else {
                    f.cwnd += f.aimd.a / f.cwnd;
                }
                (i, true)
            }
            Event::Loss(i) => {
                let f = &mut flows[i as usize];
                f.inflight = f.inflight.saturating_sub(1);
                signal(f, now, rtt);
                (i, true)
            }
        };
        // Send what the window (or the video schedule) allows.
        let to_send = if flow_id >= video_base {
            1
        } else {
            let f = &flows[flow_id as usize];
            (f.cwnd.floor() as u32).saturating_sub(f.inflight)
        };
        for _ in 0..to_send {
            build_frame(flow_id, ect && p.ecn, &mut frame);
            let fr = pool
                .frame(&frame)
                .context("simulation buffer pool exhausted")?;
            let cp = if ect && p.ecn { Ecn::Ect0 } else { Ecn::NotEct } as usize;
            let before = queue.counters.marked[cp];
            match queue.enqueue(now, fr) {
                Ok(()) => {
                    if queue.counters.marked[cp] > before && now >= warm {
                        marks[cp] += 1;
                        prob_at_marks = prob_at_marks.max(queue.aqm.probability());
                    }
                }
                Err((fr, why)) => {
                    pool.put(fr);
                    if now >= warm {
                        match why {
                            Refused::Early => early[cp] += 1,
                            Refused::Overflow => overflow[cp] += 1,
                        }
                    }
                    if flow_id < video_base {
                        events.push(Reverse((now + rtt, Event::Loss(flow_id))));
                    }
                }
            }
            if flow_id < video_base {
                flows[flow_id as usize].inflight += 1;
            }
        }
    }

    let measured_s = (end - warm) as f64 / NS as f64;
    let throughputs: Vec<f64> = flows
        .iter()
        .map(|f| f.delivered_measured as f64 * FRAME as f64 * 8.0 / measured_s / 1e6)
        .collect();
    let (sum, sq): (f64, f64) = throughputs
        .iter()
        .fold((0.0, 0.0), |(s, q), x| (s + x, q + x * x));
    let jain = if sq > 0.0 {
        sum * sum / (throughputs.len() as f64 * sq)
    } else {
        1.0
    };
    let ms = |ns: u64| ns as f64 / 1e6;
    let mean_delay = if delay_n > 0 {
        delay_sum as f64 / delay_n as f64 / 1e6
    } else {
        0.0
    };
    let total = |a: [u64; 4]| a.iter().sum::<u64>();
    let by_codepoint = |a: [u64; 4]| {
        Ecn::ALL
            .iter()
            .map(|e| (e.name().to_string(), Value::from(a[*e as usize])))
            .collect::<serde_json::Map<_, _>>()
    };
    let mut report = json!({
        "aqm": match p.aqm { AqmKind::Pie => "pie", AqmKind::Red => "red" },
        "ecn": p.ecn,
        "rate_mbps": p.rate_mbps,
        "rtt_ms": p.rtt_ms,
        "duration_s": p.duration_s,
        "warmup_s": p.warmup_s,
        "queue_limit_packets": limit,
        "mean_queue_delay_ms": mean_delay,
        "p50_queue_delay_ms": ms(delay.value_at_quantile(0.5)),
        "p99_queue_delay_ms": ms(delay.value_at_quantile(0.99)),
        "utilization": busy_ns as f64 / (end - warm) as f64,
        "ce_marks": total(marks),
        "drops": total(early) + total(overflow),
        "early_drops": total(early),
        "overflow_drops": total(overflow),
        "marks_by_codepoint": by_codepoint(marks),
        "drops_by_codepoint": by_codepoint([0, 1, 2, 3].map(|i| early[i] + overflow[i])),
        "max_probability": max_prob,
        "max_probability_at_mark": prob_at_marks,
        "jain_fairness": jain,
        "flows": flows.iter().zip(&throughputs).enumerate().map(|(i, (f, t))| json!({
            "id": i, "kind": f.aimd.name, "throughput_mbps": t, "cwnd": f.cwnd,
        })).collect::<Vec<_>>(),
        "video_streams_mbps": p.video.iter().map(|b| *b as f64 / 1e6).collect::<Vec<_>>(),
    });
    if p.aqm == AqmKind::Red {
        report["red"] = json!({
            "min_th_packets": red.min_th,
            "max_th_packets": red.max_th,
            "w_q": red.w_q,
            "max_p": red.max_p,
            "mean_avg_packets": if red_avg_n > 0 { red_avg_sum / red_avg_n as f64 } else { 0.0 },
        });
    }
    Ok((report, series))
}

/// One congestion signal per RTT (RFC 3168 §6.1.2): cut the window by the sender's factor.
fn signal(f: &mut Flow, now: u64, rtt: u64) {
    if f.last_cut.is_some_and(|t| now < t + rtt) {
        return;
    }
    f.ssthresh = (f.cwnd * f.aimd.b).max(2.0);
    f.cwnd = f.ssthresh;
    f.last_cut = Some(now);
}

/// Draw queue delay and drop probability over time.
pub fn plot(series: &[(f64, f64, f64)], title: &str, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(300);
    let t_max = series.last().map_or(1.0, |s| s.0);
    let d_max = series.iter().map(|s| s.1).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&top)
        .caption(format!("{title}: queue delay"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..d_max)?;
    c.configure_mesh().x_desc("time (s)").y_desc("ms").draw()?;
    c.draw_series(LineSeries::new(series.iter().map(|s| (s.0, s.1)), &BLUE))?;
    let p_max = series.iter().map(|s| s.2).fold(0.01, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&bottom)
        .caption("drop / mark probability", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..p_max)?;
    c.configure_mesh().x_desc("time (s)").y_desc("p").draw()?;
    c.draw_series(LineSeries::new(series.iter().map(|s| (s.0, s.2)), &RED))?;
    root.present()?;
    Ok(())
}

/// The human form of a report.
pub fn render(r: &Value) -> String {
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let mut s = format!(
        "mtnode sim aqm: {} (ecn {}), {} Mb/s, rtt {} ms, {} s (first {} s left out)\n",
        r["aqm"].as_str().unwrap_or("?"),
        r["ecn"],
        f("rate_mbps"),
        f("rtt_ms"),
        f("duration_s"),
        f("warmup_s")
    );
    s += &format!(
        "  queue delay: mean {:.1} ms, p50 {:.1} ms, p99 {:.1} ms\n",
        f("mean_queue_delay_ms"),
        f("p50_queue_delay_ms"),
        f("p99_queue_delay_ms")
    );
    s += &format!(
        "  utilization {:.1} %, CE marks {}, drops {} (early {}, overflow {}), max probability {:.3}\n",
        100.0 * f("utilization"),
        r["ce_marks"],
        r["drops"],
        r["early_drops"],
        r["overflow_drops"],
        f("max_probability")
    );
    if let Some(red) = r.get("red") {
        s += &format!(
            "  RED average queue {:.1} packets (thresholds {:.1} .. {:.1})\n",
            red["mean_avg_packets"].as_f64().unwrap_or(0.0),
            red["min_th_packets"].as_f64().unwrap_or(0.0),
            red["max_th_packets"].as_f64().unwrap_or(0.0)
        );
    }
    s += &format!("  Jain's fairness {:.3} over:\n", f("jain_fairness"));
    for fl in r["flows"].as_array().into_iter().flatten() {
        s += &format!(
            "    flow {:>3} {:<6} {:>8.2} Mb/s\n",
            fl["id"],
            fl["kind"].as_str().unwrap_or(""),
            fl["throughput_mbps"].as_f64().unwrap_or(0.0)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(aqm: AqmKind) -> SimParams {
        SimParams {
            aqm,
            flows: parse_flows("reno:10").unwrap(),
            video: Vec::new(),
            rate_mbps: 100.0,
            rtt_ms: 40.0,
            duration_s: 30.0,
            warmup_s: 5.0,
            ecn: true,
            seed: 1,
        }
    }

    /// The acceptance run: PIE settles at its 15 ms target ± 5 ms, keeps the link busy
    /// and marks rather than drops, with the probability never above 10 %.
    #[test]
    fn pie_reno_10_settles_at_target() {
        let (r, series) = run(&params(AqmKind::Pie)).unwrap();
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!((10.0..=20.0).contains(&f("mean_queue_delay_ms")), "{r:#}");
        assert!(f("utilization") >= 0.95, "{r:#}");
        assert!(r["ce_marks"].as_u64().unwrap() > 0, "{r:#}");
        assert_eq!(r["drops"], 0, "{r:#}");
        assert!(f("max_probability") <= 0.1, "{r:#}");
        assert!(f("jain_fairness") > 0.9, "{r:#}");
        assert_eq!(series.len(), 3000, "a sample every 10 ms");
    }

    #[test]
    fn red_keeps_its_average_between_the_thresholds() {
        let (r, _) = run(&params(AqmKind::Red)).unwrap();
        let red = &r["red"];
        let avg = red["mean_avg_packets"].as_f64().unwrap();
        assert!(
            avg > red["min_th_packets"].as_f64().unwrap()
                && avg < red["max_th_packets"].as_f64().unwrap(),
            "{r:#}"
        );
        assert_eq!(r["drops"], 0, "ECN on, ECT senders: marks only: {r:#}");
    }

    #[test]
    fn without_ecn_the_aqm_drops() {
        let mut p = params(AqmKind::Pie);
        p.ecn = false;
        let (r, _) = run(&p).unwrap();
        assert_eq!(r["ce_marks"], 0);
        assert!(r["early_drops"].as_u64().unwrap() > 0, "{r:#}");
    }

    #[test]
    fn unresponsive_video_is_not_ect_and_gets_dropped_not_marked() {
        let mut p = params(AqmKind::Pie);
        p.flows = parse_flows("reno:2,cubic:2").unwrap();
        p.video = parse_video("2160p:2").unwrap();
        p.duration_s = 10.0;
        p.warmup_s = 2.0;
        let (r, _) = run(&p).unwrap();
        assert_eq!(r["marks_by_codepoint"]["not_ect"], 0);
        assert_eq!(r["video_streams_mbps"], json!([32.0, 32.0]));
        assert_eq!(r["flows"][2]["kind"], "cubic");
    }

    #[test]
    fn plot_writes_an_svg() {
        let (_, series) = run(&SimParams {
            duration_s: 2.0,
            warmup_s: 0.5,
            ..params(AqmKind::Pie)
        })
        .unwrap();
        let path = std::env::temp_dir().join(format!("mtnode-sim-{}.svg", std::process::id()));
        plot(&series, "test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() >= 2);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(parse_flows("vegas:3").is_err());
        assert!(parse_flows("reno:x").is_err());
        assert!(parse_video("8k").is_err());
        assert_eq!(parse_flows("reno:2,cubic").unwrap().len(), 3);
    }
}

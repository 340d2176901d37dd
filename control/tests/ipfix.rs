//! IPFIX export and collection over real UDP sockets on 127.0.0.1, and tshark as an independent
//! decoder of what the exporter sends.
//!
//! - every postcard field survives exporter → wire → collector, for every kind and data length;
//! - the collector decodes by the template it learned, in whatever order and sizes a
//!   (hand-built) template gives, including long-form variable-length fields;
//! - every message fits the MTU and is as full as the MTU allows;
//! - sequence numbers count the data records sent before each message, so the collector
//!   finds no gap in a whole stream and the right gap when a message is missing;
//! - the rate cap, failover (and failback), the bounded buffer and the flush on shutdown;
//! - `mtnode collect` rebuilds a tree from exported section postcards;
//! - tshark's `cflow` dissector reads the exporter's datagrams (written into a pcap, and when
//!   this user may capture, also captured live on `lo`) with no malformed packet and no expert
//!   warning, and shows our observation time, interfaces, addresses, flow label and hop limit,
//!   and our enterprise fields as enterprise-specific.
//!
//! tshark must be installed (`scripts/setup`); without it the tshark test fails and says so.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mtnode_control::collector::Collector;
use mtnode_control::exporter::{Exporter, ExporterConfig, ExporterStats};
use mtnode_control::ipfix::{
    self, sample_postcard, FieldSpec, MessageHeader, Sets, DEFAULT_ENTERPRISE_NUMBER, VARLEN,
};
use mtnode_dataplane::export::{Postcard, PostcardKind, PostcardRing, MAX_POSTCARD_DATA};

const PEN: u32 = DEFAULT_ENTERPRISE_NUMBER;
/// Longest any test waits for datagrams or counters.
const WAIT: Duration = Duration::from_secs(10);

/// Datagrams with the address they came from.
type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// A UDP receiver on 127.0.0.1 that reads in its own thread, so that a fast exporter cannot
/// overflow the socket's receive buffer while a test waits.
struct Sink {
    addr: SocketAddr,
    got: Arc<Mutex<Datagrams>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn new() -> Sink {
        Sink::bind("127.0.0.1:0".parse().unwrap())
    }

    fn bind(addr: SocketAddr) -> Sink {
        let s = Collector::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let addr = s.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    g.lock().unwrap().push((from, buf[..n].to_vec()));
                }
            }
        });
        Sink {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far, once nothing new has come for `quiet`; empties the sink.
    fn take(&self, quiet: Duration) -> Datagrams {
        let end = Instant::now() + WAIT;
        let mut n = usize::MAX;
        loop {
            std::thread::sleep(quiet);
            let now = self.got.lock().unwrap().len();
            if now == n || Instant::now() > end {
                break;
            }
            n = now;
        }
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(collectors: Vec<SocketAddr>) -> ExporterConfig {
    ExporterConfig {
        collectors,
        observation_domain_id: 77,
        retry_interval: Duration::from_millis(50),
        ..ExporterConfig::default()
    }
}

fn collect(datagrams: &[(SocketAddr, Vec<u8>)]) -> Collector {
    let mut c = Collector::new(PEN);
    for (from, d) in datagrams {
        c.ingest(*from, d)
            .unwrap_or_else(|e| panic!("datagram does not decode: {e}"));
    }
    c
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Export `ps` through one ring, filled before the exporter starts, and stop it.
fn export_all(cfg: ExporterConfig, ps: &[Postcard]) -> ExporterStats {
    let ring = Arc::new(PostcardRing::new(ps.len()));
    for p in ps {
        assert!(ring.push(*p));
    }
    let h = Exporter::spawn(cfg, vec![ring.clone()]).unwrap();
    wait_for("the ring to drain", || ring.len() == 0);
    h.shutdown()
}

/// Postcards of every kind and every data length a record can have.
fn varied_postcards() -> Vec<Postcard> {
    let kinds = [
        PostcardKind::Section,
        PostcardKind::EndSection,
        PostcardKind::Hop,
    ];
    (0..=MAX_POSTCARD_DATA)
        .map(|len| {
            let mut p = sample_postcard(len as u32, len);
            p.kind = kinds[len % 3];
            p.observation_ns += len as u64 * 1_000_003;
            p.node_id = 0x00ff_0000 + len as u32;
            p.digest = u64::MAX - len as u64;
            p.hop_limit = len as u8;
            p.flow_label = (len as u32 * 4099) & 0xf_ffff;
            p.ingress_if = u32::MAX - len as u32;
            p.egress_if = len as u32;
            p.src_addr[15] = len as u8;
            p.dst_addr[14] = len as u8;
            p.branch.index = len as u16 * 3;
            p.epoch = len as u32;
            p.branch_encoding = (len % 4) as u8;
            p.branch_field = 0x0102_0300 | len as u32;
            p
        })
        .collect()
}

#[test]
fn every_field_round_trips_through_the_wire() {
    let s = Sink::new();
    let a = s.addr;
    let ps = varied_postcards();
    let stats = export_all(config(vec![a]), &ps);
    assert_eq!(stats.sent, ps.len() as u64);
    assert_eq!((stats.lost, stats.suppressed, stats.failovers), (0, 0, 0));
    let got = s.take(Duration::from_millis(300));
    let c = collect(&got);
    assert_eq!(
        c.postcards(),
        &ps[..],
        "postcards differ after the round trip"
    );
    let st = c.stats();
    assert_eq!(
        (st.malformed, st.sequence_gaps, st.foreign_records),
        (0, 0, 0)
    );
    let t = c.templates();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!((t[0].template_id, t[0].options), (256, false));
    assert_eq!(t[0].fields.len(), 20);
    assert_eq!(t[0].fields[19], "32473:11/var");
    assert_eq!((t[1].template_id, t[1].options), (257, true));
    // The options record came with the first templates, before any data.
    let ex = c.exporter_stats();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].1.observation_domain_id, 77);
}

/// A template of our elements in another order and other sizes, with foreign fields mixed in.
fn foreign_template() -> Vec<FieldSpec> {
    vec![
        FieldSpec::iana(ipfix::ie::OCTET_DELTA_COUNT, 8),
        FieldSpec::enterprise(PEN, ipfix::eie::IOAM_DATA, VARLEN),
        FieldSpec::enterprise(9, 1, 4), // another vendor's element 1: not our postcardKind
        FieldSpec::enterprise(PEN, ipfix::eie::PACKET_DIGEST, 8),
        FieldSpec::iana(96, VARLEN), // applicationName: skipped
        FieldSpec::enterprise(PEN, ipfix::eie::IOAM_NODE_ID, 2), // reduced-size
        FieldSpec::iana(ipfix::ie::DESTINATION_IPV6_ADDRESS, 16),
        FieldSpec::iana(ipfix::ie::OBSERVATION_TIME_MILLISECONDS, 8),
        FieldSpec::enterprise(PEN, ipfix::eie::POSTCARD_KIND, 1),
        FieldSpec::enterprise(PEN, ipfix::eie::BRANCH_INDEX, 1), // reduced-size
        FieldSpec::enterprise(PEN, ipfix::eie::IOAM_TRACE_TYPE, 4),
    ]
}

fn message(domain: u32, seq: u32, sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&10u16.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&1_790_000_000u32.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&domain.to_be_bytes());
    for (id, body) in sets {
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        m.extend_from_slice(body);
    }
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

fn template_set(id: u16, fields: &[FieldSpec]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for f in fields {
        match f.pen {
            Some(pen) => {
                b.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                b.extend_from_slice(&f.len.to_be_bytes());
                b.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                b.extend_from_slice(&f.id.to_be_bytes());
                b.extend_from_slice(&f.len.to_be_bytes());
            }
        }
    }
    b
}

/// One record of [`foreign_template`]; `long` writes ioamData with the 3-octet length prefix.
fn foreign_record(node: u16, data: &[u8], long: bool) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&12345u64.to_be_bytes());
    if long {
        r.push(255);
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    } else {
        r.push(data.len() as u8);
    }
    r.extend_from_slice(data);
    r.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    r.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
    r.push(3);
    r.extend_from_slice(b"app");
    r.extend_from_slice(&node.to_be_bytes());
    r.extend_from_slice(&[0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    r.extend_from_slice(&1_790_000_000_123u64.to_be_bytes());
    r.push(PostcardKind::EndSection as u8);
    r.push(5);
    r.extend_from_slice(&0x00f0_0000u32.to_be_bytes());
    r
}

#[test]
fn templates_are_learned_from_the_wire_in_any_order() {
    let from: SocketAddr = "192.0.2.1:4739".parse().unwrap();
    let other: SocketAddr = "192.0.2.2:4739".parse().unwrap();
    let data: Vec<u8> = (0..32).collect();
    let records = [
        foreign_record(513, &data, false),
        foreign_record(514, &data[..16], true),
    ]
    .concat();
    let mut c = Collector::new(PEN);

    // Data before its template: dropped and counted, not guessed at.
    c.ingest(from, &message(5, 0, &[(300, records.clone())]))
        .unwrap();
    assert_eq!(c.postcards().len(), 0);
    assert_eq!(c.stats().sets_without_template, 1);

    // Template and data in one message, the data set padded with three zero octets.
    let mut padded = records.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    let n = c
        .ingest(
            from,
            &message(
                5,
                0,
                &[(2, template_set(300, &foreign_template())), (300, padded)],
            ),
        )
        .unwrap();
    assert_eq!(n, 2);
    let p = c.postcards()[0];
    assert_eq!(p.kind, PostcardKind::EndSection);
    assert_eq!(p.node_id, 513);
    assert_eq!(p.digest, 0x1122_3344_5566_7788);
    assert_eq!(p.dst_addr[15], 9);
    assert_eq!(p.observation_ns, 1_790_000_000_123_000_000);
    assert_eq!(p.branch.index, 5);
    assert_eq!(p.trace_type, 0xf0_0000);
    assert_eq!(p.data(), &data[..]);
    let q = c.postcards()[1];
    assert_eq!((q.node_id, q.data()), (514, &data[..16]));

    // Templates are scoped by exporter and observation domain.
    c.ingest(other, &message(5, 0, &[(300, records.clone())]))
        .unwrap();
    c.ingest(from, &message(6, 0, &[(300, records.clone())]))
        .unwrap();
    assert_eq!(c.postcards().len(), 2);
    assert_eq!(c.stats().sets_without_template, 3);

    // A withdrawal (field count 0) forgets the template.
    c.ingest(from, &message(5, 2, &[(2, vec![1, 44, 0, 0])]))
        .unwrap();
    c.ingest(from, &message(5, 2, &[(300, records.clone())]))
        .unwrap();
    assert_eq!(c.postcards().len(), 2);
    assert_eq!(c.stats().template_withdrawals, 1);
    // Records of unknown templates cannot be counted, so they are no sequence gap.
    assert_eq!(c.stats().sequence_gaps, 0);

    // A record running past its set is malformed; the collector keeps what it had.
    c.ingest(
        from,
        &message(5, 2, &[(2, template_set(300, &foreign_template()))]),
    )
    .unwrap();
    let cut = records[..records.len() - 5].to_vec();
    assert!(c.ingest(from, &message(5, 2, &[(300, cut)])).is_err());
    assert!(c.stats().malformed >= 1);
    // So are a wrong version and a length field past the datagram.
    let mut bad = message(5, 2, &[]);
    bad[1] = 9;
    assert!(c.ingest(from, &bad).is_err());
    let mut bad = message(5, 2, &[]);
    bad[3] = 200;
    assert!(c.ingest(from, &bad).is_err());
    // A template whose IPv6 address is 15 octets is not misread as one.
    let mut wrong = foreign_template();
    wrong[6].len = 15;
    c.ingest(from, &message(5, 2, &[(2, template_set(301, &wrong))]))
        .unwrap();
}

#[test]
fn messages_fit_the_mtu_and_fill_it() {
    for mtu in [400, 1400] {
        let s = Sink::new();
        let a = s.addr;
        let ps: Vec<Postcard> = (0..600u32)
            .map(|n| sample_postcard(n, (n as usize * 4) % (MAX_POSTCARD_DATA + 4)))
            .collect();
        let cfg = ExporterConfig {
            mtu,
            // Only an empty ring closes a message early, not a slow test machine.
            flush_interval: Duration::from_secs(5),
            ..config(vec![a])
        };
        let stats = export_all(cfg, &ps);
        assert_eq!(stats.sent, 600);
        let got = s.take(Duration::from_millis(300));
        let mut data_msgs = 0;
        for (i, (_, d)) in got.iter().enumerate() {
            assert!(d.len() <= mtu, "message {i}: {} > {mtu}", d.len());
            let h = MessageHeader::parse(d).unwrap();
            assert_eq!(h.length as usize, d.len());
            if Sets::new(d).any(|s| s.unwrap().0 == 256) {
                data_msgs += 1;
            }
        }
        assert_eq!(data_msgs, stats.messages);
        // Postcards per message: as many as fit, since they were all in the ring at once: the
        // next postcard would have overflowed every data message but the last.
        let c = collect(&got);
        assert_eq!(c.postcards(), &ps[..]);
        let mut next = 0;
        let data: Vec<&Vec<u8>> = got
            .iter()
            .map(|(_, d)| d)
            .filter(|d| Sets::new(d).any(|s| s.unwrap().0 == 256))
            .collect();
        for (i, d) in data.iter().enumerate() {
            next += collect_records(&got[0].1, d);
            if i + 1 < data.len() {
                assert!(
                    d.len() + ipfix::record_len(&ps[next]) > mtu,
                    "message {i} ({} octets) had room for postcard {next}",
                    d.len()
                );
            }
        }
        assert_eq!(next, ps.len());
    }
}

/// Data records in message `d`, decoded with the templates of message `templates`.
fn collect_records(templates: &[u8], d: &[u8]) -> usize {
    let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut c = Collector::new(PEN);
    c.ingest(from, templates).unwrap();
    c.ingest(from, d).unwrap()
}

#[test]
fn sequence_numbers_count_data_records() {
    let s = Sink::new();
    let a = s.addr;
    let ps: Vec<Postcard> = (0..500).map(|n| sample_postcard(n, 64)).collect();
    let cfg = ExporterConfig {
        template_refresh_messages: 7,
        ..config(vec![a])
    };
    let stats = export_all(cfg, &ps);
    let got = s.take(Duration::from_millis(300));
    assert!(stats.template_messages >= 500 / 9 / 7, "{stats:?}");
    // Each message's sequence number is the number of data records sent before it.
    let mut records = 0u32;
    let mut per_message = Vec::new();
    for (_, d) in &got {
        let h = MessageHeader::parse(d).unwrap();
        assert_eq!(h.sequence, records);
        let mut c = Collector::new(PEN);
        // Learn templates first so that data sets are counted.
        c.ingest(got[0].0, &got[0].1).unwrap();
        let before = c.stats().records;
        c.ingest(got[0].0, d).unwrap();
        let n = (c.stats().records - before) as u32;
        per_message.push(n);
        records += n;
    }
    let c = collect(&got);
    assert_eq!(c.stats().sequence_gaps, 0);
    // Take one data message out: the collector sees the gap and its size.
    let i = got.len() / 2;
    let gap = per_message[i];
    let mut holed = got.clone();
    holed.remove(i);
    let c = collect(&holed);
    assert_eq!(c.stats().sequence_gaps, 1);
    assert_eq!(c.stats().missing_records, gap as u64);
}

#[test]
fn rate_cap_suppresses_the_excess() {
    let s = Sink::new();
    let a = s.addr;
    let ps: Vec<Postcard> = (0..20_000).map(|n| sample_postcard(n, 16)).collect();
    let cfg = ExporterConfig {
        rate_limit: Some(2000.0),
        rate_burst: 100.0,
        ..config(vec![a])
    };
    let t0 = Instant::now();
    let stats = export_all(cfg, &ps);
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(stats.sent + stats.suppressed, 20_000, "{stats:?}");
    let most = 100.0 + 2000.0 * elapsed + 1.0;
    assert!(
        stats.sent >= 100 && (stats.sent as f64) <= most,
        "{} sent in {elapsed:.3} s, at most {most}",
        stats.sent
    );
    let c = collect(&s.take(Duration::from_millis(300)));
    assert_eq!(c.postcards().len() as u64, stats.sent);
}

/// Feed `ps` into `ring` in small batches, so the exporter sends many messages.
fn trickle(ring: &PostcardRing, ps: &[Postcard]) {
    for chunk in ps.chunks(50) {
        for p in chunk {
            while !ring.push(*p) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sequences(c: &Collector) -> Vec<u32> {
    c.postcards().iter().map(|p| p.sequence).collect()
}

#[test]
fn failover_to_the_next_collector_and_back() {
    let dead = closed_port();
    let live = Sink::new();
    let live_addr = live.addr;
    let ring = Arc::new(PostcardRing::new(4096));
    let h = Exporter::spawn(config(vec![dead, live_addr]), vec![ring.clone()]).unwrap();
    let ps: Vec<Postcard> = (0..3000).map(|n| sample_postcard(n, 32)).collect();
    trickle(&ring, &ps[..1500]);
    wait_for("the first half to go out", || h.stats().sent == 1500);
    assert_eq!(h.active_collector(), Some(1));
    let first = collect(&live.take(Duration::from_millis(200)));
    assert_eq!(
        sequences(&first),
        (0..1500).collect::<Vec<_>>(),
        "the live collector got every postcard, in order"
    );
    assert_eq!(first.stats().sequence_gaps, 0);
    assert!(h.stats().failovers >= 1);

    // The preferred collector comes back: after the retry interval the exporter returns to it.
    let back = Sink::bind(dead);
    std::thread::sleep(Duration::from_millis(100));
    trickle(&ring, &ps[1500..]);
    let stats = h.shutdown();
    assert_eq!((stats.sent, stats.lost), (3000, 0), "{stats:?}");
    let second = collect(&live.take(Duration::from_millis(200)));
    let primary = collect(&back.take(Duration::from_millis(200)));
    assert!(primary.postcards().len() > 1000, "failback: {stats:?}");
    let mut all: Vec<u32> = sequences(&second);
    all.extend(sequences(&primary));
    all.sort_unstable();
    assert_eq!(
        all,
        (1500..3000).collect::<Vec<_>>(),
        "none lost, none twice"
    );
}

#[test]
fn bounded_buffer_keeps_the_newest_while_no_collector_answers() {
    let down = closed_port();
    let ring = Arc::new(PostcardRing::new(4096));
    let cfg = ExporterConfig {
        buffer_postcards: 300,
        ..config(vec![down])
    };
    let h = Exporter::spawn(cfg, vec![ring.clone()]).unwrap();
    let ps: Vec<Postcard> = (0..2000).map(|n| sample_postcard(n, 32)).collect();
    trickle(&ring, &ps);
    wait_for("the buffer to fill", || {
        let s = h.stats();
        ring.len() == 0 && s.lost + s.buffered + s.sent == 2000
    });
    let s = h.stats();
    assert!(s.buffered <= 300, "{s:?}");
    assert!(s.lost >= 1700 - s.sent, "{s:?}");
    // The collector starts: the buffer drains into it.
    let up = Sink::bind(down);
    wait_for("the buffer to drain", || h.stats().buffered == 0);
    let stats = h.shutdown();
    let got = collect(&up.take(Duration::from_millis(200)));
    let seq = sequences(&got);
    assert_eq!(seq.len() as u64 + stats.lost, 2000, "{stats:?}");
    assert!(seq.len() <= 300 + 50, "{}", seq.len());
    assert_eq!(
        seq,
        (2000 - seq.len() as u32..2000).collect::<Vec<_>>(),
        "the newest postcards survive, the oldest were dropped"
    );
}

#[test]
fn shutdown_flushes_what_the_rings_hold() {
    let s = Sink::new();
    let a = s.addr;
    let rings: Vec<Arc<PostcardRing>> = (0..3).map(|_| Arc::new(PostcardRing::new(1000))).collect();
    for (i, r) in rings.iter().enumerate() {
        for n in 0..1000 {
            assert!(r.push(sample_postcard(i as u32 * 1000 + n, 8)));
        }
    }
    let h = Exporter::spawn(config(vec![a]), rings).unwrap();
    let stats = h.shutdown();
    assert_eq!(stats.sent, 3000, "{stats:?}");
    let c = collect(&s.take(Duration::from_millis(300)));
    let mut seq = sequences(&c);
    seq.sort_unstable();
    assert_eq!(seq, (0..3000).collect::<Vec<_>>());
}

/// A section postcard whose path, oldest first, is `(node, egress if, rx ns)`.
fn section(kind: PostcardKind, digest: u64, path: &[(u32, u16, u64)]) -> Postcard {
    let mut p = Postcard::new(kind);
    p.trace_type = 0xf0_0000;
    p.digest = digest;
    p.dst_addr = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];
    p.node_id = path.last().unwrap().0;
    let mut data = Vec::new();
    for &(node, eif, ns) in path.iter().rev() {
        data.extend_from_slice(&(64u32 << 24 | node).to_be_bytes());
        data.extend_from_slice(&(1u32 << 16 | eif as u32).to_be_bytes());
        data.extend_from_slice(&((ns / 1_000_000_000) as u32).to_be_bytes());
        data.extend_from_slice(&((ns % 1_000_000_000) as u32).to_be_bytes());
    }
    p.set_data(&data);
    p
}

#[test]
fn mtnode_collect_rebuilds_the_tree_from_the_wire() {
    let addr = closed_port();
    let dir = std::env::temp_dir().join(format!("mtnode-collect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dot = dir.join("tree.dot");
    let child = Command::new(env!("CARGO_BIN_EXE_mtnode"))
        .args(["collect", "--listen", &addr.to_string(), "--json"])
        .args(["--count", "300", "--timeout-ms", "8000", "--dot"])
        .arg(&dot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 100 packets through 1 → 2, branching to 3 (if 1) and 4 (if 2).
    let t = 1_790_000_000_000_000_000u64;
    let mut ps = Vec::new();
    for d in 0..100u64 {
        let t = t + d * 1_000_000;
        ps.push(section(
            PostcardKind::Section,
            d,
            &[(1, 9, t), (2, 0, t + 8_000)],
        ));
        ps.push(section(
            PostcardKind::EndSection,
            d,
            &[(2, 1, t + 9_000), (3, 0, t + 29_000)],
        ));
        ps.push(section(
            PostcardKind::EndSection,
            d,
            &[(2, 2, t + 9_000), (4, 0, t + 12_000)],
        ));
    }
    // Until `collect` binds, sends are refused: the exporter buffers and retries.
    let stats = {
        let ring = Arc::new(PostcardRing::new(ps.len()));
        for p in &ps {
            ring.push(*p);
        }
        let h = Exporter::spawn(config(vec![addr]), vec![ring]).unwrap();
        wait_for("the postcards to go out", || h.stats().sent == 300);
        h.shutdown()
    };
    let out = wait_output(child, WAIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["postcards"], 300, "{stats:?}");
    let edges: Vec<(u64, u64, u64)> = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parent"].as_u64().unwrap(),
                e["child"].as_u64().unwrap(),
                e["branch_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(edges, vec![(1, 2, 9), (2, 3, 1), (2, 4, 2)]);
    assert_eq!(v["edges"][0]["delay_us_p50"], 8.0);
    assert_eq!(v["edges"][1]["delay_us_p99"], 20.0);
    assert_eq!(v["edges"][2]["loss"], 0.0);
    assert_eq!(v["templates"].as_array().unwrap().len(), 2);
    let dot = std::fs::read_to_string(&dot).unwrap();
    assert!(dot.contains("n2 -> n4"), "{dot}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait for `child` at most `limit`, killing it past that.
fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- tshark ---------------------------------------------------------------------------------

/// Ethernet + IPv4 + UDP around `payload`, with correct IPv4 and UDP checksums.
fn udp4_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let udp_len = 8 + payload.len();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&s.ip().octets());
    ip.extend_from_slice(&d.ip().octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = Vec::new();
    udp.extend_from_slice(&s.port().to_be_bytes());
    udp.extend_from_slice(&d.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&s.ip().octets());
    pseudo.extend_from_slice(&d.ip().octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let c = match checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length but
/// the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for w in part.chunks(2) {
            let v = if w.len() == 2 {
                u16::from_be_bytes([w[0], w[1]])
            } else {
                u16::from_be_bytes([w[0], 0])
            };
            sum += v as u32;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_790_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

fn require_tshark() {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "tshark is needed as an independent IPFIX decoder and is not usable ({other:?}); \
             run scripts/setup as root, which installs it"
        ),
    }
}

/// Fields of one tshark run: `-T fields` with `|` between occurrences.
/// `checksums`: check UDP checksums (off for a live capture on `lo`, where the kernel leaves
/// them to an offload that never happens).
fn tshark_fields(pcap: &Path, port: u16, checksums: bool, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},cflow")])
        .args([
            "-o",
            &format!(
                "udp.check_checksum:{}",
                if checksums { "TRUE" } else { "FALSE" }
            ),
        ])
        .args(["-T", "fields"])
        .args([
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
            "-E",
            "separator=\t",
        ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = wait_output(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// What tshark must find in a pcap of the exporter's datagrams to `port`.
fn check_with_tshark(pcap: &Path, port: u16, checksums: bool, ps: &[Postcard], messages: usize) {
    let fields = [
        "frame.number",
        "_ws.malformed",
        "_ws.expert.severity",
        "_ws.expert.message",
        "cflow.od_id",
        "cflow.observation_time_nanoseconds",
        "cflow.inputint",
        "cflow.outputint",
        "cflow.srcaddrv6",
        "cflow.dstaddrv6",
        "cflow.ipv6flowlabel",
        "cflow.ip_ttl",
        "cflow.template_ipfix_field_pen",
        "cflow.enterprise_private_entry",
    ];
    let rows = tshark_fields(pcap, port, checksums, &fields);
    assert_eq!(rows.len(), messages, "one row per message: {rows:?}");
    let col = |name: &str| fields.iter().position(|f| *f == name).unwrap();
    let values = |name: &str| -> Vec<String> {
        rows.iter()
            .flat_map(|r| {
                r.get(col(name))
                    .cloned()
                    .unwrap_or_default()
                    .split('|')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .collect()
    };
    let malformed = values("_ws.malformed");
    assert!(malformed.is_empty(), "tshark: malformed {malformed:?}");
    // Expert info: anything at Warning (0x00600000) or Error (0x00800000) fails.
    let severities = values("_ws.expert.severity");
    let messages_ = values("_ws.expert.message");
    for s in &severities {
        let v = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap(),
        };
        assert!(v < 0x0060_0000, "tshark expert info {s}: {messages_:?}");
    }
    assert!(values("cflow.od_id").iter().all(|v| v == "77"));
    let ins: Vec<u64> = values("cflow.inputint")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let outs: Vec<u64> = values("cflow.outputint")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        ins,
        ps.iter().map(|p| p.ingress_if as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        outs,
        ps.iter().map(|p| p.egress_if as u64).collect::<Vec<_>>()
    );
    let srcs = values("cflow.srcaddrv6");
    let dsts = values("cflow.dstaddrv6");
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(srcs[i], std::net::Ipv6Addr::from(p.src_addr).to_string());
        assert_eq!(dsts[i], std::net::Ipv6Addr::from(p.dst_addr).to_string());
    }
    let labels: Vec<u64> = values("cflow.ipv6flowlabel")
        .iter()
        .map(|v| {
            v.trim_start_matches("0x")
                .parse::<u64>()
                .or_else(|_| u64::from_str_radix(v.trim_start_matches("0x"), 16))
                .unwrap()
        })
        .collect();
    assert_eq!(
        labels,
        ps.iter().map(|p| p.flow_label as u64).collect::<Vec<_>>()
    );
    let ttls: Vec<u64> = values("cflow.ip_ttl")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(
        ttls,
        ps.iter().map(|p| p.hop_limit as u64).collect::<Vec<_>>()
    );
    // dateTimeNanoseconds: tshark prints the absolute time; its seconds and nanoseconds must be
    // the postcard's.
    let times = values("cflow.observation_time_nanoseconds");
    assert_eq!(times.len(), ps.len(), "{times:?}");
    for (t, p) in times.iter().zip(ps) {
        let frac = format!(".{:09}", p.observation_ns % 1_000_000_000);
        assert!(
            t.contains(&frac),
            "tshark shows {t}, postcard has {}",
            p.observation_ns
        );
    }
    // Enterprise fields appear as enterprise-specific, under our PEN, in the template, and their
    // values are ours, octet for octet (tshark leaves out an empty ioamData).
    let pens = values("cflow.template_ipfix_field_pen");
    assert_eq!(pens, vec![PEN.to_string(); 13]);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut expected = Vec::new();
    for p in ps {
        expected.push(hex(&[p.kind as u8]));
        expected.push(hex(&p.node_id.to_be_bytes()));
        expected.push(hex(&p.namespace_id.to_be_bytes()));
        expected.push(hex(&p.trace_type.to_be_bytes()));
        expected.push(hex(&p.digest.to_be_bytes()));
        expected.push(hex(&p.flow_id.to_be_bytes()));
        expected.push(hex(&p.sequence.to_be_bytes()));
        expected.push(hex(&p.branch.node_id.to_be_bytes()));
        expected.push(hex(&p.branch.index.to_be_bytes()));
        expected.push(hex(&p.epoch.to_be_bytes()));
        expected.push(hex(&[p.branch_encoding]));
        expected.push(hex(&p.branch_field.to_be_bytes()));
        if !p.data().is_empty() {
            expected.push(hex(p.data()));
        }
    }
    assert_eq!(values("cflow.enterprise_private_entry"), expected);
}

#[test]
fn tshark_decodes_the_exporters_ipfix() {
    require_tshark();
    let s = Sink::new();
    let a = s.addr;
    let mut ps: Vec<Postcard> = varied_postcards().into_iter().step_by(7).collect();
    // Hop limits and the rest stay distinct; addresses too.
    for (i, p) in ps.iter_mut().enumerate() {
        p.hop_limit = 10 + i as u8;
    }
    let stats = export_all(config(vec![a]), &ps);
    assert_eq!(stats.sent, ps.len() as u64);
    let got = s.take(Duration::from_millis(300));
    let frames: Vec<Vec<u8>> = got
        .iter()
        .map(|(from, d)| udp4_frame(*from, a, d))
        .collect();
    let dir = std::env::temp_dir().join(format!("mtnode-ipfix-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("ipfix.pcap");
    write_pcap(&pcap, &frames);
    check_with_tshark(&pcap, a.port(), true, &ps, got.len());
    if let Some(live) = capture_live(&dir, &ps) {
        check_with_tshark(&live.0, live.1, false, &ps, live.2);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Capture the exporter's datagrams on `lo` with tshark itself: (pcap, port, datagrams). None
/// (with a note) when this user may not capture.
fn capture_live(dir: &Path, ps: &[Postcard]) -> Option<(std::path::PathBuf, u16, usize)> {
    let s = Sink::new();
    let a = s.addr;
    let pcap = dir.join("live.pcap");
    let mut child = Command::new("tshark")
        .args([
            "-n",
            "-i",
            "lo",
            "-f",
            &format!("udp dst port {}", a.port()),
        ])
        .args(["-a", "duration:20", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // tshark says "Capturing on 'Loopback: lo'", and then dumpcap "Capture started" once packets
    // are really being captured.
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut all = Vec::new();
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    let _ = tx.send(String::from_utf8_lossy(&all).to_string());
                }
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(15);
    let mut said = String::new();
    while !said.contains("Capture started") {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(100)) {
            said = s;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "note: no live capture on lo ({}); checked the written pcap only",
                said.trim()
            );
            return None;
        }
    }
    let stats = export_all(config(vec![a]), ps);
    let got = s.take(Duration::from_millis(300));
    assert_eq!(stats.sent, ps.len() as u64);
    // Let the capture write the last packets, then stop it (SIGINT flushes).
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = wait_output(child, Duration::from_secs(25));
    assert!(
        out.status.success() || pcap.exists(),
        "tshark capture failed"
    );
    Some((pcap, a.port(), got.len()))
}

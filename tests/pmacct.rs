//! pmacct's nfacctd, a third-party IPFIX collector, ingests what mtnode's exporter sends.
//!
//! nfacctd listens on a loopback port with `aggregate_primitives` that name mtnode's enterprise
//! fields (PEN 32473, docs/ipfix.md) and a `print` plugin writing JSON; mtnode's real exporter
//! thread sends postcards to it. Every postcard must come out of nfacctd as one record with the
//! right node ID, packet digest, trace type, kind, branch index and IOAM data (enterprise
//! fields, decoded by the template nfacctd learned from the wire), and the right IPv6 addresses
//! and interfaces (standard fields).
//!
//! Not root-only. nfacctd must be installed (Debian package `pmacct`, which `scripts/setup`
//! installs); without it the test fails and says so.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtnode_control::exporter::{Exporter, ExporterConfig};
use mtnode_control::ipfix::{eie, DEFAULT_ENTERPRISE_NUMBER};
use mtnode_dataplane::export::{Postcard, PostcardKind, PostcardRing};
use mtnode_tests::scratch::ScratchDir;
use serde_json::Value;

/// Longest the test waits for nfacctd to print every record.
const WAIT: Duration = Duration::from_secs(30);

/// nfacctd, stopped and reaped on drop, panics included: SIGINT, which its core process passes
/// on to its plugin processes (pmacct's docs/SIGNALS), then SIGKILL for the core and the plugin
/// processes it started if they have not gone within 5 s.
struct Nfacctd {
    child: Child,
}

/// Processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let child: u32 = name.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(child)
    })
    .collect()
}

impl Drop for Nfacctd {
    fn drop(&mut self) {
        let pid = self.child.id();
        let plugins = children_of(pid);
        let signal = |sig: &str, pid: u32| {
            let _ = Command::new("kill")
                .args([sig, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        };
        signal("-INT", pid);
        let end = Instant::now() + Duration::from_secs(5);
        let gone = |p: &u32| !Path::new(&format!("/proc/{p}")).exists();
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                if plugins.iter().all(gone) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in plugins.iter().filter(|p| !gone(p)) {
            signal("-KILL", *p);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_nfacctd() {
    match Command::new("nfacctd").arg("-V").output() {
        Ok(_) => {}
        Err(e) => panic!(
            "nfacctd is not installed ({e}): this test needs pmacct as a third-party IPFIX \
             collector; run scripts/setup as root, which installs it"
        ),
    }
}

/// Four postcards that differ in every field the test reads.
fn postcards() -> Vec<Postcard> {
    let kinds = [
        PostcardKind::Section,
        PostcardKind::EndSection,
        PostcardKind::Hop,
        PostcardKind::EndSection,
    ];
    (0..4u32)
        .map(|i| {
            let mut p = Postcard::new(kinds[i as usize]);
            p.observation_ns = 1_790_000_000_000_000_000 + i as u64 * 1_000;
            p.node_id = 101 + i;
            p.namespace_id = 1;
            p.trace_type = 0xf0_0000 >> i;
            p.digest = 0xfedc_ba98_7654_3210 ^ (i as u64) << 40;
            p.branch.node_id = 7;
            p.branch.index = 2 + i as u16;
            p.ingress_if = 10 + i;
            p.egress_if = 20 + i;
            p.src_addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            p.dst_addr = [
                0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, i as u8,
            ];
            p.hop_limit = 60;
            let data: Vec<u8> = (0..8 * (i as u8 + 1)).map(|b| b ^ i as u8).collect();
            p.set_data(&data);
            p
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn nfacctd_prints_mtnodes_postcards() {
    require_nfacctd();
    let dir = ScratchDir::new("pmacct");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pen = DEFAULT_ENTERPRISE_NUMBER;
    let primitives = dir.join("primitives.lst");
    let lines = [
        format!(
            "name=mt_kind\tfield_type={pen}:{}\tlen=1\tsemantics=u_int",
            eie::POSTCARD_KIND
        ),
        format!(
            "name=mt_node\tfield_type={pen}:{}\tlen=4\tsemantics=u_int",
            eie::IOAM_NODE_ID
        ),
        format!(
            "name=mt_trace_type\tfield_type={pen}:{}\tlen=4\tsemantics=hex",
            eie::IOAM_TRACE_TYPE
        ),
        format!(
            "name=mt_digest\tfield_type={pen}:{}\tlen=8\tsemantics=hex",
            eie::PACKET_DIGEST
        ),
        format!(
            "name=mt_branch_index\tfield_type={pen}:{}\tlen=2\tsemantics=u_int",
            eie::BRANCH_INDEX
        ),
        format!(
            "name=mt_data\tfield_type={pen}:{}\tlen=vlen\tsemantics=raw",
            eie::IOAM_DATA
        ),
    ];
    std::fs::write(&primitives, lines.join("\n") + "\n").unwrap();
    let out = dir.join("records.json");
    let conf = dir.join("nfacctd.conf");
    let mut f = std::fs::File::create(&conf).unwrap();
    writeln!(
        f,
        "daemonize: false\n\
         nfacctd_ip: 127.0.0.1\n\
         nfacctd_port: {port}\n\
         aggregate_primitives: {}\n\
         plugins: print[mt]\n\
         aggregate[mt]: src_host, dst_host, in_iface, out_iface, mt_kind, mt_node, mt_trace_type, mt_digest, mt_branch_index, mt_data\n\
         print_output[mt]: json\n\
         print_output_file[mt]: {}\n\
         print_output_file_append[mt]: true\n\
         print_refresh_time[mt]: 1",
        primitives.display(),
        out.display()
    )
    .unwrap();
    drop(f);
    let log = std::fs::File::create(dir.join("nfacctd.log")).unwrap();
    let _nfacctd = Nfacctd {
        child: Command::new("nfacctd")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    };

    // nfacctd's core hands records to the print plugin in buffers and drops what comes before
    // the plugin is up (seen here: records held until exit), so wait for both to say they are
    // ready. The exporter would ride out a refused port by itself.
    let log_path = dir.join("nfacctd.log");
    let ready = Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("waiting for NetFlow/IPFIX data") && log.contains("setting object handlers")
        {
            break;
        }
        assert!(
            Instant::now() < ready,
            "nfacctd did not start in {WAIT:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ps = postcards();
    let ring = Arc::new(PostcardRing::new(16));
    for p in &ps {
        assert!(ring.push(*p));
    }
    let collector: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let exporter = Exporter::spawn(
        ExporterConfig {
            collectors: vec![collector],
            retry_interval: Duration::from_millis(100),
            ..ExporterConfig::default()
        },
        vec![ring],
    )
    .unwrap();

    let end = Instant::now() + WAIT;
    let records = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if records.len() >= ps.len() {
            break records;
        }
        assert!(
            Instant::now() < end,
            "nfacctd printed {} of {} records in {WAIT:?}; exporter {:?}; log:\n{}",
            records.len(),
            ps.len(),
            exporter.stats(),
            std::fs::read_to_string(dir.join("nfacctd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let stats = exporter.shutdown();
    assert_eq!(stats.sent, ps.len() as u64, "{stats:?}");
    assert_eq!(records.len(), ps.len(), "{records:#?}");

    // nfacctd prints custom primitives as strings: u_int in decimal, hex without a prefix, raw
    // as dash-separated octets.
    let text = |r: &Value, key: &str| match &r[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{key}: {other} in {r}"),
    };
    for p in &ps {
        let r = records
            .iter()
            .find(|r| text(r, "mt_node") == p.node_id.to_string())
            .unwrap_or_else(|| panic!("no record for node {}: {records:#?}", p.node_id));
        let ctx = format!("node {}: {r}", p.node_id);
        assert_eq!(text(r, "mt_kind"), (p.kind as u8).to_string(), "{ctx}");
        assert_eq!(text(r, "mt_digest"), format!("{:x}", p.digest), "{ctx}");
        assert_eq!(
            text(r, "mt_trace_type"),
            format!("{:x}", p.trace_type),
            "{ctx}"
        );
        assert_eq!(
            text(r, "mt_branch_index"),
            p.branch.index.to_string(),
            "{ctx}"
        );
        assert_eq!(
            text(r, "mt_data").replace('-', "").to_lowercase(),
            hex(p.data()),
            "{ctx}"
        );
        assert_eq!(text(r, "ip_src"), "2001:db8::1", "{ctx}");
        assert_eq!(
            text(r, "ip_dst"),
            std::net::Ipv6Addr::from(p.dst_addr).to_string(),
            "{ctx}"
        );
        assert_eq!(text(r, "iface_in"), p.ingress_if.to_string(), "{ctx}");
        assert_eq!(text(r, "iface_out"), p.egress_if.to_string(), "{ctx}");
    }
}

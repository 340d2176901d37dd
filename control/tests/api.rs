//! The control API over real HTTP on loopback (issue 7's evidence): live reconfiguration of a lab
//! node under a steady stream, bad requests, concurrent clients, and `mtnode ctl` round trips.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mtnode_control::api::{self, Doc, Node, NodeStats, QueueStats};
use mtnode_control::ctl::Client;
use mtnode_control::lab::{self, LabApi, LabOptions};
use mtnode_control::topology::Topology;
use mtnode_dataplane::aqm::QueueCounters;
use mtnode_dataplane::export::PostcardKind;
use mtnode_dataplane::pipeline::DropReason;
use mtnode_dataplane::snapshot::ConfigCell;
use mtnode_dataplane::wire::Error as WireError;
use mtnode_dataplane::worker::LatencySummary;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-7";

fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// While Figure 5 carries a steady per-hop stream, switch the branch node D's encoding 100
/// times and its node ID 100 times through the API: no packet is lost, and every postcard
/// carries what D's configuration said at the epoch D processed that packet in.
#[test]
fn switching_encoding_and_node_id_under_traffic_loses_nothing() {
    let listener = loopback();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let lab_api = LabApi {
        listener,
        token: TOKEN.into(),
        node: "D".into(),
        stop: stop.clone(),
    };
    let opts = LabOptions {
        // 12 Mb/s of 1370-octet frames: ~1100 packets/s, a steady stream; at most 60 s.
        source_mbps: Some(12.0),
        ..LabOptions::fast(66_000)
    };
    let lab = std::thread::spawn(move || {
        lab::run_with_api(&Topology::figure5(), "per-hop", &opts, lab_api).unwrap()
    });

    let client = Client::new(&base, Some(TOKEN.into()));
    // Wait for the API, then for traffic through D.
    let mut first = None;
    for _ in 0..500 {
        if let Ok(r) = client.get("/v1/stats") {
            if r.body["packets_in"].as_u64().unwrap_or(0) > 20 {
                first = Some(r);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = first.expect("the lab's API answers and D forwards");
    assert_eq!(first.body["epoch"], 0);
    let initial = client.get("/v1/config").unwrap().body;
    let id0 = initial["config"]["node"]["node_id"].as_u64().unwrap() as u32;
    assert_eq!(id0, 4 * 16, "D is node 4 of Figure 5, spaced for `sum`");

    // epoch → (node ID, encoding code) as the API was told.
    let mut told: BTreeMap<u32, (u32, u8)> = BTreeMap::new();
    told.insert(0, (id0, 1));
    let mut id = id0;
    let names = ["explicit", "split", "sum"];
    for k in 0..100u32 {
        let code = (k % 3) as u8 + 1;
        let r = client
            .patch(&json!({"namespace": [{"id": 1, "branch_encoding": names[code as usize - 1]}]}))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["applied"], true);
        told.insert(r.body["epoch"].as_u64().unwrap() as u32, (id, code));
        std::thread::sleep(Duration::from_millis(3));

        id = 16 * (100 + k);
        let r = client.patch(&json!({"node": {"node_id": id}})).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["applied"], true);
        told.insert(r.body["epoch"].as_u64().unwrap() as u32, (id, code));
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(
        told.keys().copied().collect::<Vec<_>>(),
        (0..=200).collect::<Vec<_>>()
    );
    let stats = client.get("/v1/stats").unwrap().body;
    assert_eq!(stats["epoch"], 200);
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let (report, postcards) = lab.join().unwrap();

    let sent = report["packets_sent"].as_u64().unwrap();
    assert!(
        sent > 200,
        "a steady stream while the API worked: {sent} packets"
    );
    assert_eq!(report["receivers"], 4);
    assert_eq!(
        report["packets_delivered"].as_u64().unwrap(),
        4 * sent,
        "no packet lost"
    );
    for n in report["nodes"].as_array().unwrap() {
        assert_eq!(n["postcards_lost"], 0, "{n}");
    }

    // D's own postcards: the node ID of the epoch that made them.
    let mut d_epoch: BTreeMap<u32, u32> = BTreeMap::new();
    for p in postcards.iter().filter(|p| p.kind == PostcardKind::Hop) {
        if let Some((want_id, _)) = told.get(&p.epoch).filter(|_| p.ingress_if == 400) {
            assert_eq!(p.node_id, *want_id, "D's postcard of epoch {}", p.epoch);
            d_epoch.insert(p.sequence, p.epoch);
        }
    }
    assert_eq!(d_epoch.len() as u64, sent, "one postcard from D per packet");
    let epochs_seen: std::collections::BTreeSet<u32> = d_epoch.values().copied().collect();
    assert!(
        epochs_seen.len() > 100,
        "traffic in most epochs: {}",
        epochs_seen.len()
    );

    // F, G and H: the branch ID D wrote, in D's encoding of that epoch.
    let mut checked = 0;
    for p in postcards
        .iter()
        .filter(|p| p.kind == PostcardKind::Hop && [600, 700, 800].contains(&p.ingress_if))
    {
        let e = d_epoch[&p.sequence];
        let (want_id, want_code) = told[&e];
        assert_eq!(p.branch.node_id, want_id, "seq {} epoch {e}", p.sequence);
        assert_eq!(p.branch_encoding, want_code, "seq {} epoch {e}", p.sequence);
        checked += 1;
    }
    assert_eq!(checked as u64, 3 * sent);
}

/// A node with no workers (every change is active as soon as it is published) and fixed stats.
struct Idle {
    cell: Arc<ConfigCell>,
    stats: NodeStats,
}

impl Node for Idle {
    fn config_cell(&self) -> &Arc<ConfigCell> {
        &self.cell
    }
    fn stats(&self) -> NodeStats {
        self.stats.clone()
    }
}

/// Counters with a distinct number in each family the metrics show.
fn some_stats() -> NodeStats {
    let mut s = NodeStats::default();
    let c = &mut s.counters;
    (
        c.packets_in,
        c.packets_out,
        c.bytes_in,
        c.transit,
        c.replicas,
    ) = (1000, 1990, 512_000, 999, 995);
    c.dropped[DropReason::NoRoute as usize] = 7;
    c.malformed[WireError::ALL[0].index()] = 3;
    (c.postcards_exported, c.postcards_lost) = (990, 9);
    c.tx_by_port[1] = 1990;
    let mut q = QueueCounters::default();
    q.marked[1] = 42;
    q.early_drops[0] = 5;
    s.queues = vec![
        QueueStats::default(),
        QueueStats {
            depth: 17,
            counters: q,
        },
    ];
    s.latency = Some(LatencySummary {
        count: 1000,
        p50_ns: 2_000,
        p90_ns: 5_000,
        p99_ns: 40_000,
        p999_ns: 80_000,
        max_ns: 90_000,
        mean_ns: 3_000.0,
    });
    s.workers = 2;
    s
}

/// A transit node with every kind of setting: PIM, BIER, a PIE queue, a per-hop namespace.
const FULL: &str = r#"
[node]
name = "api-test"
node_id = 32
forwarding = "route"
node_id_wide = 320

[[port]]
name = "up"
if_id = 1

[[port]]
name = "down"
if_id = 2
capacity_mbps = 1000.0
[port.queue]
aqm = "pie"
target_ms = 15.0
rate_mbps = 100.0
ecn = true

[[route]]
prefix = "::/0"
port = "down"

[[mroute]]
source = "2001:db8::1"
group = "ff3e::1"
iif = "up"
oil = ["down"]

[[bift]]
bift_id = 1
bsl = 64
[[bift.neighbor]]
port = "down"
bits = [1, 2]

[[namespace]]
id = 1
role = "transit"
mode = "per-hop"
branch_encoding = "explicit"
"#;

fn serve_full(dir: &std::path::Path) -> (api::ApiServer, Arc<ConfigCell>, String) {
    let file = dir.join("node.toml");
    std::fs::write(&file, FULL).unwrap();
    let doc = Doc::from_file(&file).unwrap();
    let cell = ConfigCell::new(doc.loaded.node.clone());
    let node = Arc::new(Idle {
        cell: cell.clone(),
        stats: some_stats(),
    });
    let server = api::spawn(loopback(), node, doc, TOKEN.into()).unwrap();
    let base = format!("http://{}", server.addr);
    (server, cell, base)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mtnode-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_requests_get_their_status_and_change_nothing() {
    let dir = scratch("bad");
    let (_server, cell, base) = serve_full(&dir);
    let good = Client::new(&base, Some(TOKEN.into()));
    let before = good.get("/v1/config").unwrap();
    assert_eq!(before.status, 200);
    assert_eq!(before.body["epoch"], 0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let raw = |auth: Option<&str>, ctype: &str, body: Vec<u8>| -> (u16, Value) {
        let mut req = agent
            .patch(format!("{base}/v1/config"))
            .header("Content-Type", ctype);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let mut r = req.send(&body[..]).unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    };
    let ok_body = br#"{"node":{"node_id":48}}"#.to_vec();
    let bearer = format!("Bearer {TOKEN}");
    // (what, Authorization, Content-Type, body, status, the field the reply names)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            "application/json",
            ok_body.clone(),
            401,
            "Authorization",
        ),
        (
            "wrong token",
            Some("Bearer nope"),
            "application/json",
            ok_body.clone(),
            403,
            "Authorization",
        ),
        (
            "not bearer",
            Some("Basic dTpw"),
            "application/json",
            ok_body.clone(),
            401,
            "Authorization",
        ),
        (
            "oversized",
            Some(&bearer),
            "application/json",
            vec![b' '; api::BODY_LIMIT + 1],
            413,
            "",
        ),
        (
            "malformed JSON",
            Some(&bearer),
            "application/json",
            b"{\"node\":".to_vec(),
            400,
            "-",
        ),
        (
            "not an object",
            Some(&bearer),
            "application/json",
            b"[1,2]".to_vec(),
            400,
            "-",
        ),
        (
            "not JSON",
            Some(&bearer),
            "text/plain",
            ok_body.clone(),
            415,
            "Content-Type",
        ),
        (
            "node_id out of range",
            Some(&bearer),
            "application/json",
            br#"{"node":{"node_id":16777216}}"#.to_vec(),
            400,
            "node.node_id",
        ),
        (
            "negative if_id",
            Some(&bearer),
            "application/json",
            br#"{"port":[{"name":"down","if_id":-1}]}"#.to_vec(),
            400,
            "port.if_id",
        ),
        (
            "unknown field",
            Some(&bearer),
            "application/json",
            br#"{"node":{"colour":"red"}}"#.to_vec(),
            400,
            "colour",
        ),
        (
            "unknown encoding",
            Some(&bearer),
            "application/json",
            br#"{"namespace":[{"id":1,"branch_encoding":"zip"}]}"#.to_vec(),
            400,
            "branch_encoding",
        ),
        (
            "sum gap too small",
            Some(&bearer),
            "application/json",
            br#"{"namespace":[{"id":1,"branch_encoding":"sum","sum_gap":1}]}"#.to_vec(),
            400,
            "namespace.sum_gap",
        ),
        (
            "unknown port",
            Some(&bearer),
            "application/json",
            br#"{"route":[{"prefix":"::/0","port":"eth9"}]}"#.to_vec(),
            400,
            "route.port",
        ),
        (
            "wrong type",
            Some(&bearer),
            "application/json",
            br#"{"node":{"node_id":"x"}}"#.to_vec(),
            400,
            "node_id",
        ),
        (
            "new port",
            Some(&bearer),
            "application/json",
            br#"{"port":[{"name":"extra","if_id":9}]}"#.to_vec(),
            409,
            "port",
        ),
        (
            "api change",
            Some(&bearer),
            "application/json",
            br#"{"api":{"listen":"127.0.0.1:1"}}"#.to_vec(),
            409,
            "api",
        ),
    ];
    for (what, auth, ctype, body, status, field) in cases {
        let (got, reply) = raw(auth, ctype, body);
        assert_eq!(got, status, "{what}: {reply}");
        if !field.is_empty() {
            assert!(
                reply["field"].as_str().unwrap_or("").contains(field)
                    || reply["error"].as_str().unwrap_or("").contains(field),
                "{what}: {reply}"
            );
            assert!(
                !reply["error"].as_str().unwrap_or("").is_empty(),
                "{what}: {reply}"
            );
        }
        let now = good.get("/v1/config").unwrap();
        assert_eq!(now.body, before.body, "{what} changed the running config");
        assert_eq!(cell.epoch(), 0, "{what}");
        assert_eq!(cell.load().node_id, 32, "{what}");
    }
    // POST /v1/reload is guarded the same way.
    let r = Client::new(&base, None)
        .send("POST", "/v1/reload", None)
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(good.get("/v1/nowhere").unwrap().status, 404);
    // A bad file on disk: reload refused with the file's line, the running config kept.
    std::fs::write(
        dir.join("node.toml"),
        FULL.replace("node_id = 32", "node_id = -3"),
    )
    .unwrap();
    let r = good.send("POST", "/v1/reload", None).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["field"], "node.node_id");
    assert_eq!(cell.epoch(), 0);
    // A good one: a new epoch.
    std::fs::write(
        dir.join("node.toml"),
        FULL.replace("node_id = 32", "node_id = 64"),
    )
    .unwrap();
    let r = good.send("POST", "/v1/reload", None).unwrap();
    assert_eq!(
        (r.status, r.body["epoch"].clone()),
        (200, json!(1)),
        "{}",
        r.body
    );
    assert_eq!(cell.load().node_id, 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hundred_concurrent_clients_get_correct_answers() {
    let dir = scratch("concurrent");
    let (_server, cell, base) = serve_full(&dir);
    let threads: Vec<_> = (0..100u32)
        .map(|k| {
            let base = base.clone();
            std::thread::spawn(move || {
                let c = Client::new(&base, Some(TOKEN.into()));
                if k % 2 == 0 {
                    let r = c.get("/v1/config").unwrap();
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body["config"]["node"]["name"], "api-test");
                    (k, None)
                } else {
                    let r = c.patch(&json!({"node": {"node_id": 1000 + k}})).unwrap();
                    assert_eq!(r.status, 200, "{}", r.body);
                    (k, Some(r.body["epoch"].as_u64().unwrap() as u32))
                }
            })
        })
        .collect();
    let mut by_epoch = BTreeMap::new();
    for t in threads {
        if let (k, Some(e)) = t.join().unwrap() {
            assert!(by_epoch.insert(e, k).is_none(), "epoch {e} given twice");
        }
    }
    assert_eq!(
        by_epoch.keys().copied().collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    // The last epoch's change is what runs.
    let last = by_epoch[&50];
    assert_eq!(cell.load().node_id, 1000 + last);
    let r = Client::new(&base, None).get("/v1/config").unwrap();
    assert_eq!(r.body["config"]["node"]["node_id"], 1000 + last);
    assert_eq!(r.body["epoch"], 50);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ctl(base: &str, token: Option<&std::path::Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtnode"));
    cmd.args(["ctl", "--api", base]);
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every kind of setting goes out with `mtnode ctl set` and comes back with `mtnode ctl get`,
/// and the node runs it.
#[test]
fn ctl_round_trips_every_setting() {
    let dir = scratch("ctl");
    let (_server, cell, base) = serve_full(&dir);
    let token = dir.join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let settings: &[(&str, &str, Value)] = &[
        ("node.node_id", "48", json!(48)),
        ("node.node_id_wide", "4800", json!(4800)),
        ("node.timestamp_format", "posix", json!("posix")),
        ("node.malformed", "drop", json!("drop")),
        ("port[up].if_id", "11", json!(11)),
        ("port[down].capacity_mbps", "2500.0", json!(2500.0)),
        ("port[down].queue.aqm", "red", json!("red")),
        ("port[down].queue.min_th", "10.0", json!(10.0)),
        ("port[down].queue.max_th", "40.0", json!(40.0)),
        ("port[down].queue.rate_mbps", "50.0", json!(50.0)),
        ("namespace[1].branch_encoding", "split", json!("split")),
        ("namespace[1].flow_id", "77", json!(77)),
        ("namespace[1].dex_rate_divisor", "50", json!(50)),
        ("namespace[1].trace_type", "13631488", json!(13_631_488)),
        ("namespace[1].data", "99", json!(99)),
        ("namespace[2].role", "decap", json!("decap")),
        ("bift[1].bsl", "128", json!(128)),
        (
            "mroute",
            r#"[{"source":"2001:db8::1","group":"ff3e::2","iif":"up","oil":["down"]}]"#,
            json!([{"source": "2001:db8::1", "group": "ff3e::2", "iif": "up", "oil": ["down"]}]),
        ),
        (
            "route",
            r#"[{"prefix":"2001:db8::/32","port":"up"}]"#,
            json!([{"prefix": "2001:db8::/32", "port": "up"}]),
        ),
    ];
    for (epoch, (field, text, want)) in settings.iter().enumerate() {
        let (ok, out, err) = ctl(&base, Some(&token), &["set", &format!("{field}={text}")]);
        assert!(ok, "set {field}: {err}");
        assert!(
            out.starts_with(&format!("epoch {}: active", epoch + 1)),
            "{out}"
        );
        let (ok, out, err) = ctl(&base, None, &["--json", "get", field]);
        assert!(ok, "get {field}: {err}");
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(&got, want, "{field}");
    }
    // The node runs it.
    let c = cell.load();
    assert_eq!((c.epoch, c.node_id), (settings.len() as u32, 48));
    assert_eq!(c.ports[0].if_id, 11);
    assert_eq!(c.namespaces.len(), 2);
    assert!(matches!(
        c.ports[1].queue.as_ref().unwrap().aqm,
        mtnode_dataplane::aqm::AqmConfig::Red(r) if r.min_th == 10.0 && r.max_th == 40.0
    ));
    // The table form: `get` rows are `set` arguments.
    let (ok, out, _) = ctl(&base, None, &["get"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("namespace[1].branch_encoding ") && l.ends_with(" \"split\"")),
        "{out}"
    );
    // Refusals print the field and fail.
    let (ok, _, err) = ctl(&base, Some(&token), &["set", "node.node_id=99999999"]);
    assert!(!ok);
    assert!(err.contains("400") && err.contains("node.node_id"), "{err}");
    let (ok, _, err) = ctl(&base, None, &["set", "node.node_id=5"]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    // stats and metrics.
    let (ok, out, _) = ctl(&base, None, &["--json", "stats"]);
    assert!(ok);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["epoch"], settings.len() as u64);
    let (ok, out, _) = ctl(&base, None, &["metrics"]);
    assert!(ok);
    assert!(
        out.contains(&format!("mtnode_config_epoch {}\n", settings.len())),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `/metrics` parses in the Prometheus project's own Python client, and every sample has the
/// value the node reported.
#[test]
fn metrics_parse_in_prometheus_client_with_the_node_numbers() {
    let dir = scratch("metrics");
    let (_server, _cell, base) = serve_full(&dir);
    let c = Client::new(&base, Some(TOKEN.into()));
    assert_eq!(
        c.patch(&json!({"node": {"node_id": 64}})).unwrap().status,
        200
    );
    let text = c.get("/metrics").unwrap().body;
    let text = text.as_str().expect("metrics are text");
    // Strict parse: families, types and samples as Prometheus reads them.
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "".join("|%s=%s" % kv for kv in sorted(s.labels.items()))
        out[key] = [fam.type, s.value]
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/setup installs python3-prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the text (run scripts/setup): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: BTreeMap<String, (String, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    let want: &[(&str, &str, f64)] = &[
        ("mtnode_packets_in_total", "counter", 1000.0),
        ("mtnode_packets_out_total", "counter", 1990.0),
        ("mtnode_bytes_in_total", "counter", 512_000.0),
        ("mtnode_ioam_packets_total|role=transit", "counter", 999.0),
        ("mtnode_replicas_total", "counter", 995.0),
        ("mtnode_dropped_total|reason=no_route", "counter", 7.0),
        ("mtnode_dropped_total|reason=rpf_fail", "counter", 0.0),
        (
            &format!(
                "mtnode_malformed_total|reason={}",
                WireError::ALL[0].reason()
            ),
            "counter",
            3.0,
        ),
        ("mtnode_tx_packets_total|port=down", "counter", 1990.0),
        ("mtnode_queue_depth_packets|port=down", "gauge", 17.0),
        ("mtnode_ecn_marked_total|port=down", "counter", 42.0),
        (
            "mtnode_queue_drops_total|cause=aqm|port=down",
            "counter",
            5.0,
        ),
        ("mtnode_postcards_exported_total", "counter", 990.0),
        ("mtnode_postcards_lost_total", "counter", 9.0),
        ("mtnode_config_epoch", "gauge", 1.0),
        ("mtnode_workers", "gauge", 2.0),
        (
            "mtnode_forward_latency_seconds|quantile=0.99",
            "summary",
            40e-6,
        ),
        ("mtnode_forward_latency_seconds_count", "summary", 1000.0),
        ("mtnode_forward_latency_seconds_sum", "summary", 3e-3),
        ("mtnode_config_apply_seconds_count", "summary", 1.0),
    ];
    for (key, kind, value) in want {
        let got = parsed
            .get(*key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{text}"));
        assert_eq!(got.0, *kind, "{key}");
        assert!((got.1 - value).abs() < 1e-12, "{key}: {} != {value}", got.1);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The example in DESIGN.md: `pcap-fixtures/configs/live.toml` runs a node on mt0/mt1 with the
/// API on 127.0.0.1:8686 and the token in `api.token` next to it.
#[test]
fn the_live_example_config_names_its_api_and_token() {
    let dir = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pcap-fixtures/configs"
    ));
    let live = mtnode_control::config::load_live(&dir.join("live.toml")).unwrap();
    let ifaces: Vec<&str> = live
        .live_ports
        .iter()
        .map(|p| p.interface.as_str())
        .collect();
    assert_eq!(ifaces, ["mt0", "mt1"]);
    let api = live.api.unwrap();
    assert_eq!(api.listen.to_string(), "127.0.0.1:8686");
    let token_file = api.token_file.unwrap();
    assert_eq!(token_file, dir.join("api.token"));
    assert_eq!(
        api::read_token(&token_file).unwrap(),
        "mtnode-lab-token-not-a-secret"
    );
}

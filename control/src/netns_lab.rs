//! `mtnode lab --netns` (root): the lab's topology as separate `mtnode run` processes on AF_XDP
//! sockets or, for the nodes `--dpdk-nodes` names, on DPDK `net_af_packet` devices over the
//! same veths ([`LiveBackend`]), one network namespace per node, joined by veth pairs this module creates and always
//! removes (on success, on error, on Ctrl-C through the same path, and a later run sweeps what
//! a killed one left).
//!
//! Namespaces (`mtl<pid>-<n>`):
//! - `ends`: `mtnode gen` sends the source's packets out of `src` into the root node's `up`
//!   port and counts, per receiver, what arrives on `r<j>` (leaf j's `rx` port); `mtnode
//!   collect` listens on 10.255.0.254:4739 (the bridge `mgmt`, whose ports are `m<i>`).
//! - one per node: port k is the veth `p<k>` ([`topology::port_interface`]); `mgmt`
//!   (10.255.0.<i+1>/24) carries the node's IPFIX export to the collector.
//!
//! IPv6 is off in every namespace (no router solicitations or MLD reports on the data links:
//! the nodes see the generator's packets only); the management network is IPv4.
//!
//! Each node runs the lab's own configuration ([`Topology::live_node_toml`]); the collector
//! rebuilds the tree with the same code as the in-process lab, whose report for the same
//! topology, mode and packets is set beside this one.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::lab::{self, LabOptions};
use crate::topology::{port_interface, LiveBackend, Replication, Topology};

/// Names of the namespaces this module creates: `mtl<pid>-<n>`.
const PREFIX: &str = "mtl";
/// Where the collector listens, in the `ends` namespace.
const COLLECTOR_IP: &str = "10.255.0.254";
const COLLECTOR_PORT: u16 = 4739;
/// Below a page, so veth runs XDP natively; room for the largest trace on a 1378-octet frame.
const MTU: &str = "3000";
/// The lab's source frame: Ethernet, IPv6, UDP and a 1316-octet payload (as `lab` sends).
const PLAIN_FRAME: usize = 14 + 40 + 8 + 1316;
/// BIER header with a 64-bit BitString, in front of the IPv6 packet.
const BIER_64: usize = 12 + 8;
/// One short command (`ip`, `kill`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Every node bound and ready (binds are retried while the kernel tears old sockets down).
const READY_TIMEOUT: Duration = Duration::from_secs(40);
/// A node's exit after SIGTERM, final statistics printed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Set by SIGINT/SIGTERM while the netns lab runs: every wait gives up, and the lab cleans up.
fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Best effort: without the handler a signal still ends the process, and the next
            // run's sweep removes what it left.
            let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
        }
        stop
    })
}

fn interrupted() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// The effective uid, from `/proc/self/status`.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Run `cmd` to completion, killed after `timeout` (or on Ctrl-C); an error unless it exits 0,
/// naming the command and carrying its stderr.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    run_until(cmd, timeout, true)
}

/// [`run_bounded`], for the cleanup: Ctrl-C does not cut it short.
fn run_cleanup(cmd: &mut Command) -> Result<Output> {
    run_until(cmd, COMMAND_TIMEOUT, false)
}

fn run_until(cmd: &mut Command, timeout: Duration, interruptible: bool) -> Result<Output> {
    let interrupted = || interruptible && interrupted();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", describe(cmd)))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait()? {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline || interrupted() => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(5)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        None if interrupted() => bail!("interrupted during {}", describe(cmd)),
        None => bail!("{} timed out after {timeout:?}: {stderr}", describe(cmd)),
        Some(s) if !s.success() => bail!("{} failed ({s}): {}", describe(cmd), stderr.trim()),
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr: stderr.into_bytes(),
        }),
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run_bounded(Command::new("ip").args(args), COMMAND_TIMEOUT).map(|_| ())
}

/// Kill whatever runs in namespace `name`, then delete it (its veths go with it). Never fails:
/// it runs from `Drop`.
fn remove_namespace(name: &str) {
    if let Ok(out) = run_cleanup(Command::new("ip").args(["netns", "pids", name])) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = run_cleanup(Command::new("kill").args(["-KILL", pid]));
        }
    }
    if let Err(e) = run_cleanup(Command::new("ip").args(["netns", "del", name])) {
        eprintln!("mtnode lab: could not delete namespace {name}: {e:#}");
    }
}

/// Remove namespaces of earlier runs whose process is gone (killed before it could clean up).
fn sweep_stale() {
    let Ok(list) = run_bounded(Command::new("ip").args(["netns", "list"]), COMMAND_TIMEOUT) else {
        return;
    };
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("mtnode lab: removing stale namespace {name} (pid {pid} is gone)");
            remove_namespace(name);
        }
    }
}

/// Namespaces of this run that still exist (for the caller's check that none remain).
pub fn own_namespaces(pid: u32) -> Result<Vec<String>> {
    let list = run_bounded(Command::new("ip").args(["netns", "list"]), COMMAND_TIMEOUT)?;
    let mine = format!("{PREFIX}{pid}-");
    Ok(String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&mine))
        .map(str::to_owned)
        .collect())
}

/// A child process (through `ip netns exec`, which execs it: the pid is the program's), its
/// output drained by threads; killed on drop if still running.
struct Proc {
    what: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<String>>,
    ready: mpsc::Receiver<()>,
}

impl Proc {
    /// Start `cmd`; a stderr line starting with `ready_prefix` and containing `ready_text`
    /// marks it ready.
    fn spawn(
        what: String,
        cmd: &mut Command,
        ready_prefix: &'static str,
        ready_text: &'static str,
    ) -> Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", describe(cmd)))?;
        let stdout = drain(child.stdout.take());
        let err = child.stderr.take();
        let (tx, ready) = mpsc::channel();
        let stderr = thread::spawn(move || {
            let mut all = String::new();
            if let Some(err) = err {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if line.starts_with(ready_prefix) && line.contains(ready_text) {
                        let _ = tx.send(());
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
            }
            all
        });
        Ok(Proc {
            what,
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            ready,
        })
    }

    /// Wait for the ready line until `deadline`.
    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if self.ready.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
            if exited || interrupted() || Instant::now() >= deadline {
                self.kill();
                let log = self.stderr_text();
                if interrupted() {
                    bail!("interrupted while {} started", self.what);
                }
                bail!("{} did not become ready: {}", self.what, log.trim());
            }
        }
    }

    fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = run_bounded(
                Command::new("kill").args(["-TERM", &c.id().to_string()]),
                COMMAND_TIMEOUT,
            );
        }
    }

    /// Wait (bounded) for the process to exit 0 and return its stdout as JSON.
    fn finish_json(&mut self, timeout: Duration) -> Result<Value> {
        let mut child = self.child.take().context("already finished")?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait()? {
                Some(s) => break Some(s),
                None if Instant::now() >= deadline || interrupted() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => thread::sleep(Duration::from_millis(10)),
            }
        };
        let out = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let log = self.stderr_text();
        match status {
            Some(s) if s.success() => {}
            None if interrupted() => bail!("interrupted while waiting for {}", self.what),
            None => bail!("{} did not finish within {timeout:?}: {}", self.what, log),
            Some(s) => bail!("{} failed ({s}): {}", self.what, log.trim()),
        }
        serde_json::from_slice(&out).with_context(|| {
            format!(
                "{}: stdout is not JSON: {}",
                self.what,
                String::from_utf8_lossy(&out)
            )
        })
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything a run creates. Dropped in order: processes, then namespaces (with their veths
/// and bridge), then the configuration files.
struct Lab {
    procs: Vec<Proc>,
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Lab {
    fn new() -> Result<Lab> {
        let dir = std::env::temp_dir().join(format!("mtnode-lab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Lab {
            procs: Vec::new(),
            namespaces: Vec::new(),
            dir,
        })
    }

    /// A new namespace with `lo` up and IPv6 off for every interface made in it.
    fn namespace(&mut self) -> Result<String> {
        let name = format!("{PREFIX}{}-{}", std::process::id(), self.namespaces.len());
        ensure!(name.len() <= 15, "namespace name {name} is too long");
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        run_bounded(
            Command::new("ip").args([
                "netns",
                "exec",
                &name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]),
            COMMAND_TIMEOUT,
        )?;
        Ok(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
        for ns in self.namespaces.iter().rev() {
            remove_namespace(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A veth pair `a_if` in `a` — `b_if` in `b`, MTU [`MTU`], both ends up.
fn veth(a: &str, a_if: &str, b: &str, b_if: &str) -> Result<()> {
    ip(&[
        "-n", a, "link", "add", a_if, "mtu", MTU, "type", "veth", "peer", "name", b_if, "mtu", MTU,
        "netns", b,
    ])?;
    ip(&["-n", a, "link", "set", "dev", a_if, "up"])?;
    ip(&["-n", b, "link", "set", "dev", b_if, "up"])
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Which of `topo`'s nodes run on DPDK: `dpdk_nodes` lists node names, or is `["all"]`.
fn dpdk_nodes(topo: &Topology, dpdk_nodes: &[String]) -> Result<Vec<bool>> {
    let mut on = vec![false; topo.nodes.len()];
    for name in dpdk_nodes {
        if name == "all" {
            on.fill(true);
            continue;
        }
        let i = topo
            .nodes
            .iter()
            .position(|n| &n.name == name)
            .with_context(|| {
                format!("--dpdk-nodes: topology {} has no node `{name}`", topo.name)
            })?;
        on[i] = true;
    }
    if on.iter().any(|&d| d) {
        ensure!(
            cfg!(feature = "dpdk"),
            "--dpdk-nodes: this mtnode was built without the `dpdk` feature (cargo build \
             --features dpdk)"
        );
    }
    Ok(on)
}

/// What the netns lab reads from a node's final statistics, whichever backend it ran on.
struct NodeView<'a> {
    /// Per port: name, frames and octets sent.
    ports: Vec<(&'a str, u64, u64)>,
    latency: &'a Value,
    /// UMEM frames (AF_XDP) or mbufs (DPDK) not returned at exit.
    leaked: u64,
    mode: String,
}

impl<'a> NodeView<'a> {
    fn of(s: &'a Value) -> Self {
        // A DPDK node reports its devices and latency under `dpdk`; an AF_XDP node at the top.
        let dpdk = s["dpdk"].is_object();
        let at = if dpdk { &s["dpdk"] } else { s };
        NodeView {
            ports: at["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["port"].as_str().unwrap_or(""),
                        u(&p["tx_packets"]),
                        u(&p["tx_bytes"]),
                    )
                })
                .collect(),
            latency: &at["latency_ns"],
            leaked: if dpdk {
                u(&at["mbufs_held_at_exit"])
            } else {
                u(&s["umem"]["leaked"])
            },
            mode: if dpdk {
                "dpdk".into()
            } else {
                s["workers"][0]["mode"].as_str().unwrap_or("?").into()
            },
        }
    }
}

/// Run `topo` in `mode` as live nodes in network namespaces; `exe` is the `mtnode` binary, and
/// the nodes `dpdk_nodes` names (or `all`) run on DPDK. Returns the report: the in-process
/// lab's keys, plus `netns` details, the in-process report for the same run (`in_process`) and
/// whether the two agree (`matches_in_process`).
pub fn run(
    topo: &Topology,
    mode: &str,
    opts: &LabOptions,
    exe: &Path,
    dpdk_nodes: &[String],
) -> Result<Value> {
    ensure!(
        euid() == Some(0),
        "mtnode lab --netns needs root (network namespaces, veth pairs, AF_XDP sockets)"
    );
    ensure!(opts.packets > 0, "--packets must be at least 1");
    ensure!(
        ["trace", "per-section", "per-hop"].contains(&mode),
        "--mode: `{mode}` is not trace, per-section or per-hop"
    );
    ensure!(
        opts.switch_encoding_every.is_none() && !opts.simulated_clock,
        "--netns runs on the wall clock with one configuration per node"
    );
    let topo = if mode == "per-hop" && topo.branch_encoding == "sum" {
        topo.spaced_for_sum()
    } else {
        topo.clone()
    };
    topo.check()?;
    for l in &topo.links {
        ensure!(
            l.loss == 0.0 && l.delay_us == 0,
            "link {} -> {}: --netns does not emulate loss or delay (AF_XDP transmits past \
             the qdisc); run it without",
            l.from,
            l.to
        );
    }
    ensure!(
        topo.nodes.len() <= 250,
        "--netns: at most 250 nodes (one /24 management network)"
    );
    let leaves = topo.leaves();
    let bier = topo.replication == Replication::Bier;
    ensure!(
        !bier || leaves.len() <= 64,
        "--netns: BIER with at most 64 receivers (the generator's BitString is 64 bits)"
    );
    let on_dpdk = self::dpdk_nodes(&topo, dpdk_nodes)?;
    let exe = exe
        .canonicalize()
        .with_context(|| format!("{}", exe.display()))?;

    // The in-process lab first: it is quick, and its postcard count is what the collector
    // waits for.
    let in_process = lab::run(&topo, mode, opts)?;
    let expected_postcards = u(&in_process["postcards"]);

    stop_flag();
    let started = Instant::now();
    sweep_stale();
    let mut lab = Lab::new()?;
    let ends = lab.namespace()?;
    ip(&["-n", &ends, "link", "add", "mgmt", "type", "bridge"])?;
    ip(&[
        "-n",
        &ends,
        "addr",
        "add",
        &format!("{COLLECTOR_IP}/24"),
        "dev",
        "mgmt",
    ])?;
    ip(&["-n", &ends, "link", "set", "mgmt", "up"])?;
    let mut ns = Vec::new();
    for i in 0..topo.nodes.len() {
        let n = lab.namespace()?;
        let m = format!("m{i}");
        ip(&[
            "-n", &n, "link", "add", "mgmt", "type", "veth", "peer", "name", &m, "netns", &ends,
        ])?;
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            &format!("10.255.0.{}/24", i + 1),
            "dev",
            "mgmt",
        ])?;
        ip(&["-n", &n, "link", "set", "mgmt", "up"])?;
        ip(&["-n", &ends, "link", "set", &m, "master", "mgmt", "up"])?;
        ns.push(n);
    }
    veth(&ends, "src", &ns[0], &port_interface(0))?;
    for i in 0..topo.nodes.len() {
        for (k, &l) in topo.child_links(i).iter().enumerate() {
            let child = topo.node_index(&topo.links[l].to);
            veth(
                &ns[i],
                &port_interface(k + 1),
                &ns[child],
                &port_interface(0),
            )?;
        }
    }
    let rx: Vec<String> = (0..leaves.len()).map(|j| format!("r{j}")).collect();
    for (j, &leaf) in leaves.iter().enumerate() {
        veth(&ns[leaf], &port_interface(1), &ends, &rx[j])?;
    }

    let collector: SocketAddr = format!("{COLLECTOR_IP}:{COLLECTOR_PORT}").parse()?;
    let rate_mbps = opts.source_mbps.unwrap_or(topo.source_mbps);
    let frame = PLAIN_FRAME + if bier { BIER_64 } else { 0 };
    let pps = rate_mbps * 1e6 / (frame as f64 * 8.0);
    let send_s = if pps > 0.0 {
        f64::from(opts.packets) / pps
    } else {
        1.0
    };
    // Everything must have been exported by then; the collector stops earlier once it has as
    // many postcards as the in-process lab made.
    let collect_ms =
        (READY_TIMEOUT + STOP_TIMEOUT).as_millis() as u64 + ((send_s + 15.0) * 1000.0) as u64;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ends])
        .arg(&exe)
        .args(["collect", "--listen"])
        .arg(format!("0.0.0.0:{COLLECTOR_PORT}"))
        .args(["--json", "--count", &expected_postcards.to_string()])
        .args(["--timeout-ms", &collect_ms.to_string()]);
    lab.procs
        .push(Proc::spawn("the collector".into(), &mut c, "", "\u{0}")?);

    for (i, n) in topo.nodes.iter().enumerate() {
        let conf = lab.dir.join(format!("{}.toml", n.name));
        let backend = if on_dpdk[i] {
            LiveBackend::Dpdk {
                prefix: ns[i].clone(),
            }
        } else {
            LiveBackend::Afxdp
        };
        std::fs::write(&conf, topo.live_node_toml(i, mode, collector, &backend))
            .with_context(|| format!("write {}", conf.display()))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns[i]])
            .arg(&exe)
            .args(["run", "--json", "--config"])
            .arg(&conf);
        lab.procs.push(Proc::spawn(
            format!("node {}", n.name),
            &mut c,
            "mtnode run:",
            " ready on ",
        )?);
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for p in &mut lab.procs[1..] {
        p.wait_ready(deadline)?;
    }
    let ready_s = started.elapsed().as_secs_f64();

    let mut g = Command::new("ip");
    g.args(["netns", "exec", &ends])
        .arg(&exe)
        .args(["gen", "--json", "--tx", "src", "--rx", &rx.join(",")])
        .args(["--count", &opts.packets.to_string()])
        .args(["--rate", &format!("{pps:.3}")])
        // The generator sends for this long at most and counts for a second more.
        .args(["--duration", &format!("{:.3}", send_s * 1.2 + 0.5)])
        .args(["--linger", "1.0", "--size", &frame.to_string()]);
    if opts.ecn {
        g.args(["--ecn", "ect0"]);
    }
    if bier {
        let bits: Vec<String> = (1..=leaves.len()).map(|b| b.to_string()).collect();
        g.args(["--stream", "bier", "--bier-bits", &bits.join(",")]);
    }
    let gen_out = run_bounded(&mut g, Duration::from_secs_f64(send_s + 30.0))?;
    let gen: Value = serde_json::from_slice(&gen_out.stdout).context("mtnode gen's report")?;

    for p in &lab.procs[1..] {
        p.terminate();
    }
    let mut node_stats = Vec::new();
    for p in &mut lab.procs[1..] {
        node_stats.push(p.finish_json(STOP_TIMEOUT)?);
    }
    let coll = lab.procs[0].finish_json(Duration::from_millis(collect_ms) + STOP_TIMEOUT)?;
    let run_s = started.elapsed().as_secs_f64();
    drop(lab);

    // The report, as the in-process lab makes it.
    let sent = u(&gen["tx"]["sent"]);
    let streams: Vec<&Value> = gen["rx"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| &i["streams"][0])
        .collect();
    let delivered: u64 = streams.iter().map(|s| u(&s["unique"])).sum();
    let mut configured = topo.edges();
    configured.sort();
    let edges = coll["edges"].clone();
    let rebuilt: Vec<[u64; 2]> = edges
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| [u(&e["parent"]), u(&e["child"])])
        .collect();
    let configured_u: Vec<[u64; 2]> = configured
        .iter()
        .map(|e| [u64::from(e[0]), u64::from(e[1])])
        .collect();
    // IOAM on the wire: what the nodes sent down the tree's links beyond the plain frames.
    let mut ioam_bytes = 0u64;
    let views: Vec<NodeView> = node_stats.iter().map(NodeView::of).collect();
    for (i, v) in views.iter().enumerate() {
        let kids = topo.child_links(i).len();
        for &(port, packets, bytes) in v.ports.iter().take(kids + 1) {
            if port != "up" {
                ioam_bytes += bytes.saturating_sub(packets * frame as u64);
            }
        }
    }
    let postcard_bytes = u(&coll["postcard_bytes"]);
    let per = |b: u64| {
        if delivered > 0 {
            b as f64 / delivered as f64
        } else {
            0.0
        }
    };
    let nodes: Vec<Value> = topo
        .nodes
        .iter()
        .zip(node_stats.iter().zip(&views))
        .map(|(n, (s, v))| {
            json!({
                "name": n.name,
                "node_id": n.id,
                "packets_in": s["packets_in"],
                "packets_out": s["packets_out"],
                "replicas": s["replicas"],
                "dropped": s["dropped"],
                "latency_ns_p50": v.latency["p50"],
                "latency_ns_p99": v.latency["p99"],
                "postcards_exported": s["export"]["postcards_exported"],
                "postcards_lost": s["export"]["postcards_lost_ring_full"],
                "exporter_sent": s["export"]["exporter"]["sent"],
                "frames_leaked": v.leaked,
                "socket_mode": v.mode,
            })
        })
        .collect();
    let receivers: Vec<Value> = gen["rx"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(&leaves)
        .map(|(i, &leaf)| {
            let s = &i["streams"][0];
            json!({
                "node": topo.nodes[leaf].name,
                "unique": s["unique"],
                "lost": s["lost"],
                "duplicates": s["duplicates"],
                "delay_us_p50": s["delay_us_p50"],
                "delay_us_p99": s["delay_us_p99"],
            })
        })
        .collect();
    let in_process_edges: Vec<[u64; 2]> = in_process["rebuilt_edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| [u(&e[0]), u(&e[1])])
        .collect();
    let tree_matches = rebuilt == configured_u;
    let matches_in_process = tree_matches
        && rebuilt == in_process_edges
        && in_process["tree_matches"] == true
        && delivered == u(&in_process["packets_delivered"])
        && u(&coll["postcards"]) == expected_postcards;
    Ok(json!({
        "mode": mode,
        "branch_encoding": (mode == "per-hop").then_some(topo.branch_encoding.as_str()),
        "topology": topo.name,
        "replication": if bier { "bier" } else { "pim" },
        "netns": true,
        "tree_matches": tree_matches,
        "configured_edges": configured,
        "rebuilt_edges": rebuilt,
        "telemetry_bytes_per_packet": per(ioam_bytes + postcard_bytes),
        "ioam_wire_bytes_per_packet": per(ioam_bytes),
        "postcard_bytes_per_packet": per(postcard_bytes),
        "postcards": coll["postcards"],
        "packets_sent": sent,
        "packets_delivered": delivered,
        "receivers": leaves.len(),
        "edges": edges,
        "live_nodes": nodes,
        "receiver_counts": receivers,
        "collector": {
            "messages": coll["messages"],
            "sequence_gaps": coll["stats"]["sequence_gaps"],
            "missing_records": coll["stats"]["missing_records"],
            "unusable_postcards": coll["unusable_postcards"],
        },
        "generator_rate_pps": gen["tx"]["rate_pps"],
        "setup_s": ready_s,
        "run_s": run_s,
        "matches_in_process": matches_in_process,
        "in_process": in_process,
    }))
}

/// The human form: the in-process lab's, plus how the live run compares with it.
pub fn render(r: &Value) -> String {
    let mut s = lab::render(r).replacen("mtnode lab:", "mtnode lab --netns:", 1);
    s += "  live nodes (mtnode run, one namespace each):\n";
    for n in r["live_nodes"].as_array().into_iter().flatten() {
        s += &format!(
            "    {:<6} in {} out {} dropped {} latency p50 {} ns p99 {} ns postcards {} ({})\n",
            n["name"].as_str().unwrap_or("?"),
            n["packets_in"],
            n["packets_out"],
            n["dropped"],
            n["latency_ns_p50"],
            n["latency_ns_p99"],
            n["postcards_exported"],
            n["socket_mode"].as_str().unwrap_or("?"),
        );
    }
    let ip = &r["in_process"];
    s += &format!(
        "  in-process lab: tree {}, {} copies, {} postcards, telemetry {:.0} bytes per packet; \
         netns {} it ({:.1} s, {:.1} s of it setting up)\n",
        if ip["tree_matches"] == true {
            "matches"
        } else {
            "DIFFERS"
        },
        ip["packets_delivered"],
        ip["postcards"],
        ip["telemetry_bytes_per_packet"].as_f64().unwrap_or(0.0),
        if r["matches_in_process"] == true {
            "matches"
        } else {
            "DIFFERS FROM"
        },
        r["run_s"].as_f64().unwrap_or(0.0),
        r["setup_s"].as_f64().unwrap_or(0.0),
    );
    s
}

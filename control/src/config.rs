//! The node's TOML configuration: the file schema (serde), and its validation into the
//! dataplane's immutable [`NodeConfig`]. A file is accepted whole or refused whole, and a
//! refusal names the file, the line and the field, so the running config is never half-changed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use mtnode_dataplane::aqm::{
    AqmConfig, PieParams, QueueConfig, QueueDelayMode, QueueLimits, RedParams,
};
use mtnode_dataplane::branch::{self, BranchEncoding};
use mtnode_dataplane::engine::{EngineConfig, LivePort};
use mtnode_dataplane::io::afxdp::ZeroCopy;
use mtnode_dataplane::io::MAX_FRAME;
use mtnode_dataplane::ioam::{EncapPlan, NodeData, Role, Snapshot, TimestampFormat};
use mtnode_dataplane::mcast::{self, Bift, Neighbor, Oif, PimTable, SgRoute};
use mtnode_dataplane::pipeline::{
    DexConfig, Forwarding, MalformedPolicy, Namespace, NodeConfig, Port, Prefix, Route, Selector,
    TraceMode, MAX_PORTS,
};
use mtnode_dataplane::wire::ioam::{trace_bit, MAX_TRACE_DATA};
use serde::Deserialize;
use toml::Spanned;

use crate::exporter::ExporterConfig;

/// A refused configuration: where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file, self.line, self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: NodeSection,
    #[serde(default)]
    port: Vec<PortSection>,
    #[serde(default)]
    route: Vec<RouteSection>,
    #[serde(default)]
    namespace: Vec<NamespaceSection>,
    #[serde(default)]
    mroute: Vec<MrouteSection>,
    #[serde(default)]
    bift: Vec<BiftSection>,
    export: Option<Spanned<ExportSection>>,
    api: Option<Spanned<ApiSection>>,
    engine: Option<Spanned<EngineSection>>,
    dpdk: Option<Spanned<DpdkSection>>,
}

/// `[dpdk]`: how `mtnode run` starts DPDK for the ports whose `backend = "dpdk"` (ignored by
/// replay and the lab).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DpdkSection {
    eal_args: Option<Spanned<Vec<String>>>,
    queues: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
    cores: Option<Spanned<Vec<i64>>>,
    mbufs: Option<Spanned<i64>>,
    rx_desc: Option<Spanned<i64>>,
    tx_desc: Option<Spanned<i64>>,
    clock: Option<Spanned<String>>,
    device_clock_ns: Option<Spanned<i64>>,
    idle_sleep_us: Option<Spanned<i64>>,
}

/// The DPDK node's settings (`[dpdk]`), with their defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkSettings {
    /// Passed to `rte_eal_init` as they are (the program name is added in front).
    pub eal_args: Vec<String>,
    /// RX/TX queue pairs per port, one worker each (default 1).
    pub queues: u16,
    /// Packets per port per poll (default 32, at most 256).
    pub batch_size: usize,
    /// Cores to pin workers to (default: every core but the first).
    pub cores: Vec<usize>,
    /// Mbufs per queue's pool (default 8191).
    pub mbufs: u32,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub clock: DpdkClockKind,
    /// ns per unit of the device's RX timestamp (`net_pcap`: microseconds, 1000).
    pub device_clock_ns: u64,
    pub idle_sleep_us: u64,
}

impl Default for DpdkSettings {
    fn default() -> Self {
        DpdkSettings {
            eal_args: Vec::new(),
            queues: 1,
            batch_size: 32,
            cores: Vec::new(),
            mbufs: 8191,
            rx_desc: 1024,
            tx_desc: 1024,
            clock: DpdkClockKind::System,
            device_clock_ns: 1000,
            idle_sleep_us: 0,
        }
    }
}

/// Where a DPDK node's batch time comes from: `clock = "system"` (read once per batch) or
/// `"device"` (the NIC's RX timestamps, batched as `mtnode replay` batches a pcap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdkClockKind {
    System,
    Device,
}

/// Which I/O backend runs a port under `mtnode run` (`backend = ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortBackend {
    /// The file names none (fine for replay and the lab).
    Unspecified,
    Afxdp,
    Dpdk(DpdkPortRef),
}

/// A DPDK port by ID (`dpdk_port = 0`) or device name (`dpdk_port = "net_pcap0"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DpdkPortRef {
    Id(i64),
    Name(String),
}

/// `[api]`: where the control API listens and the file holding its bearer token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    listen: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

/// The control API's settings (`[api]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Loopback by default (127.0.0.1:8686).
    pub listen: SocketAddr,
    /// Relative paths are relative to the config file's directory.
    pub token_file: Option<std::path::PathBuf>,
}

/// The API's default listen address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8686";

/// Everything one configuration file says: the node, its export, its control API, and for
/// `mtnode run` the interfaces its ports are and how the engine runs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub node: NodeConfig,
    pub export: Option<Export>,
    pub api: Option<ApiConfig>,
    /// The ports that name an interface, in port order (all of them for `mtnode run`).
    pub live_ports: Vec<LivePort>,
    pub engine: EngineConfig,
    /// Why this file cannot run live (a port without an interface), for [`Loaded::require_live`].
    not_live: Option<ConfigError>,
    /// `[dpdk]`, when the file has one.
    pub dpdk: Option<DpdkSettings>,
    /// Each port's backend, in port order.
    pub backends: Vec<PortBackend>,
}

impl Loaded {
    /// Refuse a file whose ports do not all name an interface (`mtnode run` needs them).
    pub fn require_live(self) -> Result<Loaded, ConfigError> {
        match self.not_live {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

/// `[engine]`: how `mtnode run` runs its workers and sockets (ignored by replay and the lab).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSection {
    batch_size: Option<Spanned<i64>>,
    cores: Option<Spanned<Vec<i64>>>,
    ring_size: Option<Spanned<i64>>,
    umem_frames: Option<Spanned<i64>>,
    zero_copy: Option<Spanned<String>>,
    idle_sleep_us: Option<Spanned<i64>>,
    bind_timeout_ms: Option<Spanned<i64>>,
}

/// A port's queue or queues: `queue_id = 0` or `queue_id = [0, 1]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QueueIds {
    One(i64),
    Many(Vec<i64>),
}

/// `[export]`: where postcards go as IPFIX (docs/ipfix.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportSection {
    collectors: Vec<String>,
    enterprise_number: Option<Spanned<i64>>,
    observation_domain_id: Option<Spanned<i64>>,
    mtu: Option<Spanned<i64>>,
    /// Postcards per second at most.
    rate_limit: Option<Spanned<f64>>,
    /// The worker's postcard ring, records.
    ring: Option<Spanned<i64>>,
}

/// A node's export settings: the exporter's configuration and its rings' size.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub exporter: ExporterConfig,
    pub ring: usize,
}

/// `[[mroute]]`: a static PIM-SSM route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MrouteSection {
    source: Spanned<String>,
    group: Spanned<String>,
    iif: Spanned<String>,
    oil: Spanned<Vec<OifSection>>,
}

/// An outgoing port by name, or with a TTL threshold. (serde's untagged enums cannot carry
/// spans: errors in here point at the route's `oil` line.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OifSection {
    Name(String),
    Full {
        port: String,
        ttl_threshold: Option<i64>,
    },
}

/// `[[bift]]`: one BIER forwarding table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BiftSection {
    bift_id: Spanned<i64>,
    /// BitString length in bits: 64, 128, … 4096.
    bsl: Spanned<i64>,
    neighbor: Vec<BiftNeighborSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BiftNeighborSection {
    port: Option<Spanned<String>>,
    #[serde(default)]
    local: bool,
    bits: Spanned<Vec<i64>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ModeKind {
    Trace,
    PerSection,
    PerHop,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EncodingKind {
    Explicit,
    Split,
    Sum,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ForwardingKind {
    Route,
    Bump,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TimestampKind {
    Ptp,
    Ntp,
    Posix,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MalformedKind {
    Forward,
    Drop,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RoleKind {
    Encap,
    Transit,
    Decap,
}

fn default_forwarding() -> ForwardingKind {
    ForwardingKind::Bump
}
fn default_ts() -> TimestampKind {
    TimestampKind::Ptp
}
fn default_malformed() -> MalformedKind {
    MalformedKind::Forward
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    name: String,
    node_id: Spanned<i64>,
    node_id_wide: Option<Spanned<i64>>,
    #[serde(default = "default_forwarding")]
    forwarding: ForwardingKind,
    #[serde(default = "default_ts")]
    timestamp_format: TimestampKind,
    #[serde(default = "default_malformed")]
    malformed: MalformedKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSection {
    name: Spanned<String>,
    if_id: Spanned<i64>,
    if_id_wide: Option<Spanned<i64>>,
    /// Line rate, Mb/s (default 10 000): DEX's export cap is a fraction of it.
    capacity_mbps: Option<Spanned<f64>>,
    queue: Option<Spanned<QueueSection>>,
    /// `mtnode run`: the network interface this port is (AF_XDP).
    interface: Option<Spanned<String>>,
    /// `mtnode run`: the interface's queue(s) to bind (default 0).
    queue_id: Option<Spanned<QueueIds>>,
    /// `mtnode run`: `"afxdp"` or `"dpdk"`.
    backend: Option<Spanned<String>>,
    /// `mtnode run` on DPDK: the DPDK port, by ID or device name.
    dpdk_port: Option<Spanned<DpdkPortRef>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum AqmKindCfg {
    None,
    Pie,
    Red,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum PieModeCfg {
    Timestamps,
    DepartureRate,
}

/// `[port.queue]`: limits, shaper, AQM and its parameters (defaults: RFC 8033 for PIE, Floyd's
/// for RED).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSection {
    limit_packets: Option<Spanned<i64>>,
    limit_bytes: Option<Spanned<i64>>,
    rate_mbps: Option<Spanned<f64>>,
    burst_bytes: Option<Spanned<i64>>,
    aqm: Option<AqmKindCfg>,
    ecn: Option<bool>,
    target_ms: Option<Spanned<f64>>,
    t_update_ms: Option<Spanned<f64>>,
    alpha: Option<Spanned<f64>>,
    beta: Option<Spanned<f64>>,
    max_burst_ms: Option<Spanned<f64>>,
    derandomize: Option<bool>,
    delay_mode: Option<PieModeCfg>,
    min_th: Option<Spanned<f64>>,
    max_th: Option<Spanned<f64>>,
    w_q: Option<Spanned<f64>>,
    max_p: Option<Spanned<f64>>,
    gentle: Option<bool>,
    adaptive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    prefix: Spanned<String>,
    port: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotSection {
    schema_id: Spanned<i64>,
    /// Hex octets, 4n of them, at most 32.
    data: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectSection {
    src: Option<Spanned<String>>,
    dst: Option<Spanned<String>>,
    udp_dst_port: Option<Spanned<i64>>,
    dscp: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceSection {
    id: Spanned<i64>,
    role: RoleKind,
    mode: Option<ModeKind>,
    /// Per-hop mode: how branch IDs are encoded (default explicit) ...
    branch_encoding: Option<EncodingKind>,
    /// ... in the DEX extension field of this flag bit (default 2, the first unassigned) ...
    branch_flag_bit: Option<Spanned<i64>>,
    /// ... with node IDs this far apart for `sum` (default 16).
    sum_gap: Option<Spanned<i64>>,
    /// The DEX Flow ID the encapsulating node writes (default 1).
    flow_id: Option<Spanned<i64>>,
    /// Export at most 1/N of the ingress capacity (default 100, RFC 9326 §5).
    dex_rate_divisor: Option<Spanned<i64>>,
    /// RFC 9197 §5: a namespace has one timestamp format; defaults to the node's.
    timestamp_format: Option<TimestampKind>,
    trace_type: Option<Spanned<i64>>,
    hops: Option<Spanned<i64>>,
    #[serde(default)]
    data: Option<Spanned<i64>>,
    #[serde(default)]
    data_wide: Option<Spanned<i64>>,
    snapshot: Option<SnapshotSection>,
    #[serde(default)]
    select: Vec<SelectSection>,
}

/// The trace type the examples use: hop limit + node ID, interface IDs, both timestamp words,
/// transit delay (bits 0–4).
pub const DEFAULT_TRACE_TYPE: u32 = 0xf8_0000;
pub const DEFAULT_HOPS: usize = 8;

/// Turns byte offsets into errors that name a line.
struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_string(),
            line: self.line_of(span.start),
            field: field.to_string(),
            reason: reason.into(),
        })
    }

    fn ranged(&self, v: &Spanned<i64>, field: &str, max: u64) -> Result<u64, ConfigError> {
        let x = *v.get_ref();
        if x < 0 || x as u64 > max {
            return self.err(v.span(), field, format!("{x} is out of range 0..={max}"));
        }
        Ok(x as u64)
    }
}

/// A configuration file's text; a read error names the file.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        field: "-".into(),
        reason: e.to_string(),
    })
}

/// Read and validate a configuration file.
pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
    load_all(path).map(|l| l.node)
}

/// Read and validate a configuration file, with its `[export]` section.
pub fn load_with_export(path: &Path) -> Result<(NodeConfig, Option<Export>), ConfigError> {
    load_all(path).map(|l| (l.node, l.export))
}

/// Validate configuration text; `file` names it in errors.
pub fn parse(file: &str, src: &str) -> Result<NodeConfig, ConfigError> {
    parse_with_export(file, src).map(|(c, _)| c)
}

/// Validate configuration text and its `[export]` section.
pub fn parse_with_export(
    file: &str,
    src: &str,
) -> Result<(NodeConfig, Option<Export>), ConfigError> {
    parse_all(file, src).map(|l| (l.node, l.export))
}

/// Read and validate a configuration file, every section of it.
pub fn load_all(path: &Path) -> Result<Loaded, ConfigError> {
    load_text(path, &read(path)?)
}

/// Validate the text read from `path`: errors name the file, and relative paths in it are
/// relative to its directory.
pub fn load_text(path: &Path, src: &str) -> Result<Loaded, ConfigError> {
    let mut loaded = parse_all(&path.display().to_string(), src)?;
    if let Some(t) = loaded.api.as_mut().and_then(|a| a.token_file.as_mut()) {
        if t.is_relative() {
            *t = path.parent().unwrap_or(Path::new(".")).join(&*t);
        }
    }
    Ok(loaded)
}

/// Validate configuration text, every section of it; `file` names it in errors.
pub fn parse_all(file: &str, src: &str) -> Result<Loaded, ConfigError> {
    let ctx = Ctx { file, src };
    let raw: FileConfig = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let line = ctx.line_of(span.start);
        let text = src.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let field = text.split('=').next().unwrap_or("").trim().to_string();
        ConfigError {
            file: file.to_string(),
            line,
            field,
            reason: e.message().trim().to_string(),
        }
    })?;
    let export = match &raw.export {
        Some(e) => Some(parse_export(&ctx, e)?),
        None => None,
    };
    let api = match &raw.api {
        Some(a) => Some(parse_api(&ctx, a)?),
        None => None,
    };
    let (live_ports, not_live) = parse_live_ports(&ctx, &raw)?;
    let engine = match &raw.engine {
        Some(e) => parse_engine(&ctx, e)?,
        None => EngineConfig::default(),
    };
    let dpdk = match &raw.dpdk {
        Some(d) => Some(parse_dpdk(&ctx, d)?),
        None => None,
    };
    let backends = raw
        .port
        .iter()
        .map(|p| parse_backend(&ctx, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        node: build(&ctx, raw)?,
        export,
        api,
        live_ports,
        engine,
        not_live,
        dpdk,
        backends,
    })
}

/// Highest DPDK port ID (`RTE_MAX_ETHPORTS` - 1 in Debian's build).
const MAX_DPDK_PORT: u64 = 31;

fn parse_backend(ctx: &Ctx<'_>, p: &PortSection) -> Result<PortBackend, ConfigError> {
    let backend = match &p.backend {
        None => None,
        Some(b) => match b.get_ref().as_str() {
            "afxdp" => Some(false),
            "dpdk" => Some(true),
            other => {
                return ctx.err(
                    b.span(),
                    "port.backend",
                    format!("`{other}` is not a backend (afxdp or dpdk)"),
                )
            }
        },
    };
    match (backend, &p.dpdk_port) {
        (None, None) => Ok(PortBackend::Unspecified),
        (Some(false), None) => Ok(PortBackend::Afxdp),
        (Some(true), None) => ctx.err(
            p.backend.as_ref().map_or(p.name.span(), |b| b.span()),
            "port.dpdk_port",
            format!(
                "port `{}` has backend = \"dpdk\" but no dpdk_port (an ID or a device name)",
                p.name.get_ref()
            ),
        ),
        (b, Some(d)) => {
            if b != Some(true) {
                return ctx.err(
                    d.span(),
                    "port.dpdk_port",
                    format!(
                        "port `{}` names a dpdk_port: set backend = \"dpdk\"",
                        p.name.get_ref()
                    ),
                );
            }
            match d.get_ref() {
                DpdkPortRef::Id(i) if !(0..=MAX_DPDK_PORT as i64).contains(i) => ctx.err(
                    d.span(),
                    "port.dpdk_port",
                    format!("{i} is out of range 0..={MAX_DPDK_PORT}"),
                ),
                DpdkPortRef::Name(n) if n.is_empty() || n.len() > 63 || n.contains('\0') => ctx
                    .err(
                        d.span(),
                        "port.dpdk_port",
                        format!("`{n}` is not a DPDK device name (1 to 63 characters)"),
                    ),
                r => Ok(PortBackend::Dpdk(r.clone())),
            }
        }
    }
}

fn parse_dpdk(ctx: &Ctx<'_>, d: &Spanned<DpdkSection>) -> Result<DpdkSettings, ConfigError> {
    let s = d.get_ref();
    let mut out = DpdkSettings::default();
    if let Some(a) = &s.eal_args {
        if let Some(bad) = a.get_ref().iter().find(|x| x.contains('\0')) {
            return ctx.err(a.span(), "dpdk.eal_args", format!("{bad:?} contains a NUL"));
        }
        out.eal_args = a.get_ref().clone();
    }
    let at_least_1 = |v: &Spanned<i64>, field: &str, max: u64| -> Result<u64, ConfigError> {
        let x = ctx.ranged(v, field, max)?;
        if x == 0 {
            return ctx.err(v.span(), field, format!("0 is out of range 1..={max}"));
        }
        Ok(x)
    };
    if let Some(v) = &s.queues {
        out.queues = at_least_1(v, "dpdk.queues", 64)? as u16;
    }
    if let Some(v) = &s.batch_size {
        out.batch_size = at_least_1(v, "dpdk.batch_size", 256)? as usize;
    }
    if let Some(c) = &s.cores {
        for x in c.get_ref() {
            if !(0..=1023).contains(x) {
                return ctx.err(
                    c.span(),
                    "dpdk.cores",
                    format!("{x} is out of range 0..=1023"),
                );
            }
        }
        out.cores = c.get_ref().iter().map(|&x| x as usize).collect();
    }
    if let Some(v) = &s.mbufs {
        let x = ctx.ranged(v, "dpdk.mbufs", 1 << 24)?;
        if x < 256 {
            return ctx.err(
                v.span(),
                "dpdk.mbufs",
                format!("{x} is out of range 256..={}", 1 << 24),
            );
        }
        out.mbufs = x as u32;
    }
    if let Some(v) = &s.rx_desc {
        out.rx_desc = at_least_1(v, "dpdk.rx_desc", 32768)? as u16;
    }
    if let Some(v) = &s.tx_desc {
        out.tx_desc = at_least_1(v, "dpdk.tx_desc", 32768)? as u16;
    }
    if let Some(c) = &s.clock {
        out.clock = match c.get_ref().as_str() {
            "system" => DpdkClockKind::System,
            "device" => DpdkClockKind::Device,
            other => {
                return ctx.err(
                    c.span(),
                    "dpdk.clock",
                    format!("`{other}` is not a clock (system or device)"),
                )
            }
        };
    }
    if let Some(v) = &s.device_clock_ns {
        out.device_clock_ns = at_least_1(v, "dpdk.device_clock_ns", 1_000_000_000)?;
    }
    if let Some(v) = &s.idle_sleep_us {
        out.idle_sleep_us = ctx.ranged(v, "dpdk.idle_sleep_us", 1_000_000)?;
    }
    Ok(out)
}

fn parse_api(ctx: &Ctx<'_>, a: &Spanned<ApiSection>) -> Result<ApiConfig, ConfigError> {
    let section = a.get_ref();
    let listen = match &section.listen {
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                return ctx.err(
                    l.span(),
                    "api.listen",
                    format!(
                        "`{}` is not an address:port (e.g. 127.0.0.1:8686)",
                        l.get_ref()
                    ),
                )
            }
        },
        None => DEFAULT_API_LISTEN.parse().expect("a literal address"),
    };
    let token_file = match &section.token_file {
        Some(t) if t.get_ref().is_empty() => {
            return ctx.err(t.span(), "api.token_file", "name a file")
        }
        Some(t) => Some(std::path::PathBuf::from(t.get_ref())),
        None => None,
    };
    Ok(ApiConfig { listen, token_file })
}

/// Read and validate a configuration file for `mtnode run`: every port must name its
/// `interface` (and optionally `queue_id`); `[engine]` applies.
pub fn load_live(path: &Path) -> Result<Loaded, ConfigError> {
    load_all(path)?.require_live()
}

/// Validate configuration text for `mtnode run`.
pub fn parse_live(file: &str, src: &str) -> Result<Loaded, ConfigError> {
    parse_all(file, src)?.require_live()
}

/// The ports' `interface` and `queue_id` fields, validated where present; and the refusal for
/// `mtnode run` when a port has none.
fn parse_live_ports(
    ctx: &Ctx<'_>,
    raw: &FileConfig,
) -> Result<(Vec<LivePort>, Option<ConfigError>), ConfigError> {
    let mut not_live = None;
    let mut ports: Vec<LivePort> = Vec::new();
    for (i, p) in raw.port.iter().enumerate() {
        let Some(interface) = &p.interface else {
            if not_live.is_none() {
                not_live = ctx
                    .err::<()>(
                        p.name.span(),
                        "port.interface",
                        format!(
                            "port `{}` names no interface: `mtnode run` needs one on every port",
                            p.name.get_ref()
                        ),
                    )
                    .err();
            }
            continue;
        };
        let name = interface.get_ref();
        if name.is_empty()
            || name.len() > 15
            || name.contains(['/', ' ', '\t', '\0'])
            || name == "."
            || name == ".."
        {
            return ctx.err(
                interface.span(),
                "port.interface",
                format!("`{name}` is not an interface name (1 to 15 characters, no / or spaces)"),
            );
        }
        let queue_ids: Vec<u32> = match &p.queue_id {
            None => vec![0],
            Some(q) => {
                let list = match q.get_ref() {
                    QueueIds::One(x) => vec![*x],
                    QueueIds::Many(v) => v.clone(),
                };
                if list.is_empty() {
                    return ctx.err(q.span(), "port.queue_id", "name at least one queue");
                }
                let mut ids = Vec::new();
                for x in list {
                    if !(0..=1023).contains(&x) {
                        return ctx.err(
                            q.span(),
                            "port.queue_id",
                            format!("{x} is out of range 0..=1023"),
                        );
                    }
                    if ids.contains(&(x as u32)) {
                        return ctx.err(q.span(), "port.queue_id", format!("queue {x} twice"));
                    }
                    ids.push(x as u32);
                }
                ids
            }
        };
        if let Some(first) = ports.first() {
            if first.queue_ids != queue_ids {
                let span = p.queue_id.as_ref().map_or(p.name.span(), |q| q.span());
                return ctx.err(
                    span,
                    "port.queue_id",
                    format!(
                        "every port must bind the same queues (one worker per queue owns every \
                         port's socket on it): {:?} here, {:?} on `{}`",
                        queue_ids, first.queue_ids, first.interface
                    ),
                );
            }
        }
        if ports.iter().any(|q| q.interface == *name) {
            return ctx.err(
                interface.span(),
                "port.interface",
                format!("interface `{name}` is already another port"),
            );
        }
        ports.push(LivePort {
            port: i as u16,
            interface: name.clone(),
            queue_ids,
        });
    }
    Ok((ports, not_live))
}

fn parse_engine(ctx: &Ctx<'_>, e: &Spanned<EngineSection>) -> Result<EngineConfig, ConfigError> {
    let e = e.get_ref();
    let mut c = EngineConfig::default();
    if let Some(v) = &e.batch_size {
        let b = ctx.ranged(v, "engine.batch_size", 1024)? as usize;
        if b == 0 {
            return ctx.err(v.span(), "engine.batch_size", "0 is out of range 1..=1024");
        }
        c.batch_size = b;
    }
    if let Some(v) = &e.cores {
        for &id in v.get_ref() {
            if !(0..=4095).contains(&id) {
                return ctx.err(
                    v.span(),
                    "engine.cores",
                    format!("{id} is out of range 0..=4095"),
                );
            }
            c.cores.push(id as usize);
        }
    }
    if let Some(v) = &e.ring_size {
        let r = ctx.ranged(v, "engine.ring_size", 1 << 15)? as u32;
        if r < 64 || !r.is_power_of_two() {
            return ctx.err(
                v.span(),
                "engine.ring_size",
                format!("{r} is not a power of two in 64..=32768"),
            );
        }
        c.xsk.ring_size = r;
    }
    if let Some(v) = &e.umem_frames {
        c.xsk.frames = ctx.ranged(v, "engine.umem_frames", 1 << 20)? as u32;
    }
    if let Some(v) = &e.zero_copy {
        c.xsk.zero_copy = match v.get_ref().as_str() {
            "auto" => ZeroCopy::Auto,
            "never" => ZeroCopy::Never,
            "require" => ZeroCopy::Require,
            other => {
                return ctx.err(
                    v.span(),
                    "engine.zero_copy",
                    format!("`{other}`: expected \"auto\", \"never\" or \"require\""),
                )
            }
        };
    }
    if let Some(v) = &e.idle_sleep_us {
        c.idle_sleep_us = ctx.ranged(v, "engine.idle_sleep_us", 1_000_000)?;
    }
    if let Some(v) = &e.bind_timeout_ms {
        c.xsk.bind_timeout =
            std::time::Duration::from_millis(ctx.ranged(v, "engine.bind_timeout_ms", 600_000)?);
    }
    if c.xsk.frames != 0 && (c.xsk.frames as u64) < 2 * c.xsk.ring_size as u64 {
        let span = e.umem_frames.as_ref().map_or(0..0, |v| v.span());
        return ctx.err(
            span,
            "engine.umem_frames",
            format!(
                "{} frames cannot keep a {}-entry fill ring full and still send",
                c.xsk.frames, c.xsk.ring_size
            ),
        );
    }
    Ok(c)
}

fn parse_export(ctx: &Ctx<'_>, e: &Spanned<ExportSection>) -> Result<Export, ConfigError> {
    let span = e.span();
    let e = e.get_ref();
    let mut exporter = ExporterConfig::default();
    for c in &e.collectors {
        match c.parse::<SocketAddr>() {
            Ok(a) => exporter.collectors.push(a),
            Err(_) => {
                return ctx.err(
                    span,
                    "export.collectors",
                    format!("`{c}` is not an address:port (e.g. 127.0.0.1:4739 or [::1]:4739)"),
                )
            }
        }
    }
    if exporter.collectors.is_empty() {
        return ctx.err(span, "export.collectors", "name at least one collector");
    }
    if let Some(v) = &e.enterprise_number {
        exporter.enterprise_number =
            ctx.ranged(v, "export.enterprise_number", u32::MAX as u64)? as u32;
    }
    if let Some(v) = &e.observation_domain_id {
        exporter.observation_domain_id =
            ctx.ranged(v, "export.observation_domain_id", u32::MAX as u64)? as u32;
    }
    if let Some(v) = &e.mtu {
        let mtu = ctx.ranged(v, "export.mtu", 65_000)? as usize;
        if mtu < 512 {
            return ctx.err(v.span(), "export.mtu", format!("{mtu} is below 512"));
        }
        exporter.mtu = mtu;
    }
    if let Some(v) = &e.rate_limit {
        exporter.rate_limit = Some(real(ctx, v, "export.rate_limit", 0.0, 1e9)?);
    }
    let ring = match &e.ring {
        Some(v) => ctx.ranged(v, "export.ring", 1 << 24)?.max(1) as usize,
        None => 1 << 14,
    };
    Ok(Export { exporter, ring })
}

fn build(ctx: &Ctx<'_>, raw: FileConfig) -> Result<NodeConfig, ConfigError> {
    let node_id = ctx.ranged(&raw.node.node_id, "node.node_id", 0xff_ffff)? as u32;
    let node_id_wide = match &raw.node.node_id_wide {
        Some(w) => ctx.ranged(w, "node.node_id_wide", 0x00ff_ffff_ffff_ffff)?,
        None => node_id as u64,
    };
    let ts_format = |k: TimestampKind| match k {
        TimestampKind::Ptp => TimestampFormat::Ptp,
        TimestampKind::Ntp => TimestampFormat::Ntp,
        TimestampKind::Posix => TimestampFormat::Posix,
    };
    let timestamp_format = ts_format(raw.node.timestamp_format);

    let mut ports: Vec<Port> = Vec::new();
    for p in &raw.port {
        let name = p.name.get_ref().clone();
        if ports.iter().any(|q| q.name == name) {
            return ctx.err(
                p.name.span(),
                "port.name",
                format!("duplicate port `{name}`"),
            );
        }
        let if_id = ctx.ranged(&p.if_id, "port.if_id", 0xffff)? as u16;
        let if_id_wide = match &p.if_id_wide {
            Some(w) => ctx.ranged(w, "port.if_id_wide", 0xffff_ffff)? as u32,
            None => if_id as u32,
        };
        let queue = match &p.queue {
            Some(q) => Some(parse_queue(ctx, q)?),
            None => None,
        };
        let capacity_bps = match &p.capacity_mbps {
            Some(c) => (real(ctx, c, "port.capacity_mbps", 0.0, 1e7)? * 1e6) as u64,
            None => 10_000_000_000,
        };
        ports.push(Port {
            name,
            if_id,
            if_id_wide,
            capacity_bps,
            queue,
        });
    }
    if ports.is_empty() || ports.len() > MAX_PORTS {
        return ctx.err(
            0..0,
            "port",
            format!("a node needs 1..={MAX_PORTS} [[port]] tables"),
        );
    }
    let forwarding = match raw.node.forwarding {
        ForwardingKind::Bump => {
            if ports.len() != 2 {
                return ctx.err(
                    0..0,
                    "node.forwarding",
                    format!("`bump` needs exactly 2 ports, found {}", ports.len()),
                );
            }
            Forwarding::Bump
        }
        ForwardingKind::Route => Forwarding::Route,
    };

    let port_index = |name: &Spanned<String>, field: &str| -> Result<u16, ConfigError> {
        match ports.iter().position(|p| &p.name == name.get_ref()) {
            Some(i) => Ok(i as u16),
            None => ctx.err(
                name.span(),
                field,
                format!("unknown port `{}`", name.get_ref()),
            ),
        }
    };

    let mut routes6 = Vec::new();
    let mut routes4 = Vec::new();
    for r in &raw.route {
        let port = port_index(&r.port, "route.port")?;
        match parse_prefix(r.prefix.get_ref()) {
            Some(AnyPrefix::V6(prefix)) => routes6.push(Route { prefix, port }),
            Some(AnyPrefix::V4(prefix)) => routes4.push(Route { prefix, port }),
            None => {
                return ctx.err(
                    r.prefix.span(),
                    "route.prefix",
                    format!("`{}` is not an IPv4 or IPv6 prefix", r.prefix.get_ref()),
                )
            }
        }
    }
    if forwarding == Forwarding::Route
        && routes6.is_empty()
        && routes4.is_empty()
        && raw.mroute.is_empty()
        && raw.bift.is_empty()
    {
        return ctx.err(
            0..0,
            "route",
            "`route` forwarding needs at least one [[route]], [[mroute]] or [[bift]]",
        );
    }
    routes6.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));
    routes4.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));

    let mut namespaces: Vec<Namespace> = Vec::new();
    for n in &raw.namespace {
        let id = ctx.ranged(&n.id, "namespace.id", 0xffff)? as u16;
        if namespaces.iter().any(|m| m.id == id) {
            return ctx.err(
                n.id.span(),
                "namespace.id",
                format!("duplicate namespace {id}"),
            );
        }
        let trace_type = match &n.trace_type {
            Some(t) => {
                let v = ctx.ranged(t, "namespace.trace_type", 0xff_ffff)? as u32;
                if v & trace_bit::mask(trace_bit::RESERVED) != 0 {
                    return ctx.err(
                        t.span(),
                        "namespace.trace_type",
                        "bit 23 is reserved and must be 0",
                    );
                }
                if v == 0 {
                    return ctx.err(t.span(), "namespace.trace_type", "no trace-type bit set");
                }
                v
            }
            None => DEFAULT_TRACE_TYPE,
        };
        let snapshot = match &n.snapshot {
            Some(s) => Some(parse_snapshot(ctx, s)?),
            None => None,
        };
        let node = NodeData {
            node_id,
            node_id_wide,
            namespace_data: match &n.data {
                Some(d) => ctx.ranged(d, "namespace.data", 0xffff_ffff)? as u32,
                None => u32::MAX,
            },
            namespace_data_wide: match &n.data_wide {
                Some(d) => ctx.ranged(d, "namespace.data_wide", i64::MAX as u64)?,
                None => u64::MAX,
            },
            timestamp_format: n.timestamp_format.map_or(timestamp_format, ts_format),
            snapshot,
        };
        let role = match n.role {
            RoleKind::Encap => Role::Encap,
            RoleKind::Transit => Role::Transit,
            RoleKind::Decap => Role::Decap,
        };
        let plan = if role == Role::Encap {
            let hops = match &n.hops {
                Some(h) => ctx.ranged(h, "namespace.hops", 127)? as usize,
                None => DEFAULT_HOPS,
            };
            let slot = node.slot_units(trace_type) * 4;
            if hops == 0 || hops * slot > MAX_TRACE_DATA {
                let span = n.hops.as_ref().map_or(n.id.span(), |h| h.span());
                return ctx.err(
                    span,
                    "namespace.hops",
                    format!(
                        "{hops} hops × {slot} octets does not fit the {MAX_TRACE_DATA}-octet trace \
                         (at most {} hops for trace type {trace_type:#08x})",
                        MAX_TRACE_DATA / slot.max(1)
                    ),
                );
            }
            if n.select.is_empty() {
                return ctx.err(
                    n.id.span(),
                    "namespace.select",
                    "an encap namespace needs at least one [[namespace.select]]",
                );
            }
            Some(EncapPlan::new(id, trace_type, hops, &node))
        } else {
            None
        };
        let mut select = Vec::new();
        for s in &n.select {
            select.push(parse_selector(ctx, s)?);
        }
        let mode = match n.mode {
            Some(ModeKind::PerSection) => TraceMode::PerSection,
            Some(ModeKind::PerHop) => TraceMode::PerHop,
            _ => TraceMode::Trace,
        };
        let dex = if mode == TraceMode::PerHop {
            Some(parse_dex(
                ctx,
                n,
                trace_type,
                &raw.mroute,
                &raw.bift,
                node_id,
            )?)
        } else {
            None
        };
        namespaces.push(Namespace {
            id,
            role,
            mode,
            dex,
            node,
            plan,
            select,
        });
    }

    let pim = parse_mroutes(ctx, &raw.mroute, &port_index)?;
    let bifts = parse_bifts(ctx, &raw.bift, &port_index)?;

    Ok(NodeConfig {
        name: raw.node.name,
        node_id,
        pim,
        bifts,
        epoch: 0,
        forwarding,
        malformed: match raw.node.malformed {
            MalformedKind::Forward => MalformedPolicy::Forward,
            MalformedKind::Drop => MalformedPolicy::Drop,
        },
        timestamp_format,
        ports,
        routes6,
        routes4,
        namespaces,
    })
}

fn addr6(ctx: &Ctx<'_>, a: &Spanned<String>, field: &str) -> Result<[u8; 16], ConfigError> {
    if let Ok(v6) = a.get_ref().parse::<Ipv6Addr>() {
        return Ok(v6.octets());
    }
    if let Ok(v4) = a.get_ref().parse::<Ipv4Addr>() {
        return Ok(mcast::v4_mapped(v4.octets()));
    }
    ctx.err(
        a.span(),
        field,
        format!("`{}` is not an IPv6 or IPv4 address", a.get_ref()),
    )
}

type PortIndex<'a> = dyn Fn(&Spanned<String>, &str) -> Result<u16, ConfigError> + 'a;

fn parse_mroutes(
    ctx: &Ctx<'_>,
    raw: &[MrouteSection],
    port_index: &PortIndex<'_>,
) -> Result<PimTable, ConfigError> {
    let mut routes: Vec<SgRoute> = Vec::new();
    for m in raw {
        let source = addr6(ctx, &m.source, "mroute.source")?;
        let group = addr6(ctx, &m.group, "mroute.group")?;
        if !mcast::is_ssm(&group) {
            return ctx.err(
                m.group.span(),
                "mroute.group",
                format!(
                    "`{}` is not a source-specific group (FF3x::/32 or 232/8)",
                    m.group.get_ref()
                ),
            );
        }
        if routes
            .iter()
            .any(|r| r.source == source && r.group == group)
        {
            return ctx.err(m.group.span(), "mroute.group", "duplicate (S,G) route");
        }
        let iif = port_index(&m.iif, "mroute.iif")?;
        let mut oil: Vec<Oif> = Vec::new();
        for o in m.oil.get_ref() {
            let (name, ttl) = match o {
                OifSection::Name(n) => (n, None),
                OifSection::Full {
                    port,
                    ttl_threshold,
                } => (port, *ttl_threshold),
            };
            let spanned = Spanned::new(m.oil.span(), name.clone());
            let port = port_index(&spanned, "mroute.oil")?;
            if port == iif || oil.iter().any(|x| x.port == port) {
                return ctx.err(
                    m.oil.span(),
                    "mroute.oil",
                    format!("`{name}` is the iif or listed twice"),
                );
            }
            let ttl_threshold = match ttl {
                Some(t) if (0..=255).contains(&t) => t as u8,
                Some(t) => {
                    return ctx.err(
                        m.oil.span(),
                        "mroute.oil.ttl_threshold",
                        format!("{t} is out of range 0..=255"),
                    )
                }
                None => 1,
            };
            oil.push(Oif {
                port,
                ttl_threshold,
            });
        }
        if oil.is_empty() {
            return ctx.err(
                m.iif.span(),
                "mroute.oil",
                "a route needs at least one outgoing port",
            );
        }
        routes.push(SgRoute {
            source,
            group,
            iif,
            oil,
        });
    }
    Ok(PimTable { routes })
}

fn parse_bifts(
    ctx: &Ctx<'_>,
    raw: &[BiftSection],
    port_index: &PortIndex<'_>,
) -> Result<Vec<Bift>, ConfigError> {
    let mut bifts: Vec<Bift> = Vec::new();
    for b in raw {
        let bift_id = ctx.ranged(&b.bift_id, "bift.bift_id", 0xf_ffff)? as u32;
        let bits = *b.bsl.get_ref();
        let Some(bsl) = (1..=7u8).find(|&c| (1i64 << (c + 5)) == bits) else {
            return ctx.err(
                b.bsl.span(),
                "bift.bsl",
                format!("{bits} is not 64, 128, … 4096"),
            );
        };
        if bifts.iter().any(|x| x.bift_id == bift_id && x.bsl == bsl) {
            return ctx.err(b.bift_id.span(), "bift.bift_id", "duplicate BIFT");
        }
        let mut entries = Vec::new();
        for n in &b.neighbor {
            let nbr = match (&n.port, n.local) {
                (Some(p), false) => Neighbor::Port(port_index(p, "bift.neighbor.port")?),
                (None, true) => Neighbor::Local,
                _ => {
                    return ctx.err(
                        n.bits.span(),
                        "bift.neighbor",
                        "give either `port` or `local = true`",
                    )
                }
            };
            let mut positions = Vec::new();
            for &k in n.bits.get_ref() {
                if k < 1 || k > bits {
                    return ctx.err(
                        n.bits.span(),
                        "bift.neighbor.bits",
                        format!("bit {k} is outside 1..={bits}"),
                    );
                }
                positions.push(k as u16);
            }
            entries.push((nbr, positions));
        }
        let Some(bift) = Bift::new(bift_id, bsl, &entries) else {
            return ctx.err(
                b.bift_id.span(),
                "bift.neighbor.bits",
                "a bit position is listed for two neighbors",
            );
        };
        bifts.push(bift);
    }
    Ok(bifts)
}

/// A per-hop namespace's DEX settings; `sum` is refused when a branch point of this node has
/// as many branches as the gap (the index would spill into the next node's ID) or the node's
/// ID is not a multiple of the gap.
fn parse_dex(
    ctx: &Ctx<'_>,
    n: &NamespaceSection,
    trace_type: u32,
    mroutes: &[MrouteSection],
    bifts: &[BiftSection],
    node_id: u32,
) -> Result<DexConfig, ConfigError> {
    let flag_bit = match &n.branch_flag_bit {
        Some(b) => {
            // The three encodings use the base bit and the two after it.
            let v = ctx.ranged(b, "namespace.branch_flag_bit", 5)? as u8;
            if v < 2 {
                return ctx.err(
                    b.span(),
                    "namespace.branch_flag_bit",
                    "bits 0 and 1 are the Flow ID and Sequence Number (RFC 9326)",
                );
            }
            v
        }
        None => branch::DEFAULT_FLAG_BIT,
    };
    let sum_gap = match &n.sum_gap {
        Some(g) => ctx.ranged(g, "namespace.sum_gap", 0xff_ffff)? as u32,
        None => 16,
    };
    let encoding = match n.branch_encoding.unwrap_or(EncodingKind::Explicit) {
        EncodingKind::Explicit => BranchEncoding::Explicit,
        EncodingKind::Split => {
            if node_id > 0xffff {
                return ctx.err(
                    n.id.span(),
                    "namespace.branch_encoding",
                    format!("`split` carries 16-bit node IDs; node_id {node_id} does not fit"),
                );
            }
            BranchEncoding::Split
        }
        EncodingKind::Sum => {
            let gap = sum_gap;
            let span = n.sum_gap.as_ref().map_or(n.id.span(), |g| g.span());
            if gap < 2 {
                return ctx.err(span, "namespace.sum_gap", "the gap must be at least 2");
            }
            if node_id % gap != 0 {
                return ctx.err(
                    span,
                    "namespace.sum_gap",
                    format!("node_id {node_id} is not a multiple of the gap {gap}"),
                );
            }
            let fanout = mroutes
                .iter()
                .map(|m| m.oil.get_ref().len())
                .chain(bifts.iter().map(|b| b.neighbor.len()))
                .max()
                .unwrap_or(1);
            if fanout as u32 >= gap {
                return ctx.err(
                    span,
                    "namespace.sum_gap",
                    format!(
                        "node {node_id} has a branch point with {fanout} branches, which reaches \
                         the gap {gap}: branch index {} would read as node {}",
                        gap,
                        node_id + gap
                    ),
                );
            }
            BranchEncoding::Sum { gap }
        }
    };
    Ok(DexConfig {
        flow_id: match &n.flow_id {
            Some(f) => ctx.ranged(f, "namespace.flow_id", u32::MAX as u64)? as u32,
            None => 1,
        },
        trace_type,
        encoding,
        flag_bit,
        sum_gap,
        rate_divisor: match &n.dex_rate_divisor {
            Some(d) => ctx.ranged(d, "namespace.dex_rate_divisor", 1 << 20)?.max(1) as u32,
            None => 100,
        },
    })
}

/// A float in `(lo, hi]`.
fn real(
    ctx: &Ctx<'_>,
    v: &Spanned<f64>,
    field: &str,
    lo: f64,
    hi: f64,
) -> Result<f64, ConfigError> {
    let x = *v.get_ref();
    if !(x > lo && x <= hi) {
        return ctx.err(v.span(), field, format!("{x} is out of range ({lo}, {hi}]"));
    }
    Ok(x)
}

fn parse_queue(ctx: &Ctx<'_>, q: &Spanned<QueueSection>) -> Result<QueueConfig, ConfigError> {
    let span = q.span();
    let q = q.get_ref();
    let f = |name: &str| format!("port.queue.{name}");
    let packets = match &q.limit_packets {
        Some(v) => ctx.ranged(v, &f("limit_packets"), 1 << 20)? as usize,
        None => 1000,
    };
    let bytes = match &q.limit_bytes {
        Some(v) => ctx.ranged(v, &f("limit_bytes"), 1 << 32)? as usize,
        None => packets * 2048,
    };
    if packets == 0 || bytes == 0 {
        return ctx.err(span, &f("limit_packets"), "queue limits must be positive");
    }
    let shaper = match &q.rate_mbps {
        Some(r) => {
            let mbps = real(ctx, r, &f("rate_mbps"), 0.0, 1e6)?;
            let burst = match &q.burst_bytes {
                Some(b) => ctx.ranged(b, &f("burst_bytes"), 1 << 30)? as usize,
                None => 3000,
            };
            if burst < MAX_FRAME {
                let s = q.burst_bytes.as_ref().map_or(span.clone(), |b| b.span());
                return ctx.err(
                    s,
                    &f("burst_bytes"),
                    format!("the bucket must hold the largest frame, {MAX_FRAME} octets"),
                );
            }
            Some(((mbps * 1e6) as u64, burst))
        }
        None => None,
    };
    let ms = |v: &Option<Spanned<f64>>, name: &str, default: u64| -> Result<u64, ConfigError> {
        match v {
            Some(x) => Ok((real(ctx, x, &f(name), 0.0, 10_000.0)? * 1e6) as u64),
            None => Ok(default),
        }
    };
    let ecn = q.ecn.unwrap_or(true);
    let aqm = match q.aqm.unwrap_or(AqmKindCfg::None) {
        AqmKindCfg::None => AqmConfig::None,
        AqmKindCfg::Pie => {
            let d = PieParams::default();
            AqmConfig::Pie(PieParams {
                target: ms(&q.target_ms, "target_ms", d.target)?,
                t_update: ms(&q.t_update_ms, "t_update_ms", d.t_update)?,
                max_burst: ms(&q.max_burst_ms, "max_burst_ms", d.max_burst)?,
                alpha: match &q.alpha {
                    Some(a) => real(ctx, a, &f("alpha"), 0.0, 100.0)?,
                    None => d.alpha,
                },
                beta: match &q.beta {
                    Some(b) => real(ctx, b, &f("beta"), 0.0, 100.0)?,
                    None => d.beta,
                },
                ecn,
                derandomize: q.derandomize.unwrap_or(d.derandomize),
                mode: match q.delay_mode {
                    Some(PieModeCfg::DepartureRate) => QueueDelayMode::DepartureRate,
                    _ => QueueDelayMode::Timestamps,
                },
                ..d
            })
        }
        AqmKindCfg::Red => {
            let d = RedParams::default();
            let min_th = match &q.min_th {
                Some(v) => real(ctx, v, &f("min_th"), 0.0, 1e6)?,
                None => d.min_th,
            };
            let max_th = match &q.max_th {
                Some(v) => real(ctx, v, &f("max_th"), 0.0, 1e6)?,
                None => 3.0 * min_th,
            };
            if max_th <= min_th {
                let s = q.max_th.as_ref().map_or(span.clone(), |v| v.span());
                return ctx.err(s, &f("max_th"), format!("must be above min_th ({min_th})"));
            }
            AqmConfig::Red(RedParams {
                min_th,
                max_th,
                w_q: match &q.w_q {
                    Some(v) => real(ctx, v, &f("w_q"), 0.0, 1.0)?,
                    None => d.w_q,
                },
                max_p: match &q.max_p {
                    Some(v) => real(ctx, v, &f("max_p"), 0.0, 1.0)?,
                    None => d.max_p,
                },
                gentle: q.gentle.unwrap_or(d.gentle),
                adaptive: q.adaptive.unwrap_or(d.adaptive),
                ecn,
                // The idle decay's "typical transmission time": a 1500-octet packet at the
                // shaped rate, or Floyd's 100 Mb/s figure.
                tx_time: shaper.map_or(d.tx_time, |(bps, _)| 12_000_000_000 / bps.max(1)),
            })
        }
    };
    Ok(QueueConfig {
        limits: QueueLimits { packets, bytes },
        shaper,
        aqm,
    })
}

fn parse_snapshot(ctx: &Ctx<'_>, s: &SnapshotSection) -> Result<Snapshot, ConfigError> {
    let schema_id = ctx.ranged(&s.schema_id, "namespace.snapshot.schema_id", 0xff_fffe)? as u32;
    let hex = s.data.get_ref();
    let octets: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match octets {
        Some(o) if o.len() % 4 == 0 && o.len() <= 32 => {
            let mut data = [0u8; 32];
            data[..o.len()].copy_from_slice(&o);
            Ok(Snapshot {
                schema_id,
                len: o.len() as u8,
                data,
            })
        }
        _ => ctx.err(
            s.data.span(),
            "namespace.snapshot.data",
            "needs hex octets, a multiple of 4 and at most 32 of them",
        ),
    }
}

fn parse_selector(ctx: &Ctx<'_>, s: &SelectSection) -> Result<Selector, ConfigError> {
    let v6 =
        |p: &Option<Spanned<String>>, field: &str| -> Result<Option<Prefix<16>>, ConfigError> {
            match p {
                None => Ok(None),
                Some(p) => match parse_prefix(p.get_ref()) {
                    Some(AnyPrefix::V6(x)) => Ok(Some(x)),
                    _ => ctx.err(
                        p.span(),
                        field,
                        format!("`{}` is not an IPv6 prefix", p.get_ref()),
                    ),
                },
            }
        };
    Ok(Selector {
        src: v6(&s.src, "namespace.select.src")?,
        dst: v6(&s.dst, "namespace.select.dst")?,
        udp_dst_port: match &s.udp_dst_port {
            Some(p) => Some(ctx.ranged(p, "namespace.select.udp_dst_port", 0xffff)? as u16),
            None => None,
        },
        dscp: match &s.dscp {
            Some(d) => Some(ctx.ranged(d, "namespace.select.dscp", 63)? as u8),
            None => None,
        },
    })
}

enum AnyPrefix {
    V6(Prefix<16>),
    V4(Prefix<4>),
}

/// `addr/len` (or a bare address, a host route), normalised to its network.
fn parse_prefix(s: &str) -> Option<AnyPrefix> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    if let Ok(a) = addr.parse::<Ipv6Addr>() {
        let len = len.unwrap_or(128);
        (len <= 128).then(|| {
            AnyPrefix::V6(Prefix {
                addr: mask(a.octets(), len),
                len,
            })
        })
    } else if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let len = len.unwrap_or(32);
        (len <= 32).then(|| {
            AnyPrefix::V4(Prefix {
                addr: mask(a.octets(), len),
                len,
            })
        })
    } else {
        None
    }
}

fn mask<const N: usize>(mut a: [u8; N], len: u8) -> [u8; N] {
    for (i, b) in a.iter_mut().enumerate() {
        let keep = (len as usize).saturating_sub(i * 8).min(8);
        *b &= !(0xffu16 >> keep) as u8;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "encap"
node_id = 1
forwarding = "route"

[[port]]
name = "in"
if_id = 10

[[port]]
name = "out"
if_id = 11

[[route]]
prefix = "::/0"
port = "out"

[[route]]
prefix = "0.0.0.0/0"
port = "out"

[[namespace]]
id = 1
role = "encap"
trace_type = 0xF80000
hops = 8

[[namespace.select]]
dst = "ff00::/8"
"#;

    #[test]
    fn good_file() {
        let c = parse("good.toml", GOOD).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.routes6[0].port, 1);
        assert_eq!(c.routes4.len(), 1);
        let ns = &c.namespaces[0];
        assert_eq!(ns.plan.unwrap().data_len, 160);
        assert_eq!(ns.node.node_id_wide, 1);
        assert_eq!(ns.select[0].dst.unwrap().len, 8);
        assert_eq!(ns.select[0].dst.unwrap().addr[0], 0xff);
    }

    fn refuse(edit: (&str, &str)) -> ConfigError {
        let src = GOOD.replacen(edit.0, edit.1, 1);
        assert_ne!(src, GOOD, "edit {edit:?} changed nothing");
        parse("bad.toml", &src).unwrap_err()
    }

    #[test]
    fn refusals_name_line_and_field() {
        let e = refuse(("node_id = 1", "node_id = 16777216"));
        assert_eq!((e.line, e.field.as_str()), (4, "node.node_id"));
        assert_eq!(
            e.to_string(),
            "bad.toml:4: field `node.node_id`: 16777216 is out of range 0..=16777215"
        );

        let e = refuse(("port = \"out\"", "port = \"nowhere\""));
        assert_eq!((e.line, e.field.as_str()), (17, "route.port"));

        let e = refuse(("hops = 8", "hops = 13"));
        assert_eq!((e.line, e.field.as_str()), (27, "namespace.hops"));
        assert!(e.reason.contains("at most 12 hops"), "{e}");

        let e = refuse(("if_id = 11", "if_id = 11\nspeed = 10"));
        assert_eq!((e.line, e.field.as_str()), (14, "speed"));
        assert!(e.reason.contains("unknown field"), "{e}");

        let e = refuse(("name = \"out\"", "name = \"in\""));
        assert_eq!((e.line, e.field.as_str()), (12, "port.name"));

        let e = refuse(("dst = \"ff00::/8\"", "dst = \"ff00::/129\""));
        assert_eq!((e.line, e.field.as_str()), (30, "namespace.select.dst"));

        let e = refuse(("trace_type = 0xF80000", "trace_type = 0xF80001"));
        assert_eq!((e.line, e.field.as_str()), (26, "namespace.trace_type"));

        let e = refuse(("role = \"encap\"", "role = \"sideways\""));
        assert_eq!((e.line, e.field.as_str()), (25, "role"));
    }

    fn live(edit: (&str, &str)) -> Result<Loaded, ConfigError> {
        let src = GOOD
            .replacen("if_id = 10\n", "if_id = 10\ninterface = \"veth0\"\n", 1)
            .replacen("if_id = 11\n", "if_id = 11\ninterface = \"veth1\"\n", 1);
        let edited = src.replacen(edit.0, edit.1, 1);
        assert!(
            edit.0.is_empty() || edited != src,
            "edit {edit:?} changed nothing"
        );
        parse_live("live.toml", &edited)
    }

    #[test]
    fn live_ports_and_engine() {
        let c = live(("", "")).unwrap();
        assert_eq!(
            c.live_ports,
            [
                LivePort {
                    port: 0,
                    interface: "veth0".into(),
                    queue_ids: vec![0]
                },
                LivePort {
                    port: 1,
                    interface: "veth1".into(),
                    queue_ids: vec![0]
                },
            ]
        );
        assert_eq!(c.engine.batch_size, 64);
        assert_eq!(c.engine.xsk.zero_copy, ZeroCopy::Auto);

        let c = live((
            "[[route]]",
            "[engine]\nbatch_size = 16\ncores = [1]\nring_size = 512\nzero_copy = \"never\"\n\
             idle_sleep_us = 50\n\n[[route]]",
        ))
        .unwrap();
        assert_eq!(
            (
                c.engine.batch_size,
                c.engine.cores.clone(),
                c.engine.xsk.ring_size
            ),
            (16, vec![1], 512)
        );
        assert_eq!(
            (c.engine.xsk.zero_copy, c.engine.idle_sleep_us),
            (ZeroCopy::Never, 50)
        );
        let c = live((
            "interface = \"veth0\"",
            "interface = \"veth0\"\nqueue_id = [0, 1]",
        ));
        let e = c.unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (14, "port.queue_id"), "{e}");
        assert!(e.reason.contains("same queues"), "{e}");
    }

    #[test]
    fn live_refusals_name_line_and_field() {
        let e = live(("interface = \"veth1\"\n", "")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (13, "port.interface"), "{e}");
        let e = live(("\"veth1\"", "\"veth0\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (15, "port.interface"), "{e}");
        let e = live(("\"veth1\"", "\"a-name-over-15-chars\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (15, "port.interface"), "{e}");
        let e = live((
            "interface = \"veth0\"",
            "interface = \"veth0\"\nqueue_id = 5000",
        ))
        .unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (11, "port.queue_id"), "{e}");
        let e = live(("[[route]]", "[engine]\nring_size = 1000\n\n[[route]]")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (18, "engine.ring_size"), "{e}");
        let e = live(("[[route]]", "[engine]\nzero_copy = \"maybe\"\n\n[[route]]")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (18, "engine.zero_copy"), "{e}");
        // A live port may have a managed egress queue: the engine runs it.
        let c = live((
            "interface = \"veth1\"\n",
            "interface = \"veth1\"\n[port.queue]\nlimit_packets = 10\n",
        ))
        .unwrap();
        assert_eq!(c.node.ports[1].queue.as_ref().unwrap().limits.packets, 10);
        // Replay still takes the same file, interfaces and all.
        let src = GOOD.replacen("if_id = 10\n", "if_id = 10\ninterface = \"veth0\"\n", 1);
        assert!(parse("replay.toml", &src).is_ok());
    }

    #[test]
    fn api_section() {
        let with = |api: &str| format!("{GOOD}\n[api]\n{api}\n");
        let l = parse_all("a.toml", &with("token_file = \"api.token\"")).unwrap();
        let api = l.api.unwrap();
        assert_eq!(api.listen.to_string(), DEFAULT_API_LISTEN);
        assert_eq!(api.token_file.unwrap().to_str(), Some("api.token"));
        assert_eq!(parse_all("a.toml", GOOD).unwrap().api, None);

        let e = parse_all("a.toml", &with("listen = \"localhost\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (33, "api.listen"));
        let e = parse_all("a.toml", &with("token_file = \"\"")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (33, "api.token_file"));
        let e = parse_all("a.toml", &with("port = 1")).unwrap_err();
        assert_eq!(e.line, 33);
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    #[test]
    fn dpdk_section_and_backends() {
        let src = format!(
            "{}\n[dpdk]\neal_args = [\"--no-huge\", \"-m\", \"512\"]\nqueues = 2\nclock = \"device\"\n",
            GOOD.replacen(
                "if_id = 10\n",
                "if_id = 10\nbackend = \"dpdk\"\ndpdk_port = \"net_pcap0\"\n",
                1
            )
            .replacen("if_id = 11\n", "if_id = 11\nbackend = \"dpdk\"\ndpdk_port = 1\n", 1)
        );
        let l = parse_all("d.toml", &src).unwrap();
        assert_eq!(
            l.backends,
            vec![
                PortBackend::Dpdk(DpdkPortRef::Name("net_pcap0".into())),
                PortBackend::Dpdk(DpdkPortRef::Id(1)),
            ]
        );
        let d = l.dpdk.unwrap();
        assert_eq!(d.eal_args, ["--no-huge", "-m", "512"]);
        assert_eq!(
            (d.queues, d.batch_size, d.clock),
            (2, 32, DpdkClockKind::Device)
        );
        let plain = parse_all("d.toml", GOOD).unwrap();
        assert_eq!(plain.dpdk, None);
        assert_eq!(plain.backends, vec![PortBackend::Unspecified; 2]);

        let refuse = |edit: (&str, &str)| {
            let bad = src.replacen(edit.0, edit.1, 1);
            assert_ne!(bad, src, "edit {edit:?} changed nothing");
            parse_all("d.toml", &bad).unwrap_err()
        };
        let e = refuse(("backend = \"dpdk\"", "backend = \"netmap\""));
        assert_eq!(
            e.to_string(),
            "d.toml:10: field `port.backend`: `netmap` is not a backend (afxdp or dpdk)"
        );
        let e = refuse(("dpdk_port = 1", "dpdk_port = 32"));
        assert_eq!((e.line, e.field.as_str()), (17, "port.dpdk_port"));
        assert_eq!(e.reason, "32 is out of range 0..=31");
        let e = refuse(("dpdk_port = \"net_pcap0\"\n", ""));
        assert_eq!((e.line, e.field.as_str()), (10, "port.dpdk_port"));
        assert!(e.reason.contains("no dpdk_port"), "{e}");
        let e = refuse(("backend = \"dpdk\"\ndpdk_port = 1", "dpdk_port = 1"));
        assert_eq!((e.line, e.field.as_str()), (16, "port.dpdk_port"));
        assert!(e.reason.contains("set backend = \"dpdk\""), "{e}");
        let e = refuse(("queues = 2", "queues = 0"));
        assert_eq!(
            e.to_string(),
            "d.toml:38: field `dpdk.queues`: 0 is out of range 1..=64"
        );
        let e = refuse(("clock = \"device\"", "clock = \"tsc\""));
        assert_eq!((e.line, e.field.as_str()), (39, "dpdk.clock"));
        let e = refuse(("queues = 2", "queues = 2\nhugepages = false"));
        assert_eq!(e.line, 39);
        assert!(e.reason.contains("unknown field"), "{e}");
    }

    #[test]
    fn port_queues() {
        let src = GOOD.replacen(
            "if_id = 11\n",
            "if_id = 11\n[port.queue]\nrate_mbps = 10\naqm = \"pie\"\ntarget_ms = 5\n",
            1,
        );
        let c = parse("q.toml", &src).unwrap();
        let q = c.ports[1].queue.as_ref().unwrap();
        assert_eq!(q.shaper, Some((10_000_000, 3000)));
        assert_eq!(q.limits.packets, 1000);
        let AqmConfig::Pie(p) = &q.aqm else {
            panic!("{q:?}")
        };
        assert_eq!((p.target, p.t_update), (5_000_000, 15_000_000));
        assert!(c.ports[0].queue.is_none());

        let red = GOOD.replacen(
            "if_id = 11\n",
            "if_id = 11\n[port.queue]\naqm = \"red\"\nmin_th = 30\nmax_th = 20\n",
            1,
        );
        let e = parse("q.toml", &red).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (17, "port.queue.max_th"), "{e}");
        let bad = GOOD.replacen(
            "if_id = 11\n",
            "if_id = 11\n[port.queue]\nrate_mbps = -1\n",
            1,
        );
        let e = parse("q.toml", &bad).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (15, "port.queue.rate_mbps"),
            "{e}"
        );
        let typo = GOOD.replacen(
            "if_id = 11\n",
            "if_id = 11\n[port.queue]\naqm = \"codel\"\n",
            1,
        );
        let e = parse("q.toml", &typo).unwrap_err();
        assert_eq!(e.line, 15, "{e}");
    }

    #[test]
    fn sum_encoding_refuses_a_fanout_that_reaches_the_gap() {
        let mut src = String::from(
            "[node]\nname = \"b\"\nnode_id = 32\nforwarding = \"route\"\n\
             [[port]]\nname = \"up\"\nif_id = 1\n",
        );
        let mut oil = Vec::new();
        for k in 0..4 {
            src += &format!("[[port]]\nname = \"b{k}\"\nif_id = {}\n", 10 + k);
            oil.push(format!("\"b{k}\""));
        }
        src += &format!(
            "[[mroute]]\nsource = \"2001:db8::1\"\ngroup = \"ff3e::1\"\niif = \"up\"\noil = [{}]\n\
             [[namespace]]\nid = 1\nrole = \"transit\"\nmode = \"per-hop\"\n\
             branch_encoding = \"sum\"\nsum_gap = 4\n",
            oil.join(", ")
        );
        let e = parse("b.toml", &src).unwrap_err();
        assert_eq!(e.field, "namespace.sum_gap");
        assert!(
            e.reason
                .contains("node 32 has a branch point with 4 branches")
                && e.reason.contains("gap 4"),
            "{e}"
        );
        let ok = src.replace("sum_gap = 4", "sum_gap = 8");
        let c = parse("b.toml", &ok).unwrap();
        assert_eq!(
            c.namespaces[0].dex.unwrap().encoding,
            mtnode_dataplane::branch::BranchEncoding::Sum { gap: 8 }
        );
        let odd = src.replace("sum_gap = 4", "sum_gap = 5");
        assert!(parse("b.toml", &odd)
            .unwrap_err()
            .reason
            .contains("not a multiple of the gap 5"));
    }

    #[test]
    fn prefixes_are_normalised() {
        let Some(AnyPrefix::V6(p)) = parse_prefix("2001:db8:ffff::1/33") else {
            panic!()
        };
        assert_eq!(&p.addr[..6], &[0x20, 0x01, 0x0d, 0xb8, 0x80, 0]);
        let Some(AnyPrefix::V4(p)) = parse_prefix("232.1.1.1/8") else {
            panic!()
        };
        assert_eq!(p.addr, [232, 0, 0, 0]);
        assert!(parse_prefix("232.1.1.1/33").is_none());
        assert!(parse_prefix("nonsense").is_none());
    }
}

//! The control API: HTTP/JSON on tokio (axum), loopback by default (DESIGN.md "Control API").
//!
//! It owns the running configuration document — the TOML file as a table — and validates every
//! change exactly like a file: a `PATCH /v1/config` body is merged into the document, the result
//! goes through [`config::parse_all`], and only a whole, valid configuration is published, as the
//! next epoch of the node's [`ConfigCell`]. The reply says when every worker runs it. Refused
//! changes (400 with the field and reason) leave the running config as it was. Mutating routes
//! need the bearer token (401 without, 403 wrong); bodies are size-limited (413).
//!
//! Routes: `GET /v1/config`, `PATCH /v1/config`, `POST /v1/reload`, `GET /v1/stats`,
//! `GET /metrics` (Prometheus text, names prefixed `mtnode_`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use hdrhistogram::Histogram;
pub use mtnode_dataplane::aqm::QueueStats;
use mtnode_dataplane::pipeline::{Counters, DropReason, NodeConfig};
use mtnode_dataplane::snapshot::ConfigCell;
use mtnode_dataplane::wire::Error as WireError;
use mtnode_dataplane::worker::LatencySummary;
use serde_json::{json, Map, Value};

use crate::config::{self, ConfigError, Loaded};

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a change may take to reach every worker before the reply says it has not yet.
const APPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the API needs from a running node (the live engine or a lab node).
pub trait Node: Send + Sync + 'static {
    /// Where new snapshots are published and workers acknowledge them.
    fn config_cell(&self) -> &Arc<ConfigCell>;
    /// Counters merged over the workers, now.
    fn stats(&self) -> NodeStats;
    /// Refuse what this node cannot change while it runs (the default, for every backend:
    /// ports, their interfaces, backends and DPDK ports, `[engine]`, `[dpdk]` and the API
    /// itself need a restart).
    fn check_live(&self, running: &Loaded, next: &Loaded) -> Result<(), ConfigError> {
        let names = |l: &Loaded| {
            l.node
                .ports
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        if names(running) != names(next) {
            return Err(live_error(
                "port",
                "ports cannot be added, removed or renamed while the node runs; restart it",
            ));
        }
        if running.live_ports != next.live_ports {
            return Err(live_error(
                "port.interface",
                "interfaces and queues change at restart",
            ));
        }
        if running.engine != next.engine {
            return Err(live_error(
                "engine",
                "the engine's settings change at restart",
            ));
        }
        if running.backends != next.backends {
            return Err(live_error(
                "port.dpdk_port",
                "backends and DPDK ports change at restart",
            ));
        }
        if running.dpdk != next.dpdk {
            return Err(live_error(
                "dpdk",
                "the EAL arguments and the DPDK node's settings change at restart",
            ));
        }
        if running.api != next.api {
            return Err(live_error(
                "api",
                "the API's address and token file change at restart",
            ));
        }
        Ok(())
    }
}

fn live_error(field: &str, reason: &str) -> ConfigError {
    ConfigError {
        file: "running node".into(),
        line: 0,
        field: field.into(),
        reason: reason.into(),
    }
}

/// A node's statistics at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    pub counters: Counters,
    /// Per port, in config order; empty where the node has no egress queues.
    pub queues: Vec<QueueStats>,
    pub latency: Option<LatencySummary>,
    pub workers: usize,
}

/// The running document and what it validated into.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Where `POST /v1/reload` reads from; `None` when the config did not come from a file.
    pub file: Option<PathBuf>,
    pub table: toml::Table,
    pub loaded: Loaded,
}

impl Doc {
    /// Read and validate a configuration file.
    pub fn from_file(path: &std::path::Path) -> Result<Doc, ConfigError> {
        let text = config::read(path)?;
        let loaded = config::load_text(path, &text)?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| live_error("-", e.message()))?;
        Ok(Doc {
            file: Some(path.to_path_buf()),
            table,
            loaded,
        })
    }

    /// Validate configuration text; `name` names it in errors.
    pub fn from_text(name: &str, text: &str) -> Result<Doc, ConfigError> {
        let loaded = config::parse_all(name, text)?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| live_error("-", e.message()))?;
        Ok(Doc {
            file: None,
            table,
            loaded,
        })
    }

    /// This document with `patch` merged in, validated; `self` is not changed.
    pub fn patched(&self, patch: &Value) -> Result<Doc, ApiError> {
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad("-", "the body must be a JSON object"));
        };
        let mut table = self.table.clone();
        merge_table(&mut table, patch, "")?;
        let text = toml::to_string(&table).map_err(|e| ApiError::bad("-", &e.to_string()))?;
        let mut loaded = config::parse_all("PATCH /v1/config", &text).map_err(ApiError::from)?;
        // An unchanged [api] keeps what the file's relative paths meant.
        if table.get("api") == self.table.get("api") {
            loaded.api.clone_from(&self.loaded.api);
        }
        Ok(Doc {
            file: self.file.clone(),
            table,
            loaded,
        })
    }
}

/// Arrays of tables that a patch merges element by element, by this key; any other array is
/// replaced whole.
const KEYED: [(&str, &str); 3] = [("namespace", "id"), ("port", "name"), ("bift", "bift_id")];

/// RFC 7396 merge of a JSON object into a TOML table (`null` removes a key), except that the
/// arrays named in [`KEYED`] merge by key: an element whose key exists is merged into it, a new
/// key is appended.
fn merge_table(
    t: &mut toml::Table,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    for (k, v) in patch {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(o) => match t.get_mut(k) {
                Some(toml::Value::Table(inner)) => merge_table(inner, o, &here)?,
                _ => {
                    let mut inner = toml::Table::new();
                    merge_table(&mut inner, o, &here)?;
                    t.insert(k.clone(), toml::Value::Table(inner));
                }
            },
            Value::Array(items) if path.is_empty() && KEYED.iter().any(|(n, _)| n == k) => {
                let key = KEYED
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, key)| *key)
                    .unwrap_or("id");
                let existing = t
                    .entry(k.clone())
                    .or_insert_with(|| toml::Value::Array(Vec::new()));
                let toml::Value::Array(existing) = existing else {
                    return Err(ApiError::bad(&here, "is not an array of tables"));
                };
                for item in items {
                    let Value::Object(o) = item else {
                        return Err(ApiError::bad(&here, "elements must be objects"));
                    };
                    let Some(id) = o.get(key) else {
                        return Err(ApiError::bad(
                            &format!("{here}.{key}"),
                            "name the element to change by its key",
                        ));
                    };
                    let id = to_toml(id, &here)?;
                    match existing.iter_mut().find_map(|e| match e {
                        toml::Value::Table(e) if e.get(key) == id.as_ref() => Some(e),
                        _ => None,
                    }) {
                        Some(e) => merge_table(e, o, &here)?,
                        None => {
                            let mut e = toml::Table::new();
                            merge_table(&mut e, o, &here)?;
                            existing.push(toml::Value::Table(e));
                        }
                    }
                }
            }
            other => match to_toml(other, &here)? {
                Some(v) => {
                    t.insert(k.clone(), v);
                }
                None => {
                    t.remove(k);
                }
            },
        }
    }
    Ok(())
}

/// A JSON value as TOML (`None` for null).
fn to_toml(v: &Value, path: &str) -> Result<Option<toml::Value>, ApiError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(ApiError::bad(path, &format!("{n} is out of range"))),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(
            a.iter()
                .map(|x| {
                    to_toml(x, path)?.ok_or_else(|| ApiError::bad(path, "null inside an array"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut t = toml::Table::new();
            merge_table(&mut t, o, path)?;
            toml::Value::Table(t)
        }
    }))
}

/// A refused request: its status and a JSON body naming the field and the reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: String,
    pub reason: String,
}

impl ApiError {
    fn bad(field: &str, reason: &str) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::bad(&e.field, &e.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.reason, "field": self.field});
        (self.status, Json(body)).into_response()
    }
}

/// The API's shared state.
struct Shared {
    node: Arc<dyn Node>,
    token: String,
    doc: tokio::sync::Mutex<Doc>,
    /// Microseconds from a change's publication to its being active on every worker.
    apply_us: Mutex<Histogram<u64>>,
    started: Instant,
}

/// A running API server (its own thread with a tokio runtime); stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read a token file: its first line, trimmed; it must not be empty.
pub fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("api.token_file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "api.token_file {}: empty",
        path.display()
    );
    Ok(token)
}

/// Serve the API for `node` on `listener` (bind it first: a test binds port 0), with `doc` as
/// the running document and `token` for mutating requests.
pub fn spawn(
    listener: std::net::TcpListener,
    node: Arc<dyn Node>,
    doc: Doc,
    token: String,
) -> Result<ApiServer> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        node,
        token,
        doc: tokio::sync::Mutex::new(doc),
        apply_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        started: Instant::now(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mtnode-api")
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("mtnode-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("api: {e}");
                        return;
                    }
                };
                tracing::info!(%addr, "control API listening");
                let served = axum::serve(listener, router(shared))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!("api: {e}");
                }
            });
        })?;
    Ok(ApiServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    let mutating = Router::new()
        .route("/v1/config", patch(patch_config))
        .route("/v1/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize));
    Router::new()
        .route("/v1/config", get(get_config))
        .route("/v1/stats", get(get_stats))
        .route("/metrics", get(metrics))
        .merge(mutating)
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                field: "-".into(),
                reason: "no such route".into(),
            }
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// 401 without a bearer token, 403 with the wrong one.
async fn authorize(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => {
            let mut r = ApiError {
                status: StatusCode::UNAUTHORIZED,
                field: "Authorization".into(),
                reason: "this request needs `Authorization: Bearer <token>`".into(),
            }
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("a literal header"),
            );
            r
        }
        Some(t) if !same_secret(t.as_bytes(), s.token.as_bytes()) => ApiError {
            status: StatusCode::FORBIDDEN,
            field: "Authorization".into(),
            reason: "wrong token".into(),
        }
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

/// Compare without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_config(State(s): State<Arc<Shared>>) -> Response {
    let doc = s.doc.lock().await;
    let config = serde_json::to_value(&doc.table).unwrap_or(Value::Null);
    Json(json!({"epoch": s.node.config_cell().epoch(), "config": config})).into_response()
}

async fn patch_config(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: "Content-Type".into(),
            reason: "send application/json".into(),
        }
        .into_response();
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return ApiError::bad("-", &format!("malformed JSON: {e}")).into_response(),
    };
    let mut doc = s.doc.lock().await;
    let next = match doc.patched(&patch) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(field = %e.field, reason = %e.reason, "config change refused");
            return e.into_response();
        }
    };
    apply(&s, &mut doc, next, "patch").await
}

async fn reload(State(s): State<Arc<Shared>>) -> Response {
    let mut doc = s.doc.lock().await;
    let Some(file) = doc.file.clone() else {
        return ApiError {
            status: StatusCode::CONFLICT,
            field: "-".into(),
            reason: "this node's config did not come from a file".into(),
        }
        .into_response();
    };
    let next = match tokio::task::spawn_blocking(move || Doc::from_file(&file)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::warn!(%e, "reload refused");
            return ApiError::from(e).into_response();
        }
        Err(e) => return ApiError::bad("-", &e.to_string()).into_response(),
    };
    apply(&s, &mut doc, next, "reload").await
}

/// Publish `next` as the next epoch, wait for every worker to run it, keep it as the document.
async fn apply(s: &Arc<Shared>, doc: &mut Doc, next: Doc, how: &str) -> Response {
    if let Err(e) = s.node.check_live(&doc.loaded, &next.loaded) {
        tracing::warn!(%e, "config change refused");
        let mut e = ApiError::from(e);
        e.status = StatusCode::CONFLICT;
        return e.into_response();
    }
    let cell = s.node.config_cell().clone();
    let node = next.loaded.node.clone();
    let published = Instant::now();
    let epoch = match cell.publish(|_| Ok::<NodeConfig, Infallible>(node)) {
        Ok(c) => c.epoch,
        Err(never) => match never {},
    };
    let waited = tokio::task::spawn_blocking(move || cell.wait_applied(epoch, APPLY_TIMEOUT)).await;
    let applied = matches!(waited, Ok(true));
    let apply_us = published.elapsed().as_micros() as u64;
    if applied {
        if let Ok(mut h) = s.apply_us.lock() {
            let _ = h.record(apply_us.max(1));
        }
    }
    tracing::info!(epoch, how, applied, apply_us, "config epoch published");
    *doc = next;
    Json(json!({"epoch": epoch, "applied": applied, "apply_us": apply_us})).into_response()
}

async fn get_stats(State(s): State<Arc<Shared>>) -> Response {
    let doc = s.doc.lock().await;
    let stats = s.node.stats();
    Json(stats_json(
        &doc.loaded.node,
        &stats,
        s.node.config_cell().epoch(),
        s.started.elapsed(),
    ))
    .into_response()
}

/// The managed egress queues by port name: depth and counters summed over ECN codepoints.
pub fn queues_json(cfg: &NodeConfig, queues: &[QueueStats]) -> Value {
    cfg.ports
        .iter()
        .zip(queues)
        .filter(|(p, _)| p.queue.is_some())
        .map(|(p, q)| {
            let k = &q.counters;
            (
                p.name.clone(),
                json!({
                    "depth": q.depth,
                    "enqueued": k.enqueued.iter().sum::<u64>(),
                    "dequeued": k.dequeued,
                    "ecn_marked": k.marked.iter().sum::<u64>(),
                    "early_drops": k.early_drops.iter().sum::<u64>(),
                    "overflow_drops": k.overflow_drops.iter().sum::<u64>(),
                }),
            )
        })
        .collect::<Map<String, Value>>()
        .into()
}

/// `GET /v1/stats`: the replay's `stats.json` keys plus epoch, queues, latency and postcards.
fn stats_json(cfg: &NodeConfig, st: &NodeStats, epoch: u32, up: Duration) -> Value {
    let c = &st.counters;
    let mut v = crate::replay::stats_json(cfg, c, 0);
    let obj = v.as_object_mut().expect("stats_json makes an object");
    obj.insert("epoch".into(), epoch.into());
    obj.insert("uptime_s".into(), up.as_secs_f64().into());
    obj.insert("workers".into(), st.workers.into());
    obj.insert("queues".into(), queues_json(cfg, &st.queues));
    obj.insert(
        "postcards".into(),
        json!({"exported": c.postcards_exported, "lost": c.postcards_lost, "suppressed": c.postcards_suppressed}),
    );
    obj.insert("replicas".into(), c.replicas.into());
    if let Some(l) = st.latency {
        obj.insert(
            "latency_ns".into(),
            json!({"count": l.count, "p50": l.p50_ns, "p90": l.p90_ns, "p99": l.p99_ns, "max": l.max_ns}),
        );
    }
    v
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let doc = s.doc.lock().await;
    let stats = s.node.stats();
    let apply = s.apply_us.lock().map(|h| h.clone()).ok();
    let text = prometheus_text(
        &doc.loaded.node,
        &stats,
        s.node.config_cell().epoch(),
        apply.as_ref(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Prometheus text exposition (format 0.0.4).
pub fn prometheus_text(
    cfg: &NodeConfig,
    st: &NodeStats,
    epoch: u32,
    apply_us: Option<&Histogram<u64>>,
) -> String {
    let c = &st.counters;
    let mut m = Metrics(String::new());
    m.one(
        "packets_in_total",
        "counter",
        "Packets received.",
        c.packets_in,
    );
    m.one(
        "packets_out_total",
        "counter",
        "Packets sent, replicas included.",
        c.packets_out,
    );
    m.one("bytes_in_total", "counter", "Octets received.", c.bytes_in);
    m.one("bytes_out_total", "counter", "Octets sent.", c.bytes_out);
    m.head(
        "ioam_packets_total",
        "counter",
        "Packets by the IOAM role the node took.",
    );
    for (role, n) in [
        ("encap", c.encap),
        ("transit", c.transit),
        ("decap", c.decap),
        ("none", c.passthrough),
    ] {
        m.line("ioam_packets_total", &[("role", role)], n);
    }
    m.one(
        "ioam_overflow_total",
        "counter",
        "Traces with no room left for this node.",
        c.overflow,
    );
    m.one(
        "replicas_total",
        "counter",
        "Copies made beyond the first.",
        c.replicas,
    );
    m.head("dropped_total", "counter", "Packets dropped, by reason.");
    for r in DropReason::ALL {
        m.line(
            "dropped_total",
            &[("reason", r.name())],
            c.dropped[r as usize],
        );
    }
    m.head(
        "malformed_total",
        "counter",
        "Malformed packets, by reason.",
    );
    for e in WireError::ALL {
        m.line(
            "malformed_total",
            &[("reason", e.reason())],
            c.malformed[e.index()],
        );
    }
    m.head("tx_packets_total", "counter", "Packets sent, by port.");
    for (i, p) in cfg.ports.iter().enumerate() {
        m.line("tx_packets_total", &[("port", &p.name)], c.tx_by_port[i]);
    }
    let ports = || cfg.ports.iter().zip(&st.queues);
    m.head(
        "queue_depth_packets",
        "gauge",
        "Packets in the egress queue.",
    );
    for (p, q) in ports() {
        m.line("queue_depth_packets", &[("port", &p.name)], q.depth as u64);
    }
    m.head(
        "ecn_marked_total",
        "counter",
        "Packets the AQM marked CE, by port.",
    );
    for (p, q) in ports() {
        m.line(
            "ecn_marked_total",
            &[("port", &p.name)],
            q.counters.marked.iter().sum(),
        );
    }
    m.head(
        "queue_drops_total",
        "counter",
        "Packets the egress queue dropped, by port and cause.",
    );
    for (p, q) in ports() {
        m.line(
            "queue_drops_total",
            &[("port", &p.name), ("cause", "aqm")],
            q.counters.early_drops.iter().sum(),
        );
        m.line(
            "queue_drops_total",
            &[("port", &p.name), ("cause", "overflow")],
            q.counters.overflow_drops.iter().sum(),
        );
    }
    m.one(
        "postcards_exported_total",
        "counter",
        "Postcards handed to the exporter.",
        c.postcards_exported,
    );
    m.one(
        "postcards_lost_total",
        "counter",
        "Postcards lost to a full ring.",
        c.postcards_lost,
    );
    m.one(
        "postcards_suppressed_total",
        "counter",
        "Postcards the export-rate cap held back.",
        c.postcards_suppressed,
    );
    m.one(
        "config_epoch",
        "gauge",
        "The running configuration's epoch.",
        epoch as u64,
    );
    m.one("workers", "gauge", "Worker threads.", st.workers as u64);
    if let Some(l) = st.latency {
        m.head("forward_latency_seconds", "summary", "RX to TX latency.");
        for (q, v) in [("0.5", l.p50_ns), ("0.9", l.p90_ns), ("0.99", l.p99_ns)] {
            m.float(
                "forward_latency_seconds",
                &[("quantile", q)],
                v as f64 / 1e9,
            );
        }
        m.float(
            "forward_latency_seconds_sum",
            &[],
            l.mean_ns * l.count as f64 / 1e9,
        );
        m.line("forward_latency_seconds_count", &[], l.count);
    }
    if let Some(h) = apply_us.filter(|h| !h.is_empty()) {
        m.head(
            "config_apply_seconds",
            "summary",
            "From publishing a config epoch to every worker running it.",
        );
        for q in ["0.5", "0.99"] {
            let v = h.value_at_quantile(q.parse().unwrap_or(0.5));
            m.float("config_apply_seconds", &[("quantile", q)], v as f64 / 1e6);
        }
        m.float(
            "config_apply_seconds_sum",
            &[],
            h.mean() * h.len() as f64 / 1e6,
        );
        m.line("config_apply_seconds_count", &[], h.len());
    }
    m.0
}

/// Builds exposition text; every name gets the `mtnode_` prefix.
struct Metrics(String);

impl Metrics {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP mtnode_{name} {help}\n# TYPE mtnode_{name} {kind}"
        );
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        self.line(name, &[], v);
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        let _ = write!(self.0, "mtnode_{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {v}");
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {v}");
    }
}

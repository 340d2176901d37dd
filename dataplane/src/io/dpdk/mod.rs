//! The DPDK backend: EAL start and clean-up ([`Eal`]), mbuf pools ([`Mempool`]), ethdev ports
//! ([`EthPort`]), mbuf-backed frame buffers ([`Mbuf`]) and one worker's view of its queue on
//! every port ([`QueueIo`]: receive a burst into a batch, send, allocate replicas, flush).
//!
//! It owns every unsafe line of the DPDK path and nothing else: no pipeline logic, no clock.
//! DPDK's burst and mbuf calls are `static inline` in C, so they go through `shim.c`; the other
//! calls through bindings that build.rs generates from the installed headers.
//!
//! Headroom. The pipeline wants [`HEADROOM`] octets in front of a received frame (the largest
//! IOAM insertion), but a PMD receives at `RTE_PKTMBUF_HEADROOM` (128 in Debian's build) from
//! the start of the mbuf's data buffer, a compile-time constant of the DPDK build. Our pools
//! give every mbuf an application-private area of [`PRIV`] octets, which DPDK places directly
//! in front of the data buffer; an [`Mbuf`]'s byte view starts at that private area, so a
//! received frame sits at `PRIV + 128 = HEADROOM` in it, exactly where [`Frame::from_bytes`]
//! puts a frame in any other buffer. An insertion that grows the frame into the private area
//! (more than 128 octets) is moved to the data buffer's start when it is sent, the only copy on
//! that path; transit and decapsulation never move a frame.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::frame::{Frame, HEADROOM};
use crate::io::MAX_FRAME;
use crate::pipeline::{Packet, Verdict};

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
mod sys {
    /// Only ever behind a pointer; its fields are read and written by the shim.
    #[repr(C)]
    pub struct rte_mbuf {
        _opaque: [u8; 0],
    }
    /// Only ever behind a pointer.
    #[repr(C)]
    pub struct rte_mempool {
        _opaque: [u8; 0],
    }
    include!(concat!(env!("OUT_DIR"), "/dpdk_bindings.rs"));
}

/// Octets of each mbuf's private area, in front of its data buffer: with DPDK's own headroom
/// they make [`HEADROOM`]. A multiple of 8 (`RTE_MBUF_PRIV_ALIGN`).
pub const PRIV: usize = (HEADROOM.saturating_sub(128) + 7) & !7;

/// `sizeof(struct rte_mbuf)` (opaque to the bindings), asked of the shim once per process.
fn mbuf_header() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: plain constant read through the shim.
    *SIZE.get_or_init(|| unsafe { sys::mtn_mbuf_struct_size() } as usize)
}

/// Most packets one [`QueueIo::rx`] call takes from one port.
pub const MAX_BURST: usize = 256;

/// What went wrong, in words that name the DPDK call and its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    #[error("DPDK EAL: {0}")]
    Eal(String),
    #[error("DPDK port: {0}")]
    Port(String),
    #[error("DPDK mempool: {0}")]
    Mempool(String),
}

fn strerror(errno: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string
    // for any value; we copy it out before any other DPDK call on this thread.
    let s = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) };
    s.to_string_lossy().into_owned()
}

fn errno() -> c_int {
    // SAFETY: reads DPDK's per-lcore errno; valid on any thread.
    unsafe { sys::mtn_errno() }
}

/// Set once the EAL has been initialised in this process: DPDK allows that only once, even
/// after `rte_eal_cleanup`.
static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The initialised DPDK environment. Dropping it runs `rte_eal_cleanup`; ports and pools borrow
/// it, so they are gone by then.
#[derive(Debug)]
pub struct Eal {
    /// `rte_eal_cleanup` must run on the thread that initialised the EAL.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `Eal` is only shared (`&Eal`) with worker threads, which use it as a token that the
// EAL is up; every call it makes through `&self` (thread registration) is thread-safe. Its
// `Drop` still runs on the owning thread because `Eal` is not `Send`.
unsafe impl Sync for Eal {}

impl Eal {
    /// Initialise the EAL with `args` (without the program name). Fails with DPDK's reason
    /// (bad arguments, no memory, no device), never exits the process; a second call in the
    /// same process fails, since DPDK cannot initialise twice.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::Eal(
                "already initialised in this process (DPDK allows one rte_eal_init per process)"
                    .into(),
            ));
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("mtnode").expect("no NUL"));
        for a in args {
            owned.push(
                CString::new(a.as_str())
                    .map_err(|_| DpdkError::Eal(format!("argument {a:?} contains a NUL")))?,
            );
        }
        // The EAL may keep pointers into argv (device arguments) and getopt permutes the
        // pointer array: both live for the rest of the process.
        let owned: &'static [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .iter()
                .map(|s| s.as_ptr() as *mut c_char)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = (argv.len() - 1) as c_int;
        // SAFETY: argv holds argc pointers to NUL-terminated strings and a final NULL, all
        // leaked so they outlive the EAL; this is the process's only rte_eal_init (EAL_STARTED).
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let e = errno();
            return Err(DpdkError::Eal(format!(
                "rte_eal_init failed: {} (errno {e}; arguments {args:?})",
                strerror(e)
            )));
        }
        Ok(Eal {
            _not_send: PhantomData,
        })
    }

    /// Ports DPDK probed (physical and `--vdev`).
    pub fn port_count(&self) -> u16 {
        // SAFETY: the EAL is initialised (self exists).
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// Every probed port's name, by port ID.
    pub fn port_names(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for id in 0..sys::RTE_MAX_ETHPORTS as u16 {
            // SAFETY: the EAL is initialised; any port ID may be asked about.
            if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
                continue;
            }
            let mut name = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: `name` has RTE_ETH_NAME_MAX_LEN bytes, the most DPDK writes with the NUL.
            if unsafe { sys::rte_eth_dev_get_name_by_port(id, name.as_mut_ptr()) } == 0 {
                // SAFETY: DPDK wrote a NUL-terminated name into `name`.
                let s = unsafe { CStr::from_ptr(name.as_ptr()) };
                out.push((id, s.to_string_lossy().into_owned()));
            }
        }
        out
    }

    /// Resolve a port by ID or by device name (`net_pcap0`, `0000:01:00.0`).
    pub fn find_port(&self, spec: &PortSpec) -> Result<u16, DpdkError> {
        let known = || {
            let names = self.port_names();
            if names.is_empty() {
                "DPDK found no ports at all (no --vdev, and no NIC bound to a DPDK driver)".into()
            } else {
                let list: Vec<String> = names.iter().map(|(i, n)| format!("{i}={n}")).collect();
                format!("ports: {}", list.join(", "))
            }
        };
        match spec {
            PortSpec::Id(id) => {
                // SAFETY: the EAL is initialised; any port ID may be asked about.
                if unsafe { sys::rte_eth_dev_is_valid_port(*id) } == 0 {
                    return Err(DpdkError::Port(format!("no DPDK port {id}; {}", known())));
                }
                Ok(*id)
            }
            PortSpec::Name(name) => {
                let c = CString::new(name.as_str())
                    .map_err(|_| DpdkError::Port(format!("port name {name:?} contains a NUL")))?;
                let mut id = 0u16;
                // SAFETY: `c` is NUL-terminated and `id` a valid place for the result.
                let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
                if rc != 0 {
                    return Err(DpdkError::Port(format!(
                        "no DPDK port named `{name}`; {}",
                        known()
                    )));
                }
                Ok(id)
            }
        }
    }

    /// Give the calling (non-EAL) thread an lcore ID, so that it gets its own mempool caches;
    /// undone when the registration drops. `None` when every lcore ID is taken (the thread then
    /// runs without caches).
    pub fn register_thread(&self) -> Option<ThreadRegistration<'_>> {
        // SAFETY: the EAL is initialised; registering the calling thread is allowed any time.
        let rc = unsafe { sys::rte_thread_register() };
        (rc == 0).then_some(ThreadRegistration {
            _eal: PhantomData,
            _not_send: PhantomData,
        })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: the EAL is initialised; the returned string is its own, valid until cleanup,
        // and copied out before.
        let runtime_dir = unsafe {
            let p = sys::rte_eal_get_runtime_dir();
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        // SAFETY: ports and pools borrow the Eal and are dropped; no worker thread is left
        // (they borrow it too), so nothing uses DPDK any more.
        unsafe {
            sys::rte_eal_cleanup();
        }
        // The EAL leaves its runtime directory (/var/run/dpdk/<file prefix>) behind, empty
        // under --no-shconf; one per run would pile up. Only an empty one is removed.
        if let Some(dir) = runtime_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A worker thread's lcore ID; `rte_thread_unregister` when dropped on that thread.
#[derive(Debug)]
pub struct ThreadRegistration<'e> {
    _eal: PhantomData<&'e Eal>,
    _not_send: PhantomData<*const ()>,
}

impl ThreadRegistration<'_> {
    pub fn lcore_id(&self) -> u32 {
        // SAFETY: reads the calling thread's lcore ID.
        unsafe { sys::mtn_lcore_id() }
    }
}

impl Drop for ThreadRegistration<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread registered (the value is !Send) and the EAL outlives us.
        unsafe { sys::rte_thread_unregister() }
    }
}

/// Which DPDK port: its ID, or its device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Id(u16),
    Name(String),
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Id(i) => write!(f, "{i}"),
            PortSpec::Name(n) => f.write_str(n),
        }
    }
}

/// A pool of mbufs laid out for the pipeline: [`PRIV`] private octets, then a data buffer of
/// `RTE_PKTMBUF_HEADROOM + MAX_FRAME`.
#[derive(Debug)]
pub struct Mempool<'e> {
    pool: NonNull<sys::rte_mempool>,
    size: u32,
    data_room: u16,
    _eal: PhantomData<&'e Eal>,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer: any thread may get and put mbufs
// concurrently; the pointer itself is never written after creation.
unsafe impl Send for Mempool<'_> {}
// SAFETY: as for Send: every operation through `&Mempool` is one of DPDK's thread-safe calls.
unsafe impl Sync for Mempool<'_> {}

impl<'e> Mempool<'e> {
    /// A pool of `count` mbufs on `socket` (-1: any) with a per-lcore cache of `cache`.
    pub fn new(
        eal: &'e Eal,
        name: &str,
        count: u32,
        cache: u32,
        socket: i32,
    ) -> Result<Mempool<'e>, DpdkError> {
        let _ = eal;
        // SAFETY: plain constant reads through the shim.
        let headroom = unsafe { sys::mtn_pktmbuf_headroom() } as usize;
        let data_room = (headroom + MAX_FRAME) as u16;
        let c = CString::new(name)
            .map_err(|_| DpdkError::Mempool(format!("pool name {name:?} contains a NUL")))?;
        // SAFETY: the EAL is initialised (`eal`), `c` is NUL-terminated; DPDK copies the name.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(c.as_ptr(), count, cache, PRIV as u16, data_room, socket)
        };
        let Some(pool) = NonNull::new(pool) else {
            let e = errno();
            return Err(DpdkError::Mempool(format!(
                "rte_pktmbuf_pool_create({name}, {count} mbufs of {} octets) failed: {} \
                 (without hugepages, give EAL more memory: -m 512)",
                data_room as usize + PRIV,
                strerror(e)
            )));
        };
        let pool = Mempool {
            pool,
            size: count,
            data_room,
            _eal: PhantomData,
        };
        // The private-area trick relies on DPDK's layout: check it once on a real mbuf.
        let m = pool
            .alloc()
            .ok_or_else(|| DpdkError::Mempool(format!("pool {name} is empty after creation")))?;
        if m.priv_len as usize != PRIV || m.len as usize != PRIV + data_room as usize {
            return Err(DpdkError::Mempool(format!(
                "unexpected mbuf layout in pool {name}: private area {} octets, view {}",
                m.priv_len, m.len
            )));
        }
        drop(m);
        Ok(pool)
    }

    /// An mbuf reset to DPDK's headroom (its frame at [`HEADROOM`] of the view), or `None`
    /// when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf<'_>> {
        // SAFETY: the pool is alive (borrowed for the Mbuf's lifetime).
        let m = NonNull::new(unsafe { sys::mtn_pktmbuf_alloc(self.pool.as_ptr()) })?;
        let mut info = sys::mtn_mbuf_info::default();
        // SAFETY: `m` is a valid mbuf we own; `info` has room for one record; no timestamp.
        unsafe { sys::mtn_mbuf_info(&m.as_ptr(), 1, &mut info, -1, 0) };
        // SAFETY: a freshly allocated direct mbuf of this pool, owned by nobody else.
        Some(unsafe { Mbuf::from_info(m, &info) })
    }

    /// Mbufs currently out of the pool (in rings, in flight, in caches not counted).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive.
        unsafe { sys::rte_mempool_in_use_count(self.pool.as_ptr()) }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn data_room(&self) -> u16 {
        self.data_room
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        // SAFETY: every Mbuf and EthPort borrowing this pool is gone (lifetimes), so no mbuf of
        // it is referenced any more; the pool is freed exactly once.
        unsafe { sys::rte_mempool_free(self.pool.as_ptr()) }
    }
}

/// An mbuf as a frame buffer: its bytes are the private area followed by the data buffer
/// (see the module documentation), and dropping it returns it to its pool.
#[derive(Debug)]
pub struct Mbuf<'p> {
    m: NonNull<sys::rte_mbuf>,
    /// Start of the view: the private area, or the data buffer for foreign mbufs.
    base: NonNull<u8>,
    len: u32,
    /// Octets of the view in front of the data buffer.
    priv_len: u16,
    _pool: PhantomData<&'p Mempool<'p>>,
}

impl Mbuf<'_> {
    /// # Safety
    /// `m` must be a valid, direct, single-segment mbuf that the caller owns exclusively (not
    /// shared, not in any ring), described by `info`, whose pool outlives `'p`.
    unsafe fn from_info(m: NonNull<sys::rte_mbuf>, info: &sys::mtn_mbuf_info) -> Self {
        let ours = m.as_ptr() as usize + mbuf_header() + PRIV;
        let priv_len = if info.buf_addr as usize == ours {
            PRIV as u16
        } else {
            0
        };
        // SAFETY: buf_addr is the mbuf's data buffer and the private area of PRIV octets
        // precedes it when buf_addr is where our pools put it (checked just above).
        let base = unsafe { info.buf_addr.sub(priv_len as usize) };
        Mbuf {
            m,
            base: NonNull::new(base).expect("an mbuf's buffer is not null"),
            len: priv_len as u32 + info.buf_len as u32,
            priv_len,
            _pool: PhantomData,
        }
    }

    /// Hand the mbuf to DPDK (for transmission) with its frame at `data_off`, `len` octets.
    fn into_raw(self) -> *mut sys::rte_mbuf {
        let m = self.m.as_ptr();
        std::mem::forget(self);
        m
    }
}

impl AsRef<[u8]> for Mbuf<'_> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `base..base + len` is the mbuf's private area and data buffer, memory of the
        // mbuf we own exclusively; it lives until the mbuf returns to its pool (after self).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len as usize) }
    }
}

impl AsMut<[u8]> for Mbuf<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for as_ref; `&mut self` makes this the only view of those bytes.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len as usize) }
    }
}

impl Drop for Mbuf<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf exclusively; it goes back to its pool exactly once.
        unsafe { sys::mtn_pktmbuf_free(self.m.as_ptr()) }
    }
}

/// Settings for opening a port.
#[derive(Debug, Clone)]
pub struct PortSetup {
    /// RX and TX queues to configure (one worker per queue).
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Ask the device to timestamp received packets (the node's clock is then the device's).
    pub rx_timestamp: bool,
}

/// A started ethdev port; stopped and closed when dropped. Borrows the pools its RX queues
/// take mbufs from, so it closes (returning those mbufs) before they are freed.
#[derive(Debug)]
pub struct EthPort<'p> {
    id: u16,
    name: String,
    _pools: PhantomData<&'p Mempool<'p>>,
}

impl<'p> EthPort<'p> {
    /// Configure `setup.queues` RX/TX queue pairs (RX queue q takes mbufs from `pools[q]`) and
    /// start the port.
    pub fn open(
        eal: &Eal,
        spec: &PortSpec,
        setup: &PortSetup,
        pools: &[&'p Mempool<'p>],
    ) -> Result<EthPort<'p>, DpdkError> {
        let id = eal.find_port(spec)?;
        if pools.len() != setup.queues as usize || setup.queues == 0 {
            return Err(DpdkError::Port(format!(
                "port {spec}: {} queues need as many pools, got {}",
                setup.queues,
                pools.len()
            )));
        }
        let raw: Vec<*mut sys::rte_mempool> = pools.iter().map(|p| p.pool.as_ptr()).collect();
        let mut err = [0 as c_char; 256];
        // SAFETY: the EAL is up, `id` is a valid port, `raw` holds `queues` live pools that
        // outlive the port ('p), and `err` has the length we pass.
        let rc = unsafe {
            sys::mtn_port_setup(
                id,
                setup.queues,
                setup.rx_desc,
                setup.tx_desc,
                raw.as_ptr(),
                setup.rx_timestamp as c_int,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        let name = eal
            .port_names()
            .into_iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| spec.to_string(), |(_, n)| n);
        if rc != 0 {
            // SAFETY: the shim wrote a NUL-terminated message into `err` (snprintf).
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
            // Undo a partial configuration so the port can be closed cleanly at exit.
            // SAFETY: valid port; stop and close tolerate a port that never started.
            unsafe {
                sys::rte_eth_dev_stop(id);
                sys::rte_eth_dev_close(id);
            }
            return Err(DpdkError::Port(format!("{name}: {msg}")));
        }
        Ok(EthPort {
            id,
            name,
            _pools: PhantomData,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's own counters.
    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid started port, `s` a valid place for the result.
        let rc = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        if rc != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        }
    }
}

impl Drop for EthPort<'_> {
    fn drop(&mut self) {
        // SAFETY: no worker polls the port any more (workers borrow it); the port was started
        // by `open` and is stopped and closed exactly once, which frees its rings' mbufs back
        // to the pools, still alive ('p).
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}

/// A port's device counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_no_mbuf: u64,
}

/// Where a received packet's `rx_ns` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxClock {
    /// The batch's clock reading, taken once per batch by the worker.
    Batch(u64),
    /// The device's RX timestamp (`RTE_ETH_RX_OFFLOAD_TIMESTAMP`), times `scale` to make ns;
    /// `fallback` (the poll's clock reading) for a packet the device did not stamp.
    Device { scale: u64, fallback: u64 },
}

/// One worker's counters of what the backend did with frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub rx: u64,
    pub tx: u64,
    /// Frames the device would not take (TX ring full), freed.
    pub tx_dropped: u64,
    /// Received mbufs the pipeline cannot take (chained or shared), freed.
    pub rx_unusable: u64,
    /// Frames that grew into the private area and were moved to the buffer's start on send.
    pub relocated: u64,
    /// Replica allocations that found the pool empty.
    pub alloc_failed: u64,
    /// With the device clock: packets the device did not stamp (given the poll's clock).
    pub unstamped: u64,
}

struct TxStage {
    port: u16,
    mbufs: Vec<*mut sys::rte_mbuf>,
    data_off: Vec<u16>,
    data_len: Vec<u16>,
}

/// One worker's queue `queue` on every port of the node, and the pool its replicas come from.
/// The node's port `i` is `ports[i]`; a node port with no DPDK port (`None`) drops what is
/// sent to it.
pub struct QueueIo<'p> {
    queue: u16,
    /// Per node port: the DPDK port ID.
    ports: Vec<Option<u16>>,
    pool: &'p Mempool<'p>,
    tx: Vec<Option<TxStage>>,
    burst: Vec<*mut sys::rte_mbuf>,
    info: Vec<sys::mtn_mbuf_info>,
    ts_offset: c_int,
    ts_flag: u64,
    /// Mbufs this worker holds (received or allocated, not yet sent or freed).
    held: u32,
    pub counters: QueueCounters,
    /// Frames sent to a node port that has no DPDK port.
    pub no_port: u64,
}

impl std::fmt::Debug for QueueIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueIo")
            .field("queue", &self.queue)
            .field("ports", &self.ports)
            .field("counters", &self.counters)
            .finish()
    }
}

impl<'p> QueueIo<'p> {
    /// `ports[i]` is the started port for the node's port `i`; each TX stage holds `tx_burst`
    /// frames before it is flushed on its own.
    pub fn new(
        queue: u16,
        ports: &[Option<&EthPort<'p>>],
        pool: &'p Mempool<'p>,
        tx_burst: usize,
        rx_timestamp: bool,
    ) -> Result<Self, DpdkError> {
        let (mut ts_offset, mut ts_flag) = (-1 as c_int, 0u64);
        if rx_timestamp {
            // SAFETY: valid out-pointers; registering the (shared, named) dynamic field is
            // idempotent: the PMD registered the same one when the offload was enabled.
            let rc =
                unsafe { sys::rte_mbuf_dyn_rx_timestamp_register(&mut ts_offset, &mut ts_flag) };
            if rc != 0 {
                return Err(DpdkError::Port(format!(
                    "registering the RX timestamp field: {}",
                    strerror(errno())
                )));
            }
        }
        let tx_burst = tx_burst.clamp(1, MAX_BURST);
        Ok(QueueIo {
            queue,
            ports: ports.iter().map(|p| p.map(|p| p.id)).collect(),
            pool,
            tx: ports
                .iter()
                .map(|p| {
                    p.map(|p| TxStage {
                        port: p.id,
                        mbufs: Vec::with_capacity(tx_burst),
                        data_off: Vec::with_capacity(tx_burst),
                        data_len: Vec::with_capacity(tx_burst),
                    })
                })
                .collect(),
            burst: vec![std::ptr::null_mut(); MAX_BURST],
            info: vec![sys::mtn_mbuf_info::default(); MAX_BURST],
            ts_offset,
            ts_flag,
            held: 0,
            counters: QueueCounters::default(),
            no_port: 0,
        })
    }

    /// Receive up to `max` packets from each port into `batch`, stamped by `clock`; returns how
    /// many were added.
    pub fn rx(&mut self, max: usize, clock: RxClock, batch: &mut Vec<Packet<Mbuf<'p>>>) -> usize {
        let max = max.clamp(1, MAX_BURST) as u16;
        let mut added = 0;
        for (node_port, id) in self.ports.iter().enumerate() {
            let Some(id) = *id else { continue };
            // SAFETY: `id` is a started port with queue `self.queue`, polled by this worker
            // only; `burst` has room for `max` pointers.
            let n = unsafe { sys::mtn_rx_burst(id, self.queue, self.burst.as_mut_ptr(), max) };
            if n == 0 {
                continue;
            }
            // SAFETY: the first `n` entries of `burst` are mbufs DPDK just handed us; `info`
            // has room for `n` records.
            unsafe {
                sys::mtn_mbuf_info(
                    self.burst.as_ptr(),
                    n,
                    self.info.as_mut_ptr(),
                    self.ts_offset,
                    self.ts_flag,
                )
            };
            self.counters.rx += n as u64;
            for k in 0..n as usize {
                let m = NonNull::new(self.burst[k]).expect("rx_burst returns mbufs");
                let info = &self.info[k];
                if info.plain == 0 {
                    self.counters.rx_unusable += 1;
                    // SAFETY: we own the received mbuf; freed once, never used again.
                    unsafe { sys::mtn_pktmbuf_free(m.as_ptr()) };
                    continue;
                }
                // SAFETY: a received direct, single-segment, unshared mbuf (checked by the
                // shim), now ours; its pool is one of the port's, alive for 'p.
                let buf = unsafe { Mbuf::from_info(m, info) };
                let head = buf.priv_len as usize + info.data_off as usize;
                let frame = Frame::new(buf, head, info.data_len as usize);
                let rx_ns = match clock {
                    RxClock::Batch(now) => now,
                    RxClock::Device { scale, fallback } => {
                        if info.stamped != 0 {
                            info.timestamp.wrapping_mul(scale)
                        } else {
                            self.counters.unstamped += 1;
                            fallback
                        }
                    }
                };
                self.held += 1;
                batch.push(Packet {
                    frame,
                    rx_port: node_port as u16,
                    rx_ns,
                    verdict: Verdict::Pending,
                });
                added += 1;
            }
        }
        added
    }

    /// A buffer for a replica, from this worker's pool.
    pub fn alloc(&mut self) -> Option<Mbuf<'p>> {
        match self.pool.alloc() {
            Some(m) => {
                self.held += 1;
                Some(m)
            }
            None => {
                self.counters.alloc_failed += 1;
                None
            }
        }
    }

    /// Give a buffer back to the pool.
    pub fn free(&mut self, buf: Mbuf<'p>) {
        self.held = self.held.saturating_sub(1);
        drop(buf);
    }

    /// Stage `frame` for transmission on the node's port `port`; sent by the next
    /// [`flush`](Self::flush), or now if the port's stage is full. False if the port has no
    /// DPDK port (the frame is freed).
    pub fn send(&mut self, port: u16, frame: Frame<Mbuf<'p>>) -> bool {
        let Some(Some(stage)) = self.tx.get_mut(port as usize) else {
            self.no_port += 1;
            self.free(frame.into_buf());
            return false;
        };
        let (head, len) = (frame.head(), frame.len());
        let mut buf = frame.into_buf();
        let p = buf.priv_len as usize;
        let data_off = if head >= p {
            head - p
        } else {
            // The frame grew into the private area, which DPDK cannot address: move it to the
            // data buffer's start (it fits: a frame is never longer than the data buffer).
            buf.as_mut().copy_within(head..head + len, p);
            self.counters.relocated += 1;
            0
        };
        stage.mbufs.push(buf.into_raw());
        stage.data_off.push(data_off as u16);
        stage.data_len.push(len as u16);
        self.held = self.held.saturating_sub(1);
        if stage.mbufs.len() == stage.mbufs.capacity() {
            Self::flush_stage(self.queue, stage, &mut self.counters);
        }
        true
    }

    /// Transmit every staged frame; what the device does not take is freed and counted.
    pub fn flush(&mut self) {
        for stage in self.tx.iter_mut().flatten() {
            Self::flush_stage(self.queue, stage, &mut self.counters);
        }
    }

    fn flush_stage(queue: u16, stage: &mut TxStage, counters: &mut QueueCounters) {
        let n = stage.mbufs.len();
        if n == 0 {
            return;
        }
        // SAFETY: the port is started with TX queue `queue`, used by this worker only; the
        // arrays hold `n` mbufs we own and their offsets and lengths, which lie inside each
        // mbuf's data buffer (checked by Frame against the buffer and by `send`).
        let sent = unsafe {
            sys::mtn_tx_burst(
                stage.port,
                queue,
                stage.mbufs.as_mut_ptr(),
                stage.data_off.as_ptr(),
                stage.data_len.as_ptr(),
                n as u16,
            )
        } as usize;
        counters.tx += sent as u64;
        if sent < n {
            counters.tx_dropped += (n - sent) as u64;
            // SAFETY: the mbufs past `sent` were not taken by the device and are still ours.
            unsafe {
                sys::rte_pktmbuf_free_bulk(
                    stage.mbufs.as_mut_ptr().add(sent),
                    (n - sent) as std::ffi::c_uint,
                )
            };
        }
        stage.mbufs.clear();
        stage.data_off.clear();
        stage.data_len.clear();
    }

    /// Mbufs this worker holds right now: the pipeline's buffer occupancy.
    pub fn held(&self) -> u32 {
        self.held
    }
}

impl Drop for QueueIo<'_> {
    fn drop(&mut self) {
        // Staged frames leave rather than leak.
        self.flush();
    }
}

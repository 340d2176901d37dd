//! Live ports on AF_XDP sockets (xsk-rs over libxdp): one socket per (port, queue), and one UMEM
//! shared by all the sockets of a worker, so that forwarding hands a frame from one port's RX
//! ring to another port's TX ring without copying it. A replica is the only copy the data path
//! makes, into a free frame of the same UMEM.
//!
//! Frame ownership is explicit and counted: every UMEM frame is at any time in exactly one of
//! the free list, a kernel ring (fill/RX, or TX/completion), or one [`UmemBuf`] lent to the
//! pipeline. [`XskSet::close`] waits for outstanding transmissions and reports the accounting,
//! which balances unless a frame was lost.
//!
//! Layout of a frame (4096 octets, aligned mode): `UMEM_HEADROOM` octets of user headroom, the
//! kernel's `XDP_PACKET_HEADROOM` (256), then the packet. The two add up to
//! [`HEADROOM`](crate::frame::HEADROOM), so a received frame can take the largest IOAM
//! insertion in front of it, as a pool buffer can.
//!
//! xsk-rs hands out frame descriptors whose address cannot be changed from outside the crate,
//! so a packet is always sent from where its descriptor says it starts. When the pipeline moved
//! the start of a frame (encapsulation grows it into the headroom, decapsulation shrinks it),
//! [`XskSet::send`] moves the frame back to that address within its own UMEM frame before
//! queueing it (`relocated` counts these). Transit and plain forwarding move nothing.
//!
//! This is the only module of the crate with unsafe code: UMEM memory shared with the kernel and
//! xsk-rs's ring calls, whose contract is that a frame is never in a ring and in use at once.

use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::frame::{Frame, HEADROOM};
use crate::pipeline::{Packet, Verdict, MAX_PORTS};

/// Octets per UMEM frame: a power of two (aligned mode), room for headroom plus a
/// [`MAX_FRAME`](super::MAX_FRAME) packet.
pub const FRAME_SIZE: usize = 4096;
/// The kernel's headroom in front of every received packet (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// The user headroom asked of the UMEM, so that received packets start [`HEADROOM`] octets
/// into their frame.
pub const UMEM_HEADROOM: usize = HEADROOM - XDP_PACKET_HEADROOM;

const _: () = assert!(HEADROOM >= XDP_PACKET_HEADROOM);
const _: () = assert!(HEADROOM + super::MAX_FRAME <= FRAME_SIZE);
const _: () = assert!(FRAME_SIZE.is_power_of_two());

/// Ask libbpf for warnings only, unless `LIBBPF_LOG_LEVEL` says otherwise: at its default level
/// it prints a few lines of informational notices per socket (unrecognized ELF sections of
/// libxdp's default program). Changes the process environment: call it at start, before any
/// other thread runs.
pub fn quiet_libbpf() {
    if std::env::var_os("LIBBPF_LOG_LEVEL").is_none() {
        std::env::set_var("LIBBPF_LOG_LEVEL", "warn");
    }
}

/// Which (interface, queue) a socket binds, and the pipeline port it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskPortSpec {
    /// Index of the port in the node's configuration.
    pub port: u16,
    pub interface: String,
    pub queue_id: u32,
}

/// Whether to ask for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy first; copy mode (logged) when the driver refuses it.
    Auto,
    /// Copy mode only.
    Never,
    /// Zero-copy or fail.
    Require,
}

/// How a set of sockets was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    ZeroCopy,
    Copy,
}

impl BindMode {
    pub fn name(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

/// Sizes and policies of one worker's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XskConfig {
    /// UMEM frames; 0: enough for every socket's fill and TX rings plus replicas.
    pub frames: u32,
    /// Entries of each ring (RX, TX, fill, completion); a power of two.
    pub ring_size: u32,
    pub zero_copy: ZeroCopy,
    /// How long to keep retrying a bind the kernel refuses as busy (a socket of the previous
    /// run on the same queue that the kernel has not torn down yet).
    pub bind_timeout: Duration,
    /// Frames the fill rings leave in the free list, for replicas.
    pub reserve: u32,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frames: 0,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
            bind_timeout: Duration::from_secs(5),
            reserve: 512,
        }
    }
}

/// Why a set of sockets could not be opened.
#[derive(Debug)]
pub enum XskError {
    Config(String),
    Umem(String),
    Bind {
        interface: String,
        queue_id: u32,
        mode: BindMode,
        reason: String,
        errno: Option<i32>,
    },
}

impl fmt::Display for XskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XskError::Config(s) => write!(f, "AF_XDP configuration: {s}"),
            XskError::Umem(s) => write!(f, "AF_XDP UMEM: {s}"),
            XskError::Bind {
                interface,
                queue_id,
                mode,
                reason,
                ..
            } => write!(
                f,
                "AF_XDP socket on {interface} queue {queue_id} ({} mode): {reason}",
                mode.name()
            ),
        }
    }
}

impl std::error::Error for XskError {}

/// One socket's traffic, counted by the worker that owns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XskPortStats {
    pub port: u16,
    pub interface: String,
    pub queue_id: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames this node meant to send and dropped: the TX ring was full.
    pub tx_dropped: u64,
    /// Received descriptors pointing outside the UMEM (never expected), skipped.
    pub rx_invalid: u64,
    /// The kernel's counters for the socket (`XDP_STATISTICS`), read on request.
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_rx_fill_ring_empty: u64,
    pub kernel_rx_invalid: u64,
    pub kernel_tx_invalid: u64,
}

impl XskPortStats {
    /// Add another worker's counters for the same port.
    pub fn merge(&mut self, o: &XskPortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_dropped += o.tx_dropped;
        self.rx_invalid += o.rx_invalid;
        self.kernel_rx_dropped += o.kernel_rx_dropped;
        self.kernel_rx_ring_full += o.kernel_rx_ring_full;
        self.kernel_rx_fill_ring_empty += o.kernel_rx_fill_ring_empty;
        self.kernel_rx_invalid += o.kernel_rx_invalid;
        self.kernel_tx_invalid += o.kernel_tx_invalid;
    }
}

/// Where every UMEM frame is. `leaked` is what is left when the others are subtracted from
/// `total`: zero unless a frame went missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UmemAccounting {
    pub total: u64,
    pub free: u64,
    /// On a fill ring or the RX ring: the kernel's to receive into.
    pub in_fill: u64,
    /// On a TX ring or waiting for completion.
    pub in_tx: u64,
    /// Lent to the pipeline and not returned.
    pub lent: u64,
    pub leaked: i64,
    /// Frames found twice in the free list (a double free); checked at close.
    pub duplicates: u64,
}

impl UmemAccounting {
    pub fn merge(&mut self, o: &UmemAccounting) {
        self.total += o.total;
        self.free += o.free;
        self.in_fill += o.in_fill;
        self.in_tx += o.in_tx;
        self.lent += o.lent;
        self.leaked += o.leaked;
        self.duplicates += o.duplicates;
    }
}

/// One UMEM frame lent to the pipeline: the buffer of a [`Frame`]. Only an [`XskSet`] makes
/// them, for frames that no kernel ring holds, and takes them back ([`XskSet::send`],
/// [`XskSet::free`]); it cannot be cloned, so no two exist for one frame.
pub struct UmemBuf {
    /// Keeps the UMEM mapped for as long as this frame is lent (a non-atomic count: a set and
    /// its buffers stay on one thread).
    _umem: Rc<Umem>,
    chunk: NonNull<u8>,
    /// The descriptor the frame will be sent with: its address is where the packet must start.
    desc: FrameDesc,
}

impl fmt::Debug for UmemBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UmemBuf")
            .field("addr", &self.desc.addr())
            .finish()
    }
}

impl AsRef<[u8]> for UmemBuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `chunk` is the start of a FRAME_SIZE-octet frame inside the UMEM's mapping,
        // which `_umem` keeps alive. The frame is on no kernel ring while this buffer exists
        // (XskSet lends only free frames and puts a frame on a ring only after taking its
        // buffer back by value), and this buffer is the frame's only handle, so nothing
        // writes it while the returned borrow of `self` lives.
        unsafe { std::slice::from_raw_parts(self.chunk.as_ptr(), FRAME_SIZE) }
    }
}

impl AsMut<[u8]> for UmemBuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.as_ptr(), FRAME_SIZE) }
    }
}

/// One socket of a set, with its rings.
struct XskSocket {
    spec: XskPortSpec,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Frames queued by `send` for the next `flush`.
    pending: Vec<FrameDesc>,
    /// Frames on this socket's TX ring or completion ring.
    in_tx: u32,
    stats: XskPortStats,
    wakeup_errors: u64,
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("spec", &self.spec)
            .finish()
    }
}

/// The sockets of one worker over one shared UMEM.
pub struct XskSet {
    // Sockets before the UMEM: dropped first (xsk-rs keeps the UMEM alive for them anyway).
    sockets: Vec<XskSocket>,
    umem: Rc<Umem>,
    /// The start of the UMEM's mapping.
    base: NonNull<u8>,
    frames: u32,
    /// Per frame, the descriptor `Umem::new` made for it: the only way to name a frame to a
    /// ring (xsk-rs descriptors cannot be built outside the crate).
    descs: Vec<FrameDesc>,
    free: Vec<u32>,
    in_fill: u32,
    in_tx: u32,
    /// Pipeline port → index in `sockets`.
    socket_of_port: [u8; MAX_PORTS],
    scratch: Vec<FrameDesc>,
    ring_size: u32,
    reserve: u32,
    mode: BindMode,
    notes: Vec<String>,
    /// Frames moved back to their descriptor's address before sending.
    pub relocated: u64,
    /// Frames forwarded to a port this set has no socket for.
    pub no_socket: u64,
}

impl fmt::Debug for XskSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSet")
            .field("sockets", &self.sockets)
            .field("frames", &self.frames)
            .field("mode", &self.mode)
            .finish()
    }
}

const NO_SOCKET: u8 = u8::MAX;

/// Frames the kernel sends per `sendto` on a copy-mode socket (`TX_BATCH_SIZE`, net/xdp/xsk.c).
const COPY_MODE_TX_BATCH: usize = 32;

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    e.source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(|e| e.raw_os_error())
}

fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

const EBUSY: i32 = 16;
const EEXIST: i32 = 17;
const EAGAIN: i32 = 11;

impl XskSet {
    /// Bind one socket per spec over one new UMEM, fill the fill rings and return the set.
    /// Zero-copy first when `config.zero_copy` allows it, then copy mode; a bind the kernel
    /// refuses as busy is retried until `config.bind_timeout`.
    pub fn open(specs: &[XskPortSpec], config: &XskConfig) -> Result<XskSet, XskError> {
        // One set at a time in a process: libxdp attaches its program to an interface when
        // the first socket binds there and reuses it for the next; two workers binding
        // queues of one interface at once both try to attach, and one is refused.
        static BINDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BINDING.lock().unwrap_or_else(|e| e.into_inner());
        if specs.is_empty() || specs.len() >= NO_SOCKET as usize {
            return Err(XskError::Config(format!(
                "{} sockets in one set (1..{} allowed)",
                specs.len(),
                NO_SOCKET
            )));
        }
        for s in specs {
            if s.port as usize >= MAX_PORTS {
                return Err(XskError::Config(format!("port index {} too large", s.port)));
            }
        }
        // Zero-copy needs driver support (veth has none); native XDP needs the peer's MTU to
        // fit a page (veth: about 3.5 kB) unless the program handles fragments, and libxdp's
        // default program does not; generic (skb) XDP has neither limit, and is slower.
        use BindMode::{Copy, ZeroCopy as Zc};
        let attempts: &[(BindMode, bool)] = match config.zero_copy {
            ZeroCopy::Auto => &[(Zc, false), (Copy, false), (Copy, true)],
            ZeroCopy::Never => &[(Copy, false), (Copy, true)],
            ZeroCopy::Require => &[(Zc, false)],
        };
        let mut notes = Vec::new();
        let mut last = None;
        for (k, &(mode, generic)) in attempts.iter().enumerate() {
            match XskSet::open_in(specs, config, mode, generic) {
                Ok(mut set) => {
                    set.notes.splice(0..0, notes);
                    return Ok(set);
                }
                Err(e) => {
                    if let Some(&(next, next_generic)) = attempts.get(k + 1) {
                        notes.push(format!(
                            "{e}; trying {} mode with {} XDP",
                            next.name(),
                            if next_generic {
                                "generic (skb)"
                            } else {
                                "native"
                            }
                        ));
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one mode tried"))
    }

    fn open_in(
        specs: &[XskPortSpec],
        config: &XskConfig,
        mode: BindMode,
        generic: bool,
    ) -> Result<XskSet, XskError> {
        let ring = config.ring_size;
        let ring_q = QueueSize::new(ring).map_err(|e| XskError::Config(e.to_string()))?;
        let frames = if config.frames == 0 {
            // Each socket's fill ring full, its TX ring full, and the replica reserve.
            specs.len() as u32 * 2 * ring + config.reserve + 64
        } else {
            config.frames
        };
        let frame_count = NonZeroU32::new(frames)
            .ok_or_else(|| XskError::Config("a UMEM needs at least one frame".into()))?;
        let umem_config = UmemConfig::builder()
            .frame_size(
                FrameSize::new(FRAME_SIZE as u32).map_err(|e| XskError::Config(e.to_string()))?,
            )
            .frame_headroom(UMEM_HEADROOM as u32)
            .fill_queue_size(ring_q)
            .comp_queue_size(ring_q)
            .build()
            .map_err(|e| XskError::Config(e.to_string()))?;
        if umem_config.xdp_headroom() as usize != XDP_PACKET_HEADROOM {
            return Err(XskError::Config(format!(
                "the kernel's XDP headroom is {}, not {XDP_PACKET_HEADROOM}",
                umem_config.xdp_headroom()
            )));
        }
        let (umem, mut descs) =
            Umem::new(umem_config, frame_count, false).map_err(|e| XskError::Umem(describe(&e)))?;
        if descs.first().map(|d| d.addr()) != Some(HEADROOM) {
            return Err(XskError::Umem(format!(
                "frame 0 starts its packet at {:?}, not {HEADROOM}",
                descs.first().map(|d| d.addr())
            )));
        }
        // The mapping's start: frame 0's packet address minus its offset. Obtained through
        // the data segment xsk-rs exposes for frame 0, whose capacity runs to the end of the
        // frame.
        let mut d0 = descs[0];
        let base = {
            // SAFETY: frame 0 belongs to this UMEM and is on no ring yet (nothing is bound),
            // so nothing else accesses it; the borrow ends in this block.
            let mut data = unsafe { umem.data_mut(&mut d0) };
            data.cursor().set_pos(usize::MAX);
            let p = data.contents_mut().as_mut_ptr();
            // SAFETY: the data segment of frame 0 starts HEADROOM octets into the mapping
            // (checked above), so stepping back HEADROOM stays inside the same mapping.
            NonNull::new(unsafe { p.sub(HEADROOM) })
                .ok_or_else(|| XskError::Umem("null UMEM mapping".into()))?
        };
        // Every descriptor's length is written when it is sent; start them clean.
        for d in descs.iter_mut() {
            // SAFETY: as above: no frame is on a ring yet.
            unsafe { umem.data_mut(d) }.cursor().set_pos(0);
        }

        let bind_flags = match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY | BindFlags::XDP_USE_NEED_WAKEUP,
            BindMode::Copy => BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP,
        };
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring_q)
            .tx_queue_size(ring_q)
            .libxdp_flags(LibxdpFlags::empty())
            .xdp_flags(if generic {
                XdpFlags::XDP_FLAGS_SKB_MODE
            } else {
                XdpFlags::empty()
            })
            .bind_flags(bind_flags)
            .build();

        let mut sockets: Vec<XskSocket> = Vec::with_capacity(specs.len());
        let mut socket_of_port = [NO_SOCKET; MAX_PORTS];
        let mut notes = Vec::new();
        for spec in specs {
            if sockets
                .iter()
                .any(|s| s.spec.interface == spec.interface && s.spec.queue_id == spec.queue_id)
            {
                return Err(XskError::Config(format!(
                    "{} queue {} named twice",
                    spec.interface, spec.queue_id
                )));
            }
            let name: Interface = spec.interface.parse().map_err(|_| {
                XskError::Config(format!("bad interface name {:?}", spec.interface))
            })?;
            let deadline = Instant::now() + config.bind_timeout;
            let mut tries = 0u32;
            let (tx, rx, fq_cq) = loop {
                tries += 1;
                // SAFETY: each (interface, queue) is bound once per UMEM (checked above), so
                // xsk-rs's requirement for binding a pair that is already bound does not arise;
                // the rings returned are used only through xsk-rs's own methods.
                match unsafe { Socket::new(socket_config, &umem, &name, spec.queue_id) } {
                    Ok(q) => break q,
                    Err(e) => {
                        let errno = errno_of(&e);
                        let transient = matches!(errno, Some(EBUSY | EEXIST | EAGAIN));
                        if transient && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        return Err(XskError::Bind {
                            interface: spec.interface.clone(),
                            queue_id: spec.queue_id,
                            mode,
                            reason: format!("{} (after {tries} attempts)", describe(&e)),
                            errno,
                        });
                    }
                }
            };
            if tries > 1 {
                notes.push(format!(
                    "{} queue {}: bound after {tries} attempts (the previous socket was still \
                     being torn down)",
                    spec.interface, spec.queue_id
                ));
            }
            let (fq, cq) = fq_cq.ok_or_else(|| XskError::Bind {
                interface: spec.interface.clone(),
                queue_id: spec.queue_id,
                mode,
                reason: "no fill/completion rings for a new (interface, queue)".into(),
                errno: None,
            })?;
            socket_of_port[spec.port as usize] = sockets.len() as u8;
            sockets.push(XskSocket {
                spec: spec.clone(),
                tx,
                rx,
                fq,
                cq,
                pending: Vec::with_capacity(ring as usize),
                in_tx: 0,
                stats: XskPortStats {
                    port: spec.port,
                    interface: spec.interface.clone(),
                    queue_id: spec.queue_id,
                    ..XskPortStats::default()
                },
                wakeup_errors: 0,
            });
            notes.push(format!(
                "{} queue {}: bound in {} mode, {} XDP",
                spec.interface,
                spec.queue_id,
                mode.name(),
                if generic { "generic (skb)" } else { "native" }
            ));
        }

        let mut set = XskSet {
            sockets,
            umem: Rc::new(umem),
            base,
            frames,
            free: (0..frames).rev().collect(),
            descs,
            in_fill: 0,
            in_tx: 0,
            socket_of_port,
            scratch: vec![FrameDesc::default(); ring as usize],
            ring_size: ring,
            reserve: config.reserve.min(frames / 2),
            mode,
            notes,
            relocated: 0,
            no_socket: 0,
        };
        set.refill();
        Ok(set)
    }

    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// What happened while binding: modes, fallbacks, retries.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// How many more frames `port`'s socket takes before its TX ring is full (0 without a
    /// socket): a sender that checks first never has [`send`](Self::send) drop.
    pub fn tx_room(&self, port: u16) -> usize {
        match self.socket_of_port.get(port as usize) {
            Some(&si) if si != NO_SOCKET => {
                let s = &self.sockets[si as usize];
                (self.ring_size as usize).saturating_sub(s.pending.len() + s.in_tx as usize)
            }
            _ => 0,
        }
    }

    /// Frames not free: IOAM's buffer occupancy.
    pub fn in_use(&self) -> usize {
        self.frames as usize - self.free.len()
    }

    #[inline]
    fn index_of(addr: usize) -> usize {
        addr / FRAME_SIZE
    }

    #[inline]
    fn lend(&self, index: usize, desc: FrameDesc) -> UmemBuf {
        UmemBuf {
            _umem: Rc::clone(&self.umem),
            // SAFETY: `index` < frames (it comes from this UMEM's descriptors or rings), so the
            // offset stays inside the mapping; `base` is non-null and so is any in-bounds
            // offset from it.
            chunk: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(index * FRAME_SIZE)) },
            desc,
        }
    }

    /// Receive up to `max` packets from each socket into `batch`, stamped `now`. Returns how
    /// many were added. Reserve `batch`'s capacity once; this allocates nothing.
    pub fn rx(&mut self, max: usize, now: u64, batch: &mut Vec<Packet<UmemBuf>>) -> usize {
        let max = max.min(self.scratch.len());
        let mut total = 0;
        for si in 0..self.sockets.len() {
            let s = &mut self.sockets[si];
            // SAFETY: every frame on this socket's RX ring came from this UMEM's fill ring.
            let n = unsafe { s.rx.consume(&mut self.scratch[..max]) };
            if n == 0 {
                continue;
            }
            self.in_fill -= n as u32;
            s.stats.rx_packets += n as u64;
            let port = s.spec.port;
            for k in 0..n {
                let d = self.scratch[k];
                let addr = d.addr();
                let index = XskSet::index_of(addr);
                if index >= self.frames as usize {
                    // The kernel only returns addresses it was given; never lend outside the
                    // mapping if that ever breaks. The frame is lost to the accounting.
                    self.sockets[si].stats.rx_invalid += 1;
                    continue;
                }
                let head = addr - index * FRAME_SIZE;
                let len = d.lengths().data().min(FRAME_SIZE - head);
                self.sockets[si].stats.rx_bytes += len as u64;
                let buf = self.lend(index, d);
                batch.push(Packet {
                    frame: Frame::new(buf, head, len),
                    rx_port: port,
                    rx_ns: now,
                    verdict: Verdict::Pending,
                });
            }
            total += n;
        }
        total
    }

    /// A free frame for a replica (its packet goes at [`HEADROOM`]); `None` when none is left.
    #[inline]
    pub fn alloc(&mut self) -> Option<UmemBuf> {
        let index = self.free.pop()? as usize;
        Some(self.lend(index, self.descs[index]))
    }

    /// Take a frame back without sending it.
    #[inline]
    pub fn free(&mut self, buf: UmemBuf) {
        self.free.push(XskSet::index_of(buf.desc.addr()) as u32);
    }

    /// Queue a frame on `port`'s socket for the next [`flush`](Self::flush). False when it
    /// was dropped instead (no socket for the port, or its TX ring is full): the frame is
    /// freed either way.
    #[inline]
    pub fn send(&mut self, port: u16, frame: Frame<UmemBuf>) -> bool {
        let si = self
            .socket_of_port
            .get(port as usize)
            .copied()
            .unwrap_or(NO_SOCKET);
        let (head, len) = (frame.head(), frame.len());
        let mut buf = frame.into_buf();
        if si == NO_SOCKET {
            self.no_socket += 1;
            self.free(buf);
            return false;
        }
        let s = &mut self.sockets[si as usize];
        if s.pending.len() + s.in_tx as usize >= self.ring_size as usize {
            s.stats.tx_dropped += 1;
            self.free(buf);
            return false;
        }
        let at = buf.desc.addr() % FRAME_SIZE;
        if head != at {
            if at + len > FRAME_SIZE {
                s.stats.tx_dropped += 1;
                self.free(buf);
                return false;
            }
            buf.as_mut().copy_within(head..head + len, at);
            self.relocated += 1;
        }
        let mut desc = buf.desc;
        drop(buf);
        // SAFETY: the frame's only buffer was just given up, and the frame is on no ring, so
        // this is the only access to it; the borrow ends with the statement.
        unsafe { self.umem.data_mut(&mut desc) }
            .cursor()
            .set_pos(len);
        let s = &mut self.sockets[si as usize];
        s.pending.push(desc);
        true
    }

    /// Put queued frames on the TX rings and kick the kernel when it asks to be woken, take
    /// completed frames back, and top the fill rings up. Syscalls: at most one `sendto` per
    /// socket with frames outstanding, and one `poll` per fill ring that asks for a wakeup.
    pub fn flush(&mut self) {
        self.transmit();
        self.reclaim();
        self.refill();
    }

    fn transmit(&mut self) {
        for si in 0..self.sockets.len() {
            let s = &mut self.sockets[si];
            let n = s.pending.len();
            if n > 0 {
                let room = (s.tx.nb_free(n as u32) as usize).min(n);
                // SAFETY: every pending frame belongs to this UMEM and is on no other ring
                // (`send` took it from its buffer); the count fits the ring's free slots, so
                // xsk-rs puts all of them on it.
                let sent = unsafe { s.tx.produce(&s.pending[..room]) };
                for d in &s.pending[..sent] {
                    s.stats.tx_bytes += d.lengths().data() as u64;
                }
                s.stats.tx_packets += sent as u64;
                s.in_tx += sent as u32;
                self.in_tx += sent as u32;
                for k in sent..n {
                    let index = XskSet::index_of(s.pending[k].addr()) as u32;
                    s.stats.tx_dropped += 1;
                    self.free.push(index);
                }
                s.pending.clear();
            }
            if s.in_tx > 0 && s.tx.needs_wakeup() {
                // In copy mode the kernel sends at most TX_BATCH_SIZE (32) frames per
                // `sendto`, in the call: kick once per 32 just queued, or the rest wait a batch.
                let kicks = match self.mode {
                    BindMode::Copy => n.div_ceil(COPY_MODE_TX_BATCH).max(1),
                    BindMode::ZeroCopy => 1,
                };
                for _ in 0..kicks {
                    if s.tx.wakeup().is_err() {
                        s.wakeup_errors += 1;
                    }
                }
            }
        }
    }

    fn reclaim(&mut self) {
        for si in 0..self.sockets.len() {
            let s = &mut self.sockets[si];
            if s.in_tx == 0 {
                continue;
            }
            // SAFETY: the completion ring returns frames this UMEM's TX ring sent.
            let n = unsafe { s.cq.consume(&mut self.scratch) };
            for d in &self.scratch[..n] {
                self.free.push(XskSet::index_of(d.addr()) as u32);
            }
            s.in_tx -= n as u32;
            self.in_tx -= n as u32;
        }
    }

    fn refill(&mut self) {
        for si in 0..self.sockets.len() {
            let spare = self.free.len().saturating_sub(self.reserve as usize);
            if spare == 0 {
                return;
            }
            let s = &mut self.sockets[si];
            let want = (s.fq.nb_free(self.ring_size) as usize)
                .min(self.ring_size as usize)
                .min(spare);
            if want > 0 {
                for k in 0..want {
                    let index = self.free.pop().expect("spare frames counted") as usize;
                    self.scratch[k] = self.descs[index];
                }
                // SAFETY: the frames were free (on no ring, lent to no buffer) and belong to
                // this UMEM; `want` fits the ring's free slots, so all go on it.
                let n = unsafe { s.fq.produce(&self.scratch[..want]) };
                for k in n..want {
                    self.free
                        .push(XskSet::index_of(self.scratch[k].addr()) as u32);
                }
                self.in_fill += n as u32;
            }
            if s.fq.needs_wakeup() {
                let fd = s.rx.fd_mut();
                if s.fq.wakeup(fd, 0).is_err() {
                    s.wakeup_errors += 1;
                }
            }
        }
    }

    /// Per-socket counters, with the kernel's statistics read now (one `getsockopt` each).
    pub fn port_stats(&self) -> Vec<XskPortStats> {
        self.sockets
            .iter()
            .map(|s| {
                let mut st = s.stats.clone();
                if let Ok(k) = s.rx.fd().xdp_statistics() {
                    st.kernel_rx_dropped = k.rx_dropped();
                    st.kernel_rx_ring_full = k.rx_ring_full();
                    st.kernel_rx_fill_ring_empty = k.rx_fill_ring_empty_descs();
                    st.kernel_rx_invalid = k.rx_invalid_descs();
                    st.kernel_tx_invalid = k.tx_invalid_descs();
                }
                st
            })
            .collect()
    }

    /// Where every frame is now (the pipeline holds `lent` of them).
    pub fn accounting(&self, lent: u64) -> UmemAccounting {
        let total = self.frames as u64;
        let free = self.free.len() as u64;
        let (in_fill, in_tx) = (self.in_fill as u64, self.in_tx as u64);
        UmemAccounting {
            total,
            free,
            in_fill,
            in_tx,
            lent,
            leaked: total as i64 - (free + in_fill + in_tx + lent) as i64,
            duplicates: 0,
        }
    }

    /// Send what is queued, wait up to `timeout` for every transmission to complete, and
    /// account for every frame; the sockets close (and libxdp removes its XDP program from
    /// an interface whose last socket this was) when the set is dropped.
    pub fn close(&mut self, timeout: Duration) -> UmemAccounting {
        self.transmit();
        let deadline = Instant::now() + timeout;
        while self.in_tx > 0 && Instant::now() < deadline {
            self.reclaim();
            if self.in_tx > 0 {
                for s in &mut self.sockets {
                    if s.in_tx > 0 && s.tx.needs_wakeup() {
                        let _ = s.tx.wakeup();
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let mut acc = self.accounting(0);
        let mut seen = vec![false; self.frames as usize];
        for &i in &self.free {
            if std::mem::replace(&mut seen[i as usize], true) {
                acc.duplicates += 1;
            }
        }
        acc
    }
}

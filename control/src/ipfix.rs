//! IPFIX (RFC 7011) for postcards: mtnode's template, the encoder the exporter thread runs, and
//! the decoder a collector runs over templates it learned from the wire.
//!
//! This module owns byte layouts only: it opens no socket and reads no clock (export time and
//! sequence numbers come in as arguments), so the exporter, the collector, tests and benchmarks
//! share it. The template is documented field by field in `docs/ipfix.md`; keep the two in step.
//!
//! Encoding never allocates once a [`MessageBuilder`]'s buffer has grown to the MTU. Decoding
//! never panics on received bytes: every length is checked against what is left.
#![forbid(unsafe_code)]

use std::fmt;

use mtnode_dataplane::export::{BranchId, Postcard, PostcardKind, MAX_POSTCARD_DATA};
use serde::Serialize;

/// IPFIX version number (RFC 7011 §3.1).
pub const VERSION: u16 = 10;
/// Message header: version, length, export time, sequence number, observation domain ID.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Set header: set ID and length.
pub const SET_HEADER_LEN: usize = 4;
/// Set IDs (RFC 7011 §3.3.2).
pub const TEMPLATE_SET_ID: u16 = 2;
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
/// The lowest data set (and template) ID.
pub const MIN_DATA_SET_ID: u16 = 256;
/// Field length meaning "variable length" (RFC 7011 §7).
pub const VARLEN: u16 = 65535;
/// The enterprise bit of an Information Element identifier (RFC 7011 §3.2).
pub const ENTERPRISE_BIT: u16 = 0x8000;
/// RFC 5612's Private Enterprise Number for documentation and examples: the default until an
/// operator configures their own.
pub const DEFAULT_ENTERPRISE_NUMBER: u32 = 32473;
/// The template ID of mtnode's postcard data records.
pub const POSTCARD_TEMPLATE_ID: u16 = 256;
/// The options template ID of the exporting process reliability statistics (RFC 7011 §4.3).
pub const STATS_TEMPLATE_ID: u16 = 257;
/// Seconds between the NTP era 0 epoch (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// IANA-registered Information Elements mtnode writes or reads.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const INGRESS_INTERFACE: u16 = 10;
    pub const EGRESS_INTERFACE: u16 = 14;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FLOW_LABEL_IPV6: u16 = 31;
    pub const EXPORTED_MESSAGE_TOTAL_COUNT: u16 = 41;
    pub const EXPORTED_FLOW_RECORD_TOTAL_COUNT: u16 = 42;
    pub const OBSERVATION_DOMAIN_ID: u16 = 149;
    pub const NOT_SENT_FLOW_TOTAL_COUNT: u16 = 166;
    pub const IP_TTL: u16 = 192;
    pub const OBSERVATION_TIME_SECONDS: u16 = 322;
    pub const OBSERVATION_TIME_MILLISECONDS: u16 = 323;
    pub const OBSERVATION_TIME_MICROSECONDS: u16 = 324;
    pub const OBSERVATION_TIME_NANOSECONDS: u16 = 325;
}

/// mtnode's enterprise-specific Information Elements, under the configured PEN. Numbers are
/// stable: a collector configured for them (pmacct's `aggregate_primitives`, say) relies on them.
pub mod eie {
    /// unsigned8: 1 section, 2 end section, 3 hop (`PostcardKind`).
    pub const POSTCARD_KIND: u16 = 1;
    /// unsigned32: the exporting node's IOAM node ID.
    pub const IOAM_NODE_ID: u16 = 2;
    /// unsigned16: the IOAM Namespace-ID.
    pub const IOAM_NAMESPACE_ID: u16 = 3;
    /// unsigned32: the 24-bit IOAM-Trace-Type, right-aligned.
    pub const IOAM_TRACE_TYPE: u16 = 4;
    /// unsigned64: FNV-1a over the packet's invariant fields; the correlation key.
    pub const PACKET_DIGEST: u16 = 5;
    /// unsigned32: RFC 9326 Flow ID (0 when absent).
    pub const DEX_FLOW_ID: u16 = 6;
    /// unsigned32: RFC 9326 Sequence Number (0 when absent).
    pub const DEX_SEQUENCE_NUMBER: u16 = 7;
    /// unsigned32: the branch node of the received branch ID (RFC 9630 §4.1).
    pub const BRANCH_NODE_ID: u16 = 8;
    /// unsigned16: the branch index of the received branch ID.
    pub const BRANCH_INDEX: u16 = 9;
    /// unsigned32: the configuration epoch that produced the postcard.
    pub const CONFIG_EPOCH: u16 = 10;
    /// octetArray, variable length: IOAM node data as on the wire, newest entry first.
    pub const IOAM_DATA: u16 = 11;
    /// unsigned8: the branch-ID encoding that produced the branch fields: 0 none, 1 explicit,
    /// 2 split, 3 sum (`BranchEncoding::code`).
    pub const BRANCH_ENCODING: u16 = 12;
    /// unsigned32: the branch field exactly as the packet carried it, before decoding.
    pub const BRANCH_FIELD: u16 = 13;
}

/// A template field: Information Element, length, and its enterprise number if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FieldSpec {
    /// The Information Element identifier, enterprise bit cleared.
    pub id: u16,
    /// Octets, or [`VARLEN`].
    pub len: u16,
    /// The Private Enterprise Number of an enterprise-specific element.
    pub pen: Option<u32>,
}

impl FieldSpec {
    pub const fn iana(id: u16, len: u16) -> Self {
        FieldSpec { id, len, pen: None }
    }

    pub const fn enterprise(pen: u32, id: u16, len: u16) -> Self {
        FieldSpec {
            id,
            len,
            pen: Some(pen),
        }
    }

    /// Octets this specifier takes in a template record.
    pub fn wire_len(&self) -> usize {
        if self.pen.is_some() {
            8
        } else {
            4
        }
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self.pen {
            Some(pen) => {
                out.extend_from_slice(&(self.id | ENTERPRISE_BIT).to_be_bytes());
                out.extend_from_slice(&self.len.to_be_bytes());
                out.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                out.extend_from_slice(&self.id.to_be_bytes());
                out.extend_from_slice(&self.len.to_be_bytes());
            }
        }
    }
}

/// mtnode's postcard template, in the order records are written (docs/ipfix.md, "Template 256").
pub fn postcard_fields(pen: u32) -> [FieldSpec; 20] {
    [
        FieldSpec::iana(ie::OBSERVATION_TIME_NANOSECONDS, 8),
        FieldSpec::iana(ie::INGRESS_INTERFACE, 4),
        FieldSpec::iana(ie::EGRESS_INTERFACE, 4),
        FieldSpec::iana(ie::SOURCE_IPV6_ADDRESS, 16),
        FieldSpec::iana(ie::DESTINATION_IPV6_ADDRESS, 16),
        FieldSpec::iana(ie::FLOW_LABEL_IPV6, 4),
        FieldSpec::iana(ie::IP_TTL, 1),
        FieldSpec::enterprise(pen, eie::POSTCARD_KIND, 1),
        FieldSpec::enterprise(pen, eie::IOAM_NODE_ID, 4),
        FieldSpec::enterprise(pen, eie::IOAM_NAMESPACE_ID, 2),
        FieldSpec::enterprise(pen, eie::IOAM_TRACE_TYPE, 4),
        FieldSpec::enterprise(pen, eie::PACKET_DIGEST, 8),
        FieldSpec::enterprise(pen, eie::DEX_FLOW_ID, 4),
        FieldSpec::enterprise(pen, eie::DEX_SEQUENCE_NUMBER, 4),
        FieldSpec::enterprise(pen, eie::BRANCH_NODE_ID, 4),
        FieldSpec::enterprise(pen, eie::BRANCH_INDEX, 2),
        FieldSpec::enterprise(pen, eie::CONFIG_EPOCH, 4),
        FieldSpec::enterprise(pen, eie::BRANCH_ENCODING, 1),
        FieldSpec::enterprise(pen, eie::BRANCH_FIELD, 4),
        FieldSpec::enterprise(pen, eie::IOAM_DATA, VARLEN),
    ]
}

/// Octets of a postcard record before its variable-length IOAM data (fixed fields + the
/// one-octet length prefix).
pub const RECORD_FIXED_LEN: usize =
    8 + 4 + 4 + 16 + 16 + 4 + 1 + 1 + 4 + 2 + 4 + 8 + 4 + 4 + 4 + 2 + 4 + 1 + 4 + 1;
/// The longest postcard record (data never reaches 255, so the short length prefix always fits).
pub const MAX_RECORD_LEN: usize = RECORD_FIXED_LEN + MAX_POSTCARD_DATA;
const _: () = assert!(MAX_POSTCARD_DATA < 255);

/// Fields of the exporting process reliability statistics (options template 257): scope
/// observationDomainId, then messages and records sent and records not sent.
pub fn stats_fields() -> [FieldSpec; 4] {
    [
        FieldSpec::iana(ie::OBSERVATION_DOMAIN_ID, 4),
        FieldSpec::iana(ie::EXPORTED_MESSAGE_TOTAL_COUNT, 8),
        FieldSpec::iana(ie::EXPORTED_FLOW_RECORD_TOTAL_COUNT, 8),
        FieldSpec::iana(ie::NOT_SENT_FLOW_TOTAL_COUNT, 8),
    ]
}

/// What the exporter reports about itself in options template 257's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ExporterStatsRecord {
    pub observation_domain_id: u32,
    pub messages: u64,
    pub records: u64,
    pub not_sent: u64,
}

/// `ns` since the Unix epoch as dateTimeNanoseconds: NTP seconds and a 2^-32 s fraction
/// (RFC 7011 §6.1.10). The fraction is rounded up, so that a decoder that truncates (tshark,
/// [`ntp_to_unix_ns`]) gets `ns` back exactly: one fraction unit is 0.23 ns.
pub fn unix_ns_to_ntp(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET;
    let sub = ns % 1_000_000_000;
    // At most ceil(999_999_999 · 2^32 / 10^9) = 2^32 − 5: never a carry into the seconds.
    let frac = (sub << 32).div_ceil(1_000_000_000);
    (secs & 0xffff_ffff) << 32 | frac
}

/// The inverse of [`unix_ns_to_ntp`]. NTP seconds below the Unix epoch's are taken as era 1
/// (after February 2036), as RFC 7011 §6.1.10 asks of wrap-around.
pub fn ntp_to_unix_ns(ntp: u64) -> u64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    let unix_secs = if secs >= NTP_UNIX_OFFSET {
        secs - NTP_UNIX_OFFSET
    } else {
        secs + (1 << 32) - NTP_UNIX_OFFSET
    };
    unix_secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

/// The template set (template 256) plus the options template set (template 257), as one
/// message's sets.
pub fn emit_template_sets(pen: u32, out: &mut Vec<u8>) {
    let fields = postcard_fields(pen);
    let start = out.len();
    out.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&POSTCARD_TEMPLATE_ID.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for f in &fields {
        f.emit(out);
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());

    let fields = stats_fields();
    let start = out.len();
    out.extend_from_slice(&OPTIONS_TEMPLATE_SET_ID.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&STATS_TEMPLATE_ID.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // scope field count
    for f in &fields {
        f.emit(out);
    }
    // RFC 7011 §3.3.1 lets a set end in padding; 4-octet alignment keeps the set's length a
    // multiple of 4, which some collectors prefer.
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// One data set with one options record of template 257.
pub fn emit_stats_set(s: &ExporterStatsRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&STATS_TEMPLATE_ID.to_be_bytes());
    out.extend_from_slice(&((SET_HEADER_LEN + 28) as u16).to_be_bytes());
    out.extend_from_slice(&s.observation_domain_id.to_be_bytes());
    out.extend_from_slice(&s.messages.to_be_bytes());
    out.extend_from_slice(&s.records.to_be_bytes());
    out.extend_from_slice(&s.not_sent.to_be_bytes());
}

/// Append one postcard as a record of template 256.
#[inline]
pub fn emit_record(p: &Postcard, out: &mut Vec<u8>) {
    let mut h = [0u8; RECORD_FIXED_LEN];
    h[0..8].copy_from_slice(&unix_ns_to_ntp(p.observation_ns).to_be_bytes());
    h[8..12].copy_from_slice(&p.ingress_if.to_be_bytes());
    h[12..16].copy_from_slice(&p.egress_if.to_be_bytes());
    h[16..32].copy_from_slice(&p.src_addr);
    h[32..48].copy_from_slice(&p.dst_addr);
    h[48..52].copy_from_slice(&p.flow_label.to_be_bytes());
    h[52] = p.hop_limit;
    h[53] = p.kind as u8;
    h[54..58].copy_from_slice(&p.node_id.to_be_bytes());
    h[58..60].copy_from_slice(&p.namespace_id.to_be_bytes());
    h[60..64].copy_from_slice(&p.trace_type.to_be_bytes());
    h[64..72].copy_from_slice(&p.digest.to_be_bytes());
    h[72..76].copy_from_slice(&p.flow_id.to_be_bytes());
    h[76..80].copy_from_slice(&p.sequence.to_be_bytes());
    h[80..84].copy_from_slice(&p.branch.node_id.to_be_bytes());
    h[84..86].copy_from_slice(&p.branch.index.to_be_bytes());
    h[86..90].copy_from_slice(&p.epoch.to_be_bytes());
    h[90] = p.branch_encoding;
    h[91..95].copy_from_slice(&p.branch_field.to_be_bytes());
    let data = p.data();
    h[95] = data.len() as u8;
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
}

/// The octets [`emit_record`] writes for `p`.
pub fn record_len(p: &Postcard) -> usize {
    RECORD_FIXED_LEN + p.data_len as usize
}

/// Fill in a finished message's export time and sequence number: the exporter stamps them when
/// it sends, since a buffered message may go out later, or to another collector, than planned.
pub fn stamp_header(msg: &mut [u8], export_time: u32, sequence: u32) {
    msg[4..8].copy_from_slice(&export_time.to_be_bytes());
    msg[8..12].copy_from_slice(&sequence.to_be_bytes());
}

/// Builds messages of at most `mtu` octets: a header, then optional template sets, then one data
/// set of postcard records. Reuses its buffer from message to message.
#[derive(Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    mtu: usize,
    domain: u32,
    data_set_at: Option<usize>,
    records: u32,
}

impl MessageBuilder {
    /// `mtu`: the largest message (UDP payload), clamped to what one record needs at least and
    /// to the 16-bit length field.
    pub fn new(mtu: usize, observation_domain_id: u32) -> Self {
        let mtu = mtu.clamp(
            MESSAGE_HEADER_LEN + SET_HEADER_LEN + MAX_RECORD_LEN,
            u16::MAX as usize,
        );
        let mut b = MessageBuilder {
            buf: Vec::with_capacity(mtu),
            mtu,
            domain: observation_domain_id,
            data_set_at: None,
            records: 0,
        };
        b.reset();
        b
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Start over with an empty message (header only).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&VERSION.to_be_bytes());
        self.buf.extend_from_slice(&[0; 2 + 4 + 4]);
        self.buf.extend_from_slice(&self.domain.to_be_bytes());
        self.data_set_at = None;
        self.records = 0;
    }

    /// Data records in the message so far.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// True when the message holds no set.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == MESSAGE_HEADER_LEN
    }

    /// Add the template sets and a statistics record; only before any postcard.
    pub fn push_templates(&mut self, pen: u32, stats: &ExporterStatsRecord) {
        debug_assert!(self.data_set_at.is_none());
        emit_template_sets(pen, &mut self.buf);
        emit_stats_set(stats, &mut self.buf);
    }

    /// Append `p` if the message stays within the MTU; false (and nothing written) otherwise.
    #[inline]
    pub fn push(&mut self, p: &Postcard) -> bool {
        let set_header = if self.data_set_at.is_none() {
            SET_HEADER_LEN
        } else {
            0
        };
        if self.buf.len() + set_header + record_len(p) > self.mtu {
            return false;
        }
        if self.data_set_at.is_none() {
            self.data_set_at = Some(self.buf.len());
            self.buf
                .extend_from_slice(&POSTCARD_TEMPLATE_ID.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        emit_record(p, &mut self.buf);
        self.records += 1;
        true
    }

    /// Close the data set and the message, fill in the lengths, export time and sequence number,
    /// and return the message. [`Self::reset`] before reusing.
    pub fn finish(&mut self, export_time: u32, sequence: u32) -> &mut [u8] {
        if let Some(at) = self.data_set_at {
            let len = (self.buf.len() - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        stamp_header(&mut self.buf, export_time, sequence);
        &mut self.buf
    }
}

/// Why a message or a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    #[error("message shorter than its header or its length field")]
    Truncated,
    #[error("version {0}, not 10")]
    BadVersion(u16),
    #[error("message length field {0} disagrees with the datagram")]
    BadMessageLength(u16),
    #[error("set length below 4 or past the message")]
    BadSetLength,
    #[error("set ID {0} is reserved")]
    ReservedSetId(u16),
    #[error("template record runs past its set, or has a template ID below 256")]
    BadTemplate,
    #[error("data record runs past its set")]
    RecordOverrun,
    #[error("field of unexpected length for its type")]
    BadFieldLength,
}

/// A message header (RFC 7011 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub version: u16,
    pub length: u16,
    pub export_time: u32,
    pub sequence: u32,
    pub observation_domain_id: u32,
}

impl MessageHeader {
    /// Check the header against the datagram `msg` (one message per datagram over UDP,
    /// RFC 7011 §10.3.3).
    pub fn parse(msg: &[u8]) -> Result<Self, DecodeError> {
        if msg.len() < MESSAGE_HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let h = MessageHeader {
            version: be16(msg, 0),
            length: be16(msg, 2),
            export_time: be32(msg, 4),
            sequence: be32(msg, 8),
            observation_domain_id: be32(msg, 12),
        };
        if h.version != VERSION {
            return Err(DecodeError::BadVersion(h.version));
        }
        if (h.length as usize) < MESSAGE_HEADER_LEN || h.length as usize > msg.len() {
            return Err(DecodeError::BadMessageLength(h.length));
        }
        Ok(h)
    }
}

/// The sets of a message whose header checked out: (set ID, set body).
#[derive(Debug, Clone)]
pub struct Sets<'a> {
    msg: &'a [u8],
    at: usize,
}

impl<'a> Sets<'a> {
    /// `msg` is the whole message, header included, cut to the header's length.
    pub fn new(msg: &'a [u8]) -> Self {
        Sets {
            msg,
            at: MESSAGE_HEADER_LEN,
        }
    }
}

impl<'a> Iterator for Sets<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.msg.len() {
            return None;
        }
        let rest = &self.msg[self.at..];
        if rest.len() < SET_HEADER_LEN {
            self.at = self.msg.len();
            return Some(Err(DecodeError::BadSetLength));
        }
        let (id, len) = (be16(rest, 0), be16(rest, 2) as usize);
        if len < SET_HEADER_LEN || len > rest.len() {
            self.at = self.msg.len();
            return Some(Err(DecodeError::BadSetLength));
        }
        self.at += len;
        if id != TEMPLATE_SET_ID && id != OPTIONS_TEMPLATE_SET_ID && id < MIN_DATA_SET_ID {
            return Some(Err(DecodeError::ReservedSetId(id)));
        }
        Some(Ok((id, &rest[SET_HEADER_LEN..len])))
    }
}

/// A template (or options template) record as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRecord {
    pub template_id: u16,
    /// Scope fields first (options templates only).
    pub scope_field_count: u16,
    /// Empty for a withdrawal.
    pub fields: Vec<FieldSpec>,
}

/// Parse the records of a template set (`options` false, set ID 2) or an options template set
/// (set ID 3). Trailing octets too short for a record header are padding.
pub fn parse_template_set(body: &[u8], options: bool) -> Result<Vec<TemplateRecord>, DecodeError> {
    let header = if options { 6 } else { 4 };
    let mut out = Vec::new();
    let mut at = 0;
    while body.len() - at >= 4 {
        let template_id = be16(body, at);
        let count = be16(body, at + 2);
        // Padding is zeros; a zero template ID cannot start a record.
        if template_id == 0 && body[at..].iter().all(|&b| b == 0) {
            break;
        }
        if template_id < MIN_DATA_SET_ID {
            return Err(DecodeError::BadTemplate);
        }
        if count > 0 && body.len() - at < header {
            return Err(DecodeError::BadTemplate);
        }
        let scope_field_count = if options && count > 0 {
            be16(body, at + 4)
        } else {
            0
        };
        at += if count == 0 { 4 } else { header };
        let mut fields = Vec::with_capacity(count as usize);
        for _ in 0..count {
            if body.len() - at < 4 {
                return Err(DecodeError::BadTemplate);
            }
            let (raw, len) = (be16(body, at), be16(body, at + 2));
            at += 4;
            let pen = if raw & ENTERPRISE_BIT != 0 {
                if body.len() - at < 4 {
                    return Err(DecodeError::BadTemplate);
                }
                at += 4;
                Some(be32(body, at - 4))
            } else {
                None
            };
            fields.push(FieldSpec {
                id: raw & !ENTERPRISE_BIT,
                len,
                pen,
            });
        }
        if scope_field_count as usize > fields.len()
            || (options && count > 0 && scope_field_count == 0)
        {
            return Err(DecodeError::BadTemplate);
        }
        out.push(TemplateRecord {
            template_id,
            scope_field_count,
            fields,
        });
    }
    Ok(out)
}

/// Where a template field goes in a [`Postcard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Skip,
    TimeNs,
    TimeUs,
    TimeMs,
    TimeS,
    IngressIf,
    EgressIf,
    Src,
    Dst,
    FlowLabel,
    HopLimit,
    Kind,
    NodeId,
    NamespaceId,
    TraceType,
    Digest,
    FlowId,
    Sequence,
    BranchNode,
    BranchIndex,
    Epoch,
    BranchEncoding,
    BranchField,
    Data,
}

impl Slot {
    fn of(f: &FieldSpec, pen: u32) -> Slot {
        match f.pen {
            None => match f.id {
                ie::OBSERVATION_TIME_NANOSECONDS => Slot::TimeNs,
                ie::OBSERVATION_TIME_MICROSECONDS => Slot::TimeUs,
                ie::OBSERVATION_TIME_MILLISECONDS => Slot::TimeMs,
                ie::OBSERVATION_TIME_SECONDS => Slot::TimeS,
                ie::INGRESS_INTERFACE => Slot::IngressIf,
                ie::EGRESS_INTERFACE => Slot::EgressIf,
                ie::SOURCE_IPV6_ADDRESS => Slot::Src,
                ie::DESTINATION_IPV6_ADDRESS => Slot::Dst,
                ie::FLOW_LABEL_IPV6 => Slot::FlowLabel,
                ie::IP_TTL => Slot::HopLimit,
                _ => Slot::Skip,
            },
            Some(p) if p == pen => match f.id {
                eie::POSTCARD_KIND => Slot::Kind,
                eie::IOAM_NODE_ID => Slot::NodeId,
                eie::IOAM_NAMESPACE_ID => Slot::NamespaceId,
                eie::IOAM_TRACE_TYPE => Slot::TraceType,
                eie::PACKET_DIGEST => Slot::Digest,
                eie::DEX_FLOW_ID => Slot::FlowId,
                eie::DEX_SEQUENCE_NUMBER => Slot::Sequence,
                eie::BRANCH_NODE_ID => Slot::BranchNode,
                eie::BRANCH_INDEX => Slot::BranchIndex,
                eie::CONFIG_EPOCH => Slot::Epoch,
                eie::IOAM_DATA => Slot::Data,
                eie::BRANCH_ENCODING => Slot::BranchEncoding,
                eie::BRANCH_FIELD => Slot::BranchField,
                _ => Slot::Skip,
            },
            Some(_) => Slot::Skip,
        }
    }

    /// Whether `len` octets can carry this slot's type (RFC 7011 §6.2 reduced-size encoding for
    /// integers; fixed sizes for addresses and timestamps).
    fn fits(self, len: u16) -> bool {
        match self {
            Slot::Skip | Slot::Data => true,
            Slot::Src | Slot::Dst => len == 16,
            Slot::TimeNs | Slot::TimeUs | Slot::TimeMs => len == 8,
            Slot::TimeS => len == 4,
            Slot::HopLimit | Slot::Kind | Slot::BranchEncoding => len == 1,
            Slot::NamespaceId | Slot::BranchIndex => (1..=2).contains(&len),
            Slot::Digest => (1..=8).contains(&len),
            _ => (1..=4).contains(&len),
        }
    }
}

/// A template compiled for decoding postcards: each field's length and destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostcardDecoder {
    slots: Vec<(Slot, u16)>,
    min_len: usize,
    has_kind: bool,
}

/// What a data record decoded into.
// A postcard is returned by value and moved straight into the collector's list: boxing it
// would allocate once per record to save stack space nobody is short of.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Postcard(Postcard),
    /// The template has no postcardKind field under our PEN, or an unknown kind value: a record,
    /// but not a postcard.
    Foreign,
}

impl PostcardDecoder {
    /// Compile `t` for enterprise number `pen`. Errs when a known field has a length its type
    /// cannot have (a 15-octet IPv6 address, say).
    pub fn new(t: &TemplateRecord, pen: u32) -> Result<Self, DecodeError> {
        let mut slots = Vec::with_capacity(t.fields.len());
        let mut min_len = 0;
        let mut has_kind = false;
        for f in &t.fields {
            let mut slot = Slot::of(f, pen);
            if f.len == VARLEN {
                min_len += 1;
                if slot != Slot::Data {
                    slot = Slot::Skip;
                }
            } else {
                min_len += f.len as usize;
                if !slot.fits(f.len) {
                    return Err(DecodeError::BadFieldLength);
                }
            }
            has_kind |= slot == Slot::Kind;
            slots.push((slot, f.len));
        }
        Ok(PostcardDecoder {
            slots,
            min_len,
            has_kind,
        })
    }

    /// The shortest record of this template: set padding is anything shorter (RFC 7011 §3.3.1).
    pub fn min_record_len(&self) -> usize {
        self.min_len
    }

    /// Decode the record at the start of `rec`, returning it and the octets it took.
    pub fn decode(&self, rec: &[u8]) -> Result<(Decoded, usize), DecodeError> {
        let mut p = Postcard::new(PostcardKind::Hop);
        let mut kind_ok = false;
        let mut at = 0;
        for &(slot, len) in &self.slots {
            let len = if len == VARLEN {
                let first = *rec.get(at).ok_or(DecodeError::RecordOverrun)?;
                at += 1;
                if first < 255 {
                    first as usize
                } else {
                    if rec.len() < at + 2 {
                        return Err(DecodeError::RecordOverrun);
                    }
                    at += 2;
                    be16(rec, at - 2) as usize
                }
            } else {
                len as usize
            };
            if rec.len() < at + len {
                return Err(DecodeError::RecordOverrun);
            }
            let v = &rec[at..at + len];
            at += len;
            match slot {
                Slot::Skip => {}
                Slot::TimeNs => p.observation_ns = ntp_to_unix_ns(uint(v)),
                Slot::TimeUs => {
                    // dateTimeMicroseconds: NTP format with the low 11 fraction bits zero.
                    p.observation_ns = ntp_to_unix_ns(uint(v) & !0x7ff)
                }
                Slot::TimeMs => p.observation_ns = uint(v).saturating_mul(1_000_000),
                Slot::TimeS => p.observation_ns = uint(v) * 1_000_000_000,
                Slot::IngressIf => p.ingress_if = uint(v) as u32,
                Slot::EgressIf => p.egress_if = uint(v) as u32,
                Slot::Src => p.src_addr.copy_from_slice(v),
                Slot::Dst => p.dst_addr.copy_from_slice(v),
                Slot::FlowLabel => p.flow_label = uint(v) as u32 & 0xf_ffff,
                Slot::HopLimit => p.hop_limit = v[0],
                Slot::Kind => match PostcardKind::from_u8(v[0]) {
                    Some(k) => {
                        p.kind = k;
                        kind_ok = true;
                    }
                    None => kind_ok = false,
                },
                Slot::NodeId => p.node_id = uint(v) as u32,
                Slot::NamespaceId => p.namespace_id = uint(v) as u16,
                Slot::TraceType => p.trace_type = uint(v) as u32,
                Slot::Digest => p.digest = uint(v),
                Slot::FlowId => p.flow_id = uint(v) as u32,
                Slot::Sequence => p.sequence = uint(v) as u32,
                Slot::BranchNode => p.branch.node_id = uint(v) as u32,
                Slot::BranchIndex => p.branch.index = uint(v) as u16,
                Slot::Epoch => p.epoch = uint(v) as u32,
                Slot::BranchEncoding => p.branch_encoding = uint(v) as u8,
                Slot::BranchField => p.branch_field = uint(v) as u32,
                Slot::Data => p.set_data(v),
            }
        }
        let d = if self.has_kind && kind_ok {
            Decoded::Postcard(p)
        } else {
            Decoded::Foreign
        };
        Ok((d, at))
    }
}

/// Decode options template 257-style records: any options record that carries the counters.
pub fn decode_stats(t: &TemplateRecord, rec: &[u8]) -> Option<(ExporterStatsRecord, usize)> {
    let mut s = ExporterStatsRecord::default();
    let mut at = 0;
    let mut any = false;
    for f in &t.fields {
        let len = if f.len == VARLEN {
            let first = *rec.get(at)? as usize;
            at += 1;
            if first == 255 {
                at += 2;
                be16(rec.get(at - 2..at)?, 0) as usize
            } else {
                first
            }
        } else {
            f.len as usize
        };
        let v = rec.get(at..at + len)?;
        at += len;
        if f.pen.is_some() || !(1..=8).contains(&len) {
            continue;
        }
        match f.id {
            ie::OBSERVATION_DOMAIN_ID => s.observation_domain_id = uint(v) as u32,
            ie::EXPORTED_MESSAGE_TOTAL_COUNT => (s.messages, any) = (uint(v), true),
            ie::EXPORTED_FLOW_RECORD_TOTAL_COUNT => (s.records, any) = (uint(v), true),
            ie::NOT_SENT_FLOW_TOTAL_COUNT => (s.not_sent, any) = (uint(v), true),
            _ => {}
        }
    }
    any.then_some((s, at))
}

/// The shortest record of a template (fixed lengths, one octet per variable-length field).
pub fn min_record_len(t: &TemplateRecord) -> usize {
    t.fields
        .iter()
        .map(|f| if f.len == VARLEN { 1 } else { f.len as usize })
        .sum()
}

/// Big-endian unsigned integer of 1 to 8 octets (reduced-size encoding, RFC 7011 §6.2).
#[inline]
fn uint(v: &[u8]) -> u64 {
    v.iter().fold(0u64, |acc, &b| acc << 8 | b as u64)
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl fmt::Display for FieldSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pen {
            Some(pen) => write!(f, "{pen}:{}", self.id)?,
            None => write!(f, "{}", self.id)?,
        }
        if self.len == VARLEN {
            write!(f, "/var")
        } else {
            write!(f, "/{}", self.len)
        }
    }
}

/// A postcard with every field set to a distinct value: for round-trip tests and benchmarks.
pub fn sample_postcard(n: u32, data_len: usize) -> Postcard {
    let mut p = Postcard::new(PostcardKind::Section);
    p.observation_ns = 1_790_000_000_123_456_789 + n as u64;
    p.node_id = 0x00ab_cd00 | (n & 0xff);
    p.namespace_id = 0x0102;
    p.trace_type = 0xf0_0000;
    p.digest = 0x0123_4567_89ab_cdef ^ n as u64;
    p.flow_id = 0x1111_2222;
    p.sequence = n;
    p.branch = BranchId {
        node_id: 0x0003_0405,
        index: 7,
    };
    p.epoch = 9;
    p.branch_encoding = 1;
    p.branch_field = 0x0000_0203;
    p.ingress_if = 3;
    p.egress_if = 4;
    p.src_addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    p.dst_addr = [0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 1];
    p.flow_label = 0xa_bcde;
    p.hop_limit = 63;
    let data: Vec<u8> = (0..data_len).map(|i| (i as u8).wrapping_mul(7)).collect();
    p.set_data(&data);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trips_every_nanosecond_edge() {
        for ns in [
            0u64,
            1,
            999_999_999,
            1_000_000_000,
            1_790_000_000_123_456_789,
            1_790_000_000_999_999_999,
        ] {
            assert_eq!(ntp_to_unix_ns(unix_ns_to_ntp(ns)), ns, "{ns}");
        }
        // The Unix epoch is NTP second 2208988800 = 0x83aa7e80.
        assert_eq!(unix_ns_to_ntp(0), 0x83aa_7e80_0000_0000);
        // Half a second is a fraction of 2^31.
        assert_eq!(unix_ns_to_ntp(500_000_000) & 0xffff_ffff, 0x8000_0000);
    }

    #[test]
    fn record_layout_matches_the_template() {
        let spec_len: usize = postcard_fields(1)
            .iter()
            .map(|f| if f.len == VARLEN { 1 } else { f.len as usize })
            .sum();
        assert_eq!(spec_len, RECORD_FIXED_LEN);
        let p = sample_postcard(1, 12);
        let mut v = Vec::new();
        emit_record(&p, &mut v);
        assert_eq!(v.len(), record_len(&p));
        assert_eq!(
            v[95], 12,
            "the data length prefix follows the branch fields"
        );
    }

    #[test]
    fn template_set_bytes() {
        let mut v = Vec::new();
        emit_template_sets(32473, &mut v);
        // Set 2: header, template header, 7 IANA specifiers, 13 enterprise ones.
        let t_len = 4 + 4 + 7 * 4 + 13 * 8;
        assert_eq!(&v[0..4], &[0, 2, 0, t_len as u8]);
        assert_eq!(&v[4..8], &[1, 0, 0, 20]);
        // observationTimeNanoseconds/8
        assert_eq!(&v[8..12], &[0x01, 0x45, 0, 8]);
        // The first enterprise field: 0x8001, length 1, PEN 32473 = 0x7ed9.
        assert_eq!(&v[36..44], &[0x80, 0x01, 0, 1, 0, 0, 0x7e, 0xd9]);
        // ioamData: 0x800b, variable length.
        assert_eq!(
            &v[t_len - 8..t_len],
            &[0x80, 0x0b, 0xff, 0xff, 0, 0, 0x7e, 0xd9]
        );
        assert_eq!(be16(&v, t_len), OPTIONS_TEMPLATE_SET_ID);
        let sets = parse_template_set(&v[4..t_len], false).unwrap();
        assert_eq!(sets[0].fields, postcard_fields(32473).to_vec());
        let o_len = be16(&v, t_len + 2) as usize;
        assert_eq!(o_len % 4, 0);
        let o = parse_template_set(&v[t_len + 4..t_len + o_len], true).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].scope_field_count, 1);
        assert_eq!(o[0].fields, stats_fields().to_vec());
    }
}

//! Match fields (OXM `OFPXMC_OPENFLOW_BASIC`, NXM_0 and NXM_1) and `struct ofp_match`.
//!
//! A [`Field`] names what is matched, not how it is spelled on the wire: a tunnel id read
//! back as `OXM_OF_TUNNEL_ID` equals one sent as `NXM_NX_TUN_ID`. Emitting picks the
//! spelling Open vSwitch itself uses for OpenFlow 1.3 (OXM where one exists, else NXM_1),
//! so a flow read back from the switch decodes to exactly what was sent.

use super::{pad8, Error, Put, Reader, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// OXM class of the OpenFlow basic fields.
pub const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// Nicira NXM_0 (the original NXM fields).
pub const OFPXMC_NXM_0: u16 = 0x0000;
/// Nicira NXM_1 (registers, tunnel metadata, ...).
pub const OFPXMC_NXM_1: u16 = 0x0001;
/// `OFPMT_OXM`: the only match type of OpenFlow 1.3.
const OFPMT_OXM: u16 = 1;
/// Size of `struct ofp_match` before the OXM fields.
const OFP_MATCH_HEADER_LEN: usize = 4;

/// A field wyvern matches on or writes. Variant order is emit order: prerequisites
/// (eth_type before ip_proto before L4 ports) come first, as OVS checks them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    InPort,
    Metadata,
    /// NXM_NX_REG0..15 (32 bits each).
    Reg(u8),
    TunId,
    TunIpv4Src,
    TunIpv4Dst,
    EthDst,
    EthSrc,
    EthType,
    VlanVid,
    IpProto,
    /// NXM_NX_IP_TTL (no OXM basic field exists for it).
    IpTtl,
    Ipv4Src,
    Ipv4Dst,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    Icmpv4Type,
    Icmpv4Code,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
}

/// (field, width in bytes, OXM basic field, NXM_0 field, NXM_1 field)
type Def = (Field, u8, Option<u8>, Option<u8>, Option<u8>);

const FIXED_DEFS: &[Def] = &[
    (Field::InPort, 4, Some(0), Some(0), None),
    (Field::Metadata, 8, Some(2), None, None),
    (Field::TunId, 8, Some(38), None, Some(16)),
    (Field::TunIpv4Src, 4, None, None, Some(31)),
    (Field::TunIpv4Dst, 4, None, None, Some(32)),
    (Field::EthDst, 6, Some(3), Some(1), None),
    (Field::EthSrc, 6, Some(4), Some(2), None),
    (Field::EthType, 2, Some(5), Some(3), None),
    (Field::VlanVid, 2, Some(6), None, None),
    (Field::IpProto, 1, Some(10), Some(6), None),
    (Field::IpTtl, 1, None, None, Some(29)),
    (Field::Ipv4Src, 4, Some(11), Some(7), None),
    (Field::Ipv4Dst, 4, Some(12), Some(8), None),
    (Field::TcpSrc, 2, Some(13), Some(9), None),
    (Field::TcpDst, 2, Some(14), Some(10), None),
    (Field::UdpSrc, 2, Some(15), Some(11), None),
    (Field::UdpDst, 2, Some(16), Some(12), None),
    (Field::Icmpv4Type, 1, Some(19), Some(13), None),
    (Field::Icmpv4Code, 1, Some(20), Some(14), None),
    (Field::ArpOp, 2, Some(21), Some(15), None),
    (Field::ArpSpa, 4, Some(22), Some(16), None),
    (Field::ArpTpa, 4, Some(23), Some(17), None),
    (Field::ArpSha, 6, Some(24), None, Some(17)),
    (Field::ArpTha, 6, Some(25), None, Some(18)),
];

impl Field {
    fn def(self) -> Def {
        if let Field::Reg(n) = self {
            return (self, 4, None, None, Some(n));
        }
        FIXED_DEFS
            .iter()
            .copied()
            .find(|d| d.0 == self)
            .unwrap_or((self, 0, None, None, None))
    }

    /// Width of the field's value in bytes.
    pub fn width(self) -> usize {
        usize::from(self.def().1)
    }

    /// Width in bits.
    pub fn bits(self) -> u16 {
        u16::from(self.def().1) * 8
    }

    /// All-ones mask of the field's width.
    pub fn full_mask(self) -> u64 {
        match self.width() {
            0 => 0,
            w if w >= 8 => u64::MAX,
            w => (1u64 << (w * 8)) - 1,
        }
    }

    /// The (class, field) OVS uses for this field in OpenFlow 1.3.
    pub fn class_and_code(self) -> (u16, u8) {
        let (_, _, oxm, nxm0, nxm1) = self.def();
        match (oxm, nxm1, nxm0) {
            (Some(f), _, _) => (OFPXMC_OPENFLOW_BASIC, f),
            (None, Some(f), _) => (OFPXMC_NXM_1, f),
            (None, None, Some(f)) => (OFPXMC_NXM_0, f),
            (None, None, None) => (OFPXMC_NXM_1, 0x7f),
        }
    }

    /// The 32-bit OXM/NXM header of this field (`hasmask` clear), as NX actions carry it.
    pub fn header(self) -> u32 {
        let (class, code) = self.class_and_code();
        oxm_header(class, code, false, self.width())
    }

    /// Looks a wire (class, field) up; `None` for fields wyvern does not model.
    pub fn from_wire(class: u16, code: u8) -> Option<Field> {
        if class == OFPXMC_NXM_1 && code < 16 {
            return Some(Field::Reg(code));
        }
        FIXED_DEFS.iter().find_map(|&(f, _, oxm, nxm0, nxm1)| {
            let hit = match class {
                OFPXMC_OPENFLOW_BASIC => oxm == Some(code),
                OFPXMC_NXM_0 => nxm0 == Some(code),
                OFPXMC_NXM_1 => nxm1 == Some(code),
                _ => false,
            };
            hit.then_some(f)
        })
    }

    /// Decodes a 32-bit header (as NX actions carry it) to a field, ignoring `hasmask`.
    pub fn from_header(header: u32) -> Option<Field> {
        let class = (header >> 16) as u16;
        let code = ((header >> 9) & 0x7f) as u8;
        Field::from_wire(class, code)
    }

    /// The name ovs-ofctl uses.
    pub fn name(self) -> String {
        let s = match self {
            Field::InPort => "in_port",
            Field::Metadata => "metadata",
            Field::Reg(n) => return format!("reg{n}"),
            Field::TunId => "tun_id",
            Field::TunIpv4Src => "tun_src",
            Field::TunIpv4Dst => "tun_dst",
            Field::EthDst => "dl_dst",
            Field::EthSrc => "dl_src",
            Field::EthType => "dl_type",
            Field::VlanVid => "vlan_vid",
            Field::IpProto => "nw_proto",
            Field::IpTtl => "nw_ttl",
            Field::Ipv4Src => "nw_src",
            Field::Ipv4Dst => "nw_dst",
            Field::TcpSrc => "tcp_src",
            Field::TcpDst => "tcp_dst",
            Field::UdpSrc => "udp_src",
            Field::UdpDst => "udp_dst",
            Field::Icmpv4Type => "icmp_type",
            Field::Icmpv4Code => "icmp_code",
            Field::ArpOp => "arp_op",
            Field::ArpSpa => "arp_spa",
            Field::ArpTpa => "arp_tpa",
            Field::ArpSha => "arp_sha",
            Field::ArpTha => "arp_tha",
        };
        s.to_string()
    }

    /// Reads a big-endian value of this field's width from `bytes` (already length-checked).
    pub(crate) fn value_from(self, bytes: &[u8]) -> u64 {
        let v = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // NXM_0's in_port is 16 bits: map its reserved ports (0xfff8..) to OF1.3's.
        if self == Field::InPort && bytes.len() == 2 && v >= 0xff00 {
            return v | 0xffff_0000;
        }
        v
    }

    pub(crate) fn put_value(self, out: &mut Vec<u8>, v: u64) {
        let w = self.width();
        let bytes = v.to_be_bytes();
        out.extend_from_slice(&bytes[8 - w.min(8)..]);
    }

    /// Formats a value the way ovs-ofctl prints it.
    pub fn format_value(self, v: u64) -> String {
        match self {
            Field::EthDst | Field::EthSrc | Field::ArpSha | Field::ArpTha => {
                MacAddr::from_u64(v).to_string()
            }
            Field::Ipv4Src
            | Field::Ipv4Dst
            | Field::ArpSpa
            | Field::ArpTpa
            | Field::TunIpv4Src
            | Field::TunIpv4Dst => Ipv4Addr::from(v as u32).to_string(),
            Field::EthType | Field::Metadata | Field::TunId | Field::Reg(_) => format!("{v:#x}"),
            _ => v.to_string(),
        }
    }
}

pub(crate) fn oxm_header(class: u16, code: u8, masked: bool, width: usize) -> u32 {
    let len = if masked { width * 2 } else { width };
    (u32::from(class) << 16)
        | (u32::from(code & 0x7f) << 9)
        | (u32::from(masked) << 8)
        | (len as u32 & 0xff)
}

/// A field value of at most 64 bits (every field wyvern models fits).
pub type FieldValue = u64;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub fn to_u64(self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }
    pub fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(|| format!("bad MAC {s:?}"))?;
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC {s:?}"));
        }
        Ok(MacAddr(out))
    }
}

/// A match entry wyvern does not model, kept verbatim so it is neither lost nor misread.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawField {
    /// The 32-bit OXM header (class, field, hasmask, length).
    pub header: u32,
    /// The payload (value, then mask if `hasmask`; experimenter id first for class 0xffff).
    pub payload: Vec<u8>,
}

/// A flow match: each field at most once, with an optional mask, in canonical form
/// (value bits outside the mask cleared, an all-ones mask dropped, an all-zeros mask
/// meaning "not matched"), the form OVS stores and reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    fields: BTreeMap<Field, (FieldValue, Option<FieldValue>)>,
    unknown: Vec<RawField>,
}

impl Match {
    /// Matches every packet.
    pub fn new() -> Self {
        Match::default()
    }

    /// Adds `field == value`.
    pub fn with(mut self, field: Field, value: FieldValue) -> Self {
        self.insert(field, value, None);
        self
    }

    /// Adds `field & mask == value & mask`.
    pub fn with_masked(mut self, field: Field, value: FieldValue, mask: FieldValue) -> Self {
        self.insert(field, value, Some(mask));
        self
    }

    /// Inserts a field in canonical form (replacing an earlier value of the same field).
    pub fn insert(&mut self, field: Field, value: FieldValue, mask: Option<FieldValue>) {
        let full = field.full_mask();
        let value = value & full;
        match mask.map(|m| m & full) {
            None => {
                self.fields.insert(field, (value, None));
            }
            Some(0) => {
                self.fields.remove(&field);
            }
            Some(m) if m == full => {
                self.fields.insert(field, (value, None));
            }
            Some(m) => {
                self.fields.insert(field, (value & m, Some(m)));
            }
        }
    }

    pub fn get(&self, field: Field) -> Option<(FieldValue, Option<FieldValue>)> {
        self.fields.get(&field).copied()
    }

    /// The modelled fields, in emit order.
    pub fn fields(&self) -> impl Iterator<Item = (Field, FieldValue, Option<FieldValue>)> + '_ {
        self.fields.iter().map(|(f, (v, m))| (*f, *v, *m))
    }

    /// Entries this crate does not model (from a switch's reply).
    pub fn unknown(&self) -> &[RawField] {
        &self.unknown
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.unknown.is_empty()
    }

    // Typed builders for the fields the pipeline uses.
    pub fn in_port(self, port: u32) -> Self {
        self.with(Field::InPort, port.into())
    }
    pub fn metadata(self, v: u64) -> Self {
        self.with(Field::Metadata, v)
    }
    pub fn metadata_masked(self, v: u64, mask: u64) -> Self {
        self.with_masked(Field::Metadata, v, mask)
    }
    pub fn reg(self, n: u8, v: u32) -> Self {
        self.with(Field::Reg(n), v.into())
    }
    pub fn reg_masked(self, n: u8, v: u32, mask: u32) -> Self {
        self.with_masked(Field::Reg(n), v.into(), mask.into())
    }
    pub fn tun_id(self, v: u64) -> Self {
        self.with(Field::TunId, v)
    }
    pub fn tun_ipv4_dst(self, a: Ipv4Addr) -> Self {
        self.with(Field::TunIpv4Dst, u32::from(a).into())
    }
    pub fn tun_ipv4_src(self, a: Ipv4Addr) -> Self {
        self.with(Field::TunIpv4Src, u32::from(a).into())
    }
    pub fn eth_dst(self, m: MacAddr) -> Self {
        self.with(Field::EthDst, m.to_u64())
    }
    pub fn eth_dst_masked(self, m: MacAddr, mask: MacAddr) -> Self {
        self.with_masked(Field::EthDst, m.to_u64(), mask.to_u64())
    }
    pub fn eth_src(self, m: MacAddr) -> Self {
        self.with(Field::EthSrc, m.to_u64())
    }
    pub fn eth_src_masked(self, m: MacAddr, mask: MacAddr) -> Self {
        self.with_masked(Field::EthSrc, m.to_u64(), mask.to_u64())
    }
    pub fn eth_type(self, t: u16) -> Self {
        self.with(Field::EthType, t.into())
    }
    pub fn ip_proto(self, p: u8) -> Self {
        self.with(Field::IpProto, p.into())
    }
    pub fn ipv4_src(self, a: Ipv4Addr) -> Self {
        self.with(Field::Ipv4Src, u32::from(a).into())
    }
    pub fn ipv4_src_masked(self, a: Ipv4Addr, mask: Ipv4Addr) -> Self {
        self.with_masked(Field::Ipv4Src, u32::from(a).into(), u32::from(mask).into())
    }
    pub fn ipv4_dst(self, a: Ipv4Addr) -> Self {
        self.with(Field::Ipv4Dst, u32::from(a).into())
    }
    pub fn ipv4_dst_masked(self, a: Ipv4Addr, mask: Ipv4Addr) -> Self {
        self.with_masked(Field::Ipv4Dst, u32::from(a).into(), u32::from(mask).into())
    }
    /// `ipv4_dst` within a prefix (`prefix_len` 0..=32).
    pub fn ipv4_dst_prefix(self, a: Ipv4Addr, prefix_len: u8) -> Self {
        let mask = prefix_mask(prefix_len);
        self.with_masked(Field::Ipv4Dst, u32::from(a).into(), mask.into())
    }
    pub fn ipv4_src_prefix(self, a: Ipv4Addr, prefix_len: u8) -> Self {
        let mask = prefix_mask(prefix_len);
        self.with_masked(Field::Ipv4Src, u32::from(a).into(), mask.into())
    }
    pub fn udp_src(self, p: u16) -> Self {
        self.with(Field::UdpSrc, p.into())
    }
    pub fn udp_dst(self, p: u16) -> Self {
        self.with(Field::UdpDst, p.into())
    }
    pub fn tcp_src(self, p: u16) -> Self {
        self.with(Field::TcpSrc, p.into())
    }
    pub fn tcp_dst(self, p: u16) -> Self {
        self.with(Field::TcpDst, p.into())
    }
    pub fn icmpv4_type(self, t: u8) -> Self {
        self.with(Field::Icmpv4Type, t.into())
    }
    pub fn icmpv4_code(self, c: u8) -> Self {
        self.with(Field::Icmpv4Code, c.into())
    }
    pub fn arp_op(self, op: u16) -> Self {
        self.with(Field::ArpOp, op.into())
    }
    pub fn arp_spa(self, a: Ipv4Addr) -> Self {
        self.with(Field::ArpSpa, u32::from(a).into())
    }
    pub fn arp_tpa(self, a: Ipv4Addr) -> Self {
        self.with(Field::ArpTpa, u32::from(a).into())
    }
    pub fn arp_sha(self, m: MacAddr) -> Self {
        self.with(Field::ArpSha, m.to_u64())
    }
    pub fn arp_tha(self, m: MacAddr) -> Self {
        self.with(Field::ArpTha, m.to_u64())
    }

    /// Parses `struct ofp_match` including its trailing padding.
    pub fn parse(r: &mut Reader<'_>) -> Result<Match> {
        let mut hdr = *r;
        let mtype = hdr.u16("ofp_match.type")?;
        let len = usize::from(hdr.u16("ofp_match.length")?);
        if mtype != OFPMT_OXM {
            return Err(Error::BadValue {
                what: "ofp_match.type",
                value: mtype.into(),
            });
        }
        if len < OFP_MATCH_HEADER_LEN {
            return Err(Error::BadLength {
                what: "ofp_match.length",
                len,
            });
        }
        let mut whole = r.sub(pad8(len), "ofp_match")?;
        whole.skip(OFP_MATCH_HEADER_LEN, "ofp_match header")?;
        let oxms = whole.sub(len - OFP_MATCH_HEADER_LEN, "ofp_match oxm fields")?;
        Match::parse_oxms(oxms)
    }

    /// Parses a run of OXM/NXM entries with no surrounding header (as NXT_PACKET_IN2 has).
    pub fn parse_oxms(mut r: Reader<'_>) -> Result<Match> {
        let mut m = Match::new();
        while !r.is_empty() {
            let header = r.u32("oxm header")?;
            let class = (header >> 16) as u16;
            let code = ((header >> 9) & 0x7f) as u8;
            let masked = header & 0x100 != 0;
            let len = (header & 0xff) as usize;
            let payload = r.bytes(len, "oxm payload")?;
            let field = Field::from_wire(class, code);
            let w = field.map(Field::width).unwrap_or(0);
            // NXM_0 in_port is 16 bits wide on the wire.
            let wire_w = if class == OFPXMC_NXM_0 && field == Some(Field::InPort) {
                2
            } else {
                w
            };
            match field {
                Some(f) if len == wire_w * if masked { 2 } else { 1 } => {
                    let value = f.value_from(&payload[..wire_w]);
                    let mask = masked.then(|| f.value_from(&payload[wire_w..]));
                    m.insert(f, value, mask);
                }
                _ => m.unknown.push(RawField {
                    header,
                    payload: payload.to_vec(),
                }),
            }
        }
        Ok(m)
    }

    /// Emits the OXM entries only (no `ofp_match` header).
    pub fn emit_oxms(&self, out: &mut Vec<u8>) {
        for (&f, &(v, mask)) in &self.fields {
            let (class, code) = f.class_and_code();
            out.put_u32(oxm_header(class, code, mask.is_some(), f.width()));
            f.put_value(out, v);
            if let Some(mask) = mask {
                f.put_value(out, mask);
            }
        }
        for raw in &self.unknown {
            out.put_u32(raw.header);
            out.extend_from_slice(&raw.payload);
        }
    }

    /// Emits `struct ofp_match` with padding.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(OFPMT_OXM);
        out.put_u16(0);
        self.emit_oxms(out);
        let len = super::len16(out.len() - start);
        out.set_u16(start + 2, len);
        out.pad8_from(start);
    }
}

fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - u32::from(n)),
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (field, v, mask) in self.fields() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={}", field.name(), field.format_value(v))?;
            if let Some(m) = mask {
                write!(f, "/{}", field.format_value(m))?;
            }
        }
        for raw in &self.unknown {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "oxm({:#010x})", raw.header)?;
        }
        Ok(())
    }
}

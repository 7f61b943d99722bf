//! Actions: OpenFlow 1.3 (`output`, `group`, `set_field`, `dec_nw_ttl`) and Nicira
//! (`reg_move`, `reg_load`, `resubmit`, `controller`/`controller2`).
//!
//! Decoding yields one canonical form per behaviour, matching how OVS re-encodes a flow in
//! a stats reply: `output:CONTROLLER`, `NXAST_CONTROLLER` and `NXAST_CONTROLLER2` all become
//! [`Action::Controller`]; a full-width `NXAST_REG_LOAD` becomes [`Action::SetField`].

use super::field::oxm_header;
use super::{pad8, Error, Field, FieldValue, Put, Reader, Result};
use crate::PortNo;
use std::fmt;

const OFPAT_OUTPUT: u16 = 0;
const OFPAT_GROUP: u16 = 22;
const OFPAT_DEC_NW_TTL: u16 = 24;
const OFPAT_SET_FIELD: u16 = 25;
const OFPAT_EXPERIMENTER: u16 = 0xffff;
/// Nicira's experimenter id.
pub(crate) const NX_VENDOR_ID: u32 = 0x0000_2320;
const NXAST_RESUBMIT: u16 = 1;
const NXAST_REG_MOVE: u16 = 6;
const NXAST_REG_LOAD: u16 = 7;
const NXAST_RESUBMIT_TABLE: u16 = 14;
const NXAST_CONTROLLER: u16 = 20;
const NXAST_CONTROLLER2: u16 = 37;
const NXAC2PT_MAX_LEN: u16 = 0;
const NXAC2PT_CONTROLLER_ID: u16 = 1;
const NXAC2PT_REASON: u16 = 2;
const NXAC2PT_USERDATA: u16 = 3;
const NXAC2PT_PAUSE: u16 = 4;
/// `struct ofp_action_header`: type, len (and 4 bytes that each action uses its own way).
const ACTION_HEADER_LEN: usize = 4;
/// Size of `struct ofp_action_output`.
const OUTPUT_LEN: usize = 16;
/// 16-bit OFPP_IN_PORT as NXAST_RESUBMIT spells "no in_port change".
const OFPP10_IN_PORT: u16 = 0xfff8;
/// `OFPCML_NO_BUFFER`: send the whole packet.
pub const OFPCML_NO_BUFFER: u16 = 0xffff;
/// `OFPR_ACTION`: packet-in reason of a controller action.
pub const OFPR_ACTION: u8 = 1;

/// Bits `ofs..ofs+n_bits` of a field (as NX register actions address them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRange {
    pub field: Field,
    pub ofs: u16,
    pub n_bits: u16,
}

impl FieldRange {
    /// The whole field.
    pub fn full(field: Field) -> Self {
        FieldRange {
            field,
            ofs: 0,
            n_bits: field.bits(),
        }
    }
}

impl fmt::Display for FieldRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ofs == 0 && self.n_bits == self.field.bits() {
            write!(f, "{}[]", self.field.name())
        } else {
            let end = (self.ofs + self.n_bits).saturating_sub(1);
            write!(f, "{}[{}..{}]", self.field.name(), self.ofs, end)
        }
    }
}

/// A controller action with everything Nicira's `controller2` can carry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ControllerAction {
    /// Bytes of the packet to send; `OFPCML_NO_BUFFER` (0xffff) sends all.
    pub max_len: u16,
    /// Which controller connection gets it (0: all).
    pub controller_id: u16,
    /// Packet-in reason (`OFPR_ACTION` = 1 by default).
    pub reason: u8,
    /// Opaque bytes delivered in `NXT_PACKET_IN2` (e.g. a logical port key).
    pub userdata: Vec<u8>,
    /// Pause the pipeline for continuation (not used by wyvern yet).
    pub pause: bool,
}

impl Default for ControllerAction {
    fn default() -> Self {
        ControllerAction {
            max_len: OFPCML_NO_BUFFER,
            controller_id: 0,
            reason: OFPR_ACTION,
            userdata: Vec::new(),
            pause: false,
        }
    }
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `output:PORT` (for `CONTROLLER` use [`Action::Controller`]).
    Output { port: PortNo, max_len: u16 },
    /// `group:ID`.
    Group(u32),
    /// `set_field:VALUE->FIELD` (whole field).
    SetField { field: Field, value: FieldValue },
    /// `load:VALUE->FIELD[ofs..]` (`NXAST_REG_LOAD`, part of a field).
    Load { dst: FieldRange, value: u64 },
    /// `dec_ttl` (`OFPAT_DEC_NW_TTL`).
    DecNwTtl,
    /// `move:SRC->DST` (`NXAST_REG_MOVE`).
    RegMove { src: FieldRange, dst: FieldRange },
    /// `resubmit(in_port,table)`; `None` keeps the in_port / the current table.
    Resubmit {
        in_port: Option<PortNo>,
        table: Option<u8>,
    },
    /// `controller(...)`.
    Controller(ControllerAction),
    /// An action this crate does not model, kept verbatim.
    Unknown { action_type: u16, body: Vec<u8> },
}

impl Action {
    /// `output:port`, or the canonical controller action for `PortNo::CONTROLLER`.
    pub fn output(port: PortNo) -> Action {
        if port == PortNo::CONTROLLER {
            return Action::Controller(ControllerAction::default());
        }
        Action::Output { port, max_len: 0 }
    }

    /// A controller action carrying `userdata`.
    pub fn controller_with_userdata(userdata: Vec<u8>) -> Action {
        Action::Controller(ControllerAction {
            userdata,
            ..ControllerAction::default()
        })
    }

    /// The form decoding yields, so desired flows compare equal to read-back ones.
    pub fn canonical(self) -> Action {
        match self {
            Action::Output { port, max_len } if port == PortNo::CONTROLLER => {
                Action::Controller(ControllerAction {
                    max_len,
                    ..ControllerAction::default()
                })
            }
            Action::Load { dst, value }
                if dst.ofs == 0 && dst.n_bits == dst.field.bits() && dst.n_bits > 0 =>
            {
                Action::SetField {
                    field: dst.field,
                    value,
                }
            }
            Action::SetField { field, value } => Action::SetField {
                field,
                value: value & field.full_mask(),
            },
            other => other,
        }
    }

    /// Parses a run of actions filling the whole reader.
    pub fn parse_list(mut r: Reader<'_>) -> Result<Vec<Action>> {
        let mut out = Vec::new();
        while !r.is_empty() {
            let mut peek = r;
            peek.u16("action type")?;
            let len = usize::from(peek.u16("action length")?);
            if len < 8 || len % 8 != 0 {
                return Err(Error::BadLength {
                    what: "ofp_action_header.len",
                    len,
                });
            }
            let a = r.sub(len, "action")?;
            out.push(Action::parse(a)?);
        }
        Ok(out)
    }

    fn parse(mut r: Reader<'_>) -> Result<Action> {
        let atype = r.u16("action type")?;
        r.u16("action length")?;
        let body = r.rest();
        let unknown = || Action::Unknown {
            action_type: atype,
            body: body.to_vec(),
        };
        match atype {
            OFPAT_OUTPUT => {
                let port = PortNo(r.u32("output.port")?);
                let max_len = r.u16("output.max_len")?;
                Ok(Action::Output { port, max_len }.canonical())
            }
            OFPAT_GROUP => Ok(Action::Group(r.u32("group.group_id")?)),
            OFPAT_DEC_NW_TTL => Ok(Action::DecNwTtl),
            OFPAT_SET_FIELD => {
                let header = r.u32("set_field oxm header")?;
                let len = (header & 0xff) as usize;
                let masked = header & 0x100 != 0;
                match Field::from_header(header) {
                    Some(f) if !masked && len == f.width() => {
                        let v = f.value_from(r.bytes(len, "set_field value")?);
                        Ok(Action::SetField { field: f, value: v })
                    }
                    _ => Ok(unknown()),
                }
            }
            OFPAT_EXPERIMENTER => {
                let vendor = r.u32("experimenter id")?;
                if vendor != NX_VENDOR_ID {
                    return Ok(unknown());
                }
                let subtype = r.u16("nx action subtype")?;
                Ok(parse_nx(subtype, r)?.unwrap_or_else(unknown))
            }
            _ => Ok(unknown()),
        }
    }

    /// Emits a list of actions.
    pub fn emit_list(actions: &[Action], out: &mut Vec<u8>) {
        for a in actions {
            a.emit(out);
        }
    }

    /// Emits one action, padded to 8 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Action::Output { port, max_len } => emit_output(out, *port, *max_len),
            Action::Group(id) => {
                out.put_u16(OFPAT_GROUP);
                out.put_u16(8);
                out.put_u32(*id);
            }
            Action::DecNwTtl => {
                out.put_u16(OFPAT_DEC_NW_TTL);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Action::SetField { field, value } => {
                out.put_u16(OFPAT_SET_FIELD);
                out.put_u16(0);
                let (class, code) = field.class_and_code();
                out.put_u32(oxm_header(class, code, false, field.width()));
                field.put_value(out, *value);
            }
            Action::Load { dst, value } => {
                nx_header(out, NXAST_REG_LOAD);
                out.put_u16((dst.ofs << 6) | (dst.n_bits.saturating_sub(1) & 0x3f));
                out.put_u32(dst.field.header());
                out.put_u64(*value);
            }
            Action::RegMove { src, dst } => {
                nx_header(out, NXAST_REG_MOVE);
                out.put_u16(src.n_bits);
                out.put_u16(src.ofs);
                out.put_u16(dst.ofs);
                out.put_u32(src.field.header());
                out.put_u32(dst.field.header());
            }
            Action::Resubmit { in_port, table } => {
                nx_header(out, NXAST_RESUBMIT_TABLE);
                out.put_u16(in_port.map_or(OFPP10_IN_PORT, |p| p.0 as u16));
                out.put_u8(table.unwrap_or(0xff));
                out.put_zeros(3);
            }
            Action::Controller(c) => emit_controller(out, c),
            Action::Unknown { action_type, body } => {
                out.put_u16(*action_type);
                out.put_u16(0);
                out.extend_from_slice(body);
            }
        }
        out.pad8_from(start);
        let len = super::len16(out.len() - start);
        out.set_u16(start + 2, len);
    }
}

fn emit_output(out: &mut Vec<u8>, port: PortNo, max_len: u16) {
    out.put_u16(OFPAT_OUTPUT);
    out.put_u16(OUTPUT_LEN as u16);
    out.put_u32(port.0);
    out.put_u16(max_len);
    out.put_zeros(6);
}

fn nx_header(out: &mut Vec<u8>, subtype: u16) {
    out.put_u16(OFPAT_EXPERIMENTER);
    out.put_u16(0);
    out.put_u32(NX_VENDOR_ID);
    out.put_u16(subtype);
}

/// Picks the smallest encoding OVS would pick for the same controller action.
fn emit_controller(out: &mut Vec<u8>, c: &ControllerAction) {
    if c.userdata.is_empty() && !c.pause {
        if c.controller_id == 0 && c.reason == OFPR_ACTION {
            emit_output(out, PortNo::CONTROLLER, c.max_len);
            return;
        }
        nx_header(out, NXAST_CONTROLLER);
        out.put_u16(c.max_len);
        out.put_u16(c.controller_id);
        out.put_u8(c.reason);
        out.put_u8(0);
        return;
    }
    nx_header(out, NXAST_CONTROLLER2);
    out.put_zeros(6);
    let prop = |out: &mut Vec<u8>, ptype: u16, body: &[u8]| {
        let s = out.len();
        out.put_u16(ptype);
        out.put_u16(super::len16(ACTION_HEADER_LEN + body.len()));
        out.extend_from_slice(body);
        out.pad8_from(s);
    };
    if c.max_len != OFPCML_NO_BUFFER {
        prop(out, NXAC2PT_MAX_LEN, &c.max_len.to_be_bytes());
    }
    if c.controller_id != 0 {
        prop(out, NXAC2PT_CONTROLLER_ID, &c.controller_id.to_be_bytes());
    }
    if c.reason != OFPR_ACTION {
        prop(out, NXAC2PT_REASON, &[c.reason]);
    }
    if !c.userdata.is_empty() {
        prop(out, NXAC2PT_USERDATA, &c.userdata);
    }
    if c.pause {
        prop(out, NXAC2PT_PAUSE, &[]);
    }
}

/// Parses the body of a Nicira action after its subtype; `None` for subtypes not modelled.
fn parse_nx(subtype: u16, mut r: Reader<'_>) -> Result<Option<Action>> {
    let range = |header: u32, ofs: u16, n_bits: u16| {
        Field::from_header(header).map(|field| FieldRange { field, ofs, n_bits })
    };
    Ok(match subtype {
        NXAST_RESUBMIT | NXAST_RESUBMIT_TABLE => {
            let in_port = r.u16("resubmit.in_port")?;
            let table = if subtype == NXAST_RESUBMIT_TABLE {
                r.u8("resubmit.table")?
            } else {
                0xff
            };
            Some(Action::Resubmit {
                in_port: (in_port != OFPP10_IN_PORT).then(|| PortNo::from_16(in_port)),
                table: (table != 0xff).then_some(table),
            })
        }
        NXAST_REG_MOVE => {
            let n_bits = r.u16("reg_move.n_bits")?;
            let src_ofs = r.u16("reg_move.src_ofs")?;
            let dst_ofs = r.u16("reg_move.dst_ofs")?;
            let src = r.u32("reg_move.src")?;
            let dst = r.u32("reg_move.dst")?;
            match (range(src, src_ofs, n_bits), range(dst, dst_ofs, n_bits)) {
                (Some(src), Some(dst)) => Some(Action::RegMove { src, dst }),
                _ => None,
            }
        }
        NXAST_REG_LOAD => {
            let ofs_nbits = r.u16("reg_load.ofs_nbits")?;
            let dst = r.u32("reg_load.dst")?;
            let value = r.u64("reg_load.value")?;
            range(dst, ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)
                .map(|dst| Action::Load { dst, value }.canonical())
        }
        NXAST_CONTROLLER => {
            let max_len = r.u16("controller.max_len")?;
            let controller_id = r.u16("controller.controller_id")?;
            let reason = r.u8("controller.reason")?;
            Some(Action::Controller(ControllerAction {
                max_len,
                controller_id,
                reason,
                ..ControllerAction::default()
            }))
        }
        NXAST_CONTROLLER2 => {
            r.skip(6, "controller2 padding")?;
            let mut c = ControllerAction::default();
            while !r.is_empty() {
                let mut peek = r;
                let ptype = peek.u16("controller2 property type")?;
                let plen = usize::from(peek.u16("controller2 property length")?);
                if plen < ACTION_HEADER_LEN {
                    return Err(Error::BadLength {
                        what: "controller2 property length",
                        len: plen,
                    });
                }
                let mut p = r.sub(plen, "controller2 property")?;
                // Trailing padding of the property (may be absent on the last one).
                let padding = pad8(plen) - plen;
                r.skip(padding.min(r.remaining()), "controller2 property padding")?;
                p.skip(ACTION_HEADER_LEN, "controller2 property header")?;
                match ptype {
                    NXAC2PT_MAX_LEN => c.max_len = p.u16("controller2 max_len")?,
                    NXAC2PT_CONTROLLER_ID => c.controller_id = p.u16("controller2 id")?,
                    NXAC2PT_REASON => c.reason = p.u8("controller2 reason")?,
                    NXAC2PT_USERDATA => c.userdata = p.rest().to_vec(),
                    NXAC2PT_PAUSE => c.pause = true,
                    _ => {}
                }
            }
            Some(Action::Controller(c))
        }
        _ => None,
    })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output { port, .. } => write!(f, "output:{port}"),
            Action::Group(id) => write!(f, "group:{id}"),
            Action::SetField { field, value } => {
                write!(
                    f,
                    "set_field:{}->{}",
                    field.format_value(*value),
                    field.name()
                )
            }
            Action::Load { dst, value } => write!(f, "load:{value:#x}->{dst}"),
            Action::DecNwTtl => f.write_str("dec_ttl"),
            Action::RegMove { src, dst } => write!(f, "move:{src}->{dst}"),
            Action::Resubmit { in_port, table } => {
                let p = in_port.map(|p| p.to_string()).unwrap_or_default();
                let t = table.map(|t| t.to_string()).unwrap_or_default();
                write!(f, "resubmit({p},{t})")
            }
            Action::Controller(c) => {
                write!(
                    f,
                    "controller(max_len={},id={},reason={}",
                    c.max_len, c.controller_id, c.reason
                )?;
                if !c.userdata.is_empty() {
                    f.write_str(",userdata=")?;
                    for (i, b) in c.userdata.iter().enumerate() {
                        if i > 0 {
                            f.write_str(".")?;
                        }
                        write!(f, "{b:02x}")?;
                    }
                }
                if c.pause {
                    f.write_str(",pause")?;
                }
                f.write_str(")")
            }
            Action::Unknown { action_type, .. } => write!(f, "unknown_action({action_type:#x})"),
        }
    }
}

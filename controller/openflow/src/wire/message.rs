//! OpenFlow 1.3 messages (and the Nicira/ONF experimenter messages wyvern uses) as one
//! parsed representation, [`Message`], with `parse` from a [`Frame`] and `emit`.

use super::frame::{finish_header, start_header};
use super::{Action, Error, Frame, Instructions, Match, Put, Reader, Result};
use crate::PortNo;
use std::fmt;

// Message types (ofp_type).
const OFPT_HELLO: u8 = 0;
const OFPT_ERROR: u8 = 1;
const OFPT_ECHO_REQUEST: u8 = 2;
const OFPT_ECHO_REPLY: u8 = 3;
const OFPT_EXPERIMENTER: u8 = 4;
const OFPT_FEATURES_REQUEST: u8 = 5;
const OFPT_FEATURES_REPLY: u8 = 6;
const OFPT_PACKET_IN: u8 = 10;
const OFPT_PACKET_OUT: u8 = 13;
const OFPT_FLOW_MOD: u8 = 14;
const OFPT_GROUP_MOD: u8 = 15;
const OFPT_MULTIPART_REQUEST: u8 = 18;
const OFPT_MULTIPART_REPLY: u8 = 19;
const OFPT_BARRIER_REQUEST: u8 = 20;
const OFPT_BARRIER_REPLY: u8 = 21;
const OFPT_ROLE_REQUEST: u8 = 24;
const OFPT_ROLE_REPLY: u8 = 25;

const OFPHET_VERSIONBITMAP: u16 = 1;
const OFPET_EXPERIMENTER: u16 = 0xffff;

const OFPMP_FLOW: u16 = 1;
const OFPMP_GROUP_DESC: u16 = 7;
/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`.
pub const OFPMPF_MORE: u16 = 1;

/// Nicira experimenter id (messages and actions).
pub const NX_EXPERIMENTER_ID: u32 = 0x0000_2320;
/// ONF experimenter id (EXT-230 bundles in OpenFlow 1.3).
pub const ONF_EXPERIMENTER_ID: u32 = 0x4f4e_4600;
const NXT_SET_PACKET_IN_FORMAT: u32 = 16;
const NXT_PACKET_IN2: u32 = 30;
const ONFT_BUNDLE_CONTROL: u32 = 2300;
const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

const NXPINT_PACKET: u16 = 0;
const NXPINT_FULL_LEN: u16 = 1;
const NXPINT_BUFFER_ID: u16 = 2;
const NXPINT_TABLE_ID: u16 = 3;
const NXPINT_COOKIE: u16 = 4;
const NXPINT_REASON: u16 = 5;
const NXPINT_METADATA: u16 = 6;
const NXPINT_USERDATA: u16 = 7;

/// `OFP_NO_BUFFER`.
pub const OFP_NO_BUFFER: u32 = 0xffff_ffff;
/// `OFPG_ANY`: no group filter.
pub const OFPG_ANY: u32 = 0xffff_ffff;
/// `OFPTT_ALL`: every table (flow stats, delete).
pub const OFPTT_ALL: u8 = 0xff;

/// Flow-mod flags (`ofp_flow_mod_flags`).
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
    /// The flags a switch keeps with a flow and reports in flow stats.
    pub const PERSISTENT: u16 = SEND_FLOW_REM | NO_PKT_COUNTS | NO_BYT_COUNTS;
}

/// Bundle control types and flags (OpenFlow 1.4 values, same in ONF EXT-230).
pub mod bundle {
    pub const OPEN_REQUEST: u16 = 0;
    pub const OPEN_REPLY: u16 = 1;
    pub const CLOSE_REQUEST: u16 = 2;
    pub const CLOSE_REPLY: u16 = 3;
    pub const COMMIT_REQUEST: u16 = 4;
    pub const COMMIT_REPLY: u16 = 5;
    pub const DISCARD_REQUEST: u16 = 6;
    pub const DISCARD_REPLY: u16 = 7;
    pub const FLAG_ATOMIC: u16 = 1;
    pub const FLAG_ORDERED: u16 = 2;
}

/// Sizes of fixed parts, after the 8-byte ofp_header.
const FEATURES_REPLY_LEN: usize = 24;
const FLOW_MOD_FIXED_LEN: usize = 40;
const GROUP_MOD_FIXED_LEN: usize = 8;
const BUCKET_FIXED_LEN: usize = 16;
const PACKET_IN_FIXED_LEN: usize = 16;
const PACKET_OUT_FIXED_LEN: usize = 16;
const MULTIPART_HEADER_LEN: usize = 8;
const FLOW_STATS_REQUEST_FIXED_LEN: usize = 32;
const FLOW_STATS_FIXED_LEN: usize = 48;
const GROUP_DESC_FIXED_LEN: usize = 8;
const ERROR_FIXED_LEN: usize = 4;
const EXPERIMENTER_HEADER_LEN: usize = 8;

/// One parsed OpenFlow message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// HELLO with the versions of its version bitmap (empty: no bitmap element).
    Hello {
        versions: Vec<u8>,
    },
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    FeaturesRequest,
    FeaturesReply(FeaturesReply),
    /// OFPT_PACKET_IN or NXT_PACKET_IN2 (see [`PacketIn::format`]).
    PacketIn(PacketIn),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    RoleRequest(Role),
    RoleReply(Role),
    /// NXT_SET_PACKET_IN_FORMAT (0 = OpenFlow, 2 = NXT_PACKET_IN2).
    SetPacketInFormat(u32),
    /// ONFT_BUNDLE_CONTROL.
    BundleControl(BundleControl),
    /// ONFT_BUNDLE_ADD_MESSAGE; the inner message carries the outer xid.
    BundleAdd(BundleAdd),
    /// An experimenter message not modelled above.
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A message type not modelled (port status, flow removed, ...), body kept.
    Unknown {
        msg_type: u8,
        body: Vec<u8>,
    },
}

/// OFPT_ERROR, with the experimenter form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub err_type: u16,
    pub code: u16,
    /// Set for `OFPET_EXPERIMENTER` (type 0xffff); `code` is then the exp_type.
    pub experimenter: Option<u32>,
    /// The start of the request that failed (OVS sends the whole request).
    pub data: Vec<u8>,
}

impl ErrorMsg {
    /// The failed request, decoded, if the switch sent enough of it.
    pub fn failed_request(&self) -> Option<Message> {
        Frame::new_checked(&self.data)
            .ok()
            .and_then(|f| Message::parse(&f).ok())
    }
}

impl fmt::Display for ErrorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tname = match self.err_type {
            0 => "HELLO_FAILED",
            1 => "BAD_REQUEST",
            2 => "BAD_ACTION",
            3 => "BAD_INSTRUCTION",
            4 => "BAD_MATCH",
            5 => "FLOW_MOD_FAILED",
            6 => "GROUP_MOD_FAILED",
            OFPET_EXPERIMENTER => "EXPERIMENTER",
            _ => "OTHER",
        };
        write!(f, "OFPET_{tname}({}) code {}", self.err_type, self.code)?;
        if let Some(e) = self.experimenter {
            write!(f, " experimenter {e:#x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesReply {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
}

/// Which wire form a packet-in came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketInFormat {
    /// OFPT_PACKET_IN (OpenFlow 1.3).
    Standard,
    /// NXT_PACKET_IN2 (carries controller userdata).
    Nx2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub format: PacketInFormat,
    pub buffer_id: u32,
    pub total_len: u32,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// Pipeline metadata: in_port, registers, tunnel fields, metadata.
    pub match_: Match,
    /// The `userdata` of the controller action (NXT_PACKET_IN2 only).
    pub userdata: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: PortNo,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

impl FlowModCommand {
    fn to_wire(self) -> u8 {
        match self {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
        }
    }
    fn from_wire(v: u8) -> Result<Self> {
        Ok(match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            _ => {
                return Err(Error::BadValue {
                    what: "flow_mod.command",
                    value: v.into(),
                })
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: PortNo,
    pub out_group: u32,
    pub flags: u16,
    pub match_: Match,
    pub instructions: Instructions,
}

impl FlowMod {
    /// A flow-mod with no filters (out_port/out_group ANY, no buffer).
    pub fn new(command: FlowModCommand, table_id: u8, priority: u16, match_: Match) -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id,
            command,
            idle_timeout: 0,
            hard_timeout: 0,
            priority,
            buffer_id: OFP_NO_BUFFER,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            flags: 0,
            match_,
            instructions: Instructions::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupModCommand {
    Add,
    Modify,
    Delete,
}

/// `ofp_group_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupType {
    All,
    Select,
    Indirect,
    FastFailover,
}

impl GroupType {
    fn from_wire(v: u8) -> Result<Self> {
        Ok(match v {
            0 => GroupType::All,
            1 => GroupType::Select,
            2 => GroupType::Indirect,
            3 => GroupType::FastFailover,
            _ => {
                return Err(Error::BadValue {
                    what: "group type",
                    value: v.into(),
                })
            }
        })
    }
    fn to_wire(self) -> u8 {
        match self {
            GroupType::All => 0,
            GroupType::Select => 1,
            GroupType::Indirect => 2,
            GroupType::FastFailover => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    pub weight: u16,
    pub watch_port: PortNo,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Bucket {
    /// A bucket of an ALL group: no weight, nothing watched.
    pub fn all(actions: Vec<Action>) -> Self {
        Bucket {
            weight: 0,
            watch_port: PortNo::ANY,
            watch_group: OFPG_ANY,
            actions,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// One entry of an OFPMP_GROUP_DESC reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: PortNo,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub match_: Match,
}

impl FlowStatsRequest {
    /// Every flow of every table.
    pub fn all() -> Self {
        FlowStatsRequest {
            table_id: OFPTT_ALL,
            out_port: PortNo::ANY,
            out_group: OFPG_ANY,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::new(),
        }
    }
}

/// One entry of an OFPMP_FLOW reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub match_: Match,
    pub instructions: Instructions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Flow(FlowStatsRequest),
    GroupDesc,
    Unknown { mp_type: u16, body: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    pub flags: u16,
    pub body: MultipartRequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    Flow(Vec<FlowStats>),
    GroupDesc(Vec<GroupDesc>),
    Unknown { mp_type: u16, body: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// `OFPMPF_MORE` set: more replies with the same xid follow.
    pub flags: u16,
    pub body: MultipartReplyBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub role: u32,
    pub generation_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleControl {
    pub bundle_id: u32,
    pub ctrl_type: u16,
    pub flags: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAdd {
    pub bundle_id: u32,
    pub flags: u16,
    pub message: Box<Message>,
}

impl Message {
    /// Parses one message. Fails only on malformed input; unknown kinds become
    /// [`Message::Unknown`] / [`Message::Experimenter`].
    pub fn parse(frame: &Frame<'_>) -> Result<Message> {
        Self::parse_depth(frame, 0)
    }

    fn parse_depth(frame: &Frame<'_>, depth: u8) -> Result<Message> {
        let mut r = Reader::new(frame.body());
        Ok(match frame.msg_type() {
            OFPT_HELLO => Message::Hello {
                versions: parse_hello(r)?,
            },
            OFPT_ERROR => {
                let err_type = r.u16("error.type")?;
                let code = r.u16("error.code")?;
                let experimenter = if err_type == OFPET_EXPERIMENTER {
                    Some(r.u32("error.experimenter")?)
                } else {
                    None
                };
                Message::Error(ErrorMsg {
                    err_type,
                    code,
                    experimenter,
                    data: r.rest().to_vec(),
                })
            }
            OFPT_ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
            OFPT_ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
            OFPT_FEATURES_REQUEST => Message::FeaturesRequest,
            OFPT_FEATURES_REPLY => {
                let datapath_id = r.u64("features.datapath_id")?;
                let n_buffers = r.u32("features.n_buffers")?;
                let n_tables = r.u8("features.n_tables")?;
                let auxiliary_id = r.u8("features.auxiliary_id")?;
                r.skip(2, "features padding")?;
                let capabilities = r.u32("features.capabilities")?;
                r.skip(4, "features.reserved")?;
                Message::FeaturesReply(FeaturesReply {
                    datapath_id,
                    n_buffers,
                    n_tables,
                    auxiliary_id,
                    capabilities,
                })
            }
            OFPT_PACKET_IN => {
                let buffer_id = r.u32("packet_in.buffer_id")?;
                let total_len = r.u16("packet_in.total_len")?.into();
                let reason = r.u8("packet_in.reason")?;
                let table_id = r.u8("packet_in.table_id")?;
                let cookie = r.u64("packet_in.cookie")?;
                let match_ = Match::parse(&mut r)?;
                r.skip(2, "packet_in padding")?;
                Message::PacketIn(PacketIn {
                    format: PacketInFormat::Standard,
                    buffer_id,
                    total_len,
                    reason,
                    table_id,
                    cookie,
                    match_,
                    userdata: None,
                    data: r.rest().to_vec(),
                })
            }
            OFPT_PACKET_OUT => {
                let buffer_id = r.u32("packet_out.buffer_id")?;
                let in_port = PortNo(r.u32("packet_out.in_port")?);
                let actions_len = usize::from(r.u16("packet_out.actions_len")?);
                r.skip(6, "packet_out padding")?;
                let actions = Action::parse_list(r.sub(actions_len, "packet_out.actions")?)?;
                Message::PacketOut(PacketOut {
                    buffer_id,
                    in_port,
                    actions,
                    data: r.rest().to_vec(),
                })
            }
            OFPT_FLOW_MOD => {
                let cookie = r.u64("flow_mod.cookie")?;
                let cookie_mask = r.u64("flow_mod.cookie_mask")?;
                let table_id = r.u8("flow_mod.table_id")?;
                let command = FlowModCommand::from_wire(r.u8("flow_mod.command")?)?;
                let idle_timeout = r.u16("flow_mod.idle_timeout")?;
                let hard_timeout = r.u16("flow_mod.hard_timeout")?;
                let priority = r.u16("flow_mod.priority")?;
                let buffer_id = r.u32("flow_mod.buffer_id")?;
                let out_port = PortNo(r.u32("flow_mod.out_port")?);
                let out_group = r.u32("flow_mod.out_group")?;
                let flags = r.u16("flow_mod.flags")?;
                r.skip(2, "flow_mod padding")?;
                let match_ = Match::parse(&mut r)?;
                let instructions = Instructions::parse(r)?;
                Message::FlowMod(FlowMod {
                    cookie,
                    cookie_mask,
                    table_id,
                    command,
                    idle_timeout,
                    hard_timeout,
                    priority,
                    buffer_id,
                    out_port,
                    out_group,
                    flags,
                    match_,
                    instructions,
                })
            }
            OFPT_GROUP_MOD => {
                let command = match r.u16("group_mod.command")? {
                    0 => GroupModCommand::Add,
                    1 => GroupModCommand::Modify,
                    2 => GroupModCommand::Delete,
                    v => {
                        return Err(Error::BadValue {
                            what: "group_mod.command",
                            value: v.into(),
                        })
                    }
                };
                let group_type = GroupType::from_wire(r.u8("group_mod.type")?)?;
                r.skip(1, "group_mod padding")?;
                let group_id = r.u32("group_mod.group_id")?;
                Message::GroupMod(GroupMod {
                    command,
                    group_type,
                    group_id,
                    buckets: parse_buckets(r)?,
                })
            }
            OFPT_MULTIPART_REQUEST => {
                let mp_type = r.u16("multipart.type")?;
                let flags = r.u16("multipart.flags")?;
                r.skip(4, "multipart padding")?;
                let body = match mp_type {
                    OFPMP_FLOW => {
                        let table_id = r.u8("flow_stats_request.table_id")?;
                        r.skip(3, "flow_stats_request padding")?;
                        let out_port = PortNo(r.u32("flow_stats_request.out_port")?);
                        let out_group = r.u32("flow_stats_request.out_group")?;
                        r.skip(4, "flow_stats_request padding")?;
                        let cookie = r.u64("flow_stats_request.cookie")?;
                        let cookie_mask = r.u64("flow_stats_request.cookie_mask")?;
                        let match_ = Match::parse(&mut r)?;
                        MultipartRequestBody::Flow(FlowStatsRequest {
                            table_id,
                            out_port,
                            out_group,
                            cookie,
                            cookie_mask,
                            match_,
                        })
                    }
                    OFPMP_GROUP_DESC => MultipartRequestBody::GroupDesc,
                    _ => MultipartRequestBody::Unknown {
                        mp_type,
                        body: r.rest().to_vec(),
                    },
                };
                Message::MultipartRequest(MultipartRequest { flags, body })
            }
            OFPT_MULTIPART_REPLY => {
                let mp_type = r.u16("multipart.type")?;
                let flags = r.u16("multipart.flags")?;
                r.skip(4, "multipart padding")?;
                let body = match mp_type {
                    OFPMP_FLOW => MultipartReplyBody::Flow(parse_flow_stats(r)?),
                    OFPMP_GROUP_DESC => MultipartReplyBody::GroupDesc(parse_group_desc(r)?),
                    _ => MultipartReplyBody::Unknown {
                        mp_type,
                        body: r.rest().to_vec(),
                    },
                };
                Message::MultipartReply(MultipartReply { flags, body })
            }
            OFPT_BARRIER_REQUEST => Message::BarrierRequest,
            OFPT_BARRIER_REPLY => Message::BarrierReply,
            t @ (OFPT_ROLE_REQUEST | OFPT_ROLE_REPLY) => {
                let role = r.u32("role.role")?;
                r.skip(4, "role padding")?;
                let generation_id = r.u64("role.generation_id")?;
                let role = Role {
                    role,
                    generation_id,
                };
                if t == OFPT_ROLE_REQUEST {
                    Message::RoleRequest(role)
                } else {
                    Message::RoleReply(role)
                }
            }
            OFPT_EXPERIMENTER => parse_experimenter(frame, r, depth)?,
            msg_type => Message::Unknown {
                msg_type,
                body: r.rest().to_vec(),
            },
        })
    }

    /// Appends the encoded message with transaction id `xid`.
    pub fn emit(&self, xid: u32, out: &mut Vec<u8>) {
        let start = start_header(out, self.msg_type(), xid);
        match self {
            Message::Hello { versions } => {
                if !versions.is_empty() {
                    let mut bitmap = 0u32;
                    for v in versions {
                        if *v < 32 {
                            bitmap |= 1 << v;
                        }
                    }
                    out.put_u16(OFPHET_VERSIONBITMAP);
                    out.put_u16(8);
                    out.put_u32(bitmap);
                }
            }
            Message::Error(e) => {
                out.put_u16(e.err_type);
                out.put_u16(e.code);
                if let Some(x) = e.experimenter {
                    out.put_u32(x);
                }
                out.extend_from_slice(&e.data);
            }
            Message::EchoRequest(d) | Message::EchoReply(d) => out.extend_from_slice(d),
            Message::FeaturesRequest | Message::BarrierRequest | Message::BarrierReply => {}
            Message::FeaturesReply(f) => {
                out.put_u64(f.datapath_id);
                out.put_u32(f.n_buffers);
                out.put_u8(f.n_tables);
                out.put_u8(f.auxiliary_id);
                out.put_zeros(2);
                out.put_u32(f.capabilities);
                out.put_u32(0);
            }
            Message::PacketIn(p) => emit_packet_in(p, out),
            Message::PacketOut(p) => {
                out.put_u32(p.buffer_id);
                out.put_u32(p.in_port.0);
                let len_at = out.len();
                out.put_u16(0);
                out.put_zeros(6);
                let a = out.len();
                Action::emit_list(&p.actions, out);
                let alen = super::len16(out.len() - a);
                out.set_u16(len_at, alen);
                out.extend_from_slice(&p.data);
            }
            Message::FlowMod(f) => {
                out.put_u64(f.cookie);
                out.put_u64(f.cookie_mask);
                out.put_u8(f.table_id);
                out.put_u8(f.command.to_wire());
                out.put_u16(f.idle_timeout);
                out.put_u16(f.hard_timeout);
                out.put_u16(f.priority);
                out.put_u32(f.buffer_id);
                out.put_u32(f.out_port.0);
                out.put_u32(f.out_group);
                out.put_u16(f.flags);
                out.put_zeros(2);
                f.match_.emit(out);
                f.instructions.emit(out);
            }
            Message::GroupMod(g) => {
                out.put_u16(match g.command {
                    GroupModCommand::Add => 0,
                    GroupModCommand::Modify => 1,
                    GroupModCommand::Delete => 2,
                });
                out.put_u8(g.group_type.to_wire());
                out.put_u8(0);
                out.put_u32(g.group_id);
                emit_buckets(&g.buckets, out);
            }
            Message::MultipartRequest(m) => {
                let mp_type = match &m.body {
                    MultipartRequestBody::Flow(_) => OFPMP_FLOW,
                    MultipartRequestBody::GroupDesc => OFPMP_GROUP_DESC,
                    MultipartRequestBody::Unknown { mp_type, .. } => *mp_type,
                };
                out.put_u16(mp_type);
                out.put_u16(m.flags);
                out.put_zeros(4);
                match &m.body {
                    MultipartRequestBody::Flow(f) => {
                        out.put_u8(f.table_id);
                        out.put_zeros(3);
                        out.put_u32(f.out_port.0);
                        out.put_u32(f.out_group);
                        out.put_zeros(4);
                        out.put_u64(f.cookie);
                        out.put_u64(f.cookie_mask);
                        f.match_.emit(out);
                    }
                    MultipartRequestBody::GroupDesc => {}
                    MultipartRequestBody::Unknown { body, .. } => out.extend_from_slice(body),
                }
            }
            Message::MultipartReply(m) => {
                let mp_type = match &m.body {
                    MultipartReplyBody::Flow(_) => OFPMP_FLOW,
                    MultipartReplyBody::GroupDesc(_) => OFPMP_GROUP_DESC,
                    MultipartReplyBody::Unknown { mp_type, .. } => *mp_type,
                };
                out.put_u16(mp_type);
                out.put_u16(m.flags);
                out.put_zeros(4);
                match &m.body {
                    MultipartReplyBody::Flow(stats) => {
                        for s in stats {
                            emit_flow_stats(s, out);
                        }
                    }
                    MultipartReplyBody::GroupDesc(descs) => {
                        for d in descs {
                            let s = out.len();
                            out.put_u16(0);
                            out.put_u8(d.group_type.to_wire());
                            out.put_u8(0);
                            out.put_u32(d.group_id);
                            emit_buckets(&d.buckets, out);
                            let len = super::len16(out.len() - s);
                            out.set_u16(s, len);
                        }
                    }
                    MultipartReplyBody::Unknown { body, .. } => out.extend_from_slice(body),
                }
            }
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                out.put_u32(r.role);
                out.put_zeros(4);
                out.put_u64(r.generation_id);
            }
            Message::SetPacketInFormat(fmt) => {
                out.put_u32(NX_EXPERIMENTER_ID);
                out.put_u32(NXT_SET_PACKET_IN_FORMAT);
                out.put_u32(*fmt);
            }
            Message::BundleControl(b) => {
                out.put_u32(ONF_EXPERIMENTER_ID);
                out.put_u32(ONFT_BUNDLE_CONTROL);
                out.put_u32(b.bundle_id);
                out.put_u16(b.ctrl_type);
                out.put_u16(b.flags);
            }
            Message::BundleAdd(b) => {
                out.put_u32(ONF_EXPERIMENTER_ID);
                out.put_u32(ONFT_BUNDLE_ADD_MESSAGE);
                out.put_u32(b.bundle_id);
                out.put_u16(0);
                out.put_u16(b.flags);
                b.message.emit(xid, out);
            }
            Message::Experimenter {
                experimenter,
                exp_type,
                data,
            } => {
                out.put_u32(*experimenter);
                out.put_u32(*exp_type);
                out.extend_from_slice(data);
            }
            Message::Unknown { body, .. } => out.extend_from_slice(body),
        }
        finish_header(out, start);
    }

    /// Convenience: the encoded message in a fresh buffer.
    pub fn to_bytes(&self, xid: u32) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(xid, &mut v);
        v
    }

    fn msg_type(&self) -> u8 {
        match self {
            Message::Hello { .. } => OFPT_HELLO,
            Message::Error(_) => OFPT_ERROR,
            Message::EchoRequest(_) => OFPT_ECHO_REQUEST,
            Message::EchoReply(_) => OFPT_ECHO_REPLY,
            Message::FeaturesRequest => OFPT_FEATURES_REQUEST,
            Message::FeaturesReply(_) => OFPT_FEATURES_REPLY,
            Message::PacketIn(p) if p.format == PacketInFormat::Standard => OFPT_PACKET_IN,
            Message::PacketOut(_) => OFPT_PACKET_OUT,
            Message::FlowMod(_) => OFPT_FLOW_MOD,
            Message::GroupMod(_) => OFPT_GROUP_MOD,
            Message::MultipartRequest(_) => OFPT_MULTIPART_REQUEST,
            Message::MultipartReply(_) => OFPT_MULTIPART_REPLY,
            Message::BarrierRequest => OFPT_BARRIER_REQUEST,
            Message::BarrierReply => OFPT_BARRIER_REPLY,
            Message::RoleRequest(_) => OFPT_ROLE_REQUEST,
            Message::RoleReply(_) => OFPT_ROLE_REPLY,
            Message::PacketIn(_)
            | Message::SetPacketInFormat(_)
            | Message::BundleControl(_)
            | Message::BundleAdd(_)
            | Message::Experimenter { .. } => OFPT_EXPERIMENTER,
            Message::Unknown { msg_type, .. } => *msg_type,
        }
    }
}

fn parse_hello(mut r: Reader<'_>) -> Result<Vec<u8>> {
    let mut versions = Vec::new();
    while r.remaining() >= 4 {
        let mut peek = r;
        let etype = peek.u16("hello element type")?;
        let len = usize::from(peek.u16("hello element length")?);
        if len < 4 {
            return Err(Error::BadLength {
                what: "hello element length",
                len,
            });
        }
        let mut e = r.sub(len, "hello element")?;
        e.skip(4, "hello element header")?;
        // Elements are padded to 8 bytes; the padding may be missing on the last one.
        let pad = super::pad8(len) - len;
        r.skip(pad.min(r.remaining()), "hello element padding")?;
        if etype == OFPHET_VERSIONBITMAP {
            let mut word = 0u32;
            while e.remaining() >= 4 {
                let bits = e.u32("version bitmap")?;
                for bit in 0..32u32 {
                    if bits & (1 << bit) != 0 {
                        versions.push(u8::try_from(word * 32 + bit).unwrap_or(u8::MAX));
                    }
                }
                word += 1;
            }
        }
    }
    Ok(versions)
}

fn parse_buckets(mut r: Reader<'_>) -> Result<Vec<Bucket>> {
    let mut buckets = Vec::new();
    while !r.is_empty() {
        let mut peek = r;
        let len = usize::from(peek.u16("bucket.len")?);
        if len < BUCKET_FIXED_LEN {
            return Err(Error::BadLength {
                what: "bucket.len",
                len,
            });
        }
        let mut b = r.sub(len, "bucket")?;
        b.skip(2, "bucket.len")?;
        let weight = b.u16("bucket.weight")?;
        let watch_port = PortNo(b.u32("bucket.watch_port")?);
        let watch_group = b.u32("bucket.watch_group")?;
        b.skip(4, "bucket padding")?;
        buckets.push(Bucket {
            weight,
            watch_port,
            watch_group,
            actions: Action::parse_list(b)?,
        });
    }
    Ok(buckets)
}

fn emit_buckets(buckets: &[Bucket], out: &mut Vec<u8>) {
    for b in buckets {
        let s = out.len();
        out.put_u16(0);
        out.put_u16(b.weight);
        out.put_u32(b.watch_port.0);
        out.put_u32(b.watch_group);
        out.put_zeros(4);
        Action::emit_list(&b.actions, out);
        let len = super::len16(out.len() - s);
        out.set_u16(s, len);
    }
}

fn parse_flow_stats(mut r: Reader<'_>) -> Result<Vec<FlowStats>> {
    let mut stats = Vec::new();
    while !r.is_empty() {
        let mut peek = r;
        let len = usize::from(peek.u16("flow_stats.length")?);
        if len < FLOW_STATS_FIXED_LEN {
            return Err(Error::BadLength {
                what: "flow_stats.length",
                len,
            });
        }
        let mut e = r.sub(len, "flow_stats entry")?;
        e.skip(2, "flow_stats.length")?;
        let table_id = e.u8("flow_stats.table_id")?;
        e.skip(1, "flow_stats padding")?;
        let duration_sec = e.u32("flow_stats.duration_sec")?;
        let duration_nsec = e.u32("flow_stats.duration_nsec")?;
        let priority = e.u16("flow_stats.priority")?;
        let idle_timeout = e.u16("flow_stats.idle_timeout")?;
        let hard_timeout = e.u16("flow_stats.hard_timeout")?;
        let flags = e.u16("flow_stats.flags")?;
        e.skip(4, "flow_stats padding")?;
        let cookie = e.u64("flow_stats.cookie")?;
        let packet_count = e.u64("flow_stats.packet_count")?;
        let byte_count = e.u64("flow_stats.byte_count")?;
        let match_ = Match::parse(&mut e)?;
        stats.push(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            cookie,
            packet_count,
            byte_count,
            match_,
            instructions: Instructions::parse(e)?,
        });
    }
    Ok(stats)
}

fn emit_flow_stats(s: &FlowStats, out: &mut Vec<u8>) {
    let start = out.len();
    out.put_u16(0);
    out.put_u8(s.table_id);
    out.put_u8(0);
    out.put_u32(s.duration_sec);
    out.put_u32(s.duration_nsec);
    out.put_u16(s.priority);
    out.put_u16(s.idle_timeout);
    out.put_u16(s.hard_timeout);
    out.put_u16(s.flags);
    out.put_zeros(4);
    out.put_u64(s.cookie);
    out.put_u64(s.packet_count);
    out.put_u64(s.byte_count);
    s.match_.emit(out);
    s.instructions.emit(out);
    let len = super::len16(out.len() - start);
    out.set_u16(start, len);
}

fn parse_group_desc(mut r: Reader<'_>) -> Result<Vec<GroupDesc>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut peek = r;
        let len = usize::from(peek.u16("group_desc.length")?);
        if len < GROUP_DESC_FIXED_LEN {
            return Err(Error::BadLength {
                what: "group_desc.length",
                len,
            });
        }
        let mut e = r.sub(len, "group_desc entry")?;
        e.skip(2, "group_desc.length")?;
        let group_type = GroupType::from_wire(e.u8("group_desc.type")?)?;
        e.skip(1, "group_desc padding")?;
        let group_id = e.u32("group_desc.group_id")?;
        out.push(GroupDesc {
            group_type,
            group_id,
            buckets: parse_buckets(e)?,
        });
    }
    Ok(out)
}

fn parse_experimenter(frame: &Frame<'_>, mut r: Reader<'_>, depth: u8) -> Result<Message> {
    let experimenter = r.u32("experimenter id")?;
    let exp_type = r.u32("experimenter type")?;
    Ok(match (experimenter, exp_type) {
        (NX_EXPERIMENTER_ID, NXT_SET_PACKET_IN_FORMAT) => {
            Message::SetPacketInFormat(r.u32("set_packet_in_format.format")?)
        }
        (NX_EXPERIMENTER_ID, NXT_PACKET_IN2) => Message::PacketIn(parse_packet_in2(r)?),
        (ONF_EXPERIMENTER_ID, ONFT_BUNDLE_CONTROL) => {
            let bundle_id = r.u32("bundle_ctrl.bundle_id")?;
            let ctrl_type = r.u16("bundle_ctrl.type")?;
            let flags = r.u16("bundle_ctrl.flags")?;
            Message::BundleControl(BundleControl {
                bundle_id,
                ctrl_type,
                flags,
            })
        }
        (ONF_EXPERIMENTER_ID, ONFT_BUNDLE_ADD_MESSAGE) if depth == 0 => {
            let bundle_id = r.u32("bundle_add.bundle_id")?;
            r.skip(2, "bundle_add padding")?;
            let flags = r.u16("bundle_add.flags")?;
            let inner_len = Frame::peek_len(r.rest())?.ok_or(Error::Truncated {
                what: "bundle_add inner header",
                need: super::HEADER_LEN,
                have: r.remaining(),
            })?;
            let inner = r.bytes(inner_len, "bundle_add inner message")?;
            let inner = Frame::new_checked(inner)?;
            if inner.xid() != frame.xid() {
                return Err(Error::BadValue {
                    what: "bundle_add inner xid",
                    value: inner.xid().into(),
                });
            }
            Message::BundleAdd(BundleAdd {
                bundle_id,
                flags,
                message: Box::new(Message::parse_depth(&inner, depth + 1)?),
            })
        }
        _ => Message::Experimenter {
            experimenter,
            exp_type,
            data: r.rest().to_vec(),
        },
    })
}

fn parse_packet_in2(mut r: Reader<'_>) -> Result<PacketIn> {
    let mut p = PacketIn {
        format: PacketInFormat::Nx2,
        buffer_id: OFP_NO_BUFFER,
        total_len: 0,
        reason: 0,
        table_id: 0,
        cookie: 0,
        match_: Match::new(),
        userdata: None,
        data: Vec::new(),
    };
    let mut full_len = None;
    while !r.is_empty() {
        let mut peek = r;
        let ptype = peek.u16("packet_in2 property type")?;
        let plen = usize::from(peek.u16("packet_in2 property length")?);
        if plen < 4 {
            return Err(Error::BadLength {
                what: "packet_in2 property length",
                len: plen,
            });
        }
        let mut v = r.sub(plen, "packet_in2 property")?;
        let pad = super::pad8(plen) - plen;
        r.skip(pad.min(r.remaining()), "packet_in2 property padding")?;
        v.skip(4, "packet_in2 property header")?;
        match ptype {
            NXPINT_PACKET => p.data = v.rest().to_vec(),
            NXPINT_FULL_LEN => full_len = Some(v.u32("packet_in2 full_len")?),
            NXPINT_BUFFER_ID => p.buffer_id = v.u32("packet_in2 buffer_id")?,
            NXPINT_TABLE_ID => p.table_id = v.u8("packet_in2 table_id")?,
            NXPINT_COOKIE => {
                // 64-bit properties carry 4 bytes of padding before the value.
                if v.remaining() == 12 {
                    v.skip(4, "packet_in2 cookie padding")?;
                }
                p.cookie = v.u64("packet_in2 cookie")?;
            }
            NXPINT_REASON => p.reason = v.u8("packet_in2 reason")?,
            NXPINT_METADATA => p.match_ = Match::parse_oxms(v)?,
            NXPINT_USERDATA => p.userdata = Some(v.rest().to_vec()),
            _ => {}
        }
    }
    p.total_len = full_len.unwrap_or(u32::try_from(p.data.len()).unwrap_or(u32::MAX));
    Ok(p)
}

fn emit_packet_in(p: &PacketIn, out: &mut Vec<u8>) {
    match p.format {
        PacketInFormat::Standard => {
            out.put_u32(p.buffer_id);
            out.put_u16(u16::try_from(p.total_len).unwrap_or(u16::MAX));
            out.put_u8(p.reason);
            out.put_u8(p.table_id);
            out.put_u64(p.cookie);
            p.match_.emit(out);
            out.put_zeros(2);
            out.extend_from_slice(&p.data);
        }
        PacketInFormat::Nx2 => {
            out.put_u32(NX_EXPERIMENTER_ID);
            out.put_u32(NXT_PACKET_IN2);
            let prop = |out: &mut Vec<u8>, t: u16, f: &dyn Fn(&mut Vec<u8>)| {
                let s = out.len();
                out.put_u16(t);
                out.put_u16(0);
                f(out);
                let len = super::len16(out.len() - s);
                out.set_u16(s + 2, len);
                out.pad8_from(s);
            };
            prop(out, NXPINT_PACKET, &|o| o.extend_from_slice(&p.data));
            if p.total_len as usize != p.data.len() {
                prop(out, NXPINT_FULL_LEN, &|o| o.put_u32(p.total_len));
            }
            if p.buffer_id != OFP_NO_BUFFER {
                prop(out, NXPINT_BUFFER_ID, &|o| o.put_u32(p.buffer_id));
            }
            prop(out, NXPINT_TABLE_ID, &|o| o.put_u8(p.table_id));
            prop(out, NXPINT_COOKIE, &|o| {
                o.put_zeros(4);
                o.put_u64(p.cookie)
            });
            prop(out, NXPINT_REASON, &|o| o.put_u8(p.reason));
            prop(out, NXPINT_METADATA, &|o| p.match_.emit_oxms(o));
            if let Some(u) = &p.userdata {
                prop(out, NXPINT_USERDATA, &|o| o.extend_from_slice(u));
            }
        }
    }
}

// Keep the fixed-size constants referenced (they document the layouts above).
const _: [usize; 13] = [
    FEATURES_REPLY_LEN,
    FLOW_MOD_FIXED_LEN,
    GROUP_MOD_FIXED_LEN,
    BUCKET_FIXED_LEN,
    PACKET_IN_FIXED_LEN,
    PACKET_OUT_FIXED_LEN,
    MULTIPART_HEADER_LEN,
    FLOW_STATS_REQUEST_FIXED_LEN,
    FLOW_STATS_FIXED_LEN,
    GROUP_DESC_FIXED_LEN,
    ERROR_FIXED_LEN,
    EXPERIMENTER_HEADER_LEN,
    super::HEADER_LEN,
];

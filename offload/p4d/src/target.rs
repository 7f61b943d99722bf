//! The target's state without gRPC: arbitration per role, the committed pipeline, table
//! entries (P4Runtime form kept for Read, engine form installed in the shared [`Engine`]),
//! multicast groups (the engine's flood groups), and packet I/O through [`Ports`].
//!
//! Lock order: [`Target`]'s state first, then the engine. The fast path takes only the
//! engine, once per polling round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use p4runtime_proto::google::rpc::{self, Code};
use p4runtime_proto::p4::v1::{
    self as p4, forwarding_pipeline_config, packet_replication_engine_entry, replica,
    stream_message_response, update,
};
use p4runtime_proto::P4Info;
use tokio::sync::mpsc;
use tonic::Status;
use wyvern_engine::{Engine, EntryId, Out, Verdict};
use wyvern_offload_p4rt::encode::{canonical, decode};
use wyvern_offload_p4rt::index::{P4InfoIndex, PacketMetaInfo};
use wyvern_offload_p4rt::packetio::MODE_PIPELINE;
use wyvern_offload_p4rt::state::{entry_key, normalize_group, EntryKey};
use wyvern_pipeline::{NetKey, PortKey, PuntReason, RouterKey};

use crate::translate::{stage_of, translate, translate_owned, TranslateError};

/// Where frames leave the target: DPDK ports, or nowhere (control-plane-only mode).
pub trait Ports: Send + Sync {
    /// Queues `frame` for switch port `port`; false if the port does not exist or the
    /// queue is full (the frame is dropped and counted by the caller).
    fn send(&self, port: u32, frame: Vec<u8>) -> bool;
}

/// No ports at all: frames are counted and dropped (tests of the control plane).
#[derive(Debug, Default)]
pub struct NoPorts;

impl Ports for NoPorts {
    fn send(&self, port: u32, frame: Vec<u8>) -> bool {
        tracing::debug!(port, len = frame.len(), "no ports: frame dropped");
        false
    }
}

/// A punt from the engine, in the terms of wyvern.p4's `packet_in` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuntedFrame {
    pub ingress_port: u32,
    pub reason: PuntReason,
    pub inport: Option<PortKey>,
    pub network: Option<NetKey>,
    pub router: Option<RouterKey>,
    pub frame: Vec<u8>,
}

/// Counters of the control plane and packet I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetStats {
    pub write_requests: u64,
    /// Updates in Writes accepted for processing (from the primary).
    pub write_updates: u64,
    /// Updates refused with a per-update error.
    pub update_errors: u64,
    pub packet_outs: u64,
    /// PacketOuts refused (backup sender, bad header, no pipeline).
    pub packet_outs_refused: u64,
    pub packet_ins: u64,
    /// Punts no primary could take (none connected, or its stream was full).
    pub packet_ins_dropped: u64,
    /// Frames a port refused.
    pub tx_dropped: u64,
}

pub type StreamTx = mpsc::Sender<Result<p4::StreamMessageResponse, Status>>;

struct Controller {
    role: String,
    election_id: u128,
    tx: StreamTx,
}

struct Pipeline {
    p4info: P4Info,
    index: P4InfoIndex,
    device_config: Vec<u8>,
    cookie: Option<forwarding_pipeline_config::Cookie>,
    packet_in: PacketMetaInfo,
    packet_out: PacketMetaInfo,
}

struct Installed {
    entry: p4::TableEntry,
    id: EntryId,
}

struct State {
    device_id: u64,
    next_stream: u64,
    controllers: BTreeMap<u64, Controller>,
    pipeline: Option<Pipeline>,
    entries: BTreeMap<EntryKey, Installed>,
    groups: BTreeMap<u32, p4::MulticastGroupEntry>,
    stats: TargetStats,
}

/// One P4Runtime device: shared by the gRPC service, the punt forwarder and tests.
#[derive(Clone)]
pub struct Target {
    state: Arc<Mutex<State>>,
    engine: Arc<Mutex<Engine>>,
    ports: Arc<dyn Ports>,
}

/// The `p4.v1.Error` of one update.
pub fn p4_error(code: Code, message: impl Into<String>) -> p4::Error {
    p4::Error {
        canonical_code: code as i32,
        message: message.into(),
        ..Default::default()
    }
}

fn ok() -> p4::Error {
    p4_error(Code::Ok, "")
}

fn from_err(e: TranslateError) -> p4::Error {
    p4_error(e.code(), e.to_string())
}

fn u128_of(v: &Option<p4::Uint128>) -> Option<u128> {
    v.as_ref()
        .map(|v| (u128::from(v.high) << 64) | u128::from(v.low))
}

fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pipeline a P4Info describes, if it is wyvern.p4's: every table a stage, both
/// controller headers present.
fn verify(
    p4info: P4Info,
    device_config: Vec<u8>,
    cookie: Option<forwarding_pipeline_config::Cookie>,
) -> Result<Pipeline, Status> {
    let index = P4InfoIndex::new(&p4info)
        .map_err(|e| Status::invalid_argument(format!("failed to verify the P4Info: {e}")))?;
    for t in index.tables() {
        if stage_of(t).is_none() {
            return Err(Status::invalid_argument(format!(
                "failed to verify the P4Info: table {} is not a stage of the wyvern pipeline",
                t.name
            )));
        }
    }
    let header = |n: &str| {
        index
            .packet_header(n)
            .cloned()
            .map_err(|e| Status::invalid_argument(format!("failed to verify the P4Info: {e}")))
    };
    let packet_in = header("packet_in")?;
    let packet_out = header("packet_out")?;
    Ok(Pipeline {
        p4info,
        index,
        device_config,
        cookie,
        packet_in,
        packet_out,
    })
}

impl State {
    /// The primary of a role: the highest election id.
    fn primary(&self, role: &str) -> Option<(u64, u128)> {
        self.controllers
            .iter()
            .filter(|(_, c)| c.role == role)
            .max_by_key(|(_, c)| c.election_id)
            .map(|(id, c)| (*id, c.election_id))
    }

    fn arbitration_msg(&self, stream: u64) -> Option<p4::StreamMessageResponse> {
        let me = self.controllers.get(&stream)?;
        let (pid, pe) = self.primary(&me.role)?;
        let (code, msg) = if pid == stream {
            (Code::Ok, "you are the primary")
        } else {
            (Code::AlreadyExists, "a primary exists: you are a backup")
        };
        Some(p4::StreamMessageResponse {
            update: Some(stream_message_response::Update::Arbitration(
                p4::MasterArbitrationUpdate {
                    device_id: self.device_id,
                    role: (!me.role.is_empty()).then(|| p4::Role {
                        name: me.role.clone(),
                        ..Default::default()
                    }),
                    election_id: Some(uint128(pe)),
                    status: Some(rpc::Status {
                        code: code as i32,
                        message: msg.into(),
                        details: vec![],
                    }),
                },
            )),
        })
    }

    fn tell(&self, stream: u64) {
        if let (Some(msg), Some(c)) = (self.arbitration_msg(stream), self.controllers.get(&stream))
        {
            let _ = c.tx.try_send(Ok(msg));
        }
    }

    /// Tells every controller of `role` who is primary (spec 5.3: on every change).
    fn announce(&self, role: &str) {
        for (id, c) in &self.controllers {
            if c.role == role {
                self.tell(*id);
            }
        }
    }

    fn check_primary(
        &self,
        device_id: u64,
        role: &str,
        election: &Option<p4::Uint128>,
    ) -> Result<(), Status> {
        if device_id != self.device_id {
            return Err(Status::not_found(format!(
                "failed to find device {device_id}"
            )));
        }
        match (self.primary(role), u128_of(election)) {
            (Some((_, e)), Some(mine)) if e == mine => Ok(()),
            _ => Err(Status::permission_denied(
                "failed to accept the request: the sender is not the primary controller",
            )),
        }
    }
}

impl Target {
    pub fn new(device_id: u64, engine: Arc<Mutex<Engine>>, ports: Arc<dyn Ports>) -> Self {
        Target {
            state: Arc::new(Mutex::new(State {
                device_id,
                next_stream: 0,
                controllers: BTreeMap::new(),
                pipeline: None,
                entries: BTreeMap::new(),
                groups: BTreeMap::new(),
                stats: TargetStats::default(),
            })),
            engine,
            ports,
        }
    }

    pub fn stats(&self) -> TargetStats {
        lock(&self.state).stats
    }

    pub fn engine(&self) -> &Arc<Mutex<Engine>> {
        &self.engine
    }

    pub fn entry_count(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// A new StreamChannel's first MasterArbitrationUpdate. Returns the stream's id; `Err`
    /// ends the stream (wrong device, election id in use in the role).
    pub fn join(&self, a: &p4::MasterArbitrationUpdate, tx: StreamTx) -> Result<u64, Status> {
        let mut st = lock(&self.state);
        if a.device_id != st.device_id {
            return Err(Status::not_found(format!(
                "failed to find device {}",
                a.device_id
            )));
        }
        let role = a.role.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let election_id = u128_of(&a.election_id).unwrap_or(0);
        if st
            .controllers
            .values()
            .any(|c| c.role == role && c.election_id == election_id)
        {
            return Err(Status::invalid_argument(format!(
                "failed to arbitrate: election id {election_id} is in use in role {role:?}"
            )));
        }
        let before = st.primary(&role);
        st.next_stream += 1;
        let id = st.next_stream;
        st.controllers.insert(
            id,
            Controller {
                role: role.clone(),
                election_id,
                tx,
            },
        );
        if st.primary(&role) != before {
            st.announce(&role);
        } else {
            st.tell(id);
        }
        tracing::info!(stream = id, role = %role, election_id, "controller joined");
        Ok(id)
    }

    /// A later MasterArbitrationUpdate on the same stream: a new election id.
    pub fn rebid(&self, stream: u64, a: &p4::MasterArbitrationUpdate) -> Result<(), Status> {
        let mut st = lock(&self.state);
        let Some(role) = st.controllers.get(&stream).map(|c| c.role.clone()) else {
            return Ok(());
        };
        let election_id = u128_of(&a.election_id).unwrap_or(0);
        if st
            .controllers
            .iter()
            .any(|(id, c)| *id != stream && c.role == role && c.election_id == election_id)
        {
            return Err(Status::invalid_argument(format!(
                "failed to arbitrate: election id {election_id} is in use in role {role:?}"
            )));
        }
        let before = st.primary(&role);
        if let Some(c) = st.controllers.get_mut(&stream) {
            c.election_id = election_id;
        }
        if st.primary(&role) != before {
            st.announce(&role);
        } else {
            st.tell(stream);
        }
        Ok(())
    }

    /// The stream ended.
    pub fn leave(&self, stream: u64) {
        let mut st = lock(&self.state);
        let Some(role) = st.controllers.get(&stream).map(|c| c.role.clone()) else {
            return;
        };
        let was_primary = st.primary(&role).map(|(id, _)| id) == Some(stream);
        let Some(c) = st.controllers.remove(&stream) else {
            return;
        };
        if was_primary {
            st.announce(&role);
        }
        tracing::info!(stream, role = %c.role, election_id = c.election_id, "controller left");
    }

    /// Whether `stream` is its role's primary.
    pub fn is_primary(&self, stream: u64) -> bool {
        let st = lock(&self.state);
        st.controllers
            .get(&stream)
            .and_then(|c| st.primary(&c.role))
            .is_some_and(|(id, _)| id == stream)
    }

    /// SetForwardingPipelineConfig: VERIFY, or VERIFY_AND_COMMIT (which clears every
    /// table and group).
    pub fn set_pipeline(&self, req: p4::SetForwardingPipelineConfigRequest) -> Result<(), Status> {
        use p4::set_forwarding_pipeline_config_request::Action;
        let mut st = lock(&self.state);
        st.check_primary(req.device_id, &req.role, &req.election_id)?;
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("failed to set the pipeline: no config"))?;
        let p4info = config
            .p4info
            .ok_or_else(|| Status::invalid_argument("failed to set the pipeline: no P4Info"))?;
        let pipeline = verify(p4info, config.p4_device_config, config.cookie)?;
        match Action::try_from(req.action) {
            Ok(Action::Verify) => Ok(()),
            Ok(Action::VerifyAndCommit) => {
                *lock(&self.engine) = Engine::new();
                st.entries.clear();
                st.groups.clear();
                st.pipeline = Some(pipeline);
                tracing::info!("forwarding pipeline committed");
                Ok(())
            }
            _ => Err(Status::unimplemented(
                "failed to set the pipeline: only VERIFY and VERIFY_AND_COMMIT are supported",
            )),
        }
    }

    pub fn get_pipeline(
        &self,
        req: &p4::GetForwardingPipelineConfigRequest,
    ) -> Result<p4::ForwardingPipelineConfig, Status> {
        use p4::get_forwarding_pipeline_config_request::ResponseType as R;
        let st = lock(&self.state);
        if req.device_id != st.device_id {
            return Err(Status::not_found(format!(
                "failed to find device {}",
                req.device_id
            )));
        }
        let p = st.pipeline.as_ref().ok_or_else(|| {
            Status::failed_precondition("failed to get the pipeline: none is set")
        })?;
        let rt = R::try_from(req.response_type).unwrap_or(R::All);
        let info = matches!(rt, R::All | R::P4infoAndCookie);
        let dev = matches!(rt, R::All | R::DeviceConfigAndCookie);
        Ok(p4::ForwardingPipelineConfig {
            p4info: info.then(|| p.p4info.clone()),
            p4_device_config: if dev {
                p.device_config.clone()
            } else {
                Vec::new()
            },
            cookie: p.cookie,
        })
    }

    /// Write: the RPC is refused as a whole for a backup (PERMISSION_DENIED) or without a
    /// pipeline; otherwise every update gets its own `p4.v1.Error` (OK ones included).
    pub fn write(&self, req: p4::WriteRequest) -> Result<Vec<p4::Error>, Status> {
        let mut st = lock(&self.state);
        st.stats.write_requests += 1;
        st.check_primary(req.device_id, &req.role, &req.election_id)?;
        if p4::write_request::Atomicity::try_from(req.atomicity)
            != Ok(p4::write_request::Atomicity::ContinueOnError)
        {
            return Err(Status::unimplemented(
                "failed to write: only CONTINUE_ON_ERROR atomicity is supported",
            ));
        }
        if st.pipeline.is_none() {
            return Err(Status::failed_precondition(
                "failed to write: no pipeline is set",
            ));
        }
        st.stats.write_updates += req.updates.len() as u64;
        let mut engine = lock(&self.engine);
        let st = &mut *st;
        let errors: Vec<p4::Error> = req
            .updates
            .into_iter()
            .map(|u| apply(st, &mut engine, u))
            .collect();
        st.stats.update_errors += errors
            .iter()
            .filter(|e| e.canonical_code != Code::Ok as i32)
            .count() as u64;
        Ok(errors)
    }

    /// Read: table entries (all tables with table_id 0, or one; one entry if matches are
    /// given), direct counters, multicast groups. Backups may read.
    pub fn read(&self, req: &p4::ReadRequest) -> Result<Vec<p4::Entity>, Status> {
        let st = lock(&self.state);
        if req.device_id != st.device_id {
            return Err(Status::not_found(format!(
                "failed to find device {}",
                req.device_id
            )));
        }
        let engine = lock(&self.engine);
        let mut out = Vec::new();
        for ent in &req.entities {
            match &ent.entity {
                Some(p4::entity::Entity::TableEntry(t)) => {
                    let with_counters = t.counter_data.is_some();
                    for (e, id) in select(&st, t)? {
                        let mut e = e.clone();
                        if with_counters {
                            e.counter_data = Some(counter_data(&engine, id));
                        }
                        out.push(p4::Entity {
                            entity: Some(p4::entity::Entity::TableEntry(e)),
                        });
                    }
                }
                Some(p4::entity::Entity::DirectCounterEntry(d)) => {
                    let filter = d.table_entry.clone().unwrap_or_default();
                    for (e, id) in select(&st, &filter)? {
                        out.push(p4::Entity {
                            entity: Some(p4::entity::Entity::DirectCounterEntry(
                                p4::DirectCounterEntry {
                                    table_entry: Some(e.clone()),
                                    data: Some(counter_data(&engine, id)),
                                },
                            )),
                        });
                    }
                }
                Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                    },
                )) => out.extend(
                    st.groups
                        .values()
                        .filter(|x| g.multicast_group_id == 0 || x.multicast_group_id == g.multicast_group_id)
                        .map(|x| group_entity(x.clone())),
                ),
                _ => {
                    return Err(Status::unimplemented(
                        "failed to read: only table entries, direct counters and multicast groups are supported",
                    ))
                }
            }
        }
        Ok(out)
    }

    /// A PacketOut from `stream`: dropped unless it is a primary; mode DIRECT sends the
    /// frame out of `egress_port`, mode PIPELINE runs it through the engine as if it had
    /// arrived on `ingress_port`.
    pub fn packet_out(&self, stream: u64, p: p4::PacketOut) {
        let (egress, ingress, mode) = {
            let mut st = lock(&self.state);
            let primary = st
                .controllers
                .get(&stream)
                .and_then(|c| st.primary(&c.role))
                .is_some_and(|(id, _)| id == stream);
            let fields = st.pipeline.as_ref().and_then(|pl| {
                let get = |n: &str| {
                    let f = pl.packet_out.field(n).ok()?;
                    p.metadata
                        .iter()
                        .find(|m| m.metadata_id == f.id)
                        .and_then(|m| decode(&m.value))
                        .or(Some(0))
                };
                Some((get("egress_port")?, get("ingress_port")?, get("mode")?))
            });
            match fields {
                Some(f) if primary => {
                    st.stats.packet_outs += 1;
                    f
                }
                _ => {
                    st.stats.packet_outs_refused += 1;
                    tracing::debug!(stream, primary, "PacketOut refused");
                    return;
                }
            }
        };
        let port = |v: u128| u32::try_from(v).unwrap_or(u32::MAX);
        let mut frame = p.payload;
        if mode == MODE_PIPELINE {
            let in_port = port(ingress);
            let verdict = lock(&self.engine).process(&mut frame, in_port);
            self.forward(verdict, in_port, frame);
        } else {
            self.emit(port(egress), frame);
        }
    }

    fn emit(&self, port: u32, frame: Vec<u8>) {
        if !self.ports.send(port, frame) {
            lock(&self.state).stats.tx_dropped += 1;
        }
    }

    /// Carries out the engine's verdict for a frame processed outside the fast path.
    pub fn forward(&self, verdict: Verdict, in_port: u32, frame: Vec<u8>) {
        match verdict {
            Verdict::Output(Out::Port(p)) => self.emit(p, frame),
            Verdict::Output(Out::Flood { network, except }) => {
                let ports: Vec<u32> = lock(&self.engine)
                    .flood_group(network)
                    .iter()
                    .copied()
                    .filter(|p| *p != except)
                    .collect();
                for p in ports {
                    self.emit(p, frame.clone());
                }
            }
            Verdict::Punt {
                reason,
                inport,
                network,
                router,
            } => self.packet_in(PuntedFrame {
                ingress_port: in_port,
                reason,
                inport,
                network,
                router,
                frame,
            }),
            Verdict::Drop { stage, cause } => {
                tracing::debug!(%stage, ?cause, "injected frame dropped");
            }
        }
    }

    /// A punt to the primary of the default role, with the `packet_in` header fields of the
    /// committed P4Info (absent keys are 0, as in wyvern.p4).
    pub fn packet_in(&self, p: PuntedFrame) {
        let mut st = lock(&self.state);
        let Some(pl) = st.pipeline.as_ref() else {
            st.stats.packet_ins_dropped += 1;
            return;
        };
        let values: [(&str, u128); 5] = [
            ("ingress_port", p.ingress_port.into()),
            ("reason", p.reason.code().into()),
            ("inport", p.inport.map_or(0, |k| k.0).into()),
            ("network", p.network.map_or(0, |k| k.0).into()),
            ("router", p.router.map_or(0, |k| k.0).into()),
        ];
        let mut metadata = Vec::with_capacity(values.len());
        for (name, v) in values {
            if let Ok(f) = pl.packet_in.field(name) {
                // A key wider than the header field is cut to it, as the P4 cast would.
                let v = if f.bitwidth < 128 {
                    v & ((1u128 << f.bitwidth) - 1)
                } else {
                    v
                };
                if let Ok(b) = canonical(v, f.bitwidth, name) {
                    metadata.push(p4::PacketMetadata {
                        metadata_id: f.id,
                        value: b,
                    });
                }
            }
        }
        let msg = p4::StreamMessageResponse {
            update: Some(stream_message_response::Update::Packet(p4::PacketIn {
                payload: p.frame,
                metadata,
            })),
        };
        let sent = st
            .primary("")
            .and_then(|(id, _)| st.controllers.get(&id))
            .is_some_and(|c| c.tx.try_send(Ok(msg)).is_ok());
        if sent {
            st.stats.packet_ins += 1;
        } else {
            st.stats.packet_ins_dropped += 1;
        }
    }
}

fn counter_data(engine: &Engine, id: EntryId) -> p4::CounterData {
    let c = engine.counters(id).unwrap_or_default();
    p4::CounterData {
        byte_count: c.bytes as i64,
        packet_count: c.packets as i64,
    }
}

fn group_entity(g: p4::MulticastGroupEntry) -> p4::Entity {
    p4::Entity {
        entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
            p4::PacketReplicationEngineEntry {
                r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(
                    g,
                )),
            },
        )),
    }
}

/// The installed entries a Read's table entry selects.
fn select<'a>(
    st: &'a State,
    t: &p4::TableEntry,
) -> Result<Vec<(&'a p4::TableEntry, EntryId)>, Status> {
    if t.table_id != 0 {
        let known = st
            .pipeline
            .as_ref()
            .is_some_and(|p| p.index.table_by_id(t.table_id).is_some());
        if !known {
            return Err(Status::not_found(format!(
                "failed to read: no table id {}",
                t.table_id
            )));
        }
    }
    if t.is_default_action {
        // Every default action of wyvern.p4 is const: nothing to return beyond the P4Info.
        return Ok(Vec::new());
    }
    if t.table_id != 0 && !t.r#match.is_empty() {
        let Some(p) = st.pipeline.as_ref() else {
            return Ok(Vec::new());
        };
        let tr = translate(&p.index, t, false)
            .map_err(|e| Status::invalid_argument(format!("failed to read: {e}")))?;
        return Ok(st
            .entries
            .get(&entry_key(&tr.canonical))
            .map(|i| vec![(&i.entry, i.id)])
            .unwrap_or_default());
    }
    Ok(st
        .entries
        .values()
        .filter(|i| t.table_id == 0 || i.entry.table_id == t.table_id)
        .filter(|i| t.priority == 0 || i.entry.priority == t.priority)
        .map(|i| (&i.entry, i.id))
        .collect())
}

/// One update, as the spec orders a target to answer it.
fn apply(st: &mut State, engine: &mut Engine, u: p4::Update) -> p4::Error {
    let kind = update::Type::try_from(u.r#type).unwrap_or(update::Type::Unspecified);
    if kind == update::Type::Unspecified {
        return p4_error(
            Code::InvalidArgument,
            "failed to apply an update: type unspecified",
        );
    }
    let Some(pipeline) = st.pipeline.as_ref() else {
        return p4_error(
            Code::FailedPrecondition,
            "failed to apply an update: no pipeline",
        );
    };
    match u.entity.and_then(|e| e.entity) {
        Some(p4::entity::Entity::TableEntry(e)) => {
            let tr = match translate_owned(&pipeline.index, e, kind != update::Type::Delete) {
                Ok(t) => t,
                Err(e) => return from_err(e),
            };
            let k = entry_key(&tr.canonical);
            match (kind, st.entries.get(&k)) {
                (update::Type::Insert, Some(_)) => {
                    p4_error(Code::AlreadyExists, "failed to insert: the entry exists")
                }
                (update::Type::Modify | update::Type::Delete, None) => {
                    p4_error(Code::NotFound, "failed to find the entry")
                }
                (update::Type::Insert, None) => match engine.insert(tr.stage, tr.entry) {
                    Ok(id) => {
                        st.entries.insert(k, Installed { entry: tr.canonical, id });
                        ok()
                    }
                    Err(e) => p4_error(Code::InvalidArgument, e.to_string()),
                },
                (update::Type::Modify, Some(_)) => {
                    match engine.modify(tr.stage, tr.entry.priority, &tr.entry.key, tr.entry.actions) {
                        Ok(id) => {
                            st.entries.insert(k, Installed { entry: tr.canonical, id });
                            ok()
                        }
                        Err(e) => p4_error(Code::InvalidArgument, e.to_string()),
                    }
                }
                (update::Type::Delete, Some(i)) => {
                    let id = i.id;
                    st.entries.remove(&k);
                    match engine.remove_id(id) {
                        Ok(_) => ok(),
                        Err(e) => p4_error(Code::Internal, e.to_string()),
                    }
                }
                _ => p4_error(Code::InvalidArgument, "failed to apply an update: bad type"),
            }
        }
        Some(p4::entity::Entity::PacketReplicationEngineEntry(p4::PacketReplicationEngineEntry {
            r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
        })) => {
            if g.multicast_group_id == 0 {
                return p4_error(Code::InvalidArgument, "failed to write a multicast group: id 0");
            }
            let mut ports = Vec::with_capacity(g.replicas.len());
            for r in &g.replicas {
                #[allow(deprecated)]
                let p = match &r.port_kind {
                    Some(replica::PortKind::EgressPort(p)) => Some(*p),
                    Some(replica::PortKind::Port(b)) => decode(b).and_then(|v| u32::try_from(v).ok()),
                    None => None,
                };
                match p {
                    Some(p) => ports.push(p),
                    None => {
                        return p4_error(
                            Code::InvalidArgument,
                            "failed to write a multicast group: a replica without a valid port",
                        )
                    }
                }
            }
            let id = g.multicast_group_id;
            let exists = st.groups.contains_key(&id);
            match (kind, exists) {
                (update::Type::Insert, true) => p4_error(Code::AlreadyExists, "failed to insert: the group exists"),
                (update::Type::Modify | update::Type::Delete, false) => {
                    p4_error(Code::NotFound, "failed to find the multicast group")
                }
                (update::Type::Delete, true) => {
                    st.groups.remove(&id);
                    engine.remove_flood_group(NetKey(id));
                    ok()
                }
                _ => {
                    st.groups.insert(id, normalize_group(g.clone()));
                    engine.set_flood_group(NetKey(id), ports);
                    ok()
                }
            }
        }
        Some(p4::entity::Entity::DirectCounterEntry(d)) if kind == update::Type::Modify => {
            let Some(t) = &d.table_entry else {
                return p4_error(Code::InvalidArgument, "failed to write a direct counter: no table entry");
            };
            let tr = match translate(&pipeline.index, t, false) {
                Ok(t) => t,
                Err(e) => return from_err(e),
            };
            let Some(i) = st.entries.get(&entry_key(&tr.canonical)) else {
                return p4_error(Code::NotFound, "failed to find the entry of the direct counter");
            };
            let data = d.data.unwrap_or_default();
            let c = wyvern_engine::Counters {
                packets: data.packet_count.max(0) as u64,
                bytes: data.byte_count.max(0) as u64,
            };
            match engine.set_counters(i.id, c) {
                Ok(()) => ok(),
                Err(e) => p4_error(Code::Internal, e.to_string()),
            }
        }
        _ => p4_error(
            Code::Unimplemented,
            "failed to apply an update: only table entries, multicast groups and direct counters (MODIFY) are supported",
        ),
    }
}

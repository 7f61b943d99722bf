//! `FakeP4rtTarget`: an in-process P4Runtime server for tests only. It forwards nothing;
//! it keeps entries and multicast groups the way the spec says a target must (INSERT of an
//! existing key: ALREADY_EXISTS; MODIFY/DELETE of a missing one: NOT_FOUND; per-update
//! `p4.v1.Error`s in the status details), arbitrates by election id, answers Read, and
//! counts Writes.
//!
//! [`FakeState`] holds all of that without gRPC, so its logic can move into the software
//! target (`wyvern-p4d`, on wyvern-engine) with only the tonic shell left behind.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::v1::{
    self as p4, p4_runtime_server, packet_replication_engine_entry, stream_message_request,
    stream_message_response, update,
};
use p4runtime_proto::P4Info;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

type StreamTx = mpsc::Sender<Result<p4::StreamMessageResponse, Status>>;

struct Controller {
    election_id: u128,
    tx: StreamTx,
}

/// The target's state: arbitration, pipeline, entries, counters of what was written.
#[derive(Default)]
pub struct FakeState {
    device_id: u64,
    next_stream: u64,
    controllers: BTreeMap<u64, Controller>,
    p4info: Option<P4Info>,
    cookie: Option<p4::forwarding_pipeline_config::Cookie>,
    entries: BTreeMap<Vec<u8>, p4::TableEntry>,
    groups: BTreeMap<u32, p4::MulticastGroupEntry>,
    /// Write RPCs received (refused ones included).
    pub write_requests: u64,
    /// Updates received in Writes from the primary.
    pub write_updates: u64,
    pub pipeline_commits: u64,
    pub packet_outs: Vec<p4::PacketOut>,
}

fn u128_of(v: &Option<p4::Uint128>) -> u128 {
    v.as_ref()
        .map(|v| (u128::from(v.high) << 64) | u128::from(v.low))
        .unwrap_or(0)
}

fn p4_error(code: rpc::Code, message: impl Into<String>) -> p4::Error {
    p4::Error {
        canonical_code: code as i32,
        message: message.into(),
        ..Default::default()
    }
}

/// The identity of an entry: table, matches sorted by field id, priority.
fn key_of(e: &p4::TableEntry) -> Vec<u8> {
    let mut m = e.r#match.clone();
    m.sort_by_key(|f| f.field_id);
    p4::TableEntry {
        table_id: e.table_id,
        r#match: m,
        priority: e.priority,
        ..Default::default()
    }
    .encode_to_vec()
}

impl FakeState {
    pub fn new(device_id: u64) -> Self {
        FakeState {
            device_id,
            ..Default::default()
        }
    }

    /// The primary: the highest election id among connected controllers.
    pub fn primary(&self) -> Option<(u64, u128)> {
        self.controllers
            .iter()
            .max_by_key(|(_, c)| c.election_id)
            .map(|(id, c)| (*id, c.election_id))
    }

    /// Registers a controller's bid; `Err` refuses it (reused election id).
    fn join(&mut self, election_id: u128, tx: StreamTx) -> Result<u64, Status> {
        if self
            .controllers
            .values()
            .any(|c| c.election_id == election_id)
        {
            return Err(Status::invalid_argument(format!(
                "election id {election_id} is in use by another controller"
            )));
        }
        self.next_stream += 1;
        self.controllers
            .insert(self.next_stream, Controller { election_id, tx });
        Ok(self.next_stream)
    }

    fn leave(&mut self, stream: u64) {
        let was = self.primary();
        self.controllers.remove(&stream);
        if was.map(|(s, _)| s) == Some(stream) || was.is_none() {
            self.announce();
        }
    }

    /// Tells every controller who is primary (spec 5.3): OK to the primary, ALREADY_EXISTS
    /// to the others, with the primary's election id.
    fn announce(&self) {
        let Some((pid, pe)) = self.primary() else {
            return;
        };
        for (id, c) in &self.controllers {
            let (code, msg) = if *id == pid {
                (rpc::Code::Ok, "primary")
            } else {
                (rpc::Code::AlreadyExists, "backup")
            };
            let _ = c.tx.try_send(Ok(p4::StreamMessageResponse {
                update: Some(stream_message_response::Update::Arbitration(
                    p4::MasterArbitrationUpdate {
                        device_id: self.device_id,
                        role: None,
                        election_id: Some(p4::Uint128 {
                            high: (pe >> 64) as u64,
                            low: pe as u64,
                        }),
                        status: Some(rpc::Status {
                            code: code as i32,
                            message: msg.into(),
                            details: vec![],
                        }),
                    },
                )),
            }));
        }
    }

    fn check_primary(&self, device_id: u64, election: &Option<p4::Uint128>) -> Result<(), Status> {
        if device_id != self.device_id {
            return Err(Status::not_found(format!("no device {device_id}")));
        }
        match self.primary() {
            Some((_, e)) if e == u128_of(election) => Ok(()),
            _ => Err(Status::permission_denied("not the primary controller")),
        }
    }

    fn check_entry(&self, e: &p4::TableEntry) -> Result<(), p4::Error> {
        let info = self
            .p4info
            .as_ref()
            .ok_or_else(|| p4_error(rpc::Code::FailedPrecondition, "no pipeline"))?;
        let t = info
            .tables
            .iter()
            .find(|t| t.preamble.as_ref().map(|p| p.id) == Some(e.table_id))
            .ok_or_else(|| p4_error(rpc::Code::NotFound, format!("no table {}", e.table_id)))?;
        for m in &e.r#match {
            if !t.match_fields.iter().any(|f| f.id == m.field_id) {
                return Err(p4_error(
                    rpc::Code::InvalidArgument,
                    format!("no field {}", m.field_id),
                ));
            }
        }
        if let Some(p4::TableAction {
            r#type: Some(p4::table_action::Type::Action(a)),
        }) = &e.action
        {
            if !t.action_refs.iter().any(|r| r.id == a.action_id) {
                return Err(p4_error(
                    rpc::Code::InvalidArgument,
                    format!("action {} not in table", a.action_id),
                ));
            }
        }
        Ok(())
    }

    /// One update, as the spec orders a target to answer it.
    pub fn apply(&mut self, u: &p4::Update) -> p4::Error {
        let kind = update::Type::try_from(u.r#type).unwrap_or(update::Type::Unspecified);
        let entity = u.entity.as_ref().and_then(|e| e.entity.as_ref());
        let result = match entity {
            Some(p4::entity::Entity::TableEntry(e)) => self.check_entry(e).and_then(|()| {
                let k = key_of(e);
                let exists = self.entries.contains_key(&k);
                match (kind, exists) {
                    (update::Type::Insert, true) => {
                        Err(p4_error(rpc::Code::AlreadyExists, "entry exists"))
                    }
                    (update::Type::Modify | update::Type::Delete, false) => {
                        Err(p4_error(rpc::Code::NotFound, "no such entry"))
                    }
                    (update::Type::Insert | update::Type::Modify, _) => {
                        self.entries.insert(k, e.clone());
                        Ok(())
                    }
                    (update::Type::Delete, true) => {
                        self.entries.remove(&k);
                        Ok(())
                    }
                    _ => Err(p4_error(rpc::Code::InvalidArgument, "bad update type")),
                }
            }),
            Some(p4::entity::Entity::PacketReplicationEngineEntry(
                p4::PacketReplicationEngineEntry {
                    r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                },
            )) => {
                let exists = self.groups.contains_key(&g.multicast_group_id);
                match (kind, exists) {
                    (update::Type::Insert, true) => {
                        Err(p4_error(rpc::Code::AlreadyExists, "group exists"))
                    }
                    (update::Type::Modify | update::Type::Delete, false) => {
                        Err(p4_error(rpc::Code::NotFound, "no such group"))
                    }
                    (update::Type::Delete, true) => {
                        self.groups.remove(&g.multicast_group_id);
                        Ok(())
                    }
                    _ => {
                        self.groups.insert(g.multicast_group_id, g.clone());
                        Ok(())
                    }
                }
            }
            _ => Err(p4_error(rpc::Code::Unimplemented, "entity not supported")),
        };
        result.err().unwrap_or_else(|| p4_error(rpc::Code::Ok, ""))
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = &p4::TableEntry> {
        self.entries.values()
    }

    /// Removes an entry behind the controllers' backs (a test's way to make state drift).
    pub fn remove_entry(&mut self, e: &p4::TableEntry) -> bool {
        self.entries.remove(&key_of(e)).is_some()
    }

    /// Adds an entry behind the controllers' backs.
    pub fn insert_entry(&mut self, e: p4::TableEntry) {
        self.entries.insert(key_of(&e), e);
    }

    /// Sends a PacketIn to the primary; false if there is none.
    pub fn packet_in(&self, p: p4::PacketIn) -> bool {
        let Some((id, _)) = self.primary() else {
            return false;
        };
        self.controllers[&id]
            .tx
            .try_send(Ok(p4::StreamMessageResponse {
                update: Some(stream_message_response::Update::Packet(p)),
            }))
            .is_ok()
    }
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<FakeState>>,
}

impl Service {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl p4_runtime_server::P4Runtime for Service {
    async fn write(
        &self,
        req: Request<p4::WriteRequest>,
    ) -> Result<Response<p4::WriteResponse>, Status> {
        let req = req.into_inner();
        let mut st = self.lock();
        st.write_requests += 1;
        st.check_primary(req.device_id, &req.election_id)?;
        st.write_updates += req.updates.len() as u64;
        let errors: Vec<p4::Error> = req.updates.iter().map(|u| st.apply(u)).collect();
        if errors
            .iter()
            .all(|e| e.canonical_code == rpc::Code::Ok as i32)
        {
            return Ok(Response::new(p4::WriteResponse {}));
        }
        let details = rpc::Status {
            code: rpc::Code::Unknown as i32,
            message: "some updates failed".into(),
            details: errors
                .iter()
                .map(|e| prost_types::Any {
                    type_url: "type.googleapis.com/p4.v1.Error".into(),
                    value: e.encode_to_vec(),
                })
                .collect(),
        };
        Err(Status::with_details(
            tonic::Code::Unknown,
            "some updates failed",
            details.encode_to_vec().into(),
        ))
    }

    type ReadStream = ReceiverStream<Result<p4::ReadResponse, Status>>;

    async fn read(
        &self,
        req: Request<p4::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let st = self.lock();
        if req.device_id != st.device_id {
            return Err(Status::not_found(format!("no device {}", req.device_id)));
        }
        let mut out = Vec::new();
        for e in &req.entities {
            match &e.entity {
                Some(p4::entity::Entity::TableEntry(t)) => out.extend(
                    st.entries
                        .values()
                        .filter(|x| t.table_id == 0 || x.table_id == t.table_id)
                        .map(|x| p4::Entity {
                            entity: Some(p4::entity::Entity::TableEntry(x.clone())),
                        }),
                ),
                Some(p4::entity::Entity::PacketReplicationEngineEntry(
                    p4::PacketReplicationEngineEntry {
                        r#type: Some(packet_replication_engine_entry::Type::MulticastGroupEntry(g)),
                    },
                )) => out.extend(
                    st.groups
                        .values()
                        .filter(|x| {
                            g.multicast_group_id == 0
                                || x.multicast_group_id == g.multicast_group_id
                        })
                        .map(|x| p4::Entity {
                            entity: Some(p4::entity::Entity::PacketReplicationEngineEntry(
                                p4::PacketReplicationEngineEntry {
                                    r#type: Some(
                                        packet_replication_engine_entry::Type::MulticastGroupEntry(
                                            x.clone(),
                                        ),
                                    ),
                                },
                            )),
                        }),
                ),
                _ => return Err(Status::unimplemented("entity not supported")),
            }
        }
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Ok(p4::ReadResponse { entities: out }));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        req: Request<p4::SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::SetForwardingPipelineConfigResponse>, Status> {
        use p4::set_forwarding_pipeline_config_request::Action;
        let req = req.into_inner();
        let mut st = self.lock();
        st.check_primary(req.device_id, &req.election_id)?;
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("no config"))?;
        let info = config
            .p4info
            .ok_or_else(|| Status::invalid_argument("no P4Info"))?;
        match Action::try_from(req.action) {
            Ok(Action::Verify) => {}
            Ok(Action::VerifyAndCommit) => {
                st.p4info = Some(info);
                st.cookie = config.cookie;
                st.entries.clear();
                st.groups.clear();
                st.pipeline_commits += 1;
            }
            _ => return Err(Status::unimplemented("only VERIFY and VERIFY_AND_COMMIT")),
        }
        Ok(Response::new(p4::SetForwardingPipelineConfigResponse {}))
    }

    async fn get_forwarding_pipeline_config(
        &self,
        req: Request<p4::GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::GetForwardingPipelineConfigResponse>, Status> {
        let st = self.lock();
        if req.get_ref().device_id != st.device_id {
            return Err(Status::not_found("no such device"));
        }
        if st.p4info.is_none() {
            return Err(Status::failed_precondition("no pipeline"));
        }
        // Cookie only: enough for the back end, and what every response type includes.
        Ok(Response::new(p4::GetForwardingPipelineConfigResponse {
            config: Some(p4::ForwardingPipelineConfig {
                p4info: None,
                p4_device_config: Vec::new(),
                cookie: st.cookie,
            }),
        }))
    }

    type StreamChannelStream = ReceiverStream<Result<p4::StreamMessageResponse, Status>>;

    async fn stream_channel(
        &self,
        req: Request<tonic::Streaming<p4::StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let svc = self.clone();
        tokio::spawn(async move {
            let mut me: Option<u64> = None;
            while let Ok(Some(msg)) = incoming.message().await {
                match msg.update {
                    Some(stream_message_request::Update::Arbitration(a)) if me.is_none() => {
                        let mut st = svc.lock();
                        if a.device_id != st.device_id {
                            let _ = tx.try_send(Err(Status::not_found("no such device")));
                            break;
                        }
                        match st.join(u128_of(&a.election_id), tx.clone()) {
                            Ok(id) => {
                                me = Some(id);
                                st.announce();
                            }
                            Err(s) => {
                                let _ = tx.try_send(Err(s));
                                break;
                            }
                        }
                    }
                    Some(stream_message_request::Update::Packet(p)) => {
                        let mut st = svc.lock();
                        if me.is_some() && st.primary().map(|(id, _)| id) == me {
                            st.packet_outs.push(p);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(id) = me {
                svc.lock().leave(id);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn capabilities(
        &self,
        _req: Request<p4::CapabilitiesRequest>,
    ) -> Result<Response<p4::CapabilitiesResponse>, Status> {
        Ok(Response::new(p4::CapabilitiesResponse {
            p4runtime_api_version: "1.4.0".into(),
            ..Default::default()
        }))
    }
}

/// The fake served on 127.0.0.1 (a free port), stopped on drop.
pub struct FakeP4rtTarget {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeP4rtTarget {
    pub async fn start(device_id: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(FakeState::new(device_id)));
        let svc = Service {
            state: state.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(p4_runtime_server::P4RuntimeServer::new(svc))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeP4rtTarget {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeP4rtTarget {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

//! The P4Runtime client: one StreamChannel for arbitration and packet I/O, and unary
//! SetForwardingPipelineConfig, Read and Write. Convergence follows ofctrl: read what the
//! target has once per connection, write only the difference from what is desired, and
//! keep the installed copy up to date from the target's answers.

use std::collections::BTreeMap;
use std::time::Duration;

use p4runtime_proto::google::rpc;
use p4runtime_proto::p4::v1::{
    self as p4, p4_runtime_client::P4RuntimeClient, set_forwarding_pipeline_config_request,
    stream_message_request, stream_message_response, write_request,
};
use p4runtime_proto::P4Info;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use wyvern_pipeline::ir::{FloodGroup, Flow};

use crate::encode::{canonical, decode, WidthError};
use crate::index::{IndexError, P4InfoIndex, PacketMetaInfo};
use crate::mapping::{group_entity, table_entity, MapError, Mapper};
use crate::state::{diff, Desired, Installed, Origin, Planned};

/// How long [`P4rtBackend::reconnect`] waits for the target to end the old stream.
const STREAM_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How to reach and identify with one P4Runtime device.
#[derive(Debug, Clone)]
pub struct P4rtConfig {
    pub device_id: u64,
    /// The controller role; empty is the default role (full access).
    pub role: String,
    /// Highest wins primary among the controllers of one role.
    pub election_id: u128,
    /// Updates per Write request.
    pub batch_size: usize,
    pub p4info: P4Info,
    /// The target-specific program (bmv2 JSON for simple_switch_grpc).
    pub device_config: Vec<u8>,
    /// Room for PacketIns not yet taken by the apps; the stream waits when it is full.
    pub packet_in_capacity: usize,
}

impl P4rtConfig {
    pub fn new(device_id: u64, election_id: u128, p4info: P4Info, device_config: Vec<u8>) -> Self {
        P4rtConfig {
            device_id,
            role: String::new(),
            election_id,
            batch_size: 1000,
            p4info,
            device_config,
            packet_in_capacity: 1024,
        }
    }
}

/// This controller's standing with the device, from the last arbitration update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mastership {
    /// No arbitration answer yet.
    Pending,
    Primary,
    /// Another controller (or none, if `primary_election_id` is `None`) is primary.
    Backup {
        primary_election_id: Option<u128>,
    },
    /// The stream ended; a new connection is needed.
    Disconnected,
}

/// A frame from the target with its `packet_in` header fields, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub payload: Vec<u8>,
    pub metadata: BTreeMap<String, u128>,
}

/// A frame for the target with `packet_out` header fields by name (every field of the
/// header must be given: the target parses them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub payload: Vec<u8>,
    pub metadata: Vec<(String, u128)>,
}

/// One update the target refused, with the IR object it was written for.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateFailure {
    pub origin: Origin,
    pub kind: p4::update::Type,
    pub code: tonic::Code,
    pub message: String,
}

/// What one [`P4rtBackend::sync`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Whether this sync read the target's tables first.
    pub read: bool,
    pub inserted: usize,
    pub modified: usize,
    pub deleted: usize,
    pub write_requests: usize,
    pub failures: Vec<UpdateFailure>,
}

impl SyncReport {
    /// Updates sent, refused ones included.
    pub fn updates(&self) -> usize {
        self.inserted + self.modified + self.deleted + self.failures.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("failed to index the P4Info: {0}")]
    Index(#[from] IndexError),
    #[error("failed to parse P4Runtime address {addr}: {source}")]
    Endpoint {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("failed to connect to P4Runtime target {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("failed to open the StreamChannel: {0}")]
    OpenStream(#[source] tonic::Status),
    #[error("failed to send on the StreamChannel: the stream is closed")]
    StreamClosed,
    #[error("failed to hear the arbitration answer within {0:?}")]
    ArbitrationTimeout(Duration),
    #[error("failed to get the target's forwarding pipeline: {0}")]
    GetPipeline(#[source] tonic::Status),
    #[error("failed to set the forwarding pipeline: {0}")]
    SetPipeline(#[source] tonic::Status),
    #[error("failed to read the target's entries: {0}")]
    Read(#[source] tonic::Status),
    #[error("failed to write a batch of {updates} updates: {status}")]
    Write {
        updates: usize,
        #[source]
        status: tonic::Status,
    },
    #[error("failed to build a packet_out: {0}")]
    PacketOutField(#[source] IndexError),
    #[error("failed to build a packet_out: {0}")]
    PacketOutWidth(#[source] WidthError),
}

fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

fn from_uint128(v: &p4::Uint128) -> u128 {
    (u128::from(v.high) << 64) | u128::from(v.low)
}

/// Keeps one P4Runtime device's tables equal to the desired IR.
pub struct P4rtBackend {
    client: P4RuntimeClient<Channel>,
    /// The same connection, for Writes of pre-encoded requests.
    channel: Channel,
    cfg: P4rtConfig,
    mapper: Mapper,
    stream_tx: mpsc::Sender<p4::StreamMessageRequest>,
    mastership: watch::Receiver<Mastership>,
    desired: Desired,
    /// `None` until read from the target (and again after a refused update, when our copy
    /// may be wrong).
    installed: Option<Installed>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for P4rtBackend {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl P4rtBackend {
    /// Connects, opens the StreamChannel and bids for primary with the configured election
    /// id. PacketIns arrive on the returned receiver.
    pub async fn connect(
        addr: &str,
        cfg: P4rtConfig,
    ) -> Result<(Self, mpsc::Receiver<PacketIn>), BackendError> {
        let index = P4InfoIndex::new(&cfg.p4info)?;
        let packet_in = index.packet_header("packet_in")?.clone();
        let (conn, pin_rx) = Connection::open(addr, &cfg, packet_in).await?;
        Ok((
            P4rtBackend {
                client: conn.client,
                channel: conn.channel,
                cfg,
                mapper: Mapper::new(index),
                stream_tx: conn.stream_tx,
                mastership: conn.mastership,
                desired: Desired::default(),
                installed: None,
                reader: conn.reader,
            },
            pin_rx,
        ))
    }

    /// A new connection (after the target restarted or the stream broke) with the same
    /// identity and desired state; the next [`P4rtBackend::sync`] reads the target first,
    /// so a target that kept its entries gets no writes for them.
    pub async fn reconnect(
        &mut self,
        addr: &str,
    ) -> Result<mpsc::Receiver<PacketIn>, BackendError> {
        let packet_in = self.mapper.index().packet_header("packet_in")?.clone();
        // Close the old stream first and give the target a moment to drop it: a target
        // refuses a second stream bidding with the same election id (spec 5.3).
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.stream_tx, closed));
        let gone = self.mastership.wait_for(|m| *m == Mastership::Disconnected);
        let _ = tokio::time::timeout(STREAM_CLOSE_WAIT, gone).await;
        self.reader.abort();
        let (conn, pin_rx) = Connection::open(addr, &self.cfg, packet_in).await?;
        self.client = conn.client;
        self.channel = conn.channel;
        self.stream_tx = conn.stream_tx;
        self.mastership = conn.mastership;
        self.reader = conn.reader;
        self.installed = None;
        Ok(pin_rx)
    }

    pub fn mastership(&self) -> Mastership {
        *self.mastership.borrow()
    }

    /// Waits for the first arbitration answer (or a change after it).
    pub async fn wait_for_mastership(
        &mut self,
        timeout: Duration,
    ) -> Result<Mastership, BackendError> {
        let rx = &mut self.mastership;
        let fut = rx.wait_for(|m| *m != Mastership::Pending);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(m)) => Ok(*m),
            Ok(Err(_)) => Err(BackendError::StreamClosed),
            Err(_) => Err(BackendError::ArbitrationTimeout(timeout)),
        }
    }

    /// Waits until this controller is primary (after a primary went away, say).
    pub async fn wait_until_primary(&mut self, timeout: Duration) -> Result<(), BackendError> {
        let fut = self
            .mastership
            .wait_for(|m| matches!(m, Mastership::Primary | Mastership::Disconnected));
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(m)) if *m == Mastership::Primary => Ok(()),
            Ok(_) => Err(BackendError::StreamClosed),
            Err(_) => Err(BackendError::ArbitrationTimeout(timeout)),
        }
    }

    pub fn mapper(&self) -> &Mapper {
        &self.mapper
    }

    /// The cookie this controller tags its pipeline with: a stable hash of the P4Info and
    /// the device config, so a restarted controller can tell its own program is loaded.
    pub fn pipeline_cookie(&self) -> u64 {
        // FNV-1a: stable across runs and hosts (no random seed).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .cfg
            .p4info
            .encode_to_vec()
            .iter()
            .chain(&self.cfg.device_config)
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// Loads the program only if the target does not run it already (its cookie differs):
    /// committing clears the target's tables, and a restarting controller must not wipe
    /// them. Returns whether it committed.
    pub async fn ensure_pipeline(&mut self) -> Result<bool, BackendError> {
        let req = p4::GetForwardingPipelineConfigRequest {
            device_id: self.cfg.device_id,
            response_type: p4::get_forwarding_pipeline_config_request::ResponseType::CookieOnly
                as i32,
        };
        let have = match self.client.get_forwarding_pipeline_config(req).await {
            Ok(r) => r
                .into_inner()
                .config
                .and_then(|c| c.cookie)
                .map(|c| c.cookie),
            // A target with no pipeline yet answers FAILED_PRECONDITION (or NOT_FOUND).
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::NotFound
                ) =>
            {
                None
            }
            Err(s) => return Err(BackendError::GetPipeline(s)),
        };
        if have == Some(self.pipeline_cookie()) {
            return Ok(false);
        }
        self.set_pipeline().await?;
        Ok(true)
    }

    /// Loads the program: P4Info plus device config, VERIFY_AND_COMMIT. Committing clears
    /// the target's forwarding state, so the installed copy is dropped and re-read.
    pub async fn set_pipeline(&mut self) -> Result<(), BackendError> {
        let req = p4::SetForwardingPipelineConfigRequest {
            device_id: self.cfg.device_id,
            role: self.cfg.role.clone(),
            election_id: Some(uint128(self.cfg.election_id)),
            action: set_forwarding_pipeline_config_request::Action::VerifyAndCommit as i32,
            config: Some(p4::ForwardingPipelineConfig {
                p4info: Some(self.cfg.p4info.clone()),
                p4_device_config: self.cfg.device_config.clone(),
                cookie: Some(p4::forwarding_pipeline_config::Cookie {
                    cookie: self.pipeline_cookie(),
                }),
            }),
            ..Default::default()
        };
        self.client
            .set_forwarding_pipeline_config(req)
            .await
            .map_err(BackendError::SetPipeline)?;
        self.installed = None;
        Ok(())
    }

    /// Replaces the desired state. Flows that have no P4 form are returned and left out;
    /// nothing is written until [`P4rtBackend::sync`].
    pub fn set_desired(&mut self, flows: &[Flow], groups: &[FloodGroup]) -> Vec<MapError> {
        let (d, errors) = Desired::build(&self.mapper, flows, groups);
        self.desired = d;
        errors
    }

    /// How many table entries are desired.
    pub fn desired_entries(&self) -> usize {
        self.desired.entry_count()
    }

    /// Reads every table entry and multicast group of the target.
    pub async fn read_all(&mut self) -> Result<Vec<p4::Entity>, BackendError> {
        let req = p4::ReadRequest {
            device_id: self.cfg.device_id,
            role: self.cfg.role.clone(),
            entities: vec![
                table_entity(p4::TableEntry::default()),
                group_entity(p4::MulticastGroupEntry::default()),
            ],
        };
        let mut stream = self
            .client
            .read(req)
            .await
            .map_err(BackendError::Read)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(resp) = stream.message().await.map_err(BackendError::Read)? {
            out.extend(resp.entities);
        }
        Ok(out)
    }

    /// Brings the target to the desired state: Read first if this connection has not (or
    /// our copy is in doubt), then write the difference in batches. Refused updates are
    /// reported with their flow; the next sync reads again and retries them.
    pub async fn sync(&mut self) -> Result<SyncReport, BackendError> {
        let mut report = SyncReport::default();
        let mut installed = match self.installed.take() {
            Some(i) => i,
            None => {
                report.read = true;
                Installed::from_entities(self.read_all().await?)
            }
        };
        let plan = diff(&self.desired, &installed);
        let mut in_doubt = false;
        for batch in plan.chunks(self.cfg.batch_size.max(1)) {
            report.write_requests += 1;
            // The updates are encoded from the stored bytes straight into the request.
            let mut updates = Vec::with_capacity(batch.len() * 96);
            for p in batch {
                p.encode_update(&self.desired, &installed, &mut updates);
            }
            match self.write(updates).await {
                Ok(()) => {
                    for p in batch {
                        installed.apply(p, &self.desired);
                        count(&mut report, p);
                    }
                }
                Err(status) => {
                    let Some(errors) = per_update_errors(&status, batch.len()) else {
                        self.installed = None;
                        return Err(BackendError::Write {
                            updates: batch.len(),
                            status,
                        });
                    };
                    for (p, e) in batch.iter().zip(errors) {
                        if e.canonical_code == rpc::Code::Ok as i32 {
                            installed.apply(p, &self.desired);
                            count(&mut report, p);
                        } else {
                            in_doubt = true;
                            report.failures.push(UpdateFailure {
                                origin: p.origin(&self.desired, &installed),
                                kind: p.kind,
                                code: tonic::Code::from(e.canonical_code),
                                message: e.message,
                            });
                        }
                    }
                }
            }
        }
        for f in &report.failures {
            tracing::warn!(origin = %f.origin, code = ?f.code, message = %f.message, "P4Runtime update refused");
        }
        self.installed = (!in_doubt).then_some(installed);
        Ok(report)
    }

    /// One Write of `updates`, records of `WriteRequest.updates` encoded already.
    async fn write(&mut self, updates: Vec<u8>) -> Result<(), tonic::Status> {
        let req = EncodedWriteRequest {
            head: p4::WriteRequest {
                device_id: self.cfg.device_id,
                role: self.cfg.role.clone(),
                election_id: Some(uint128(self.cfg.election_id)),
                atomicity: write_request::Atomicity::ContinueOnError as i32,
                ..Default::default()
            },
            updates,
        };
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("failed to reach the target: {e}")))?;
        let codec = tonic_prost::ProstCodec::<EncodedWriteRequest, p4::WriteResponse>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/p4.v1.P4Runtime/Write");
        grpc.unary(tonic::Request::new(req), path, codec)
            .await
            .map(|_| ())
    }

    /// Sends a frame to the target with its `packet_out` header, fields resolved by name.
    pub async fn send_packet(&self, p: PacketOut) -> Result<(), BackendError> {
        let hdr = self
            .mapper
            .index()
            .packet_header("packet_out")
            .map_err(BackendError::PacketOutField)?;
        let mut metadata = Vec::with_capacity(p.metadata.len());
        for (name, v) in &p.metadata {
            let f = hdr.field(name).map_err(BackendError::PacketOutField)?;
            metadata.push(p4::PacketMetadata {
                metadata_id: f.id,
                value: canonical(*v, f.bitwidth, &format!("packet_out.{name}"))
                    .map_err(BackendError::PacketOutWidth)?,
            });
        }
        self.stream_tx
            .send(p4::StreamMessageRequest {
                update: Some(stream_message_request::Update::Packet(p4::PacketOut {
                    payload: p.payload,
                    metadata,
                })),
            })
            .await
            .map_err(|_| BackendError::StreamClosed)
    }
}

/// One gRPC connection with its StreamChannel.
struct Connection {
    client: P4RuntimeClient<Channel>,
    channel: Channel,
    stream_tx: mpsc::Sender<p4::StreamMessageRequest>,
    mastership: watch::Receiver<Mastership>,
    reader: tokio::task::JoinHandle<()>,
}

impl Connection {
    async fn open(
        addr: &str,
        cfg: &P4rtConfig,
        packet_in: PacketMetaInfo,
    ) -> Result<(Self, mpsc::Receiver<PacketIn>), BackendError> {
        let endpoint =
            Endpoint::from_shared(addr.to_string()).map_err(|source| BackendError::Endpoint {
                addr: addr.to_string(),
                source,
            })?;
        // Large windows both ways: Write batches and Read answers are hundreds of kB.
        let channel = endpoint
            .initial_stream_window_size(Some(16 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| BackendError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let mut client = P4RuntimeClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let (stream_tx, stream_rx) = mpsc::channel(64);
        stream_tx
            .send(p4::StreamMessageRequest {
                update: Some(stream_message_request::Update::Arbitration(
                    p4::MasterArbitrationUpdate {
                        device_id: cfg.device_id,
                        role: (!cfg.role.is_empty()).then(|| p4::Role {
                            name: cfg.role.clone(),
                            ..Default::default()
                        }),
                        election_id: Some(uint128(cfg.election_id)),
                        status: None,
                    },
                )),
            })
            .await
            .map_err(|_| BackendError::StreamClosed)?;
        let responses = client
            .stream_channel(ReceiverStream::new(stream_rx))
            .await
            .map_err(BackendError::OpenStream)?
            .into_inner();
        let (m_tx, m_rx) = watch::channel(Mastership::Pending);
        let (pin_tx, pin_rx) = mpsc::channel(cfg.packet_in_capacity.max(1));
        let reader = tokio::spawn(read_stream(responses, m_tx, pin_tx, packet_in));
        Ok((
            Connection {
                client,
                channel,
                stream_tx,
                mastership: m_rx,
                reader,
            },
            pin_rx,
        ))
    }
}

fn count(report: &mut SyncReport, p: &Planned) {
    match p.kind {
        p4::update::Type::Insert => report.inserted += 1,
        p4::update::Type::Modify => report.modified += 1,
        p4::update::Type::Delete => report.deleted += 1,
        p4::update::Type::Unspecified => {}
    }
}

/// A `p4.v1.WriteRequest` whose `updates` are encoded already ([`Planned::encode_update`]):
/// the request is written from the stored bytes, never built as messages. Send-only.
#[derive(Debug, Clone, Default)]
struct EncodedWriteRequest {
    /// Every field but `updates`.
    head: p4::WriteRequest,
    /// Records of field 4, each with its tag and length.
    updates: Vec<u8>,
}

impl Message for EncodedWriteRequest {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        self.head.encode_raw(buf);
        buf.put_slice(&self.updates);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded by this side; skipping keeps the type a valid Message.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.encoded_len() + self.updates.len()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.updates.clear();
    }
}

/// The per-update `p4.v1.Error`s of a failed Write (spec 12.3: a google.rpc.Status in the
/// gRPC status details, one `p4.v1.Error` per update in order), if the target gave them.
pub fn per_update_errors(status: &tonic::Status, updates: usize) -> Option<Vec<p4::Error>> {
    let st = rpc::Status::decode(status.details()).ok()?;
    if st.details.len() != updates {
        return None;
    }
    st.details
        .iter()
        .map(|any| {
            any.type_url
                .ends_with("/p4.v1.Error")
                .then(|| p4::Error::decode(any.value.as_slice()).ok())
                .flatten()
        })
        .collect()
}

async fn read_stream(
    mut responses: tonic::Streaming<p4::StreamMessageResponse>,
    mastership: watch::Sender<Mastership>,
    packet_in: mpsc::Sender<PacketIn>,
    hdr: PacketMetaInfo,
) {
    loop {
        let msg = match responses.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                tracing::warn!(%status, "P4Runtime stream failed");
                break;
            }
        };
        match msg.update {
            Some(stream_message_response::Update::Arbitration(a)) => {
                let ok = a
                    .status
                    .as_ref()
                    .is_none_or(|s| s.code == rpc::Code::Ok as i32);
                let m = if ok {
                    Mastership::Primary
                } else {
                    // NOT_FOUND: nobody is primary; ALREADY_EXISTS: someone else is.
                    let someone = a
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == rpc::Code::AlreadyExists as i32);
                    Mastership::Backup {
                        primary_election_id: someone
                            .then(|| a.election_id.as_ref().map(from_uint128))
                            .flatten(),
                    }
                };
                tracing::info!(?m, "P4Runtime arbitration");
                mastership.send_replace(m);
            }
            Some(stream_message_response::Update::Packet(p)) => {
                let metadata = p
                    .metadata
                    .iter()
                    .filter_map(|m| {
                        let f = hdr.fields.iter().find(|f| f.id == m.metadata_id)?;
                        Some((f.name.clone(), decode(&m.value)?))
                    })
                    .collect();
                let pin = PacketIn {
                    payload: p.payload,
                    metadata,
                };
                if packet_in.send(pin).await.is_err() {
                    tracing::debug!("PacketIn dropped: nobody listens");
                }
            }
            Some(stream_message_response::Update::Error(e)) => {
                tracing::warn!(code = e.canonical_code, message = %e.message, "P4Runtime stream error");
            }
            _ => {}
        }
    }
    mastership.send_replace(Mastership::Disconnected);
}

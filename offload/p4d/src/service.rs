//! The tonic shell around [`Target`]: the P4Runtime service on a TCP listener.

use std::net::SocketAddr;

use p4runtime_proto::google::rpc::{self, Code};
use p4runtime_proto::p4::v1::{self as p4, p4_runtime_server, stream_message_request};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

use crate::target::Target;

/// P4Runtime API version this target implements (spec 1.4 messages).
pub const API_VERSION: &str = "1.4.0";

/// Room in a controller's stream for PacketIns and arbitration updates.
const STREAM_CAPACITY: usize = 1024;

/// The gRPC service of one [`Target`].
#[derive(Clone)]
pub struct Service {
    target: Target,
}

impl Service {
    pub fn new(target: Target) -> Self {
        Service { target }
    }

    /// The tonic service, with message size limits lifted (a Read of 100k entries is
    /// larger than tonic's 4 MiB default).
    pub fn into_server(self) -> p4_runtime_server::P4RuntimeServer<Service> {
        p4_runtime_server::P4RuntimeServer::new(self)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }
}

/// Serves `target` on `listener` until `shutdown` completes.
pub async fn serve(
    target: Target,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Write batches are large (hundreds of kB): with HTTP/2's default 64 kB windows a
    // request waits for several window updates from this side.
    tonic::transport::Server::builder()
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .tcp_nodelay(true)
        .add_service(Service::new(target).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// HTTP/2 flow-control window of the P4Runtime server (stream and connection).
const WINDOW: u32 = 16 << 20;

/// Binds `addr` (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[tonic::async_trait]
impl p4_runtime_server::P4Runtime for Service {
    async fn write(
        &self,
        req: Request<p4::WriteRequest>,
    ) -> Result<Response<p4::WriteResponse>, Status> {
        let errors = self.target.write(req.into_inner())?;
        if errors.iter().all(|e| e.canonical_code == Code::Ok as i32) {
            return Ok(Response::new(p4::WriteResponse {}));
        }
        // Spec 12.3: one p4.v1.Error per update, in order, in a google.rpc.Status.
        let details = rpc::Status {
            code: Code::Unknown as i32,
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
        let entities = self.target.read(req.get_ref())?;
        let (tx, rx) = mpsc::channel(1);
        // One response; the channel has room for it.
        let _ = tx.try_send(Ok(p4::ReadResponse { entities }));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        req: Request<p4::SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::SetForwardingPipelineConfigResponse>, Status> {
        self.target.set_pipeline(req.into_inner())?;
        Ok(Response::new(p4::SetForwardingPipelineConfigResponse {}))
    }

    async fn get_forwarding_pipeline_config(
        &self,
        req: Request<p4::GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::GetForwardingPipelineConfigResponse>, Status> {
        let config = self.target.get_pipeline(req.get_ref())?;
        Ok(Response::new(p4::GetForwardingPipelineConfigResponse {
            config: Some(config),
        }))
    }

    type StreamChannelStream = ReceiverStream<Result<p4::StreamMessageResponse, Status>>;

    async fn stream_channel(
        &self,
        req: Request<tonic::Streaming<p4::StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let mut incoming = req.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        let target = self.target.clone();
        tokio::spawn(async move {
            let mut me: Option<u64> = None;
            while let Ok(Some(msg)) = incoming.message().await {
                match msg.update {
                    Some(stream_message_request::Update::Arbitration(a)) => {
                        let r = match me {
                            None => target.join(&a, tx.clone()).map(|id| me = Some(id)),
                            Some(id) => target.rebid(id, &a),
                        };
                        if let Err(s) = r {
                            let _ = tx.try_send(Err(s));
                            break;
                        }
                    }
                    Some(stream_message_request::Update::Packet(p)) => match me {
                        Some(id) => target.packet_out(id, p),
                        None => {
                            let _ = tx.try_send(Err(Status::failed_precondition(
                                "failed to take a PacketOut: no arbitration on this stream yet",
                            )));
                        }
                    },
                    _ => {}
                }
            }
            if let Some(id) = me {
                target.leave(id);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn capabilities(
        &self,
        _req: Request<p4::CapabilitiesRequest>,
    ) -> Result<Response<p4::CapabilitiesResponse>, Status> {
        Ok(Response::new(p4::CapabilitiesResponse {
            p4runtime_api_version: API_VERSION.into(),
            ..Default::default()
        }))
    }
}

//! One JSON-RPC connection to an OVSDB server: requests matched to replies by id, the
//! server's `echo` requests answered, notifications (`update`, ...) handed to the caller.
//!
//! The connection is served by one task that owns the socket; `Client` is a cheap handle to
//! it. When the socket closes, pending calls fail with `Disconnected` and the notification
//! receiver ends: reconnecting is the caller's policy (see `monitor`).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::codec::{encode_request, encode_response, FrameDecoder, Message};
use crate::ops::Operation;

/// Failures of the connection and of single calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to parse OVSDB remote {0:?}: expected unix:PATH or tcp:HOST:PORT")]
    InvalidRemote(String),
    #[error("failed to connect to {remote}")]
    Connect {
        remote: Remote,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to call {method}: connection to the OVSDB server closed")]
    Disconnected { method: String },
    #[error("failed to call {method}: server answered with error {error}")]
    Rpc { method: String, error: Value },
    #[error("failed to decode the reply to {method}: {detail}")]
    BadReply { method: String, detail: String },
    #[error("failed to apply transaction on {db}: operation {index} failed: {error} ({details})")]
    Transact {
        db: String,
        index: usize,
        error: String,
        details: String,
    },
}

/// Where the OVSDB server listens, spelled like OVS spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `unix:PATH`
    Unix(PathBuf),
    /// `tcp:HOST:PORT`
    Tcp(String),
}

impl FromStr for Remote {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(Remote::Unix(PathBuf::from(path)));
            }
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            if addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Ok(Remote::Tcp(addr.to_owned()));
            }
        }
        Err(ClientError::InvalidRemote(s.to_owned()))
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A message the server sent without being asked (`update`, `update2`, `locked`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

/// Receives the connection's notifications; yields `None` once the connection is gone.
pub type Notifications = mpsc::UnboundedReceiver<Notification>;

struct Call {
    method: String,
    params: Value,
    reply: oneshot::Sender<Result<Value, ClientError>>,
}

/// Handle to one OVSDB connection. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct Client {
    calls: mpsc::UnboundedSender<Call>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .finish()
    }
}

impl Client {
    /// Connects to `remote` and starts serving the connection on the current runtime.
    pub async fn connect(remote: &Remote) -> Result<(Client, Notifications), ClientError> {
        let err = |source| ClientError::Connect {
            remote: remote.clone(),
            source,
        };
        match remote {
            Remote::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(err)?;
                Ok(Self::from_stream(s))
            }
            Remote::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(err)?;
                let _ = s.set_nodelay(true);
                Ok(Self::from_stream(s))
            }
        }
    }

    /// Serves an already open byte stream (tests use an in-memory pipe as a fake server).
    pub fn from_stream<S>(stream: S) -> (Client, Notifications)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(stream, calls_rx, notes_tx));
        (Client { calls: calls_tx }, notes_rx)
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// Sends a request and waits for its result (`error` non-null becomes `Rpc`).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        let disconnected = || ClientError::Disconnected {
            method: method.to_owned(),
        };
        self.calls
            .send(Call {
                method: method.to_owned(),
                params,
                reply: tx,
            })
            .map_err(|_| disconnected())?;
        rx.await.map_err(|_| disconnected())?
    }

    /// The databases the server holds.
    pub async fn list_dbs(&self) -> Result<Vec<String>, ClientError> {
        let v = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| ClientError::BadReply {
            method: "list_dbs".into(),
            detail: e.to_string(),
        })
    }

    /// The schema of `db`, as the server's JSON.
    pub async fn get_schema(&self, db: &str) -> Result<Value, ClientError> {
        self.call("get_schema", json!([db])).await
    }

    /// `echo`: a liveness probe; returns what the server echoed.
    pub async fn echo(&self, payload: Value) -> Result<Value, ClientError> {
        self.call("echo", payload).await
    }

    /// Runs `ops` atomically on `db`. Returns one result object per operation; any failed
    /// operation (or a failed commit) turns into `Transact` naming the operation.
    pub async fn transact(&self, db: &str, ops: &[Operation]) -> Result<Vec<Value>, ClientError> {
        let mut params = vec![json!(db)];
        for op in ops {
            params.push(serde_json::to_value(op).map_err(|e| ClientError::BadReply {
                method: "transact".into(),
                detail: format!("operation not serialisable: {e}"),
            })?);
        }
        let v = self.call("transact", Value::Array(params)).await?;
        let Value::Array(results) = v else {
            return Err(ClientError::BadReply {
                method: "transact".into(),
                detail: format!("expected an array, got {v}"),
            });
        };
        for (index, r) in results.iter().enumerate() {
            if let Some(error) = r.get("error").and_then(Value::as_str) {
                return Err(ClientError::Transact {
                    db: db.to_owned(),
                    index,
                    error: error.to_owned(),
                    details: r
                        .get("details")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                });
            }
        }
        Ok(results)
    }

    /// Starts a `monitor` (RFC 7047 4.1.5): returns the initial table-updates; later changes
    /// arrive as `update` notifications carrying `monitor_id`.
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: &str,
        requests: Value,
    ) -> Result<Value, ClientError> {
        self.call("monitor", json!([db, monitor_id, requests]))
            .await
    }

    /// Stops a monitor started with `monitor`.
    pub async fn monitor_cancel(&self, monitor_id: &str) -> Result<(), ClientError> {
        self.call("monitor_cancel", json!([monitor_id]))
            .await
            .map(|_| ())
    }
}

/// The connection task: the only owner of the socket.
async fn serve<S>(
    stream: S,
    mut calls: mpsc::UnboundedReceiver<Call>,
    notes: mpsc::UnboundedSender<Notification>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut dec = FrameDecoder::default();
    let mut pending: HashMap<u64, Call> = HashMap::new();
    let mut next_id: u64 = 1;
    let mut buf = vec![0u8; 64 * 1024];
    let reason: String = loop {
        tokio::select! {
            call = calls.recv() => {
                // All handles dropped: nobody can ask anything any more.
                let Some(call) = call else { break "client dropped".into() };
                let id = next_id;
                next_id += 1;
                let bytes = encode_request(Some(id), &call.method, &call.params);
                pending.insert(id, call);
                if let Err(e) = wr.write_all(&bytes).await {
                    break format!("write failed: {e}");
                }
            }
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(0) => break "server closed the connection".into(),
                    Ok(n) => n,
                    Err(e) => break format!("read failed: {e}"),
                };
                dec.extend(&buf[..n]);
                match dispatch(&mut dec, &mut pending, &notes, &mut wr).await {
                    Ok(()) => {}
                    Err(reason) => break reason,
                }
            }
        }
    };
    tracing::debug!(%reason, pending = pending.len(), "OVSDB connection closed");
    for (_, call) in pending.drain() {
        let _ = call.reply.send(Err(ClientError::Disconnected {
            method: call.method,
        }));
    }
}

/// Handles every complete message in the decoder; an `Err` closes the connection.
async fn dispatch<W: AsyncWrite + Unpin>(
    dec: &mut FrameDecoder,
    pending: &mut HashMap<u64, Call>,
    notes: &mpsc::UnboundedSender<Notification>,
    wr: &mut W,
) -> Result<(), String> {
    loop {
        let msg = match dec.next_message() {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "malformed message from OVSDB server");
                return Err(e.to_string());
            }
        };
        match msg {
            Message::Request { id, method, params } if method == "echo" => {
                if let Err(e) = wr.write_all(&encode_response(&id, &params)).await {
                    return Err(format!("write failed: {e}"));
                }
            }
            Message::Request { method, .. } => {
                tracing::debug!(%method, "ignoring unexpected request from OVSDB server");
            }
            Message::Notification { method, params } => {
                // A dropped receiver only means nobody listens to notifications.
                let _ = notes.send(Notification { method, params });
            }
            Message::Response { id, result, error } => {
                let Some(call) = id.as_u64().and_then(|id| pending.remove(&id)) else {
                    tracing::debug!(%id, "reply to no pending request");
                    continue;
                };
                let outcome = if error.is_null() {
                    Ok(result)
                } else {
                    Err(ClientError::Rpc {
                        method: call.method,
                        error,
                    })
                };
                let _ = call.reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    async fn read_message(server: &mut DuplexStream, dec: &mut FrameDecoder) -> Message {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = dec.next_message().expect("client sends valid JSON-RPC") {
                return m;
            }
            let n = server.read(&mut buf).await.expect("read");
            assert!(n > 0, "client closed");
            dec.extend(&buf[..n]);
        }
    }

    #[test]
    fn remotes_parse() {
        assert_eq!(
            "unix:/run/db.sock".parse::<Remote>().expect("unix"),
            Remote::Unix("/run/db.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse::<Remote>().expect("tcp"),
            Remote::Tcp("127.0.0.1:6640".into())
        );
        for bad in ["unix:", "tcp:1.2.3.4", "ssl:1.2.3.4:6640", "tcp::1", "x"] {
            assert!(bad.parse::<Remote>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn answers_echo_matches_replies_and_forwards_notifications() {
        let (client_end, mut server) = tokio::io::duplex(1 << 16);
        let (client, mut notes) = Client::from_stream(client_end);
        let mut dec = FrameDecoder::default();

        // The server probes us: we must answer with the same id and params.
        server
            .write_all(br#"{"id":"echo","method":"echo","params":["ping"]}"#)
            .await
            .expect("write");
        let reply = read_message(&mut server, &mut dec).await;
        assert_eq!(
            reply,
            Message::Response {
                id: json!("echo"),
                result: json!(["ping"]),
                error: Value::Null
            }
        );

        // Two calls in flight, answered out of order.
        let c1 = client.clone();
        let a = tokio::spawn(async move { c1.list_dbs().await });
        let c2 = client.clone();
        let b = tokio::spawn(async move { c2.get_schema("nope").await });
        let mut ids = HashMap::new();
        for _ in 0..2 {
            let Message::Request { id, method, .. } = read_message(&mut server, &mut dec).await
            else {
                panic!("expected a request");
            };
            ids.insert(method, id);
        }
        let err = json!({"id": ids["get_schema"], "result": null, "error": "unknown database"});
        let ok = json!({"id": ids["list_dbs"], "result": ["Open_vSwitch"], "error": null});
        let note = json!({"id": null, "method": "update", "params": ["m", {}]});
        server
            .write_all(format!("{err}{note}{ok}").as_bytes())
            .await
            .expect("write");
        assert_eq!(a.await.expect("join").expect("ok"), vec!["Open_vSwitch"]);
        assert!(matches!(
            b.await.expect("join"),
            Err(ClientError::Rpc { ref method, .. }) if method == "get_schema"
        ));
        let n = notes.recv().await.expect("notification");
        assert_eq!(n.method, "update");
        assert_eq!(n.params, json!(["m", {}]));
    }

    #[tokio::test]
    async fn malformed_server_bytes_close_the_connection_without_panic() {
        let (client_end, mut server) = tokio::io::duplex(1 << 16);
        let (client, mut notes) = Client::from_stream(client_end);
        let call = {
            let c = client.clone();
            tokio::spawn(async move { c.echo(json!([1])).await })
        };
        let mut dec = FrameDecoder::default();
        let _ = read_message(&mut server, &mut dec).await;
        server
            .write_all(b"{\"id\":1,\"result\":[1] GARBAGE }")
            .await
            .expect("write");
        assert!(matches!(
            call.await.expect("join"),
            Err(ClientError::Disconnected { .. })
        ));
        assert!(
            notes.recv().await.is_none(),
            "notifications end with the connection"
        );
        assert!(matches!(
            client.list_dbs().await,
            Err(ClientError::Disconnected { .. })
        ));
    }

    #[tokio::test]
    async fn failed_transaction_operation_is_reported_with_its_index() {
        let (client_end, mut server) = tokio::io::duplex(1 << 16);
        let (client, _notes) = Client::from_stream(client_end);
        let t = tokio::spawn(async move {
            client
                .transact("Open_vSwitch", &[Operation::delete("Port", vec![])])
                .await
        });
        let mut dec = FrameDecoder::default();
        let Message::Request { id, params, .. } = read_message(&mut server, &mut dec).await else {
            panic!("expected a request");
        };
        assert_eq!(
            params,
            json!(["Open_vSwitch", {"op": "delete", "table": "Port", "where": []}])
        );
        let reply = json!({"id": id, "error": null,
            "result": [{"count": 0}, {"error": "constraint violation", "details": "dup"}]});
        server
            .write_all(reply.to_string().as_bytes())
            .await
            .expect("write");
        match t.await.expect("join") {
            Err(ClientError::Transact { index, error, .. }) => {
                assert_eq!(index, 1);
                assert_eq!(error, "constraint violation");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

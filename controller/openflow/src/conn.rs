//! The switch connection: wyvernd listens, the bridge connects (tcp or unix socket).
//!
//! One [`Switch`] handle per connected bridge. A reader task frames and decodes messages,
//! answers echo requests, matches replies (and errors) to the request's xid, assembles
//! multipart replies across `OFPMPF_MORE`, and delivers packet-ins and other asynchronous
//! messages as [`SwitchEvent`]s. A writer task batches encoded messages into few writes.
//! A keepalive task sends echo requests when the line is idle and drops a silent switch.

use crate::wire::{
    self, ErrorMsg, FeaturesReply, FlowStats, FlowStatsRequest, Frame, GroupDesc, Message,
    MultipartReplyBody, MultipartRequest, MultipartRequestBody, PacketIn, PacketOut, OFPMPF_MORE,
    OFP_VERSION_1_3,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// Failures of the switch connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("failed to bind OpenFlow listener on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to accept an OpenFlow connection")]
    Accept(#[source] std::io::Error),
    #[error("failed to connect to the switch at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read from the switch")]
    Read(#[source] std::io::Error),
    #[error("failed to decode a message from the switch")]
    Decode(#[source] wire::Error),
    #[error("failed to handshake: no {0} within the deadline")]
    HandshakeTimeout(&'static str),
    #[error("failed to negotiate OpenFlow 1.3: switch offers versions {0:?}")]
    Version(Vec<u8>),
    #[error("failed to handshake: switch closed the connection")]
    HandshakeClosed,
    #[error("failed to {0}: the switch connection is closed")]
    Disconnected(&'static str),
    #[error("switch rejected xid {xid}: {error}")]
    Rejected { xid: u32, error: ErrorMsg },
    #[error("failed to {what}: unexpected reply {got}")]
    UnexpectedReply { what: &'static str, got: String },
    #[error("failed to parse listen address {0:?} (want tcp:IP:PORT or unix:PATH)")]
    BadAddress(String),
}

/// Where wyvernd listens for the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Default for ListenAddr {
    fn default() -> Self {
        ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 6653)))
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = ConnError;
    /// `tcp:127.0.0.1:6653`, `ptcp:...`, `unix:/run/x.sock`, `punix:...` or `IP:PORT`.
    fn from_str(s: &str) -> Result<Self, ConnError> {
        let bad = || ConnError::BadAddress(s.to_string());
        if let Some(p) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("punix:")) {
            return Ok(ListenAddr::Unix(PathBuf::from(p)));
        }
        let rest = s
            .strip_prefix("tcp:")
            .or_else(|| s.strip_prefix("ptcp:"))
            .unwrap_or(s);
        rest.parse().map(ListenAddr::Tcp).map_err(|_| bad())
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Connection tuning.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// Send an echo request after this long without receiving anything.
    pub echo_interval: Duration,
    /// Drop the connection after this long without receiving anything.
    pub dead_after: Duration,
    /// Deadline for HELLO + FEATURES.
    pub handshake_timeout: Duration,
    /// Ask OVS for NXT_PACKET_IN2, the only packet-in form that carries the userdata of a
    /// controller action (wyvern's apps use it to learn the logical port).
    pub packet_in2: bool,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            echo_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            packet_in2: true,
        }
    }
}

/// Something the switch said that nobody asked for.
#[derive(Debug, Clone)]
pub enum SwitchEvent {
    PacketIn {
        datapath_id: u64,
        packet_in: PacketIn,
        /// When the reader decoded it off the connection: the start of the packet-in's
        /// handling latency, before any channel or task hop.
        received: Instant,
    },
    /// An error whose xid matches no pending request or error watch.
    Error {
        xid: u32,
        error: ErrorMsg,
    },
    /// Any other asynchronous message (port status, flow removed, ...).
    Message {
        xid: u32,
        message: Message,
    },
    Disconnected {
        datapath_id: u64,
        reason: String,
    },
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

enum Listening {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// Accepts bridge connections.
pub struct Listener {
    inner: Listening,
}

impl Listener {
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, ConnError> {
        let bind_err = |source| ConnError::Bind {
            addr: addr.to_string(),
            source,
        };
        let inner = match addr {
            ListenAddr::Tcp(a) => {
                Listening::Tcp(tokio::net::TcpListener::bind(a).await.map_err(bind_err)?)
            }
            ListenAddr::Unix(p) => {
                // A stale socket file from a previous run would make bind fail.
                let _ = std::fs::remove_file(p);
                Listening::Unix(
                    tokio::net::UnixListener::bind(p).map_err(bind_err)?,
                    p.clone(),
                )
            }
        };
        Ok(Listener { inner })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Option<ListenAddr> {
        match &self.inner {
            Listening::Tcp(l) => l.local_addr().ok().map(ListenAddr::Tcp),
            Listening::Unix(_, p) => Some(ListenAddr::Unix(p.clone())),
        }
    }

    /// Waits for a bridge, runs the handshake and returns its handle plus its events.
    pub async fn accept(
        &self,
        config: &SwitchConfig,
    ) -> Result<(Switch, mpsc::UnboundedReceiver<SwitchEvent>), ConnError> {
        let (r, w): (Reader, Writer) = match &self.inner {
            Listening::Tcp(l) => {
                let (s, _) = l.accept().await.map_err(ConnError::Accept)?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Listening::Unix(l, _) => {
                let (s, _) = l.accept().await.map_err(ConnError::Accept)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Switch::handshake(r, w, config).await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listening::Unix(_, p) = &self.inner {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads whole OpenFlow frames from a byte stream.
struct FrameReader {
    r: Reader,
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ConnError> {
        loop {
            let avail = &self.buf[self.start..];
            if let Some(len) = Frame::peek_len(avail).map_err(ConnError::Decode)? {
                if avail.len() >= len {
                    let frame = avail[..len].to_vec();
                    self.start += len;
                    return Ok(Some(frame));
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.r.read(&mut chunk).await.map_err(ConnError::Read)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

enum Pending {
    Single(oneshot::Sender<Result<Message, ConnError>>),
    Multipart(
        Vec<MultipartReplyBody>,
        oneshot::Sender<Result<Vec<MultipartReplyBody>, ConnError>>,
    ),
}

struct ErrorWatch {
    start: u32,
    end: u32,
    tx: mpsc::UnboundedSender<(u32, ErrorMsg)>,
}

struct Inner {
    datapath_id: u64,
    features: FeaturesReply,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u32, Pending>>,
    watches: Mutex<Vec<ErrorWatch>>,
    next_xid: AtomicU32,
    closed: watch::Sender<bool>,
    is_closed: AtomicBool,
    bytes_sent: AtomicU64,
}

/// A connected bridge. Cheap to clone; every clone talks to the same connection.
#[derive(Clone)]
pub struct Switch {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Switch({:#018x})", self.inner.datapath_id)
    }
}

impl Switch {
    async fn handshake(
        r: Reader,
        mut w: Writer,
        config: &SwitchConfig,
    ) -> Result<(Switch, mpsc::UnboundedReceiver<SwitchEvent>), ConnError> {
        let mut fr = FrameReader {
            r,
            buf: Vec::new(),
            start: 0,
        };
        let hello = Message::Hello {
            versions: vec![OFP_VERSION_1_3],
        };
        let mut out = hello.to_bytes(1);
        Message::FeaturesRequest.emit(2, &mut out);
        if config.packet_in2 {
            Message::SetPacketInFormat(2).emit(3, &mut out);
        }
        w.write_all(&out).await.map_err(ConnError::Read)?;
        let deadline = tokio::time::Instant::now() + config.handshake_timeout;
        let mut got_hello = false;
        let features = loop {
            let what = if got_hello { "FEATURES_REPLY" } else { "HELLO" };
            let frame = tokio::time::timeout_at(deadline, fr.next())
                .await
                .map_err(|_| ConnError::HandshakeTimeout(what))??
                .ok_or(ConnError::HandshakeClosed)?;
            let frame = Frame::new_checked(&frame).map_err(ConnError::Decode)?;
            if !got_hello {
                let msg = Message::parse(&frame).map_err(ConnError::Decode)?;
                let Message::Hello { versions } = msg else {
                    return Err(ConnError::UnexpectedReply {
                        what: "handshake",
                        got: format!("{msg:?}"),
                    });
                };
                let ok = if versions.is_empty() {
                    frame.version() >= OFP_VERSION_1_3
                } else {
                    versions.contains(&OFP_VERSION_1_3)
                };
                if !ok {
                    let err = Message::Error(ErrorMsg {
                        err_type: 0,
                        code: 0,
                        experimenter: None,
                        data: b"wyvern speaks OpenFlow 1.3 only".to_vec(),
                    });
                    let _ = w.write_all(&err.to_bytes(frame.xid())).await;
                    return Err(ConnError::Version(versions));
                }
                got_hello = true;
                continue;
            }
            if frame.version() != OFP_VERSION_1_3 {
                continue;
            }
            match Message::parse(&frame).map_err(ConnError::Decode)? {
                Message::FeaturesReply(f) => break f,
                Message::EchoRequest(d) => {
                    let reply = Message::EchoReply(d).to_bytes(frame.xid());
                    w.write_all(&reply).await.map_err(ConnError::Read)?;
                }
                Message::Error(e) => {
                    return Err(ConnError::Rejected {
                        xid: frame.xid(),
                        error: e,
                    })
                }
                _ => {}
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (closed, closed_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            datapath_id: features.datapath_id,
            features,
            tx,
            pending: Mutex::new(HashMap::new()),
            watches: Mutex::new(Vec::new()),
            next_xid: AtomicU32::new(16),
            closed,
            is_closed: AtomicBool::new(false),
            bytes_sent: AtomicU64::new(0),
        });
        let last_rx = Arc::new(Mutex::new(Instant::now()));
        tokio::spawn(writer_task(w, rx, inner.clone(), closed_rx.clone()));
        tokio::spawn(reader_task(
            fr,
            inner.clone(),
            events_tx.clone(),
            last_rx.clone(),
            closed_rx.clone(),
        ));
        tokio::spawn(keepalive_task(
            inner.clone(),
            config.clone(),
            last_rx,
            closed_rx,
            events_tx,
        ));
        tracing::info!(
            datapath_id = format!("{:#018x}", inner.datapath_id),
            "switch connected"
        );
        Ok((Switch { inner }, events_rx))
    }

    /// Connects to a switch's passive OpenFlow socket (e.g. a bridge's `<bridge>.mgmt`
    /// service socket, as `ovs-ofctl` does) and runs the same handshake. Open vSwitch sends
    /// no asynchronous messages (packet-ins, port status) to such service connections, so
    /// they suit extra write-only connections (see `ofctrl`'s lanes).
    pub async fn connect(
        addr: &ListenAddr,
        config: &SwitchConfig,
    ) -> Result<(Switch, mpsc::UnboundedReceiver<SwitchEvent>), ConnError> {
        let connect_err = |source| ConnError::Connect {
            addr: addr.to_string(),
            source,
        };
        let (r, w): (Reader, Writer) = match addr {
            ListenAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(connect_err)?;
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            ListenAddr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Switch::handshake(r, w, config).await
    }

    pub fn datapath_id(&self) -> u64 {
        self.inner.datapath_id
    }

    pub fn features(&self) -> &FeaturesReply {
        &self.inner.features
    }

    pub fn is_connected(&self) -> bool {
        !self.inner.is_closed.load(Ordering::Acquire)
    }

    /// Resolves when the connection has closed.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Closes the connection (the bridge will reconnect on its own).
    pub fn disconnect(&self) {
        close(&self.inner);
    }

    /// Reserves `n` consecutive xids and returns the first.
    pub fn alloc_xids(&self, n: u32) -> u32 {
        let x = self.inner.next_xid.fetch_add(n, Ordering::Relaxed);
        if x.checked_add(n).is_none() {
            // Wrapped: restart above the handshake's xids.
            self.inner.next_xid.store(16 + n, Ordering::Relaxed);
            return 16;
        }
        x
    }

    /// Total bytes handed to the socket writer.
    pub fn bytes_sent(&self) -> u64 {
        self.inner.bytes_sent.load(Ordering::Relaxed)
    }

    /// Sends a message with a fresh xid and returns the xid.
    pub fn send(&self, msg: &Message) -> Result<u32, ConnError> {
        let xid = self.alloc_xids(1);
        self.send_bytes(msg.to_bytes(xid))?;
        Ok(xid)
    }

    /// Sends already-encoded messages (one or many, back to back).
    pub fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), ConnError> {
        if !self.is_connected() {
            return Err(ConnError::Disconnected("send"));
        }
        self.inner
            .bytes_sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.inner
            .tx
            .send(bytes)
            .map_err(|_| ConnError::Disconnected("send"))
    }

    /// Sends a request and waits for the reply with the same xid (or the switch's error).
    pub async fn request(&self, msg: &Message) -> Result<Message, ConnError> {
        let xid = self.alloc_xids(1);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(xid, Pending::Single(tx));
        if let Err(e) = self.send_bytes(msg.to_bytes(xid)) {
            self.lock_pending().remove(&xid);
            return Err(e);
        }
        rx.await
            .map_err(|_| ConnError::Disconnected("wait for reply"))?
    }

    /// Sends pre-encoded messages and returns waiters for the replies to `reply_xids`
    /// (registered before anything is sent, so no reply can be missed).
    pub fn send_batch_expecting(
        &self,
        bytes: Vec<u8>,
        reply_xids: &[u32],
    ) -> Result<Vec<oneshot::Receiver<Result<Message, ConnError>>>, ConnError> {
        let mut rxs = Vec::with_capacity(reply_xids.len());
        {
            let mut pending = self.lock_pending();
            for &xid in reply_xids {
                let (tx, rx) = oneshot::channel();
                pending.insert(xid, Pending::Single(tx));
                rxs.push(rx);
            }
        }
        if let Err(e) = self.send_bytes(bytes) {
            let mut pending = self.lock_pending();
            for xid in reply_xids {
                pending.remove(xid);
            }
            return Err(e);
        }
        Ok(rxs)
    }

    /// Sends a barrier and waits for its reply: everything sent before has been processed
    /// and every error it caused has been delivered.
    pub async fn barrier(&self) -> Result<(), ConnError> {
        match self.request(&Message::BarrierRequest).await? {
            Message::BarrierReply => Ok(()),
            other => Err(ConnError::UnexpectedReply {
                what: "barrier",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Sends a multipart request and collects every reply part.
    pub async fn multipart(
        &self,
        body: MultipartRequestBody,
    ) -> Result<Vec<MultipartReplyBody>, ConnError> {
        let xid = self.alloc_xids(1);
        let (tx, rx) = oneshot::channel();
        self.lock_pending()
            .insert(xid, Pending::Multipart(Vec::new(), tx));
        let msg = Message::MultipartRequest(MultipartRequest { flags: 0, body });
        if let Err(e) = self.send_bytes(msg.to_bytes(xid)) {
            self.lock_pending().remove(&xid);
            return Err(e);
        }
        rx.await
            .map_err(|_| ConnError::Disconnected("wait for multipart reply"))?
    }

    /// Reads the switch's flows.
    pub async fn flow_stats(&self, req: FlowStatsRequest) -> Result<Vec<FlowStats>, ConnError> {
        let parts = self.multipart(MultipartRequestBody::Flow(req)).await?;
        let mut out = Vec::new();
        for p in parts {
            match p {
                MultipartReplyBody::Flow(f) => out.extend(f),
                other => {
                    return Err(ConnError::UnexpectedReply {
                        what: "read flow stats",
                        got: format!("{other:?}"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Reads the switch's groups.
    pub async fn group_desc(&self) -> Result<Vec<GroupDesc>, ConnError> {
        let parts = self.multipart(MultipartRequestBody::GroupDesc).await?;
        let mut out = Vec::new();
        for p in parts {
            match p {
                MultipartReplyBody::GroupDesc(g) => out.extend(g),
                other => {
                    return Err(ConnError::UnexpectedReply {
                        what: "read group desc",
                        got: format!("{other:?}"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Sends a packet-out (fire and forget; errors arrive as [`SwitchEvent::Error`]).
    pub fn packet_out(&self, p: PacketOut) -> Result<u32, ConnError> {
        self.send(&Message::PacketOut(p))
    }

    /// Routes errors for xids `start..start+count` to the returned receiver (instead of
    /// the event stream) until [`Switch::unwatch_errors`].
    pub fn watch_errors(&self, start: u32, count: u32) -> mpsc::UnboundedReceiver<(u32, ErrorMsg)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock_watches().push(ErrorWatch {
            start,
            end: start.saturating_add(count),
            tx,
        });
        rx
    }

    pub fn unwatch_errors(&self, start: u32) {
        self.lock_watches().retain(|w| w.start != start);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Pending>> {
        lock(&self.inner.pending)
    }
    fn lock_watches(&self) -> std::sync::MutexGuard<'_, Vec<ErrorWatch>> {
        lock(&self.inner.watches)
    }
}

/// Locks a mutex, recovering from poisoning (the maps stay consistent under panic).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn close(inner: &Inner) {
    if !inner.is_closed.swap(true, Ordering::AcqRel) {
        let _ = inner.closed.send(true);
        // Dropping the senders fails every waiter with `Disconnected`.
        lock(&inner.pending).clear();
        lock(&inner.watches).clear();
    }
}

async fn writer_task(
    mut w: Writer,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    inner: Arc<Inner>,
    mut closed: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(256 * 1024);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = closed.wait_for(|c| *c) => None,
        };
        let Some(first) = first else { break };
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&batch).await {
            tracing::warn!(error = %e, "failed to write to switch");
            break;
        }
    }
    let _ = w.shutdown().await;
    close(&inner);
}

async fn reader_task(
    mut fr: FrameReader,
    inner: Arc<Inner>,
    events: mpsc::UnboundedSender<SwitchEvent>,
    last_rx: Arc<Mutex<Instant>>,
    mut closed: watch::Receiver<bool>,
) {
    let dpid = inner.datapath_id;
    let reason = loop {
        let next = tokio::select! {
            f = fr.next() => f,
            _ = closed.wait_for(|c| *c) => break "closed locally".to_string(),
        };
        let bytes = match next {
            Ok(Some(b)) => b,
            Ok(None) => break "switch closed the connection".to_string(),
            Err(e) => break format!("{e}"),
        };
        *lock(&last_rx) = Instant::now();
        let frame = match Frame::new_checked(&bytes) {
            Ok(f) => f,
            Err(e) => break format!("bad frame: {e}"),
        };
        let xid = frame.xid();
        let msg = match Message::parse(&frame) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(xid, error = %e, "undecodable message from switch");
                continue;
            }
        };
        dispatch(&inner, &events, xid, msg);
    };
    tracing::info!(datapath_id = format!("{dpid:#018x}"), %reason, "switch disconnected");
    close(&inner);
    let _ = events.send(SwitchEvent::Disconnected {
        datapath_id: dpid,
        reason,
    });
}

fn dispatch(inner: &Inner, events: &mpsc::UnboundedSender<SwitchEvent>, xid: u32, msg: Message) {
    match msg {
        Message::EchoRequest(d) => {
            let _ = inner.tx.send(Message::EchoReply(d).to_bytes(xid));
        }
        Message::PacketIn(packet_in) => {
            let _ = events.send(SwitchEvent::PacketIn {
                datapath_id: inner.datapath_id,
                packet_in,
                received: Instant::now(),
            });
        }
        Message::Error(error) => {
            if let Some(p) = lock(&inner.pending).remove(&xid) {
                let e = ConnError::Rejected { xid, error };
                match p {
                    Pending::Single(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    Pending::Multipart(_, tx) => {
                        let _ = tx.send(Err(e));
                    }
                }
                return;
            }
            let watches = lock(&inner.watches);
            if let Some(w) = watches.iter().find(|w| xid >= w.start && xid < w.end) {
                let _ = w.tx.send((xid, error));
                return;
            }
            drop(watches);
            tracing::warn!(xid, %error, "unsolicited error from switch");
            let _ = events.send(SwitchEvent::Error { xid, error });
        }
        Message::MultipartReply(reply) => {
            let mut pending = lock(&inner.pending);
            match pending.remove(&xid) {
                Some(Pending::Multipart(mut parts, tx)) => {
                    parts.push(reply.body);
                    if reply.flags & OFPMPF_MORE != 0 {
                        pending.insert(xid, Pending::Multipart(parts, tx));
                    } else {
                        let _ = tx.send(Ok(parts));
                    }
                }
                Some(Pending::Single(tx)) => {
                    let _ = tx.send(Ok(Message::MultipartReply(reply)));
                }
                None => {
                    let _ = events.send(SwitchEvent::Message {
                        xid,
                        message: Message::MultipartReply(reply),
                    });
                }
            }
        }
        message => {
            let p = lock(&inner.pending).remove(&xid);
            match p {
                Some(Pending::Single(tx)) => {
                    let _ = tx.send(Ok(message));
                }
                Some(other) => {
                    lock(&inner.pending).insert(xid, other);
                }
                None => {
                    if !matches!(message, Message::EchoReply(_)) {
                        let _ = events.send(SwitchEvent::Message { xid, message });
                    }
                }
            }
        }
    }
}

async fn keepalive_task(
    inner: Arc<Inner>,
    config: SwitchConfig,
    last_rx: Arc<Mutex<Instant>>,
    mut closed: watch::Receiver<bool>,
    _events: mpsc::UnboundedSender<SwitchEvent>,
) {
    let tick = (config.echo_interval / 2).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let idle = lock(&last_rx).elapsed();
        if idle >= config.dead_after {
            tracing::warn!(?idle, "switch silent, dropping connection");
            close(&inner);
            return;
        }
        if idle >= config.echo_interval {
            let xid = inner.next_xid.fetch_add(1, Ordering::Relaxed);
            let _ = inner
                .tx
                .send(Message::EchoRequest(Vec::new()).to_bytes(xid));
        }
    }
}

//! ofctrl: keeps the switch's flow table equal to the desired one by sending differences.
//!
//! Eventual consistency: the worker owns `desired` and its belief of `installed`. After a
//! (re)connect it reads the switch's flows and groups (multipart), so `installed` is a fact,
//! not a guess; then every change is sent as the difference between the two, inside one
//! ONF bundle (atomic: the switch applies all or nothing) followed by a barrier. When the
//! barrier reply arrives, every error the bundle caused has arrived too (OpenFlow orders
//! them), so `installed` is updated exactly. Flows that are already right are never
//! touched: a restart of wyvernd costs zero flow-mods when nothing changed.
//!
//! A flow the switch rejects is reported with its flow-mod and the switch's error, left
//! out of the bundle on retry, and not resent until its desired value changes.
//!
//! Lanes (optional, [`Ofctrl::set_lanes`]): Open vSwitch reads at most 50 messages per
//! connection per main-loop iteration, and with thousands of ports one iteration costs
//! milliseconds of per-port work, so a bulk sync (a cold start, thousands of ports bound at
//! once) is bounded by iterations, not by flow installation. A sync with at least
//! `min_flow_mods` flow-mods is then spread over extra connections to the bridge's service
//! socket: flows with the same cookie (the same owner in wyvern's layout) share one bundle,
//! so every owner's change stays atomic, as when changes arrive one at a time; a bulk sync
//! as a whole is no longer atomic across owners. Groups are added before and deleted after
//! the flows, on the bridge's own connection.

use crate::conn::{ConnError, ListenAddr, Listener, Switch, SwitchConfig, SwitchEvent};
use crate::wire::{
    bundle, flow_flags, Bucket, BundleAdd, BundleControl, ErrorMsg, FlowMod, FlowModCommand,
    FlowStatsRequest, GroupMod, GroupModCommand, GroupType, Instructions, Match, Message,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Failures of a sync.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OfctrlError {
    #[error("failed to sync: ofctrl worker stopped")]
    Stopped,
    #[error("failed to sync: switch disconnected during {0}")]
    Disconnected(&'static str),
    #[error("failed to read the switch's {what}: {reason}")]
    Read { what: &'static str, reason: String },
    #[error("failed to commit bundle: {0}")]
    Commit(String),
    #[error("failed to sync over a lane connection: {0}")]
    Lane(String),
}

/// Extra connections for bulk syncs (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes {
    /// The bridge's passive OpenFlow socket, e.g. `unix:/var/run/openvswitch/br-int.mgmt`.
    pub target: ListenAddr,
    /// Extra connections besides the bridge's own; 0 turns lanes off.
    pub count: usize,
    /// A sync uses lanes only with at least this many flow-mods (one port is about ten).
    pub min_flow_mods: usize,
}

/// After a lane fails, syncs go over the bridge's own connection alone for this long.
const LANE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// What identifies a flow in a table (as OpenFlow's strict match does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub table: u8,
    pub priority: u16,
    pub match_: Match,
}

/// A flow as the pipeline wants it installed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DesiredFlow {
    pub key: FlowKey,
    /// Owner and generation (the pipeline decides the layout).
    pub cookie: u64,
    pub instructions: Instructions,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// `flow_flags::*` (only the persistent ones are compared with the switch).
    pub flags: u16,
}

impl DesiredFlow {
    pub fn new(table: u8, priority: u16, match_: Match, instructions: Instructions) -> Self {
        DesiredFlow {
            key: FlowKey {
                table,
                priority,
                match_,
            },
            cookie: 0,
            instructions,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
        }
    }

    pub fn with_cookie(mut self, cookie: u64) -> Self {
        self.cookie = cookie;
        self
    }

    /// The flow-mod that installs this flow with `command`.
    pub fn flow_mod(&self, command: FlowModCommand) -> FlowMod {
        let mut fm = FlowMod::new(
            command,
            self.key.table,
            self.key.priority,
            self.key.match_.clone(),
        );
        fm.cookie = self.cookie;
        fm.idle_timeout = self.idle_timeout;
        fm.hard_timeout = self.hard_timeout;
        fm.flags = self.flags;
        fm.instructions = self.instructions.clone();
        fm
    }

    fn canonical(mut self) -> Self {
        self.instructions = self.instructions.canonical();
        self
    }

    /// Same behaviour as an installed flow (ignoring non-persistent flags).
    fn same_as(&self, other: &DesiredFlow) -> bool {
        self.cookie == other.cookie
            && self.instructions == other.instructions
            && self.idle_timeout == other.idle_timeout
            && self.hard_timeout == other.hard_timeout
            && self.flags & flow_flags::PERSISTENT == other.flags & flow_flags::PERSISTENT
    }

    /// Whether only the instructions differ (then MODIFY_STRICT suffices).
    fn only_instructions_differ(&self, other: &DesiredFlow) -> bool {
        self.cookie == other.cookie
            && self.idle_timeout == other.idle_timeout
            && self.hard_timeout == other.hard_timeout
            && self.flags & flow_flags::PERSISTENT == other.flags & flow_flags::PERSISTENT
    }
}

/// A group as the pipeline wants it (e.g. an ALL group flooding a network's ports).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupSpec {
    pub group_id: u32,
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
}

impl GroupSpec {
    fn canonical(mut self) -> Self {
        for b in &mut self.buckets {
            b.actions = std::mem::take(&mut b.actions)
                .into_iter()
                .map(crate::Action::canonical)
                .collect();
        }
        self
    }
}

/// An incremental change of the desired state.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Added or replaced (keyed by table, priority, match).
    pub add_flows: Vec<DesiredFlow>,
    pub remove_flows: Vec<FlowKey>,
    pub add_groups: Vec<GroupSpec>,
    pub remove_groups: Vec<u32>,
}

/// A rejected flow-mod or group-mod, with the switch's error.
#[derive(Debug, Clone)]
pub struct OpError {
    pub op: Op,
    pub error: ErrorMsg,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rejected: {}", self.op, self.error)
    }
}

/// One change sent to the switch.
#[derive(Debug, Clone)]
pub enum Op {
    Flow(FlowMod),
    Group(GroupMod),
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Flow(fm) => write!(
                f,
                "flow-mod {:?} table={} priority={} {} actions={}",
                fm.command, fm.table_id, fm.priority, fm.match_, fm.instructions
            ),
            Op::Group(g) => write!(f, "group-mod {:?} group_id={}", g.command, g.group_id),
        }
    }
}

/// What one sync did (sent counts include retries after a rejected bundle).
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub flow_adds: u64,
    pub flow_modifies: u64,
    pub flow_deletes: u64,
    pub group_mods: u64,
    /// Whether the switch's tables were read first (connect / reconnect).
    pub full: bool,
    pub errors: Vec<OpError>,
}

impl SyncReport {
    pub fn flow_mods(&self) -> u64 {
        self.flow_adds + self.flow_modifies + self.flow_deletes
    }
}

/// Monotonic counters since start, and gauges of the last sync (for tests and /metrics).
#[derive(Debug)]
pub struct OfctrlCounters {
    pub flow_mods: AtomicU64,
    pub flow_adds: AtomicU64,
    pub flow_modifies: AtomicU64,
    pub flow_deletes: AtomicU64,
    pub group_mods: AtomicU64,
    pub bundles: AtomicU64,
    /// Bundles sent over lane connections (included in `bundles`).
    pub lane_bundles: AtomicU64,
    pub full_syncs: AtomicU64,
    pub errors: AtomicU64,
    /// Rejected ops by OpenFlow error type, indexed by [`error_type_index`].
    pub errors_by_type: [AtomicU64; ERROR_TYPES.len()],
    /// Switch connections attached (the first one and every reconnect).
    pub attaches: AtomicU64,
    /// Flows desired after the last sync.
    pub desired_flows: AtomicU64,
    /// Flows ofctrl knows installed on the switch after the last sync.
    pub installed_flows: AtomicU64,
    /// Desired flows and groups the last sync left different on the switch (rejected and
    /// not resent until their desired value changes); 0 when the switch matches.
    pub differences: AtomicU64,
    /// Wall time of each sync that sent or read something (read + bundles + barriers).
    pub sync_duration: wyvern_metrics::prometheus::Histogram,
}

/// Labels of OpenFlow error types, by [`error_type_index`] (OFPET_* names, lower case).
pub const ERROR_TYPES: [&str; 9] = [
    "hello_failed",
    "bad_request",
    "bad_action",
    "bad_instruction",
    "bad_match",
    "flow_mod_failed",
    "group_mod_failed",
    "experimenter",
    "other",
];

/// Index of an OFPET_* type in [`ERROR_TYPES`].
pub fn error_type_index(err_type: u16) -> usize {
    match err_type {
        0..=6 => err_type as usize,
        0xffff => 7,
        _ => 8,
    }
}

impl Default for OfctrlCounters {
    fn default() -> Self {
        let sync_duration = wyvern_metrics::prometheus::Histogram::with_opts(
            wyvern_metrics::prometheus::HistogramOpts::new(
                "wyvern_openflow_sync_duration_seconds",
                "Time of one ofctrl sync: reading the switch's tables (after a connect), the bundles and their barriers.",
            )
            .buckets(wyvern_metrics::latency_buckets()),
        )
        // Constant name and help with valid buckets: creation cannot fail.
        .unwrap_or_else(|e| unreachable!("invalid histogram options: {e}"));
        OfctrlCounters {
            flow_mods: AtomicU64::new(0),
            flow_adds: AtomicU64::new(0),
            flow_modifies: AtomicU64::new(0),
            flow_deletes: AtomicU64::new(0),
            group_mods: AtomicU64::new(0),
            bundles: AtomicU64::new(0),
            lane_bundles: AtomicU64::new(0),
            full_syncs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            errors_by_type: Default::default(),
            attaches: AtomicU64::new(0),
            desired_flows: AtomicU64::new(0),
            installed_flows: AtomicU64::new(0),
            differences: AtomicU64::new(0),
            sync_duration,
        }
    }
}

/// A plain copy of [`OfctrlCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub flow_mods: u64,
    pub flow_adds: u64,
    pub flow_modifies: u64,
    pub flow_deletes: u64,
    pub group_mods: u64,
    pub bundles: u64,
    pub lane_bundles: u64,
    pub full_syncs: u64,
    pub errors: u64,
}

/// Resolves when the change it belongs to is installed (barrier acknowledged).
pub struct Completion(oneshot::Receiver<Result<SyncReport, OfctrlError>>);

impl Completion {
    pub async fn wait(self) -> Result<SyncReport, OfctrlError> {
        self.0.await.map_err(|_| OfctrlError::Stopped)?
    }
}

enum Command {
    Update(Update, oneshot::Sender<Result<SyncReport, OfctrlError>>),
    SetDesired(
        Vec<DesiredFlow>,
        Vec<GroupSpec>,
        oneshot::Sender<Result<SyncReport, OfctrlError>>,
    ),
    Attach(Switch, oneshot::Sender<Result<SyncReport, OfctrlError>>),
    SetLanes(Option<Lanes>),
}

/// Handle to the ofctrl worker. Clone freely.
#[derive(Clone)]
pub struct Ofctrl {
    tx: mpsc::UnboundedSender<Command>,
    counters: Arc<OfctrlCounters>,
    switch: Arc<Mutex<Option<Switch>>>,
}

impl Ofctrl {
    /// Starts the worker (on the current tokio runtime) with nothing desired.
    pub fn spawn() -> Ofctrl {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(OfctrlCounters::default());
        let switch = Arc::new(Mutex::new(None));
        let worker = Worker {
            rx,
            counters: counters.clone(),
            current: switch.clone(),
            desired: HashMap::new(),
            desired_groups: HashMap::new(),
            installed: None,
            failed: HashMap::new(),
            switch: None,
            dirty_flows: HashSet::new(),
            dirty_groups: HashSet::new(),
            all_dirty: true,
            waiting: Vec::new(),
            next_bundle: 1,
            lanes_cfg: None,
            lanes: Vec::new(),
            lanes_paused_until: None,
        };
        tokio::spawn(worker.run());
        Ofctrl {
            tx,
            counters,
            switch,
        }
    }

    /// Replaces the whole desired state.
    pub fn set_desired(&self, flows: Vec<DesiredFlow>, groups: Vec<GroupSpec>) -> Completion {
        self.command(|tx| Command::SetDesired(flows, groups, tx))
    }

    /// Applies an incremental change.
    pub fn update(&self, update: Update) -> Completion {
        self.command(|tx| Command::Update(update, tx))
    }

    /// Spreads bulk syncs over extra connections to the bridge (`None`: off, the default).
    /// Takes effect from the next sync; connections are opened when first needed.
    pub fn set_lanes(&self, lanes: Option<Lanes>) {
        let _ = self.tx.send(Command::SetLanes(lanes));
    }

    /// Uses `switch` from now on: reads its tables and converges them.
    pub fn attach(&self, switch: Switch) -> Completion {
        self.command(|tx| Command::Attach(switch, tx))
    }

    /// Accepts bridges on `listener` forever, attaching each; returns every connection's
    /// events (packet-ins, unsolicited errors, disconnects) merged into one stream.
    pub fn serve(
        &self,
        listener: Listener,
        config: SwitchConfig,
    ) -> mpsc::UnboundedReceiver<SwitchEvent> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept(&config).await {
                    Ok((switch, mut events)) => {
                        let tx = events_tx.clone();
                        tokio::spawn(async move {
                            while let Some(e) = events.recv().await {
                                if tx.send(e).is_err() {
                                    break;
                                }
                            }
                        });
                        // The completion is observable through counters and later updates.
                        drop(this.attach(switch));
                    }
                    Err(e) => tracing::warn!(error = %e, "failed to accept switch"),
                }
                if events_tx.is_closed() && this.tx.is_closed() {
                    return;
                }
            }
        });
        events_rx
    }

    /// The connected switch, if any (for packet-outs).
    pub fn switch(&self) -> Option<Switch> {
        self.switch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(Switch::is_connected)
    }

    /// The live counters and gauges (for /metrics collectors reading them at scrape time).
    pub fn live_counters(&self) -> &Arc<OfctrlCounters> {
        &self.counters
    }

    pub fn counters(&self) -> CountersSnapshot {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            flow_mods: l(&c.flow_mods),
            flow_adds: l(&c.flow_adds),
            flow_modifies: l(&c.flow_modifies),
            flow_deletes: l(&c.flow_deletes),
            group_mods: l(&c.group_mods),
            bundles: l(&c.bundles),
            lane_bundles: l(&c.lane_bundles),
            full_syncs: l(&c.full_syncs),
            errors: l(&c.errors),
        }
    }

    fn command(
        &self,
        f: impl FnOnce(oneshot::Sender<Result<SyncReport, OfctrlError>>) -> Command,
    ) -> Completion {
        let (tx, rx) = oneshot::channel();
        // If the worker is gone the completion resolves to `Stopped`.
        let _ = self.tx.send(f(tx));
        Completion(rx)
    }
}

type Waiter = oneshot::Sender<Result<SyncReport, OfctrlError>>;

struct Installed {
    flows: HashMap<FlowKey, DesiredFlow>,
    groups: HashMap<u32, GroupSpec>,
}

struct Worker {
    rx: mpsc::UnboundedReceiver<Command>,
    counters: Arc<OfctrlCounters>,
    current: Arc<Mutex<Option<Switch>>>,
    desired: HashMap<FlowKey, DesiredFlow>,
    desired_groups: HashMap<u32, GroupSpec>,
    /// What the switch holds; `None` until read after a connect.
    installed: Option<Installed>,
    /// Desired flows the switch rejected, with the rejected value: not resent until changed.
    failed: HashMap<FlowKey, DesiredFlow>,
    switch: Option<Switch>,
    /// Keys touched by incremental updates since the last sync. When the switch's state is
    /// known, only these are diffed: an update costs O(its size), not O(all flows).
    dirty_flows: HashSet<FlowKey>,
    dirty_groups: HashSet<u32>,
    /// Everything must be diffed (new desired set, or a new connection).
    all_dirty: bool,
    /// Completions waiting for a connected switch.
    waiting: Vec<Waiter>,
    next_bundle: u32,
    lanes_cfg: Option<Lanes>,
    /// Connected lanes to the current switch (opened by the first bulk sync).
    lanes: Vec<Switch>,
    /// Lanes are not used before this instant (set when one failed).
    lanes_paused_until: Option<std::time::Instant>,
}

/// What one bundle on one connection came back with.
struct BundleOutcome {
    /// Index into the bundle's ops, and the switch's error.
    errors: Vec<(usize, ErrorMsg)>,
    committed: bool,
}

/// Why a multi-connection sync stopped.
enum ParallelFailure {
    /// The bridge's own connection: as in a single-connection sync.
    Main(OfctrlError),
    /// A lane: the switch state is uncertain, read it again and sync without lanes.
    Lane(OfctrlError),
}

/// Which of `n` connections carries a flow with `cookie` (same cookie, same bundle).
fn lane_of(cookie: u64, n: usize) -> usize {
    let h = (cookie ^ (cookie >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (h % n.max(1) as u64) as usize
}

/// Sends `ops` as one atomic bundle followed by a barrier on `sw`, and collects what the
/// switch rejected (every error has arrived once the barrier reply has).
async fn send_bundle(
    sw: &Switch,
    ops: &[Op],
    bundle_id: u32,
) -> Result<BundleOutcome, OfctrlError> {
    let n = u32::try_from(ops.len()).unwrap_or(u32::MAX - 4);
    let base = sw.alloc_xids(n + 3);
    let flags = bundle::FLAG_ATOMIC | bundle::FLAG_ORDERED;
    let mut buf = Vec::with_capacity(ops.len() * 160 + 64);
    let ctrl = |ctrl_type| {
        Message::BundleControl(BundleControl {
            bundle_id,
            ctrl_type,
            flags,
        })
    };
    ctrl(bundle::OPEN_REQUEST).emit(base, &mut buf);
    for (i, op) in ops.iter().enumerate() {
        let inner = match op {
            Op::Flow(fm) => Message::FlowMod(fm.clone()),
            Op::Group(g) => Message::GroupMod(g.clone()),
        };
        Message::BundleAdd(BundleAdd {
            bundle_id,
            flags,
            message: Box::new(inner),
        })
        .emit(base + 1 + i as u32, &mut buf);
    }
    let commit_xid = base + n + 1;
    let barrier_xid = base + n + 2;
    ctrl(bundle::COMMIT_REQUEST).emit(commit_xid, &mut buf);
    Message::BarrierRequest.emit(barrier_xid, &mut buf);
    let mut errors = sw.watch_errors(base, n + 1);
    let replies = sw
        .send_batch_expecting(buf, &[commit_xid, barrier_xid])
        .map_err(|_| OfctrlError::Disconnected("send bundle"))?;
    let mut replies = replies.into_iter();
    let (Some(commit), Some(barrier)) = (replies.next(), replies.next()) else {
        return Err(OfctrlError::Disconnected("send bundle"));
    };
    let commit = commit.await;
    let barrier = barrier.await;
    sw.unwatch_errors(base);
    let mut rejected = Vec::new();
    while let Ok((xid, error)) = errors.try_recv() {
        let idx = xid.wrapping_sub(base + 1) as usize;
        if idx < ops.len() {
            rejected.push((idx, error));
        }
    }
    match barrier {
        Ok(Ok(_)) => {}
        Ok(Err(ConnError::Disconnected(_))) | Err(_) => {
            return Err(OfctrlError::Disconnected("barrier"))
        }
        Ok(Err(e)) => return Err(OfctrlError::Commit(e.to_string())),
    }
    let committed = match commit {
        Ok(Ok(Message::BundleControl(b))) => b.ctrl_type == bundle::COMMIT_REPLY,
        Ok(Ok(_)) => false,
        Ok(Err(ConnError::Rejected { error, .. })) => {
            tracing::warn!(%error, "bundle commit rejected");
            false
        }
        Ok(Err(_)) | Err(_) => return Err(OfctrlError::Disconnected("commit")),
    };
    Ok(BundleOutcome {
        errors: rejected,
        committed,
    })
}

impl Worker {
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut waiters = std::mem::take(&mut self.waiting);
            self.apply(first, &mut waiters);
            // Coalesce everything queued meanwhile into one sync.
            while let Ok(more) = self.rx.try_recv() {
                self.apply(more, &mut waiters);
            }
            let connected = self.switch.as_ref().is_some_and(Switch::is_connected);
            if !connected {
                self.waiting = waiters;
                continue;
            }
            let started = std::time::Instant::now();
            let result = self.sync().await;
            self.counters
                .sync_duration
                .observe(started.elapsed().as_secs_f64());
            self.record_gauges();
            if matches!(result, Err(OfctrlError::Disconnected(_))) {
                self.installed = None;
                self.waiting = waiters;
                continue;
            }
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    fn apply(&mut self, cmd: Command, waiters: &mut Vec<Waiter>) {
        match cmd {
            Command::Update(u, tx) => {
                for k in u.remove_flows {
                    self.desired.remove(&k);
                    self.dirty_flows.insert(k);
                }
                for f in u.add_flows {
                    let f = f.canonical();
                    self.dirty_flows.insert(f.key.clone());
                    self.desired.insert(f.key.clone(), f);
                }
                for g in u.remove_groups {
                    self.desired_groups.remove(&g);
                    self.dirty_groups.insert(g);
                }
                for g in u.add_groups {
                    self.dirty_groups.insert(g.group_id);
                    self.desired_groups.insert(g.group_id, g.canonical());
                }
                waiters.push(tx);
            }
            Command::SetDesired(flows, groups, tx) => {
                self.desired = flows
                    .into_iter()
                    .map(|f| {
                        let f = f.canonical();
                        (f.key.clone(), f)
                    })
                    .collect();
                self.desired_groups = groups
                    .into_iter()
                    .map(|g| (g.group_id, g.canonical()))
                    .collect();
                self.all_dirty = true;
                waiters.push(tx);
            }
            Command::SetLanes(lanes) => {
                self.lanes_cfg = lanes;
                self.lanes_paused_until = None;
                for l in self.lanes.drain(..) {
                    l.disconnect();
                }
            }
            Command::Attach(s, tx) => {
                self.counters.attaches.fetch_add(1, Ordering::Relaxed);
                // Lanes belong to the previous connection's bridge (it may have restarted).
                for l in self.lanes.drain(..) {
                    l.disconnect();
                }
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
                self.switch = Some(s);
                self.installed = None;
                self.all_dirty = true;
                self.failed.clear();
                waiters.push(tx);
            }
        }
    }

    async fn read_installed(&self, sw: &Switch) -> Result<Installed, OfctrlError> {
        let disc = |e: ConnError, what| match e {
            ConnError::Disconnected(_) => OfctrlError::Disconnected(what),
            other => OfctrlError::Read {
                what,
                reason: other.to_string(),
            },
        };
        let stats = sw
            .flow_stats(FlowStatsRequest::all())
            .await
            .map_err(|e| disc(e, "flows"))?;
        let groups = sw.group_desc().await.map_err(|e| disc(e, "groups"))?;
        let flows = stats
            .into_iter()
            .map(|s| {
                let f = DesiredFlow {
                    key: FlowKey {
                        table: s.table_id,
                        priority: s.priority,
                        match_: s.match_,
                    },
                    cookie: s.cookie,
                    instructions: s.instructions,
                    idle_timeout: s.idle_timeout,
                    hard_timeout: s.hard_timeout,
                    flags: s.flags,
                };
                (f.key.clone(), f)
            })
            .collect();
        let groups = groups
            .into_iter()
            .map(|g| {
                (
                    g.group_id,
                    GroupSpec {
                        group_id: g.group_id,
                        group_type: g.group_type,
                        buckets: g.buckets,
                    }
                    .canonical(),
                )
            })
            .collect();
        Ok(Installed { flows, groups })
    }

    /// The difference between desired and installed for the dirty keys only: an
    /// incremental update costs O(its size), not O(all flows).
    fn diff_dirty(&self, installed: &Installed) -> Vec<Op> {
        self.diff_keys(
            installed,
            &self.dirty_flows,
            self.dirty_groups.iter().copied(),
        )
    }

    /// The whole difference between desired and installed.
    fn diff(&self, installed: &Installed) -> Vec<Op> {
        let flows: HashSet<&FlowKey> = self.desired.keys().chain(installed.flows.keys()).collect();
        let groups = self
            .desired_groups
            .keys()
            .chain(installed.groups.keys())
            .copied();
        self.diff_keys(installed, flows, groups)
    }

    /// The operations that make `keys` on the switch equal to desired, ordered so that groups
    /// exist before flows use them and are deleted after flows stop using them.
    fn diff_keys<'a>(
        &self,
        installed: &Installed,
        flow_keys: impl IntoIterator<Item = &'a FlowKey>,
        group_ids: impl IntoIterator<Item = u32>,
    ) -> Vec<Op> {
        let mut group_adds = Vec::new();
        let mut flow_ops = Vec::new();
        let mut group_dels = Vec::new();
        let gids: std::collections::BTreeSet<u32> = group_ids.into_iter().collect();
        for id in gids {
            match (self.desired_groups.get(&id), installed.groups.get(&id)) {
                (Some(g), cur) if cur != Some(g) => group_adds.push(Op::Group(GroupMod {
                    command: if cur.is_none() {
                        GroupModCommand::Add
                    } else {
                        GroupModCommand::Modify
                    },
                    group_type: g.group_type,
                    group_id: g.group_id,
                    buckets: g.buckets.clone(),
                })),
                (None, Some(g)) => group_dels.push(Op::Group(GroupMod {
                    command: GroupModCommand::Delete,
                    group_type: g.group_type,
                    group_id: id,
                    buckets: Vec::new(),
                })),
                _ => {}
            }
        }
        for key in flow_keys {
            match (self.desired.get(key), installed.flows.get(key)) {
                (Some(want), _) if self.failed.get(key) == Some(want) => {}
                (Some(want), None) => flow_ops.push(Op::Flow(want.flow_mod(FlowModCommand::Add))),
                (Some(want), Some(cur)) if cur.same_as(want) => {}
                (Some(want), Some(cur)) if cur.only_instructions_differ(want) => {
                    flow_ops.push(Op::Flow(want.flow_mod(FlowModCommand::ModifyStrict)))
                }
                // Cookie, timeouts or flags differ: ADD replaces the flow in place.
                (Some(want), Some(_)) => {
                    flow_ops.push(Op::Flow(want.flow_mod(FlowModCommand::Add)))
                }
                (None, Some(cur)) => {
                    let mut fm = cur.flow_mod(FlowModCommand::DeleteStrict);
                    fm.instructions = Instructions::default();
                    flow_ops.push(Op::Flow(fm));
                }
                (None, None) => {}
            }
        }
        group_adds.extend(flow_ops);
        group_adds.extend(group_dels);
        group_adds
    }

    async fn sync(&mut self) -> Result<SyncReport, OfctrlError> {
        let Some(sw) = self.switch.clone() else {
            return Err(OfctrlError::Disconnected("sync"));
        };
        let mut report = SyncReport::default();
        loop {
            if self.installed.is_none() {
                self.installed = Some(self.read_installed(&sw).await?);
                report.full = true;
                self.counters.full_syncs.fetch_add(1, Ordering::Relaxed);
            }
            let ops = match &self.installed {
                Some(inst) if report.full || self.all_dirty => self.diff(inst),
                Some(inst) => self.diff_dirty(inst),
                None => Vec::new(),
            };
            self.all_dirty = false;
            self.dirty_flows.clear();
            self.dirty_groups.clear();
            let lanes = self.lanes_for(&sw, &ops).await;
            if lanes.is_empty() {
                self.send_single(&sw, ops, &mut report).await?;
                return Ok(report);
            }
            match self.send_parallel(&sw, lanes, ops, &mut report).await {
                Ok(()) => return Ok(report),
                Err(ParallelFailure::Main(e)) => return Err(e),
                Err(ParallelFailure::Lane(e)) => {
                    // What the lane's bundle did is unknown: read the switch again and
                    // converge over the bridge's own connection.
                    tracing::warn!(error = %e, "lane failed; syncing without lanes");
                    for l in self.lanes.drain(..) {
                        l.disconnect();
                    }
                    self.lanes_paused_until = Some(std::time::Instant::now() + LANE_BACKOFF);
                    self.installed = None;
                }
            }
        }
    }

    /// The lane connections a sync of `ops` should use besides `sw` (empty: none).
    async fn lanes_for(&mut self, sw: &Switch, ops: &[Op]) -> Vec<Switch> {
        let Some(cfg) = self.lanes_cfg.clone() else {
            return Vec::new();
        };
        let flow_mods = ops.iter().filter(|o| matches!(o, Op::Flow(_))).count();
        if cfg.count == 0 || flow_mods < cfg.min_flow_mods.max(1) {
            return Vec::new();
        }
        if let Some(until) = self.lanes_paused_until {
            if std::time::Instant::now() < until {
                return Vec::new();
            }
            self.lanes_paused_until = None;
        }
        self.lanes
            .retain(|l| l.is_connected() && l.datapath_id() == sw.datapath_id());
        let config = SwitchConfig {
            packet_in2: false,
            ..SwitchConfig::default()
        };
        while self.lanes.len() < cfg.count {
            match Switch::connect(&cfg.target, &config).await {
                Ok((lane, mut events)) if lane.datapath_id() == sw.datapath_id() => {
                    // Service connections get no asynchronous messages; unsolicited
                    // errors are logged by the connection itself.
                    tokio::spawn(async move { while events.recv().await.is_some() {} });
                    self.lanes.push(lane);
                }
                Ok((lane, _)) => {
                    tracing::warn!(
                        target = %cfg.target,
                        lane = format!("{:#018x}", lane.datapath_id()),
                        bridge = format!("{:#018x}", sw.datapath_id()),
                        "lane target is another bridge; not using lanes"
                    );
                    lane.disconnect();
                    self.lanes_paused_until = Some(std::time::Instant::now() + LANE_BACKOFF);
                    break;
                }
                Err(e) => {
                    tracing::warn!(target = %cfg.target, error = %e, "failed to open a lane");
                    self.lanes_paused_until = Some(std::time::Instant::now() + LANE_BACKOFF);
                    break;
                }
            }
        }
        self.lanes.clone()
    }

    /// Sends `ops` in one bundle on `sw`; retries without rejected ops (a bundle is all or
    /// nothing).
    async fn send_single(
        &mut self,
        sw: &Switch,
        mut ops: Vec<Op>,
        report: &mut SyncReport,
    ) -> Result<(), OfctrlError> {
        for _attempt in 0..3 {
            if ops.is_empty() {
                break;
            }
            let (rejected, committed) = self.transact(sw, &ops, report).await?;
            if committed {
                let ok: Vec<Op> = ops
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !rejected.contains(i))
                    .map(|(_, op)| op)
                    .collect();
                self.record_installed(&ok);
                break;
            }
            if rejected.is_empty() {
                self.installed = None;
                return Err(OfctrlError::Commit(
                    "switch rejected the bundle without naming a message".into(),
                ));
            }
            ops = ops
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !rejected.contains(i))
                .map(|(_, op)| op)
                .collect();
        }
        Ok(())
    }

    /// Group additions first (bridge connection), then the flow-mods split by cookie over
    /// the bridge connection and `lanes` at once, then group deletions and whatever a
    /// bundle left uncommitted (bridge connection).
    async fn send_parallel(
        &mut self,
        sw: &Switch,
        lanes: Vec<Switch>,
        ops: Vec<Op>,
        report: &mut SyncReport,
    ) -> Result<(), ParallelFailure> {
        let mut head = Vec::new();
        let mut flows = Vec::new();
        let mut tail = Vec::new();
        for op in ops {
            match &op {
                Op::Flow(_) => flows.push(op),
                Op::Group(g) if g.command == GroupModCommand::Delete => tail.push(op),
                Op::Group(_) => head.push(op),
            }
        }
        self.send_single(sw, head, report)
            .await
            .map_err(ParallelFailure::Main)?;
        let conns: Vec<Switch> = std::iter::once(sw.clone()).chain(lanes).collect();
        let mut parts: Vec<Vec<Op>> = vec![Vec::new(); conns.len()];
        for op in flows {
            let cookie = match &op {
                Op::Flow(fm) => fm.cookie,
                Op::Group(g) => u64::from(g.group_id),
            };
            parts[lane_of(cookie, conns.len())].push(op);
        }
        let mut tasks = Vec::new();
        for (i, (part, conn)) in parts.into_iter().zip(conns).enumerate() {
            if part.is_empty() {
                continue;
            }
            for op in &part {
                self.count(op, report);
            }
            let id = self.next_bundle;
            self.next_bundle = self.next_bundle.wrapping_add(1);
            let task = tokio::spawn(async move {
                let outcome = send_bundle(&conn, &part, id).await;
                (part, outcome)
            });
            tasks.push((i == 0, task));
        }
        let mut leftover = Vec::new();
        let mut main_failure = None;
        let mut lane_failure = None;
        for (is_main, task) in tasks {
            let (part, outcome) = task.await.map_err(|e| {
                ParallelFailure::Lane(OfctrlError::Lane(format!("bundle task failed: {e}")))
            })?;
            match outcome {
                Ok(outcome) => {
                    self.counters.bundles.fetch_add(1, Ordering::Relaxed);
                    if !is_main {
                        self.counters.lane_bundles.fetch_add(1, Ordering::Relaxed);
                    }
                    let rejected = self.record_errors(&part, outcome.errors, report);
                    let kept: Vec<Op> = part
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !rejected.contains(i))
                        .map(|(_, op)| op)
                        .collect();
                    if outcome.committed {
                        self.record_installed(&kept);
                    } else {
                        leftover.extend(kept);
                    }
                }
                Err(e) if is_main => main_failure = Some(e),
                Err(e) => lane_failure = Some(e),
            }
        }
        if let Some(e) = main_failure {
            return Err(ParallelFailure::Main(e));
        }
        if let Some(e) = lane_failure {
            return Err(ParallelFailure::Lane(OfctrlError::Lane(e.to_string())));
        }
        leftover.extend(tail);
        self.send_single(sw, leftover, report)
            .await
            .map_err(ParallelFailure::Main)
    }

    /// Sends `ops` as one bundle + barrier. Returns the indexes of rejected ops and whether
    /// the commit succeeded.
    async fn transact(
        &mut self,
        sw: &Switch,
        ops: &[Op],
        report: &mut SyncReport,
    ) -> Result<(HashSet<usize>, bool), OfctrlError> {
        for op in ops {
            self.count(op, report);
        }
        let bundle_id = self.next_bundle;
        self.next_bundle = self.next_bundle.wrapping_add(1);
        let outcome = send_bundle(sw, ops, bundle_id).await?;
        self.counters.bundles.fetch_add(1, Ordering::Relaxed);
        let rejected = self.record_errors(ops, outcome.errors, report);
        Ok((rejected, outcome.committed))
    }

    /// Reports rejected ops and remembers rejected flows (not resent until changed);
    /// returns their indexes.
    fn record_errors(
        &mut self,
        ops: &[Op],
        errors: Vec<(usize, ErrorMsg)>,
        report: &mut SyncReport,
    ) -> HashSet<usize> {
        let mut rejected = HashSet::new();
        for (idx, error) in errors {
            let Some(op) = ops.get(idx) else { continue };
            rejected.insert(idx);
            if let Op::Flow(fm) = op {
                if let Some(want) = self.desired.get(&FlowKey {
                    table: fm.table_id,
                    priority: fm.priority,
                    match_: fm.match_.clone(),
                }) {
                    self.failed.insert(want.key.clone(), want.clone());
                }
            }
            tracing::warn!(%op, %error, "switch rejected");
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            self.counters.errors_by_type[error_type_index(error.err_type)]
                .fetch_add(1, Ordering::Relaxed);
            report.errors.push(OpError {
                op: op.clone(),
                error,
            });
        }
        rejected
    }

    /// Sizes after a sync, O(1): the difference is what the switch refused (everything else
    /// was just sent and acknowledged, or the sync failed and the next one retries).
    fn record_gauges(&self) {
        let c = &self.counters;
        c.desired_flows
            .store(self.desired.len() as u64, Ordering::Relaxed);
        if let Some(inst) = &self.installed {
            c.installed_flows
                .store(inst.flows.len() as u64, Ordering::Relaxed);
        }
        let failed = self
            .failed
            .iter()
            .filter(|(k, v)| self.desired.get(*k) == Some(*v))
            .count();
        c.differences.store(failed as u64, Ordering::Relaxed);
    }

    fn count(&self, op: &Op, report: &mut SyncReport) {
        let c = &self.counters;
        match op {
            Op::Flow(fm) => {
                c.flow_mods.fetch_add(1, Ordering::Relaxed);
                match fm.command {
                    FlowModCommand::Add => {
                        report.flow_adds += 1;
                        c.flow_adds.fetch_add(1, Ordering::Relaxed);
                    }
                    FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                        report.flow_modifies += 1;
                        c.flow_modifies.fetch_add(1, Ordering::Relaxed);
                    }
                    FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                        report.flow_deletes += 1;
                        c.flow_deletes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Op::Group(_) => {
                report.group_mods += 1;
                c.group_mods.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn record_installed(&mut self, ops: &[Op]) {
        let Some(inst) = self.installed.as_mut() else {
            return;
        };
        for op in ops {
            match op {
                Op::Flow(fm) => {
                    let key = FlowKey {
                        table: fm.table_id,
                        priority: fm.priority,
                        match_: fm.match_.clone(),
                    };
                    match fm.command {
                        FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                            inst.flows.remove(&key);
                        }
                        _ => {
                            if let Some(want) = self.desired.get(&key) {
                                inst.flows.insert(key, want.clone());
                            }
                        }
                    }
                }
                Op::Group(g) => match g.command {
                    GroupModCommand::Delete => {
                        inst.groups.remove(&g.group_id);
                    }
                    _ => {
                        if let Some(want) = self.desired_groups.get(&g.group_id) {
                            inst.groups.insert(g.group_id, want.clone());
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn one_cookie_always_takes_one_lane_and_owners_spread_over_all() {
        let owners: Vec<u64> = (0..64u64).map(|i| (2 << 62) | (i << 32)).collect();
        let mut used = [0usize; 4];
        for &c in &owners {
            let lane = lane_of(c, 4);
            assert_eq!(lane, lane_of(c, 4));
            used[lane] += 1;
        }
        assert!(used.iter().all(|&n| n >= 8), "{used:?}");
        assert_eq!(lane_of(12345, 1), 0);
    }
}

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

use crate::conn::{ConnError, Listener, Switch, SwitchConfig, SwitchEvent};
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
}

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
            Command::Attach(s, tx) => {
                self.counters.attaches.fetch_add(1, Ordering::Relaxed);
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
        if self.installed.is_none() {
            self.installed = Some(self.read_installed(&sw).await?);
            report.full = true;
            self.counters.full_syncs.fetch_add(1, Ordering::Relaxed);
        }
        let mut ops = match &self.installed {
            Some(inst) if report.full || self.all_dirty => self.diff(inst),
            Some(inst) => self.diff_dirty(inst),
            None => Vec::new(),
        };
        self.all_dirty = false;
        self.dirty_flows.clear();
        self.dirty_groups.clear();
        // Retry without rejected ops: a bundle is all or nothing.
        for _attempt in 0..3 {
            if ops.is_empty() {
                break;
            }
            let (rejected, committed) = self.transact(&sw, &ops, &mut report).await?;
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
        Ok(report)
    }

    /// Sends `ops` as one bundle + barrier. Returns the indexes of rejected ops and whether
    /// the commit succeeded.
    async fn transact(
        &mut self,
        sw: &Switch,
        ops: &[Op],
        report: &mut SyncReport,
    ) -> Result<(HashSet<usize>, bool), OfctrlError> {
        let n = u32::try_from(ops.len()).unwrap_or(u32::MAX - 4);
        let base = sw.alloc_xids(n + 3);
        let bundle_id = self.next_bundle;
        self.next_bundle = self.next_bundle.wrapping_add(1);
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
            self.count(op, report);
        }
        let commit_xid = base + n + 1;
        let barrier_xid = base + n + 2;
        ctrl(bundle::COMMIT_REQUEST).emit(commit_xid, &mut buf);
        Message::BarrierRequest.emit(barrier_xid, &mut buf);
        let mut errors = sw.watch_errors(base, n + 1);
        let replies = sw
            .send_batch_expecting(buf, &[commit_xid, barrier_xid])
            .map_err(|_| OfctrlError::Disconnected("send bundle"))?;
        self.counters.bundles.fetch_add(1, Ordering::Relaxed);
        let mut replies = replies.into_iter();
        let (Some(commit), Some(barrier)) = (replies.next(), replies.next()) else {
            return Err(OfctrlError::Disconnected("send bundle"));
        };
        let commit = commit.await;
        let barrier = barrier.await;
        sw.unwatch_errors(base);
        let mut rejected = HashSet::new();
        while let Ok((xid, error)) = errors.try_recv() {
            let idx = xid.wrapping_sub(base + 1) as usize;
            if let Some(op) = ops.get(idx) {
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
        Ok((rejected, committed))
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

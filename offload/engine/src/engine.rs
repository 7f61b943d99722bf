//! The engine: one [`Table`] per pipeline stage, entries with direct counters, flood groups,
//! and [`Engine::process`], which runs one raw frame through the stages and rewrites it in
//! place. Semantics are those of `wyvern_pipeline::Interpreter` (the equivalence tests hold
//! it to that), including each stage's declared miss behaviour.

use std::collections::HashMap;

use wyvern_pipeline::ir::Flow;
use wyvern_pipeline::{
    Action, Delta, FieldKind, FloodGroup, Miss, NetKey, PortKey, PuntReason, RouterKey, Stage,
    STAGES,
};

use crate::cache::{Edit, FlowCache, FlowKey, Recording, Rewrite, DEFAULT_CACHE_SLOTS};
use crate::key::{from_ir_match, full_mask, mac_u64, slot, FieldMatch, PacketKey};
use crate::table::{EntryStore, Table, TableShape};
use crate::wire::{dec_ttl_in_place_replay, ArpPacket, EthernetFrame, Headers, Ipv4Packet};

const NUM_STAGES: usize = STAGES.len();

/// Frames [`Engine::process_burst`] takes through each of its steps at a time (DPDK's
/// usual burst size; longer bursts are cut into chunks of this many).
pub const BURST: usize = 32;

/// One table entry: a priority, a key (fields with value and mask) and the IR actions it
/// runs. A P4Runtime front end maps a P4 action and its parameters to the IR action list
/// (e.g. `route(rmac, dmac, net, port)` = `[DecTtl, SetEthSrc, SetEthDst, SetNetwork,
/// SetOutPort, Goto(Egress)]`); an empty list drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub priority: u32,
    /// Sorted by field once installed (the canonical form read back).
    pub key: Vec<FieldMatch>,
    pub actions: Vec<Action>,
}

impl Entry {
    pub fn new(priority: u32, key: Vec<FieldMatch>, actions: Vec<Action>) -> Self {
        Entry {
            priority,
            key,
            actions,
        }
    }

    /// The entry for an IR flow.
    pub fn from_flow(flow: &Flow) -> Self {
        Entry {
            priority: flow.priority.into(),
            key: flow.matches.iter().map(from_ir_match).collect(),
            actions: flow.actions.clone(),
        }
    }
}

/// Packets and bytes (the bytes of the frame as it entered the table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

impl Counters {
    #[inline]
    fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }
    #[inline]
    fn add_n(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }
}

/// A handle on an installed entry; stale once the entry is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    index: u32,
    generation: u32,
}

/// An installed entry as read back.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub id: EntryId,
    pub stage: Stage,
    pub entry: &'a Entry,
    pub counters: Counters,
}

/// Why a write was refused. Variants map onto P4Runtime's per-update codes:
/// `AlreadyExists` -> ALREADY_EXISTS, `NotFound`/`StaleId` -> NOT_FOUND, the rest ->
/// INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("failed to install in {stage}: the stage does not match on {field:?}")]
    FieldNotInStage { stage: Stage, field: FieldKind },
    #[error("failed to install in {stage}: field {field:?} appears twice in the key")]
    DuplicateField { stage: Stage, field: FieldKind },
    #[error("failed to install in {stage}: {field:?} value {value:#x}/{mask:#x} is wider than the field")]
    ValueTooWide {
        stage: Stage,
        field: FieldKind,
        value: u64,
        mask: u64,
    },
    #[error("failed to install in {stage}: it may not continue at {target}")]
    GotoNotAllowed { stage: Stage, target: Stage },
    #[error("failed to install in {stage}: terminal action {action:?} is not the last one")]
    TerminalNotLast { stage: Stage, action: Action },
    #[error("failed to install in {stage}: an entry with priority {priority} and this key exists")]
    AlreadyExists { stage: Stage, priority: u32 },
    #[error("failed to find an entry in {stage} with priority {priority} and this key")]
    NotFound { stage: Stage, priority: u32 },
    #[error("failed to find entry {id:?}: it was removed")]
    StaleId { id: EntryId },
    #[error("failed to install flow [{flow}]: {source}")]
    Flow {
        flow: String,
        #[source]
        source: Box<EngineError>,
    },
}

/// Where a frame goes after [`Engine::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// Out of one switch port.
    Port(u32),
    /// Out of every port of the network's flood group except `except` (the in-port):
    /// see [`Engine::flood_group`].
    Flood { network: NetKey, except: u32 },
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// No entry matched and the stage's miss is a drop.
    Miss,
    /// An entry without a terminal action (an explicit drop).
    Flow,
    /// `DecTtl` on a TTL of 1 or less, or on a packet without IPv4.
    TtlExpired,
    /// Output to the port the frame came in on (a switch never hairpins unasked).
    Hairpin,
    /// Too short for an Ethernet header.
    Malformed,
}

/// The fate of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) frame.
    Output(Out),
    /// To the controller, with the reason and the logical keys the pipeline had set (the
    /// fields of wyvern.p4's `packet_in` header).
    Punt {
        reason: PuntReason,
        inport: Option<PortKey>,
        network: Option<NetKey>,
        router: Option<RouterKey>,
    },
    /// Dropped at `stage`.
    Drop { stage: Stage, cause: DropCause },
}

/// Consecutive frames of a burst with one verdict (see [`Engine::process_burst_runs`]):
/// from frame `start` up to the next run's start (or the burst's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictRun {
    pub start: usize,
    pub verdict: Verdict,
}

/// Appends frame `i`'s verdict: it extends the last run when equal (runs stay maximal).
#[inline(always)]
fn push_run(runs: &mut Vec<VerdictRun>, i: usize, verdict: Verdict) {
    if runs.last().is_some_and(|r| r.verdict == verdict) {
        return;
    }
    runs.push(VerdictRun { start: i, verdict });
}

/// Per-frame metadata from the port the frame arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// The switch port (OpenFlow port number / P4 ingress port).
    pub in_port: u32,
    /// The tunnel key when the frame came in decapsulated from a tunnel.
    pub tun_id: Option<u32>,
}

struct Stored {
    stage: Stage,
    entry: Entry,
    seq: u64,
    counters: Counters,
}

struct Slot {
    generation: u32,
    data: Option<Stored>,
}

/// Entries live in one slab; tables and buckets refer to them by index.
#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl EntryStore for Slab {
    #[inline]
    fn key(&self, idx: u32) -> &[FieldMatch] {
        match &self.slots[idx as usize].data {
            Some(s) => &s.entry.key,
            None => &[],
        }
    }
    #[inline]
    fn rank(&self, idx: u32) -> (u32, u64) {
        match &self.slots[idx as usize].data {
            Some(s) => (s.entry.priority, s.seq),
            None => (0, u64::MAX),
        }
    }
}

impl Slab {
    fn get(&self, id: EntryId) -> Option<&Stored> {
        let s = self.slots.get(id.index as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.data.as_ref()
    }
    fn id(&self, idx: u32) -> EntryId {
        EntryId {
            index: idx,
            generation: self.slots[idx as usize].generation,
        }
    }
}

/// Software match-action tables for the pipeline. `process` takes `&mut self` (counters);
/// a front end that writes entries from another thread shares the engine behind a mutex
/// and the datapath takes the lock once per burst.
pub struct Engine {
    tables: [Table; NUM_STAGES],
    slab: Slab,
    /// (stage, priority, canonical key) -> slab index: the identity P4Runtime deletes by.
    by_key: HashMap<(Stage, u32, Vec<FieldMatch>), u32>,
    misses: [Counters; NUM_STAGES],
    groups: HashMap<NetKey, Vec<u32>>,
    next_seq: u64,
    shadowed: usize,
    cache: FlowCache,
    /// `process_burst`'s per-chunk arrays, kept between calls (not rebuilt per burst).
    scratch: Option<Box<Scratch>>,
    /// `process_burst`'s runs, kept between calls.
    runs: Vec<VerdictRun>,
}

/// [`Headers`] in 10 bytes instead of 72, kept per frame between `process_burst`'s steps
/// (each 72-byte store and reload per frame showed in the profile). Offsets are at most 74
/// (Ethernet 14 + an IPv4 header of at most 60), 0 stands for absent (no layer starts at
/// 0).
#[derive(Debug, Clone, Copy, Default)]
struct Packed {
    /// The frame parsed (at least an Ethernet header).
    ok: bool,
    eth_type: u16,
    arp: u16,
    ipv4: u16,
    udp: u16,
    icmp: u16,
}

impl Packed {
    #[inline(always)]
    fn pack(h: &Headers) -> Packed {
        let p = |o: Option<usize>| o.and_then(|o| u16::try_from(o).ok()).unwrap_or(0);
        Packed {
            ok: true,
            eth_type: h.eth_type,
            arp: p(h.arp),
            ipv4: p(h.ipv4),
            udp: p(h.udp),
            icmp: p(h.icmp),
        }
    }

    #[inline(always)]
    fn unpack(&self) -> Headers {
        let u = |o: u16| (o != 0).then_some(usize::from(o));
        Headers {
            eth_type: self.eth_type,
            arp: u(self.arp),
            ipv4: u(self.ipv4),
            udp: u(self.udp),
            icmp: u(self.icmp),
        }
    }
}

/// Per-frame state of one [`BURST`]-sized chunk between `process_burst`'s steps.
struct Scratch {
    /// Parsed headers, of frames that are not head-path followers (see `process_chunk`).
    hs: [Packed; BURST],
    /// Frame lengths (phase 3 touches a frame only to rewrite it or to walk the tables).
    lens: [u64; BURST],
    /// Flow keys and hashes, of leaders only (see `process_chunk`).
    keys: [FlowKey; BURST],
    hashes: [usize; BURST],
    /// Probe results, of leaders only.
    slots: [Option<usize>; BURST],
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            hs: [Packed::default(); BURST],
            lens: [0; BURST],
            keys: [FlowKey::default(); BURST],
            hashes: [0; BURST],
            slots: [None; BURST],
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Engine");
        for s in Stage::ALL {
            d.field(s.name(), &self.tables[s.index()].shape());
        }
        d.finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            tables: Default::default(),
            slab: Slab::default(),
            by_key: HashMap::new(),
            misses: [Counters::default(); NUM_STAGES],
            groups: HashMap::new(),
            next_seq: 0,
            shadowed: 0,
            cache: FlowCache::new(DEFAULT_CACHE_SLOTS),
            scratch: None,
            runs: Vec::new(),
        }
    }
}

/// Flow-cache effectiveness since the engine was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub slots: usize,
    pub hits: u64,
    pub misses: u64,
}

impl Engine {
    /// An engine with empty tables: every stage does its declared miss.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes the exact-match flow cache (`0` turns it off: every packet then walks the
    /// tables). Cached flows are forgotten.
    pub fn set_flow_cache(&mut self, slots: usize) {
        self.cache = FlowCache::new(slots);
    }

    /// Flow-cache size, hits and misses.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            slots: self.cache.capacity(),
            hits: self.cache.hits,
            misses: self.cache.misses,
        }
    }

    /// Builds every table from compiled IR flows and the flood groups. Flows are installed
    /// in the interpreter's order (priority, then flow order), so equal-priority overlaps
    /// resolve as the interpreter resolves them; a flow whose stage, priority and key
    /// repeat an earlier one is shadowed by it (counted in [`Engine::shadowed`]).
    pub fn from_ir<'a>(
        flows: impl IntoIterator<Item = &'a Flow>,
        groups: impl IntoIterator<Item = &'a FloodGroup>,
    ) -> Result<Engine, EngineError> {
        let mut sorted: Vec<&Flow> = flows.into_iter().collect();
        sorted.sort_by(|a, b| {
            a.stage
                .cmp(&b.stage)
                .then(b.priority.cmp(&a.priority))
                .then_with(|| a.cmp(b))
        });
        let mut e = Engine::new();
        for f in sorted {
            match e.insert_flow(f) {
                Ok(_) => {}
                Err(EngineError::Flow { source, .. })
                    if matches!(*source, EngineError::AlreadyExists { .. }) =>
                {
                    e.shadowed += 1
                }
                Err(err) => return Err(err),
            }
        }
        for g in groups {
            e.set_flood_group(g.network, g.ports.clone());
        }
        Ok(e)
    }

    /// Flows from [`Engine::from_ir`] that repeated an installed key and were skipped.
    pub fn shadowed(&self) -> usize {
        self.shadowed
    }

    /// Installs one IR flow.
    pub fn insert_flow(&mut self, flow: &Flow) -> Result<EntryId, EngineError> {
        self.insert(flow.stage, Entry::from_flow(flow))
            .map_err(|e| EngineError::Flow {
                flow: flow.to_string(),
                source: Box::new(e),
            })
    }

    /// Removes the entry an IR flow installed (by stage, priority and key).
    pub fn remove_flow(&mut self, flow: &Flow) -> Result<Entry, EngineError> {
        let key: Vec<FieldMatch> = flow.matches.iter().map(from_ir_match).collect();
        self.remove(flow.stage, flow.priority.into(), &key)
    }

    /// Applies a compiler delta: removals first, then additions, then groups.
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<(), EngineError> {
        for f in &delta.removed {
            self.remove_flow(f).map_err(|e| EngineError::Flow {
                flow: f.to_string(),
                source: Box::new(e),
            })?;
        }
        for f in &delta.added {
            self.insert_flow(f)?;
        }
        for g in &delta.groups_set {
            self.set_flood_group(g.network, g.ports.clone());
        }
        for n in &delta.groups_removed {
            self.remove_flood_group(*n);
        }
        Ok(())
    }

    /// Checks and canonicalises an entry for `stage`: key sorted by field, values masked,
    /// fields declared by the stage, gotos only forward to declared next stages.
    fn validate(stage: Stage, entry: &mut Entry) -> Result<(), EngineError> {
        let decl = stage.decl();
        entry.key.sort_by_key(|fm| slot(fm.field));
        for fm in entry.key.iter_mut() {
            if !decl.matches.contains(&fm.field) {
                return Err(EngineError::FieldNotInStage {
                    stage,
                    field: fm.field,
                });
            }
            let full = full_mask(fm.field);
            if fm.mask & !full != 0 || fm.value & !full != 0 {
                return Err(EngineError::ValueTooWide {
                    stage,
                    field: fm.field,
                    value: fm.value,
                    mask: fm.mask,
                });
            }
            fm.value &= fm.mask;
        }
        if let Some(w) = entry.key.windows(2).find(|w| w[0].field == w[1].field) {
            return Err(EngineError::DuplicateField {
                stage,
                field: w[0].field,
            });
        }
        let last = entry.actions.len().saturating_sub(1);
        for (i, a) in entry.actions.iter().enumerate() {
            if a.is_terminal() && i != last {
                return Err(EngineError::TerminalNotLast { stage, action: *a });
            }
            if let Action::Goto(target) = a {
                if !decl.next.contains(target) {
                    return Err(EngineError::GotoNotAllowed {
                        stage,
                        target: *target,
                    });
                }
            }
        }
        Ok(())
    }

    /// Installs an entry in `stage`'s table. Refused if an entry with the same priority
    /// and key exists (P4Runtime INSERT semantics; use [`Engine::modify`] to change its
    /// actions).
    pub fn insert(&mut self, stage: Stage, mut entry: Entry) -> Result<EntryId, EngineError> {
        Self::validate(stage, &mut entry)?;
        let map_key = (stage, entry.priority, entry.key.clone());
        if self.by_key.contains_key(&map_key) {
            return Err(EngineError::AlreadyExists {
                stage,
                priority: entry.priority,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let stored = Stored {
            stage,
            entry,
            seq,
            counters: Counters::default(),
        };
        let idx = match self.slab.free.pop() {
            Some(i) => {
                let s = &mut self.slab.slots[i as usize];
                s.data = Some(stored);
                i
            }
            None => {
                self.slab.slots.push(Slot {
                    generation: 0,
                    data: Some(stored),
                });
                (self.slab.slots.len() - 1) as u32
            }
        };
        self.tables[stage.index()].insert(idx, &self.slab);
        self.by_key.insert(map_key, idx);
        self.cache.invalidate();
        Ok(self.slab.id(idx))
    }

    /// The entry of `stage` with exactly this priority and key (any order, values masked).
    pub fn find(&self, stage: Stage, priority: u32, key: &[FieldMatch]) -> Option<EntryId> {
        let mut probe = Entry::new(priority, key.to_vec(), Vec::new());
        Self::validate(stage, &mut probe).ok()?;
        self.by_key
            .get(&(stage, priority, probe.key))
            .map(|i| self.slab.id(*i))
    }

    /// Removes the entry of `stage` with this priority and key; returns it.
    pub fn remove(
        &mut self,
        stage: Stage,
        priority: u32,
        key: &[FieldMatch],
    ) -> Result<Entry, EngineError> {
        let id = self
            .find(stage, priority, key)
            .ok_or(EngineError::NotFound { stage, priority })?;
        self.remove_id(id)
    }

    /// Removes an entry by handle; returns it.
    pub fn remove_id(&mut self, id: EntryId) -> Result<Entry, EngineError> {
        let stage = self.slab.get(id).ok_or(EngineError::StaleId { id })?.stage;
        self.tables[stage.index()].remove(id.index, &self.slab);
        self.cache.invalidate();
        let slot = &mut self.slab.slots[id.index as usize];
        let stored = slot.data.take().ok_or(EngineError::StaleId { id })?;
        slot.generation = slot.generation.wrapping_add(1);
        self.slab.free.push(id.index);
        self.by_key
            .remove(&(stage, stored.entry.priority, stored.entry.key.clone()));
        Ok(stored.entry)
    }

    /// Replaces the actions of the entry with this priority and key (P4Runtime MODIFY);
    /// its counters are kept.
    pub fn modify(
        &mut self,
        stage: Stage,
        priority: u32,
        key: &[FieldMatch],
        actions: Vec<Action>,
    ) -> Result<EntryId, EngineError> {
        let id = self
            .find(stage, priority, key)
            .ok_or(EngineError::NotFound { stage, priority })?;
        let mut check = Entry::new(priority, Vec::new(), actions);
        Self::validate(stage, &mut check)?;
        if let Some(s) = self.slab.slots[id.index as usize].data.as_mut() {
            s.entry.actions = check.actions;
        }
        self.cache.invalidate();
        Ok(id)
    }

    /// Reads one entry back with its counters.
    pub fn entry(&self, id: EntryId) -> Option<EntryRef<'_>> {
        self.slab.get(id).map(|s| EntryRef {
            id,
            stage: s.stage,
            entry: &s.entry,
            counters: s.counters,
        })
    }

    /// Every entry of `stage`, in no particular order.
    pub fn entries(&self, stage: Stage) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.slab
            .slots
            .iter()
            .enumerate()
            .filter_map(move |(i, s)| {
                let d = s.data.as_ref()?;
                (d.stage == stage).then_some(EntryRef {
                    id: EntryId {
                        index: i as u32,
                        generation: s.generation,
                    },
                    stage: d.stage,
                    entry: &d.entry,
                    counters: d.counters,
                })
            })
    }

    /// Number of entries in `stage`'s table.
    pub fn len(&self, stage: Stage) -> usize {
        self.tables[stage.index()].len()
    }

    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.len() == 0)
    }

    /// How `stage`'s table is organised.
    pub fn shape(&self, stage: Stage) -> TableShape {
        self.tables[stage.index()].shape()
    }

    /// The direct counters of an entry.
    pub fn counters(&self, id: EntryId) -> Option<Counters> {
        self.slab.get(id).map(|s| s.counters)
    }

    /// Sets an entry's counters (P4Runtime lets a controller write direct counters).
    pub fn set_counters(&mut self, id: EntryId, c: Counters) -> Result<(), EngineError> {
        let s = self.slab.slots.get_mut(id.index as usize);
        match s {
            Some(s) if s.generation == id.generation && s.data.is_some() => {
                if let Some(d) = s.data.as_mut() {
                    d.counters = c;
                }
                Ok(())
            }
            _ => Err(EngineError::StaleId { id }),
        }
    }

    /// Packets that matched nothing in `stage`.
    pub fn miss_counters(&self, stage: Stage) -> Counters {
        self.misses[stage.index()]
    }

    /// Sets (or replaces) a network's flood group: the switch ports broadcast goes to.
    pub fn set_flood_group(&mut self, network: NetKey, mut ports: Vec<u32>) {
        ports.sort_unstable();
        ports.dedup();
        self.groups.insert(network, ports);
        self.cache.invalidate();
    }

    pub fn remove_flood_group(&mut self, network: NetKey) -> Option<Vec<u32>> {
        self.cache.invalidate();
        self.groups.remove(&network)
    }

    /// The ports of a network's flood group (empty if it has none).
    pub fn flood_group(&self, network: NetKey) -> &[u32] {
        self.groups.get(&network).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Runs a frame that arrived on switch port `in_port` through the pipeline.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_port: u32) -> Verdict {
        self.process_meta(
            frame,
            Meta {
                in_port,
                tun_id: None,
            },
        )
    }

    /// Runs a frame through the pipeline, rewriting it in place (MACs, TTL and checksum,
    /// ARP replies). Allocates nothing.
    ///
    /// Inlined into the caller's loop: a flow-cache hit is parse, key, one probe and the
    /// replay; the table walk (a miss, or no cache) lives out of line so the hit path keeps
    /// a small stack frame.
    #[inline]
    pub fn process_meta(&mut self, frame: &mut [u8], meta: Meta) -> Verdict {
        let Ok(h) = Headers::parse(frame) else {
            return Verdict::Drop {
                stage: Stage::Classify,
                cause: DropCause::Malformed,
            };
        };
        let bytes = frame.len() as u64;
        if !self.cache.enabled() {
            return self.walk_uncached(frame, &h, meta, bytes);
        }
        let fk = flow_key(frame, &h, meta);
        let (slot, hash) = self.cache.find(&fk);
        if let Some(slot) = slot {
            let rec = self.cache.recording(slot);
            return replay(rec, &mut self.slab, &mut self.misses, frame, &h, bytes);
        }
        self.walk_and_cache(frame, &h, meta, bytes, &fk, hash)
    }

    /// Runs a burst of frames that arrived on one port through the pipeline, rewriting
    /// each in place; `verdicts` is cleared and gets one verdict per frame, in order.
    /// The same semantics as calling [`Engine::process_meta`] on each frame in turn
    /// (counters included, exact once the call returns); faster because the work is done
    /// stage by stage over up to [`BURST`] frames at a time (OVS-DPDK's shape):
    /// 1. parse every frame and build its flow key and hash;
    /// 2. probe the flow cache for all of them (independent loads the CPU overlaps);
    /// 3. per frame in order: replay a hit's rewrites and verdict, or walk the tables on a
    ///    miss; hits on one cache slot that follow each other form a run whose counters
    ///    are bumped once (OVS's per-flow batch). A miss ends the run first, and later
    ///    frames of the chunk whose cache set its walk filled probe again.
    pub fn process_burst<F: AsMut<[u8]>>(
        &mut self,
        frames: &mut [F],
        meta: Meta,
        verdicts: &mut Vec<Verdict>,
    ) {
        let mut runs = std::mem::take(&mut self.runs);
        self.process_burst_runs(frames, meta, &mut runs);
        verdicts.clear();
        verdicts.reserve(frames.len());
        for (k, r) in runs.iter().enumerate() {
            let end = runs.get(k + 1).map_or(frames.len(), |n| n.start);
            verdicts.extend(std::iter::repeat_n(r.verdict, end - r.start));
        }
        self.runs = runs;
    }

    /// [`Engine::process_burst`] with the verdicts as maximal runs: `runs` is cleared and
    /// gets one [`VerdictRun`] per stretch of consecutive frames with one verdict (run
    /// `k` covers frames `runs[k].start..runs[k + 1].start`, the last one up to the end;
    /// neighbouring runs differ). Why: a burst of one flow, or of flows between the same
    /// ports, is one run, so the caller moves it whole instead of reading a verdict per
    /// frame, and the engine writes one verdict per run instead of one per frame.
    pub fn process_burst_runs<F: AsMut<[u8]>>(
        &mut self,
        frames: &mut [F],
        meta: Meta,
        runs: &mut Vec<VerdictRun>,
    ) {
        runs.clear();
        if !self.cache.enabled() {
            for (i, f) in frames.iter_mut().enumerate() {
                let v = self.process_meta(f.as_mut(), meta);
                push_run(runs, i, v);
            }
            return;
        }
        let mut scratch = self.scratch.take().unwrap_or_default();
        for (c, chunk) in frames.chunks_mut(BURST).enumerate() {
            self.process_chunk(chunk, meta, c * BURST, runs, &mut scratch);
        }
        self.scratch = Some(scratch);
    }

    /// [`Engine::process_burst_runs`] on at most [`BURST`] frames, the first of which is
    /// frame `base` of the burst.
    #[inline(always)]
    fn process_chunk<F: AsMut<[u8]>>(
        &mut self,
        frames: &mut [F],
        meta: Meta,
        base: usize,
        runs: &mut Vec<VerdictRun>,
        sc: &mut Scratch,
    ) {
        let n = frames.len().min(BURST);
        if self.uniform_chunk(&mut frames[..n], meta, base, runs) {
            return;
        }
        // Step 1: parse, key and hash. Bit i of `ok`: frame i parsed; of `follows`: its
        // key is the previous parsed frame's (the next packet of the same flow), so it
        // shares its leader's key, hash and probe; of `same_parse`: its parse is the
        // previous parsed frame's too. Nothing is stored for a follower but its length.
        let (mut ok, mut follows, mut same_parse) = (0u32, 0u32, 0u32);
        // Whether a frame was parsed yet, and the leader of the last one parsed.
        let mut prev = false;
        let mut prev_lead = 0usize;
        // The previous parsed frame's masked IPv4 head, when it has one (see `masked_head`).
        let mut prev_head: Option<[u64; 5]> = None;
        for (i, f) in frames[..n].iter_mut().enumerate() {
            let frame = f.as_mut();
            sc.lens[i] = frame.len() as u64;
            let bit = 1u32 << i;
            let head = masked_head(frame);
            if let (true, Some(ph), Some(h)) = (prev, &prev_head, &head) {
                if same_head(ph, h) {
                    // The previous frame's flow: its parse and key hold for this one.
                    ok |= bit;
                    follows |= bit;
                    same_parse |= bit;
                    continue;
                }
            }
            prev_head = head.filter(is_ipv4_head);
            match Headers::parse(frame) {
                Ok(h) => {
                    ok |= bit;
                    let key = flow_key(frame, &h, meta);
                    // The hash first: different flows mostly differ there.
                    let hash = FlowCache::hash(&key);
                    if prev && sc.hashes[prev_lead] == hash && sc.keys[prev_lead].same(&key) {
                        follows |= bit;
                    } else {
                        sc.hashes[i] = hash;
                        sc.keys[i] = key;
                        prev_lead = i;
                    }
                    sc.hs[i] = Packed::pack(&h);
                    prev = true;
                }
                Err(_) => sc.hs[i].ok = false,
            }
        }
        // Step 2: probe the cache for every leader (independent loads the CPU overlaps).
        let mut leaders = ok & !follows;
        while leaders != 0 {
            let i = leaders.trailing_zeros() as usize;
            sc.slots[i] = self.cache.probe(&sc.keys[i], sc.hashes[i]);
            leaders &= leaders - 1;
        }
        // Step 3, per frame in order. The current counter run: cache slot, packets, bytes.
        let mut run: Option<(usize, u64, u64)> = None;
        // The slot the previous parsed frame hit, while no walk has happened since: a
        // frame that follows it hits the same slot (only a walk changes the cache).
        let mut hit_prev: Option<usize> = None;
        // The slot whose verdict the open verdict run (`runs.last()`) has, and whether its
        // recording rewrites frames.
        let mut open_slot: Option<usize> = None;
        let mut has_edit = false;
        // `verdict_key` of the open run's verdict (0: unknown, compare in full).
        let mut open_vkey = 0u64;
        // The frame whose key (`lead`) and parse (`hsi`) the current frame uses.
        let (mut lead, mut hsi) = (0usize, 0usize);
        // Lookups that missed (every other parsed frame hit).
        let mut misses = 0u64;
        // Sets a walk in this chunk cached a flow into: a probe of such a set made before
        // the walk may be stale (the new flow pushed way 0 into way 1 and way 1 out);
        // every other set is as it was.
        let mut touched = [0usize; BURST];
        let mut n_touched = 0;
        for (i, f) in frames[..n].iter_mut().enumerate() {
            let bit = 1u32 << i;
            if ok & bit == 0 {
                push_run(
                    runs,
                    base + i,
                    Verdict::Drop {
                        stage: Stage::Classify,
                        cause: DropCause::Malformed,
                    },
                );
                open_slot = None;
                open_vkey = 0;
                continue;
            }
            let follower = follows & bit != 0;
            if !follower {
                lead = i;
            }
            if same_parse & bit == 0 {
                hsi = i;
            }
            let bytes = sc.lens[i];
            let slot = match hit_prev {
                Some(s) if follower => Some(s),
                _ => {
                    let set = self.cache.set_of(sc.hashes[lead]);
                    if touched[..n_touched].contains(&set) {
                        self.cache.probe(&sc.keys[lead], sc.hashes[lead])
                    } else {
                        sc.slots[lead]
                    }
                }
            };
            match slot {
                Some(slot) => {
                    hit_prev = Some(slot);
                    match &mut run {
                        Some((s, n, b)) if *s == slot => {
                            *n += 1;
                            *b += bytes;
                        }
                        _ => {
                            if let Some((s, n, b)) = run.replace((slot, 1, bytes)) {
                                self.count_run(s, n, b);
                            }
                        }
                    }
                    let rec = self.cache.recording(slot);
                    if open_slot != Some(slot) {
                        has_edit = !rec.edit.is_empty();
                        if rec.vkey == 0 || rec.vkey != open_vkey {
                            push_run(runs, base + i, rec.verdict);
                        }
                        open_vkey = rec.vkey;
                        open_slot = Some(slot);
                    }
                    if has_edit {
                        match rec.edit.route {
                            // IPv4 right after the Ethernet header: the usual routed frame.
                            Some(m) if sc.hs[hsi].ipv4 == 14 => route_edit(f.as_mut(), &m),
                            _ => apply_edit(f.as_mut(), &sc.hs[hsi].unpack(), &rec.edit),
                        }
                    }
                }
                None => {
                    misses += 1;
                    hit_prev = None;
                    open_slot = None;
                    open_vkey = 0;
                    if let Some((s, n, b)) = run.take() {
                        self.count_run(s, n, b);
                    }
                    let h = sc.hs[hsi].unpack();
                    let set = self.cache.set_of(sc.hashes[lead]);
                    let v = self.walk_and_cache(
                        f.as_mut(),
                        &h,
                        meta,
                        bytes,
                        &sc.keys[lead],
                        sc.hashes[lead],
                    );
                    push_run(runs, base + i, v);
                    if n_touched < BURST {
                        touched[n_touched] = set;
                        n_touched += 1;
                    }
                }
            }
        }
        self.cache
            .add_counts(u64::from(ok.count_ones()) - misses, misses);
        if let Some((s, n, b)) = run {
            self.count_run(s, n, b);
        }
    }

    /// The chunk when every frame follows the first (one IPv4 flow, the same masked head)
    /// and the first hits the cache: then every frame hits that slot (no walk can come
    /// between), so the whole chunk is one counter run, one verdict run and one edit
    /// replayed per frame, with one parse, key and probe for the chunk. Exactly what the
    /// general path does for such a chunk, in one tight pass; returns false (having
    /// changed nothing) for any other chunk, which then takes the general path.
    #[inline(always)]
    fn uniform_chunk<F: AsMut<[u8]>>(
        &mut self,
        frames: &mut [F],
        meta: Meta,
        base: usize,
        runs: &mut Vec<VerdictRun>,
    ) -> bool {
        let Some((first, rest)) = frames.split_first_mut() else {
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        let f0 = first.as_mut();
        let Some(head) = masked_head(f0).filter(is_ipv4_head) else {
            return false;
        };
        let mut bytes = f0.len() as u64;
        for f in rest.iter_mut() {
            let f = f.as_mut();
            if !same_ipv4_head(f, &head) {
                return false;
            }
            bytes += f.len() as u64;
        }
        let f0 = first.as_mut();
        let Ok(h) = Headers::parse(f0) else {
            return false;
        };
        let key = flow_key(f0, &h, meta);
        let Some(slot) = self.cache.probe(&key, FlowCache::hash(&key)) else {
            return false;
        };
        let n = frames.len() as u64;
        self.cache.add_counts(n, 0);
        self.count_run(slot, n, bytes);
        let rec = self.cache.recording(slot);
        push_run(runs, base, rec.verdict);
        let e = &rec.edit;
        if !e.is_empty() {
            match e.route {
                Some(m) if h.ipv4 == Some(14) => {
                    for f in frames.iter_mut() {
                        route_edit(f.as_mut(), &m);
                    }
                }
                _ => {
                    for f in frames.iter_mut() {
                        apply_edit(f.as_mut(), &h, e);
                    }
                }
            }
        }
        true
    }

    /// Counts a run of `packets` cache hits on `slot` totalling `bytes`.
    #[inline(always)]
    fn count_run(&mut self, slot: usize, packets: u64, bytes: u64) {
        let rec = self.cache.recording(slot);
        count(rec, &mut self.slab, &mut self.misses, packets, bytes);
    }

    /// Every packet walks the tables (cache off).
    #[inline(never)]
    fn walk_uncached(&mut self, frame: &mut [u8], h: &Headers, meta: Meta, bytes: u64) -> Verdict {
        let key = extract(frame, h, meta);
        let mut rec = Recording::default();
        self.walk(frame, h, key, meta, bytes, &mut rec)
    }

    /// A flow-cache miss: walk the tables and cache what the walk did.
    #[inline(never)]
    fn walk_and_cache(
        &mut self,
        frame: &mut [u8],
        h: &Headers,
        meta: Meta,
        bytes: u64,
        fk: &FlowKey,
        hash: usize,
    ) -> Verdict {
        let key = extract(frame, h, meta);
        let mut rec = Recording::default();
        let verdict = self.walk(frame, h, key, meta, bytes, &mut rec);
        if !rec.overflow {
            rec.verdict = verdict;
            rec.seal();
            self.cache.put(fk, hash, rec);
        }
        verdict
    }

    /// The tables' walk for one packet, recording what it does for the flow cache.
    fn walk(
        &mut self,
        frame: &mut [u8],
        h: &Headers,
        mut key: PacketKey,
        meta: Meta,
        bytes: u64,
        rec: &mut Recording,
    ) -> Verdict {
        let mut stage = Stage::Classify;
        // Stages only go forward (validated at insert), so this bound is never reached.
        for _ in 0..=NUM_STAGES {
            let si = stage.index();
            let Some(idx) = self.tables[si].lookup(&key, &self.slab) else {
                self.misses[si].add(bytes);
                rec.miss(si);
                match STAGES[si].miss {
                    Miss::Drop => {
                        return Verdict::Drop {
                            stage,
                            cause: DropCause::Miss,
                        }
                    }
                    Miss::Continue(next) => {
                        stage = next;
                        continue;
                    }
                }
            };
            let Some(stored) = self.slab.slots[idx as usize].data.as_mut() else {
                break;
            };
            stored.counters.add(bytes);
            rec.hit(idx);
            let mut next = None;
            for a in &stored.entry.actions {
                match *a {
                    Action::SetNetwork(k) => key.set(FieldKind::Network, k.0.into()),
                    Action::SetInPort(k) => key.set(FieldKind::InPort, k.0.into()),
                    Action::SetOutPort(k) => key.set(FieldKind::OutPort, k.0.into()),
                    Action::SetRouter(k) => key.set(FieldKind::Router, k.0.into()),
                    Action::SetEthSrc(m) => {
                        apply_rewrite(frame, h, Rewrite::EthSrc(m));
                        rec.rewrite(Rewrite::EthSrc(m));
                        key.set(FieldKind::EthSrc, mac_u64(m));
                    }
                    Action::SetEthDst(m) => {
                        apply_rewrite(frame, h, Rewrite::EthDst(m));
                        rec.rewrite(Rewrite::EthDst(m));
                        key.set(FieldKind::EthDst, mac_u64(m));
                    }
                    Action::DecTtl => {
                        let ip = h
                            .ipv4
                            .and_then(|off| frame.get_mut(off..))
                            .and_then(|b| Ipv4Packet::new_checked(b).ok());
                        match ip {
                            Some(mut ip) if ip.ttl() > 1 => {
                                ip.dec_ttl();
                                rec.rewrite(Rewrite::DecTtl);
                                key.set(FieldKind::IpTtl, ip.ttl().into());
                            }
                            _ => {
                                return Verdict::Drop {
                                    stage,
                                    cause: DropCause::TtlExpired,
                                }
                            }
                        }
                    }
                    Action::ArpReply { mac } => {
                        apply_rewrite(frame, h, Rewrite::ArpReply(mac));
                        rec.rewrite(Rewrite::ArpReply(mac));
                        return Verdict::Output(Out::Port(meta.in_port));
                    }
                    Action::Punt(reason) => {
                        return Verdict::Punt {
                            reason,
                            inport: key.get(FieldKind::InPort).map(|v| PortKey(v as u32)),
                            network: key.get(FieldKind::Network).map(|v| NetKey(v as u32)),
                            router: key.get(FieldKind::Router).map(|v| RouterKey(v as u32)),
                        }
                    }
                    Action::Output(p) => {
                        return if p == meta.in_port {
                            Verdict::Drop {
                                stage,
                                cause: DropCause::Hairpin,
                            }
                        } else {
                            Verdict::Output(Out::Port(p))
                        };
                    }
                    Action::Flood(network) => {
                        return Verdict::Output(Out::Flood {
                            network,
                            except: meta.in_port,
                        })
                    }
                    Action::Goto(s) => next = Some(s),
                    // No tunnels in the software engine: overlay copies are not taken.
                    Action::Tunnel { .. } => {}
                }
            }
            match next {
                Some(s) if s > stage => stage = s,
                _ => {
                    return Verdict::Drop {
                        stage,
                        cause: DropCause::Flow,
                    }
                }
            }
        }
        Verdict::Drop {
            stage,
            cause: DropCause::Flow,
        }
    }
}

/// A cache hit: count what the walk counted, redo its rewrites, same verdict.
#[inline(always)]
fn replay(
    rec: &Recording,
    slab: &mut Slab,
    misses: &mut [Counters; NUM_STAGES],
    frame: &mut [u8],
    h: &Headers,
    bytes: u64,
) -> Verdict {
    count(rec, slab, misses, 1, bytes);
    rewrite(rec, frame, h)
}

/// Counts `packets` packets (`bytes` in all) that followed a recorded walk.
#[inline(always)]
fn count(
    rec: &Recording,
    slab: &mut Slab,
    misses: &mut [Counters; NUM_STAGES],
    packets: u64,
    bytes: u64,
) {
    for &idx in &rec.hits[..usize::from(rec.n_hits)] {
        if let Some(s) = slab.slots[idx as usize].data.as_mut() {
            s.counters.add_n(packets, bytes);
        }
    }
    let mut m = rec.misses;
    while m != 0 {
        misses[m.trailing_zeros() as usize].add_n(packets, bytes);
        m &= m - 1;
    }
}

/// Redoes a recorded walk's rewrites on a frame; returns its verdict.
#[inline(always)]
fn rewrite(rec: &Recording, frame: &mut [u8], h: &Headers) -> Verdict {
    let e = &rec.edit;
    if !e.is_empty() {
        apply_edit(frame, h, e);
    }
    rec.verdict
}

/// Applies a recording's net rewrites (see [`Edit`] for why this order is exact), on a
/// frame whose parse gave `h`: the IPv4 header and the Ethernet addresses are known to be
/// there, so each rewrite is a fixed-size write with no view to check.
#[inline(always)]
fn apply_edit(frame: &mut [u8], h: &Headers, e: &Edit) {
    if e.dec_ttl > 0 {
        if let Some(ip) = h
            .ipv4
            .and_then(|off| frame.get_mut(off..))
            .and_then(|b| b.first_chunk_mut::<12>())
        {
            // One decrement per router crossed: the usual case without a loop.
            dec_ttl_in_place_replay(ip);
            for _ in 1..e.dec_ttl {
                dec_ttl_in_place_replay(ip);
            }
        }
    }
    if let Some(eth) = frame.first_chunk_mut::<12>() {
        if let Some(m) = e.macs {
            *eth = m;
        } else {
            if let Some(m) = e.eth_src {
                eth[6..].copy_from_slice(&m.0);
            }
            if let Some(m) = e.eth_dst {
                eth[..6].copy_from_slice(&m.0);
            }
        }
    }
    if let Some(m) = e.arp_reply {
        apply_rewrite(frame, h, Rewrite::ArpReply(m));
    }
}

/// [`apply_edit`] for [`Edit::route`] on a frame whose IPv4 header starts at byte 14:
/// both MACs in one 12-byte write, one TTL decrement with its checksum update. The same
/// bytes as `apply_edit` (which does the same writes one rewrite at a time).
#[inline(always)]
fn route_edit(frame: &mut [u8], macs: &[u8; 12]) {
    if let Some((eth, rest)) = frame
        .first_chunk_mut::<26>()
        .and_then(|b| b.split_first_chunk_mut::<12>())
    {
        *eth = *macs;
        if let Some(ip) = rest.last_chunk_mut::<12>() {
            dec_ttl_in_place_replay(ip);
        }
    }
}

/// Frames of at least this many bytes have room for an IPv4 header without options and
/// 8 bytes of UDP or ICMP header after it, so their parse depends only on their bytes
/// 12..38 (see [`masked_head`]).
const HEAD_MIN_LEN: usize = 42;

/// Words of bytes 0..40 whose bits `Headers::parse` and `flow_key` read in an IPv4 frame
/// with a 20-byte header: MACs and ethertype (0..14), version/IHL (14), flags and fragment
/// offset, TTL, protocol (20..24), addresses (26..34), the UDP ports (34..38; for ICMP type,
/// code and checksum: only the type is read, the rest kept to stay simple). Masked out: TOS, total length, identification (15..20), header checksum
/// (24..26), beyond 38. Read little-endian.
const HEAD_MASK: [u64; 5] = [
    u64::MAX,
    0x00ff_ffff_ffff_ffff,
    0xffff_ffff_0000_0000,
    0xffff_ffff_ffff_0000,
    0x0000_ffff_ffff_ffff,
];

/// The masked head of a frame of at least [`HEAD_MIN_LEN`] bytes (`None` if shorter).
/// When it is an IPv4 head ([`is_ipv4_head`]: IPv4 ethertype, a 20-byte header), two
/// frames with equal heads parse to the same [`Headers`] (ethertype, IPv4 at 14, UDP or
/// ICMP at 34 or neither: the length checks all pass at 42 bytes) and have the same
/// [`FlowKey`] on one port, so a burst's next packet of the same flow skips its parse and
/// key: the packets of one flow differ in IP id, length and checksum, which neither reads.
#[inline(always)]
fn masked_head(frame: &[u8]) -> Option<[u64; 5]> {
    if frame.len() < HEAD_MIN_LEN {
        return None;
    }
    let (words, _) = frame.first_chunk::<40>()?.as_chunks::<8>();
    let mut out = [0u64; 5];
    for ((o, w), m) in out.iter_mut().zip(words).zip(HEAD_MASK) {
        *o = u64::from_le_bytes(*w) & m;
    }
    Some(out)
}

/// Whether a masked head has bytes 12..15 = 08 00 45 (read little-endian from word 1).
#[inline(always)]
fn is_ipv4_head(h: &[u64; 5]) -> bool {
    (h[1] >> 32) & 0x00ff_ffff == 0x0045_0008
}

/// Whether `frame` has the masked head `head`, a valid IPv4 head of another frame (the
/// mask covers the ethertype and version/IHL bytes, so equality says this frame has
/// them too): [`masked_head`] and [`same_head`] in one pass.
#[inline(always)]
fn same_ipv4_head(frame: &[u8], head: &[u64; 5]) -> bool {
    let Some(b) = frame
        .first_chunk::<40>()
        .filter(|_| frame.len() >= HEAD_MIN_LEN)
    else {
        return false;
    };
    let (words, _) = b.as_chunks::<8>();
    let mut d = 0u64;
    for ((w, m), h) in words.iter().zip(HEAD_MASK).zip(head) {
        d |= (u64::from_le_bytes(*w) & m) ^ h;
    }
    d == 0
}

/// Equality of two heads without a `memcmp` call.
#[inline(always)]
fn same_head(a: &[u64; 5], b: &[u64; 5]) -> bool {
    a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// The flow cache's key for a parsed frame (see [`FlowKey`] for the layout).
#[inline(always)]
fn flow_key(frame: &[u8], h: &Headers, meta: Meta) -> FlowKey {
    let be48 = |at: usize| {
        let b = &frame[at..at + 6];
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    };
    let be32 = |at: usize| {
        let b = &frame[at..at + 4];
        u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let be16 = |at: usize| u64::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
    let mut w = [0u64; 8];
    let mut present = 0u64;
    if let Some(t) = meta.tun_id {
        present |= 1;
        w[1] = t.into();
    }
    w[1] |= u64::from(h.eth_type) << 32;
    w[2] = be48(0);
    w[3] = be48(6);
    if let Some(a) = h.arp {
        present |= 2;
        w[5] = be16(a + 6) << 32;
        w[6] = be32(a + 14) | be32(a + 24) << 32;
        w[7] = be48(a + 8);
    }
    if let Some(ip) = h.ipv4 {
        present |= 4;
        w[1] |= u64::from(frame[ip + 9]) << 48 | u64::from(frame[ip + 8]) << 56;
        w[4] = be32(ip + 12) | be32(ip + 16) << 32;
    }
    if let Some(u) = h.udp {
        present |= 8;
        w[5] |= be16(u) | be16(u + 2) << 16;
    }
    if let Some(i) = h.icmp {
        present |= 16;
        w[2] |= u64::from(frame[i]) << 48;
    }
    w[0] = u64::from(meta.in_port) | present << 32;
    FlowKey(w)
}

/// Applies one rewrite to a parsed frame (offsets from `h`, checked by the parser).
#[inline(always)]
fn apply_rewrite(frame: &mut [u8], h: &Headers, rw: Rewrite) {
    match rw {
        Rewrite::EthSrc(m) => {
            if let Ok(mut e) = EthernetFrame::new_checked(&mut *frame) {
                e.set_src(m);
            }
        }
        Rewrite::EthDst(m) => {
            if let Ok(mut e) = EthernetFrame::new_checked(&mut *frame) {
                e.set_dst(m);
            }
        }
        Rewrite::DecTtl => {
            if let Some(Ok(mut ip)) = h
                .ipv4
                .and_then(|off| frame.get_mut(off..))
                .map(Ipv4Packet::new_checked)
            {
                ip.dec_ttl();
            }
        }
        Rewrite::ArpReply(mac) => {
            if let Some(off) = h.arp {
                if let Ok(mut e) = EthernetFrame::new_checked(&mut *frame) {
                    let src = e.src();
                    e.set_dst(src);
                    e.set_src(mac);
                }
                if let Some(Ok(mut arp)) = frame.get_mut(off..).map(ArpPacket::new_checked) {
                    arp.make_reply(mac);
                }
            }
        }
    }
}

/// The packet's key: header fields from the parsed layers, metadata from the port.
#[inline]
fn extract(frame: &[u8], h: &Headers, meta: Meta) -> PacketKey {
    use FieldKind as F;
    let mut k = PacketKey::new();
    k.set(F::PhysInPort, meta.in_port.into());
    if let Some(t) = meta.tun_id {
        k.set(F::TunnelId, t.into());
    }
    let be48 = |at: usize| {
        let b = &frame[at..at + 6];
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    };
    let be32 = |at: usize| {
        let b = &frame[at..at + 4];
        u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let be16 = |at: usize| u64::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
    // Headers::parse checked every offset used below against the frame length.
    k.set(F::EthDst, be48(0));
    k.set(F::EthSrc, be48(6));
    k.set(F::EthType, h.eth_type.into());
    if let Some(a) = h.arp {
        k.set(F::ArpOp, be16(a + 6));
        k.set(F::ArpSha, be48(a + 8));
        k.set(F::ArpSpa, be32(a + 14));
        k.set(F::ArpTpa, be32(a + 24));
    }
    if let Some(ip) = h.ipv4 {
        k.set(F::IpTtl, frame[ip + 8].into());
        k.set(F::IpProto, frame[ip + 9].into());
        k.set(F::Ipv4Src, be32(ip + 12));
        k.set(F::Ipv4Dst, be32(ip + 16));
    }
    if let Some(u) = h.udp {
        k.set(F::UdpSrc, be16(u));
        k.set(F::UdpDst, be16(u + 2));
    }
    if let Some(i) = h.icmp {
        k.set(F::IcmpType, frame[i].into());
    }
    k
}

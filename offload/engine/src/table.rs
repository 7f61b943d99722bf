//! One match-action table: a tuple-space classifier, the structure Open vSwitch's
//! classifier uses.
//!
//! Entries are grouped by their *shape* (which fields, with which masks) into subtables;
//! each subtable is a hash map from the masked packet values to its entries. So:
//! - a table whose entries all match the same fields exactly (classify, egress, most of
//!   l2_lookup) is a single hash lookup, whatever its size;
//! - an LPM-style table (l3_lookup: a prefix per route, priority 100 + prefix length) gets
//!   one subtable per prefix length, visited in priority order;
//! - anything else is a priority-ordered ternary search over a handful of subtables, each
//!   still O(1) in its entry count.
//!
//! Subtables are kept sorted by their highest priority, and a lookup stops as soon as the
//! next subtable cannot beat the best entry found: a unicast l2 hit at priority 100 never
//! looks at the multicast subtable (priority 50). Lookups allocate nothing.
//! Among equal priorities the entry installed first wins (P4Runtime leaves overlapping
//! equal-priority entries undefined; the IR interpreter's tie order is reproduced by
//! [`crate::Engine::from_ir`] inserting in that order).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::key::{slot, FieldMatch, PacketKey};

/// Hashes are computed by the subtable already: the map must not hash them again.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(MUL);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashIdx<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(MUL);
    x ^ (x >> 29)
}

/// What the table needs to know about an installed entry during a lookup.
pub(crate) trait EntryStore {
    fn key(&self, idx: u32) -> &[FieldMatch];
    /// (priority, install sequence): larger priority wins, then smaller sequence.
    fn rank(&self, idx: u32) -> (u32, u64);
}

#[derive(Debug)]
struct Subtable {
    /// (slot, mask) per field, in key order: the shape shared by all its entries.
    shape: Box<[(usize, u64)]>,
    /// Presence bits every packet must have to match here.
    required: u32,
    /// Hash of masked values -> entries, best first.
    buckets: HashIdx<Vec<u32>>,
    /// Priority -> number of entries, for `max_prio` after removals.
    prios: BTreeMap<u32, u32>,
    max_prio: u32,
}

impl Subtable {
    #[inline]
    fn hash_packet(&self, key: &PacketKey) -> u64 {
        let mut h = self.shape.len() as u64;
        for &(s, m) in self.shape.iter() {
            h = mix(h, key.values[s] & m);
        }
        h
    }

    fn hash_entry(key: &[FieldMatch]) -> u64 {
        let mut h = key.len() as u64;
        for fm in key {
            h = mix(h, fm.value);
        }
        h
    }
}

/// How a table's entries ended up organised (for reports and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Empty,
    /// One shape, every field exact: a single hash lookup.
    Exact,
    /// Shapes differ only in one field's prefix length: hash per prefix length, LPM order.
    Lpm,
    /// Anything else: priority-ordered subtables.
    Ternary,
}

/// A table's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableShape {
    pub kind: TableKind,
    pub entries: usize,
    pub subtables: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    subtables: Vec<Subtable>,
    len: usize,
}

fn shape_of(key: &[FieldMatch]) -> Box<[(usize, u64)]> {
    key.iter().map(|fm| (slot(fm.field), fm.mask)).collect()
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds entry `idx` (whose key and rank `store` already knows).
    pub(crate) fn insert(&mut self, idx: u32, store: &impl EntryStore) {
        let key = store.key(idx);
        let shape = shape_of(key);
        let pos = match self.subtables.iter().position(|s| s.shape == shape) {
            Some(p) => p,
            None => {
                let required = shape.iter().fold(0u32, |acc, (s, _)| acc | (1 << s));
                self.subtables.push(Subtable {
                    shape,
                    required,
                    buckets: HashIdx::default(),
                    prios: BTreeMap::new(),
                    max_prio: 0,
                });
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[pos];
        let (prio, _) = store.rank(idx);
        let bucket = st.buckets.entry(Subtable::hash_entry(key)).or_default();
        let rank = |i: &u32| {
            let (p, seq) = store.rank(*i);
            (std::cmp::Reverse(p), seq)
        };
        let at = bucket.partition_point(|i| rank(i) < rank(&idx));
        bucket.insert(at, idx);
        *st.prios.entry(prio).or_default() += 1;
        st.max_prio = st.max_prio.max(prio);
        self.len += 1;
        self.sort();
    }

    /// Removes entry `idx` (call before the store forgets it).
    pub(crate) fn remove(&mut self, idx: u32, store: &impl EntryStore) -> bool {
        let key = store.key(idx);
        let shape = shape_of(key);
        let Some(pos) = self.subtables.iter().position(|s| s.shape == shape) else {
            return false;
        };
        let st = &mut self.subtables[pos];
        let h = Subtable::hash_entry(key);
        let Some(bucket) = st.buckets.get_mut(&h) else {
            return false;
        };
        let Some(at) = bucket.iter().position(|i| *i == idx) else {
            return false;
        };
        bucket.remove(at);
        if bucket.is_empty() {
            st.buckets.remove(&h);
        }
        let (prio, _) = store.rank(idx);
        if let Some(n) = st.prios.get_mut(&prio) {
            *n -= 1;
            if *n == 0 {
                st.prios.remove(&prio);
            }
        }
        st.max_prio = st.prios.keys().next_back().copied().unwrap_or(0);
        if st.prios.is_empty() {
            self.subtables.remove(pos);
        }
        self.len -= 1;
        self.sort();
        true
    }

    fn sort(&mut self) {
        // Stable: equal maxima keep creation order. Few subtables, so this is cheap.
        self.subtables
            .sort_by_key(|s| std::cmp::Reverse(s.max_prio));
    }

    /// The best entry for `key`: highest priority, then earliest installed.
    #[inline]
    pub(crate) fn lookup(&self, key: &PacketKey, store: &impl EntryStore) -> Option<u32> {
        let mut best: Option<(u32, u64, u32)> = None;
        for st in &self.subtables {
            if let Some((bp, _, _)) = best {
                if st.max_prio < bp {
                    break;
                }
            }
            if key.present & st.required != st.required {
                continue;
            }
            let Some(bucket) = st.buckets.get(&st.hash_packet(key)) else {
                continue;
            };
            for &idx in bucket {
                let (p, seq) = store.rank(idx);
                if let Some((bp, bseq, _)) = best {
                    if p < bp || (p == bp && seq > bseq) {
                        break;
                    }
                }
                let hit = store
                    .key(idx)
                    .iter()
                    .all(|fm| key.values[slot(fm.field)] & fm.mask == fm.value);
                if hit {
                    best = Some((p, seq, idx));
                    break;
                }
            }
        }
        best.map(|(_, _, idx)| idx)
    }

    pub(crate) fn shape(&self) -> TableShape {
        let kind = match self.subtables.as_slice() {
            [] => TableKind::Empty,
            [one] if one.shape.iter().all(|&(s, m)| m == full_mask_of_slot(s)) => TableKind::Exact,
            many => {
                // LPM when all shapes have the same fields and differ in exactly one field,
                // whose masks are prefixes.
                let first = &many[0].shape;
                let same_fields = many.iter().all(|s| {
                    s.shape.len() == first.len()
                        && s.shape.iter().zip(first.iter()).all(|(a, b)| a.0 == b.0)
                });
                let varying: Vec<usize> = if same_fields {
                    (0..first.len())
                        .filter(|i| many.iter().any(|s| s.shape[*i].1 != first[*i].1))
                        .collect()
                } else {
                    Vec::new()
                };
                // A prefix mask is ones then zeros over the field's width.
                let is_prefix = |slot: usize, mask: u64| {
                    let inv = !mask & full_mask_of_slot(slot);
                    inv & inv.wrapping_add(1) == 0
                };
                let lpm = matches!(varying.as_slice(), [v] if many
                    .iter()
                    .all(|s| is_prefix(s.shape[*v].0, s.shape[*v].1)));
                if lpm {
                    TableKind::Lpm
                } else {
                    TableKind::Ternary
                }
            }
        };
        TableShape {
            kind,
            entries: self.len,
            subtables: self.subtables.len(),
        }
    }
}

fn full_mask_of_slot(s: usize) -> u64 {
    crate::key::full_mask(crate::key::FIELDS[s])
}

//! An exact-match flow cache in front of the tables (Open vSwitch's EMC idea): the
//! pipeline's decision is a pure function of a packet's key (header fields, presence bits,
//! in-port, tunnel id), so the first packet of a flow records what the tables did — the
//! entries it hit, the stages it missed, the frame rewrites in order, the verdict — and
//! later packets with the same key replay that record without a single table lookup.
//! Counters stay exact (the replay counts the same entries), rewrites are redone on each
//! frame (an incremental checksum update differs per frame), and any table write
//! invalidates the whole cache by bumping a generation number.
//!
//! Two-way set associative (OVS's EMC gives each key two candidate slots too): a new flow
//! goes into way 0 and pushes the previous way-0 flow into way 1, so two hot flows that
//! share a set both stay cached instead of evicting each other on every packet.

use wyvern_model::MacAddr;

use wyvern_pipeline::Stage;

use crate::engine::{DropCause, Verdict};

/// A frame rewrite, replayed in order on a cache hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    EthSrc(MacAddr),
    EthDst(MacAddr),
    DecTtl,
    ArpReply(MacAddr),
}

const MAX_HITS: usize = 8;

/// The net effect of a walk's rewrites, replayed with no loop and no dispatch per rewrite.
/// Exact for any order the walk did them in: TTL decrements touch only the IPv4 TTL and
/// checksum, a later MAC rewrite of the same field replaces an earlier one, and an ARP
/// reply is terminal (the walk stops there), so it comes last and sees the rewritten
/// source MAC just as the walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Edit {
    pub(crate) eth_src: Option<MacAddr>,
    pub(crate) eth_dst: Option<MacAddr>,
    /// TTL decrements, each with its incremental checksum update.
    pub(crate) dec_ttl: u8,
    pub(crate) arp_reply: Option<MacAddr>,
    /// Both MACs as the frame's first 12 bytes, when both are rewritten (routing): one
    /// 12-byte write instead of two tested 6-byte ones. Set by [`Edit::seal`].
    pub(crate) macs: Option<[u8; 12]>,
    /// The plain routing edit (both MACs, one TTL decrement, nothing else): its MAC bytes.
    /// Set by [`Edit::seal`]; the replay then needs no per-rewrite tests.
    pub(crate) route: Option<[u8; 12]>,
}

impl Edit {
    /// Precomputes what the replay writes (once, when the recording is cached).
    pub(crate) fn seal(&mut self) {
        self.macs = match (self.eth_dst, self.eth_src) {
            (Some(d), Some(s)) => {
                let mut m = [0u8; 12];
                m[..6].copy_from_slice(&d.0);
                m[6..].copy_from_slice(&s.0);
                Some(m)
            }
            _ => None,
        };
        self.route = self
            .macs
            .filter(|_| self.dec_ttl == 1 && self.arp_reply.is_none());
    }

    /// Nothing to do (the L2 case): one test instead of four.
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.eth_src.is_none()
            && self.eth_dst.is_none()
            && self.dec_ttl == 0
            && self.arp_reply.is_none()
    }
}

/// What one packet's walk through the tables did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recording {
    pub(crate) hits: [u32; MAX_HITS],
    pub(crate) n_hits: u8,
    /// Bit per stage index whose table missed.
    pub(crate) misses: u8,
    pub(crate) edit: Edit,
    /// Too much to record: do not cache.
    pub(crate) overflow: bool,
    /// The walk's verdict (set before the recording is cached).
    pub(crate) verdict: Verdict,
    /// [`verdict_key`] of the verdict (set by [`Recording::seal`]).
    pub(crate) vkey: u64,
}

/// A verdict as one number when it fits (unicast and drops; 0 otherwise), so equal
/// verdicts of different flows are told apart with one compare instead of an enum
/// comparison per frame: two non-zero keys are equal exactly when the verdicts are.
#[inline]
pub(crate) fn verdict_key(v: &Verdict) -> u64 {
    match *v {
        Verdict::Output(crate::engine::Out::Port(p)) => 1 << 40 | u64::from(p),
        Verdict::Drop { stage, cause } => {
            let c = match cause {
                DropCause::Miss => 0,
                DropCause::Flow => 1,
                DropCause::TtlExpired => 2,
                DropCause::Hairpin => 3,
                DropCause::Malformed => 4,
            };
            2 << 40 | (stage.index() as u64) << 8 | c
        }
        _ => 0,
    }
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            hits: [0; MAX_HITS],
            n_hits: 0,
            misses: 0,
            edit: Edit::default(),
            overflow: false,
            verdict: Verdict::Drop {
                stage: Stage::Classify,
                cause: DropCause::Flow,
            },
            vkey: 0,
        }
    }
}

impl Recording {
    /// Precomputes what a replay reads (once, when the recording is cached).
    pub(crate) fn seal(&mut self) {
        self.edit.seal();
        self.vkey = verdict_key(&self.verdict);
    }

    #[inline]
    pub(crate) fn hit(&mut self, idx: u32) {
        match self.hits.get_mut(usize::from(self.n_hits)) {
            Some(h) => {
                *h = idx;
                self.n_hits += 1;
            }
            None => self.overflow = true,
        }
    }
    #[inline]
    pub(crate) fn miss(&mut self, stage_index: usize) {
        self.misses |= 1 << stage_index;
    }
    #[inline]
    pub(crate) fn rewrite(&mut self, r: Rewrite) {
        let e = &mut self.edit;
        match r {
            Rewrite::EthSrc(m) => e.eth_src = Some(m),
            Rewrite::EthDst(m) => e.eth_dst = Some(m),
            Rewrite::DecTtl => match e.dec_ttl.checked_add(1) {
                Some(n) => e.dec_ttl = n,
                None => self.overflow = true,
            },
            Rewrite::ArpReply(m) => e.arp_reply = Some(m),
        }
    }
}

/// The cache's key: every header field the tables can match plus presence bits, in-port
/// and tunnel id, packed into one cache line (absent fields are zero). Logical registers
/// are not part of it: they are all unset when a packet enters the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FlowKey(pub(crate) [u64; 8]);

impl FlowKey {
    /// Equality without a `memcmp` call (the derived one compiles to one for 64 bytes).
    #[inline(always)]
    pub(crate) fn same(&self, other: &FlowKey) -> bool {
        let mut d = 0u64;
        for i in 0..8 {
            d |= self.0[i] ^ other.0[i];
        }
        d == 0
    }

    #[inline(always)]
    fn hash(&self) -> usize {
        const K: [u64; 8] = [
            0x9e37_79b9_7f4a_7c15,
            0xc2b2_ae3d_27d4_eb4f,
            0x1656_67b1_9e37_79f9,
            0x85eb_ca77_c2b2_ae63,
            0x27d4_eb2f_1656_67c5,
            0x94d0_49bb_1331_11eb,
            0xbf58_476d_1ce4_e5b9,
            0xff51_afd7_ed55_8ccd,
        ];
        // Independent multiplies (no dependency chain), then one final mix.
        let mut h = 0u64;
        for i in 0..8 {
            h = h.wrapping_add((self.0[i] ^ K[7 - i]).wrapping_mul(K[i]));
        }
        h ^= h >> 31;
        h = h.wrapping_mul(K[1]);
        (h ^ (h >> 29)) as usize
    }
}

/// The probed part of a slot: a lookup reads only these (one cache line plus a word per
/// way); the recording, in a separate array, is read only on a hit.
#[derive(Clone, Copy)]
struct Tag {
    generation: u64,
    key: FlowKey,
}

/// Sets of two slots (`tags[2 * set]`, `tags[2 * set + 1]`, same indices in `recs`).
pub(crate) struct FlowCache {
    tags: Vec<Tag>,
    recs: Vec<Recording>,
    /// Number of sets minus one.
    mask: usize,
    /// Slots from an older generation are empty. Starts at 1: fresh slots hold 0.
    generation: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

/// Default number of cache slots (a power of two; OVS's EMC holds 8192 flows per thread).
pub const DEFAULT_CACHE_SLOTS: usize = 8192;

impl FlowCache {
    /// `slots` is rounded up to a power of two (at least 2, one set); 0 disables the cache.
    pub(crate) fn new(slots: usize) -> Self {
        let n = if slots == 0 {
            0
        } else {
            slots.next_power_of_two().max(2)
        };
        FlowCache {
            tags: vec![
                Tag {
                    generation: 0,
                    key: FlowKey::default(),
                };
                n
            ],
            recs: vec![Recording::default(); n],
            mask: (n / 2).saturating_sub(1),
            generation: 1,
            hits: 0,
            misses: 0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.tags.is_empty()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.tags.len()
    }

    /// Forgets every cached flow (after any table write).
    #[inline]
    pub(crate) fn invalidate(&mut self) {
        self.generation += 1;
    }

    /// The slot holding `key`'s recording, if cached; also returns the hash for `put`.
    #[inline(always)]
    pub(crate) fn find(&mut self, key: &FlowKey) -> (Option<usize>, usize) {
        let hash = key.hash();
        let slot = self.probe(key, hash);
        self.count(slot.is_some());
        (slot, hash)
    }

    /// The hash `find` and `put` take.
    #[inline(always)]
    pub(crate) fn hash(key: &FlowKey) -> usize {
        key.hash()
    }

    /// The set a hash falls in: `put` changes only that set's slots.
    #[inline(always)]
    pub(crate) fn set_of(&self, hash: usize) -> usize {
        hash & self.mask
    }

    /// The slot holding `key` (whose hash is `hash`), if cached; counts nothing.
    #[inline(always)]
    pub(crate) fn probe(&self, key: &FlowKey, hash: usize) -> Option<usize> {
        let base = (hash & self.mask) * 2;
        let ways = &self.tags[base..base + 2];
        let hit = |t: &Tag| t.generation == self.generation && t.key.same(key);
        if hit(&ways[0]) {
            Some(base)
        } else if hit(&ways[1]) {
            Some(base + 1)
        } else {
            None
        }
    }

    /// Counts one lookup as a hit or a miss (the cache's statistics).
    #[inline(always)]
    pub(crate) fn count(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// Counts `hits` hits and `misses` misses at once (a burst's totals).
    #[inline(always)]
    pub(crate) fn add_counts(&mut self, hits: u64, misses: u64) {
        self.hits += hits;
        self.misses += misses;
    }

    #[inline(always)]
    pub(crate) fn recording(&self, slot: usize) -> &Recording {
        &self.recs[slot]
    }

    /// Caches `key` in way 0 of its set; a current way-0 flow moves to way 1 (whose flow,
    /// if any, is forgotten).
    #[inline]
    pub(crate) fn put(&mut self, key: &FlowKey, hash: usize, rec: Recording) {
        let generation = self.generation;
        let base = (hash & self.mask) * 2;
        if self.tags[base].generation == generation {
            self.tags[base + 1] = self.tags[base];
            self.recs[base + 1] = self.recs[base];
        }
        self.tags[base] = Tag {
            generation,
            key: *key,
        };
        self.recs[base] = rec;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FlowKey {
        FlowKey([n, 0, 0, 0, 0, 0, 0, n.wrapping_mul(3)])
    }

    /// Three distinct keys that fall in the same set of a 2-set cache.
    fn same_set(c: &FlowCache) -> [FlowKey; 3] {
        let set = |k: &FlowKey| k.hash() & c.mask;
        let first = key(1);
        let mut v = vec![first];
        let mut n = 2;
        while v.len() < 3 {
            let k = key(n);
            if set(&k) == set(&first) {
                v.push(k);
            }
            n += 1;
        }
        [v[0], v[1], v[2]]
    }

    /// The first hit index recorded for `k`, if cached.
    fn cached(c: &mut FlowCache, k: &FlowKey) -> Option<u32> {
        let (slot, _) = c.find(k);
        slot.map(|s| c.recording(s).hits[0])
    }

    fn rec(hit: u32) -> Recording {
        let mut r = Recording::default();
        r.hit(hit);
        r
    }

    #[test]
    fn two_flows_of_one_set_both_stay_and_a_third_evicts_the_older() {
        let mut c = FlowCache::new(4);
        let [a, b, x] = same_set(&c);
        let (found, h) = c.find(&a);
        assert!(found.is_none());
        c.put(&a, h, rec(1));
        let (_, h) = c.find(&b);
        c.put(&b, h, rec(2));
        assert_eq!(cached(&mut c, &a), Some(1));
        assert_eq!(cached(&mut c, &b), Some(2));
        let (_, h) = c.find(&x);
        c.put(&x, h, rec(3));
        assert!(c.find(&a).0.is_none(), "the oldest flow of the set goes");
        assert_eq!(cached(&mut c, &b), Some(2), "b stays");
        assert_eq!(cached(&mut c, &x), Some(3));
    }

    #[test]
    fn invalidate_forgets_every_way() {
        let mut c = FlowCache::new(4);
        let [a, b, _] = same_set(&c);
        for (k, i) in [(a, 1), (b, 2)] {
            let (_, h) = c.find(&k);
            c.put(&k, h, rec(i));
        }
        c.invalidate();
        assert!(c.find(&a).0.is_none());
        assert!(c.find(&b).0.is_none());
        // A flow cached after the invalidation is found; the stale one beside it is not.
        let (_, h) = c.find(&b);
        c.put(&b, h, rec(5));
        assert_eq!(cached(&mut c, &b), Some(5));
        assert!(c.find(&a).0.is_none());
    }

    #[test]
    fn sizes_round_up_and_zero_disables() {
        assert!(!FlowCache::new(0).enabled());
        assert_eq!(FlowCache::new(1).capacity(), 2);
        assert_eq!(FlowCache::new(5000).capacity(), 8192);
    }
}

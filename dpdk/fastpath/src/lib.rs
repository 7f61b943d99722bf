//! A poll-mode DPDK datapath that executes the compiled pipeline in software for what the NIC refuses.
//!
//! [`FastPath`] polls every port on the calling lcore: `rx_burst`, each frame through the
//! shared [`Engine`] (rewritten in place), frames batched per output port and sent with one
//! `tx_burst` per port and round, flood copies made per port (the last port takes the
//! original mbuf), punts copied into a bounded channel (counted when it is full), drops
//! counted by stage. The engine sits behind a mutex taken once per round, so a control
//! plane (wyvernd's IR back end or wyvern-p4d's P4Runtime server) can write entries and
//! read counters from another thread between rounds.
//!
//! Switch ports are the pipeline's port numbers (OpenFlow ofports / P4 ports); each DPDK
//! port is bound to one of them. Output to a switch port with no DPDK port is a drop,
//! counted as `no_port`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use rte::{free_bulk, Mbuf, Mempool, Port, RteError};
use wyvern_engine::{DropCause, Engine, Meta, Out, Verdict, VerdictRun};
use wyvern_pipeline::{NetKey, PortKey, PuntReason, RouterKey, Stage, STAGES};

/// Why the fast path could not be set up or could not send.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error(
        "failed to set up the fast path: {ports} DPDK ports but {ofports} switch port numbers"
    )]
    PortCount { ports: usize, ofports: usize },
    #[error("failed to set up the fast path: switch port {ofport} is bound to two DPDK ports")]
    DuplicateOfport { ofport: u32 },
    #[error("failed to send to switch port {ofport}: no DPDK port is bound to it")]
    NoSuchPort { ofport: u32 },
    #[error("failed to copy a frame into an mbuf for switch port {ofport}")]
    Mbuf {
        ofport: u32,
        #[source]
        source: RteError,
    },
}

/// A frame for the controller (P4 `packet_in`, OpenFlow packet-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punted {
    pub reason: PuntReason,
    /// The logical in-port the pipeline had assigned.
    pub inport: Option<PortKey>,
    /// The network and router keys the pipeline had set (P4 `packet_in` carries them).
    pub network: Option<NetKey>,
    pub router: Option<RouterKey>,
    /// The switch port the frame arrived on.
    pub in_port: u32,
    pub frame: Vec<u8>,
}

/// Counters of the datapath (the engine keeps per-entry and per-table-miss counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub rx: u64,
    /// Frames accepted by a TX queue (flood copies included).
    pub tx: u64,
    /// Frames a full TX queue refused.
    pub tx_full: u64,
    /// Extra copies made for floods.
    pub flood_copies: u64,
    pub punts: u64,
    /// Punts lost because the channel was full (or nobody listens).
    pub punt_dropped: u64,
    /// Drops by the stage that dropped them, in pipeline order.
    pub drops_by_stage: [u64; STAGES.len()],
    /// Drops by cause: miss, flow, ttl expired, hairpin, malformed.
    pub drops_by_cause: [u64; 5],
    /// Output to a switch port with no DPDK port.
    pub no_port: u64,
    /// Mbuf allocation failures while copying (flood, injection).
    pub alloc_failed: u64,
    /// Frames injected from the controller (packet-out).
    pub injected: u64,
}

impl Stats {
    pub fn drops(&self) -> u64 {
        self.drops_by_stage.iter().sum()
    }
    pub fn dropped_at(&self, stage: Stage) -> u64 {
        self.drops_by_stage[stage.index()]
    }
    pub fn dropped_for(&self, cause: DropCause) -> u64 {
        self.drops_by_cause[cause_index(cause)]
    }
}

fn cause_index(c: DropCause) -> usize {
    match c {
        DropCause::Miss => 0,
        DropCause::Flow => 1,
        DropCause::TtlExpired => 2,
        DropCause::Hairpin => 3,
        DropCause::Malformed => 4,
    }
}

/// Tuning knobs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Frames per `rx_burst`.
    pub burst: u16,
    /// Bound of the punt channel.
    pub punt_capacity: usize,
    /// Bound of the injection (packet-out) channel.
    pub inject_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            burst: 32,
            punt_capacity: 1024,
            inject_capacity: 1024,
        }
    }
}

/// The datapath on one lcore over borrowed, started DPDK ports. Queue 0 of each port.
pub struct FastPath<'p> {
    ports: &'p [Port],
    ofports: Vec<u32>,
    by_ofport: OfportIndex,
    pool: &'p Mempool,
    engine: Arc<Mutex<Engine>>,
    cfg: Config,
    rx: Vec<Mbuf<'p>>,
    /// The engine's verdict runs for the burst in `rx`.
    runs: Vec<VerdictRun>,
    tx: Vec<Vec<Mbuf<'p>>>,
    free: Vec<Mbuf<'p>>,
    punt_tx: SyncSender<Punted>,
    inject_rx: Receiver<(u32, Vec<u8>)>,
    inject_tx: SyncSender<(u32, Vec<u8>)>,
    /// Benchmark-only RX templates per port, cycled (see `set_rx_templates`).
    templates: Vec<RxGenerator>,
    stats: Stats,
}

impl<'p> FastPath<'p> {
    /// Binds `ports[i]` to switch port `ofports[i]`. `pool` supplies flood copies and
    /// injected frames. Returns the datapath and the receiving end of the punt channel.
    pub fn new(
        ports: &'p [Port],
        ofports: &[u32],
        pool: &'p Mempool,
        engine: Arc<Mutex<Engine>>,
        cfg: Config,
    ) -> Result<(FastPath<'p>, Receiver<Punted>), FastPathError> {
        if ports.len() != ofports.len() {
            return Err(FastPathError::PortCount {
                ports: ports.len(),
                ofports: ofports.len(),
            });
        }
        let mut seen = HashMap::new();
        for (i, o) in ofports.iter().enumerate() {
            if seen.insert(*o, i).is_some() {
                return Err(FastPathError::DuplicateOfport { ofport: *o });
            }
        }
        let by_ofport = OfportIndex::new(ofports);
        let (punt_tx, punt_rx) = mpsc::sync_channel(cfg.punt_capacity);
        let (inject_tx, inject_rx) = mpsc::sync_channel(cfg.inject_capacity);
        let burst = usize::from(cfg.burst);
        // RX and TX batches share one capacity: a burst that goes to one port is swapped
        // into its TX batch whole (see `poll`).
        let batch = burst * ports.len().max(1) * 2;
        Ok((
            FastPath {
                ports,
                ofports: ofports.to_vec(),
                by_ofport,
                pool,
                engine,
                cfg,
                rx: Vec::with_capacity(batch),
                runs: Vec::with_capacity(burst),
                tx: (0..ports.len())
                    .map(|_| Vec::with_capacity(batch))
                    .collect(),
                free: Vec::with_capacity(burst * 2),
                punt_tx,
                inject_rx,
                inject_tx,
                templates: (0..ports.len()).map(|_| RxGenerator::default()).collect(),
                stats: Stats::default(),
            },
            punt_rx,
        ))
    }

    /// A handle other threads use to send frames out of a switch port (packet-out); they
    /// leave at the next round.
    pub fn injector(&self) -> SyncSender<(u32, Vec<u8>)> {
        self.inject_tx.clone()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The shared engine.
    pub fn engine(&self) -> &Arc<Mutex<Engine>> {
        &self.engine
    }

    /// BENCHMARKS ONLY: overwrite the start of every frame received on `ports[index]` with
    /// `frame` before processing. The null PMD hands out frames of unspecified content;
    /// this makes them a chosen packet so the benchmark exercises a real pipeline path.
    pub fn set_rx_template(&mut self, index: usize, frame: Option<Vec<u8>>) {
        self.set_rx_templates(index, frame.into_iter().collect());
    }

    /// BENCHMARKS ONLY: like [`FastPath::set_rx_template`] with several frames, written in
    /// turn into successive received frames (many flows from one null port); empty = off.
    pub fn set_rx_templates(&mut self, index: usize, frames: Vec<Vec<u8>>) {
        self.set_rx_generator(index, RxGenerator::whole(&frames));
    }

    /// BENCHMARKS ONLY: what is written into every frame received on `ports[index]`
    /// before processing (see [`RxGenerator`]).
    pub fn set_rx_generator(&mut self, index: usize, generator: RxGenerator) {
        if let Some(t) = self.templates.get_mut(index) {
            *t = generator;
        }
    }

    /// Polls until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll();
        }
    }

    /// One round: injected frames, then one burst from every port through the pipeline,
    /// then one `tx_burst` per port with frames waiting. Returns the frames received.
    pub fn poll(&mut self) -> usize {
        let engine = Arc::clone(&self.engine);
        let mut eng = lock(&engine);
        while let Ok((ofport, frame)) = self.inject_rx.try_recv() {
            // Errors are counted in stats; the sender does not wait for an answer.
            let _ = self.send_locked(ofport, &frame);
        }
        let mut received = 0;
        for pi in 0..self.ports.len() {
            let ports = self.ports;
            let n = ports[pi].rx_burst(0, &mut self.rx, self.cfg.burst);
            if n == 0 {
                continue;
            }
            received += n;
            self.stats.rx += n as u64;
            let in_port = self.ofports[pi];
            let mut rx = std::mem::take(&mut self.rx);
            let mut runs = std::mem::take(&mut self.runs);
            let tpl = &mut self.templates[pi];
            if tpl.words != 0 {
                tpl.write_burst(&mut rx);
            }
            eng.process_burst_runs(
                &mut rx,
                Meta {
                    in_port,
                    tun_id: None,
                },
                &mut runs,
            );
            // The whole burst one run of unicast out of one bound port (one flow, or flows
            // between the same two ports): it moves to that port's TX batch as a whole.
            if let [VerdictRun {
                verdict: Verdict::Output(Out::Port(p)),
                ..
            }] = runs[..]
            {
                if let Some(i) = self.by_ofport.get(p) {
                    let q = &mut self.tx[i];
                    if q.is_empty() {
                        // Equal capacities (see `new`), so neither Vec regrows later.
                        std::mem::swap(q, &mut rx);
                    } else {
                        q.append(&mut rx);
                    }
                    self.rx = rx;
                    self.runs = runs;
                    continue;
                }
            }
            // Run by run; unicast out of a bound port inline, the rest out of line.
            let mut frames = rx.drain(..);
            for (k, r) in runs.iter().enumerate() {
                let end = runs.get(k + 1).map_or(n, |next| next.start);
                let count = end - r.start;
                if let Verdict::Output(Out::Port(p)) = r.verdict {
                    if let Some(i) = self.by_ofport.get(p) {
                        self.tx[i].extend(frames.by_ref().take(count));
                        continue;
                    }
                }
                for m in frames.by_ref().take(count) {
                    self.dispatch(&eng, m, r.verdict, in_port);
                }
            }
            drop(frames);
            self.rx = rx;
            self.runs = runs;
        }
        drop(eng);
        self.flush();
        received
    }

    #[inline(never)]
    fn dispatch(&mut self, eng: &Engine, m: Mbuf<'p>, verdict: Verdict, in_port: u32) {
        match verdict {
            Verdict::Output(Out::Port(p)) => match self.by_ofport.get(p) {
                Some(i) => self.tx[i].push(m),
                None => {
                    self.stats.no_port += 1;
                    self.free.push(m);
                }
            },
            Verdict::Output(Out::Flood { network, except }) => {
                let targets = eng.flood_group(network);
                let mut last: Option<usize> = None;
                for p in targets.iter().copied().filter(|p| *p != except) {
                    let Some(i) = self.by_ofport.get(p) else {
                        self.stats.no_port += 1;
                        continue;
                    };
                    if let Some(prev) = last.replace(i) {
                        match copy_mbuf(self.pool, m.data()) {
                            Ok(c) => {
                                self.stats.flood_copies += 1;
                                self.tx[prev].push(c);
                            }
                            Err(_) => self.stats.alloc_failed += 1,
                        }
                    }
                }
                match last {
                    Some(i) => self.tx[i].push(m),
                    None => self.free.push(m),
                }
            }
            Verdict::Punt {
                reason,
                inport,
                network,
                router,
            } => {
                let p = Punted {
                    reason,
                    inport,
                    network,
                    router,
                    in_port,
                    frame: m.data().to_vec(),
                };
                match self.punt_tx.try_send(p) {
                    Ok(()) => self.stats.punts += 1,
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                        self.stats.punt_dropped += 1
                    }
                }
                self.free.push(m);
            }
            Verdict::Drop { stage, cause } => {
                self.stats.drops_by_stage[stage.index()] += 1;
                self.stats.drops_by_cause[cause_index(cause)] += 1;
                self.free.push(m);
            }
        }
        if self.free.len() >= usize::from(self.cfg.burst) {
            free_bulk(&mut self.free);
        }
    }

    /// Queues a copy of `frame` on the port bound to `ofport` (sent at the end of the next
    /// round, or now by [`FastPath::flush`]).
    pub fn send(&mut self, ofport: u32, frame: &[u8]) -> Result<(), FastPathError> {
        self.send_locked(ofport, frame)
    }

    fn send_locked(&mut self, ofport: u32, frame: &[u8]) -> Result<(), FastPathError> {
        let Some(i) = self.by_ofport.get(ofport) else {
            self.stats.no_port += 1;
            return Err(FastPathError::NoSuchPort { ofport });
        };
        match copy_mbuf(self.pool, frame) {
            Ok(m) => {
                self.stats.injected += 1;
                self.tx[i].push(m);
                Ok(())
            }
            Err(source) => {
                self.stats.alloc_failed += 1;
                Err(FastPathError::Mbuf { ofport, source })
            }
        }
    }

    /// Sends every queued frame: one `tx_burst` per port; what a full queue refuses is
    /// dropped and counted.
    pub fn flush(&mut self) {
        for (i, q) in self.tx.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let sent = self.ports[i].tx_burst(0, q);
            self.stats.tx += sent as u64;
            if !q.is_empty() {
                self.stats.tx_full += q.len() as u64;
                free_bulk(q);
            }
        }
        if !self.free.is_empty() {
            free_bulk(&mut self.free);
        }
    }
}

impl Drop for FastPath<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

fn lock(m: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic elsewhere while holding the engine leaves it consistent enough to forward:
    // every write is a single insert or remove.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn copy_mbuf<'p>(pool: &'p Mempool, data: &[u8]) -> Result<Mbuf<'p>, RteError> {
    let mut c = pool.alloc()?;
    c.extend_from_slice(data)?;
    Ok(c)
}

/// BENCHMARKS ONLY: what is written into each received frame before it is processed
/// (the null PMD hands out frames without writing their data). Templates of at most 64
/// bytes, written in turn into successive frames, and only the 8-byte words named in a
/// mask: all words (a whole template per frame, for frames of unknown content), or only
/// the words that differ between the templates and the words the pipeline rewrites,
/// when every mbuf of the pool was prefilled with the first template
/// (`rte::Mempool::prefill_data`): then a frame carries exactly its template for
/// the price of a few word stores.
#[derive(Debug, Clone, Default)]
pub struct RxGenerator {
    frames: Vec<[u8; RxGenerator::FIXED]>,
    /// Bit `w`: write bytes `8w..8w + 8`.
    words: u8,
    /// Bit `q`: write bytes `16q..16q + 16` (the words, written as 16-byte stores).
    quarters: u8,
    next: usize,
}

impl RxGenerator {
    /// Templates are zero-padded to this length (the null PMD's frames are 64 bytes);
    /// longer ones are cut.
    pub const FIXED: usize = 64;

    /// Writes every template whole (empty `frames`: writes nothing).
    pub fn whole(frames: &[Vec<u8>]) -> Self {
        Self::words(frames, u8::MAX)
    }

    /// Writes only the 8-byte words of `mask` (bit `w` = bytes `8w..8w + 8`).
    pub fn words(frames: &[Vec<u8>], mask: u8) -> Self {
        let frames: Vec<[u8; Self::FIXED]> = frames
            .iter()
            .map(|f| {
                let mut a = [0u8; Self::FIXED];
                let k = f.len().min(Self::FIXED);
                a[..k].copy_from_slice(&f[..k]);
                a
            })
            .collect();
        let words = if frames.is_empty() { 0 } else { mask };
        let quarters = (0..4)
            .filter(|q| words >> (2 * q) & 3 != 0)
            .fold(0u8, |acc, q| acc | 1 << q);
        RxGenerator {
            frames,
            words,
            quarters,
            next: 0,
        }
    }

    /// The words that must be written per frame when the pool holds `frames[0]`: those
    /// where the templates differ from it, plus `rewritten` (words the pipeline changes,
    /// which the next use of the mbuf must find restored).
    pub fn diff_mask(frames: &[Vec<u8>], rewritten: u8) -> u8 {
        let padded = Self::whole(frames).frames;
        let mut mask = rewritten;
        if let Some(first) = padded.first() {
            for f in &padded[1..] {
                for w in 0..Self::FIXED / 8 {
                    if f[8 * w..8 * w + 8] != first[8 * w..8 * w + 8] {
                        mask |= 1 << w;
                    }
                }
            }
        }
        mask
    }

    /// The words written per frame (bit `w` = bytes `8w..8w + 8`): those asked for,
    /// widened to whole 16-byte quarters.
    pub fn mask(&self) -> u8 {
        (0..4)
            .filter(|q| self.quarters >> q & 1 != 0)
            .fold(0u8, |acc, q| acc | 3 << (2 * q))
    }

    /// [`RxGenerator::write`] on every frame of a burst; with one template and 64-byte
    /// frames the per-frame choices (template, quarters) are made once per burst.
    #[inline]
    pub fn write_burst<F: AsMut<[u8]>>(&mut self, frames: &mut [F]) {
        if self.words == 0 {
            return;
        }
        if let ([t], q) = (&self.frames[..], self.quarters) {
            let (src, _) = t.as_chunks::<16>();
            let (a, b) = (src[0], src[1]);
            // The routed case (MACs, TTL and checksum restored): bytes 0..32.
            if q == 0b0011 {
                for f in frames.iter_mut() {
                    if let Some(d) = f.as_mut().first_chunk_mut::<{ Self::FIXED }>() {
                        let (d, _) = d.as_chunks_mut::<16>();
                        d[0] = a;
                        d[1] = b;
                        continue;
                    }
                    self.write(f.as_mut());
                }
                return;
            }
        }
        for f in frames.iter_mut() {
            self.write(f.as_mut());
        }
    }

    /// Writes the next template's words into `d` (a frame shorter than 64 bytes gets the
    /// whole template cut to its length).
    #[inline]
    pub fn write(&mut self, d: &mut [u8]) {
        if self.words == 0 {
            return;
        }
        let t = &self.frames[self.next];
        self.next += 1;
        if self.next == self.frames.len() {
            self.next = 0;
        }
        match d.first_chunk_mut::<{ Self::FIXED }>() {
            Some(dst) => {
                if self.words == u8::MAX {
                    // A fixed-size array copy (vector stores): a variable-length `memcpy`
                    // would write with `rep movsb`, whose stores the parser's loads right
                    // after cannot forward from.
                    *dst = *t;
                    return;
                }
                // Per 16-byte quarter with any word to write: one vector load and store
                // (writing a few bytes more than the mask asks, from the same template).
                let q = self.quarters;
                let (dst, _) = dst.as_chunks_mut::<16>();
                let (src, _) = t.as_chunks::<16>();
                if q & 1 != 0 {
                    dst[0] = src[0];
                }
                if q & 2 != 0 {
                    dst[1] = src[1];
                }
                if q & 4 != 0 {
                    dst[2] = src[2];
                }
                if q & 8 != 0 {
                    dst[3] = src[3];
                }
            }
            None => {
                let k = d.len();
                d.copy_from_slice(&t[..k]);
            }
        }
    }
}

/// Switch port -> index of its DPDK port, looked up once per output frame: a linear scan
/// for the usual handful of ports (cheaper than hashing), a hash map beyond that.
enum OfportIndex {
    Few(Vec<u32>),
    Many(HashMap<u32, usize>),
}

impl OfportIndex {
    const FEW: usize = 16;

    fn new(ofports: &[u32]) -> Self {
        if ofports.len() <= Self::FEW {
            OfportIndex::Few(ofports.to_vec())
        } else {
            OfportIndex::Many(ofports.iter().enumerate().map(|(i, o)| (*o, i)).collect())
        }
    }

    #[inline]
    fn get(&self, ofport: u32) -> Option<usize> {
        match self {
            OfportIndex::Few(v) => v.iter().position(|o| *o == ofport),
            OfportIndex::Many(m) => m.get(&ofport).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RxGenerator;

    fn frames() -> Vec<Vec<u8>> {
        // Two 60-byte templates that differ in byte 35 only (word 4, quarter 2).
        let a: Vec<u8> = (0u8..60).collect();
        let mut b = a.clone();
        b[35] = 0xee;
        vec![a, b]
    }

    #[test]
    fn diff_mask_names_the_differing_and_the_rewritten_words() {
        assert_eq!(RxGenerator::diff_mask(&frames(), 0), 0b0001_0000);
        assert_eq!(RxGenerator::diff_mask(&frames(), 0b0000_1111), 0b0001_1111);
        assert_eq!(RxGenerator::diff_mask(&frames()[..1], 0), 0);
        // The mask written is widened to whole 16-byte quarters.
        assert_eq!(
            RxGenerator::words(&frames(), 0b0001_0000).mask(),
            0b0011_0000
        );
        assert_eq!(
            RxGenerator::words(&[], 0xff).mask(),
            0,
            "no templates: no writes"
        );
    }

    /// Frames prefilled with the first template and given only the mask's words are the
    /// templates in turn, byte for byte; the burst form (its one-template fast path
    /// included) writes what the per-frame form writes.
    #[test]
    fn word_writes_on_prefilled_frames_give_the_templates() {
        let t = frames();
        let mut g = RxGenerator::words(&t, RxGenerator::diff_mask(&t, 0));
        let mut pad = t[0].clone();
        pad.resize(64, 0);
        for k in 0..4 {
            let mut f = pad.clone();
            g.write(&mut f);
            assert_eq!(&f[..60], &t[k % 2][..], "frame {k}");
        }
        // One template, the routed mask (bytes 0..32 restored after a rewrite).
        let one = vec![t[0].clone()];
        let mut fast = RxGenerator::words(&one, 0b0000_1111);
        let mut slow = fast.clone();
        let mut burst: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 64]).collect();
        let mut each = burst.clone();
        fast.write_burst(&mut burst);
        for f in each.iter_mut() {
            slow.write(f);
        }
        assert_eq!(burst, each);
        assert_eq!(&burst[3][..32], &t[0][..32]);
        assert!(burst[3][32..].iter().all(|b| *b == 3), "the rest untouched");
    }
}

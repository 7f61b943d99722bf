//! Packet buffer pools and packet buffers with ownership in the type system.
//!
//! A [`Mbuf`] borrows the pool (or the port whose RX queues hold the pool) it came from,
//! so the pool cannot be freed under it. Mbufs handed to a TX queue leave Rust's hands; a
//! pool dropped while the driver still holds some of its mbufs is freed only at EAL cleanup.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::eal::Eal;
use crate::error::{rte_errno, strerror, RteError};
use crate::ffi;

/// A pktmbuf pool. Clones share the pool; the last drop frees it.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    raw: NonNull<ffi::rte_mempool>,
    name: String,
    eal: Eal,
}

// SAFETY: DPDK's default mempool ops (ring mp/mc) are thread-safe; per-lcore caches are
// indexed by the calling thread's lcore id.
unsafe impl Send for PoolInner {}
unsafe impl Sync for PoolInner {}

/// Parameters of `rte_pktmbuf_pool_create`.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of mbufs (best as 2^n - 1).
    pub size: u32,
    /// Per-lcore cache size (0 disables; at most 512).
    pub cache_size: u32,
    /// Data room per mbuf, headroom included.
    pub data_room: u16,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 8191,
            cache_size: 256,
            data_room: ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        }
    }
}

impl Mempool {
    /// Creates a pktmbuf pool named `name` (unique per process) on the caller's socket.
    pub fn pktmbuf_pool(eal: &Eal, name: &str, config: &PoolConfig) -> Result<Mempool, RteError> {
        let cname = CString::new(name).map_err(|_| RteError::MempoolName {
            name: name.to_owned(),
        })?;
        // SAFETY: EAL is initialised (we hold a handle); cname outlives the call.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                config.size,
                config.cache_size,
                0,
                config.data_room,
                eal.socket_id(),
            )
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            let errno = rte_errno();
            RteError::MempoolCreate {
                name: name.to_owned(),
                size: config.size,
                errno,
                message: strerror(errno),
            }
        })?;
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                raw,
                name: name.to_owned(),
                eal: eal.clone(),
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Raw pointer, for calls this crate does not wrap.
    pub fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.inner.raw.as_ptr()
    }

    /// Allocates one mbuf (reset, empty).
    pub fn alloc(&self) -> Result<Mbuf<'_>, RteError> {
        // SAFETY: valid pool.
        let m = unsafe { ffi::wyv_rte_pktmbuf_alloc(self.as_ptr()) };
        match NonNull::new(m) {
            // SAFETY: a fresh mbuf from this pool, owned by nobody else.
            Some(m) => Ok(unsafe { Mbuf::from_raw(m) }),
            None => Err(RteError::MbufAlloc {
                pool: self.inner.name.clone(),
            }),
        }
    }

    /// Appends `n` fresh mbufs to `out` in one bulk allocation (all or nothing).
    pub fn alloc_bulk<'p>(&'p self, out: &mut Vec<Mbuf<'p>>, n: usize) -> Result<(), RteError> {
        out.reserve(n);
        let len = out.len();
        let count = u32::try_from(n).map_err(|_| RteError::MbufAlloc {
            pool: self.inner.name.clone(),
        })?;
        // SAFETY: Mbuf is repr(transparent) over a non-null rte_mbuf pointer; capacity was
        // reserved; the length is raised only over slots DPDK filled.
        unsafe {
            let dst = out.as_mut_ptr().add(len) as *mut *mut ffi::rte_mbuf;
            if ffi::wyv_rte_pktmbuf_alloc_bulk(self.as_ptr(), dst, count) != 0 {
                return Err(RteError::MbufAlloc {
                    pool: self.inner.name.clone(),
                });
            }
            out.set_len(len + n);
        }
        Ok(())
    }

    /// Writes the data of every free mbuf of the pool once: each is allocated, given
    /// `len` bytes that `fill(i, data)` writes (`i` counts from 0), and freed again.
    /// Returns how many were written.
    ///
    /// Why: DPDK leaves a freed mbuf's data where it was and an allocation resets only the
    /// offsets (`data_off` back to the default headroom), so a driver that hands out pool
    /// mbufs without writing their data (the null PMD with `copy=0`) delivers exactly
    /// these bytes: a benchmark pays for its traffic once instead of per frame. Mbufs that
    /// others hold (an RX ring a real NIC filled at start, a TX queue) are not reached:
    /// call this before starting the ports that use the pool.
    pub fn prefill_data(
        &self,
        len: usize,
        mut fill: impl FnMut(usize, &mut [u8]),
    ) -> Result<usize, RteError> {
        const STEP: usize = 64;
        let mut all: Vec<Mbuf<'_>> = Vec::new();
        // Until the pool is empty (all or nothing per step, so finish one at a time).
        while self.alloc_bulk(&mut all, STEP).is_ok() {}
        while let Ok(m) = self.alloc() {
            all.push(m);
        }
        let mut written = 0;
        for (i, m) in all.iter_mut().enumerate() {
            fill(i, m.append(len)?);
            written += 1;
        }
        free_bulk(&mut all);
        Ok(written)
    }

    /// Mbufs available in the pool (ring plus lcore caches).
    pub fn avail_count(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { ffi::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use_count(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { ffi::rte_mempool_in_use_count(self.as_ptr()) }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: last handle; no Mbuf borrows the pool. Mbufs may still sit in a TX ring.
        unsafe {
            if ffi::rte_mempool_in_use_count(self.raw.as_ptr()) == 0 {
                ffi::rte_mempool_free(self.raw.as_ptr());
            } else {
                self.eal.defer_pool_free(self.raw.as_ptr());
            }
        }
    }
}

/// One packet buffer, owned: dropping it returns it to its pool. Layout is a single
/// pointer so bursts move between `Vec<Mbuf>` and DPDK without copying.
#[repr(transparent)]
pub struct Mbuf<'p> {
    raw: NonNull<ffi::rte_mbuf>,
    _pool: PhantomData<&'p Mempool>,
}

// SAFETY: an mbuf is exclusively owned; freeing it from another thread is allowed.
unsafe impl Send for Mbuf<'_> {}
// SAFETY: shared access only reads the data.
unsafe impl Sync for Mbuf<'_> {}

impl<'p> Mbuf<'p> {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf owned by nobody else, from a pool that outlives `'p`.
    pub unsafe fn from_raw(raw: NonNull<ffi::rte_mbuf>) -> Mbuf<'p> {
        Mbuf {
            raw,
            _pool: PhantomData,
        }
    }

    /// Gives up ownership (the caller must free or send it).
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// Raw pointer, for calls this crate does not wrap.
    pub fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.raw.as_ptr()
    }

    /// Bytes in the first segment. Read from the mbuf's fields (laid out by bindgen from
    /// DPDK's own header), not through the C shim: these accessors run once or more per
    /// frame on the fast path, where an FFI call each cost about 6% of the time.
    #[inline]
    pub fn data_len(&self) -> usize {
        // SAFETY: valid mbuf; a plain field read.
        unsafe { usize::from((*self.raw.as_ptr()).data_len) }
    }

    /// Bytes in the whole packet (all segments).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        // SAFETY: valid mbuf; a plain field read.
        unsafe { (*self.raw.as_ptr()).pkt_len as usize }
    }

    /// Number of segments.
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        // SAFETY: valid mbuf; a plain field read.
        unsafe { (*self.raw.as_ptr()).nb_segs }
    }

    /// Free space after the data in the last segment.
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid mbuf.
        unsafe { ffi::wyv_rte_pktmbuf_tailroom(self.raw.as_ptr()) as usize }
    }

    /// Free space before the data.
    pub fn headroom(&self) -> usize {
        // SAFETY: valid mbuf.
        unsafe { ffi::wyv_rte_pktmbuf_headroom(self.raw.as_ptr()) as usize }
    }

    /// Input port the driver stamped on a received packet.
    #[inline]
    pub fn port(&self) -> u16 {
        // SAFETY: valid mbuf; a plain field read.
        unsafe { (*self.raw.as_ptr()).port }
    }

    /// Start of the first segment's data (`rte_pktmbuf_mtod`: `buf_addr + data_off`).
    #[inline]
    fn mtod(&self) -> *mut u8 {
        // SAFETY: valid mbuf; buf_addr + data_off stays inside the mbuf's buffer (DPDK's
        // invariant, kept by every call that moves data_off).
        unsafe {
            let m = &*self.raw.as_ptr();
            (m.buf_addr as *mut u8).add(usize::from(m.data_off))
        }
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes owned by this mbuf.
        unsafe { std::slice::from_raw_parts(self.mtod(), self.data_len()) }
    }

    /// The first segment's data, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `data`, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.mtod(), self.data_len()) }
    }

    /// Grows the packet by `len` bytes at the tail and returns them (zeroed).
    pub fn append(&mut self, len: usize) -> Result<&mut [u8], RteError> {
        let tailroom = self.tailroom();
        let n = u16::try_from(len)
            .ok()
            .filter(|n| (*n as usize) <= tailroom)
            .ok_or(RteError::MbufAppend { len, tailroom })?;
        // SAFETY: tailroom checked; the returned pointer covers len bytes inside the buffer.
        unsafe {
            let p = ffi::wyv_rte_pktmbuf_append(self.raw.as_ptr(), n);
            if p.is_null() {
                return Err(RteError::MbufAppend { len, tailroom });
            }
            std::ptr::write_bytes(p, 0, len);
            Ok(std::slice::from_raw_parts_mut(p, len))
        }
    }

    /// Appends a copy of `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), RteError> {
        self.append(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    /// Grows the packet by `len` bytes at the front (into the headroom), e.g. to add an
    /// encapsulation header; returns the new front bytes (contents unspecified).
    pub fn prepend(&mut self, len: usize) -> Result<&mut [u8], RteError> {
        let headroom = self.headroom();
        let n = u16::try_from(len)
            .ok()
            .filter(|n| (*n as usize) <= headroom)
            .ok_or(RteError::MbufAppend {
                len,
                tailroom: headroom,
            })?;
        // SAFETY: headroom checked.
        unsafe {
            let p = ffi::wyv_rte_pktmbuf_prepend(self.raw.as_ptr(), n);
            if p.is_null() {
                return Err(RteError::MbufAppend {
                    len,
                    tailroom: headroom,
                });
            }
            Ok(std::slice::from_raw_parts_mut(p, len))
        }
    }

    /// Removes `len` bytes from the front (e.g. a decapsulated header). False if too long.
    pub fn adj(&mut self, len: usize) -> bool {
        let Ok(n) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: rte_pktmbuf_adj checks len against data_len.
        unsafe { !ffi::wyv_rte_pktmbuf_adj(self.raw.as_ptr(), n).is_null() }
    }

    /// Removes `len` bytes from the tail. False if too long.
    pub fn trim(&mut self, len: usize) -> bool {
        let Ok(n) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: rte_pktmbuf_trim checks len against the last segment.
        unsafe { ffi::wyv_rte_pktmbuf_trim(self.raw.as_ptr(), n) == 0 }
    }

    /// Empties the packet (resets lengths and offsets).
    pub fn reset(&mut self) {
        // SAFETY: valid mbuf owned by us.
        unsafe { ffi::wyv_rte_pktmbuf_reset(self.raw.as_ptr()) }
    }
}

impl Drop for Mbuf<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; its pool outlives 'p.
        unsafe { ffi::wyv_rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// The first segment's data, so a burst of mbufs goes to code that takes `AsMut<[u8]>`
/// frames (the engine's `process_burst`).
impl AsRef<[u8]> for Mbuf<'_> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf<'_> {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl std::fmt::Debug for Mbuf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("pkt_len", &self.pkt_len())
            .field("nb_segs", &self.nb_segs())
            .finish()
    }
}

/// Frees a whole burst with one `rte_pktmbuf_free_bulk` call, leaving `mbufs` empty.
pub fn free_bulk(mbufs: &mut Vec<Mbuf<'_>>) {
    let n = mbufs.len();
    // SAFETY: ownership moves to DPDK: the Vec's length drops to 0 before any Drop runs.
    unsafe {
        mbufs.set_len(0);
        ffi::wyv_rte_pktmbuf_free_bulk(mbufs.as_mut_ptr() as *mut *mut ffi::rte_mbuf, n as u32);
    }
}

// Mbuf must be one pointer wide for the zero-copy burst casts.
const _: () =
    assert!(std::mem::size_of::<Mbuf<'static>>() == std::mem::size_of::<*mut ffi::rte_mbuf>());

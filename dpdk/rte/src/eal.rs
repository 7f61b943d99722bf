//! EAL lifetime: initialised once per process, cleaned up when the last handle goes.
//!
//! DPDK's `rte_eal_init` may run only once per process, and `rte_eal_cleanup` must run after
//! every port and pool is released. [`Eal`] is a cheap clonable handle: ports and pools keep
//! a clone, so the EAL is cleaned up only when nothing uses it any more.

use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{rte_errno, strerror, RteError};
use crate::ffi;

/// Set once `rte_eal_init` has been entered in this process; never reset (DPDK cannot
/// initialise again after `rte_eal_cleanup` either).
static EAL_CLAIMED: AtomicBool = AtomicBool::new(false);

/// Errno DPDK returns when EAL is already initialised.
const EALREADY: i32 = 114;

/// The argv[0] we hand to `rte_eal_init`: callers pass only the options.
const PROGRAM_NAME: &str = "wyvern-rte";

/// A handle on the process's EAL. Clone freely; the last drop runs `rte_eal_cleanup`.
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

pub(crate) struct EalInner {
    /// argv storage: DPDK may keep pointers into it until cleanup.
    _argv: Vec<CString>,
    /// Pools that still had mbufs out (e.g. in a TX ring) when dropped: freed at cleanup,
    /// after every port (and its rings) is closed.
    deferred_pools: Mutex<Vec<DeferredPool>>,
    /// rte_eal_cleanup already ran (explicit `cleanup`), so Drop must not run it again.
    cleaned: bool,
}

pub(crate) struct DeferredPool(pub(crate) *mut ffi::rte_mempool);
// SAFETY: a mempool pointer may be freed from any thread; it is only touched at cleanup.
unsafe impl Send for DeferredPool {}

impl Eal {
    /// Initialises the EAL with `args` (options only, no program name), e.g.
    /// `["--no-huge", "--no-pci", "-m", "512", "--file-prefix", "t1", "--vdev=net_null0"]`.
    ///
    /// Fails with [`RteError::EalAlreadyInitialised`] on a second call in the same
    /// process, even after the first EAL was cleaned up: DPDK does not support that.
    /// The calling thread becomes the main lcore.
    pub fn init(args: &[&str]) -> Result<Eal, RteError> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(CString::new(PROGRAM_NAME).map_err(|_| RteError::EalArgument { index: 0 })?);
        for (i, a) in args.iter().enumerate() {
            argv.push(CString::new(*a).map_err(|_| RteError::EalArgument { index: i })?);
        }
        if EAL_CLAIMED.swap(true, Ordering::SeqCst) {
            return Err(RteError::EalAlreadyInitialised);
        }
        // rte_eal_init may permute argv: give it a scratch pointer array.
        let mut ptrs: Vec<*mut c_char> = argv.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        let argc =
            i32::try_from(ptrs.len()).map_err(|_| RteError::EalArgument { index: args.len() })?;
        // SAFETY: argv points at NUL-terminated strings that outlive the EAL (kept in inner).
        let ret = unsafe { ffi::rte_eal_init(argc, ptrs.as_mut_ptr()) };
        if ret < 0 {
            let errno = rte_errno();
            if errno == EALREADY {
                return Err(RteError::EalAlreadyInitialised);
            }
            return Err(RteError::EalInit {
                args: args.iter().map(|s| s.to_string()).collect(),
                errno,
                message: strerror(errno),
            });
        }
        Ok(Eal {
            inner: Arc::new(EalInner {
                _argv: argv,
                deferred_pools: Mutex::new(Vec::new()),
                cleaned: false,
            }),
        })
    }

    /// Cleans up the EAL now. Fails with [`RteError::EalBusy`] while ports or pools still
    /// hold a handle (drop them first); dropping the last handle also cleans up.
    pub fn cleanup(self) -> Result<(), RteError> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.cleanup(),
            Err(inner) => Err(RteError::EalBusy {
                holders: Arc::strong_count(&inner) - 1,
            }),
        }
    }

    /// Number of usable ethdev ports (`rte_eth_dev_count_avail`).
    pub fn eth_dev_count(&self) -> u16 {
        // SAFETY: EAL is initialised while self exists.
        unsafe { ffi::rte_eth_dev_count_avail() }
    }

    /// Ids of all valid ethdev ports, in order.
    pub fn port_ids(&self) -> Vec<u16> {
        (0..ffi::RTE_MAX_ETHPORTS as u16)
            // SAFETY: plain query on a port id in range.
            .filter(|p| unsafe { ffi::rte_eth_dev_is_valid_port(*p) } == 1)
            .collect()
    }

    /// NUMA socket of the calling lcore.
    pub fn socket_id(&self) -> i32 {
        // SAFETY: reads a per-lcore value.
        unsafe { ffi::rte_socket_id() as i32 }
    }

    pub(crate) fn defer_pool_free(&self, pool: *mut ffi::rte_mempool) {
        let mut list = match self.inner.deferred_pools.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.push(DeferredPool(pool));
    }
}

/// The calling thread's lcore id (`u32::MAX` for threads EAL did not create).
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local.
    unsafe { ffi::wyv_rte_lcore_id() }
}

impl EalInner {
    fn cleanup(&mut self) -> Result<(), RteError> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let pools = std::mem::take(match self.deferred_pools.get_mut() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        });
        for p in pools {
            // SAFETY: every port (and so every ring holding its mbufs) is closed: ports hold
            // an Eal clone, and this is the last one.
            unsafe { ffi::rte_mempool_free(p.0) };
        }
        // SAFETY: last handle; nothing else uses DPDK through this crate any more.
        let ret = unsafe { ffi::rte_eal_cleanup() };
        if ret < 0 {
            let errno = ret.abs();
            return Err(RteError::EalCleanup {
                errno,
                message: strerror(errno),
            });
        }
        Ok(())
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // Errors cannot be reported from Drop; `Eal::cleanup` returns them.
        let _ = self.cleanup();
    }
}

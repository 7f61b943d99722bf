//! Ethernet devices: info, configuration, queues, start/stop, stats, MAC, promiscuous mode
//! and the RX/TX burst calls of the fast path.

use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::eal::Eal;
use crate::error::RteError;
use crate::ffi;
use crate::mbuf::{Mbuf, Mempool};
use crate::MacAddr;

/// Ports opened through [`Port::open`]: at most one handle per port, so queues are never
/// driven from two handles at once.
static PORT_OPEN: [AtomicBool; ffi::RTE_MAX_ETHPORTS as usize] =
    [const { AtomicBool::new(false) }; ffi::RTE_MAX_ETHPORTS as usize];

/// What a driver reports about a port (`rte_eth_dev_info` plus the device name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub port: u16,
    /// Device name, e.g. `net_null0`.
    pub name: String,
    /// Driver name, e.g. `net_null`.
    pub driver_name: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub max_mac_addrs: u32,
    pub min_mtu: u16,
    pub max_mtu: u16,
    pub if_index: u32,
}

/// Port configuration for [`Port::configure`]: queue counts; everything else defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConf {
    pub rx_queues: u16,
    pub tx_queues: u16,
}

/// Basic counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// RX packets dropped by the hardware (queue full).
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// An opened ethdev port. Not `Sync`: one thread drives its queues (DPDK burst calls on a
/// queue are not thread-safe). Dropping it stops and closes the device.
pub struct Port {
    id: u16,
    /// RX pools per configured queue: kept alive while the driver may hand out their mbufs.
    rx_pools: Vec<Option<Mempool>>,
    tx_ready: Vec<bool>,
    started: bool,
    _eal: Eal,
    _not_sync: PhantomData<Cell<()>>,
}

impl Port {
    /// Takes the handle on port `id`. Fails if no such port or it is already open here.
    pub fn open(eal: &Eal, id: u16) -> Result<Port, RteError> {
        // SAFETY: plain query.
        if id >= ffi::RTE_MAX_ETHPORTS as u16 || unsafe { ffi::rte_eth_dev_is_valid_port(id) } != 1
        {
            return Err(RteError::PortNotFound { port: id });
        }
        if PORT_OPEN[id as usize].swap(true, Ordering::SeqCst) {
            return Err(RteError::PortState {
                op: "open port",
                port: id,
                reason: "already open in this process",
            });
        }
        Ok(Port {
            id,
            rx_pools: Vec::new(),
            tx_ready: Vec::new(),
            started: false,
            _eal: eal.clone(),
            _not_sync: PhantomData,
        })
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether [`Port::start`] succeeded and no stop followed.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Driver and device information.
    pub fn info(&self) -> Result<PortInfo, RteError> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port; info is a properly sized out-parameter.
        let ret = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if ret != 0 {
            return Err(RteError::ethdev("get device info", self.id, ret));
        }
        let driver_name = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name is a static NUL-terminated string of the driver.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let mut name = [0 as std::os::raw::c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: name has RTE_ETH_NAME_MAX_LEN bytes as the API requires.
        let ret = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id, name.as_mut_ptr()) };
        if ret != 0 {
            return Err(RteError::ethdev("get device name", self.id, ret));
        }
        // SAFETY: DPDK wrote a NUL-terminated name into the buffer.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(PortInfo {
            port: self.id,
            name,
            driver_name,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            max_mac_addrs: info.max_mac_addrs,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            if_index: info.if_index,
        })
    }

    /// Configures queue counts (port must be stopped). Queues must be set up again after.
    pub fn configure(&mut self, conf: &PortConf) -> Result<(), RteError> {
        self.require_stopped("configure")?;
        let eth_conf = ffi::rte_eth_conf::default();
        // SAFETY: valid port, stopped; eth_conf is a zeroed default configuration.
        let ret = unsafe {
            ffi::rte_eth_dev_configure(self.id, conf.rx_queues, conf.tx_queues, &eth_conf)
        };
        if ret != 0 {
            return Err(RteError::ethdev("configure", self.id, ret));
        }
        self.rx_pools = vec![None; conf.rx_queues as usize];
        self.tx_ready = vec![false; conf.tx_queues as usize];
        Ok(())
    }

    /// Sets up RX queue `queue` with `nb_desc` descriptors filled from `pool`. The port
    /// keeps the pool alive as long as the queue may use it.
    pub fn setup_rx_queue(
        &mut self,
        queue: u16,
        nb_desc: u16,
        pool: &Mempool,
    ) -> Result<(), RteError> {
        self.require_stopped("set up RX queue")?;
        if queue as usize >= self.rx_pools.len() {
            return Err(RteError::PortState {
                op: "set up RX queue",
                port: self.id,
                reason: "queue index beyond the configured RX queue count",
            });
        }
        // SAFETY: valid port; NULL rxconf selects driver defaults; the pool outlives the
        // queue because we store a handle on it.
        let ret = unsafe {
            let socket = ffi::rte_eth_dev_socket_id(self.id);
            ffi::rte_eth_rx_queue_setup(
                self.id,
                queue,
                nb_desc,
                socket as u32,
                std::ptr::null(),
                pool.as_ptr(),
            )
        };
        if ret != 0 {
            return Err(RteError::ethdev("set up RX queue", self.id, ret));
        }
        self.rx_pools[queue as usize] = Some(pool.clone());
        Ok(())
    }

    /// Sets up TX queue `queue` with `nb_desc` descriptors.
    pub fn setup_tx_queue(&mut self, queue: u16, nb_desc: u16) -> Result<(), RteError> {
        self.require_stopped("set up TX queue")?;
        if queue as usize >= self.tx_ready.len() {
            return Err(RteError::PortState {
                op: "set up TX queue",
                port: self.id,
                reason: "queue index beyond the configured TX queue count",
            });
        }
        // SAFETY: valid port; NULL txconf selects driver defaults.
        let ret = unsafe {
            let socket = ffi::rte_eth_dev_socket_id(self.id);
            ffi::rte_eth_tx_queue_setup(self.id, queue, nb_desc, socket as u32, std::ptr::null())
        };
        if ret != 0 {
            return Err(RteError::ethdev("set up TX queue", self.id, ret));
        }
        self.tx_ready[queue as usize] = true;
        Ok(())
    }

    /// Starts the device; every configured queue must be set up (the burst calls rely on it).
    pub fn start(&mut self) -> Result<(), RteError> {
        if self.rx_pools.is_empty() && self.tx_ready.is_empty() {
            return Err(RteError::PortState {
                op: "start",
                port: self.id,
                reason: "port is not configured",
            });
        }
        if self.rx_pools.iter().any(Option::is_none) || self.tx_ready.iter().any(|r| !r) {
            return Err(RteError::PortState {
                op: "start",
                port: self.id,
                reason: "not every configured queue is set up",
            });
        }
        if self.started {
            return Ok(());
        }
        // SAFETY: valid, configured port.
        let ret = unsafe { ffi::rte_eth_dev_start(self.id) };
        if ret != 0 {
            return Err(RteError::ethdev("start", self.id, ret));
        }
        self.started = true;
        Ok(())
    }

    /// Stops the device (no-op if not started).
    pub fn stop(&mut self) -> Result<(), RteError> {
        if !self.started {
            return Ok(());
        }
        // SAFETY: valid port.
        let ret = unsafe { ffi::rte_eth_dev_stop(self.id) };
        if ret != 0 {
            return Err(RteError::ethdev("stop", self.id, ret));
        }
        self.started = false;
        Ok(())
    }

    /// Basic counters.
    pub fn stats(&self) -> Result<PortStats, RteError> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port; s is a properly sized out-parameter.
        let ret = unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        if ret != 0 {
            return Err(RteError::ethdev("get stats", self.id, ret));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Zeroes the basic counters.
    pub fn reset_stats(&mut self) -> Result<(), RteError> {
        // SAFETY: valid port.
        let ret = unsafe { ffi::rte_eth_stats_reset(self.id) };
        if ret != 0 {
            return Err(RteError::ethdev("reset stats", self.id, ret));
        }
        Ok(())
    }

    /// The port's primary MAC address.
    pub fn mac_addr(&self) -> Result<MacAddr, RteError> {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port; a is a 6-byte out-parameter.
        let ret = unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        if ret != 0 {
            return Err(RteError::ethdev("get MAC address", self.id, ret));
        }
        Ok(MacAddr(a.addr_bytes))
    }

    /// Enables or disables promiscuous mode.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), RteError> {
        // SAFETY: valid port.
        let ret = unsafe {
            if on {
                ffi::rte_eth_promiscuous_enable(self.id)
            } else {
                ffi::rte_eth_promiscuous_disable(self.id)
            }
        };
        if ret != 0 {
            return Err(RteError::ethdev("set promiscuous mode", self.id, ret));
        }
        Ok(())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> Result<bool, RteError> {
        // SAFETY: valid port.
        match unsafe { ffi::rte_eth_promiscuous_get(self.id) } {
            1 => Ok(true),
            0 => Ok(false),
            ret => Err(RteError::ethdev("get promiscuous mode", self.id, ret)),
        }
    }

    /// Receives up to `max` packets from `queue`, appending them to `out` (no allocation
    /// once `out` has capacity). Returns how many arrived; 0 for an unknown queue or a
    /// stopped port.
    #[inline]
    pub fn rx_burst<'a>(&'a self, queue: u16, out: &mut Vec<Mbuf<'a>>, max: u16) -> usize {
        // A stopped port would answer through DPDK's noisy dummy burst functions.
        if !self.started
            || self
                .rx_pools
                .get(queue as usize)
                .is_none_or(Option::is_none)
        {
            return 0;
        }
        out.reserve(max as usize);
        let len = out.len();
        // SAFETY: the port is started, so every configured queue is set up. Mbuf is
        // repr(transparent) over the pointer; the length grows only over slots the driver
        // filled. The mbufs come from this
        // port's RX pools, which live as long as &'a self.
        unsafe {
            let dst = out.as_mut_ptr().add(len) as *mut *mut ffi::rte_mbuf;
            let n = ffi::wyv_rte_eth_rx_burst(self.id, queue, dst, max) as usize;
            out.set_len(len + n);
            n
        }
    }

    /// Sends packets from the front of `pkts` on `queue`. The ones the driver accepted are
    /// removed from `pkts` (the driver frees them once sent); the rest stay, in order, for
    /// the caller to retry or drop. Returns how many were accepted.
    #[inline]
    pub fn tx_burst(&self, queue: u16, pkts: &mut Vec<Mbuf<'_>>) -> usize {
        if !self.started
            || !self.tx_ready.get(queue as usize).copied().unwrap_or(false)
            || pkts.is_empty()
        {
            return 0;
        }
        let len = pkts.len();
        let want = len.min(u16::MAX as usize) as u16;
        // SAFETY: queue set up; the driver takes ownership of the first n pointers, which we
        // then remove from the Vec without running Drop on them.
        unsafe {
            let base = pkts.as_mut_ptr();
            let n = ffi::wyv_rte_eth_tx_burst(self.id, queue, base as *mut *mut ffi::rte_mbuf, want)
                as usize;
            if n == len {
                // The usual case: no memmove call for an empty tail.
                pkts.set_len(0);
            } else if n > 0 {
                std::ptr::copy(base.add(n), base, len - n);
                pkts.set_len(len - n);
            }
            n
        }
    }

    fn require_stopped(&self, op: &'static str) -> Result<(), RteError> {
        if self.started {
            return Err(RteError::PortState {
                op,
                port: self.id,
                reason: "port is started; stop it first",
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("started", &self.started)
            .finish()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: valid port; after close no queue references our pools any more, and no
        // mbuf borrows self (they hold &self).
        unsafe {
            if self.started {
                ffi::rte_eth_dev_stop(self.id);
            }
            ffi::rte_eth_dev_close(self.id);
        }
        PORT_OPEN[self.id as usize].store(false, Ordering::SeqCst);
    }
}

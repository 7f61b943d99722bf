//! The crate's error type: one variant per failure site, with the DPDK errno kept.

use std::fmt;

/// Errno values DPDK uses to say "this device or driver cannot do that".
pub(crate) const ENOSYS: i32 = 38;
pub(crate) const ENOTSUP: i32 = 95;

/// What an rte_flow error blames (`enum rte_flow_error_type`), kept as the raw value plus
/// a readable name so unknown values from newer drivers are not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowErrorKind(pub u32);

impl FlowErrorKind {
    /// Name of the `RTE_FLOW_ERROR_TYPE_*` value, without the prefix.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NONE",
            1 => "UNSPECIFIED",
            2 => "HANDLE",
            3 => "ATTR_GROUP",
            4 => "ATTR_PRIORITY",
            5 => "ATTR_INGRESS",
            6 => "ATTR_EGRESS",
            7 => "ATTR_TRANSFER",
            8 => "ATTR",
            9 => "ITEM_NUM",
            10 => "ITEM_SPEC",
            11 => "ITEM_LAST",
            12 => "ITEM_MASK",
            13 => "ITEM",
            14 => "ACTION_NUM",
            15 => "ACTION_CONF",
            16 => "ACTION",
            17 => "STATE",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Display for FlowErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// Every way a call into DPDK can fail. `errno` fields are positive errno values.
#[derive(Debug, thiserror::Error)]
pub enum RteError {
    #[error("failed to initialise EAL: it was already initialised in this process (DPDK allows one EAL per process)")]
    EalAlreadyInitialised,
    #[error("failed to initialise EAL: argument {index} contains a NUL byte")]
    EalArgument { index: usize },
    #[error("failed to initialise EAL with {args:?}: {message} (errno {errno})")]
    EalInit {
        args: Vec<String>,
        errno: i32,
        message: String,
    },
    #[error("failed to clean up EAL: {holders} handles (ports, pools) still hold it")]
    EalBusy { holders: usize },
    #[error("failed to clean up EAL: {message} (errno {errno})")]
    EalCleanup { errno: i32, message: String },
    #[error("failed to open port {port}: no such ethdev")]
    PortNotFound { port: u16 },
    #[error("failed to {op} on port {port}: {message} (errno {errno})")]
    Ethdev {
        op: &'static str,
        port: u16,
        errno: i32,
        message: String,
    },
    #[error("failed to {op} on port {port}: {reason}")]
    PortState {
        op: &'static str,
        port: u16,
        reason: &'static str,
    },
    #[error("failed to create mempool {name:?} with {size} mbufs: {message} (errno {errno})")]
    MempoolCreate {
        name: String,
        size: u32,
        errno: i32,
        message: String,
    },
    #[error("failed to create mempool: name {name:?} is not a valid C string")]
    MempoolName { name: String },
    #[error("failed to allocate an mbuf from mempool {pool:?}: pool empty")]
    MbufAlloc { pool: String },
    #[error("failed to append {len} bytes to an mbuf: only {tailroom} bytes of tailroom")]
    MbufAppend { len: usize, tailroom: usize },
    #[error("failed to lower flow rule: {reason}")]
    FlowLowering { reason: String },
    /// The driver does not implement the operation (ENOSYS or ENOTSUP): the null PMD's
    /// answer to every rte_flow call. Callers keep such a rule in software.
    #[error(
        "failed to {op} on port {port}: not supported by the driver: {message} (errno {errno})"
    )]
    Unsupported {
        op: &'static str,
        port: u16,
        errno: i32,
        message: String,
    },
    #[error("failed to {op} on port {port}: {message} [{kind}] (errno {errno})")]
    Flow {
        op: &'static str,
        port: u16,
        errno: i32,
        kind: FlowErrorKind,
        message: String,
    },
}

impl RteError {
    /// The positive errno behind this error, where DPDK gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RteError::EalInit { errno, .. }
            | RteError::EalCleanup { errno, .. }
            | RteError::Ethdev { errno, .. }
            | RteError::MempoolCreate { errno, .. }
            | RteError::Unsupported { errno, .. }
            | RteError::Flow { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True when the device cannot do this at all (as opposed to refusing these arguments).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, RteError::Unsupported { .. })
    }

    /// Maps an ethdev return code (negative errno) to an error.
    pub(crate) fn ethdev(op: &'static str, port: u16, ret: i32) -> RteError {
        let errno = ret.abs();
        let message = strerror(errno);
        if errno == ENOSYS || errno == ENOTSUP {
            RteError::Unsupported {
                op,
                port,
                errno,
                message,
            }
        } else {
            RteError::Ethdev {
                op,
                port,
                errno,
                message,
            }
        }
    }
}

/// DPDK's message for an errno (covers DPDK-specific codes too).
pub(crate) fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe {
        let p = crate::ffi::rte_strerror(errno);
        if p.is_null() {
            return format!("errno {errno}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a per-lcore (thread-local) int.
    unsafe { crate::ffi::wyv_rte_errno() }
}

//! rte_flow operations on a port: validate, create, destroy, flush, query, isolate.

use std::ffi::CStr;
use std::ptr::NonNull;

use super::lower::LoweredRule;
use crate::eal::Eal;
use crate::error::{FlowErrorKind, RteError, ENOSYS};
use crate::ffi;

/// A handle for rte_flow calls on one port. rte_flow serialises calls per port inside
/// ethdev, so this is `Send + Sync + Clone` and independent of the [`crate::Port`] that
/// drives the queues (an offload layer can hold one while the fast path owns the port).
#[derive(Clone)]
pub struct FlowPort {
    port: u16,
    _eal: Eal,
}

/// A created rule. Not destroyed on drop: hardware rules outlive handles (the caller keeps
/// desired versus installed state); destroy it with [`FlowPort::destroy`] or
/// [`FlowPort::flush`]. Only valid on the port that created it, until the port is closed.
#[must_use = "a flow that is not kept can only be removed by flush"]
#[derive(Debug)]
pub struct Flow {
    port: u16,
    raw: NonNull<ffi::rte_flow>,
}

// SAFETY: a flow handle is an opaque token passed back to ethdev, which serialises use.
unsafe impl Send for Flow {}
unsafe impl Sync for Flow {}

impl Flow {
    /// The port the flow lives on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// COUNT action results; `None` where the driver did not fill a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub hits: Option<u64>,
    pub bytes: Option<u64>,
}

impl FlowPort {
    /// A flow handle for `port` (which must exist).
    pub fn new(eal: &Eal, port: u16) -> Result<FlowPort, RteError> {
        // SAFETY: plain query.
        if unsafe { ffi::rte_eth_dev_is_valid_port(port) } != 1 {
            return Err(RteError::PortNotFound { port });
        }
        Ok(FlowPort {
            port,
            _eal: eal.clone(),
        })
    }

    /// The port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Asks the driver whether it would accept `rule` (nothing is installed).
    pub fn validate(&self, rule: &LoweredRule) -> Result<(), RteError> {
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: the arrays and everything they point at are owned by `rule`, borrowed
        // for the duration of the call; err is an out-parameter.
        let ret = unsafe {
            ffi::rte_flow_validate(
                self.port,
                rule.attr(),
                rule.items().as_ptr(),
                rule.actions().as_ptr(),
                &mut err,
            )
        };
        if ret != 0 {
            return Err(flow_error("validate flow rule", self.port, ret, &err));
        }
        Ok(())
    }

    /// Installs `rule`. The lowered rule may be dropped afterwards.
    pub fn create(&self, rule: &LoweredRule) -> Result<Flow, RteError> {
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: as in validate.
        let raw = unsafe {
            ffi::rte_flow_create(
                self.port,
                rule.attr(),
                rule.items().as_ptr(),
                rule.actions().as_ptr(),
                &mut err,
            )
        };
        match NonNull::new(raw) {
            Some(raw) => Ok(Flow {
                port: self.port,
                raw,
            }),
            None => {
                let errno = crate::error::rte_errno();
                Err(flow_error(
                    "create flow rule",
                    self.port,
                    -errno.max(1),
                    &err,
                ))
            }
        }
    }

    /// Removes `flow`.
    pub fn destroy(&self, flow: Flow) -> Result<(), RteError> {
        if flow.port != self.port {
            return Err(RteError::PortState {
                op: "destroy flow rule",
                port: self.port,
                reason: "flow belongs to another port",
            });
        }
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: flow was created on this port and is consumed here (no double destroy).
        let ret = unsafe { ffi::rte_flow_destroy(self.port, flow.raw.as_ptr(), &mut err) };
        if ret != 0 {
            return Err(flow_error("destroy flow rule", self.port, ret, &err));
        }
        Ok(())
    }

    /// Removes every rule on the port (outstanding [`Flow`] handles become stale: drop
    /// them without destroying).
    pub fn flush(&self) -> Result<(), RteError> {
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: valid port; err is an out-parameter.
        let ret = unsafe { ffi::rte_flow_flush(self.port, &mut err) };
        if ret != 0 {
            return Err(flow_error("flush flow rules", self.port, ret, &err));
        }
        Ok(())
    }

    /// Reads the COUNT action's counters of `flow`, optionally resetting them.
    pub fn query_count(&self, flow: &Flow, reset: bool) -> Result<FlowCounters, RteError> {
        let count_conf = ffi::rte_flow_action_count { id: 0 };
        let action = ffi::rte_flow_action {
            type_: ffi::rte_flow_action_type::RTE_FLOW_ACTION_TYPE_COUNT,
            conf: &count_conf as *const _ as *const std::ffi::c_void,
        };
        let mut data = ffi::rte_flow_query_count::default();
        data.set_reset(reset as u32);
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: flow belongs to this port (checked below), action and data live on our
        // stack for the call.
        if flow.port != self.port {
            return Err(RteError::PortState {
                op: "query flow counters",
                port: self.port,
                reason: "flow belongs to another port",
            });
        }
        let ret = unsafe {
            ffi::rte_flow_query(
                self.port,
                flow.raw.as_ptr(),
                &action,
                &mut data as *mut _ as *mut std::ffi::c_void,
                &mut err,
            )
        };
        if ret != 0 {
            return Err(flow_error("query flow counters", self.port, ret, &err));
        }
        Ok(FlowCounters {
            hits: (data.hits_set() != 0).then_some(data.hits),
            bytes: (data.bytes_set() != 0).then_some(data.bytes),
        })
    }

    /// Isolated mode: only traffic matching rules reaches the port's queues. Most drivers
    /// need this before the port is configured.
    pub fn isolate(&self, on: bool) -> Result<(), RteError> {
        let mut err = ffi::rte_flow_error::default();
        // SAFETY: valid port; err is an out-parameter.
        let ret = unsafe { ffi::rte_flow_isolate(self.port, on as i32, &mut err) };
        if ret != 0 {
            return Err(flow_error("set flow isolated mode", self.port, ret, &err));
        }
        Ok(())
    }
}

impl std::fmt::Debug for FlowPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowPort")
            .field("port", &self.port)
            .finish()
    }
}

/// Builds the error from a negative return code and the driver's `rte_flow_error`.
fn flow_error(op: &'static str, port: u16, ret: i32, err: &ffi::rte_flow_error) -> RteError {
    let errno = ret.abs();
    let message = if err.message.is_null() {
        crate::error::strerror(errno)
    } else {
        // SAFETY: drivers set message to a static NUL-terminated string.
        unsafe { CStr::from_ptr(err.message) }
            .to_string_lossy()
            .into_owned()
    };
    // ENOSYS: the driver has no rte_flow at all (null PMD). ENOTSUP stays a Flow error:
    // drivers use it to refuse one item or action of an otherwise supported API.
    if errno == ENOSYS {
        return RteError::Unsupported {
            op,
            port,
            errno,
            message,
        };
    }
    RteError::Flow {
        op,
        port,
        errno,
        kind: FlowErrorKind(err.type_.0),
        message,
    }
}

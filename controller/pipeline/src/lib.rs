//! The target-neutral pipeline: stage declarations, the IR, the compiler from the logical
//! model to IR (full and incremental), a checker, and an interpreter.

pub mod check;
pub mod compile;
pub mod interp;
pub mod ir;
pub mod overlay;
pub mod stage;

pub use check::{check_flow, CheckError};
pub use compile::{Bindings, CompileConfig, CompileError, Compiler, Delta, KeyKind, L3Mode};
pub use interp::{Interpreter, Packet, Trace, Verdict};
pub use ir::{
    Action, FieldKind, FloodGroup, Flow, Match, NetKey, Owner, PortKey, PuntReason, RouterKey,
};
pub use overlay::{vni_of, Overlay};
pub use stage::{Miss, Stage, StageDecl, STAGES};

//! Instructions, as a struct rather than a list: OpenFlow 1.3 allows each kind at most once
//! and OVS reports them in a fixed order, so a struct is the canonical form.

use super::{Action, Error, Put, Reader, Result};
use std::fmt;

const OFPIT_GOTO_TABLE: u16 = 1;
const OFPIT_WRITE_METADATA: u16 = 2;
const OFPIT_WRITE_ACTIONS: u16 = 3;
const OFPIT_APPLY_ACTIONS: u16 = 4;
const OFPIT_CLEAR_ACTIONS: u16 = 5;
/// `struct ofp_instruction_actions` before its actions (type, len, pad[4]).
const INSTRUCTION_ACTIONS_LEN: usize = 8;

/// The instructions of one flow. Empty `apply_actions` means "no apply instruction".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instructions {
    pub apply_actions: Vec<Action>,
    pub clear_actions: bool,
    pub write_actions: Option<Vec<Action>>,
    /// (metadata, mask)
    pub write_metadata: Option<(u64, u64)>,
    pub goto_table: Option<u8>,
    /// Instructions not modelled (e.g. meter), as (type, body after type/len).
    pub unknown: Vec<(u16, Vec<u8>)>,
}

impl Instructions {
    /// Just apply these actions (no goto: the packet's pipeline ends here).
    pub fn apply(actions: Vec<Action>) -> Self {
        Instructions {
            apply_actions: actions,
            ..Default::default()
        }
    }

    /// Just go to `table`.
    pub fn goto(table: u8) -> Self {
        Instructions {
            goto_table: Some(table),
            ..Default::default()
        }
    }

    pub fn with_goto(mut self, table: u8) -> Self {
        self.goto_table = Some(table);
        self
    }

    pub fn with_write_metadata(mut self, value: u64, mask: u64) -> Self {
        self.write_metadata = Some((value, mask));
        self
    }

    pub fn with_clear_actions(mut self) -> Self {
        self.clear_actions = true;
        self
    }

    /// The same instructions with each action in canonical (decoded) form.
    pub fn canonical(self) -> Self {
        Instructions {
            apply_actions: self
                .apply_actions
                .into_iter()
                .map(Action::canonical)
                .collect(),
            write_actions: self
                .write_actions
                .map(|a| a.into_iter().map(Action::canonical).collect()),
            ..self
        }
    }

    /// Parses instructions filling the whole reader.
    pub fn parse(mut r: Reader<'_>) -> Result<Instructions> {
        let mut ins = Instructions::default();
        while !r.is_empty() {
            let mut peek = r;
            let itype = peek.u16("instruction type")?;
            let len = usize::from(peek.u16("instruction length")?);
            if len < 8 || len % 8 != 0 {
                return Err(Error::BadLength {
                    what: "ofp_instruction.len",
                    len,
                });
            }
            let mut i = r.sub(len, "instruction")?;
            i.skip(4, "instruction header")?;
            match itype {
                OFPIT_GOTO_TABLE => ins.goto_table = Some(i.u8("goto_table.table_id")?),
                OFPIT_WRITE_METADATA => {
                    i.skip(4, "write_metadata padding")?;
                    let v = i.u64("write_metadata.metadata")?;
                    let m = i.u64("write_metadata.mask")?;
                    ins.write_metadata = Some((v, m));
                }
                OFPIT_APPLY_ACTIONS | OFPIT_WRITE_ACTIONS => {
                    i.skip(INSTRUCTION_ACTIONS_LEN - 4, "instruction_actions padding")?;
                    let actions = Action::parse_list(i)?;
                    if itype == OFPIT_APPLY_ACTIONS {
                        ins.apply_actions = actions;
                    } else {
                        ins.write_actions = Some(actions);
                    }
                }
                OFPIT_CLEAR_ACTIONS => ins.clear_actions = true,
                other => ins.unknown.push((other, i.rest().to_vec())),
            }
        }
        Ok(ins)
    }

    /// Emits in the order OVS reports: apply, clear, write, write_metadata, goto.
    pub fn emit(&self, out: &mut Vec<u8>) {
        if !self.apply_actions.is_empty() {
            emit_actions(out, OFPIT_APPLY_ACTIONS, &self.apply_actions);
        }
        if self.clear_actions {
            out.put_u16(OFPIT_CLEAR_ACTIONS);
            out.put_u16(8);
            out.put_zeros(4);
        }
        if let Some(w) = &self.write_actions {
            emit_actions(out, OFPIT_WRITE_ACTIONS, w);
        }
        if let Some((v, m)) = self.write_metadata {
            out.put_u16(OFPIT_WRITE_METADATA);
            out.put_u16(24);
            out.put_zeros(4);
            out.put_u64(v);
            out.put_u64(m);
        }
        if let Some(t) = self.goto_table {
            out.put_u16(OFPIT_GOTO_TABLE);
            out.put_u16(8);
            out.put_u8(t);
            out.put_zeros(3);
        }
        for (t, body) in &self.unknown {
            let start = out.len();
            out.put_u16(*t);
            out.put_u16(0);
            out.extend_from_slice(body);
            out.pad8_from(start);
            let len = super::len16(out.len() - start);
            out.set_u16(start + 2, len);
        }
    }
}

fn emit_actions(out: &mut Vec<u8>, itype: u16, actions: &[Action]) {
    let start = out.len();
    out.put_u16(itype);
    out.put_u16(0);
    out.put_zeros(4);
    Action::emit_list(actions, out);
    let len = super::len16(out.len() - start);
    out.set_u16(start + 2, len);
}

impl fmt::Display for Instructions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.apply_actions.iter().map(|a| a.to_string()).collect();
        if self.clear_actions {
            parts.push("clear_actions".into());
        }
        if let Some(w) = &self.write_actions {
            let inner: Vec<String> = w.iter().map(|a| a.to_string()).collect();
            parts.push(format!("write_actions({})", inner.join(",")));
        }
        if let Some((v, m)) = self.write_metadata {
            parts.push(format!("write_metadata:{v:#x}/{m:#x}"));
        }
        if let Some(t) = self.goto_table {
            parts.push(format!("goto_table:{t}"));
        }
        for (t, _) in &self.unknown {
            parts.push(format!("unknown_instruction({t:#x})"));
        }
        if parts.is_empty() {
            f.write_str("drop")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

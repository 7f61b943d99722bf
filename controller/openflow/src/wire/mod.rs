//! OpenFlow 1.3 wire format (plus the Nicira and ONF extensions wyvern uses).
//!
//! Shaped like smoltcp: [`Frame`] is a zero-copy view over one message that checks the
//! header and length once; [`Message`] is the parsed representation with `parse`/`emit`.
//! Bodies are read with [`Reader`], a cursor whose every read is bounds-checked and returns
//! a typed [`Error`] instead of panicking. Nothing in this module panics on any input.

mod action;
mod field;
mod frame;
mod instruction;
mod message;

pub use action::{Action, ControllerAction, FieldRange};
pub use field::{Field, FieldValue, MacAddr, Match, RawField};
pub use frame::{Frame, HEADER_LEN, OFP_VERSION_1_3};
pub use instruction::Instructions;
pub use message::*;

/// A failure to decode bytes as OpenFlow. Each variant names what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the structure needs.
    #[error("failed to read {what}: needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A length field that is too small, too large or not a multiple it must be.
    #[error("failed to read {what}: bad length {len}")]
    BadLength { what: &'static str, len: usize },
    /// A value that the protocol forbids (not merely one we do not know).
    #[error("failed to read {what}: invalid value {value:#x}")]
    BadValue { what: &'static str, value: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Bounds-checked big-endian cursor over a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                what,
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<()> {
        self.bytes(n, what).map(|_| ())
    }
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    /// Splits off a sub-reader of exactly `n` bytes.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>> {
        self.bytes(n, what).map(Reader::new)
    }
}

/// Big-endian writer helpers over `Vec<u8>`; emitting never fails.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Pads with zeros up to a multiple of 8 counted from `start`.
    fn pad8_from(&mut self, start: usize);
    /// Writes a big-endian u16 at `at` (used to back-patch lengths).
    fn set_u16(&mut self, at: usize, v: u16);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v)
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes())
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0)
    }
    fn pad8_from(&mut self, start: usize) {
        let len = self.len() - start;
        self.put_zeros((8 - len % 8) % 8)
    }
    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Clamps a length to u16 for a length field. Emitters keep bodies below 64 KiB; a caller
/// that builds a larger one gets a message the switch rejects, never a panic.
pub(crate) fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Rounds up to a multiple of 8.
pub(crate) const fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

#[cfg(test)]
mod tests;

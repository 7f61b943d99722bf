//! The OpenFlow header as a zero-copy view.

use super::{Error, Result};

/// `OFP_VERSION` for OpenFlow 1.3: the only version wyvern speaks.
pub const OFP_VERSION_1_3: u8 = 0x04;
/// Size of `struct ofp_header`.
pub const HEADER_LEN: usize = 8;

/// Byte offsets of `struct ofp_header`.
mod field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const XID: Range<usize> = 4..8;
}

/// A view over exactly one OpenFlow message: header checked once, then infallible getters.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads the length of the message at the start of `buf` from its header, if the header
    /// is complete. Used for stream framing; a length below the header size is an error.
    pub fn peek_len(buf: &[u8]) -> Result<Option<usize>> {
        let Some(len) = buf.get(field::LENGTH) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < HEADER_LEN {
            return Err(Error::BadLength {
                what: "ofp_header.length",
                len,
            });
        }
        Ok(Some(len))
    }

    /// Checks that `buf` holds one whole message (header length == buffer length).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        match Self::peek_len(buf)? {
            None => Err(Error::Truncated {
                what: "ofp_header",
                need: HEADER_LEN,
                have: buf.len(),
            }),
            Some(len) if len != buf.len() => Err(Error::BadLength {
                what: "ofp_header.length vs frame",
                len,
            }),
            Some(_) => Ok(Frame { buf }),
        }
    }

    pub fn version(&self) -> u8 {
        self.buf[field::VERSION]
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[field::TYPE]
    }
    pub fn xid(&self) -> u32 {
        let b = &self.buf[field::XID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// The bytes after the header.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
    /// The whole message, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// Writes a header with a zero length; `finish_header` patches it.
pub(crate) fn start_header(out: &mut Vec<u8>, msg_type: u8, xid: u32) -> usize {
    let start = out.len();
    out.push(OFP_VERSION_1_3);
    out.push(msg_type);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&xid.to_be_bytes());
    start
}

pub(crate) fn finish_header(out: &mut Vec<u8>, start: usize) {
    use super::Put;
    let len = super::len16(out.len() - start);
    out.set_u16(start + field::LENGTH.start, len);
}

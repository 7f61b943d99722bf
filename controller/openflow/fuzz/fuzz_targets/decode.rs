//! Arbitrary bytes into the message decoder: it must return Ok or a typed error, never
//! panic; whatever decodes must re-encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wyvern_openflow::wire::{Frame, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::new_checked(data) {
        if let Ok(msg) = Message::parse(&frame) {
            let bytes = msg.to_bytes(frame.xid());
            if let Ok(f2) = Frame::new_checked(&bytes) {
                let _ = Message::parse(&f2);
            }
        }
    }
});

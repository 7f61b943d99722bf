//! JSON-RPC framing for OVSDB: the stream carries concatenated JSON objects with no
//! delimiter (RFC 7047 section 4), so frames are found by scanning brace depth outside
//! strings, incrementally: a large monitor snapshot arriving in many reads is scanned once.

use serde::Deserialize;
use serde_json::Value;

/// Default cap on one message: a 5,000-port snapshot is a few MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Why bytes from the server could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Something other than a JSON object at the top level.
    #[error("failed to frame message: unexpected byte 0x{byte:02x} outside a JSON object")]
    UnexpectedByte { byte: u8 },
    /// The object being received grew past the cap.
    #[error("failed to frame message: larger than {max} bytes")]
    TooLarge { max: usize },
    /// Balanced braces, but not valid JSON (or not a JSON-RPC message shape).
    #[error("failed to parse message: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    /// Valid JSON object that is neither a request, a notification nor a response.
    #[error("failed to classify message: {reason}")]
    NotJsonRpc { reason: &'static str },
}

/// One JSON-RPC 1.0 message as OVSDB uses it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The peer asks something and waits (ovsdb-server sends `echo`).
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A request with `id: null` (`update`, `update2`, `locked`, ...).
    Notification { method: String, params: Value },
    /// The answer to one of our requests.
    Response {
        id: Value,
        result: Value,
        error: Value,
    },
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

impl Message {
    fn from_raw(raw: RawMessage) -> Result<Self, FrameError> {
        match (raw.method, raw.id) {
            (Some(method), Some(id)) => Ok(Message::Request {
                id,
                method,
                params: raw.params.unwrap_or(Value::Array(Vec::new())),
            }),
            (Some(method), None) => Ok(Message::Notification {
                method,
                params: raw.params.unwrap_or(Value::Array(Vec::new())),
            }),
            (None, Some(id)) => {
                if raw.result.is_none() && raw.error.is_none() {
                    return Err(FrameError::NotJsonRpc {
                        reason: "response without result or error",
                    });
                }
                Ok(Message::Response {
                    id,
                    result: raw.result.unwrap_or(Value::Null),
                    error: raw.error.unwrap_or(Value::Null),
                })
            }
            (None, None) => Err(FrameError::NotJsonRpc {
                reason: "neither method nor id",
            }),
        }
    }
}

/// Incremental splitter of a byte stream into [`Message`]s.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned (the current frame starts at 0).
    scanned: usize,
    depth: usize,
    in_string: bool,
    escape: bool,
    max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder that refuses messages larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            depth: 0,
            in_string: false,
            escape: false,
            max,
        }
    }

    /// Appends bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable (the framing is lost): the caller drops the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.depth == 0 && !self.in_string {
            // Between frames: skip whitespace; anything else must open an object.
            let ws = self
                .buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.buf.drain(..ws);
            self.scanned = 0;
            match self.buf.first() {
                None => return Ok(None),
                Some(b'{') => {}
                Some(&byte) => return Err(FrameError::UnexpectedByte { byte }),
            }
        }
        let mut end = None;
        for (i, &b) in self.buf.iter().enumerate().skip(self.scanned) {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return Err(FrameError::TooLarge { max: self.max });
            }
            return Ok(None);
        };
        let parsed = serde_json::from_slice::<RawMessage>(&self.buf[..end]);
        self.buf.drain(..end);
        self.scanned = 0;
        let raw = parsed.map_err(|source| FrameError::Json { source })?;
        Message::from_raw(raw).map(Some)
    }
}

/// Serialises a request (`id` = `Some`) or notification.
pub fn encode_request(id: Option<u64>, method: &str, params: &Value) -> Vec<u8> {
    let v = serde_json::json!({ "id": id, "method": method, "params": params });
    v.to_string().into_bytes()
}

/// Serialises a successful response to a peer's request.
pub fn encode_response(id: &Value, result: &Value) -> Vec<u8> {
    let v = serde_json::json!({ "id": id, "result": result, "error": null });
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(dec: &mut FrameDecoder) -> Result<Vec<Message>, FrameError> {
        let mut out = Vec::new();
        while let Some(m) = dec.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn splits_concatenated_messages_fed_byte_by_byte() {
        let stream = br#"{"id":1,"result":["Open_vSwitch"],"error":null}
 {"id":"echo","method":"echo","params":["}{\"",[]]}{"id":null,"method":"update","params":[null,{}]}"#;
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for b in stream.iter() {
            dec.extend(std::slice::from_ref(b));
            got.extend(all(&mut dec).expect("valid stream"));
        }
        assert_eq!(
            got,
            vec![
                Message::Response {
                    id: json!(1),
                    result: json!(["Open_vSwitch"]),
                    error: Value::Null
                },
                Message::Request {
                    id: json!("echo"),
                    method: "echo".into(),
                    params: json!(["}{\"", []])
                },
                Message::Notification {
                    method: "update".into(),
                    params: json!([null, {}])
                },
            ]
        );
    }

    #[test]
    fn garbage_outside_an_object_is_an_error() {
        let mut dec = FrameDecoder::default();
        dec.extend(b"  hello");
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::UnexpectedByte { byte: b'h' })
        ));
    }

    #[test]
    fn balanced_but_invalid_json_is_an_error() {
        let mut dec = FrameDecoder::default();
        dec.extend(b"{\"id\":1,,}");
        assert!(matches!(dec.next_message(), Err(FrameError::Json { .. })));
        let mut dec = FrameDecoder::default();
        dec.extend(b"{\"id\": [1}]");
        assert!(matches!(dec.next_message(), Err(FrameError::Json { .. })));
    }

    #[test]
    fn objects_that_are_not_json_rpc_are_errors() {
        let mut dec = FrameDecoder::default();
        dec.extend(b"{\"foo\":1}{\"id\":3}{\"method\":7}");
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::NotJsonRpc { .. })
        ));
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::NotJsonRpc { .. })
        ));
        assert!(matches!(dec.next_message(), Err(FrameError::Json { .. })));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut dec = FrameDecoder::new(16);
        dec.extend(b"{\"id\":1,\"result\":\"");
        dec.extend(&[b'x'; 32]);
        assert!(matches!(
            dec.next_message(),
            Err(FrameError::TooLarge { max: 16 })
        ));
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut dec = FrameDecoder::default();
        let mut s = String::from("{\"id\":1,\"result\":");
        s.push_str(&"[".repeat(100_000));
        s.push_str(&"]".repeat(100_000));
        s.push('}');
        dec.extend(s.as_bytes());
        assert!(matches!(dec.next_message(), Err(FrameError::Json { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and every single-byte corruption of a
        // valid stream.
        let valid = br#"{"id":1,"result":[{"rows":[{"name":"p\"1","ofport":3}]}],"error":null}"#;
        for cut in 0..valid.len() {
            let mut dec = FrameDecoder::default();
            dec.extend(&valid[..cut]);
            let _ = all(&mut dec);
            for byte in [b'{', b'}', b'"', b'\\', b'[', 0xff, b'x'] {
                let mut bytes = valid.to_vec();
                bytes[cut] = byte;
                let mut dec = FrameDecoder::default();
                dec.extend(&bytes);
                let _ = all(&mut dec);
            }
        }
    }
}

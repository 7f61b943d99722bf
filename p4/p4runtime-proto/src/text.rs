//! A reader for the protobuf text format, the form `p4c --p4runtime-files x.txtpb` writes a
//! P4Info in. It is driven by the compiled descriptors ([`crate::FILE_DESCRIPTOR_SET`]):
//! text is encoded to binary protobuf field by field, then decoded by prost, so every field
//! of every message is covered without a hand-written mapping that could drift. Supported:
//! nested messages (`{}` or `<>`), repeated fields (repeated or `[a, b]`), maps written as
//! entries, enums by name or number, integers (decimal, hex, octal, negative), floats,
//! strings with escapes (adjacent strings concatenate), `#` comments. Not supported (an
//! error, never silently skipped): `Any` expansion and extensions (`[...]`), groups.

use std::collections::HashMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use crate::p4::config::v1::P4Info;

/// Why a text-format message could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TextFormatError {
    #[error("failed to decode the compiled descriptor set: {0}")]
    Descriptors(#[source] prost::DecodeError),
    #[error("failed to find message type {0} in the compiled descriptors")]
    UnknownMessage(String),
    #[error("failed to read text format at {line}:{column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "failed to read text format at {line}:{column}: {message_type} has no field {field:?}"
    )]
    UnknownField {
        line: usize,
        column: usize,
        message_type: String,
        field: String,
    },
    #[error("failed to read text format at {line}:{column}: bad value for {field}: {reason}")]
    InvalidValue {
        line: usize,
        column: usize,
        field: String,
        reason: String,
    },
    #[error("failed to decode the encoded {message_type}: {source}")]
    Decode {
        message_type: String,
        #[source]
        source: prost::DecodeError,
    },
}

/// Reads a P4Info in text format (a `*.p4info.txtpb` / `*.p4info.txt` file from p4c).
pub fn parse_p4info(text: &str) -> Result<P4Info, TextFormatError> {
    parse_text::<P4Info>(".p4.config.v1.P4Info", text)
}

/// Reads any message of this crate from text format; `type_name` is its fully qualified
/// proto name with a leading dot (e.g. `.p4.v1.WriteRequest`).
pub fn parse_text<M: Message + Default>(type_name: &str, text: &str) -> Result<M, TextFormatError> {
    let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
        .map_err(TextFormatError::Descriptors)?;
    let index = Index::new(&set);
    if !index.messages.contains_key(type_name) {
        return Err(TextFormatError::UnknownMessage(type_name.to_string()));
    }
    let tokens = tokenize(text)?;
    let mut p = Parser {
        index: &index,
        tokens,
        pos: 0,
    };
    let bytes = p.message(type_name, None)?;
    M::decode(bytes.as_slice()).map_err(|source| TextFormatError::Decode {
        message_type: type_name.to_string(),
        source,
    })
}

/// Message and enum descriptors by fully qualified name (`.pkg.Outer.Inner`).
struct Index<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    enums: HashMap<String, &'a EnumDescriptorProto>,
}

impl<'a> Index<'a> {
    fn new(set: &'a FileDescriptorSet) -> Self {
        let mut index = Index {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        for file in &set.file {
            let prefix = match file.package() {
                "" => String::new(),
                p => format!(".{p}"),
            };
            for e in &file.enum_type {
                index.enums.insert(format!("{prefix}.{}", e.name()), e);
            }
            for m in &file.message_type {
                index.add_message(&prefix, m);
            }
        }
        index
    }

    fn add_message(&mut self, prefix: &str, m: &'a DescriptorProto) {
        let name = format!("{prefix}.{}", m.name());
        for e in &m.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        for n in &m.nested_type {
            self.add_message(&name, n);
        }
        self.messages.insert(name, m);
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A number as written (sign handled by the parser).
    Number(String),
    Str(Vec<u8>),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, TextFormatError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        let column = i - line_start + 1;
        let err = |message: String| TextFormatError::Syntax {
            line,
            column,
            message,
        };
        match c {
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' | b'}' | b'<' | b'>' | b':' | b'[' | b']' | b',' | b';' | b'-' | b'/' => {
                out.push(Token {
                    tok: Tok::Punct(c as char),
                    line,
                    column,
                });
                i += 1;
            }
            b'"' | b'\'' => {
                let (s, next) = read_string(bytes, i).map_err(err)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    line,
                    column,
                });
                i = next;
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'.'
                        || ((bytes[i] == b'-' || bytes[i] == b'+')
                            && matches!(bytes[i - 1], b'e' | b'E')
                            && !bytes[start..i].starts_with(b"0x")))
                {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Number(text[start..i].to_string()),
                    line,
                    column,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(text[start..i].to_string()),
                    line,
                    column,
                });
            }
            other => return Err(err(format!("unexpected character {:?}", other as char))),
        }
    }
    Ok(out)
}

/// Reads a quoted string starting at `start` (the quote); returns its bytes and the index
/// after the closing quote.
fn read_string(b: &[u8], start: usize) -> Result<(Vec<u8>, usize), String> {
    let quote = b[start];
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if c == quote {
            return Ok((out, i + 1));
        }
        if c == b'\n' {
            return Err("newline in string".into());
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = b.get(i + 1) else {
            break;
        };
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\\' | b'\'' | b'"' | b'?' => out.push(e),
            b'x' | b'X' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < b.len() && b[i].is_ascii_hexdigit() {
                    v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    return Err("\\x without hex digits".into());
                }
                out.push(v as u8);
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    n += 1;
                }
                if v > 0xff {
                    return Err(format!("octal escape out of range: {v:o}"));
                }
                out.push(v as u8);
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Err("unterminated string".into())
}

struct Parser<'a> {
    index: &'a Index<'a>,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn here(&self) -> (usize, usize) {
        match self.tokens.get(self.pos).or(self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        }
    }

    fn syntax(&self, message: impl Into<String>) -> TextFormatError {
        let (line, column) = self.here();
        TextFormatError::Syntax {
            line,
            column,
            message: message.into(),
        }
    }

    fn invalid(&self, field: &FieldDescriptorProto, reason: impl Into<String>) -> TextFormatError {
        let (line, column) = self.here();
        TextFormatError::InvalidValue {
            line,
            column,
            field: field.name().to_string(),
            reason: reason.into(),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.tok == Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Encodes the fields of message `type_name` up to `end` (or the end of input).
    fn message(&mut self, type_name: &str, end: Option<char>) -> Result<Vec<u8>, TextFormatError> {
        let desc = *self
            .index
            .messages
            .get(type_name)
            .ok_or_else(|| TextFormatError::UnknownMessage(type_name.to_string()))?;
        let mut out = Vec::new();
        loop {
            let Some(tok) = self.peek().cloned() else {
                return match end {
                    None => Ok(out),
                    Some(c) => Err(self.syntax(format!("missing {c:?} before end of input"))),
                };
            };
            match &tok.tok {
                Tok::Punct(c) if Some(*c) == end => {
                    self.pos += 1;
                    return Ok(out);
                }
                Tok::Punct('[') => {
                    return Err(self.syntax("extensions and Any expansion are not supported"))
                }
                Tok::Ident(name) => {
                    self.pos += 1;
                    let field = desc
                        .field
                        .iter()
                        .find(|f| f.name() == name)
                        .ok_or_else(|| TextFormatError::UnknownField {
                            line: tok.line,
                            column: tok.column,
                            message_type: type_name.to_string(),
                            field: name.clone(),
                        })?;
                    self.field(field, &mut out)?;
                    let _ = self.eat(',') || self.eat(';');
                }
                other => return Err(self.syntax(format!("expected a field name, found {other:?}"))),
            }
        }
    }

    /// Encodes one `name: value`, `name { ... }` or `name: [ ... ]` (the name is consumed).
    fn field(
        &mut self,
        f: &FieldDescriptorProto,
        out: &mut Vec<u8>,
    ) -> Result<(), TextFormatError> {
        let is_message = matches!(f.r#type(), Type::Message | Type::Group);
        let colon = self.eat(':');
        if !is_message && !colon {
            return Err(self.syntax(format!("expected ':' after {}", f.name())));
        }
        if self.eat('[') {
            if f.label() != Label::Repeated {
                return Err(self.invalid(f, "a list for a field that is not repeated"));
            }
            if self.eat(']') {
                return Ok(());
            }
            loop {
                self.value(f, out)?;
                if self.eat(']') {
                    return Ok(());
                }
                if !self.eat(',') {
                    return Err(self.syntax("expected ',' or ']' in a list"));
                }
            }
        }
        self.value(f, out)
    }

    fn value(
        &mut self,
        f: &FieldDescriptorProto,
        out: &mut Vec<u8>,
    ) -> Result<(), TextFormatError> {
        let number = u64::from(
            u32::try_from(f.number()).map_err(|_| self.invalid(f, "negative field number"))?,
        );
        match f.r#type() {
            Type::Group => Err(self.invalid(f, "groups are not supported")),
            Type::Message => {
                let end = if self.eat('{') {
                    '}'
                } else if self.eat('<') {
                    '>'
                } else {
                    return Err(self.syntax(format!("expected '{{' or '<' after {}", f.name())));
                };
                let body = self.message(f.type_name(), Some(end))?;
                put_len_delimited(out, number, &body);
                Ok(())
            }
            Type::String | Type::Bytes => {
                let mut s = Vec::new();
                let mut any = false;
                while let Some(Token {
                    tok: Tok::Str(part),
                    ..
                }) = self.peek().cloned()
                {
                    self.pos += 1;
                    s.extend_from_slice(&part);
                    any = true;
                }
                if !any {
                    return Err(self.invalid(f, "expected a quoted string"));
                }
                if f.r#type() == Type::String && std::str::from_utf8(&s).is_err() {
                    return Err(self.invalid(f, "string is not UTF-8"));
                }
                put_len_delimited(out, number, &s);
                Ok(())
            }
            Type::Bool => {
                let v = match self.next_word()? {
                    w if w == "true" || w == "True" || w == "t" || w == "1" => 1,
                    w if w == "false" || w == "False" || w == "f" || w == "0" => 0,
                    w => return Err(self.invalid(f, format!("{w:?} is not a bool"))),
                };
                put_varint(out, number << 3);
                put_varint(out, v);
                Ok(())
            }
            Type::Enum => {
                let negative = self.eat('-');
                let word = self.next_word()?;
                let v: i64 = if let Some(n) = parse_int(&word) {
                    let n =
                        i64::try_from(n).map_err(|_| self.invalid(f, "enum value out of range"))?;
                    if negative {
                        -n
                    } else {
                        n
                    }
                } else {
                    let e = self.index.enums.get(f.type_name()).ok_or_else(|| {
                        self.invalid(f, format!("unknown enum type {}", f.type_name()))
                    })?;
                    let value = e.value.iter().find(|v| v.name() == word).ok_or_else(|| {
                        self.invalid(f, format!("{word:?} is not a value of {}", f.type_name()))
                    })?;
                    i64::from(value.number())
                };
                put_varint(out, number << 3);
                put_varint(out, v as u64);
                Ok(())
            }
            Type::Double | Type::Float => {
                let negative = self.eat('-');
                let word = self.next_word()?;
                let trimmed = word.trim_end_matches(['f', 'F']);
                let mut v: f64 = match trimmed.to_ascii_lowercase().as_str() {
                    "inf" | "infinity" => f64::INFINITY,
                    "nan" => f64::NAN,
                    _ => trimmed
                        .parse()
                        .map_err(|_| self.invalid(f, format!("{word:?} is not a number")))?,
                };
                if negative {
                    v = -v;
                }
                if f.r#type() == Type::Double {
                    put_varint(out, (number << 3) | 1);
                    out.extend_from_slice(&v.to_le_bytes());
                } else {
                    put_varint(out, (number << 3) | 5);
                    out.extend_from_slice(&(v as f32).to_le_bytes());
                }
                Ok(())
            }
            t => {
                let negative = self.eat('-');
                let word = self.next_word()?;
                let magnitude = parse_int(&word)
                    .ok_or_else(|| self.invalid(f, format!("{word:?} is not an integer")))?;
                let v: i128 = if negative {
                    -(magnitude as i128)
                } else {
                    magnitude as i128
                };
                let (min, max): (i128, i128) = match t {
                    Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
                        (i32::MIN.into(), i32::MAX.into())
                    }
                    Type::Uint32 | Type::Fixed32 => (0, u32::MAX.into()),
                    Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
                        (i64::MIN.into(), i64::MAX.into())
                    }
                    _ => (0, u64::MAX.into()),
                };
                if v < min || v > max {
                    return Err(self.invalid(f, format!("{v} is out of range")));
                }
                match t {
                    Type::Sint32 | Type::Sint64 => {
                        let v = v as i64;
                        put_varint(out, number << 3);
                        put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
                    }
                    Type::Fixed32 | Type::Sfixed32 => {
                        put_varint(out, (number << 3) | 5);
                        out.extend_from_slice(&(v as u32).to_le_bytes());
                    }
                    Type::Fixed64 | Type::Sfixed64 => {
                        put_varint(out, (number << 3) | 1);
                        out.extend_from_slice(&(v as u64).to_le_bytes());
                    }
                    _ => {
                        // int32 negatives are sign-extended to 64 bits, as protobuf does.
                        put_varint(out, number << 3);
                        put_varint(out, v as i64 as u64);
                    }
                }
                Ok(())
            }
        }
    }

    /// The next identifier or number.
    fn next_word(&mut self) -> Result<String, TextFormatError> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Ident(w)) | Some(Tok::Number(w)) => {
                self.pos += 1;
                Ok(w)
            }
            other => Err(self.syntax(format!("expected a value, found {other:?}"))),
        }
    }
}

/// Decimal, `0x` hex or leading-zero octal, unsigned.
fn parse_int(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if w.len() > 1 && w.starts_with('0') {
        u64::from_str_radix(&w[1..], 8).ok()
    } else {
        w.parse().ok()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_delimited(out: &mut Vec<u8>, number: u64, body: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4::config::v1::match_field::{Match, MatchType};
    use crate::p4::v1::{field_match::FieldMatchType, WriteRequest};

    #[test]
    fn reads_a_p4info_with_every_value_form() {
        let text = r#"
            # comment
            pkg_info { arch: "v1model" name: 'a' "b\x41\101\n" }
            tables {
              preamble { id: 0x02000001 name: "MyIngress.t" alias: "t" annotations: ["@x", "@y"] }
              match_fields { id: 1 name: "hdr.a" bitwidth: 9 match_type: TERNARY }
              match_fields < id: 2, name: "hdr.b"; bitwidth: 32 match_type: 3 >
              direct_resource_ids: 318767105
              direct_resource_ids: [1, 2]
              size: 1024
              is_const_table: true
            }
            type_info { structs { key: "s" value { members { name: "m" } } } }
        "#;
        let p = parse_p4info(text).expect("valid text");
        let pkg = p.pkg_info.expect("pkg_info");
        assert_eq!(pkg.arch, "v1model");
        assert_eq!(pkg.name, "abAA\n");
        let t = &p.tables[0];
        let pre = t.preamble.as_ref().expect("preamble");
        assert_eq!(pre.id, 0x0200_0001);
        assert_eq!(pre.annotations, ["@x", "@y"]);
        assert_eq!(
            t.match_fields[0].r#match,
            Some(Match::MatchType(MatchType::Ternary as i32))
        );
        assert_eq!(
            t.match_fields[1].r#match,
            Some(Match::MatchType(MatchType::Lpm as i32))
        );
        assert_eq!(t.match_fields[1].bitwidth, 32);
        assert_eq!(t.direct_resource_ids, [318767105, 1, 2]);
        assert_eq!(t.size, 1024);
        assert!(t.is_const_table);
        let ti = p.type_info.expect("type_info");
        assert_eq!(ti.structs["s"].members[0].name, "m");
    }

    #[test]
    fn reads_other_messages_with_negative_and_bytes_values() {
        let text = r#"
            device_id: 18446744073709551615
            election_id { low: 7 }
            updates { type: INSERT entity { table_entry {
              table_id: 33554433 priority: -5
              match { field_id: 1 ternary { value: "\n\000" mask: "\377\377" } }
            } } }
        "#;
        let w: WriteRequest = parse_text(".p4.v1.WriteRequest", text).expect("valid text");
        assert_eq!(w.device_id, u64::MAX);
        let e = w.updates[0].entity.as_ref().and_then(|e| e.entity.as_ref());
        let Some(crate::p4::v1::entity::Entity::TableEntry(te)) = e else {
            panic!("no table entry: {e:?}");
        };
        assert_eq!(te.priority, -5);
        let Some(FieldMatchType::Ternary(t)) = &te.r#match[0].field_match_type else {
            panic!("not ternary");
        };
        assert_eq!(t.value, [10, 0]);
        assert_eq!(t.mask, [0xff, 0xff]);
    }

    #[test]
    fn errors_name_the_place_and_the_problem() {
        let unknown = parse_p4info("tables {\n  preambel { id: 1 }\n}").unwrap_err();
        assert!(
            matches!(&unknown, TextFormatError::UnknownField { line: 2, field, message_type, .. }
                if field == "preambel" && message_type == ".p4.config.v1.Table"),
            "{unknown}"
        );
        let range = parse_p4info("tables { size: 99999999999999999999 }").unwrap_err();
        assert!(
            matches!(range, TextFormatError::InvalidValue { .. }),
            "{range}"
        );
        let enum_name = parse_p4info("tables { match_fields { match_type: FUZZY } }").unwrap_err();
        assert!(enum_name.to_string().contains("FUZZY"), "{enum_name}");
        let open = parse_p4info("tables { size: 1").unwrap_err();
        assert!(matches!(open, TextFormatError::Syntax { .. }), "{open}");
        let uint = parse_p4info("tables { preamble { id: -1 } }").unwrap_err();
        assert!(
            matches!(uint, TextFormatError::InvalidValue { .. }),
            "{uint}"
        );
        let any = parse_p4info("externs { instances { info { [type.googleapis.com/x] {} } } }")
            .unwrap_err();
        assert!(any.to_string().contains("Any expansion"), "{any}");
    }
}

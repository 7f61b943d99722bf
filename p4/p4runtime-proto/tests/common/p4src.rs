//! A reader for the subset of P4_16 that wyvern.p4 uses for its control-plane objects:
//! headers (with @controller_header), structs, constants, and in each control its actions
//! (parameters, and the stage a `meta.next_stage = STAGE_*` picks), tables (keys, actions,
//! default action, counters, size) and counters. It reads declarations, not semantics: p4c
//! remains the judge of the program; this keeps P4Info and the IR honest about its names.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Punct(char),
}

#[derive(Debug, Default)]
pub struct Program {
    /// header type name -> fields (name, width).
    pub headers: BTreeMap<String, Vec<(String, u32)>>,
    /// header type name -> @controller_header name.
    pub controller_headers: BTreeMap<String, String>,
    /// struct type name -> members (name, type: "bit<N>" or a type name).
    pub structs: BTreeMap<String, Vec<(String, String)>>,
    /// const name -> value.
    pub consts: BTreeMap<String, u64>,
    pub controls: Vec<Control>,
}

#[derive(Debug, Default)]
pub struct Control {
    pub name: String,
    /// parameter name -> type name.
    pub params: BTreeMap<String, String>,
    pub actions: Vec<ActionDecl>,
    pub tables: Vec<TableDecl>,
    pub direct_counters: Vec<String>,
    /// (name, size).
    pub counters: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct ActionDecl {
    pub name: String,
    pub params: Vec<(String, u32)>,
    /// The STAGE_* constants the action assigns to meta.next_stage.
    pub next_stages: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TableDecl {
    pub name: String,
    /// (field expression, match kind).
    pub keys: Vec<(String, String)>,
    pub actions: Vec<String>,
    pub default_action: Option<String>,
    pub const_default: bool,
    pub counters: Option<String>,
    pub size: Option<u64>,
}

pub fn tokenize(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if c == b'#' {
            // Preprocessor lines (#include) carry no declarations of ours.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            out.push(Tok::Str(src[start..i].to_string()));
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Num(src[start..i].to_string()));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_string()));
        } else {
            out.push(Tok::Punct(c as char));
            i += 1;
        }
    }
    out
}

pub fn parse_num(s: &str) -> u64 {
    let s = s.replace('_', "");
    // Width-prefixed literals such as 8w1 or 16w0x0800.
    let s = match s.find('w') {
        Some(i) if s[..i].chars().all(|c| c.is_ascii_digit()) => s[i + 1..].to_string(),
        _ => s,
    };
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).expect("hex literal")
    } else if let Some(b) = s.strip_prefix("0b") {
        u64::from_str_radix(b, 2).expect("binary literal")
    } else {
        s.parse().expect("decimal literal")
    }
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn next(&mut self) -> Tok {
        let t = self.t[self.i].clone();
        self.i += 1;
        t
    }
    fn is(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == s)
    }
    fn expect(&mut self, c: char) {
        let t = self.next();
        assert_eq!(t, Tok::Punct(c), "expected {c:?} at token {}", self.i);
    }
    fn ident(&mut self) -> String {
        match self.next() {
            Tok::Ident(s) => s,
            t => panic!("expected an identifier at token {}, found {t:?}", self.i),
        }
    }
    /// Skips a balanced group starting at the current opening bracket.
    fn skip_group(&mut self) {
        let (open, close) = match self.next() {
            Tok::Punct('{') => ('{', '}'),
            Tok::Punct('(') => ('(', ')'),
            t => panic!("skip_group at {t:?}"),
        };
        let mut depth = 1;
        while depth > 0 {
            match self.next() {
                Tok::Punct(c) if c == open => depth += 1,
                Tok::Punct(c) if c == close => depth -= 1,
                _ => {}
            }
        }
    }
    /// Skips to just after the next ';' at this nesting level.
    fn skip_statement(&mut self) {
        loop {
            if self.is('{') || self.is('(') {
                self.skip_group();
                continue;
            }
            if let Tok::Punct(';') = self.next() {
                return;
            }
        }
    }
    /// `bit<N>` or a type name.
    fn type_name(&mut self) -> String {
        let name = self.ident();
        if name == "bit" {
            self.expect('<');
            let Tok::Num(n) = self.next() else {
                panic!("bit width")
            };
            self.expect('>');
            format!("bit<{n}>")
        } else {
            name
        }
    }
    /// A dotted field expression such as `hdr.ipv4.dstAddr`.
    fn dotted(&mut self) -> String {
        let mut s = self.ident();
        while self.is('.') {
            self.next();
            s.push('.');
            s.push_str(&self.ident());
        }
        s
    }
}

fn width(ty: &str) -> u32 {
    ty.strip_prefix("bit<")
        .and_then(|r| r.strip_suffix('>'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ty} is not bit<N>"))
}

pub fn parse(src: &str) -> Program {
    let mut p = P {
        t: tokenize(src),
        i: 0,
    };
    let mut prog = Program::default();
    let mut pending_controller: Option<String> = None;
    while p.peek().is_some() {
        match p.next() {
            Tok::Punct('@') => {
                let name = p.ident();
                if p.is('(') {
                    p.next();
                    let arg = match p.next() {
                        Tok::Str(s) => s,
                        t => panic!("annotation argument {t:?}"),
                    };
                    p.expect(')');
                    if name == "controller_header" {
                        pending_controller = Some(arg);
                    }
                }
            }
            Tok::Ident(k) if k == "header" => {
                let name = p.ident();
                p.expect('{');
                let mut fields = Vec::new();
                while !p.is('}') {
                    let ty = p.type_name();
                    let f = p.ident();
                    p.expect(';');
                    fields.push((f, width(&ty)));
                }
                p.expect('}');
                if let Some(c) = pending_controller.take() {
                    prog.controller_headers.insert(name.clone(), c);
                }
                prog.headers.insert(name, fields);
            }
            Tok::Ident(k) if k == "struct" => {
                let name = p.ident();
                p.expect('{');
                let mut members = Vec::new();
                while !p.is('}') {
                    let ty = p.type_name();
                    let f = p.ident();
                    p.expect(';');
                    members.push((f, ty));
                }
                p.expect('}');
                prog.structs.insert(name, members);
            }
            Tok::Ident(k) if k == "const" => {
                let _ty = p.type_name();
                let name = p.ident();
                p.expect('=');
                if let Some(Tok::Num(n)) = p.peek().cloned() {
                    p.next();
                    if p.is(';') {
                        prog.consts.insert(name, parse_num(&n));
                    }
                }
                p.skip_statement();
            }
            Tok::Ident(k) if k == "control" => {
                let c = parse_control(&mut p);
                prog.controls.push(c);
            }
            Tok::Ident(k) if k == "parser" || k == "error" => {
                while !p.is('{') {
                    p.next();
                }
                p.skip_group();
            }
            _ => {}
        }
    }
    prog
}

fn parse_control(p: &mut P) -> Control {
    let mut c = Control {
        name: p.ident(),
        ..Default::default()
    };
    p.expect('(');
    while !p.is(')') {
        if p.is_ident("inout") || p.is_ident("in") || p.is_ident("out") {
            p.next();
        }
        let ty = p.ident();
        let name = p.ident();
        c.params.insert(name, ty);
        if p.is(',') {
            p.next();
        }
    }
    p.expect(')');
    p.expect('{');
    while !p.is('}') {
        match p.next() {
            Tok::Ident(k) if k == "action" => {
                let name = p.ident();
                p.expect('(');
                let mut params = Vec::new();
                while !p.is(')') {
                    let ty = p.type_name();
                    let n = p.ident();
                    params.push((n, width(&ty)));
                    if p.is(',') {
                        p.next();
                    }
                }
                p.expect(')');
                let start = p.i;
                p.skip_group();
                let body = &p.t[start..p.i];
                let mut next_stages = Vec::new();
                for w in body.windows(5) {
                    if w[0] == Tok::Ident("meta".into())
                        && w[1] == Tok::Punct('.')
                        && w[2] == Tok::Ident("next_stage".into())
                        && w[3] == Tok::Punct('=')
                    {
                        if let Tok::Ident(s) = &w[4] {
                            next_stages.push(s.clone());
                        }
                    }
                }
                c.actions.push(ActionDecl {
                    name,
                    params,
                    next_stages,
                });
            }
            Tok::Ident(k) if k == "table" => c.tables.push(parse_table(p)),
            Tok::Ident(k) if k == "direct_counter" => {
                p.skip_group();
                c.direct_counters.push(p.ident());
                p.expect(';');
            }
            Tok::Ident(k) if k == "counter" => {
                p.expect('(');
                let Tok::Num(size) = p.next() else {
                    panic!("counter size")
                };
                while !p.is(')') {
                    p.next();
                }
                p.expect(')');
                c.counters.push((p.ident(), parse_num(&size)));
                p.expect(';');
            }
            Tok::Ident(k) if k == "apply" => p.skip_group(),
            _ => {}
        }
    }
    p.expect('}');
    c
}

fn parse_table(p: &mut P) -> TableDecl {
    let mut t = TableDecl {
        name: p.ident(),
        keys: Vec::new(),
        actions: Vec::new(),
        default_action: None,
        const_default: false,
        counters: None,
        size: None,
    };
    p.expect('{');
    while !p.is('}') {
        let mut is_const = false;
        if p.is_ident("const") {
            p.next();
            is_const = true;
        }
        let prop = p.ident();
        p.expect('=');
        match prop.as_str() {
            "key" => {
                p.expect('{');
                while !p.is('}') {
                    let f = p.dotted();
                    p.expect(':');
                    let kind = p.ident();
                    p.expect(';');
                    t.keys.push((f, kind));
                }
                p.expect('}');
            }
            "actions" => {
                p.expect('{');
                while !p.is('}') {
                    t.actions.push(p.ident());
                    p.expect(';');
                }
                p.expect('}');
            }
            "default_action" => {
                t.default_action = Some(p.ident());
                t.const_default = is_const;
                p.skip_statement();
            }
            "counters" => {
                t.counters = Some(p.ident());
                p.expect(';');
            }
            "size" => {
                let Tok::Num(n) = p.next() else {
                    panic!("size")
                };
                t.size = Some(parse_num(&n));
                p.expect(';');
            }
            other => panic!("table property {other} is not read by this test"),
        }
    }
    p.expect('}');
    t
}

impl Program {
    pub fn control(&self, name: &str) -> &Control {
        self.controls
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no control {name}"))
    }

    /// Bit width of a key expression such as `hdr.ipv4.dstAddr` or `meta.network`, resolved
    /// through the control's parameter types.
    pub fn key_width(&self, control: &Control, expr: &str) -> u32 {
        let parts: Vec<&str> = expr.split('.').collect();
        if parts[0] == "standard_metadata" {
            return match parts[1] {
                "ingress_port" | "egress_spec" | "egress_port" => 9,
                other => panic!("standard_metadata.{other} width unknown to this test"),
            };
        }
        let mut ty = control
            .params
            .get(parts[0])
            .unwrap_or_else(|| panic!("{expr}: no parameter {}", parts[0]))
            .clone();
        for (i, part) in parts.iter().enumerate().skip(1) {
            if let Some(members) = self.structs.get(&ty) {
                ty = members
                    .iter()
                    .find(|(n, _)| n == part)
                    .unwrap_or_else(|| panic!("{expr}: {ty} has no member {part}"))
                    .1
                    .clone();
            } else if let Some(fields) = self.headers.get(&ty) {
                assert_eq!(i, parts.len() - 1, "{expr}: header field must be last");
                return fields
                    .iter()
                    .find(|(n, _)| n == part)
                    .unwrap_or_else(|| panic!("{expr}: {ty} has no field {part}"))
                    .1;
            } else {
                panic!("{expr}: {ty} is neither a struct nor a header");
            }
        }
        width(&ty)
    }
}

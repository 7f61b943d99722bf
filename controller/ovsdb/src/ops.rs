//! Typed OVSDB transaction operations (RFC 7047 section 5.2) and the JSON encodings of
//! datums (`["uuid", ..]`, `["set", ..]`, `["map", ..]`) both ways.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// A datum that did not have the shape a column was expected to have.
#[derive(Debug, thiserror::Error)]
pub enum DatumError {
    #[error("failed to read column {column}: expected {expected}, got {got}")]
    Shape {
        column: &'static str,
        expected: &'static str,
        got: String,
    },
}

/// Comparison in a `where` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Function {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "includes")]
    Includes,
    #[serde(rename = "excludes")]
    Excludes,
}

/// `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: Function,
    pub value: Value,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Self {
            column: column.to_owned(),
            function: Function::Eq,
            value: value.into(),
        }
    }

    /// `_uuid == uuid`.
    pub fn uuid(uuid: Uuid) -> Self {
        Self::eq("_uuid", uuid_datum(uuid))
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, self.function, &self.value).serialize(s)
    }
}

/// How a `mutate` changes a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Mutator {
    #[serde(rename = "insert")]
    Insert,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "+=")]
    Add,
}

/// `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: Mutator,
    pub value: Value,
}

impl Mutation {
    pub fn new(column: &str, mutator: Mutator, value: impl Into<Value>) -> Self {
        Self {
            column: column.to_owned(),
            mutator,
            value: value.into(),
        }
    }
}

impl Serialize for Mutation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.column, self.mutator, &self.value).serialize(s)
    }
}

/// One operation of a `transact`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Operation {
    Insert {
        table: String,
        row: Map<String, Value>,
        /// Lets later operations of the same transaction refer to the new row.
        #[serde(rename = "uuid-name", skip_serializing_if = "Option::is_none")]
        uuid_name: Option<String>,
    },
    Select {
        table: String,
        #[serde(rename = "where")]
        conditions: Vec<Condition>,
        #[serde(skip_serializing_if = "Option::is_none")]
        columns: Option<Vec<String>>,
    },
    Update {
        table: String,
        #[serde(rename = "where")]
        conditions: Vec<Condition>,
        row: Map<String, Value>,
    },
    Mutate {
        table: String,
        #[serde(rename = "where")]
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    Delete {
        table: String,
        #[serde(rename = "where")]
        conditions: Vec<Condition>,
    },
    /// Aborts the transaction unless the selected rows equal (`until: "=="`) `rows`.
    Wait {
        table: String,
        #[serde(rename = "where")]
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: String,
        rows: Vec<Value>,
        timeout: u64,
    },
}

impl Operation {
    pub fn insert(table: &str, row: Map<String, Value>, uuid_name: Option<&str>) -> Self {
        Self::Insert {
            table: table.to_owned(),
            row,
            uuid_name: uuid_name.map(str::to_owned),
        }
    }

    pub fn select(table: &str, conditions: Vec<Condition>, columns: &[&str]) -> Self {
        Self::Select {
            table: table.to_owned(),
            conditions,
            columns: Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        }
    }

    pub fn update(table: &str, conditions: Vec<Condition>, row: Map<String, Value>) -> Self {
        Self::Update {
            table: table.to_owned(),
            conditions,
            row,
        }
    }

    pub fn mutate(table: &str, conditions: Vec<Condition>, mutations: Vec<Mutation>) -> Self {
        Self::Mutate {
            table: table.to_owned(),
            conditions,
            mutations,
        }
    }

    pub fn delete(table: &str, conditions: Vec<Condition>) -> Self {
        Self::Delete {
            table: table.to_owned(),
            conditions,
        }
    }

    /// Fails the transaction at once if any row matches `conditions` (guards an insert
    /// against a concurrent writer creating the same name).
    pub fn wait_none(table: &str, conditions: Vec<Condition>, column: &str) -> Self {
        Self::Wait {
            table: table.to_owned(),
            conditions,
            columns: vec![column.to_owned()],
            until: "==".to_owned(),
            rows: Vec::new(),
            timeout: 0,
        }
    }
}

/// `["uuid", "..."]`.
pub fn uuid_datum(uuid: Uuid) -> Value {
    json!(["uuid", uuid.to_string()])
}

/// `["named-uuid", name]`: a row inserted earlier in the same transaction.
pub fn named_uuid(name: &str) -> Value {
    json!(["named-uuid", name])
}

/// `["set", [..]]`.
pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

/// `["map", [[k, v], ..]]` of strings.
pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

fn shape(column: &'static str, expected: &'static str, got: &Value) -> DatumError {
    DatumError::Shape {
        column,
        expected,
        got: got.to_string(),
    }
}

/// The members of a set column; a single atom is a one-element set (RFC 7047 5.1).
pub fn parse_set<'a>(column: &'static str, v: &'a Value) -> Result<Vec<&'a Value>, DatumError> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(items)]) if tag == "set" => Ok(items.iter().collect()),
        _ if v.is_array() && v.get(0).and_then(Value::as_str) != Some("uuid") => {
            Err(shape(column, "a set", v))
        }
        _ => Ok(vec![v]),
    }
}

/// A `["uuid", "..."]` atom.
pub fn parse_uuid(column: &'static str, v: &Value) -> Result<Uuid, DatumError> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(s)]) if tag == "uuid" => {
            Uuid::parse_str(s).map_err(|_| shape(column, "a uuid", v))
        }
        _ => Err(shape(column, "a uuid", v)),
    }
}

/// A set of uuids (`bridges`, `ports`, `controller`, ...).
pub fn parse_uuid_set(column: &'static str, v: &Value) -> Result<Vec<Uuid>, DatumError> {
    parse_set(column, v)?
        .into_iter()
        .map(|a| parse_uuid(column, a))
        .collect()
}

/// A string-to-string map column (`external_ids`, `options`, ...).
pub fn parse_string_map(
    column: &'static str,
    v: &Value,
) -> Result<BTreeMap<String, String>, DatumError> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(pairs)]) if tag == "map" => pairs
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(val)]) => Ok((k.clone(), val.clone())),
                _ => Err(shape(column, "a string pair", p)),
            })
            .collect(),
        _ => Err(shape(column, "a map", v)),
    }
}

/// An optional string column (`min 0, max 1`): `"x"` or the empty set.
pub fn parse_opt_string(column: &'static str, v: &Value) -> Result<Option<String>, DatumError> {
    match v {
        Value::String(s) => Ok(Some(s.clone())),
        _ => match parse_set(column, v)?.as_slice() {
            [] => Ok(None),
            [Value::String(s)] => Ok(Some(s.clone())),
            _ => Err(shape(column, "an optional string", v)),
        },
    }
}

/// An optional integer column: `3` or the empty set.
pub fn parse_opt_int(column: &'static str, v: &Value) -> Result<Option<i64>, DatumError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| shape(column, "an integer", v)),
        _ => match parse_set(column, v)?.as_slice() {
            [] => Ok(None),
            [Value::Number(n)] => Ok(n.as_i64()),
            _ => Err(shape(column, "an optional integer", v)),
        },
    }
}

/// A set of strings (`protocols`).
pub fn parse_string_set(column: &'static str, v: &Value) -> Result<Vec<String>, DatumError> {
    parse_set(column, v)?
        .into_iter()
        .map(|a| {
            a.as_str()
                .map(str::to_owned)
                .ok_or_else(|| shape(column, "a string", a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_serialise_as_rfc7047() {
        let mut row = Map::new();
        row.insert("name".into(), json!("p1"));
        let ops = vec![
            Operation::insert("Port", row, Some("port")),
            Operation::mutate(
                "Bridge",
                vec![Condition::eq("name", "br-int")],
                vec![Mutation::new(
                    "ports",
                    Mutator::Insert,
                    set([named_uuid("port")]),
                )],
            ),
        ];
        assert_eq!(
            serde_json::to_value(&ops).expect("serialisable"),
            json!([
                {"op": "insert", "table": "Port", "row": {"name": "p1"}, "uuid-name": "port"},
                {"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
                 "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]]]}
            ])
        );
    }

    #[test]
    fn datums_parse_in_both_set_forms() {
        let u = Uuid::new_v4();
        assert_eq!(
            parse_uuid_set("c", &uuid_datum(u)).expect("single"),
            vec![u]
        );
        assert_eq!(
            parse_uuid_set("c", &set([uuid_datum(u)])).expect("set"),
            vec![u]
        );
        assert_eq!(
            parse_opt_int("ofport", &json!(["set", []])).expect("empty"),
            None
        );
        assert_eq!(parse_opt_int("ofport", &json!(-1)).expect("int"), Some(-1));
        assert_eq!(
            parse_opt_string("s", &json!("up")).expect("str").as_deref(),
            Some("up")
        );
        let m = parse_string_map("e", &string_map([("iface-id", "lp1")])).expect("map");
        assert_eq!(m.get("iface-id").map(String::as_str), Some("lp1"));
        assert!(parse_string_map("e", &json!(["map", [[1, 2]]])).is_err());
        assert!(parse_uuid("u", &json!(["uuid", "nope"])).is_err());
        assert!(parse_opt_int("o", &json!("x")).is_err());
    }
}

//! Neutron's list semantics: attribute filters, `fields`, `sort_key`/`sort_dir` and
//! `limit`/`marker`/`page_reverse` pagination with `<collection>_links`.
//!
//! Lists without filters, sorting or field selection (the common and the large case) are
//! paginated on the typed objects, already in id order, and serialized directly; everything
//! else goes through `serde_json::Value`.

use std::cmp::Ordering;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::http::HttpError;

/// A parsed list (or show) query string.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// Attribute -> accepted values (repeated keys are OR-ed), in first-seen order.
    pub filters: Vec<(String, Vec<String>)>,
    pub fields: Vec<String>,
    /// (attribute, ascending)
    pub sort: Vec<(String, bool)>,
    pub limit: Option<usize>,
    pub marker: Option<String>,
    pub page_reverse: bool,
    /// Every parameter as given, to rebuild pagination links.
    raw: Vec<(String, String)>,
}

fn bad(msg: impl Into<String>) -> HttpError {
    HttpError::bad_request(msg)
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, HttpError> {
        let mut q = ListQuery::default();
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            q.raw.push((k.clone(), v.clone()));
            match k.as_str() {
                "fields" => q
                    .fields
                    .extend(v.split(',').filter(|f| !f.is_empty()).map(str::to_string)),
                "sort_key" => sort_keys.push(v),
                "sort_dir" => match v.as_str() {
                    "asc" => sort_dirs.push(true),
                    "desc" => sort_dirs.push(false),
                    _ => {
                        return Err(bad(format!(
                            "Sort direction '{v}' is not valid; use 'asc' or 'desc'"
                        )))
                    }
                },
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        bad(format!(
                            "Limit must be an integer 0 or greater and not '{v}'"
                        ))
                    })?;
                    if n < 0 {
                        return Err(bad(format!(
                            "Limit must be an integer 0 or greater and not '{v}'"
                        )));
                    }
                    // Neutron: limit=0 means no limit.
                    q.limit = (n > 0).then_some(n as usize);
                }
                "marker" => q.marker = Some(v),
                "page_reverse" => {
                    q.page_reverse = matches!(v.to_ascii_lowercase().as_str(), "true" | "1")
                }
                _ => match q.filters.iter_mut().find(|(fk, _)| *fk == k) {
                    Some((_, vals)) => vals.push(v),
                    None => q.filters.push((k, vec![v])),
                },
            }
        }
        if !sort_dirs.is_empty() && sort_dirs.len() != sort_keys.len() {
            return Err(bad("The number of sort_keys and sort_dirs must be same"));
        }
        q.sort = sort_keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, sort_dirs.get(i).copied().unwrap_or(true)))
            .collect();
        Ok(q)
    }

    fn needs_values(&self) -> bool {
        !self.filters.is_empty() || !self.sort.is_empty() || !self.fields.is_empty()
    }

    fn link(&self, base: &str, marker: Uuid, reverse: bool) -> Value {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.raw {
            if k != "marker" && k != "page_reverse" && k != "limit" {
                ser.append_pair(k, v);
            }
        }
        if let Some(l) = self.limit {
            ser.append_pair("limit", &l.to_string());
        }
        ser.append_pair("marker", &marker.to_string());
        if reverse {
            ser.append_pair("page_reverse", "True");
        }
        serde_json::json!({ "href": format!("{base}?{}", ser.finish()), "rel": if reverse { "previous" } else { "next" } })
    }
}

/// Something that can be listed: serializable, with an id.
pub trait Listable: Serialize {
    fn id(&self) -> Uuid;
    /// The object's JSON, already serialized (exactly what `Serialize` would write), if at
    /// hand: lists then concatenate it instead of serializing again.
    fn json(&self) -> Option<&[u8]> {
        None
    }
    /// The attribute `key` when it is a plain JSON string in every object of this type
    /// (exactly the string `Serialize` writes), so filters on it can skip serialization.
    fn str_attr(&self, _key: &str) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}

/// An object together with its cached JSON (see `Topology::enable_json_cache`).
#[derive(Debug, Clone)]
pub struct Cached<T> {
    pub obj: T,
    pub json: Option<Bytes>,
}

impl<T: Serialize> Serialize for Cached<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.obj.serialize(s)
    }
}

impl<T: Listable> Listable for Cached<T> {
    fn id(&self) -> Uuid {
        self.obj.id()
    }
    fn json(&self) -> Option<&[u8]> {
        self.json.as_deref()
    }
    fn str_attr(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.obj.str_attr(key)
    }
}

/// Keeps only the requested fields (Neutron ignores unknown ones).
pub fn project(v: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return v;
    }
    match v {
        Value::Object(mut m) => {
            let mut out = Map::new();
            for f in fields {
                if let Some(x) = m.remove(f) {
                    out.insert(f.clone(), x);
                }
            }
            Value::Object(out)
        }
        other => other,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn value_matches(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => parse_bool(want) == Some(*b),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None" || want == "null",
        Value::Array(a) => a.iter().any(|x| value_matches(x, want)),
        Value::Object(_) => false,
    }
}

/// `fixed_ips=ip_address=X` / `fixed_ips=subnet_id=Y`: a port matches when one of its
/// addresses matches every given kind (values of one kind are OR-ed).
fn fixed_ips_match(item: &Value, wants: &[String]) -> bool {
    let mut ips = Vec::new();
    let mut subnets = Vec::new();
    for w in wants {
        match w.split_once('=') {
            Some(("ip_address", v)) => ips.push(v),
            Some(("subnet_id", v)) => subnets.push(v),
            _ => {}
        }
    }
    let Some(list) = item.get("fixed_ips").and_then(Value::as_array) else {
        return false;
    };
    list.iter().any(|f| {
        let ip_ok = ips.is_empty()
            || f.get("ip_address")
                .and_then(Value::as_str)
                .is_some_and(|x| ips.contains(&x));
        let sn_ok = subnets.is_empty()
            || f.get("subnet_id")
                .and_then(Value::as_str)
                .is_some_and(|x| subnets.contains(&x));
        ip_ok && sn_ok
    })
}

/// The tag extension's filters (`tags`, `tags-any`, `not-tags`, `not-tags-any`), each a
/// comma-separated list; `None` when `key` is not one of them.
fn tags_match(item: &Value, key: &str, wants: &[String]) -> Option<bool> {
    if !matches!(key, "tags" | "tags-any" | "not-tags" | "not-tags-any") {
        return None;
    }
    let have: Vec<&str> = item
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut wanted = wants
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|t| !t.is_empty());
    let all = wanted.clone().all(|t| have.contains(&t));
    let any = wanted.any(|t| have.contains(&t));
    Some(match key {
        "tags" => all,
        "tags-any" => any,
        "not-tags" => !all,
        _ => !any,
    })
}

fn matches(item: &Value, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(k, wants)| {
        if k == "fixed_ips" {
            return fixed_ips_match(item, wants);
        }
        if let Some(m) = tags_match(item, k, wants) {
            return m;
        }
        match item.get(k) {
            Some(v) => wants.iter().any(|w| value_matches(v, w)),
            // Unknown attributes are ignored, as Neutron does without filter validation.
            None => true,
        }
    })
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// Which part of an ordered list a page covers, and whether there are links to give.
struct Page {
    start: usize,
    end: usize,
    next: bool,
    prev: bool,
}

/// `after`: index of the first entry after the marker; `before`: index of the first entry
/// not before it (both `None` without a marker).
fn page(q: &ListQuery, len: usize, marker: Option<(usize, usize)>) -> Page {
    let Some(limit) = q.limit else {
        let start = marker.map_or(0, |(after, _)| after);
        return Page {
            start,
            end: len,
            next: false,
            prev: false,
        };
    };
    if q.page_reverse {
        let end = marker.map_or(len, |(_, before)| before);
        let start = end.saturating_sub(limit);
        Page {
            start,
            end,
            next: marker.is_some(),
            prev: start > 0,
        }
    } else {
        let start = marker.map_or(0, |(after, _)| after);
        let end = (start + limit).min(len);
        Page {
            start,
            end,
            next: end < len,
            prev: marker.is_some(),
        }
    }
}

fn links(q: &ListQuery, base: &str, ids: &[Uuid], p: &Page) -> Vec<Value> {
    let mut out = Vec::new();
    if p.start >= p.end {
        return out;
    }
    if p.next {
        out.push(q.link(base, ids[p.end - 1], false));
    }
    if p.prev {
        out.push(q.link(base, ids[p.start], true));
    }
    out
}

/// The body of a list answer: `{"<collection>": [...], "<collection>_links": [...]}`.
/// `items` are the visible objects in id order; `not_found` builds the 404 for a marker
/// that names no visible object.
pub fn list_body<T: Listable>(
    collection: &str,
    items: Vec<T>,
    q: &ListQuery,
    base: &str,
    not_found: impl Fn(&str) -> HttpError,
) -> Result<Vec<u8>, HttpError> {
    let marker = match &q.marker {
        Some(m) => Some(
            Uuid::parse_str(m)
                .ok()
                .filter(|u| items.iter().any(|i| i.id() == *u))
                .ok_or_else(|| not_found(m))?,
        ),
        None => None,
    };
    let links_key = format!("{collection}_links");
    // Filters on plain string attributes only (`network_id`, `device_id`, `name`, ...) are
    // applied to the typed objects, so that the common filtered lists also take the fast
    // path. Same semantics as `value_matches` on a JSON string: exact equality with one of
    // the wanted values. The marker was checked against the unfiltered list above.
    let typed_only = q.sort.is_empty()
        && q.fields.is_empty()
        && !q.filters.is_empty()
        && items.first().is_some_and(|i| {
            q.filters
                .iter()
                .all(|(k, _)| k != "fixed_ips" && i.str_attr(k).is_some())
        });
    let items = if typed_only {
        items
            .into_iter()
            .filter(|i| {
                q.filters.iter().all(|(k, wants)| {
                    i.str_attr(k)
                        .is_some_and(|v| wants.iter().any(|w| w.as_str() == v))
                })
            })
            .collect()
    } else {
        items
    };
    if !q.needs_values() || typed_only {
        // Fast path: typed objects, already in id order.
        let pos = marker.map(|m| {
            let before = items.partition_point(|x| x.id() < m);
            let after = items.partition_point(|x| x.id() <= m);
            (after, before)
        });
        let p = page(q, items.len(), pos);
        let ids: Vec<Uuid> = items[p.start..p.end].iter().map(Listable::id).collect();
        let rel = Page {
            start: 0,
            end: ids.len(),
            ..p
        };
        let l = links(q, base, &ids, &rel);
        let page = &items[p.start..p.end];
        if let Some(body) = concat_list(collection, page.iter().map(Listable::json), &links_key, &l)
        {
            return Ok(body);
        }
        return Ok(serialize_list(collection, page, &links_key, l));
    }
    let to_value = |i: &T| {
        serde_json::to_value(i)
            .map_err(|e| HttpError::internal(format!("failed to serialize: {e}")))
    };
    let marker_val = match marker {
        Some(m) => items
            .iter()
            .find(|i| i.id() == m)
            .map(to_value)
            .transpose()?
            .map(|v| (m, v, usize::MAX)),
        None => None,
    };
    // (id, value, index in `items`)
    let mut vals: Vec<(Uuid, Value, usize)> = Vec::with_capacity(items.len());
    for (idx, i) in items.iter().enumerate() {
        let v = to_value(i)?;
        if matches(&v, &q.filters) {
            vals.push((i.id(), v, idx));
        }
    }
    for (k, _) in &q.sort {
        let bad_key = vals.iter().any(|(_, v, _)| {
            matches!(
                v.get(k),
                None | Some(Value::Array(_)) | Some(Value::Object(_))
            )
        });
        if bad_key {
            return Err(bad(format!("'{k}' is an invalid attribute for sort_key")));
        }
    }
    let last_asc = q.sort.last().is_none_or(|(_, asc)| *asc);
    let cmp = |a: &(Uuid, Value, usize), b: &(Uuid, Value, usize)| {
        for (k, asc) in &q.sort {
            let o = cmp_values(
                a.1.get(k).unwrap_or(&Value::Null),
                b.1.get(k).unwrap_or(&Value::Null),
            );
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        if last_asc {
            a.0.cmp(&b.0)
        } else {
            b.0.cmp(&a.0)
        }
    };
    vals.sort_by(cmp);
    let pos = marker_val.map(|mv| {
        let before = vals.partition_point(|x| cmp(x, &mv) == Ordering::Less);
        let after = vals.partition_point(|x| cmp(x, &mv) != Ordering::Greater);
        (after, before)
    });
    let p = page(q, vals.len(), pos);
    let ids: Vec<Uuid> = vals[p.start..p.end].iter().map(|(id, _, _)| *id).collect();
    let rel = Page {
        start: 0,
        end: ids.len(),
        ..p
    };
    let l = links(q, base, &ids, &rel);
    if q.fields.is_empty() {
        let jsons = vals[p.start..p.end]
            .iter()
            .map(|(_, _, i)| items[*i].json());
        if let Some(body) = concat_list(collection, jsons, &links_key, &l) {
            return Ok(body);
        }
    }
    let out: Vec<Value> = vals
        .drain(p.start..p.end)
        .map(|(_, v, _)| project(v, &q.fields))
        .collect();
    Ok(serialize_list(collection, &out, &links_key, l))
}

/// The list body built from each item's cached JSON, byte for byte what [`serialize_list`]
/// writes; `None` if an item has no cached JSON.
fn concat_list<'a>(
    collection: &str,
    jsons: impl Iterator<Item = Option<&'a [u8]>> + Clone,
    links_key: &str,
    links: &[Value],
) -> Option<Vec<u8>> {
    let mut size = 0;
    for j in jsons.clone() {
        size += j?.len() + 1;
    }
    let links = if links.is_empty() {
        None
    } else {
        Some(serde_json::to_vec(links).ok()?)
    };
    let mut out = Vec::with_capacity(size + 64 + links.as_ref().map_or(0, Vec::len));
    out.extend_from_slice(b"{");
    push_json_str(&mut out, collection)?;
    out.extend_from_slice(b":[");
    for (i, j) in jsons.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(j?);
    }
    out.push(b']');
    if let Some(l) = links {
        out.push(b',');
        push_json_str(&mut out, links_key)?;
        out.push(b':');
        out.extend_from_slice(&l);
    }
    out.push(b'}');
    Some(out)
}

fn push_json_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    serde_json::to_writer(out, s).ok()
}

fn serialize_list<T: Serialize>(
    collection: &str,
    items: &[T],
    links_key: &str,
    links: Vec<Value>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a, T: Serialize> {
        #[serde(flatten)]
        inner: std::collections::BTreeMap<&'a str, &'a [T]>,
        #[serde(flatten)]
        links: std::collections::BTreeMap<&'a str, Vec<Value>>,
    }
    let mut inner = std::collections::BTreeMap::new();
    inner.insert(collection, items);
    let mut lm = std::collections::BTreeMap::new();
    if !links.is_empty() {
        lm.insert(links_key, links);
    }
    serde_json::to_vec(&Body { inner, links: lm }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_follow_the_tag_extension() {
        let item = serde_json::json!({"id": "x", "tags": ["red", "blue"]});
        let m = |k: &str, v: &str| matches(&item, &[(k.to_string(), vec![v.to_string()])]);
        assert!(m("tags", "red,blue"));
        assert!(!m("tags", "red,green"));
        assert!(m("tags-any", "green,blue"));
        assert!(!m("tags-any", "green"));
        assert!(m("not-tags", "red,green"));
        assert!(!m("not-tags", "red"));
        assert!(m("not-tags-any", "green"));
        assert!(!m("not-tags-any", "green,red"));
    }

    #[test]
    fn parse_collects_repeats_and_checks_values() {
        let q = ListQuery::parse(Some("name=a&name=b&fields=id&fields=name,mtu&sort_key=name&limit=2&fixed_ips=ip_address%3D10.0.0.2")).unwrap();
        assert_eq!(
            q.filters[0],
            ("name".to_string(), vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            q.filters[1],
            (
                "fixed_ips".to_string(),
                vec!["ip_address=10.0.0.2".to_string()]
            )
        );
        assert_eq!(q.fields, vec!["id", "name", "mtu"]);
        assert_eq!(q.sort, vec![("name".to_string(), true)]);
        assert_eq!(q.limit, Some(2));
        assert!(ListQuery::parse(Some("limit=-1")).is_err());
        assert!(ListQuery::parse(Some("limit=x")).is_err());
        assert!(ListQuery::parse(Some("sort_dir=up")).is_err());
        assert!(ListQuery::parse(Some("sort_key=a&sort_key=b&sort_dir=asc")).is_err());
        assert_eq!(ListQuery::parse(Some("limit=0")).unwrap().limit, None);
    }

    #[test]
    fn concatenated_list_is_byte_identical_to_serialized() {
        let items: Vec<Value> = (0..3)
            .map(|i| serde_json::json!({"id": i.to_string(), "name": format!("n\"{i}")}))
            .collect();
        let jsons: Vec<Vec<u8>> = items
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap())
            .collect();
        let links =
            vec![serde_json::json!({"href": "http://h/v2.0/ports?marker=x", "rel": "next"})];
        for l in [Vec::new(), links] {
            let want = serialize_list("ports", &items, "ports_links", l.clone());
            let got = concat_list(
                "ports",
                jsons.iter().map(|j| Some(j.as_slice())),
                "ports_links",
                &l,
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
        let missing = [Some(&b"{}"[..]), None];
        assert!(concat_list("ports", missing.iter().copied(), "ports_links", &[]).is_none());
    }

    #[test]
    fn value_matching_follows_types() {
        assert!(value_matches(&Value::Bool(true), "True"));
        assert!(!value_matches(&Value::Bool(true), "false"));
        assert!(value_matches(&serde_json::json!(1450), "1450"));
        assert!(value_matches(&serde_json::json!(["a", "b"]), "b"));
    }
}

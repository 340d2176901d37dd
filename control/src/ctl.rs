//! `mtnode ctl`: a thin blocking client of the control API ([`crate::api`]), and the two pieces
//! of it that are more than HTTP: turning `FIELD=VALUE` settings into a JSON patch, and
//! flattening the config and stats documents into the rows of a table.
//!
//! Field paths name keys the way the TOML file does, with the element of a keyed array in
//! brackets: `node.node_id`, `namespace[1].branch_encoding`, `port[to-F].queue.target_ms`,
//! `bift[1].bsl`. A value that reads as JSON (a number, `true`, an array, a quoted string) is
//! taken as JSON; anything else as a string.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// A connection to one node's API.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// A reply: its status and its body (JSON, or a string for `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// `base` like `http://127.0.0.1:8686`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        let r = self.agent.get(format!("{}{path}", self.base)).call();
        reply(r.with_context(|| format!("GET {}{path}", self.base))?)
    }

    /// A mutating request (`PATCH`, `POST`) with the bearer token, if the client has one.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let r = match body {
            Some(b) => {
                let req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_string())?;
                self.agent.run(req)
            }
            None => self.agent.run(req.body(())?),
        };
        reply(r.with_context(|| format!("{method} {url}"))?)
    }

    /// `PATCH /v1/config`.
    pub fn patch(&self, patch: &Value) -> Result<Reply> {
        self.send("PATCH", "/v1/config", Some(patch))
    }
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Result<Reply> {
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply { status, body })
}

/// One step of a field path: a key, or a keyed array's element.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Element(String, String),
}

/// Arrays addressed as `name[key]`, and the key field (the API merges them by it).
const KEYED: [(&str, &str); 3] = [("namespace", "id"), ("port", "name"), ("bift", "bift_id")];

fn steps(path: &str) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, rest)) => {
                let Some(key) = rest.strip_suffix(']') else {
                    bail!("`{path}`: `{part}` has no closing ]");
                };
                if !KEYED.iter().any(|(n, _)| *n == name) {
                    bail!("`{path}`: only namespace[ID], port[NAME] and bift[ID] take brackets");
                }
                out.push(Step::Element(name.to_string(), key.to_string()));
            }
            None if part.is_empty() => bail!("`{path}`: empty field name"),
            None => out.push(Step::Key(part.to_string())),
        }
    }
    Ok(out)
}

/// A command-line value as JSON.
fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The JSON patch that `FIELD=VALUE` settings make (`FIELD=null` removes a key).
pub fn patch_from(settings: &[String]) -> Result<Value> {
    let mut root = Map::new();
    for s in settings {
        let Some((path, v)) = s.split_once('=') else {
            bail!("`{s}`: write FIELD=VALUE");
        };
        let steps = steps(path.trim())?;
        insert(&mut root, &steps, value(v.trim()))?;
    }
    Ok(Value::Object(root))
}

fn insert(obj: &mut Map<String, Value>, steps: &[Step], v: Value) -> Result<()> {
    let Some((first, rest)) = steps.split_first() else {
        return Ok(());
    };
    let target = match first {
        Step::Key(k) if rest.is_empty() => {
            obj.insert(k.clone(), v);
            return Ok(());
        }
        Step::Key(k) => obj
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new())),
        Step::Element(name, key) => {
            let key_field = KEYED
                .iter()
                .find(|(n, _)| n == name)
                .map_or("id", |(_, k)| *k);
            let Value::Array(items) = obj
                .entry(name.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            else {
                bail!("`{name}` is set both as a value and as {name}[…]");
            };
            let id = if key_field == "name" {
                Value::String(key.clone())
            } else {
                value(key)
            };
            let at = match items.iter().position(|e| e[key_field] == id) {
                Some(i) => i,
                None => {
                    let mut e = Map::new();
                    e.insert(key_field.to_string(), id);
                    items.push(Value::Object(e));
                    items.len() - 1
                }
            };
            if rest.is_empty() {
                bail!("`{name}[{key}]`: name a field of it");
            }
            &mut items[at]
        }
    };
    let Value::Object(inner) = target else {
        bail!("a field path goes through a value that is not a table");
    };
    insert(inner, rest, v)
}

/// Rows `path = value` for every leaf of a config document, keyed arrays in bracket form and
/// other arrays as one JSON value, so that `mtnode ctl set` takes back what `get` printed.
pub fn flatten(doc: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    walk(doc, "", &mut rows);
    rows
}

fn walk(v: &Value, path: &str, rows: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let keyed = KEYED.iter().find(|(n, _)| n == k && path.is_empty());
                match (keyed, x) {
                    (Some((_, key)), Value::Array(items))
                        if items.iter().all(|e| e.get(*key).is_some()) =>
                    {
                        for e in items {
                            let id = match &e[*key] {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            walk(e, &format!("{k}[{id}]"), rows);
                        }
                    }
                    _ => walk(x, &join(k), rows),
                }
            }
        }
        other => rows.push((path.to_string(), other.to_string())),
    }
}

/// Look a field path up in a config document.
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Result<&'a Value> {
    let mut at = doc;
    for step in steps(path)? {
        at = match step {
            Step::Key(k) => at.get(&k),
            Step::Element(name, key) => {
                let key_field = KEYED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("id", |(_, k)| *k);
                at.get(&name).and_then(|a| a.as_array()).and_then(|items| {
                    items.iter().find(|e| match &e[key_field] {
                        Value::String(s) => *s == key,
                        other => *other == value(&key),
                    })
                })
            }
        }
        .with_context(|| format!("no field `{path}` in the running config"))?;
    }
    Ok(at)
}

/// A two-column table.
pub fn table(rows: &[(String, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_become_one_patch() {
        let p = patch_from(&[
            "node.node_id=48".into(),
            "namespace[1].branch_encoding=split".into(),
            "namespace[1].sum_gap=32".into(),
            "port[to-F].queue.aqm=pie".into(),
            "port[to-F].queue.target_ms=5.5".into(),
            "node.node_id_wide=null".into(),
        ])
        .unwrap();
        assert_eq!(
            p,
            json!({
                "node": {"node_id": 48, "node_id_wide": null},
                "namespace": [{"id": 1, "branch_encoding": "split", "sum_gap": 32}],
                "port": [{"name": "to-F", "queue": {"aqm": "pie", "target_ms": 5.5}}],
            })
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_path() {
        for (s, msg) in [
            ("node.node_id", "write FIELD=VALUE"),
            ("route[1].port=a", "only namespace[ID]"),
            ("namespace[1=a", "no closing ]"),
            ("namespace[1]=a", "name a field of it"),
            ("node..x=1", "empty field name"),
        ] {
            let e = patch_from(&[s.into()]).unwrap_err().to_string();
            assert!(e.contains(msg), "{s}: {e}");
        }
    }

    #[test]
    fn flatten_and_lookup_use_the_same_paths() {
        let doc = json!({
            "node": {"name": "D", "node_id": 64},
            "port": [{"name": "up", "if_id": 400}, {"name": "to-F", "if_id": 401}],
            "namespace": [{"id": 1, "role": "transit", "select": [{"dst": "ff00::/8"}]}],
            "route": [{"prefix": "::/0", "port": "up"}],
        });
        let rows = flatten(&doc);
        let want: Vec<(String, String)> = [
            ("namespace[1].id", "1"),
            ("namespace[1].role", "\"transit\""),
            ("namespace[1].select", "[{\"dst\":\"ff00::/8\"}]"),
            ("node.name", "\"D\""),
            ("node.node_id", "64"),
            ("port[up].if_id", "400"),
            ("port[up].name", "\"up\""),
            ("port[to-F].if_id", "401"),
            ("port[to-F].name", "\"to-F\""),
            ("route", "[{\"port\":\"up\",\"prefix\":\"::/0\"}]"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(rows, want);
        assert_eq!(lookup(&doc, "port[to-F].if_id").unwrap(), &json!(401));
        assert_eq!(
            lookup(&doc, "namespace[1].role").unwrap(),
            &json!("transit")
        );
        assert!(lookup(&doc, "namespace[2].role").is_err());
    }
}

//! The spec hash and what it is made of: the canonical spec JSON, its SHA-256, the labels a
//! created container carries, and the field-level diff `diff` shows for a recreate. Pure text
//! functions; the planner decides when they matter.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::FieldChange;
use crate::desired::{ContainerConfig, ResourceKey};
use crate::labels;

/// The document behind the spec label: the create configuration plus the image ID it runs.
#[derive(Serialize)]
struct SpecDocument<'a> {
    #[serde(flatten)]
    config: &'a ContainerConfig,
    #[serde(rename = "imageId")]
    image_id: &'a str,
}

/// Canonical JSON of one replica's effective create configuration: `config` serialised (fields
/// in declaration order, maps sorted, empty fields omitted) with an `imageId` field appended.
///
/// This exact text is stored in the `dockwright.dev/spec` label and hashed into
/// `dockwright.dev/spec-hash`, so a change of any manifest field or of the resolved image ID —
/// and nothing the daemon fills in — changes the hash.
pub fn spec_json(config: &ContainerConfig, image_id: &str) -> String {
    let document = SpecDocument { config, image_id };
    // Serialising plain structs with string map keys cannot fail; should it ever, the text
    // still differs from every valid spec, so the container is recreated rather than kept.
    serde_json::to_string(&document)
        .unwrap_or_else(|e| format!("{{\"unserialisable\":{:?}}}", e.to_string()))
}

/// `sha256:<hex>` of a spec JSON text.
pub fn spec_hash(spec_json: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(spec_json.as_bytes()))
    )
}

/// Labels of a created container: the user's (minus any under the reserved `dockwright.dev/`
/// prefix) plus owner, source, resource, replica, spec and spec hash. The source label is not
/// part of the spec, so it never causes a recreate.
pub fn container_labels(
    owner: &str,
    source: &str,
    key: &ResourceKey,
    replica: u32,
    spec_json: &str,
    spec_hash: &str,
    user_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = object_labels(owner, source, key, spec_json, spec_hash, user_labels);
    out.insert(labels::REPLICA.to_string(), replica.to_string());
    out
}

/// Labels of a network or volume created for a `Network`/`Volume` resource: the user's
/// (minus any under the reserved prefix) plus owner, source, resource, spec and spec hash.
pub fn object_labels(
    owner: &str,
    source: &str,
    key: &ResourceKey,
    spec_json: &str,
    spec_hash: &str,
    user_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = user_labels
        .iter()
        .filter(|(k, _)| !k.starts_with(labels::PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(labels::ownership(owner, source));
    out.insert(labels::RESOURCE.to_string(), key.to_string());
    out.insert(labels::SPEC.to_string(), spec_json.to_string());
    out.insert(labels::SPEC_HASH.to_string(), spec_hash.to_string());
    out
}

/// Canonical JSON of a network's or volume's configuration (see [`spec_json`]).
pub fn object_spec_json(config: &impl Serialize) -> String {
    serde_json::to_string(config)
        .unwrap_or_else(|e| format!("{{\"unserialisable\":{:?}}}", e.to_string()))
}

/// Lists whose entries are compared one by one (`env[2]`): entries there are independent
/// settings. Other lists (`cmd`, `ports`, ...) read better as a whole.
const ELEMENTWISE_LISTS: &[&str] = &[
    "env",
    "mounts",
    "files",
    "networkAliases",
    "extraNetworks",
    "ipam",
];
/// Maps compared key by key (`labels.tier`).
const KEYED_MAPS: &[&str] = &["labels", "options", "driverOptions"];

/// Placeholder for an absent value.
const ABSENT: &str = "-";

/// The fields that differ between two spec JSON texts, old → new, for `diff` output.
///
/// Top-level fields are compared in alphabetical order; `env`, `mounts`, `files` and
/// `networkAliases` element by element (`env[1]`), `labels` key by key (`labels.tier`).
/// Values are compact JSON (object keys sorted), `-` when absent. An old spec that does not
/// parse as a JSON object yields a single change `spec: (unreadable) → <new spec>`.
pub fn changed_fields(old_spec_json: &str, new_spec_json: &str) -> Vec<FieldChange> {
    let parse = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let (old, new) = match (parse(old_spec_json), parse(new_spec_json)) {
        (Some(old), Some(new)) => (old, new),
        (None, _) => {
            return vec![change(
                "spec",
                "(unreadable)".into(),
                new_spec_json.trim().to_string(),
            )]
        }
        (Some(_), None) => {
            return vec![change(
                "spec",
                old_spec_json.trim().to_string(),
                "(unreadable)".into(),
            )]
        }
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();

    let mut changes = Vec::new();
    for key in keys {
        let (o, n) = (old.get(key.as_str()), new.get(key.as_str()));
        if o == n {
            continue;
        }
        let is_list = |v: Option<&Value>| matches!(v, None | Some(Value::Array(_)));
        let is_map = |v: Option<&Value>| matches!(v, None | Some(Value::Object(_)));
        if ELEMENTWISE_LISTS.contains(&key.as_str()) && is_list(o) && is_list(n) {
            let (o, n) = (as_slice(o), as_slice(n));
            for i in 0..o.len().max(n.len()) {
                if o.get(i) != n.get(i) {
                    changes.push(change(
                        &format!("{key}[{i}]"),
                        render(o.get(i)),
                        render(n.get(i)),
                    ));
                }
            }
        } else if KEYED_MAPS.contains(&key.as_str()) && is_map(o) && is_map(n) {
            let empty = serde_json::Map::new();
            let as_map = |v: Option<&Value>| match v {
                Some(Value::Object(m)) => m.clone(),
                _ => empty.clone(),
            };
            let (o, n) = (as_map(o), as_map(n));
            let mut sub: Vec<&String> = o.keys().chain(n.keys()).collect();
            sub.sort();
            sub.dedup();
            for k in sub {
                if o.get(k) != n.get(k) {
                    changes.push(change(
                        &format!("{key}.{k}"),
                        render(o.get(k)),
                        render(n.get(k)),
                    ));
                }
            }
        } else {
            changes.push(change(key, render(o), render(n)));
        }
    }
    changes
}

fn as_slice(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn render(value: Option<&Value>) -> String {
    value.map_or_else(|| ABSENT.to_string(), Value::to_string)
}

fn change(field: &str, old: String, new: String) -> FieldChange {
    FieldChange {
        field: field.to_string(),
        old,
        new,
    }
}

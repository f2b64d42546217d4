//! Placement: which custom resources this node's agent runs. Pure (no client): the node's
//! name and labels come in as a [`NodeInfo`] that the controller keeps fresh from a watch on
//! its own Node object, so a relabelled node re-evaluates every resource.

use std::collections::BTreeMap;

use crate::api::ContainerSpec;

/// What placement needs to know about this agent's node. Owned by the controller context
/// (behind a lock, replaced whenever the Node object changes); read by every reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name` of the Node (the agent's `--node-name`).
    pub name: String,
    /// The Node's labels as last seen; empty until the Node has been read.
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// A node with the given name and labels.
    pub fn new(name: impl Into<String>, labels: BTreeMap<String, String>) -> Self {
        Self {
            name: name.into(),
            labels,
        }
    }
}

/// True when a resource with this `nodeName` and `nodeSelector` runs on `node`: `nodeName`
/// (if set) equals the node's name and every `nodeSelector` entry (if any) is one of the
/// node's labels. A resource with neither runs on every node.
pub fn placed_on(
    node_name: Option<&str>,
    node_selector: &BTreeMap<String, String>,
    node: &NodeInfo,
) -> bool {
    node_name.is_none_or(|n| n == node.name)
        && node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
}

/// [`placed_on`] for a `Container` spec.
pub fn container_placed(spec: &ContainerSpec, node: &NodeInfo) -> bool {
    placed_on(spec.node_name.as_deref(), &spec.node_selector, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn node() -> NodeInfo {
        NodeInfo::new("n1", labels(&[("zone", "a"), ("gpu", "true")]))
    }

    #[test]
    fn neither_field_means_every_node() {
        assert!(placed_on(None, &BTreeMap::new(), &node()));
        assert!(placed_on(
            None,
            &BTreeMap::new(),
            &NodeInfo::new("other", BTreeMap::new())
        ));
    }

    #[test]
    fn node_name_must_match() {
        assert!(placed_on(Some("n1"), &BTreeMap::new(), &node()));
        assert!(!placed_on(Some("n2"), &BTreeMap::new(), &node()));
    }

    #[test]
    fn selector_needs_every_label_with_its_value() {
        assert!(placed_on(None, &labels(&[("zone", "a")]), &node()));
        assert!(placed_on(
            None,
            &labels(&[("zone", "a"), ("gpu", "true")]),
            &node()
        ));
        assert!(!placed_on(None, &labels(&[("zone", "b")]), &node()));
        assert!(!placed_on(
            None,
            &labels(&[("zone", "a"), ("ssd", "true")]),
            &node()
        ));
    }

    #[test]
    fn both_fields_must_hold() {
        assert!(placed_on(Some("n1"), &labels(&[("zone", "a")]), &node()));
        assert!(!placed_on(Some("n1"), &labels(&[("zone", "b")]), &node()));
        assert!(!placed_on(Some("n2"), &labels(&[("zone", "a")]), &node()));
    }

    #[test]
    fn relabelling_changes_the_answer() {
        let selector = labels(&[("zone", "b")]);
        let mut n = node();
        assert!(!placed_on(None, &selector, &n));
        n.labels.insert("zone".into(), "b".into());
        assert!(placed_on(None, &selector, &n));
    }
}

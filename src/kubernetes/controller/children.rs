//! Which `Placement`s a parent should have, and what to change to get there. Pure: parents,
//! nodes and existing children come in; a [`ChildPlan`] goes out.
//!
//! - A `Container` is placed on the nodes its `nodeName` / `nodeSelector` match; an `Image`
//!   on every node (it is pulled or built wherever it may be needed).
//! - A child is (re)applied when it is missing or differs from what it should be (spec, the
//!   parent's generation, labels, owner): a parent that did not change costs no write.
//! - A child of a node the parent no longer matches is deleted; its node's agent removes the
//!   containers, then its finalizer. A child of a node that no longer exists also has the
//!   agent's finalizer released (no agent is left to do it).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::{
    node_label_value, placement_name, spec_hash, Container, Image, ParentReference, Placement,
    PlacementSpec, NODE_LABEL, PARENT_KIND_LABEL, PARENT_NAME_LABEL, SPEC_HASH_ANNOTATION,
};
use crate::kubernetes::placement::{container_placed, NodeInfo};
use crate::kubernetes::FINALIZER;

/// A parent resource as the controller reads it.
#[derive(Clone, Debug)]
pub enum ParentObject {
    /// A `Container` (boxed, as the `Image`: both are large).
    Container(Box<Container>),
    /// An `Image`.
    Image(Box<Image>),
}

impl ParentObject {
    /// `Container` or `Image`.
    pub fn kind(&self) -> &'static str {
        match self {
            ParentObject::Container(_) => "Container",
            ParentObject::Image(_) => "Image",
        }
    }

    /// The parent's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            ParentObject::Container(c) => &c.metadata,
            ParentObject::Image(i) => &i.metadata,
        }
    }

    /// True when the parent runs on `node`.
    pub fn placed_on(&self, node: &NodeInfo) -> bool {
        match self {
            ParentObject::Container(c) => container_placed(&c.spec, node),
            ParentObject::Image(_) => true,
        }
    }

    fn owner_reference(&self) -> Option<OwnerReference> {
        let meta = self.meta();
        Some(OwnerReference {
            api_version: match self {
                ParentObject::Container(_) => Container::api_version(&()).into_owned(),
                ParentObject::Image(_) => Image::api_version(&()).into_owned(),
            },
            kind: self.kind().to_string(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }

    /// The child this parent should have on `node`.
    pub fn child_for(&self, node: &str) -> Option<Placement> {
        let meta = self.meta();
        let name = meta.name.clone()?;
        let namespace = meta.namespace.clone()?;
        let spec = PlacementSpec {
            node_name: node.to_string(),
            parent: ParentReference {
                kind: self.kind().to_string(),
                name: name.clone(),
                uid: meta.uid.clone()?,
                generation: meta.generation,
            },
            container: match self {
                ParentObject::Container(c) => Some(c.spec.clone()),
                ParentObject::Image(_) => None,
            },
            image: match self {
                ParentObject::Image(i) => Some(i.spec.clone()),
                ParentObject::Container(_) => None,
            },
        };
        let labels = BTreeMap::from([
            (NODE_LABEL.to_string(), node_label_value(node)),
            (PARENT_KIND_LABEL.to_string(), self.kind().to_string()),
            (PARENT_NAME_LABEL.to_string(), parent_label_value(&name)),
        ]);
        let annotations = BTreeMap::from([(SPEC_HASH_ANNOTATION.to_string(), spec_hash(&spec))]);
        Some(Placement {
            metadata: ObjectMeta {
                name: Some(placement_name(self.kind(), &name, node)),
                namespace: Some(namespace),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![self.owner_reference()?]),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        })
    }
}

/// The value of [`PARENT_NAME_LABEL`]: the parent's name when it fits a label value, else a
/// hash of it (names may be 253 characters; label values 63).
pub fn parent_label_value(name: &str) -> String {
    node_label_value(name)
}

/// What to do about one parent's children.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildPlan {
    /// Children to create or update (server-side apply of the whole object).
    pub apply: Vec<Placement>,
    /// Names of children to delete (their node is no longer matched or no longer exists).
    pub delete: Vec<String>,
    /// Names of children whose agent finalizer the controller removes: their node is gone.
    pub release: Vec<String>,
    /// The nodes the parent is placed on, sorted.
    pub desired_nodes: Vec<String>,
}

/// The plan for `parent`, given every node and the parent's existing children (found by
/// owner uid). A parent being deleted gets no new children (garbage collection removes the
/// rest); finalizers of children on gone nodes are still released.
pub fn plan_children(
    parent: &ParentObject,
    nodes: &BTreeMap<String, NodeInfo>,
    existing: &[&Placement],
) -> ChildPlan {
    let deleting = parent.meta().deletion_timestamp.is_some();
    let desired_nodes: Vec<String> = if deleting {
        Vec::new()
    } else {
        nodes
            .values()
            .filter(|n| parent.placed_on(n))
            .map(|n| n.name.clone())
            .collect()
    };
    let wanted: BTreeSet<&str> = desired_nodes.iter().map(String::as_str).collect();
    let mut plan = ChildPlan::default();
    let mut have: BTreeMap<&str, &Placement> = BTreeMap::new();
    for child in existing {
        let node = child.spec.node_name.as_str();
        let name = child.name_any();
        let being_deleted = child.metadata.deletion_timestamp.is_some();
        if !nodes.contains_key(node) && has_agent_finalizer(child) {
            plan.release.push(name.clone());
        }
        if being_deleted {
            continue;
        }
        if !wanted.contains(node) && !deleting {
            plan.delete.push(name);
        } else {
            have.insert(node, child);
        }
    }
    for node in &desired_nodes {
        let Some(child) = parent.child_for(node) else {
            continue;
        };
        let current = have.get(node.as_str());
        if current.is_none_or(|c| !same_child(c, &child)) {
            plan.apply.push(child);
        }
    }
    plan.desired_nodes = desired_nodes;
    plan
}

fn has_agent_finalizer(child: &Placement) -> bool {
    child.finalizers().iter().any(|f| f == FINALIZER)
}

/// True when `current` already says all that `wanted` says (labels and owner references may
/// carry more than ours). The spec is compared by its hash annotation and parent reference:
/// the controller keeps its children without their specs (see [`strip_spec`]).
fn same_child(current: &Placement, wanted: &Placement) -> bool {
    let hash_holds = current.annotations().get(SPEC_HASH_ANNOTATION)
        == wanted.annotations().get(SPEC_HASH_ANNOTATION);
    let labels_hold = wanted
        .labels()
        .iter()
        .all(|(k, v)| current.labels().get(k) == Some(v));
    let owner_holds = wanted
        .owner_references()
        .iter()
        .all(|o| current.owner_references().contains(o));
    hash_holds
        && current.spec.parent == wanted.spec.parent
        && current.spec.node_name == wanted.spec.node_name
        && labels_hold
        && owner_holds
}

/// Drops the copy of the parent's spec from a child as the controller keeps it in memory
/// (the hash annotation stands for it): the controller's memory grows with the number of
/// children, not with the size of their specs.
pub fn strip_spec(child: &mut Placement) {
    child.spec.container = None;
    child.spec.image = None;
}

/// Drops from an object the controller caches what it never reads: the managed fields and
/// kubectl's last-applied copy of the whole object (often the larger part of a small one).
pub fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerSpec, ImageSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn node(name: &str, labels: &[(&str, &str)]) -> (String, NodeInfo) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (name.to_string(), NodeInfo::new(name, labels))
    }

    fn nodes() -> BTreeMap<String, NodeInfo> {
        BTreeMap::from([
            node("n1", &[("zone", "a")]),
            node("n2", &[("zone", "b")]),
            node("n3", &[("zone", "a")]),
        ])
    }

    fn container(selector: &[(&str, &str)], generation: i64) -> ParentObject {
        let mut c = Container::new(
            "web",
            ContainerSpec {
                image: "busybox".into(),
                node_selector: selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ContainerSpec::default()
            },
        );
        c.metadata.namespace = Some("apps".into());
        c.metadata.uid = Some("uid-web".into());
        c.metadata.generation = Some(generation);
        ParentObject::Container(Box::new(c))
    }

    fn applied(plan: &ChildPlan) -> Vec<String> {
        plan.apply
            .iter()
            .map(|p| p.spec.node_name.clone())
            .collect()
    }

    #[test]
    fn a_new_parent_gets_one_child_per_matching_node() {
        let parent = container(&[("zone", "a")], 1);
        let plan = plan_children(&parent, &nodes(), &[]);
        assert_eq!(applied(&plan), ["n1", "n3"]);
        assert_eq!(plan.desired_nodes, ["n1", "n3"]);
        assert!(plan.delete.is_empty() && plan.release.is_empty());
        let child = &plan.apply[0];
        assert_eq!(child.metadata.name.as_deref(), Some("container.web.n1"));
        assert_eq!(child.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(child.labels()[NODE_LABEL], "n1");
        assert_eq!(child.labels()[PARENT_NAME_LABEL], "web");
        let owner = &child.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Container", "uid-web")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(child.spec.parent.generation, Some(1));
        assert!(child.spec.container.is_some() && child.spec.image.is_none());
    }

    #[test]
    fn an_unchanged_parent_costs_nothing() {
        let parent = container(&[("zone", "a")], 1);
        let first = plan_children(&parent, &nodes(), &[]);
        let mut kept = first.apply.clone();
        kept.iter_mut().for_each(strip_spec);
        let existing: Vec<&Placement> = kept.iter().collect();
        let again = plan_children(&parent, &nodes(), &existing);
        assert_eq!(again.apply, Vec::<Placement>::new());
        assert!(again.delete.is_empty() && again.release.is_empty());
    }

    #[test]
    fn a_new_generation_reapplies_every_child() {
        let first = plan_children(&container(&[], 1), &nodes(), &[]);
        let existing: Vec<&Placement> = first.apply.iter().collect();
        let plan = plan_children(&container(&[], 2), &nodes(), &existing);
        assert_eq!(applied(&plan), ["n1", "n2", "n3"]);
        assert!(plan
            .apply
            .iter()
            .all(|p| p.spec.parent.generation == Some(2)));
    }

    #[test]
    fn relabelling_moves_the_child() {
        let parent = container(&[("zone", "a")], 1);
        let first = plan_children(&parent, &nodes(), &[]);
        let existing: Vec<&Placement> = first.apply.iter().collect();
        let mut relabelled = nodes();
        relabelled.insert("n1".into(), NodeInfo::new("n1", BTreeMap::new()));
        relabelled.insert(
            "n2".into(),
            NodeInfo::new("n2", BTreeMap::from([("zone".into(), "a".into())])),
        );
        let plan = plan_children(&parent, &relabelled, &existing);
        assert_eq!(applied(&plan), ["n2"]);
        assert_eq!(plan.delete, ["container.web.n1"]);
        assert!(
            plan.release.is_empty(),
            "n1 still exists: its agent cleans up"
        );
    }

    #[test]
    fn a_gone_node_has_its_child_deleted_and_released() {
        let parent = container(&[], 1);
        let mut first = plan_children(&parent, &nodes(), &[]);
        for child in &mut first.apply {
            child.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        let existing: Vec<&Placement> = first.apply.iter().collect();
        let mut fewer = nodes();
        fewer.remove("n2");
        let plan = plan_children(&parent, &fewer, &existing);
        assert!(plan.apply.is_empty());
        assert_eq!(plan.delete, ["container.web.n2"]);
        assert_eq!(plan.release, ["container.web.n2"]);
        // Once deleting, it is only released.
        first.apply[1].metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let existing: Vec<&Placement> = first.apply.iter().collect();
        let plan = plan_children(&parent, &fewer, &existing);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.release, ["container.web.n2"]);
    }

    #[test]
    fn a_deleting_parent_gets_nothing_new_and_deletes_nothing_itself() {
        let ParentObject::Container(mut c) = container(&[], 1) else {
            unreachable!()
        };
        c.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let plan = plan_children(&ParentObject::Container(c), &nodes(), &[]);
        assert_eq!(plan, ChildPlan::default());
    }

    #[test]
    fn images_go_to_every_node() {
        let mut image = Image::new(
            "base",
            ImageSpec {
                reference: "registry.local/base:1".into(),
                ..ImageSpec::default()
            },
        );
        image.metadata.namespace = Some("apps".into());
        image.metadata.uid = Some("uid-base".into());
        let plan = plan_children(&ParentObject::Image(Box::new(image)), &nodes(), &[]);
        assert_eq!(applied(&plan), ["n1", "n2", "n3"]);
        assert_eq!(
            plan.apply[0].metadata.name.as_deref(),
            Some("image.base.n1")
        );
        assert!(plan.apply[0].spec.image.is_some());
    }
}

//! A `Placement` as the parent-shaped object the desired-state builder reads: a `Container`
//! or `Image` named after the parent (Docker objects are named after it, so an upgrade from
//! agents that read the parents directly recreates nothing), with the parent's uid and
//! generation as its origin. Pure.

use kube::api::ObjectMeta;
use kube::ResourceExt;

use crate::api::{Container, Image, Placement};
use crate::desired::{Kind, ResourceKey};

/// The parent a `Placement` carries.
#[derive(Clone, Debug)]
pub enum Parent {
    /// A `Container` (boxed, as the `Image`: both are large).
    Container(Box<Container>),
    /// An `Image`.
    Image(Box<Image>),
}

impl Parent {
    /// The resource the parent declares.
    pub fn key(&self) -> ResourceKey {
        match self {
            Parent::Container(c) => key(Kind::Container, &c.metadata),
            Parent::Image(i) => key(Kind::Image, &i.metadata),
        }
    }
}

fn key(kind: Kind, meta: &ObjectMeta) -> ResourceKey {
    ResourceKey::new(
        kind,
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The resource a `Placement` is for, from its parent reference (whatever its spec holds).
pub fn resource_of(placement: &Placement) -> Option<ResourceKey> {
    let kind = match placement.spec.parent.kind.as_str() {
        "Container" => Kind::Container,
        "Image" => Kind::Image,
        _ => return None,
    };
    Some(ResourceKey::new(
        kind,
        placement.namespace().unwrap_or_default(),
        placement.spec.parent.name.clone(),
    ))
}

/// The parent of `placement`, or why it has none that can run.
pub fn parent_of(placement: &Placement) -> Result<Parent, String> {
    let parent = &placement.spec.parent;
    let metadata = ObjectMeta {
        name: Some(parent.name.clone()),
        namespace: placement.namespace(),
        uid: Some(parent.uid.clone()),
        generation: parent.generation,
        ..ObjectMeta::default()
    };
    match (
        parent.kind.as_str(),
        &placement.spec.container,
        &placement.spec.image,
    ) {
        ("Container", Some(spec), None) => Ok(Parent::Container(Box::new(Container {
            metadata,
            spec: spec.clone(),
            status: None,
        }))),
        ("Image", None, Some(spec)) => Ok(Parent::Image(Box::new(Image {
            metadata,
            spec: spec.clone(),
            status: None,
        }))),
        (kind, _, _) => Err(format!(
            "spec: a Placement of a {kind} must carry exactly the matching one of `container` and `image`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerSpec, ParentReference, PlacementSpec};

    fn placement(kind: &str, container: Option<ContainerSpec>) -> Placement {
        let mut p = Placement::new(
            "container.web.n1",
            PlacementSpec {
                node_name: "n1".into(),
                parent: ParentReference {
                    kind: kind.into(),
                    name: "web".into(),
                    uid: "u1".into(),
                    generation: Some(4),
                },
                container,
                image: None,
            },
        );
        p.metadata.namespace = Some("ns".into());
        p
    }

    #[test]
    fn a_container_placement_becomes_its_parent() {
        let spec = ContainerSpec {
            image: "busybox".into(),
            ..ContainerSpec::default()
        };
        let Ok(Parent::Container(c)) = parent_of(&placement("Container", Some(spec.clone())))
        else {
            panic!("not a container");
        };
        assert_eq!(c.metadata.name.as_deref(), Some("web"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(c.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(c.metadata.generation, Some(4));
        assert_eq!(c.spec, spec);
        assert_eq!(
            resource_of(&placement("Container", None)),
            Some(ResourceKey::new(Kind::Container, "ns", "web"))
        );
    }

    #[test]
    fn a_mismatched_placement_is_an_error() {
        assert!(parent_of(&placement("Image", Some(ContainerSpec::default()))).is_err());
        assert!(parent_of(&placement("Container", None)).is_err());
        assert_eq!(resource_of(&placement("Volume", None)), None);
    }
}

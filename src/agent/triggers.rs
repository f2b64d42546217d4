//! Which Docker events need a pass. Container events arrive already filtered to this owner;
//! image events cannot be (the daemon filters them by the image's labels, and most images
//! carry none of ours), so on a shared daemon — a CI host running `docker build -t` all day —
//! every foreign image event would cost a pass: three list calls for nothing. Only these count:
//! - the deletion or untag of an image that a managed container runs, a declared reference
//!   resolves to, or dockwright made or pulled (an untag names no reference, only the ID);
//! - a tag or pull of a declared reference (it may now point elsewhere);
//! - loads and imports (they name no reference we could check).
//!
//! Before the first pass nothing is known and everything counts. Pure; owned by the agent loop
//! (and by the Kubernetes controllers, which apply the same rule).

use std::collections::BTreeSet;

use crate::desired::DesiredState;
use crate::docker::DaemonEvent;
use crate::observed::ObservedState;
use crate::reference::Reference;

/// The image IDs and references whose changes matter, as of the last pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInterest {
    /// False until the first pass: then every event counts.
    known: bool,
    ids: BTreeSet<String>,
    /// Declared references, canonical.
    references: BTreeSet<String>,
    /// Repositories of the declared digest references: a tag or pull in one of them may bring
    /// the digest in.
    pinned_repositories: BTreeSet<String>,
}

impl ImageInterest {
    /// The images `desired` resolves to in `observed`, the images managed containers run, and
    /// the images `owner` built, tagged or pulled.
    pub fn of(desired: &DesiredState, observed: &ObservedState, owner: &str) -> Self {
        let images = &observed.images;
        let references = desired
            .images
            .values()
            .flat_map(|i| std::iter::once(&i.reference).chain(&i.tags))
            .chain(desired.containers.values().map(|c| &c.image.reference));
        let references: BTreeSet<String> = references.cloned().collect();
        let pinned_repositories = references
            .iter()
            .filter_map(|r| Reference::parse(r).ok())
            .filter(Reference::is_pinned)
            .map(|r| r.repository())
            .collect();
        let ids = references
            .iter()
            .filter_map(|r| images.resolve(r).map(str::to_string))
            .chain(observed.containers.iter().map(|c| c.image_id.clone()))
            .chain(
                images
                    .by_id
                    .values()
                    .filter(|i| i.owner.as_deref() == Some(owner))
                    .map(|i| i.id.clone()),
            )
            .chain(images.records.iter().map(|r| r.id.clone()))
            .map(|id| bare(&id).to_string())
            .collect();
        Self {
            known: true,
            ids,
            references,
            pinned_repositories,
        }
    }

    /// Whether `event` may change what the next pass plans.
    pub fn wants(&self, event: &DaemonEvent) -> bool {
        let DaemonEvent::Image {
            id,
            action,
            reference,
        } = event
        else {
            return true;
        };
        if !self.known {
            return true;
        }
        match (action.as_str(), reference) {
            ("delete" | "untag", _) => self.ids.contains(bare(id)),
            ("tag" | "pull", Some(reference)) => match Reference::parse(reference) {
                Ok(parsed) => {
                    self.pinned_repositories.contains(&parsed.repository())
                        || crate::reference::canonicalize(reference)
                            .is_ok_and(|canonical| self.references.contains(&canonical))
                }
                Err(_) => true,
            },
            _ => true,
        }
    }
}

/// An image ID without its `sha256:` prefix (events and lists do not always agree).
fn bare(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::desired::ResourceKey;
    use crate::observed::{ObservedContainer, ObservedImage, RunState};

    const MANIFESTS: &str = "\
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata: { name: web }
spec:
  image: example.com/team/web:1
---
apiVersion: dockwright.dev/v1alpha1
kind: Image
metadata: { name: tool }
spec:
  ref: example.com/team/tool:2
  tags: [example.com/team/tool:latest]
";

    fn desired() -> DesiredState {
        let manifests = crate::source::parse_str(MANIFESTS, Path::new("t.yaml")).unwrap();
        crate::source::build_desired(&manifests).unwrap()
    }

    fn image(id: &str, owner: &str) -> ObservedImage {
        ObservedImage {
            id: id.into(),
            owner: Some(owner.into()),
            ..ObservedImage::default()
        }
    }

    fn observed() -> ObservedState {
        let mut state = ObservedState::default();
        let images = &mut state.images;
        for (reference, id) in [
            ("example.com/team/web:1", "sha256:web"),
            ("example.com/team/tool:latest", "sha256:tooltag"),
            ("example.com/other/thing:9", "sha256:foreign"),
        ] {
            images.by_reference.insert(reference.into(), id.into());
        }
        images
            .by_id
            .insert("sha256:mine".into(), image("sha256:mine", "me"));
        images
            .by_id
            .insert("sha256:theirs".into(), image("sha256:theirs", "you"));
        state.containers.push(ObservedContainer {
            id: "c1".into(),
            name: "old".into(),
            resource: ResourceKey::parse("Container/default/old"),
            replica: None,
            spec_hash: None,
            spec: None,
            source: None,
            state: RunState::Running,
            health: None,
            exit_code: None,
            image_id: "sha256:running".into(),
            image: "example.com/team/old:1".into(),
            ports: Vec::new(),
            created: 0,
            status: String::new(),
        });
        state
    }

    fn event(action: &str, id: &str) -> DaemonEvent {
        DaemonEvent::Image {
            id: id.into(),
            action: action.into(),
            reference: None,
        }
    }

    fn named(action: &str, reference: &str) -> DaemonEvent {
        DaemonEvent::Image {
            id: "sha256:whatever".into(),
            action: action.into(),
            reference: Some(reference.into()),
        }
    }

    #[test]
    fn removals_of_our_images_count_and_foreign_ones_do_not() {
        let interest = ImageInterest::of(&desired(), &observed(), "me");
        for ours in [
            "sha256:web",
            "sha256:tooltag",
            "sha256:running",
            "sha256:mine",
            "web",
        ] {
            assert!(interest.wants(&event("delete", ours)), "{ours}");
            assert!(interest.wants(&event("untag", ours)), "{ours}");
        }
        for foreign in ["sha256:foreign", "sha256:theirs", "sha256:never-seen"] {
            assert!(!interest.wants(&event("delete", foreign)), "{foreign}");
            assert!(!interest.wants(&event("untag", foreign)), "{foreign}");
        }
    }

    #[test]
    fn tags_and_pulls_count_only_for_declared_references() {
        let interest = ImageInterest::of(&desired(), &observed(), "me");
        for action in ["tag", "pull"] {
            // Familiar or canonical, any declared reference or extra tag.
            for ours in [
                "example.com/team/web:1",
                "example.com/team/tool:2",
                "example.com/team/tool:latest",
            ] {
                assert!(interest.wants(&named(action, ours)), "{action} {ours}");
            }
            for foreign in ["example.com/team/web:2", "busybox", "127.0.0.1:5000/x/y:1"] {
                assert!(
                    !interest.wants(&named(action, foreign)),
                    "{action} {foreign}"
                );
            }
            // No reference (or none we can read): it counts.
            assert!(interest.wants(&event(action, "sha256:foreign")), "{action}");
            assert!(
                interest.wants(&named(action, "Not A Reference")),
                "{action}"
            );
        }
    }

    #[test]
    fn a_tag_or_pull_in_the_repository_of_a_declared_digest_counts() {
        let pinned = "example.com/team/db@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let manifests = format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{ name: db }}\nspec:\n  image: {pinned}\n"
        );
        let manifests = crate::source::parse_str(&manifests, Path::new("t.yaml")).unwrap();
        let desired = crate::source::build_desired(&manifests).unwrap();
        let interest = ImageInterest::of(&desired, &ObservedState::default(), "me");
        // Pulling any tag of the repository may bring the pinned digest in.
        assert!(interest.wants(&named("pull", "example.com/team/db:5")));
        assert!(interest.wants(&named("tag", "example.com/team/db:latest")));
        assert!(!interest.wants(&named("pull", "example.com/team/web:5")));
    }

    #[test]
    fn loads_imports_and_container_events_always_count() {
        let interest = ImageInterest::of(&desired(), &observed(), "me");
        for action in ["load", "import"] {
            assert!(interest.wants(&event(action, "sha256:foreign")), "{action}");
        }
        assert!(interest.wants(&DaemonEvent::Connected));
        assert!(interest.wants(&DaemonEvent::Container {
            resource: None,
            id: "x".into(),
            action: "die".into(),
        }));
        // Before the first pass nothing is known: everything counts.
        let unknown = ImageInterest::default();
        assert!(unknown.wants(&named("tag", "busybox")));
        assert!(unknown.wants(&event("delete", "sha256:foreign")));
    }
}

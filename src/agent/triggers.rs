//! Which Docker events need a pass. Container events arrive already filtered to this owner;
//! image events cannot be (the daemon filters them by the image's labels, and most images
//! carry none of ours), so on a shared daemon every foreign `docker rmi` used to cost a pass:
//! three list calls for nothing. The deletion or untag of an image that no managed container
//! runs, no declared reference resolves to and dockwright did not make or pull cannot change
//! the plan, so it waits for the next real trigger. Tags, pulls, loads and imports may make a
//! declared reference point elsewhere: they always count. Pure; owned by the agent loop.

use std::collections::BTreeSet;

use crate::desired::DesiredState;
use crate::docker::DaemonEvent;
use crate::observed::ObservedState;

/// The image IDs whose deletion or untag matters, as of the last pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ImageInterest {
    ids: BTreeSet<String>,
}

impl ImageInterest {
    /// The images `desired` resolves to in `observed`, the images managed containers run, and
    /// the images `owner` built, tagged or pulled.
    pub(super) fn of(desired: &DesiredState, observed: &ObservedState, owner: &str) -> Self {
        let images = &observed.images;
        let references = desired
            .images
            .values()
            .flat_map(|i| std::iter::once(&i.reference).chain(&i.tags))
            .chain(desired.containers.values().map(|c| &c.image.reference));
        let ids = references
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
        Self { ids }
    }

    /// Whether `event` may change what the next pass plans.
    pub(super) fn wants(&self, event: &DaemonEvent) -> bool {
        match event {
            DaemonEvent::Image { id, action } if action == "delete" || action == "untag" => {
                self.ids.contains(bare(id))
            }
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
    fn tags_pulls_and_container_events_always_count() {
        let interest = ImageInterest::of(&desired(), &observed(), "me");
        for action in ["tag", "pull", "load", "import"] {
            assert!(interest.wants(&event(action, "sha256:foreign")), "{action}");
        }
        assert!(interest.wants(&DaemonEvent::Connected));
        assert!(interest.wants(&DaemonEvent::Container {
            resource: None,
            id: "x".into(),
            action: "die".into(),
        }));
        // Before the first pass nothing is known: everything counts.
        assert!(ImageInterest::default().wants(&event("tag", "sha256:foreign")));
    }
}

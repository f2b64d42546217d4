//! Creates a crash may have left half done. Files are copied into a container between its
//! create and its first start, and no label can record that the copy finished (labels are
//! fixed at create), so a managed container that was never started may lack its files.
//!
//! Decision: such a container is never started as it is. When its resource should run and the
//! container has the desired spec, the planner treats the replica as missing and plans its
//! create and start again; the runner's create meets the name taken (409) by this very
//! container (same owner, resource, replica and spec hash), adopts it, copies the files again
//! (the same bytes: harmless) and the start follows. Nothing is removed, so a second
//! dockwright process of the same owner that is creating the container at this moment is not
//! disturbed. A container with another spec is recreated as usual; a `Stopped` resource keeps
//! it (nothing starts it). Containers without files have nothing to miss and are started.

use super::hash::{spec_hash, spec_json};
use super::images::ImageStatus;
use crate::api::DesiredRunState;
use crate::desired::DesiredContainer;
use crate::observed::{ObservedContainer, RunState};

/// True when `c` (a container of `d`, whose image is `image`) must be created again — that is,
/// adopted and have its files copied — rather than started.
pub(super) fn must_recreate_files(
    c: &ObservedContainer,
    d: &DesiredContainer,
    image: Option<&ImageStatus>,
) -> bool {
    if c.state != RunState::Created
        || d.config.files.is_empty()
        || d.state != DesiredRunState::Running
    {
        return false;
    }
    match image {
        Some(ImageStatus::Present(id)) => {
            c.spec_hash.as_deref() == Some(spec_hash(&spec_json(&d.config, id)).as_str())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::desired::ContainerFile;
    use crate::observed::RunState;
    use crate::plan::testutil::*;
    use crate::plan::{plan, Action};

    fn with_files(d: crate::desired::DesiredContainer) -> crate::desired::DesiredContainer {
        d.with_config(|c| {
            c.files = vec![ContainerFile {
                path: "/etc/app.conf".into(),
                mode: 0o644,
                digest: "sha256:00".into(),
                content: Arc::new(b"x".to_vec()),
            }]
        })
    }

    #[test]
    fn a_never_started_container_with_files_is_created_again_not_started_nor_removed() {
        let d = with_files(container("web"));
        let plan = plan(
            &desired([d.clone()]),
            &observed([matching(&d, 0, IMAGE_ID).state(RunState::Created)]),
            &options(),
        );
        assert_eq!(lines(&plan), ["create web", "start web"]);
        assert!(depends_on(
            &plan,
            find(&plan, "start web"),
            find(&plan, "create web")
        ));
        let Action::CreateContainer(spec) = &plan.actions[find(&plan, "create web")].action else {
            panic!("not a create");
        };
        // The create must carry the very labels the observed container has, so that the
        // runner recognises it as its own on the 409.
        let observed = matching(&d, 0, IMAGE_ID);
        assert_eq!(
            spec.labels.get(crate::labels::SPEC_HASH),
            observed.spec_hash.as_ref()
        );
    }

    #[test]
    fn without_files_it_is_started() {
        let d = container("web");
        let plan = plan(
            &desired([d.clone()]),
            &observed([matching(&d, 0, IMAGE_ID).state(RunState::Created)]),
            &options(),
        );
        assert_eq!(lines(&plan), ["start web"]);
    }

    #[test]
    fn with_another_spec_it_is_recreated_as_usual() {
        let d = with_files(container("web"));
        let old = matching(&d, 0, "sha256:0000").state(RunState::Created);
        let plan = plan(&desired([d.clone()]), &observed([old]), &options());
        let lines = lines(&plan);
        // Replaced (directly, or rolled through a kept `_prev` name): created anew, and the
        // old one removed.
        assert!(lines.contains(&"create web".to_string()), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("remove web")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_stopped_resource_keeps_it_and_a_started_one_is_kept() {
        let stopped = with_files(container("web")).stopped();
        let plan_stopped = plan(
            &desired([stopped.clone()]),
            &observed([matching(&stopped, 0, IMAGE_ID).state(RunState::Created)]),
            &options(),
        );
        assert!(
            plan_stopped.actions.is_empty(),
            "{:?}",
            lines(&plan_stopped)
        );
        let d = with_files(container("web"));
        for state in [RunState::Running, RunState::Exited] {
            let p = plan(
                &desired([d.clone()]),
                &observed([matching(&d, 0, IMAGE_ID).state(state)]),
                &options(),
            );
            assert!(
                !lines(&p)
                    .iter()
                    .any(|l| l.starts_with("remove") || l.starts_with("create")),
                "{state:?}: {:?}",
                lines(&p)
            );
        }
    }

    #[test]
    fn each_replica_is_judged_on_its_own() {
        let d = with_files(container("web")).replicas(3);
        let plan = plan(
            &desired([d.clone()]),
            &observed([
                matching(&d, 0, IMAGE_ID),
                matching(&d, 1, IMAGE_ID).state(RunState::Created),
                matching(&d, 2, IMAGE_ID),
            ]),
            &options(),
        );
        assert_eq!(lines(&plan), ["create web-1", "start web-1"]);
    }
}

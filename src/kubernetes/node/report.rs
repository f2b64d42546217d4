//! After each pass of the agent loop: the status of every `Placement` of this node, written
//! only when it changed (one merge patch of the status subresource each), a Warning event
//! when one turns `Degraded`, and the finalizer of a deleted `Placement` let go once the
//! node's containers of it are gone.
//!
//! What each status says ([`progress_of`], pure): the loop's own view of the resource (its
//! `/state` phase, what it waits on, its last error), or why the feed holds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};

use super::feed::{key_of, Fed, Hold, PlacementObject};
use crate::agent::{PassReport, ResourceStatus};
use crate::api::{Placement, PlacementStatus};
use crate::desired::{Kind, ResourceKey};
use crate::kubernetes::status::{self, Progress, Subject};
use crate::kubernetes::{Error, FINALIZER};

/// How a resource stands, from the loop's status entry or the feed's hold; `None` when there
/// is nothing to report yet (no pass has seen it, or it waits for the finalizer).
pub fn progress_of(resource: Option<&ResourceStatus>, hold: Option<&Hold>) -> Option<Progress> {
    match hold {
        Some(Hold::AwaitingFinalizer) => return None,
        Some(Hold::Invalid(m)) => return Some(Progress::Invalid(m.clone())),
        Some(Hold::Secret(m)) => return Some(Progress::Failed("Held", m.clone())),
        None => {}
    }
    let r = resource?;
    let waiting = r
        .waiting_on
        .iter()
        .map(|w| w.strip_prefix("blocked: ").unwrap_or(w))
        .collect::<Vec<_>>()
        .join("; ");
    Some(match r.phase.as_str() {
        "Ready" => Progress::Converged,
        "Failed" => Progress::Failed(
            "ActionFailed",
            r.last_error.clone().unwrap_or_else(|| "failed".into()),
        ),
        "Blocked" => Progress::Failed("Blocked", waiting),
        _ if waiting.is_empty() => Progress::Waiting("Converging", "actions in flight".into()),
        _ => Progress::Waiting("Converging", waiting),
    })
}

/// The status `placement` should have after `report`, or `None` to leave it as it is.
pub fn status_of(
    placement: &Placement,
    key: &ResourceKey,
    report: &PassReport,
    resources: &BTreeMap<String, &ResourceStatus>,
    hold: Option<&Hold>,
    now: &str,
) -> Option<PlacementStatus> {
    // A pass that planned from an older copy of the parent says nothing about this one: the
    // report may predate the spec the store holds now (the feed moved, no pass ran yet).
    if let Some(planned) = planned_parent_generation(report, key) {
        if planned != placement.spec.parent.generation {
            return None;
        }
    }
    let progress = progress_of(resources.get(&key.to_string()).copied(), hold)?;
    let subject = Subject {
        key,
        generation: placement.metadata.generation,
        parent_generation: placement.spec.parent.generation,
    };
    let previous = placement.status.as_ref();
    Some(match key.kind {
        Kind::Image => status::image_status(
            subject,
            report.desired.images.get(key),
            &report.observed,
            &progress,
            previous,
            now,
        ),
        _ => status::container_status(
            subject,
            report.desired.containers.get(key),
            &report.observed,
            &BTreeMap::new(),
            &progress,
            previous,
            now,
        ),
    })
}

/// The parent generation the pass planned `key` from, when it planned it at all.
fn planned_parent_generation(report: &PassReport, key: &ResourceKey) -> Option<Option<i64>> {
    let origin = match key.kind {
        Kind::Image => &report.desired.images.get(key)?.origin,
        _ => &report.desired.containers.get(key)?.origin,
    };
    match origin {
        crate::desired::Origin::Kubernetes { generation, .. } => Some(*generation),
        crate::desired::Origin::File { .. } => None,
    }
}

/// True when the node's containers of `key` are gone and the pass no longer declares it:
/// the finalizer of its deleted `Placement` can go.
pub fn released(key: &ResourceKey, report: &PassReport) -> bool {
    !report.desired.containers.contains_key(key)
        && !report.desired.images.contains_key(key)
        && !report
            .observed
            .containers
            .iter()
            .any(|c| c.resource.as_ref() == Some(key))
}

/// Writes what one pass found.
pub struct Reporter {
    client: Client,
    recorder: Recorder,
    field_manager: String,
}

impl Reporter {
    /// A reporter writing as `field_manager` and publishing events with `recorder`.
    pub fn new(client: Client, recorder: Recorder, field_manager: String) -> Self {
        Self {
            client,
            recorder,
            field_manager,
        }
    }

    /// Statuses, events and finalizers of `placements` after `report`.
    pub async fn report(
        &self,
        placements: &[Arc<PlacementObject>],
        report: &PassReport,
        fed: &Fed,
        now: &str,
    ) {
        let resources: BTreeMap<String, &ResourceStatus> = report
            .status
            .resources
            .iter()
            .map(|r| (r.resource.clone(), r))
            .collect();
        for object in placements {
            let Ok(placement) = &object.0 else {
                continue; // a malformed Placement's status cannot be read back; the loop holds it
            };
            let Some(key) = key_of(object) else { continue };
            let result = if placement.metadata.deletion_timestamp.is_some() {
                self.release(placement, &key, report).await
            } else {
                match status_of(placement, &key, report, &resources, fed.held.get(&key), now) {
                    Some(next) if placement.status.as_ref() != Some(&next) => {
                        self.write(placement, &key, next).await
                    }
                    _ => Ok(()),
                }
            };
            if let Err(error) = result {
                tracing::warn!(resource = %key, placement = %placement.name_any(), %error, "could not report on the Placement");
            }
        }
    }

    async fn write(
        &self,
        placement: &Placement,
        key: &ResourceKey,
        next: PlacementStatus,
    ) -> Result<(), Error> {
        let degraded = |s: Option<&PlacementStatus>| {
            s.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
                .filter(|c| c.status == "True")
                .map(|c| (c.reason.clone(), c.message.clone()))
        };
        let newly_degraded = match (degraded(placement.status.as_ref()), degraded(Some(&next))) {
            (before, Some(now)) if before.as_ref() != Some(&now) => Some(now),
            _ => None,
        };
        let api: Api<Placement> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = PatchParams::apply(&self.field_manager);
        api.patch_status(
            &placement.name_any(),
            &params,
            &Patch::Merge(&status::status_patch(&next)),
        )
        .await?;
        tracing::debug!(resource = %key, "placement status written");
        if let Some((reason, message)) = newly_degraded {
            let event = Event {
                type_: EventType::Warning,
                reason: reason.unwrap_or_else(|| "Degraded".into()),
                note: message.map(|m| truncate(m, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(error) = self
                .recorder
                .publish(&event, &placement.object_ref(&()))
                .await
            {
                tracing::warn!(resource = %key, %error, "could not publish event");
            }
        }
        Ok(())
    }

    async fn release(
        &self,
        placement: &Placement,
        key: &ResourceKey,
        report: &PassReport,
    ) -> Result<(), Error> {
        let finalizers = placement.finalizers();
        let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
            return Ok(());
        };
        if !released(key, report) {
            return Ok(());
        }
        remove_finalizer(&self.client, placement, index).await?;
        tracing::info!(resource = %key, placement = %placement.name_any(), "containers removed; finalizer released");
        Ok(())
    }
}

/// Removes the finalizer at `index` with a JSON patch that first tests it is still there (a
/// concurrent change fails the patch rather than removing someone else's).
pub async fn remove_finalizer(
    client: &Client,
    placement: &Placement,
    index: usize,
) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]))
    .map_err(|_| Error::Unnamed("valid finalizer patch"))?;
    let namespace = placement.namespace().ok_or(Error::Unnamed("namespace"))?;
    let api: Api<Placement> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &placement.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(phase: &str, waiting: &[&str], error: Option<&str>) -> ResourceStatus {
        ResourceStatus {
            resource: "Container/ns/web".into(),
            phase: phase.into(),
            waiting_on: waiting.iter().map(|s| s.to_string()).collect(),
            last_error: error.map(str::to_string),
            ..ResourceStatus::default()
        }
    }

    #[test]
    fn phases_become_progress() {
        assert_eq!(
            progress_of(Some(&resource("Ready", &[], None)), None),
            Some(Progress::Converged)
        );
        assert_eq!(
            progress_of(Some(&resource("Failed", &[], Some("pull: denied"))), None),
            Some(Progress::Failed("ActionFailed", "pull: denied".into()))
        );
        assert_eq!(
            progress_of(
                Some(&resource("Blocked", &["blocked: refused by policy"], None)),
                None
            ),
            Some(Progress::Failed("Blocked", "refused by policy".into()))
        );
        assert_eq!(
            progress_of(
                Some(&resource("Progressing", &["start web (missing)"], None)),
                None
            ),
            Some(Progress::Waiting(
                "Converging",
                "start web (missing)".into()
            ))
        );
        assert_eq!(progress_of(None, None), None, "not seen by a pass yet");
    }

    #[test]
    fn holds_win_over_the_loop() {
        let ready = resource("Ready", &[], None);
        assert_eq!(
            progress_of(Some(&ready), Some(&Hold::Invalid("bad".into()))),
            Some(Progress::Invalid("bad".into()))
        );
        assert_eq!(
            progress_of(Some(&ready), Some(&Hold::Secret("no key".into()))),
            Some(Progress::Failed("Held", "no key".into()))
        );
        assert_eq!(
            progress_of(Some(&ready), Some(&Hold::AwaitingFinalizer)),
            None
        );
    }

    #[test]
    fn released_only_when_undeclared_and_gone() {
        use crate::desired::DesiredState;
        use crate::observed::ObservedState;
        let key = ResourceKey::new(Kind::Container, "ns", "web");
        let report = |observed: ObservedState| PassReport {
            desired: Arc::new(DesiredState::default()),
            observed: Arc::new(observed),
            status: Arc::default(),
        };
        assert!(released(&key, &report(ObservedState::default())));
        let mut observed = ObservedState::default();
        observed
            .containers
            .push(crate::observed::ObservedContainer {
                id: "c1".into(),
                name: "web".into(),
                resource: Some(key.clone()),
                replica: None,
                spec_hash: None,
                spec: None,
                source: None,
                state: crate::observed::RunState::Running,
                health: None,
                exit_code: None,
                image_id: String::new(),
                image: String::new(),
                ports: Vec::new(),
                created: 0,
                status: String::new(),
            });
        assert!(!released(&key, &report(observed)));
    }
}

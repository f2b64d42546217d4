//! The status of a `Placement` (one resource on one node), for a `Container` and for an
//! `Image`, and the patch that writes it. Pure: the node agent passes what it observed, how
//! the last pass went, the status it last wrote and the time; nothing here talks to the API
//! server.
//!
//! Conditions per node: `Ready` (every desired replica ready; for an `Image`, the image is
//! present and nothing is left to do), `Progressing` (work left that is waiting: a pull, a
//! dependency, a replica still starting), `Degraded` (an action failed or the spec is
//! invalid). `lastTransitionTime` is kept from the previous entry while a
//! condition's status stays the same, so an unchanged entry is byte-for-byte unchanged and the
//! controller skips the patch.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::{Condition, DesiredRunState, PlacementStatus, ReplicaStatus, RestartPolicy};
use crate::desired::{DesiredContainer, DesiredImage, ResourceKey};
use crate::observed::{HealthState, ObservedContainer, ObservedState, RunState};

/// How the last reconcile of an object went on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do.
    Converged,
    /// Work remains that waits for something (reason, message).
    Waiting(&'static str, String),
    /// An action failed (reason, message).
    Failed(&'static str, String),
    /// The spec cannot be run (message).
    Invalid(String),
}

/// True when an observed replica counts as ready for `desired`.
fn replica_ready(desired: &DesiredContainer, c: &ObservedContainer) -> bool {
    match desired.state {
        DesiredRunState::Stopped => c.state != RunState::Running,
        DesiredRunState::Running if desired.restart_policy == RestartPolicy::Never => {
            c.state == RunState::Running || (c.state == RunState::Exited && c.exit_code == Some(0))
        }
        DesiredRunState::Running => {
            c.state == RunState::Running && c.health.is_none_or(|h| h == HealthState::Healthy)
        }
    }
}

pub(crate) fn condition(
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &str,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_transition_time: Some(last),
        observed_generation: generation,
    }
}

/// Which resource, from which `Placement` generation and parent generation.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The resource (the parent's kind, namespace and name).
    pub key: &'a ResourceKey,
    /// The `Placement`'s `metadata.generation`.
    pub generation: Option<i64>,
    /// The parent generation the `Placement` carries.
    pub parent_generation: Option<i64>,
}

/// The status of a `Container`'s `Placement`: its replicas as observed (restart counts from
/// `restarts`, by container ID; a replica missing there has none), and conditions from
/// `progress`. `desired` is `None` when the object could not be normalised.
pub fn container_status(
    subject: Subject<'_>,
    desired: Option<&DesiredContainer>,
    observed: &ObservedState,
    restarts: &BTreeMap<String, i64>,
    progress: &Progress,
    previous: Option<&PlacementStatus>,
    now: &str,
) -> PlacementStatus {
    let Subject {
        key,
        generation,
        parent_generation,
    } = subject;
    let mut mine: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| c.resource.as_ref() == Some(key))
        .collect();
    mine.sort_by(|a, b| (a.replica, &a.name).cmp(&(b.replica, &b.name)));
    let want = desired.map_or(0, |d| d.replicas);
    let ready = desired.map_or(0, |d| {
        mine.iter().filter(|c| replica_ready(d, c)).count() as u32
    });
    let all_ready = desired.is_some() && ready >= want && mine.len() as u32 == want;
    let (ready_reason, ready_message) = if all_ready {
        ("ReplicasReady", format!("{ready}/{want} replicas ready"))
    } else {
        ("ReplicasNotReady", format!("{ready}/{want} replicas ready"))
    };
    let ((progressing, p_reason, p_message), (degraded, d_reason, d_message)) =
        progress_conditions(progress, !all_ready);
    let last_error = last_error(progress);
    let previous = previous.map_or(&[][..], |p| p.conditions.as_slice());
    PlacementStatus {
        observed_generation: generation,
        parent_generation,
        ready_replicas: Some(format!("{ready}/{want}")),
        conditions: vec![
            condition(
                "Ready",
                all_ready,
                ready_reason,
                &ready_message,
                generation,
                previous,
                now,
            ),
            condition(
                "Progressing",
                progressing,
                p_reason,
                p_message,
                generation,
                previous,
                now,
            ),
            condition(
                "Degraded", degraded, d_reason, d_message, generation, previous, now,
            ),
        ],
        replicas: mine
            .into_iter()
            .map(|c| ReplicaStatus {
                // Not in the list call the observation is made of: the controller reads it by
                // inspect, cached (see `crate::docker::RestartCounts`), and passes what it knows.
                restart_count: restarts.get(&c.id).copied(),
                ..c.replica_status()
            })
            .collect(),
        last_error,
        waiting_on: waiting_on(progress),
        ..PlacementStatus::default()
    }
}

/// `Progressing` and `Degraded` from how the reconcile went, for entries of either kind:
/// `(progressing, reason, message)` each. `settling` is work the reconcile itself does not
/// report (replicas still starting).
fn progress_conditions(
    progress: &Progress,
    settling: bool,
) -> ((bool, &str, &str), (bool, &str, &str)) {
    let progressing = match progress {
        Progress::Waiting(reason, message) => (true, *reason, message.as_str()),
        Progress::Converged if settling => (true, "ReplicasStarting", ""),
        _ => (false, "Idle", ""),
    };
    let degraded = match progress {
        Progress::Failed(reason, message) => (true, *reason, message.as_str()),
        Progress::Invalid(message) => (true, "InvalidSpec", message.as_str()),
        _ => (false, "AsExpected", ""),
    };
    (progressing, degraded)
}

fn last_error(progress: &Progress) -> Option<String> {
    match progress {
        Progress::Failed(_, m) | Progress::Invalid(m) => Some(m.clone()),
        _ => None,
    }
}

/// The status of an `Image`'s `Placement`: the local image its reference resolves to (ID, and the
/// digest it carries in the reference's repository), and conditions from `progress`. `Ready`
/// means present and nothing left to do. `desired` is `None` when the object could not be
/// normalised.
pub fn image_status(
    subject: Subject<'_>,
    desired: Option<&DesiredImage>,
    observed: &ObservedState,
    progress: &Progress,
    previous: Option<&PlacementStatus>,
    now: &str,
) -> PlacementStatus {
    let Subject {
        generation,
        parent_generation,
        ..
    } = subject;
    let local = desired.and_then(|d| {
        let image = observed.images.image_for(&d.reference)?;
        let digest = match crate::reference::Reference::parse(&d.reference) {
            Ok(r) if r.digest.is_some() => r.digest,
            Ok(r) => image.digest_in(&r.repository()).map(str::to_string),
            Err(_) => None,
        };
        Some((image.id.clone(), digest))
    });
    let ready = local.is_some() && *progress == Progress::Converged;
    let (ready_reason, ready_message) = match (&local, progress) {
        (Some(_), Progress::Converged) => ("Present", String::new()),
        (Some(_), _) => (
            "Pending",
            "present; work is left (see Progressing and Degraded)".into(),
        ),
        (None, _) => ("NotPresent", "the image is not on this node".into()),
    };
    let (p, d) = progress_conditions(progress, false);
    let previous_conditions = previous.map_or(&[][..], |p| p.conditions.as_slice());
    let conditions = vec![
        condition(
            "Ready",
            ready,
            ready_reason,
            &ready_message,
            generation,
            previous_conditions,
            now,
        ),
        condition(
            "Progressing",
            p.0,
            p.1,
            p.2,
            generation,
            previous_conditions,
            now,
        ),
        condition(
            "Degraded",
            d.0,
            d.1,
            d.2,
            generation,
            previous_conditions,
            now,
        ),
    ];
    let (image_id, digest) = local.unzip();
    PlacementStatus {
        observed_generation: generation,
        parent_generation,
        conditions,
        image_id,
        digest: digest.flatten(),
        last_error: last_error(progress),
        waiting_on: waiting_on(progress),
        ..PlacementStatus::default()
    }
}

/// The current time as a condition's `lastTransitionTime` (RFC 3339).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The merge patch of a `Placement`'s status subresource that writes `status` (the agent is
/// its only writer).
pub fn status_patch(status: &PlacementStatus) -> Value {
    json!({ "status": status })
}

/// What a waiting resource waits for, as shown in `waitingOn`.
fn waiting_on(progress: &Progress) -> Vec<String> {
    match progress {
        Progress::Waiting(_, message) if !message.is_empty() => vec![message.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContainerSpec;
    use crate::desired::Kind;
    use crate::kubernetes::desired::build;

    fn desired(replicas: u32) -> (ResourceKey, DesiredContainer) {
        let mut c = crate::api::Container::new(
            "web",
            ContainerSpec {
                image: "busybox:1.36".into(),
                replicas,
                ..Default::default()
            },
        );
        c.metadata.namespace = Some("default".into());
        let out = build(&[], &[&c]);
        let key = ResourceKey::new(Kind::Container, "default", "web");
        let d = out.state.containers[&key].clone();
        (key, d)
    }

    fn observed(key: &ResourceKey, states: &[RunState]) -> ObservedState {
        let containers = states
            .iter()
            .enumerate()
            .map(|(i, s)| ObservedContainer {
                id: format!("id{i}"),
                name: format!("web-{i}"),
                resource: Some(key.clone()),
                replica: Some(i as u32),
                spec_hash: None,
                spec: None,
                source: None,
                state: *s,
                health: None,
                exit_code: (*s == RunState::Exited).then_some(1),
                image_id: "sha256:abc".into(),
                image: "busybox:1.36".into(),
                ports: vec![],
                created: 0,
                status: String::new(),
            })
            .collect();
        ObservedState {
            containers,
            ..Default::default()
        }
    }

    fn cond<'a>(e: &'a PlacementStatus, t: &str) -> &'a Condition {
        e.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_running_is_ready() {
        let (key, d) = desired(2);
        let obs = observed(&key, &[RunState::Running, RunState::Running]);
        let e = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(4),
            },
            Some(&d),
            &obs,
            &BTreeMap::new(),
            &Progress::Converged,
            None,
            "T1",
        );
        assert_eq!(e.ready_replicas.as_deref(), Some("2/2"));
        assert_eq!(cond(&e, "Ready").status, "True");
        assert_eq!(cond(&e, "Progressing").status, "False");
        assert_eq!(cond(&e, "Degraded").status, "False");
        assert_eq!(e.replicas.len(), 2);
        assert_eq!(e.replicas[0].container_id.as_deref(), Some("id0"));
        assert_eq!(e.observed_generation, Some(4));
    }

    #[test]
    fn failure_is_degraded_with_last_error_and_exit_code() {
        let (key, d) = desired(1);
        let obs = observed(&key, &[RunState::Exited]);
        let p = Progress::Failed("StartFailed", "start web: boom".into());
        let e = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &BTreeMap::new(),
            &p,
            None,
            "T1",
        );
        assert_eq!(cond(&e, "Ready").status, "False");
        assert_eq!(cond(&e, "Degraded").reason.as_deref(), Some("StartFailed"));
        assert_eq!(e.last_error.as_deref(), Some("start web: boom"));
        assert_eq!(e.replicas[0].exit_code, Some(1));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let (key, d) = desired(1);
        let obs = observed(&key, &[RunState::Running]);
        let first = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &BTreeMap::new(),
            &Progress::Converged,
            None,
            "T1",
        );
        let again = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &BTreeMap::new(),
            &Progress::Converged,
            Some(&first),
            "T2",
        );
        assert_eq!(first, again);
        let down = observed(&key, &[RunState::Exited]);
        let changed = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &down,
            &BTreeMap::new(),
            &Progress::Converged,
            Some(&first),
            "T3",
        );
        assert_eq!(
            cond(&changed, "Ready").last_transition_time.as_deref(),
            Some("T3")
        );
        assert_eq!(
            cond(&changed, "Degraded").last_transition_time.as_deref(),
            Some("T1")
        );
    }

    #[test]
    fn patch_carries_the_status_with_both_generations() {
        let (key, d) = desired(1);
        let e = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &ObservedState::default(),
            &BTreeMap::new(),
            &Progress::Converged,
            None,
            "T",
        );
        let p = status_patch(&e);
        assert_eq!(p.as_object().unwrap().len(), 1);
        assert_eq!(p["status"]["readyReplicas"], "0/1");
        assert_eq!(p["status"]["observedGeneration"], 1);
        assert_eq!(p["status"]["parentGeneration"], 1);
    }

    #[test]
    fn restart_counts_are_shown_for_the_replicas_they_are_known_for() {
        let (key, d) = desired(2);
        let obs = observed(&key, &[RunState::Running, RunState::Running]);
        let restarts = BTreeMap::from([("id1".to_string(), 3)]);
        let e = container_status(
            Subject {
                parent_generation: Some(1),
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &restarts,
            &Progress::Converged,
            None,
            "T",
        );
        assert_eq!(e.replicas[0].restart_count, None);
        assert_eq!(e.replicas[1].restart_count, Some(3));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["replicas"][1]["restartCount"], 3);
        assert!(json["replicas"][0].get("restartCount").is_none());
    }

    fn desired_image(reference: &str) -> (ResourceKey, DesiredImage) {
        let mut i = crate::api::Image::new(
            "web",
            crate::api::ImageSpec {
                reference: reference.into(),
                ..Default::default()
            },
        );
        i.metadata.namespace = Some("default".into());
        let out = build(&[&i], &[]);
        let key = ResourceKey::new(Kind::Image, "default", "web");
        let d = out.state.images[&key].clone();
        (key, d)
    }

    fn with_image(reference: &str, id: &str, digests: &[&str]) -> ObservedState {
        let mut obs = ObservedState::default();
        obs.images.by_reference.insert(reference.into(), id.into());
        obs.images.by_id.insert(
            id.into(),
            crate::observed::ObservedImage {
                id: id.into(),
                tags: vec![reference.into()],
                digests: digests.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
        );
        obs
    }

    fn image_subject(key: &ResourceKey) -> Subject<'_> {
        Subject {
            parent_generation: Some(1),
            key,
            generation: Some(2),
        }
    }

    #[test]
    fn a_present_image_is_ready_with_its_id_and_the_digest_of_its_repository() {
        let (key, d) = desired_image("127.0.0.1:5000/team/web:1.4");
        let obs = with_image(
            "127.0.0.1:5000/team/web:1.4",
            "sha256:img",
            &[
                "127.0.0.1:5001/mirror/web@sha256:other",
                "127.0.0.1:5000/team/web@sha256:dig",
            ],
        );
        let e = image_status(
            image_subject(&key),
            Some(&d),
            &obs,
            &Progress::Converged,
            None,
            "T1",
        );
        assert_eq!(e.observed_generation, Some(2));
        assert_eq!(e.image_id.as_deref(), Some("sha256:img"));
        assert_eq!(e.digest.as_deref(), Some("sha256:dig"));
        assert_eq!(e.last_error, None);
        let ready = e.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("Present"))
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["imageId"], "sha256:img");
        assert_eq!(json["digest"], "sha256:dig");
        // Unchanged on the next reconcile: byte-for-byte the same entry (no patch).
        let again = image_status(
            image_subject(&key),
            Some(&d),
            &obs,
            &Progress::Converged,
            Some(&e),
            "T2",
        );
        assert_eq!(again, e);
    }

    #[test]
    fn a_built_image_never_pushed_has_no_digest_and_a_pinned_one_shows_its_own() {
        let (key, d) = desired_image("127.0.0.1:5000/team/web:1.4");
        let obs = with_image("127.0.0.1:5000/team/web:1.4", "sha256:img", &[]);
        let e = image_status(
            image_subject(&key),
            Some(&d),
            &obs,
            &Progress::Converged,
            None,
            "T",
        );
        assert_eq!(e.image_id.as_deref(), Some("sha256:img"));
        assert_eq!(e.digest, None);
        let pinned = format!("127.0.0.1:5000/team/web@sha256:{}", "a".repeat(64));
        let (key, d) = desired_image(&pinned);
        let obs = with_image(&pinned, "sha256:img", &[]);
        let e = image_status(
            image_subject(&key),
            Some(&d),
            &obs,
            &Progress::Converged,
            None,
            "T",
        );
        assert_eq!(e.digest, Some(format!("sha256:{}", "a".repeat(64))));
    }

    #[test]
    fn a_missing_or_failing_image_is_not_ready() {
        let (key, d) = desired_image("127.0.0.1:5000/team/web:1.4");
        let failed = Progress::Failed(
            "ActionFailed",
            "pull 127.0.0.1:5000/team/web:1.4: denied".into(),
        );
        let e = image_status(
            image_subject(&key),
            Some(&d),
            &ObservedState::default(),
            &failed,
            None,
            "T",
        );
        let get = |t: &str| e.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Ready").reason.as_deref(), Some("NotPresent"));
        assert_eq!(get("Degraded").status, "True");
        assert_eq!(get("Degraded").reason.as_deref(), Some("ActionFailed"));
        assert_eq!(e.image_id, None);
        assert_eq!(
            e.last_error.as_deref(),
            Some("pull 127.0.0.1:5000/team/web:1.4: denied")
        );
        // Present, but a push is still to do: not ready yet, progressing.
        let obs = with_image("127.0.0.1:5000/team/web:1.4", "sha256:img", &[]);
        let waiting = Progress::Waiting("Converging", "1 actions left".into());
        let e = image_status(image_subject(&key), Some(&d), &obs, &waiting, None, "T");
        let get = |t: &str| e.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("Ready").status, "False");
        assert_eq!(get("Ready").reason.as_deref(), Some("Pending"));
        assert_eq!(get("Progressing").status, "True");
        // Invalid spec: no desired image at all.
        let invalid = Progress::Invalid("spec.build.context: must be absolute".into());
        let e = image_status(image_subject(&key), None, &obs, &invalid, None, "T");
        let get = |t: &str| e.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("Degraded").reason.as_deref(), Some("InvalidSpec"));
        assert_eq!(e.image_id, None);
    }
}

//! The per-node status entry of a `Container` and the server-side-apply patch that writes it.
//! Pure: the controller passes what it observed, how the reconcile went, the entry it last
//! wrote (from the object) and the time; nothing here talks to the API server.
//!
//! Conditions per node: `Ready` (every desired replica ready), `Progressing` (work left that
//! is waiting: a pull, a dependency, a replica still starting), `Degraded` (an action failed
//! or the spec is invalid). `lastTransitionTime` is kept from the previous entry while a
//! condition's status stays the same, so an unchanged entry is byte-for-byte unchanged and the
//! controller skips the patch.

use serde_json::{json, Value};

use crate::api::{
    Condition, ContainerStatus, DesiredRunState, NodeContainerStatus, RestartPolicy, API_VERSION,
};
use crate::desired::{DesiredContainer, ResourceKey};
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

fn condition(
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: Option<&NodeContainerStatus>,
    now: &str,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
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

/// Which object's entry, on which node, for which generation.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// This node.
    pub node: &'a str,
    /// The object.
    pub key: &'a ResourceKey,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
}

/// This node's entry for the object: its replicas as observed, and conditions from
/// `progress`. `desired` is `None` when the object could not be normalised.
pub fn node_entry(
    subject: Subject<'_>,
    desired: Option<&DesiredContainer>,
    observed: &ObservedState,
    progress: &Progress,
    previous: Option<&NodeContainerStatus>,
    now: &str,
) -> NodeContainerStatus {
    let Subject {
        node,
        key,
        generation,
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
    let (progressing, p_reason, p_message) = match progress {
        Progress::Waiting(reason, message) => (true, *reason, message.as_str()),
        _ if !all_ready && !matches!(progress, Progress::Invalid(_) | Progress::Failed(..)) => {
            (true, "ReplicasStarting", "")
        }
        _ => (false, "Idle", ""),
    };
    let (degraded, d_reason, d_message) = match progress {
        Progress::Failed(reason, message) => (true, *reason, message.as_str()),
        Progress::Invalid(message) => (true, "InvalidSpec", message.as_str()),
        _ => (false, "AsExpected", ""),
    };
    let last_error = match progress {
        Progress::Failed(_, m) | Progress::Invalid(m) => Some(m.clone()),
        _ => None,
    };
    NodeContainerStatus {
        node: node.to_string(),
        observed_generation: generation,
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
            .map(ObservedContainer::replica_status)
            .collect(),
        last_error,
    }
}

/// This node's entry in an object's current status.
pub fn previous_entry<'a>(
    status: Option<&'a ContainerStatus>,
    node: &str,
) -> Option<&'a NodeContainerStatus> {
    status.and_then(|s| s.nodes.iter().find(|n| n.node == node))
}

/// The server-side-apply body that sets this node's entry (and nothing else: with the node's
/// own field manager, the other nodes' entries are untouched).
pub fn apply_patch(kind: &str, entry: &NodeContainerStatus) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "status": { "nodes": [entry] },
    })
}

/// The server-side-apply body that gives up this node's entry (the object is no longer placed
/// here): applying an empty list as the node's field manager removes what it owned.
pub fn release_patch(kind: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "status": { "nodes": [] },
    })
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

    fn cond<'a>(e: &'a NodeContainerStatus, t: &str) -> &'a Condition {
        e.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_running_is_ready() {
        let (key, d) = desired(2);
        let obs = observed(&key, &[RunState::Running, RunState::Running]);
        let e = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(4),
            },
            Some(&d),
            &obs,
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
        let e = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
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
        let first = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &Progress::Converged,
            None,
            "T1",
        );
        let again = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &obs,
            &Progress::Converged,
            Some(&first),
            "T2",
        );
        assert_eq!(first, again);
        let down = observed(&key, &[RunState::Exited]);
        let changed = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &down,
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
    fn patch_carries_only_this_node() {
        let (key, d) = desired(1);
        let e = node_entry(
            Subject {
                node: "n1",
                key: &key,
                generation: Some(1),
            },
            Some(&d),
            &ObservedState::default(),
            &Progress::Converged,
            None,
            "T",
        );
        let p = apply_patch("Container", &e);
        assert_eq!(p["apiVersion"], "dockwright.dev/v1alpha1");
        assert_eq!(p["status"]["nodes"].as_array().unwrap().len(), 1);
        assert_eq!(p["status"]["nodes"][0]["node"], "n1");
        assert_eq!(p["status"]["nodes"][0]["readyReplicas"], "0/1");
    }
}

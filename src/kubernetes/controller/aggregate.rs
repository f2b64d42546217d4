//! A parent's status from its children, DaemonSet-style. Pure.
//!
//! Counts over the nodes the parent is placed on: `desiredNodes`; `currentNodes` (a live
//! `Placement` exists); `updatedNodes` (its agent reports running the parent's current
//! generation); `readyNodes` (its agent reports `Ready`, whatever generation, as a DaemonSet
//! counts ready pods); `unavailableNodes` (desired − ready). Conditions:
//! - `Ready`: every desired node ready and updated (`False`, reason `NoMatchingNodes`, when no
//!   node matches: the resource runs nowhere);
//! - `Degraded`: some node reports `Degraded`; the reason is the most frequent one, the
//!   message counts the nodes and names a few;
//! - `Progressing`: not ready, and some node is still on its way (no child yet, no report yet,
//!   or an older generation) rather than degraded.

use std::collections::BTreeMap;

use crate::api::{AggregateStatus, Condition, Placement};
use crate::kubernetes::status::condition;

/// How many node names a condition message lists.
pub const EXAMPLE_NODES: usize = 3;

/// The status of a parent at `generation` placed on `desired_nodes`, with its live children.
/// `previous` keeps each condition's transition time while its status holds.
pub fn aggregate(
    generation: Option<i64>,
    desired_nodes: &[String],
    children: &[&Placement],
    previous: &[Condition],
    now: &str,
) -> AggregateStatus {
    let by_node: BTreeMap<&str, &Placement> = children
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| (c.spec.node_name.as_str(), *c))
        .collect();
    let mut current = 0;
    let mut updated = 0;
    let mut ready_nodes = Vec::new();
    let mut degraded: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    let mut on_the_way = Vec::new();
    let mut not_ready = Vec::new();
    for node in desired_nodes {
        let Some(child) = by_node.get(node.as_str()) else {
            on_the_way.push(node.as_str());
            not_ready.push(node.as_str());
            continue;
        };
        current += 1;
        let status = child.status.as_ref();
        let is_updated = generation.is_some()
            && status.and_then(|s| s.parent_generation) == generation
            && child.spec.parent.generation == generation;
        if is_updated {
            updated += 1;
        }
        let cond = |t: &str| {
            status
                .into_iter()
                .flat_map(|s| s.conditions.iter())
                .find(|c| c.type_ == t && c.status == "True")
        };
        if cond("Ready").is_some() {
            ready_nodes.push(node.as_str());
        } else {
            not_ready.push(node.as_str());
        }
        if let Some(d) = cond("Degraded") {
            let reason = d.reason.clone().unwrap_or_else(|| "Degraded".into());
            let message = d.message.clone().unwrap_or_default();
            degraded
                .entry(reason)
                .or_default()
                .push((node.as_str(), message));
        } else if !is_updated || cond("Ready").is_none() {
            on_the_way.push(node.as_str());
        }
    }
    let desired = desired_nodes.len() as i64;
    let ready = ready_nodes.len() as i64;
    let all_ready = desired > 0 && ready == desired && updated == desired;

    let (ready_reason, ready_message) = if desired == 0 {
        (
            "NoMatchingNodes",
            "no node matches nodeName / nodeSelector".to_string(),
        )
    } else if all_ready {
        ("AllNodesReady", format!("{ready}/{desired} nodes ready"))
    } else {
        (
            "NodesNotReady",
            format!(
                "{ready}/{desired} nodes ready, {updated} updated; not ready: {}",
                examples(&not_ready)
            ),
        )
    };
    let worst = degraded
        .iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
    let degraded_nodes: usize = degraded.values().map(Vec::len).sum();
    let (degraded_reason, degraded_message) = match worst {
        Some((reason, nodes)) => {
            let names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
            let first = &nodes[0].1;
            (
                reason.as_str(),
                format!(
                    "{degraded_nodes} node(s) degraded; {} with {reason}: {}{}",
                    nodes.len(),
                    examples(&names),
                    if first.is_empty() {
                        String::new()
                    } else {
                        format!(" ({}: {first})", nodes[0].0)
                    }
                ),
            )
        }
        None => ("AsExpected", String::new()),
    };
    let progressing = !all_ready && !on_the_way.is_empty();
    let (progressing_reason, progressing_message) = if progressing {
        (
            "RollingOut",
            format!(
                "{} node(s) on the way: {}",
                on_the_way.len(),
                examples(&on_the_way)
            ),
        )
    } else if all_ready || desired == 0 {
        ("Complete", String::new())
    } else {
        ("Stalled", "every node that is not ready is degraded".into())
    };
    let conditions = vec![
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
            progressing_reason,
            &progressing_message,
            generation,
            previous,
            now,
        ),
        condition(
            "Degraded",
            worst.is_some(),
            degraded_reason,
            &degraded_message,
            generation,
            previous,
            now,
        ),
    ];
    AggregateStatus {
        observed_generation: generation,
        desired_nodes: desired,
        current_nodes: current,
        updated_nodes: updated,
        ready_nodes: ready,
        unavailable_nodes: desired - ready,
        ready: Some(format!("{ready}/{desired}")),
        conditions,
    }
}

/// `a, b, c (+N more)`.
fn examples(nodes: &[&str]) -> String {
    let shown = nodes[..nodes.len().min(EXAMPLE_NODES)].join(", ");
    match nodes.len().saturating_sub(EXAMPLE_NODES) {
        0 => shown,
        more => format!("{shown} (+{more} more)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ParentReference, PlacementSpec, PlacementStatus};

    fn child(node: &str, spec_gen: i64, report: Option<(i64, &[(&str, &str)])>) -> Placement {
        let mut p = Placement::new(
            &format!("container.web.{node}"),
            PlacementSpec {
                node_name: node.into(),
                parent: ParentReference {
                    kind: "Container".into(),
                    name: "web".into(),
                    uid: "u".into(),
                    generation: Some(spec_gen),
                },
                ..PlacementSpec::default()
            },
        );
        p.status = report.map(|(gen, conditions)| PlacementStatus {
            parent_generation: Some(gen),
            conditions: conditions
                .iter()
                .map(|(t, reason)| Condition {
                    type_: t.to_string(),
                    status: "True".into(),
                    reason: Some(reason.to_string()),
                    message: Some(format!("{t} here")),
                    ..Condition::default()
                })
                .collect(),
            ..PlacementStatus::default()
        });
        p
    }

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn status_of<'a>(s: &'a AggregateStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_deref().unwrap_or(""))
    }

    const READY: &[(&str, &str)] = &[("Ready", "Running")];

    #[test]
    fn all_ready_and_updated() {
        let children: Vec<Placement> = nodes(3)
            .iter()
            .map(|n| child(n, 2, Some((2, READY))))
            .collect();
        let refs: Vec<&Placement> = children.iter().collect();
        let s = aggregate(Some(2), &nodes(3), &refs, &[], "t");
        assert_eq!(
            (
                s.desired_nodes,
                s.current_nodes,
                s.updated_nodes,
                s.ready_nodes,
                s.unavailable_nodes
            ),
            (3, 3, 3, 3, 0)
        );
        assert_eq!(s.ready.as_deref(), Some("3/3"));
        assert_eq!(status_of(&s, "Ready"), ("True", "AllNodesReady"));
        assert_eq!(status_of(&s, "Progressing"), ("False", "Complete"));
        assert_eq!(status_of(&s, "Degraded"), ("False", "AsExpected"));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn a_rollout_counts_old_ready_nodes_as_ready_not_updated() {
        let children = [
            child("n1", 3, Some((3, READY))),
            child("n2", 3, Some((2, READY))),
            child("n3", 3, None),
        ];
        let refs: Vec<&Placement> = children.iter().collect();
        let s = aggregate(Some(3), &nodes(4), &refs, &[], "t");
        assert_eq!(
            (
                s.desired_nodes,
                s.current_nodes,
                s.updated_nodes,
                s.ready_nodes,
                s.unavailable_nodes
            ),
            (4, 3, 1, 2, 2)
        );
        assert_eq!(status_of(&s, "Ready"), ("False", "NodesNotReady"));
        assert_eq!(status_of(&s, "Progressing"), ("True", "RollingOut"));
        let message = s.conditions[1].message.clone().unwrap();
        assert!(
            message.contains("3 node(s) on the way: n2, n3, n4"),
            "{message}"
        );
    }

    #[test]
    fn degraded_names_the_most_frequent_reason_and_a_few_nodes() {
        let mut children: Vec<Placement> = (1..=5)
            .map(|i| {
                child(
                    &format!("n{i}"),
                    1,
                    Some((1, &[("Degraded", "PullFailed")])),
                )
            })
            .collect();
        children.push(child("n6", 1, Some((1, &[("Degraded", "CreateFailed")]))));
        let refs: Vec<&Placement> = children.iter().collect();
        let s = aggregate(Some(1), &nodes(6), &refs, &[], "t");
        assert_eq!(status_of(&s, "Degraded"), ("True", "PullFailed"));
        assert_eq!(status_of(&s, "Progressing"), ("False", "Stalled"));
        let message = s.conditions[2].message.clone().unwrap();
        assert!(
            message.starts_with("6 node(s) degraded; 5 with PullFailed: n1, n2, n3 (+2 more)"),
            "{message}"
        );
        assert!(message.contains("(n1: Degraded here)"), "{message}");
    }

    #[test]
    fn no_matching_node_is_not_ready() {
        let s = aggregate(Some(1), &[], &[], &[], "t");
        assert_eq!(s.ready.as_deref(), Some("0/0"));
        assert_eq!(status_of(&s, "Ready"), ("False", "NoMatchingNodes"));
        assert_eq!(status_of(&s, "Progressing"), ("False", "Complete"));
    }

    #[test]
    fn children_of_other_nodes_or_being_deleted_do_not_count() {
        let mut gone = child("n2", 1, Some((1, READY)));
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let children = [
            child("n1", 1, Some((1, READY))),
            gone,
            child("n9", 1, Some((1, READY))),
        ];
        let refs: Vec<&Placement> = children.iter().collect();
        let s = aggregate(Some(1), &nodes(2), &refs, &[], "t");
        assert_eq!((s.current_nodes, s.ready_nodes), (1, 1));
    }

    #[test]
    fn transition_times_hold_while_the_status_holds() {
        let children = [child("n1", 1, Some((1, READY)))];
        let refs: Vec<&Placement> = children.iter().collect();
        let first = aggregate(Some(1), &nodes(1), &refs, &[], "t1");
        let again = aggregate(Some(1), &nodes(1), &refs, &first.conditions, "t2");
        assert_eq!(first, again, "nothing changed: nothing to write");
    }
}

//! Narrowing a plan for the agent: drop the actions of resources that must not be touched now
//! (already being reconciled, or backing off), and with them every action ordered after a
//! dropped one; then split what is left into independent groups that can run side by side.

use std::collections::{BTreeMap, BTreeSet};

use super::{Blocked, Plan, PlannedAction};
use crate::desired::ResourceKey;

/// `plan` without any action on a `held` resource — their containers are neither changed nor
/// pruned — plus a blocked entry for each.
pub fn hold(plan: Plan, held: &[Blocked]) -> Plan {
    if held.is_empty() {
        return plan;
    }
    let mut out = restrict(&plan, |key| !held.iter().any(|b| &b.resource == key));
    out.blocked.extend(held.iter().cloned());
    out
}

/// The plan without the actions of resources for which `keep` is false, nor any action that
/// (transitively) comes after one of those. Ids are renumbered; order is preserved.
pub fn restrict(plan: &Plan, keep: impl Fn(&ResourceKey) -> bool) -> Plan {
    let mut out = restrict_actions(plan, |a| keep(&a.resource));
    out.blocked = plan.blocked.clone();
    out
}

/// The actions `keep` selects whose prerequisites were all kept, renumbered, order preserved;
/// no blocked entries (the caller picks those it keeps).
pub fn restrict_actions(plan: &Plan, keep: impl Fn(&PlannedAction) -> bool) -> Plan {
    let mut new_id: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Plan::default();
    for action in &plan.actions {
        if !keep(action) || action.after.iter().any(|a| !new_id.contains_key(a)) {
            continue;
        }
        let after = action
            .after
            .iter()
            .filter_map(|a| new_id.get(a).copied())
            .collect();
        let id = out.push(
            action.resource.clone(),
            action.action.clone(),
            action.reason.clone(),
            after,
        );
        new_id.insert(action.id, id);
    }
    out
}

/// Splits a plan into groups with no ordering edge and no resource between them, each a plan
/// of its own (ids renumbered), in the order of their first action. Blocked entries stay with
/// the first group.
pub fn independent_groups(plan: &Plan) -> Vec<Plan> {
    let n = plan.actions.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let union = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    };
    let mut first_of_resource: BTreeMap<&ResourceKey, usize> = BTreeMap::new();
    for action in &plan.actions {
        for &before in &action.after {
            union(&mut parent, action.id, before);
        }
        if let Some(&first) = first_of_resource.get(&action.resource) {
            union(&mut parent, action.id, first);
        } else {
            first_of_resource.insert(&action.resource, action.id);
        }
    }
    let mut groups: BTreeMap<usize, Vec<&PlannedAction>> = BTreeMap::new();
    for action in &plan.actions {
        let root = find(&mut parent, action.id);
        groups.entry(root).or_default().push(action);
    }
    groups
        .into_values()
        .enumerate()
        .map(|(i, actions)| {
            let members: BTreeSet<usize> = actions.iter().map(|a| a.id).collect();
            let mut group = restrict_actions(plan, |a| members.contains(&a.id));
            if i == 0 {
                group.blocked = plan.blocked.clone();
            }
            group
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Kind;
    use crate::plan::{Action, Reason};

    fn key(n: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", n)
    }

    fn start(n: &str) -> Action {
        Action::StartContainer { name: n.into() }
    }

    fn sample() -> Plan {
        let mut plan = Plan::default();
        let a = plan.push(key("a"), start("a"), Reason::NotRunning, vec![]);
        plan.push(key("b"), start("b"), Reason::Dependency, vec![a]);
        plan.push(key("c"), start("c"), Reason::NotRunning, vec![]);
        plan.push(key("c"), start("c2"), Reason::NotRunning, vec![]);
        plan
    }

    #[test]
    fn dropping_a_resource_drops_what_comes_after_it() {
        let plan = restrict(&sample(), |k| k.name != "a");
        let targets: Vec<&str> = plan.actions.iter().map(|a| a.action.target()).collect();
        assert_eq!(targets, ["c", "c2"]);
        assert!(plan
            .actions
            .iter()
            .all(|a| a.after.iter().all(|b| *b < a.id)));
    }

    #[test]
    fn keeping_everything_keeps_edges() {
        let plan = restrict(&sample(), |_| true);
        assert_eq!(plan, sample());
    }

    #[test]
    fn groups_follow_edges_and_resources() {
        let groups = independent_groups(&sample());
        let names: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.actions.iter().map(|a| a.action.target()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "b"], vec!["c", "c2"]]);
        assert_eq!(groups[0].actions[1].after, vec![0]);
        assert!(groups[1].actions.iter().all(|a| a.after.is_empty()));
    }
}

//! The planner's scratch pad: actions as nodes with arbitrary ordering edges, added in any
//! order while the planner works, then sorted into a [`Plan`] whose `after` ids are always
//! smaller than the action's own id.

use std::collections::BTreeSet;

use super::{Action, ActionId, Blocked, Plan, Reason};
use crate::desired::ResourceKey;

/// Index of a node in the [`Graph`] (not yet an [`ActionId`]).
pub(super) type NodeId = usize;

struct Node {
    resource: ResourceKey,
    action: Action,
    reason: Reason,
    after: BTreeSet<NodeId>,
}

/// Actions being planned, with their ordering edges. Owned by one `plan` call.
#[derive(Default)]
pub(super) struct Graph {
    nodes: Vec<Node>,
    blocked: Vec<Blocked>,
}

impl Graph {
    /// Adds an action that must run after `after`.
    pub(super) fn add(
        &mut self,
        resource: &ResourceKey,
        action: Action,
        reason: Reason,
        after: impl IntoIterator<Item = NodeId>,
    ) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node {
            resource: resource.clone(),
            action,
            reason,
            after: after.into_iter().collect(),
        });
        id
    }

    /// Orders `node` after `before` (ignored when they are the same node).
    pub(super) fn order(&mut self, before: NodeId, node: NodeId) {
        if before != node {
            if let Some(n) = self.nodes.get_mut(node) {
                n.after.insert(before);
            }
        }
    }

    /// Records a resource that cannot converge.
    pub(super) fn block(&mut self, resource: &ResourceKey, message: String) {
        self.blocked.push(Blocked {
            resource: resource.clone(),
            message,
        });
    }

    /// Sorts the nodes topologically — among the nodes that are ready, the one added first goes
    /// first, so a graph built in a sensible order keeps that order — and numbers them.
    ///
    /// The planner never builds a cycle from valid input (validation rejects `dependsOn`
    /// cycles); should one appear anyway (say, two renames swapping names), the earliest
    /// remaining node is emitted without its unmet edges, so the plan stays total and the
    /// daemon's refusal surfaces as an ordinary, retried action failure.
    pub(super) fn into_plan(self) -> Plan {
        let count = self.nodes.len();
        let mut waiting: Vec<usize> = self.nodes.iter().map(|n| n.after.len()).collect();
        let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); count];
        for (id, node) in self.nodes.iter().enumerate() {
            for &before in &node.after {
                dependents[before].push(id);
            }
        }
        let mut ready: BTreeSet<NodeId> = (0..count).filter(|&id| waiting[id] == 0).collect();
        let mut remaining: BTreeSet<NodeId> = (0..count).collect();
        let mut number: Vec<Option<ActionId>> = vec![None; count];
        let mut order = Vec::with_capacity(count);
        while let Some(first) = ready
            .first()
            .copied()
            .or_else(|| remaining.first().copied())
        {
            ready.remove(&first);
            remaining.remove(&first);
            number[first] = Some(order.len());
            order.push(first);
            for &next in &dependents[first] {
                waiting[next] = waiting[next].saturating_sub(1);
                if waiting[next] == 0 && remaining.contains(&next) {
                    ready.insert(next);
                }
            }
        }

        let mut slots: Vec<Option<Node>> = self.nodes.into_iter().map(Some).collect();
        let mut plan = Plan::default();
        for id in order {
            let Some(node) = slots[id].take() else {
                continue;
            };
            let mut after: Vec<ActionId> = node
                .after
                .iter()
                .filter_map(|b| number[*b])
                .filter(|b| *b < plan.actions.len())
                .collect();
            after.sort_unstable();
            after.dedup();
            plan.push(node.resource, node.action, node.reason, after);
        }
        let mut blocked = self.blocked;
        blocked.sort_by(|a, b| (&a.resource, &a.message).cmp(&(&b.resource, &b.message)));
        blocked.dedup();
        plan.blocked = blocked;
        plan
    }
}

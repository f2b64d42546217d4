//! Container actions for one `Container` resource: match observed replicas to desired ones,
//! then create, roll (per [`super::rollout`]'s decisions, in waves), rename, start, stop or
//! remove. Cross-resource ordering (`dependsOn`, names and host ports changing hands) is added
//! afterwards from the [`Claim`]s and [`ResourceOutcome`]s recorded here.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Graph, NodeId};
use super::hash::{changed_fields, container_labels, spec_hash, spec_json};
use super::images::ImageStatus;
use super::rollout::{self, kept_name, short_revision, Decision, ReplicaView, Settings};
use super::{Action, CreateSpec, FieldChange, Reason};
use crate::api::{DependencyCondition, DesiredRunState, RestartPolicy};
use crate::desired::{DesiredContainer, PortBinding, ResourceKey};
use crate::observed::{ObservedContainer, RunState};

/// A published host port, as far as clashes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HostPort {
    protocol: String,
    /// `None` = all addresses.
    ip: Option<String>,
    port: u16,
}

impl HostPort {
    fn from_binding(binding: &PortBinding) -> Option<Self> {
        Some(Self {
            protocol: binding.protocol.to_ascii_lowercase(),
            ip: binding.host_ip.as_deref().and_then(normalise_ip),
            port: binding.host_port?,
        })
    }

    /// Parses Docker's `hostIP:hostPort->containerPort/proto` list form.
    fn from_published(text: &str) -> Option<Self> {
        let (host, container) = text.split_once("->")?;
        let (ip, port) = host.rsplit_once(':')?;
        let protocol = container.split_once('/').map_or("tcp", |(_, p)| p);
        Some(Self {
            protocol: protocol.to_ascii_lowercase(),
            ip: normalise_ip(ip),
            port: port.parse().ok()?,
        })
    }

    fn clashes(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip.is_none() || other.ip.is_none() || self.ip == other.ip)
    }
}

fn normalise_ip(ip: &str) -> Option<String> {
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    match ip {
        "" | "0.0.0.0" | "::" => None,
        other => Some(other.to_string()),
    }
}

/// A container name and host ports that an action takes or gives up.
#[derive(Clone, Debug)]
pub(super) struct Claim {
    /// The action.
    pub node: NodeId,
    /// Container name (`None` for a stop, which frees host ports only).
    pub name: Option<String>,
    /// Published host ports.
    pub ports: Vec<HostPort>,
    /// ID of the container the action works on (`None` for a create). A container never
    /// waits for itself: renamed to its kept name, then removed under it.
    pub container: Option<String>,
    /// The one take this freeing does not order: a `StopFirst` stop frees the old container's
    /// ports for the new one's start (ordered explicitly), not for its create, which may
    /// run while the old one still serves.
    pub exempt: Option<NodeId>,
}

impl Claim {
    /// True when `self` needs something `freed` gives up.
    pub(super) fn conflicts_with(&self, freed: &Claim) -> bool {
        if self.container.is_some() && self.container == freed.container {
            return false;
        }
        if freed.exempt == Some(self.node) {
            return false;
        }
        (self.name.is_some() && self.name == freed.name)
            || self
                .ports
                .iter()
                .any(|p| freed.ports.iter().any(|q| p.clashes(q)))
    }
}

/// What the plan does for one desired replica, for the `dependsOn` pass.
#[derive(Clone, Debug)]
pub(super) struct ReplicaOutcome<'a> {
    /// Deterministic name.
    pub name: String,
    /// Create action, if any.
    pub create: Option<NodeId>,
    /// Start action, if any.
    pub start: Option<NodeId>,
    /// The last action after which the replica is in its new state (start, create or rename).
    pub last: Option<NodeId>,
    /// The observed container that stays (neither removed nor replaced), if any.
    pub kept: Option<&'a ObservedContainer>,
}

impl ReplicaOutcome<'_> {
    /// True when the replica already is in `condition` and nothing in this plan changes that.
    pub(super) fn already(&self, condition: DependencyCondition) -> bool {
        let Some(c) = self.kept else { return false };
        if self.create.is_some() || self.start.is_some() {
            return false;
        }
        match condition {
            DependencyCondition::Started => matches!(c.state, RunState::Running),
            DependencyCondition::Healthy => {
                c.state == RunState::Running
                    && c.health == Some(crate::observed::HealthState::Healthy)
            }
            DependencyCondition::Completed => c.state == RunState::Exited && c.exit_code == Some(0),
        }
    }
}

/// What the plan does for one resource.
#[derive(Clone, Debug, Default)]
pub(super) struct ResourceOutcome<'a> {
    /// One entry per desired replica, by index.
    pub replicas: Vec<ReplicaOutcome<'a>>,
}

impl ResourceOutcome<'_> {
    /// Every start action of the resource.
    pub(super) fn starts(&self) -> Vec<NodeId> {
        self.replicas.iter().filter_map(|r| r.start).collect()
    }
}

/// The desired spec of a resource whose image is present.
struct Spec {
    image_id: String,
    json: String,
    hash: String,
}

/// Shared state of the container planning: the graph, prerequisites already planned, and the
/// names and ports changing hands.
pub(super) struct Planner<'g> {
    /// The plan being built.
    pub graph: &'g mut Graph,
    /// Owner label value.
    pub owner: &'g str,
    /// Source label value.
    pub source: &'g str,
    /// Revisions not to roll out (see [`super::PlanOptions::failed_revisions`]).
    failed_revisions: &'g BTreeSet<(ResourceKey, String)>,
    /// Prerequisite nodes by network or volume name; `None` for a declared one already
    /// present. Seeded with the declared ones (see `objects`).
    networks: BTreeMap<String, Option<NodeId>>,
    volumes: BTreeMap<String, Option<NodeId>>,
    /// What removals, stops and renames give up.
    pub freed: Vec<Claim>,
    /// What creates and renames take.
    pub taken: Vec<Claim>,
    /// Container ID → the node removing it (image removals wait for their users' removal).
    pub removed: BTreeMap<String, NodeId>,
}

impl<'g> Planner<'g> {
    /// A planner writing into `graph`.
    pub(super) fn new(
        graph: &'g mut Graph,
        owner: &'g str,
        source: &'g str,
        failed_revisions: &'g BTreeSet<(ResourceKey, String)>,
        objects: super::objects::ObjectNodes,
    ) -> Self {
        Self {
            graph,
            owner,
            source,
            failed_revisions,
            networks: objects.networks,
            volumes: objects.volumes,
            freed: Vec::new(),
            taken: Vec::new(),
            removed: BTreeMap::new(),
        }
    }

    /// Removes an observed container, recording the name and ports it frees.
    pub(super) fn remove(
        &mut self,
        resource: &ResourceKey,
        c: &ObservedContainer,
        reason: Reason,
        after: Option<NodeId>,
    ) -> NodeId {
        let ports = observed_ports(c);
        self.remove_as(resource, c, &c.name, ports, reason, after)
    }

    /// Removes `c`, which by then is named `name` and holds `ports`.
    fn remove_as(
        &mut self,
        resource: &ResourceKey,
        c: &ObservedContainer,
        name: &str,
        ports: Vec<HostPort>,
        reason: Reason,
        after: Option<NodeId>,
    ) -> NodeId {
        let action = Action::RemoveContainer {
            id: c.id.clone(),
            name: name.to_string(),
        };
        let node = self.graph.add(resource, action, reason, after);
        self.freed.push(Claim {
            node,
            name: Some(name.to_string()),
            ports,
            container: Some(c.id.clone()),
            exempt: None,
        });
        self.removed.insert(c.id.clone(), node);
        node
    }

    /// Renames `c` to `to`, recording the name it frees and the one it takes.
    fn rename(
        &mut self,
        resource: &ResourceKey,
        c: &ObservedContainer,
        to: &str,
        reason: Reason,
        after: Option<NodeId>,
    ) -> NodeId {
        let action = Action::RenameContainer {
            id: c.id.clone(),
            from: c.name.clone(),
            to: to.to_string(),
        };
        let node = self.graph.add(resource, action, reason, after);
        for (claims, name) in [
            (&mut self.freed, &c.name),
            (&mut self.taken, &to.to_string()),
        ] {
            claims.push(Claim {
                node,
                name: Some(name.clone()),
                ports: Vec::new(),
                container: Some(c.id.clone()),
                exempt: None,
            });
        }
        node
    }

    /// Stops `c` (by then named `name`).
    fn stop(
        &mut self,
        ctx: &ResourceCtx<'_>,
        c: &ObservedContainer,
        name: &str,
        reason: Reason,
        after: Option<NodeId>,
    ) -> NodeId {
        let action = Action::StopContainer {
            id: c.id.clone(),
            name: name.to_string(),
            timeout_seconds: ctx.d.config.stop_timeout,
        };
        self.graph.add(&ctx.d.key, action, reason, after)
    }

    /// Plans one resource. `image` is the status of its reference; `start_blocked` is set when
    /// a `dependsOn` can never be met, in which case no start is planned (nor a rollout that
    /// would need one) and the resource is reported blocked if it needed one.
    pub(super) fn plan_resource<'a>(
        &mut self,
        d: &DesiredContainer,
        observed: &[&'a ObservedContainer],
        image: &ImageStatus,
        start_blocked: Option<&str>,
    ) -> ResourceOutcome<'a> {
        let spec = match image {
            ImageStatus::Present(id) => {
                let json = spec_json(&d.config, id);
                let hash = spec_hash(&json);
                Some(Spec {
                    image_id: id.clone(),
                    json,
                    hash,
                })
            }
            ImageStatus::Pending(_) | ImageStatus::Unavailable => None,
        };
        let mut by_replica: BTreeMap<u32, Vec<&'a ObservedContainer>> = BTreeMap::new();
        for &c in observed {
            match c.replica {
                Some(r) => by_replica.entry(r).or_default().push(c),
                // Ours (owner and resource label) but matching no replica: it can only be in
                // the way of one, so it goes.
                None => {
                    self.remove(&d.key, c, Reason::Broken, None);
                }
            }
        }
        for c in by_replica.range(d.replicas..).flat_map(|(_, list)| list) {
            self.remove(&d.key, c, Reason::ScaledDown, None);
        }

        let settings = Settings::of(d);
        let hash = spec.as_ref().map(|s| s.hash.as_str());
        let views: Vec<(u32, String, ReplicaView<'a>)> = (0..d.replicas)
            .map(|replica| {
                let name = d.key.container_name(d.replicas, replica);
                let candidates = by_replica.remove(&replica).unwrap_or_default();
                let view = ReplicaView::new(&candidates, &name, hash);
                (replica, name, view)
            })
            .collect();
        // The desired revision is unfit when it failed before (the caller remembers) or a
        // replica shows it failing now: then no replica rolls to it in this plan. Only a
        // rolling resource can fail a rollout; the others are replaced as always.
        let held = settings.rolls
            && hash.is_some_and(|h| {
                held_back(self.failed_revisions, &d.key, h)
                    || views
                        .iter()
                        .any(|(_, _, v)| rollout::observed_failure(v, h, d, &settings))
            });

        let mut ctx = ResourceCtx {
            d,
            image,
            spec: spec.as_ref(),
            start_blocked,
            start_suppressed: false,
            settings,
            held,
            held_back: false,
        };
        let mut waves = Waves::default();
        let mut outcome = ResourceOutcome::default();
        for (replica, name, view) in views {
            for c in &view.duplicates {
                self.remove(&d.key, c, Reason::Duplicate, None);
            }
            let decision = rollout::decide(&view, hash, d, &settings, held);
            let replica_outcome = self.plan_replica(&mut ctx, replica, &name, decision, &mut waves);
            outcome.replicas.push(replica_outcome);
        }
        waves.chain(self.graph, settings.max_unavailable);
        if let (true, Some(message)) = (ctx.start_suppressed, start_blocked) {
            self.graph.block(&d.key, message.to_string());
        }
        if let (true, Some(hash)) = (ctx.held_back, hash) {
            self.graph.block(
                &d.key,
                format!(
                    "revision {} never became healthy; rolled back",
                    short_revision(hash)
                ),
            );
        }
        outcome
    }

    fn plan_replica<'a>(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        replica: u32,
        name: &str,
        decision: Decision<'a>,
        waves: &mut Waves,
    ) -> ReplicaOutcome<'a> {
        let d = ctx.d;
        let mut out = ReplicaOutcome {
            name: name.to_string(),
            create: None,
            start: None,
            last: None,
            kept: None,
        };
        // A rollout needs the new container started; while a dependency can never be met,
        // a running revision stays (or takes its name back) rather than be traded for one
        // that cannot start.
        let start_held = ctx.start_blocked.is_some() && ctx.settings.rolls;
        let decision = match decision {
            Decision::Roll { old } if start_held && is_up(old) => {
                ctx.start_suppressed = true;
                Decision::Steady(Some(old))
            }
            Decision::Continue {
                kept,
                replace: None,
            } if start_held && is_up(kept) => {
                ctx.start_suppressed = true;
                Decision::Restore { kept, held: false }
            }
            Decision::Continue {
                kept,
                replace: Some(current),
            }
            | Decision::Finish {
                kept,
                current,
                needs_start: true,
            } if start_held && is_up(kept) => {
                ctx.start_suppressed = true;
                Decision::Revert { kept, current }
            }
            Decision::Cleanup { kept, then } => {
                let ports = kept_ports(kept, false);
                let kept_as = kept.name.clone();
                let done = self.remove_as(&d.key, kept, &kept_as, ports, Reason::Replaced, None);
                // The tail of an earlier rollout: the next replicas wait for it.
                waves.push(Vec::new(), done, true);
                return self.plan_replica(ctx, replica, name, *then, waves);
            }
            other => other,
        };
        let (Some(spec), false) = (ctx.spec, matches!(decision, Decision::Steady(_))) else {
            // Steady, or no resolved spec (then `decide` only returns Steady or Restore).
            return match decision {
                Decision::Restore { kept, held } => {
                    let reason = restore_reason(ctx, held);
                    self.restore(ctx, name, kept, None, reason, out)
                }
                Decision::Steady(Some(c)) => self.keep(ctx, name, c, out),
                _ => self.missing(ctx, replica, name, out),
            };
        };
        let revision = spec.hash.clone();
        match decision {
            Decision::Steady(_) => out,
            Decision::Recreate { old } => {
                let reason = if old.spec_hash.as_deref() == Some(revision.as_str()) {
                    Reason::Broken
                } else {
                    spec_changed(old, spec)
                };
                let remove = self.remove(&d.key, old, reason.clone(), None);
                let create = self.create(ctx, replica, name, reason.clone(), Some(remove));
                out.start = self.start(ctx, name, reason.clone(), create);
                out.create = Some(create);
                out.last = out.start.or(out.create);
                if reason != Reason::Broken {
                    waves.push(vec![remove], out.last.unwrap_or(create), false);
                }
                out
            }
            Decision::Roll { old } => {
                let kept = kept_name(name);
                let rename = self.rename(
                    &d.key,
                    old,
                    &kept,
                    Reason::Rollout {
                        revision: revision.clone(),
                    },
                    None,
                );
                self.replace(
                    ctx,
                    replica,
                    name,
                    old,
                    &kept,
                    vec![rename],
                    Some(rename),
                    out,
                    waves,
                )
            }
            Decision::Continue { kept, replace } => {
                let first: Vec<NodeId> = replace
                    .map(|c| self.remove(&d.key, c, spec_changed(c, spec), None))
                    .into_iter()
                    .collect();
                let after = first.first().copied();
                let kept_as = kept.name.clone();
                self.replace(ctx, replica, name, kept, &kept_as, first, after, out, waves)
            }
            Decision::Finish {
                kept,
                current,
                needs_start,
            } => {
                out.kept = Some(current);
                if current.name != name {
                    out.last = Some(self.rename(&d.key, current, name, Reason::NameChanged, None));
                }
                // A pass that died between create and start may have left the old one up.
                let stop = (needs_start && ctx.settings.stop_first && is_up(kept)).then(|| {
                    let reason = Reason::Rollout {
                        revision: revision.clone(),
                    };
                    let stop = self.stop(ctx, kept, &kept.name, reason, None);
                    self.freed.push(Claim {
                        node: stop,
                        name: None,
                        ports: observed_ports(kept),
                        container: Some(kept.id.clone()),
                        exempt: None,
                    });
                    stop
                });
                if needs_start {
                    out.start = self.start(ctx, name, Reason::NotRunning, out.last);
                    if let (Some(start), Some(stop)) = (out.start, stop) {
                        self.graph.order(stop, start);
                    }
                    out.last = out.start.or(out.last);
                }
                let awaited = match (ctx.settings.gated, out.last) {
                    (true, after) => Some(self.await_healthy(ctx, name, &revision, after)),
                    (false, after) => after,
                };
                let ports = kept_ports(kept, stop.is_some());
                let kept_as = kept.name.clone();
                let done = self.remove_as(&d.key, kept, &kept_as, ports, Reason::Replaced, awaited);
                if let Some(stop) = stop {
                    self.graph.order(stop, done);
                }
                waves.push(Vec::new(), done, true);
                out
            }
            Decision::Rollback { kept, failed } => {
                ctx.held_back |= failed.spec_hash.as_deref() == Some(revision.as_str());
                let reason = Reason::RolledBack {
                    revision: failed.spec_hash.clone().unwrap_or_default(),
                };
                self.restore(ctx, name, kept, Some((failed, reason.clone())), reason, out)
            }
            Decision::Revert { kept, current } => {
                let removal = (current, spec_changed(current, spec));
                let reason = Reason::Rollout { revision };
                self.restore(ctx, name, kept, Some(removal), reason, out)
            }
            Decision::Restore { kept, held } => {
                let reason = restore_reason(ctx, held);
                self.restore(ctx, name, kept, None, reason, out)
            }
            Decision::Cleanup { .. } => out,
        }
    }

    /// The tail every rollout of a replica shares, once the name is free (`first` frees it,
    /// `after` is what the create waits for): stop `old` (named `old_name`) first with
    /// `StopFirst`, create and start the new container, await healthy when gated, then
    /// remove `old`. Joins `waves` so only `maxUnavailable` replicas roll at once.
    #[allow(clippy::too_many_arguments)]
    fn replace<'a>(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        replica: u32,
        name: &str,
        old: &ObservedContainer,
        old_name: &str,
        mut first: Vec<NodeId>,
        after: Option<NodeId>,
        mut out: ReplicaOutcome<'a>,
        waves: &mut Waves,
    ) -> ReplicaOutcome<'a> {
        let d = ctx.d;
        let Some(spec) = ctx.spec else { return out };
        let revision = spec.hash.clone();
        let reason = spec_changed(old, spec);
        let stop = (ctx.settings.stop_first && is_up(old)).then(|| {
            let reason = Reason::Rollout {
                revision: revision.clone(),
            };
            self.stop(ctx, old, old_name, reason, first.first().copied())
        });
        let create = self.create(ctx, replica, name, reason.clone(), after);
        if let Some(stop) = stop {
            first.push(stop);
            self.freed.push(Claim {
                node: stop,
                name: None,
                ports: observed_ports(old),
                container: Some(old.id.clone()),
                exempt: Some(create),
            });
        }
        if first.is_empty() {
            first.push(create);
        }
        out.create = Some(create);
        out.start = self.start(ctx, name, reason, create);
        if let (Some(start), Some(stop)) = (out.start, stop) {
            self.graph.order(stop, start);
        }
        out.last = out.start.or(out.create);
        let ready = match out.start {
            Some(start) if ctx.settings.gated => {
                self.await_healthy(ctx, name, &revision, Some(start))
            }
            _ => out.last.unwrap_or(create),
        };
        let ports = kept_ports(old, stop.is_some());
        let remove = self.remove_as(&d.key, old, old_name, ports, Reason::Replaced, Some(ready));
        if let Some(stop) = stop {
            // Already so through the start, unless nothing is started (state Stopped).
            self.graph.order(stop, remove);
        }
        waves.push(first, remove, false);
        out
    }

    /// Gives `kept` its deterministic name back after removing `removal` (the container
    /// holding the name, if any), and brings it to the desired run state.
    fn restore<'a>(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        name: &str,
        kept: &'a ObservedContainer,
        removal: Option<(&ObservedContainer, Reason)>,
        reason: Reason,
        mut out: ReplicaOutcome<'a>,
    ) -> ReplicaOutcome<'a> {
        let d = ctx.d;
        let removed = removal.map(|(c, why)| self.remove(&d.key, c, why, None));
        let rename = self.rename(&d.key, kept, name, reason.clone(), removed);
        out.kept = Some(kept);
        out.last = Some(rename);
        match d.state {
            DesiredRunState::Running
                if matches!(kept.state, RunState::Created | RunState::Exited)
                    && d.restart_policy != RestartPolicy::Never =>
            {
                out.start = self.start(ctx, name, reason, rename);
                out.last = out.start.or(out.last);
            }
            DesiredRunState::Stopped if is_up(kept) => {
                let reason = Reason::ShouldBeStopped;
                out.last = Some(self.stop(ctx, kept, name, reason, Some(rename)));
            }
            _ => {}
        }
        out
    }

    /// A replica with no container: create it (and start it).
    fn missing<'a>(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        replica: u32,
        name: &str,
        mut out: ReplicaOutcome<'a>,
    ) -> ReplicaOutcome<'a> {
        if *ctx.image != ImageStatus::Unavailable {
            let create = self.create(ctx, replica, name, Reason::Missing, None);
            out.start = self.start(ctx, name, Reason::Missing, create);
            out.create = Some(create);
            out.last = out.start.or(out.create);
        }
        out
    }

    /// A container that stays: renamed when its deterministic name changed, started or
    /// stopped to match the desired state.
    fn keep<'a>(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        name: &str,
        c: &'a ObservedContainer,
        mut out: ReplicaOutcome<'a>,
    ) -> ReplicaOutcome<'a> {
        let d = ctx.d;
        if ctx.held
            && ctx
                .spec
                .is_some_and(|s| c.spec_hash.as_deref() != Some(s.hash.as_str()))
        {
            ctx.held_back = true;
        }
        out.kept = Some(c);
        if matches!(c.state, RunState::Dead | RunState::Removing) {
            return out;
        }
        if c.name != name {
            out.last = Some(self.rename(&d.key, c, name, Reason::NameChanged, None));
        }
        match d.state {
            DesiredRunState::Running if needs_start(c, d.restart_policy) => {
                out.start = self.start(ctx, name, Reason::NotRunning, out.last);
                out.last = out.start.or(out.last);
            }
            DesiredRunState::Stopped
                if matches!(c.state, RunState::Running | RunState::Restarting) =>
            {
                let stop = self.stop(ctx, c, &c.name, Reason::ShouldBeStopped, None);
                out.last = Some(stop);
            }
            _ => {}
        }
        out
    }

    /// Awaits `name` healthy after `after`, within the resource's health timeout; the gate of
    /// a rollout (the previous container goes, and the next wave starts, only after it).
    fn await_healthy(
        &mut self,
        ctx: &ResourceCtx<'_>,
        name: &str,
        revision: &str,
        after: Option<NodeId>,
    ) -> NodeId {
        let action = Action::AwaitCondition {
            name: name.to_string(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: Some(ctx.settings.health_timeout_seconds),
        };
        let reason = Reason::Rollout {
            revision: revision.to_string(),
        };
        self.graph.add(&ctx.d.key, action, reason, after)
    }

    /// Plans a create with its prerequisites; deferred (no image ID, no labels, after the pull)
    /// while the image is still to be pulled.
    fn create(
        &mut self,
        ctx: &ResourceCtx<'_>,
        replica: u32,
        name: &str,
        reason: Reason,
        after: Option<NodeId>,
    ) -> NodeId {
        let d = ctx.d;
        let mut deps: Vec<NodeId> = after.into_iter().collect();
        for network in d.config.named_networks() {
            deps.extend(self.prerequisite(&d.key, network, true));
        }
        for volume in d.config.volume_names() {
            deps.extend(self.prerequisite(&d.key, volume, false));
        }
        if let ImageStatus::Pending(pull) = ctx.image {
            deps.push(*pull);
        }
        let (image_id, labels) = match ctx.spec {
            Some(spec) => {
                let labels = container_labels(
                    self.owner,
                    self.source,
                    &d.key,
                    replica,
                    &spec.json,
                    &spec.hash,
                    &d.config.labels,
                );
                (Some(spec.image_id.clone()), labels)
            }
            None => (None, BTreeMap::new()),
        };
        let create = CreateSpec {
            name: name.to_string(),
            replica,
            config: d.config.clone(),
            image_id,
            labels,
            start: d.state == DesiredRunState::Running,
        };
        let node = self.graph.add(
            &d.key,
            Action::CreateContainer(Box::new(create)),
            reason,
            deps,
        );
        let ports = d
            .config
            .ports
            .iter()
            .filter_map(HostPort::from_binding)
            .collect();
        self.taken.push(Claim {
            node,
            name: Some(name.to_string()),
            ports,
            container: None,
            exempt: None,
        });
        node
    }

    /// Plans a start after `after` when the resource should run and may start.
    fn start(
        &mut self,
        ctx: &mut ResourceCtx<'_>,
        name: &str,
        reason: Reason,
        after: impl Into<Option<NodeId>>,
    ) -> Option<NodeId> {
        if ctx.d.state != DesiredRunState::Running {
            return None;
        }
        if ctx.start_blocked.is_some() {
            ctx.start_suppressed = true;
            return None;
        }
        Some(self.graph.add(
            &ctx.d.key,
            Action::StartContainer {
                name: name.to_string(),
            },
            reason,
            after.into(),
        ))
    }

    /// The node a create using network or volume `name` waits for: the declared one's
    /// create, nothing for a declared one present, else an EnsureNetwork / EnsureVolume
    /// planned once per plan.
    fn prerequisite(
        &mut self,
        resource: &ResourceKey,
        name: &str,
        network: bool,
    ) -> Option<NodeId> {
        let map = if network {
            &mut self.networks
        } else {
            &mut self.volumes
        };
        if let Some(&node) = map.get(name) {
            return node;
        }
        let action = if network {
            Action::EnsureNetwork {
                name: name.to_string(),
            }
        } else {
            Action::EnsureVolume {
                name: name.to_string(),
            }
        };
        let node = self.graph.add(resource, action, Reason::Prerequisite, []);
        map.insert(name.to_string(), Some(node));
        Some(node)
    }
}

/// Per-resource settings threaded through the replica loop.
struct ResourceCtx<'a> {
    d: &'a DesiredContainer,
    image: &'a ImageStatus,
    spec: Option<&'a Spec>,
    start_blocked: Option<&'a str>,
    start_suppressed: bool,
    settings: Settings,
    /// The desired revision is unfit (see [`Planner::plan_resource`]).
    held: bool,
    /// Some replica keeps (or gets back) another revision because the desired one is unfit.
    held_back: bool,
}

/// The replicas being replaced in this plan, in waves of `maxUnavailable`: a wave's first
/// disruptive actions wait until every replica of the previous wave is ready.
#[derive(Default)]
struct Waves {
    members: Vec<WaveMember>,
}

struct WaveMember {
    /// What takes the old container out of service (rename, stop, remove) or, with nothing
    /// to take out, the create.
    first: Vec<NodeId>,
    /// After this the replica is replaced: the removal of the kept old container (which
    /// waits for the new one's await or start); for a plain recreate the start or create.
    ready: NodeId,
    /// Begun by an earlier pass (only the await is left): goes in the first wave.
    in_progress: bool,
}

impl Waves {
    fn push(&mut self, first: Vec<NodeId>, ready: NodeId, in_progress: bool) {
        self.members.push(WaveMember {
            first,
            ready,
            in_progress,
        });
    }

    /// Orders each wave after the previous one. Rollouts already under way come first, then
    /// replicas by index.
    fn chain(mut self, graph: &mut Graph, size: usize) {
        self.members.sort_by_key(|m| !m.in_progress);
        let waves: Vec<&[WaveMember]> = self.members.chunks(size.max(1)).collect();
        for pair in waves.windows(2) {
            for member in pair[1] {
                for &first in &member.first {
                    for previous in pair[0] {
                        graph.order(previous.ready, first);
                    }
                }
            }
        }
    }
}

/// True when `failed` holds revision `hash` of `key` back.
pub(super) fn held_back(
    failed: &BTreeSet<(ResourceKey, String)>,
    key: &ResourceKey,
    hash: &str,
) -> bool {
    failed.contains(&(key.clone(), hash.to_string()))
}

/// `SpecChanged` from `old`'s spec label to the desired spec.
fn spec_changed(old: &ObservedContainer, spec: &Spec) -> Reason {
    let changes = match &old.spec {
        Some(old) => changed_fields(old, &spec.json),
        None => vec![FieldChange {
            field: "spec".into(),
            old: "(unknown)".into(),
            new: spec.json.clone(),
        }],
    };
    Reason::SpecChanged { changes }
}

/// Why a lone kept container takes its name back: the desired revision is held back, or it
/// simply is the container to run.
fn restore_reason(ctx: &mut ResourceCtx<'_>, held: bool) -> Reason {
    match (held, ctx.spec) {
        (true, Some(spec)) => {
            ctx.held_back = true;
            Reason::RolledBack {
                revision: spec.hash.clone(),
            }
        }
        _ => Reason::NameChanged,
    }
}

/// True when the container runs (or is about to, or is paused): stopping it means something.
fn is_up(c: &ObservedContainer) -> bool {
    matches!(
        c.state,
        RunState::Running | RunState::Restarting | RunState::Paused
    )
}

/// The host ports removing a kept container frees: none when it is stopped (here or before),
/// since a stopped container binds nothing.
fn kept_ports(c: &ObservedContainer, stopped_here: bool) -> Vec<HostPort> {
    if stopped_here || !is_up(c) {
        Vec::new()
    } else {
        observed_ports(c)
    }
}

/// Whether a container that should run needs a start. A created-but-never-started container
/// (crash between create and start) does; an exited one does unless it ran to completion as
/// a one-shot (`Never`, or `OnFailure` with exit code 0) — those are never re-run for the
/// same spec.
fn needs_start(c: &ObservedContainer, policy: RestartPolicy) -> bool {
    match c.state {
        RunState::Created => true,
        RunState::Exited => match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => c.exit_code != Some(0),
            RestartPolicy::Always => true,
        },
        RunState::Running
        | RunState::Restarting
        | RunState::Paused
        | RunState::Removing
        | RunState::Dead => false,
    }
}

/// Host ports an observed container holds: from its spec label (what it was created with)
/// and from the daemon's list of published ports.
fn observed_ports(c: &ObservedContainer) -> Vec<HostPort> {
    let mut ports: Vec<HostPort> = c
        .ports
        .iter()
        .filter_map(|p| HostPort::from_published(p))
        .collect();
    if let Some(spec) = &c.spec {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(spec)
        {
            if let Some(list) = map.get("ports") {
                if let Ok(bindings) = serde_json::from_value::<Vec<PortBinding>>(list.clone()) {
                    ports.extend(bindings.iter().filter_map(HostPort::from_binding));
                }
            }
        }
    }
    ports
}

//! Test helpers for the planner: small builders for desired and observed containers, and an
//! in-memory daemon that carries out a plan the way the executor and Docker would (names are
//! unique, host ports clash on start, failed or deferred actions hold back their dependents,
//! health checks start `starting` and end healthy, or unhealthy for chosen revisions).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{spec_hash, spec_json, Action, ActionId, Plan, PlanOptions};
use crate::api::{
    DependencyCondition, DesiredRunState, PullPolicy, RestartPolicy, RolloutStrategyType,
};
use crate::desired::{
    ContainerConfig, DesiredContainer, DesiredImage, DesiredState, Health, ImageBinding, Kind,
    Origin, PortBinding, ResourceKey, Rollout,
};
use crate::labels;
use crate::observed::{HealthState, ObservedContainer, ObservedState, RunState};

pub const OWNER: &str = "test-owner";
pub const IMAGE: &str = "registry.local/app:1";
pub const IMAGE_ID: &str = "sha256:1111";

pub fn options() -> PlanOptions {
    PlanOptions {
        owner: OWNER.into(),
        source: String::new(),
        take_over: false,
        record_adoptions: false,
        prune: false,
        failed_revisions: BTreeSet::new(),
        fresh_pulls: BTreeSet::new(),
    }
}

pub fn pruning() -> PlanOptions {
    PlanOptions {
        prune: true,
        ..options()
    }
}

/// Options holding back revision `hash` of `resource`.
pub fn failing(resource: &str, hash: &str) -> PlanOptions {
    PlanOptions {
        failed_revisions: BTreeSet::from([(key(resource), hash.to_string())]),
        ..options()
    }
}

pub fn key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::Container, "default", name)
}

pub fn image_key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::Image, "default", name)
}

/// A minimal valid configuration running `image`.
pub fn config(image: &str) -> ContainerConfig {
    ContainerConfig {
        image: image.into(),
        cmd: Some(vec!["sleep".into(), "1000".into()]),
        network: "bridge".into(),
        restart_policy: "unless-stopped".into(),
        ..Default::default()
    }
}

pub fn healthcheck() -> Health {
    Health {
        test: vec!["CMD".into(), "true".into()],
        interval_ns: Some(1_000_000_000),
        ..Default::default()
    }
}

pub fn host_port(port: u16) -> PortBinding {
    PortBinding {
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: None,
        host_port: Some(port),
    }
}

/// One running replica of `IMAGE` with `IfNotPresent`.
pub fn container(name: &str) -> DesiredContainer {
    DesiredContainer {
        key: key(name),
        origin: Origin::File {
            path: "/m.yaml".into(),
            document: 1,
        },
        image: ImageBinding {
            reference: IMAGE.into(),
            pull_policy: PullPolicy::IfNotPresent,
            resource: None,
        },
        replicas: 1,
        state: DesiredRunState::Running,
        restart_policy: RestartPolicy::Always,
        depends_on: Vec::new(),
        config: Arc::new(config(IMAGE)),
        rollout: Rollout::default(),
    }
}

/// Builder-style tweaks of a [`DesiredContainer`].
pub trait DesiredExt: Sized {
    fn replicas(self, n: u32) -> Self;
    fn stopped(self) -> Self;
    fn restart(self, policy: RestartPolicy) -> Self;
    fn depends(self, on: &str, condition: DependencyCondition) -> Self;
    fn with_config(self, f: impl FnOnce(&mut ContainerConfig)) -> Self;
    fn image(self, reference: &str, policy: PullPolicy) -> Self;
    fn strategy(self, strategy: RolloutStrategyType, max_unavailable: u32) -> Self;
    fn healthy_check(self) -> Self;
    /// The spec hash of this resource's replicas when created from `IMAGE_ID`.
    fn hash(&self) -> String;
}

impl DesiredExt for DesiredContainer {
    fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }
    fn stopped(mut self) -> Self {
        self.state = DesiredRunState::Stopped;
        self
    }
    fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart_policy = policy;
        let name = match policy {
            RestartPolicy::Always => "unless-stopped",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "no",
        };
        self.with_config(|c| c.restart_policy = name.into())
    }
    fn depends(mut self, on: &str, condition: DependencyCondition) -> Self {
        self.depends_on.push((key(on), condition));
        self
    }
    fn with_config(mut self, f: impl FnOnce(&mut ContainerConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }
    fn image(mut self, reference: &str, policy: PullPolicy) -> Self {
        self.image.reference = reference.into();
        self.image.pull_policy = policy;
        self.with_config(|c| c.image = reference.into())
    }
    fn strategy(mut self, strategy: RolloutStrategyType, max_unavailable: u32) -> Self {
        self.rollout.strategy = strategy;
        self.rollout.max_unavailable = max_unavailable;
        self
    }
    fn healthy_check(self) -> Self {
        self.with_config(|c| c.healthcheck = Some(healthcheck()))
    }
    fn hash(&self) -> String {
        spec_hash(&spec_json(&self.config, IMAGE_ID))
    }
}

pub fn desired(containers: impl IntoIterator<Item = DesiredContainer>) -> DesiredState {
    DesiredState {
        images: BTreeMap::new(),
        containers: containers.into_iter().map(|c| (c.key.clone(), c)).collect(),
        ..Default::default()
    }
}

pub fn image_resource(name: &str, reference: &str, policy: PullPolicy) -> DesiredImage {
    DesiredImage {
        key: image_key(name),
        origin: Origin::File {
            path: "/m.yaml".into(),
            document: 1,
        },
        reference: reference.into(),
        pull_policy: policy,
        build: None,
        tags: Vec::new(),
        push: false,
        registry_auth: None,
        update: None,
    }
}

/// An observed state holding `IMAGE` as `IMAGE_ID`.
pub fn observed(containers: impl IntoIterator<Item = ObservedContainer>) -> ObservedState {
    let mut state = ObservedState {
        containers: containers.into_iter().collect(),
        ..Default::default()
    };
    state
        .images
        .by_reference
        .insert(IMAGE.into(), IMAGE_ID.into());
    state
}

/// The container dockwright would have created for replica `replica` of `d` from `image_id`,
/// running, with every label right.
pub fn matching(d: &DesiredContainer, replica: u32, image_id: &str) -> ObservedContainer {
    let json = spec_json(&d.config, image_id);
    ObservedContainer {
        id: format!("id-{}-{replica}", d.key.name),
        name: d.key.container_name(d.replicas, replica),
        resource: Some(d.key.clone()),
        replica: Some(replica),
        spec_hash: Some(spec_hash(&json)),
        spec: Some(json),
        source: None,
        state: RunState::Running,
        health: d.config.healthcheck.as_ref().map(|_| HealthState::Healthy),
        exit_code: None,
        image_id: image_id.into(),
        image: d.image.reference.clone(),
        ports: Vec::new(),
        created: 100,
        status: "Up".into(),
    }
}

/// Every replica of every desired container, converged.
pub fn converged(state: &DesiredState) -> ObservedState {
    observed(
        state
            .containers
            .values()
            .flat_map(|d| (0..d.replicas).map(move |r| matching(d, r, IMAGE_ID))),
    )
}

/// Builder-style tweaks of an [`ObservedContainer`].
pub trait ObservedExt: Sized {
    fn state(self, state: RunState) -> Self;
    fn exit(self, code: i64) -> Self;
    fn named(self, name: &str) -> Self;
    fn id(self, id: &str) -> Self;
    fn created(self, at: i64) -> Self;
    fn health(self, health: Option<HealthState>) -> Self;
}

impl ObservedExt for ObservedContainer {
    fn state(mut self, state: RunState) -> Self {
        self.state = state;
        self
    }
    fn exit(mut self, code: i64) -> Self {
        self.state = RunState::Exited;
        self.exit_code = Some(code);
        self
    }
    fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    fn id(mut self, id: &str) -> Self {
        self.id = id.into();
        self
    }
    fn created(mut self, at: i64) -> Self {
        self.created = at;
        self
    }
    fn health(mut self, health: Option<HealthState>) -> Self {
        self.health = health;
        self
    }
}

/// `verb target` per action, for compact assertions.
pub fn lines(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{} {}", a.action.verb(), a.action.target()))
        .collect()
}

/// The id of the first action with this `verb target` line.
pub fn find(plan: &Plan, line: &str) -> ActionId {
    plan.actions
        .iter()
        .position(|a| format!("{} {}", a.action.verb(), a.action.target()) == line)
        .unwrap_or_else(|| panic!("no `{line}` in {:#?}", lines(plan)))
}

/// True when `later` depends on `earlier`, directly or through other actions.
pub fn depends_on(plan: &Plan, later: ActionId, earlier: ActionId) -> bool {
    let mut stack = vec![later];
    let mut seen = BTreeSet::new();
    while let Some(id) = stack.pop() {
        for &a in &plan.actions[id].after {
            if a == earlier {
                return true;
            }
            if seen.insert(a) {
                stack.push(a);
            }
        }
    }
    false
}

/// Checks the structural invariants every plan must hold.
pub fn assert_well_formed(plan: &Plan) {
    for (i, action) in plan.actions.iter().enumerate() {
        assert_eq!(action.id, i, "ids are positions");
        for &a in &action.after {
            assert!(
                a < i,
                "action {i} runs after {a}, which is not earlier: {plan:#?}"
            );
        }
    }
}

/// How one simulated action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimOutcome {
    Ok,
    Failed(String),
    Skipped,
    Deferred,
}

/// An in-memory daemon.
#[derive(Clone, Debug)]
pub struct Sim {
    pub state: ObservedState,
    /// Containers whose spec label contains one of these never pass their health check (the
    /// others turn healthy).
    pub unhealthy: BTreeSet<String>,
    /// Actions left before the process running the plan dies (`None`: it never does); the
    /// rest of the plan is then not run, as after a crash mid-pass.
    pub budget: Option<usize>,
    counter: i64,
}

impl Sim {
    pub fn new(state: ObservedState) -> Self {
        // Fresh IDs must not repeat those of containers a previous `Sim` created.
        let counter = state
            .containers
            .iter()
            .map(|c| c.created)
            .max()
            .unwrap_or(0)
            .max(10_000);
        Self {
            state,
            unhealthy: BTreeSet::new(),
            budget: None,
            counter,
        }
    }

    /// Runs `plan` in an order chosen by `seed` among those its `after` edges allow, as the
    /// parallel executor may. Returns each action's outcome by id.
    pub fn apply(&mut self, plan: &Plan, seed: u64) -> Vec<SimOutcome> {
        self.apply_checked(plan, seed, &mut |_| Ok(()))
            .unwrap_or_else(|e| panic!("no check to fail: {e}"))
    }

    /// [`Sim::apply`], calling `check` on the daemon's state after every action; stops at the
    /// first complaint.
    pub fn apply_checked(
        &mut self,
        plan: &Plan,
        seed: u64,
        check: &mut dyn FnMut(&ObservedState) -> Result<(), String>,
    ) -> Result<Vec<SimOutcome>, String> {
        let mut outcomes: Vec<Option<SimOutcome>> = vec![None; plan.actions.len()];
        let mut rng = seed | 1;
        loop {
            // Settle what cannot run.
            for action in &plan.actions {
                if outcomes[action.id].is_some() {
                    continue;
                }
                let blocked = action.after.iter().find_map(|a| match &outcomes[*a] {
                    Some(SimOutcome::Ok) | None => None,
                    Some(SimOutcome::Deferred) => Some(SimOutcome::Deferred),
                    Some(_) => Some(SimOutcome::Skipped),
                });
                if let Some(outcome) = blocked {
                    outcomes[action.id] = Some(outcome);
                } else if action.action.is_deferred() {
                    outcomes[action.id] = Some(SimOutcome::Deferred);
                }
            }
            let ready: Vec<ActionId> = plan
                .actions
                .iter()
                .filter(|a| {
                    outcomes[a.id].is_none()
                        && a.after.iter().all(|b| outcomes[*b] == Some(SimOutcome::Ok))
                })
                .map(|a| a.id)
                .collect();
            if ready.is_empty() || self.budget == Some(0) {
                break;
            }
            if let Some(left) = self.budget.as_mut() {
                *left -= 1;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = ready[(rng % ready.len() as u64) as usize];
            let outcome = match self.run(&plan.actions[id].action) {
                Ok(()) => SimOutcome::Ok,
                Err(e) => SimOutcome::Failed(e),
            };
            outcomes[id] = Some(outcome);
            let line = format!(
                "{} {}",
                plan.actions[id].action.verb(),
                plan.actions[id].action.target()
            );
            check(&self.state).map_err(|e| format!("after `{line}`: {e}"))?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(SimOutcome::Skipped))
            .collect())
    }

    /// The health a started container's check ends in.
    fn verdict(&self, c: &ObservedContainer) -> HealthState {
        verdict(&self.unhealthy, c)
    }

    fn by_name(&mut self, name: &str) -> Result<&mut ObservedContainer, String> {
        self.state
            .containers
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no container {name}"))
    }

    fn by_id(&mut self, id: &str) -> Result<&mut ObservedContainer, String> {
        self.state
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| format!("no container id {id}"))
    }

    fn run(&mut self, action: &Action) -> Result<(), String> {
        self.counter += 1;
        match action {
            Action::PullImage { reference, .. } => {
                let fresh = format!("sha256:pulled-{}", self.counter);
                // A re-pull of a present image finds the registry unchanged.
                self.state
                    .images
                    .by_reference
                    .entry(reference.clone())
                    .or_insert(fresh);
                Ok(())
            }
            Action::EnsureNetwork { .. } | Action::EnsureVolume { .. } => Ok(()),
            Action::AdoptContainer { id, source, .. } => {
                let c = self
                    .state
                    .containers
                    .iter_mut()
                    .find(|c| &c.id == id)
                    .ok_or_else(|| format!("adopt of unknown {id}"))?;
                c.source = Some(source.clone());
                Ok(())
            }
            Action::CreateNetwork(spec) | Action::RecreateNetwork { spec, .. } => {
                let object = sim_object(&spec.name, &spec.labels);
                self.state.networks.retain(|n| n.name != spec.name);
                self.state.networks.push(object);
                Ok(())
            }
            Action::CreateVolume(spec) => {
                let object = sim_object(&spec.name, &spec.labels);
                self.state.volumes.retain(|v| v.name != spec.name);
                self.state.volumes.push(object);
                Ok(())
            }
            Action::RemoveNetwork { name, .. } => {
                self.state.networks.retain(|n| &n.name != name);
                Ok(())
            }
            Action::RemoveVolume { name } => {
                self.state.volumes.retain(|v| &v.name != name);
                Ok(())
            }
            Action::BuildImage(spec) => {
                let fresh = format!("sha256:built-{}", self.counter);
                self.state
                    .images
                    .by_reference
                    .insert(spec.reference.clone(), fresh.clone());
                self.state.images.by_id.insert(
                    fresh.clone(),
                    crate::observed::ObservedImage {
                        id: fresh,
                        tags: vec![spec.reference.clone()],
                        build_hash: spec.labels.get(labels::BUILD_HASH).cloned(),
                        owner: spec.labels.get(labels::OWNER).cloned(),
                        ..Default::default()
                    },
                );
                Ok(())
            }
            Action::TagImage { source, target } => {
                let id = self
                    .state
                    .images
                    .resolve(source)
                    .ok_or_else(|| format!("tag: no image {source}"))?
                    .to_string();
                self.state.images.by_reference.insert(target.clone(), id);
                Ok(())
            }
            Action::PushImage { .. } => Ok(()),
            Action::RemoveImage { id, .. } => {
                self.state.images.by_reference.retain(|_, v| v != id);
                self.state.images.by_id.remove(id);
                Ok(())
            }
            Action::CreateContainer(spec) => {
                if self.state.containers.iter().any(|c| c.name == spec.name) {
                    return Err(format!("name {} in use", spec.name));
                }
                let image_id = spec.image_id.clone().ok_or("deferred create run")?;
                let label = |l: &str| spec.labels.get(l).cloned();
                if label(labels::OWNER).as_deref() != Some(OWNER) {
                    return Err("created without the owner label".into());
                }
                let ports = spec
                    .config
                    .ports
                    .iter()
                    .filter_map(|p| {
                        Some(format!(
                            "0.0.0.0:{}->{}/{}",
                            p.host_port?, p.container_port, p.protocol
                        ))
                    })
                    .collect();
                self.state.containers.push(ObservedContainer {
                    id: format!("sim-{}", self.counter),
                    name: spec.name.clone(),
                    resource: label(labels::RESOURCE).and_then(|r| ResourceKey::parse(&r)),
                    replica: label(labels::REPLICA).and_then(|r| r.parse().ok()),
                    spec_hash: label(labels::SPEC_HASH),
                    spec: label(labels::SPEC),
                    source: label(labels::SOURCE),
                    state: RunState::Created,
                    health: None,
                    exit_code: None,
                    image_id,
                    image: spec.config.image.clone(),
                    ports,
                    created: self.counter,
                    status: "Created".into(),
                });
                Ok(())
            }
            Action::StartContainer { name } => {
                let c = self.by_name(name)?.clone();
                if c.state == RunState::Running {
                    return Ok(());
                }
                let clash = self.state.containers.iter().any(|o| {
                    o.id != c.id
                        && matches!(
                            o.state,
                            RunState::Running | RunState::Restarting | RunState::Paused
                        )
                        && o.ports
                            .iter()
                            .any(|p| c.ports.iter().any(|q| host_part(p) == host_part(q)))
                });
                if clash {
                    return Err(format!("port of {name} already allocated"));
                }
                let spec = c.spec.clone().unwrap_or_default();
                let one_shot = spec.contains("\"restartPolicy\":\"no\"");
                let c = self.by_name(name)?;
                if one_shot {
                    c.state = RunState::Exited;
                    c.exit_code = Some(0);
                } else {
                    c.state = RunState::Running;
                    c.exit_code = None;
                    c.health = spec
                        .contains("\"healthcheck\"")
                        .then_some(HealthState::Starting);
                }
                Ok(())
            }
            Action::StopContainer { id, .. } => {
                let c = self.by_id(id)?;
                c.state = RunState::Exited;
                c.exit_code = Some(143);
                c.health = None;
                Ok(())
            }
            Action::RemoveContainer { id, .. } => {
                self.by_id(id)?;
                self.state.containers.retain(|c| &c.id != id);
                Ok(())
            }
            Action::RenameContainer { id, to, .. } => {
                if self.state.containers.iter().any(|c| &c.name == to) {
                    return Err(format!("name {to} in use"));
                }
                self.by_id(id)?.name = to.clone();
                Ok(())
            }
            Action::AwaitCondition {
                name, condition, ..
            } => {
                // Waiting lets time pass: the health check comes to its verdict.
                let found = self.by_name(name)?.clone();
                let verdict = self.verdict(&found);
                let c = self.by_name(name)?;
                if c.state == RunState::Running
                    && c.health.is_some_and(|h| h != HealthState::Healthy)
                {
                    c.health = Some(verdict);
                }
                let reached = match condition {
                    DependencyCondition::Started => c.state == RunState::Running,
                    DependencyCondition::Healthy => {
                        c.state == RunState::Running && c.health == Some(HealthState::Healthy)
                    }
                    DependencyCondition::Completed => {
                        c.state == RunState::Exited && c.exit_code == Some(0)
                    }
                };
                if reached {
                    Ok(())
                } else {
                    Err(format!("{name} is not {condition:?}"))
                }
            }
        }
    }

    /// Time passes: restarting containers come up, health checks come to their verdict,
    /// one-shots finish. (`restartPolicy: Never` containers are one-shots that succeed; the
    /// others are services.)
    pub fn settle(&mut self) {
        let unhealthy = self.unhealthy.clone();
        for c in &mut self.state.containers {
            let verdict = verdict(&unhealthy, c);
            let spec = c.spec.clone().unwrap_or_default();
            let one_shot = spec.contains("\"restartPolicy\":\"no\"");
            if c.state == RunState::Restarting {
                c.state = RunState::Running;
            }
            if c.state == RunState::Running && one_shot {
                c.state = RunState::Exited;
                c.exit_code = Some(0);
                c.health = None;
            } else if c.state == RunState::Running
                && spec.contains("\"healthcheck\"")
                && c.health != Some(HealthState::Healthy)
            {
                c.health = Some(verdict);
            }
        }
    }
}

/// The health `c`'s check ends in: unhealthy when its spec contains a marker of `unhealthy`.
fn verdict(unhealthy: &BTreeSet<String>, c: &ObservedContainer) -> HealthState {
    let spec = c.spec.as_deref().unwrap_or_default();
    if unhealthy
        .iter()
        .any(|marker| spec.contains(marker.as_str()))
    {
        HealthState::Unhealthy
    } else {
        HealthState::Healthy
    }
}

fn host_part(published: &str) -> &str {
    published.split("->").next().unwrap_or(published)
}

/// A network or volume as the simulated daemon records its creation (no users).
fn sim_object(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> crate::observed::ObservedObject {
    crate::observed::ObservedObject {
        users: Some(Vec::new()),
        ..crate::observed::ObservedObject::from_labels(
            format!("id-{name}"),
            name.to_string(),
            |k| labels.get(k).cloned(),
        )
    }
}

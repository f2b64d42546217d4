//! Property tests on random desired × observed pairs: plans converge (or roll back revisions
//! that never become healthy) when carried out by the in-memory daemon, never touch what is
//! not ours, are topologically ordered, and a change of `replicas` or `state` alone never
//! replaces the replicas that stay. Rollouts keep enough replicas up at every single step,
//! also when the pass carrying them out dies halfway.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::testutil::*;
use super::*;
use crate::api::{
    DependencyCondition, DesiredRunState, PullPolicy, RestartPolicy, RolloutStrategyType,
};
use crate::desired::{ContainerConfig, DesiredContainer, Kind, Mount};
use crate::observed::{HealthState, ObservedContainer, RunState};

const NAMES: [&str; 3] = ["a", "b", "c"];
const REFS: [&str; 2] = ["registry.local/img0:1", "registry.local/img1:1"];
/// Rounds of plan → apply allowed before the plan must be empty (a pull defers creates to the
/// second round, a failed rollout is rolled back in the next; everything else converges in one).
const ROUNDS: u64 = 4;
/// Env value marking a desired revision whose health check never passes in the simulation.
const BAD: &str = "V=bad";

#[derive(Clone, Debug)]
struct ImageGen {
    present: bool,
    policy: u8,
    resource: bool,
}

#[derive(Clone, Debug)]
struct ResourceGen {
    declared: bool,
    replicas: u32,
    running: bool,
    restart: u8,
    env: u8,
    port: bool,
    named_network: bool,
    volume: bool,
    health: bool,
    image: usize,
    dependency: Option<u8>,
    stop_first: bool,
    max_unavailable: u32,
    /// The desired revision never becomes healthy.
    unhealthy: bool,
    /// The desired revision is in `PlanOptions::failed_revisions` (when its hash is known).
    failed: bool,
}

#[derive(Clone, Debug)]
struct ObservedGen {
    owner: u8,
    replica: Option<u32>,
    short_name: bool,
    odd_name: bool,
    /// Named as a rollout's kept container.
    kept: bool,
    spec: u8,
    state: u8,
    exit: i64,
    health: u8,
    created: i64,
}

#[derive(Clone, Debug)]
struct World {
    images: Vec<ImageGen>,
    resources: Vec<ResourceGen>,
    observed: Vec<ObservedGen>,
    prune: bool,
    seed: u64,
}

fn image_gen() -> impl Strategy<Value = ImageGen> {
    (any::<bool>(), 0u8..3, any::<bool>()).prop_map(|(present, policy, resource)| ImageGen {
        present,
        policy,
        resource,
    })
}

fn resource_gen() -> impl Strategy<Value = ResourceGen> {
    (
        prop::bool::weighted(0.85),
        0u32..4,
        prop::bool::weighted(0.75),
        0u8..3,
        0u8..2,
        prop::bool::weighted(0.3),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0usize..2,
        prop::option::of(0u8..3),
        (
            any::<bool>(),
            1u32..4,
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.2),
        ),
    )
        .prop_map(
            |(
                declared,
                replicas,
                running,
                restart,
                env,
                port,
                named_network,
                volume,
                health,
                image,
                dependency,
                (stop_first, max_unavailable, unhealthy, failed),
            )| {
                ResourceGen {
                    declared,
                    // A published host port allows one replica only (validation rejects more).
                    replicas: if port { replicas.min(1) } else { replicas },
                    running,
                    restart,
                    env,
                    port,
                    named_network,
                    volume,
                    health,
                    image,
                    dependency,
                    stop_first,
                    max_unavailable,
                    unhealthy,
                    failed,
                }
            },
        )
}

fn observed_gen() -> impl Strategy<Value = ObservedGen> {
    (
        0u8..6,
        prop::option::weighted(0.9, 0u32..4),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.25),
        0u8..4,
        0u8..5,
        0i64..2,
        0u8..3,
        0i64..100,
    )
        .prop_map(
            |(owner, replica, short_name, odd_name, kept, spec, state, exit, health, created)| {
                ObservedGen {
                    owner,
                    replica,
                    short_name,
                    odd_name,
                    kept,
                    spec,
                    state,
                    exit,
                    health,
                    created,
                }
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(image_gen(), 2),
        prop::collection::vec(resource_gen(), 3),
        prop::collection::vec(observed_gen(), 0..10),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(images, resources, observed, prune, seed)| World {
            images,
            resources,
            observed,
            prune,
            seed,
        })
}

fn policy(n: u8) -> PullPolicy {
    [
        PullPolicy::IfNotPresent,
        PullPolicy::Always,
        PullPolicy::Never,
    ][usize::from(n % 3)]
}

fn restart(n: u8) -> RestartPolicy {
    [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ][usize::from(n % 3)]
}

fn resource_config(index: usize, g: &ResourceGen, env: &str) -> ContainerConfig {
    let mut c = config(REFS[g.image]);
    c.env = vec![format!("V={env}")];
    if g.unhealthy {
        c.env.push(BAD.into());
    }
    c.restart_policy = ["unless-stopped", "on-failure", "no"][usize::from(g.restart % 3)].into();
    if g.port {
        c.ports = vec![host_port(8000 + index as u16)];
    }
    if g.named_network {
        c.network = "net".into();
    }
    if g.volume {
        c.mounts = vec![Mount::Volume {
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
        }];
    }
    if g.health {
        c.healthcheck = Some(healthcheck());
    }
    c
}

fn image_id(w: &World, reference_index: usize) -> Option<String> {
    w.images[reference_index]
        .present
        .then(|| format!("sha256:img{reference_index}-v1"))
}

fn build_desired(w: &World) -> DesiredState {
    let mut state = DesiredState::default();
    if w.images[0].resource {
        state.images.insert(
            image_key("img0"),
            image_resource("img0", REFS[0], policy(w.images[0].policy)),
        );
    }
    for (i, g) in w.resources.iter().enumerate() {
        if !g.declared {
            continue;
        }
        let mut d: DesiredContainer = container(NAMES[i]).replicas(g.replicas);
        d.image.reference = REFS[g.image].into();
        d.image.pull_policy = policy(w.images[g.image].policy);
        if g.image == 0 && w.images[0].resource {
            d.image.resource = Some(image_key("img0"));
        }
        d.state = if g.running {
            DesiredRunState::Running
        } else {
            DesiredRunState::Stopped
        };
        d.restart_policy = restart(g.restart);
        d.config = Arc::new(resource_config(i, g, &g.env.to_string()));
        let strategy = if g.stop_first {
            RolloutStrategyType::StopFirst
        } else {
            RolloutStrategyType::StartFirst
        };
        d = d.strategy(strategy, g.max_unavailable);
        if let (Some(kind), true) = (g.dependency, i > 0) {
            // Depend on the previous resource, with a condition it can reach.
            let target = &w.resources[i - 1];
            let condition = match kind {
                // Never on a revision that cannot become healthy: that would wait forever.
                1 if target.health
                    && !target.unhealthy
                    && restart(target.restart) != RestartPolicy::Never =>
                {
                    DependencyCondition::Healthy
                }
                2 if restart(target.restart) == RestartPolicy::Never => {
                    DependencyCondition::Completed
                }
                _ => DependencyCondition::Started,
            };
            d.depends_on.push((key(NAMES[i - 1]), condition));
        }
        state.containers.insert(d.key.clone(), d);
    }
    state
}

fn build_observed(w: &World) -> ObservedState {
    let mut state = ObservedState::default();
    for (i, reference) in REFS.iter().enumerate() {
        if let Some(id) = image_id(w, i) {
            state.images.by_reference.insert(reference.to_string(), id);
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (k, g) in w.observed.iter().enumerate() {
        let (resource, name, config) = match g.owner {
            0..=2 => {
                let i = usize::from(g.owner);
                let base = NAMES[i];
                let name = match g.replica {
                    None => format!("{base}-orphan{k}"),
                    Some(_) if g.odd_name => format!("{base}-old{k}"),
                    Some(0) if g.short_name => base.to_string(),
                    Some(r) => format!("{base}-{r}"),
                };
                let name = if g.kept && g.replica.is_some() {
                    kept_name(&name)
                } else {
                    name
                };
                let config = resource_config(i, &w.resources[i], &w.resources[i].env.to_string());
                (Some(key(base)), name, Some((config, w.resources[i].image)))
            }
            3 => (Some(key("x")), format!("x-{k}"), None),
            4 => (
                Some(ResourceKey::new(Kind::Image, "default", "a")),
                format!("img-{k}"),
                None,
            ),
            _ => (None, format!("junk-{k}"), None),
        };
        if !names.insert(name.clone()) {
            continue;
        }
        let (config, image) = config.unwrap_or_else(|| (self::config(REFS[0]), 0));
        let id = image_id(w, image).unwrap_or_else(|| "sha256:gone".into());
        let (spec, hash) = match g.spec {
            0 => {
                let json = spec_json(&config, &id);
                (Some(json.clone()), Some(spec_hash(&json)))
            }
            1 => {
                let mut stale = config.clone();
                stale.env = vec!["V=stale".into()];
                let json = spec_json(&stale, &id);
                (Some(json.clone()), Some(spec_hash(&json)))
            }
            2 => (None, None),
            _ => (Some("garbage{".into()), Some("sha256:garbage".into())),
        };
        let state_ = [
            RunState::Created,
            RunState::Running,
            RunState::Exited,
            RunState::Restarting,
            RunState::Dead,
        ][usize::from(g.state % 5)];
        let ports = match (&resource, state_) {
            (Some(r), RunState::Running) if r.name != "x" && r.kind == Kind::Container => config
                .ports
                .iter()
                .filter_map(|p| {
                    Some(format!(
                        "0.0.0.0:{}->{}/tcp",
                        p.host_port?, p.container_port
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        state.containers.push(ObservedContainer {
            id: format!("obs-{k}"),
            name,
            resource,
            replica: if g.owner <= 2 { g.replica } else { Some(0) },
            spec_hash: hash,
            spec,
            source: None,
            state: state_,
            health: (config.healthcheck.is_some() && state_ == RunState::Running).then_some(
                [
                    HealthState::Starting,
                    HealthState::Healthy,
                    HealthState::Unhealthy,
                ][usize::from(g.health % 3)],
            ),
            exit_code: (state_ == RunState::Exited).then_some(g.exit),
            image_id: id,
            image: config.image.clone(),
            ports,
            created: g.created,
            status: String::new(),
        });
    }
    state
}

/// The desired spec hash of resource `i` when its image is present from the start.
fn desired_hash(w: &World, desired: &DesiredState, i: usize) -> Option<String> {
    let d = desired.containers.get(&key(NAMES[i]))?;
    let id = image_id(w, w.resources[i].image)?;
    Some(spec_hash(&spec_json(&d.config, &id)))
}

fn options_for(w: &World) -> PlanOptions {
    let desired = build_desired(w);
    // Not for a dependency others await healthy: held on a revision that may have no health
    // check (or a spec label the simulation can read), it would keep them waiting.
    let awaited_healthy = |i: usize| {
        desired.containers.values().any(|d| {
            d.depends_on
                .contains(&(key(NAMES[i]), DependencyCondition::Healthy))
        })
    };
    PlanOptions {
        owner: OWNER.into(),
        source: String::new(),
        take_over: false,
        record_adoptions: false,
        prune: w.prune,
        failed_revisions: (0..NAMES.len())
            .filter(|&i| w.resources[i].failed && !awaited_healthy(i))
            .filter_map(|i| Some((key(NAMES[i]), desired_hash(w, &desired, i)?)))
            .collect(),
        fresh_pulls: BTreeSet::new(),
    }
}

/// A simulated daemon on which the revisions marked [`BAD`] never become healthy.
fn sim(start: ObservedState) -> Sim {
    let mut sim = Sim::new(start);
    sim.unhealthy.insert(BAD.into());
    sim
}

/// Converged: nothing left to do except `pullPolicy: Always` re-pulls, which happen every pass.
fn settled(plan: &Plan) -> bool {
    plan.actions.iter().all(|a| a.reason == Reason::PullAlways)
}

/// Checks that `plan` only touches containers that are ours to touch.
fn check_ownership(
    desired: &DesiredState,
    observed: &ObservedState,
    plan: &Plan,
    prune: bool,
) -> Result<(), TestCaseError> {
    let declared = |c: &ObservedContainer| {
        c.resource
            .as_ref()
            .is_some_and(|r| desired.containers.contains_key(r))
    };
    for a in &plan.actions {
        let by_id = |id: &str| observed.containers.iter().find(|c| c.id == id);
        let by_name = |name: &str| observed.containers.iter().find(|c| c.name == name);
        match &a.action {
            Action::RemoveContainer { id, .. } => {
                let c = by_id(id)
                    .ok_or_else(|| TestCaseError::fail(format!("remove of unknown {id}")))?;
                prop_assert!(
                    c.resource
                        .as_ref()
                        .is_none_or(|r| r.kind == Kind::Container),
                    "other kind touched: {c:?}"
                );
                if !declared(c) {
                    prop_assert!(
                        prune && a.reason == Reason::Pruned,
                        "undeclared removed without prune: {c:?}"
                    );
                }
            }
            Action::StopContainer { id, .. } | Action::RenameContainer { id, .. } => {
                let c = by_id(id).ok_or_else(|| TestCaseError::fail(format!("unknown {id}")))?;
                prop_assert!(declared(c), "{:?} on undeclared {c:?}", a.action);
            }
            Action::StartContainer { name } | Action::AwaitCondition { name, .. } => {
                if let Some(c) = by_name(name) {
                    prop_assert!(declared(c), "{:?} on undeclared {c:?}", a.action);
                }
            }
            Action::CreateContainer(spec) => {
                prop_assert!(desired.containers.contains_key(&a.resource));
                if !spec.labels.is_empty() {
                    prop_assert_eq!(
                        spec.labels.get(crate::labels::OWNER).map(String::as_str),
                        Some(OWNER)
                    );
                }
            }
            Action::PullImage { .. }
            | Action::EnsureNetwork { .. }
            | Action::EnsureVolume { .. } => {}
            Action::AdoptContainer { .. } => {
                prop_assert!(false, "adoption planned without a source: {:?}", a.action);
            }
            Action::CreateNetwork(_)
            | Action::RecreateNetwork { .. }
            | Action::RemoveNetwork { .. }
            | Action::CreateVolume(_)
            | Action::RemoveVolume { .. } => {
                prop_assert!(
                    false,
                    "object action {:?} without Network or Volume resources",
                    a.action
                );
            }
            Action::BuildImage(_)
            | Action::TagImage { .. }
            | Action::PushImage { .. }
            | Action::RemoveImage { .. } => {
                prop_assert!(false, "image action {:?} without Image resources", a.action);
            }
        }
    }
    Ok(())
}

/// Checks that only awaits failed when `plan` was applied (a dependency not yet healthy, a
/// revision that never becomes healthy); returns the revisions the failures made unfit.
fn check_failures(
    plan: &Plan,
    outcomes: &[SimOutcome],
) -> Result<BTreeSet<(ResourceKey, String)>, TestCaseError> {
    for (action, outcome) in plan.actions.iter().zip(outcomes) {
        if let SimOutcome::Failed(error) = outcome {
            prop_assert!(
                matches!(action.action, Action::AwaitCondition { .. }),
                "{} {} failed: {error}\nplan: {:#?}",
                action.action.verb(),
                action.action.target(),
                lines(plan)
            );
        }
    }
    Ok(unfit_revisions(plan, |id| {
        matches!(outcomes.get(id), Some(SimOutcome::Failed(_)))
    }))
}

/// Plans and applies up to [`ROUNDS`] times, checking every plan on the way, as the
/// converge loop does: a rollout whose await fails makes its revision unfit for the next
/// rounds (which roll it back). Returns the daemon and the unfit revisions.
fn converge(
    desired: &DesiredState,
    start: ObservedState,
    options: &PlanOptions,
    seed: u64,
) -> Result<(Sim, PlanOptions), TestCaseError> {
    let mut sim = sim(start);
    let mut options = options.clone();
    for round in 0..=ROUNDS {
        let plan = plan(desired, &sim.state, &options);
        assert_well_formed(&plan);
        check_ownership(desired, &sim.state, &plan, options.prune)?;
        if settled(&plan) {
            check_converged(desired, &sim.state, &plan, &options)?;
            return Ok((sim, options));
        }
        prop_assert!(
            round < ROUNDS,
            "not converged after {ROUNDS} rounds; plan: {:#?}\nstate: {:#?}",
            lines(&plan),
            sim.state
        );
        let outcomes = sim.apply(&plan, seed.wrapping_add(round));
        options
            .failed_revisions
            .extend(check_failures(&plan, &outcomes)?);
        sim.settle();
    }
    Ok((sim, options))
}

/// The end state of a converged (settled) daemon: every declared resource whose image is
/// present has exactly its replicas, one container each under its deterministic name, none
/// kept from a rollout, each running the desired revision — unless that revision is unfit
/// (rolled back, held) or the resource is blocked (a dependency that cannot be met holds a
/// rollout).
fn check_converged(
    desired: &DesiredState,
    state: &ObservedState,
    plan: &Plan,
    options: &PlanOptions,
) -> Result<(), TestCaseError> {
    for (key, d) in &desired.containers {
        let Some(image_id) = state.images.resolve(&d.image.reference) else {
            continue;
        };
        let hash = spec_hash(&spec_json(&d.config, image_id));
        let mine: Vec<&ObservedContainer> = state
            .containers
            .iter()
            .filter(|c| c.resource.as_ref() == Some(key))
            .collect();
        let mut per_replica: BTreeMap<Option<u32>, usize> = BTreeMap::new();
        for c in &mine {
            *per_replica.entry(c.replica).or_default() += 1;
            prop_assert!(
                c.replica.is_some_and(|r| r < d.replicas),
                "stray container {c:?}"
            );
            prop_assert!(
                !c.name.ends_with(KEPT_SUFFIX),
                "kept container left behind: {c:?}"
            );
            let r = c.replica.unwrap_or_default();
            prop_assert_eq!(&c.name, &key.container_name(d.replicas, r));
            let excused = options
                .failed_revisions
                .contains(&(key.clone(), hash.clone()))
                || plan.blocked.iter().any(|b| &b.resource == key);
            prop_assert!(
                c.spec_hash.as_deref() == Some(hash.as_str()) || excused,
                "{} runs another revision: {c:?}",
                c.name
            );
        }
        prop_assert!(
            per_replica.values().all(|n| *n == 1),
            "duplicated replicas: {per_replica:?}"
        );
        prop_assert_eq!(per_replica.len(), d.replicas as usize, "{:?}", mine);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Carrying out the plans converges within a few rounds, every plan is topologically
    /// ordered and only touches our own containers (checked inside `converge`).
    #[test]
    fn plans_converge_and_touch_only_what_is_ours(w in world()) {
        let desired = build_desired(&w);
        let observed = build_observed(&w);
        converge(&desired, observed, &options_for(&w), w.seed)?;
    }

    /// The observation's order never changes the plan.
    #[test]
    fn plans_are_deterministic(w in world()) {
        let desired = build_desired(&w);
        let mut observed = build_observed(&w);
        let first = plan(&desired, &observed, &options_for(&w));
        observed.containers.reverse();
        prop_assert_eq!(first, plan(&desired, &observed, &options_for(&w)));
    }

    /// After converging, changing only `replicas` and/or `state` never removes or recreates a
    /// replica that stays.
    #[test]
    fn replicas_and_state_changes_keep_remaining_replicas(
        w in world(),
        changes in prop::collection::vec((prop::option::of(0u32..4), any::<bool>()), 3),
    ) {
        let desired = build_desired(&w);
        let (sim, options) = converge(&desired, build_observed(&w), &options_for(&w), w.seed)?;
        let mut changed = desired.clone();
        for (i, (replicas, flip)) in changes.iter().enumerate() {
            let Some(d) = changed.containers.get_mut(&key(NAMES[i])) else { continue };
            if let (Some(n), true) = (replicas, d.config.ports.is_empty()) {
                d.replicas = *n;
            }
            if *flip {
                d.state = match d.state {
                    DesiredRunState::Running => DesiredRunState::Stopped,
                    DesiredRunState::Stopped => DesiredRunState::Running,
                };
            }
        }
        let plan = plan(&changed, &sim.state, &options);
        assert_well_formed(&plan);
        // Replicas the first convergence left on another revision (held back) may still move.
        let current = |c: &ObservedContainer| {
            let d = &changed.containers[c.resource.as_ref().unwrap()];
            sim.state.images.resolve(&d.image.reference).is_some_and(|id| {
                c.spec_hash.as_deref() == Some(spec_hash(&spec_json(&d.config, id)).as_str())
            })
        };
        for a in &plan.actions {
            match &a.action {
                Action::RemoveContainer { id, .. } => {
                    let c = sim.state.containers.iter().find(|c| &c.id == id).unwrap();
                    let n = changed.containers[&a.resource].replicas;
                    let scaled_down = a.reason == Reason::ScaledDown && c.replica.unwrap() >= n;
                    prop_assert!(scaled_down || !current(c), "{:?} removed {:?}", a.reason, c);
                }
                Action::CreateContainer(spec) => {
                    let existing = sim.state.containers.iter().any(|c| {
                        c.resource.as_ref() == Some(&a.resource)
                            && c.replica == Some(spec.replica)
                            && current(c)
                    });
                    prop_assert!(!existing, "replica {} of {} recreated", spec.replica, a.resource);
                }
                _ => {}
            }
        }
        // And the changed state converges too.
        converge(&changed, sim.state, &options, w.seed ^ 0x5eed)?;
    }
}

/// One resource rolling from a converged old revision to a new one.
#[derive(Clone, Debug)]
struct RolloutGen {
    replicas: u32,
    health: bool,
    stop_first: bool,
    port: bool,
    max_unavailable: u32,
    /// The new revision never becomes healthy.
    bad: bool,
    /// Actions each of the first passes gets before it dies (`None`: it does not).
    budgets: Vec<Option<usize>>,
    seed: u64,
}

fn rollout_gen() -> impl Strategy<Value = RolloutGen> {
    (
        1u32..5,
        prop::bool::weighted(0.7),
        any::<bool>(),
        prop::bool::weighted(0.2),
        1u32..4,
        any::<bool>(),
        prop::collection::vec(prop::option::weighted(0.3, 0usize..12), 3),
        any::<u64>(),
    )
        .prop_map(
            |(replicas, health, stop_first, port, max_unavailable, bad, budgets, seed)| {
                RolloutGen {
                    replicas: if port { 1 } else { replicas },
                    health,
                    stop_first,
                    port,
                    max_unavailable,
                    bad,
                    budgets,
                    seed,
                }
            },
        )
}

/// Passes allowed for a rollout (each dying pass needs one more).
const ROLLOUT_ROUNDS: usize = 10;

/// What must hold at every step of a rollout of `n` replicas: no replica has more than its
/// old and its new container, the resource never has more than `n + max_unavailable`, and at
/// least `n - down` replicas have a running container that is not unhealthy.
fn check_availability(
    state: &ObservedState,
    n: u32,
    down: u32,
    max_unavailable: u32,
) -> Result<(), String> {
    let mut per_replica: BTreeMap<u32, usize> = BTreeMap::new();
    let mut up: BTreeSet<u32> = BTreeSet::new();
    for c in &state.containers {
        let r = c
            .replica
            .ok_or_else(|| format!("no replica label: {c:?}"))?;
        *per_replica.entry(r).or_default() += 1;
        if c.state == RunState::Running && c.health != Some(HealthState::Unhealthy) {
            up.insert(r);
        }
    }
    if let Some((r, count)) = per_replica.iter().find(|(_, count)| **count > 2) {
        return Err(format!("replica {r} has {count} containers"));
    }
    let total: usize = per_replica.values().sum();
    if total > (n + max_unavailable) as usize {
        return Err(format!("{total} containers for {n} replicas"));
    }
    if (up.len() as u32) < n.saturating_sub(down) {
        return Err(format!(
            "only replicas {up:?} of {n} are up (at most {down} may be down)"
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A rollout, carried out step by step by the simulated daemon (and by passes that may die
    /// halfway, then be planned afresh from the observation), keeps every replica up with
    /// `StartFirst` and all but `maxUnavailable` with `StopFirst`, never duplicates a replica,
    /// and ends with every replica on the new revision — or, when the new revision never
    /// becomes healthy, with every replica back on its old container, same ID, same name.
    #[test]
    fn rollouts_keep_enough_replicas_and_converge_or_roll_back(g in rollout_gen()) {
        let strategy = if g.stop_first {
            RolloutStrategyType::StopFirst
        } else {
            RolloutStrategyType::StartFirst
        };
        let mut old = container("web").replicas(g.replicas).strategy(strategy, g.max_unavailable);
        if g.health {
            old = old.healthy_check();
        }
        if g.port {
            old = old.with_config(|c| c.ports = vec![host_port(8080)]);
        }
        let new = old
            .clone()
            .with_config(|c| c.env = vec![if g.bad { BAD } else { "V=new" }.to_string()]);
        let new_hash = new.hash();
        let mut start = converged(&desired([old.clone()]));
        if g.port {
            start.containers[0].ports = vec!["0.0.0.0:8080->80/tcp".into()];
        }
        let original: BTreeMap<u32, (String, String)> = start
            .containers
            .iter()
            .map(|c| (c.replica.unwrap(), (c.id.clone(), c.name.clone())))
            .collect();
        let down = if g.stop_first || g.port { g.max_unavailable } else { 0 };
        let state = desired([new.clone()]);
        let mut sim = sim(start);
        let mut options = options();
        let mut settled = false;
        for round in 0..ROLLOUT_ROUNDS {
            let plan = plan(&state, &sim.state, &options);
            assert_well_formed(&plan);
            if plan.actions.is_empty() {
                settled = true;
                break;
            }
            sim.budget = g.budgets.get(round).copied().flatten();
            let outcomes = sim
                .apply_checked(&plan, g.seed.wrapping_add(round as u64), &mut |s| {
                    check_availability(s, g.replicas, down, g.max_unavailable)
                })
                .map_err(|e| TestCaseError::fail(format!("{e}\nplan: {:#?}", lines(&plan))))?;
            sim.budget = None;
            options
                .failed_revisions
                .extend(check_failures(&plan, &outcomes)?);
            sim.settle();
            check_availability(&sim.state, g.replicas, down, g.max_unavailable)
                .map_err(TestCaseError::fail)?;
        }
        prop_assert!(settled, "no end after {ROLLOUT_ROUNDS} passes: {:#?}", sim.state);
        prop_assert_eq!(sim.state.containers.len(), g.replicas as usize);
        let rolled_back = g.health && g.bad;
        prop_assert_eq!(
            options.failed_revisions.contains(&(key("web"), new_hash.clone())),
            rolled_back
        );
        for c in &sim.state.containers {
            let r = c.replica.unwrap();
            prop_assert_eq!(c.state, RunState::Running);
            prop_assert_eq!(&c.name, &original[&r].1);
            if rolled_back {
                prop_assert_eq!(&c.id, &original[&r].0, "replica {} not back on its old container", r);
            } else {
                prop_assert_eq!(c.spec_hash.as_deref(), Some(new_hash.as_str()));
            }
        }
    }
}

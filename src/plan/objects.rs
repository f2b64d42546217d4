//! Network and volume decisions for the declared `Network` and `Volume` resources: create
//! the missing, recreate the changed (the daemon edits neither in place) when that is safe,
//! and with `--prune` remove the undeclared ones of ours that nothing uses. A volume holds
//! data: it is removed only under `reclaimPolicy: Delete` and only while no container
//! mounts it. Networks and volumes named by containers but not declared keep today's
//! "ensure on demand" (see `containers`), and are never removed.

use std::collections::BTreeMap;

use super::graph::{Graph, NodeId};
use super::hash::{changed_fields, object_labels, object_spec_json, spec_hash};
use super::{Action, NetworkCreate, Reason, VolumeCreate};
use crate::api::ReclaimPolicy;
use crate::desired::{DesiredState, Kind, ResourceKey};
use crate::labels;
use crate::observed::{ObjectUser, ObservedObject, ObservedState};

/// What containers created in this plan must wait for, by Docker name: `Some(node)` when a
/// declared network or volume is created (or recreated) in this plan, `None` when it is
/// declared and present (nothing to wait for, nothing to ensure).
#[derive(Debug, Default)]
pub(super) struct ObjectNodes {
    pub networks: BTreeMap<String, Option<NodeId>>,
    pub volumes: BTreeMap<String, Option<NodeId>>,
}

/// Plans creates and recreates of the declared networks and volumes.
pub(super) fn plan_objects(
    graph: &mut Graph,
    desired: &DesiredState,
    observed: &ObservedState,
    owner: &str,
    source: &str,
) -> ObjectNodes {
    let mut nodes = ObjectNodes::default();
    for n in desired.networks.values() {
        let json = object_spec_json(&n.config);
        let hash = spec_hash(&json);
        let spec = || {
            Box::new(NetworkCreate {
                name: n.name.clone(),
                config: n.config.clone(),
                labels: object_labels(owner, source, &n.key, &json, &hash, &n.config.labels),
            })
        };
        let node = match observed.networks.iter().find(|o| o.name == n.name) {
            None => Some(graph.add(&n.key, Action::CreateNetwork(spec()), Reason::Missing, [])),
            Some(o) if o.spec_hash.as_deref() == Some(hash.as_str()) => None,
            Some(o) => {
                let changes = changes(o, &json);
                // Unknown users (a network created on demand, before it was declared): the
                // runner lists them again and refuses to touch another owner's container.
                match o.foreign_users(owner) {
                    None => {
                        let action = Action::RecreateNetwork {
                            id: o.id.clone(),
                            spec: spec(),
                            containers: Vec::new(),
                        };
                        Some(graph.add(&n.key, action, Reason::SpecChanged { changes }, []))
                    }
                    Some(foreign) if foreign.is_empty() => {
                        let containers = o.users.iter().flatten().map(|u| u.id.clone()).collect();
                        let action = Action::RecreateNetwork {
                            id: o.id.clone(),
                            spec: spec(),
                            containers,
                        };
                        Some(graph.add(&n.key, action, Reason::SpecChanged { changes }, []))
                    }
                    Some(foreign) => {
                        graph.block(
                            &n.key,
                            format!(
                                "network {} must be recreated to change {} (the daemon cannot edit a network in place), but {}; disconnect them or leave the spec as it is",
                                n.name,
                                field_list(&changes),
                                in_use(Some(&foreign), "containers of other owners use it")
                            ),
                        );
                        None
                    }
                }
            }
        };
        nodes.networks.insert(n.name.clone(), node);
    }

    for v in desired.volumes.values() {
        let json = object_spec_json(&v.config);
        let hash = spec_hash(&json);
        let spec = || {
            let mut labels = object_labels(owner, source, &v.key, &json, &hash, &v.config.labels);
            labels.insert(
                labels::RECLAIM_POLICY.to_string(),
                v.reclaim_policy.as_str().to_string(),
            );
            Box::new(VolumeCreate {
                name: v.name.clone(),
                config: v.config.clone(),
                labels,
            })
        };
        let node = match observed.volumes.iter().find(|o| o.name == v.name) {
            None => Some(graph.add(&v.key, Action::CreateVolume(spec()), Reason::Missing, [])),
            Some(o) if o.spec_hash.as_deref() == Some(hash.as_str()) => None,
            Some(o) => {
                let changes = changes(o, &json);
                let users = o.users.as_deref();
                if v.reclaim_policy == ReclaimPolicy::Retain {
                    graph.block(
                        &v.key,
                        format!(
                            "volume {} must be recreated to change {}, which deletes its data, and its reclaimPolicy is Retain; set reclaimPolicy: Delete to allow that, or remove the volume by hand (docker volume rm {})",
                            v.name,
                            field_list(&changes),
                            v.name
                        ),
                    );
                    None
                } else if users.is_none_or(<[ObjectUser]>::is_empty) {
                    // Unknown users: the daemon refuses to remove a volume any container
                    // (running or not) mounts, and the create waits for the removal.
                    let reason = Reason::SpecChanged { changes };
                    let remove = graph.add(
                        &v.key,
                        Action::RemoveVolume {
                            name: v.name.clone(),
                        },
                        reason.clone(),
                        [],
                    );
                    Some(graph.add(&v.key, Action::CreateVolume(spec()), reason, [remove]))
                } else {
                    let users: Vec<&ObjectUser> = users.iter().copied().flatten().collect();
                    graph.block(
                        &v.key,
                        format!(
                            "volume {} must be recreated to change {}, but {}; a volume is recreated only while no container mounts it",
                            v.name,
                            field_list(&changes),
                            in_use(Some(&users), "containers use it")
                        ),
                    );
                    None
                }
            }
        };
        nodes.volumes.insert(v.name.clone(), node);
    }
    nodes
}

/// With `--prune`: removes the networks and volumes of ours whose `Network`/`Volume`
/// resource is no longer declared and that no container uses, except the containers this
/// plan removes (`removed`: container ID → its removal), after which they are ordered.
/// Volumes only under the `Delete` policy they were created with.
pub(super) fn prune_objects(
    graph: &mut Graph,
    desired: &DesiredState,
    observed: &ObservedState,
    scope: &super::SourceScope<'_>,
    removed: &BTreeMap<String, NodeId>,
) {
    for o in &observed.networks {
        let Some(key) = undeclared(o, Kind::Network, desired) else {
            continue;
        };
        if !scope.owns_label(o.source.as_deref()) {
            continue;
        }
        if let Some(after) = free_after(o, removed) {
            let action = Action::RemoveNetwork {
                id: o.id.clone(),
                name: o.name.clone(),
            };
            graph.add(key, action, scope.pruned(), after);
        }
    }
    for o in &observed.volumes {
        let Some(key) = undeclared(o, Kind::Volume, desired) else {
            continue;
        };
        if !scope.owns_label(o.source.as_deref()) {
            continue;
        }
        if o.reclaim_policy.as_deref() != Some(ReclaimPolicy::Delete.as_str()) {
            continue;
        }
        if let Some(after) = free_after(o, removed) {
            let action = Action::RemoveVolume {
                name: o.name.clone(),
            };
            graph.add(key, action, scope.pruned(), after);
        }
    }
}

/// The resource of an observed object of `kind` that is no longer declared.
fn undeclared<'a>(
    o: &'a ObservedObject,
    kind: Kind,
    desired: &DesiredState,
) -> Option<&'a ResourceKey> {
    let key = o.resource.as_ref().filter(|k| k.kind == kind)?;
    let declared = match kind {
        Kind::Network => desired.networks.contains_key(key),
        _ => desired.volumes.contains_key(key),
    };
    (!declared).then_some(key)
}

/// The removals `o` must wait for when every user of it is removed in this plan; `None`
/// when some user stays (or the users are unknown).
fn free_after(o: &ObservedObject, removed: &BTreeMap<String, NodeId>) -> Option<Vec<NodeId>> {
    o.users
        .as_ref()?
        .iter()
        .map(|u| removed.get(&u.id).copied())
        .collect()
}

fn changes(o: &ObservedObject, json: &str) -> Vec<super::FieldChange> {
    match &o.spec {
        Some(old) => changed_fields(old, json),
        // Created on demand for a container, before it was declared: everything is new.
        None => changed_fields("{}", json),
    }
}

fn field_list(changes: &[super::FieldChange]) -> String {
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    if fields.is_empty() {
        "its spec".to_string()
    } else {
        fields.join(", ")
    }
}

fn in_use(users: Option<&[&ObjectUser]>, what: &str) -> String {
    let names: Vec<&str> = users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    format!("{what}: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::desired::{
        DesiredNetwork, DesiredVolume, Mount, NetworkConfig, NetworkEndpoint, Origin, VolumeConfig,
    };
    use crate::plan::testutil::*;
    use crate::plan::{plan, Action};

    fn origin() -> Origin {
        Origin::File {
            path: "/m.yaml".into(),
            document: 1,
        }
    }

    fn net(name: &str) -> DesiredNetwork {
        DesiredNetwork {
            key: ResourceKey::new(Kind::Network, "default", name),
            origin: origin(),
            name: name.into(),
            config: NetworkConfig {
                driver: "bridge".into(),
                ..Default::default()
            },
        }
    }

    fn vol(name: &str, policy: ReclaimPolicy) -> DesiredVolume {
        DesiredVolume {
            key: ResourceKey::new(Kind::Volume, "default", name),
            origin: origin(),
            name: name.into(),
            config: VolumeConfig {
                driver: "local".into(),
                ..Default::default()
            },
            reclaim_policy: policy,
        }
    }

    /// What the daemon holds after creating `labels` (as the plan computed them).
    fn object(
        name: &str,
        labels: &BTreeMap<String, String>,
        users: &[(&str, &str)],
    ) -> ObservedObject {
        ObservedObject {
            users: Some(
                users
                    .iter()
                    .map(|(name, owner)| ObjectUser {
                        // As `matching` names replica 0's ID.
                        id: format!("id-{name}-0"),
                        name: (*name).into(),
                        owner: Some((*owner).into()),
                    })
                    .collect(),
            ),
            ..ObservedObject::from_labels(format!("id-{name}"), name.into(), |k| {
                labels.get(k).cloned()
            })
        }
    }

    fn created_labels(p: &crate::plan::Plan, name: &str) -> BTreeMap<String, String> {
        p.actions
            .iter()
            .find_map(|a| match &a.action {
                Action::CreateNetwork(s) if s.name == name => Some(s.labels.clone()),
                Action::CreateVolume(s) if s.name == name => Some(s.labels.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no create of {name}: {:?}", lines(p)))
    }

    fn app_on(network: &str, volume: &str) -> crate::desired::DesiredContainer {
        container("app").with_config(|c| {
            c.network = network.into();
            c.mounts = vec![Mount::Volume {
                source: volume.into(),
                target: "/data".into(),
                read_only: false,
            }];
        })
    }

    #[test]
    fn declared_objects_are_created_before_their_containers_then_left_alone() {
        let mut state = desired([app_on("back", "data")]);
        state.networks.insert(net("back").key.clone(), net("back"));
        let v = vol("data", ReclaimPolicy::Delete);
        state.volumes.insert(v.key.clone(), v);
        let first = plan(&state, &observed([]), &options());
        assert_well_formed(&first);
        let create = find(&first, "create app");
        assert!(depends_on(
            &first,
            create,
            find(&first, "create-network back")
        ));
        assert!(depends_on(
            &first,
            create,
            find(&first, "create-volume data")
        ));
        // No on-demand ensure for a declared object.
        assert!(
            !lines(&first).iter().any(|l| l.starts_with("ensure-")),
            "{:?}",
            lines(&first)
        );
        let labels = created_labels(&first, "data");
        assert_eq!(labels[labels::RECLAIM_POLICY], "Delete");
        assert_eq!(labels[labels::RESOURCE], "Volume/default/data");

        let mut now = converged(&state);
        now.networks = vec![object(
            "back",
            &created_labels(&first, "back"),
            &[("app", OWNER)],
        )];
        now.volumes = vec![object("data", &labels, &[("app", OWNER)])];
        assert!(plan(&state, &now, &pruning()).is_empty());
    }

    #[test]
    fn a_changed_network_is_recreated_unless_another_owner_uses_it() {
        let mut state = desired([app_on("back", "data")]);
        state.networks.insert(net("back").key.clone(), net("back"));
        let old = created_labels(&plan(&state, &observed([]), &options()), "back");
        let mut changed = net("back");
        changed.config.internal = true;
        state.networks.insert(changed.key.clone(), changed);

        let mut now = converged(&state);
        now.networks = vec![object("back", &old, &[("app", OWNER)])];
        let p = plan(&state, &now, &options());
        assert_eq!(lines(&p), ["recreate-network back"]);
        match &p.actions[0].reason {
            Reason::SpecChanged { changes } => assert_eq!(changes[0].field, "internal"),
            other => panic!("{other:?}"),
        }

        now.networks = vec![object(
            "back",
            &old,
            &[("app", OWNER), ("db", "someone-else")],
        )];
        let p = plan(&state, &now, &options());
        assert!(p.actions.is_empty(), "{:?}", lines(&p));
        assert_eq!(p.blocked.len(), 1);
        assert!(
            p.blocked[0].message.contains("other owners use it: db"),
            "{}",
            p.blocked[0].message
        );
    }

    #[test]
    fn a_changed_volume_is_recreated_only_under_delete_and_unused() {
        let mut state = DesiredState::default();
        let retain = vol("data", ReclaimPolicy::Retain);
        state.volumes.insert(retain.key.clone(), retain.clone());
        let old = created_labels(&plan(&state, &observed([]), &options()), "data");
        let mut changed = retain;
        changed
            .config
            .driver_options
            .insert("type".into(), "tmpfs".into());
        state.volumes.insert(changed.key.clone(), changed.clone());
        let mut now = observed([]);
        now.volumes = vec![object("data", &old, &[])];
        let p = plan(&state, &now, &options());
        assert!(p.actions.is_empty());
        assert!(p.blocked[0].message.contains("reclaimPolicy is Retain"));

        changed.reclaim_policy = ReclaimPolicy::Delete;
        state.volumes.insert(changed.key.clone(), changed);
        let p = plan(&state, &now, &options());
        assert_eq!(lines(&p), ["remove-volume data", "create-volume data"]);
        assert!(depends_on(&p, 1, 0));

        now.volumes = vec![object("data", &old, &[("app", OWNER)])];
        let p = plan(&state, &now, &options());
        assert!(p.actions.is_empty());
        assert!(p.blocked[0].message.contains("containers use it: app"));
    }

    #[test]
    fn prune_removes_undeclared_unused_networks_and_only_delete_volumes() {
        let mut earlier = DesiredState::default();
        earlier
            .networks
            .insert(net("back").key.clone(), net("back"));
        for v in [
            vol("scratch", ReclaimPolicy::Delete),
            vol("db", ReclaimPolicy::Retain),
        ] {
            earlier.volumes.insert(v.key.clone(), v);
        }
        let created = plan(&earlier, &observed([]), &options());
        let app = app_on("back", "scratch");
        let mut now = observed([matching(&app, 0, IMAGE_ID)]);
        now.networks = vec![object(
            "back",
            &created_labels(&created, "back"),
            &[("app", OWNER)],
        )];
        now.volumes = vec![
            object(
                "scratch",
                &created_labels(&created, "scratch"),
                &[("app", OWNER)],
            ),
            object("db", &created_labels(&created, "db"), &[]),
        ];
        let nothing = DesiredState::default();
        assert!(plan(&nothing, &now, &options()).is_empty());
        let p = plan(&nothing, &now, &pruning());
        assert_well_formed(&p);
        let remove = find(&p, "remove app");
        assert!(depends_on(&p, find(&p, "remove-network back"), remove));
        assert!(depends_on(&p, find(&p, "remove-volume scratch"), remove));
        assert!(
            !lines(&p).contains(&"remove-volume db".to_string()),
            "{:?}",
            lines(&p)
        );

        // A user of another owner keeps them.
        now.networks[0].users.as_mut().unwrap().push(ObjectUser {
            id: "x".into(),
            name: "x".into(),
            owner: None,
        });
        let p = plan(&nothing, &now, &pruning());
        assert!(!lines(&p).contains(&"remove-network back".to_string()));
    }

    #[test]
    fn the_spec_hash_covers_every_network() {
        let one = container("app").with_config(|c| c.network = "a".into());
        let two = one.clone().with_config(|c| {
            c.extra_networks = vec![NetworkEndpoint {
                name: "b".into(),
                aliases: vec!["x".into()],
                ipv4_address: None,
            }]
        });
        assert_ne!(one.hash(), two.hash());
        let aliased = two
            .clone()
            .with_config(|c| c.extra_networks[0].aliases.clear());
        assert_ne!(two.hash(), aliased.hash());
        // An extra network must exist before the create: it is ensured like the first.
        let p = plan(&desired([two]), &observed([]), &options());
        let create = find(&p, "create app");
        assert!(depends_on(&p, create, find(&p, "ensure-network b")));
    }
}

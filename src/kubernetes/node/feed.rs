//! This node's `Placement`s → the [`DesiredSnapshot`] the agent loop runs on.
//!
//! Which `Placement`s count ([`assemble`], pure): one being deleted is left out and named
//! removable, so the loop prunes its containers (then the reporter lets its finalizer go);
//! the loop removes nothing else but what a `Placement` seen since the start no longer names
//! (containers no `Placement` ever named here are left alone: an agent upgraded before the
//! controller wrote its node's `Placement`s must not empty the node); one without this agent's
//! finalizer yet is held (its containers, if an earlier agent version made them, are left as
//! they are) until the finalizer is on it; one that cannot be read, or whose spec does not
//! validate, is held with its error — never pruned. The rest become the desired state through
//! the file mode's own normalisation and validation ([`super::super::desired`]).
//!
//! Then the reads only a cluster needs ([`Feed::snapshot`]): `secretKeyRef` values (one GET
//! per Secret) and `imagePullSecrets` (one GET per Secret, kept per resource in the runner's
//! [`ScopedCredentials`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta};
use kube::core::DeserializeGuard;
use kube::Client;

use super::parents::{parent_of, resource_of, Parent};
use crate::api::{Container, Image, Placement, PARENT_KIND_LABEL, PARENT_NAME_LABEL};
use crate::credentials::{CredentialSource, ScopedCredentials};
use crate::desired::{Kind, ResourceKey};
use crate::kubernetes::desired::{self, FetchedSecrets};
use crate::kubernetes::{secrets, FINALIZER};
use crate::plan::Blocked;
use crate::source::watch::DesiredSnapshot;

/// A `Placement` as the watch delivers it: a malformed one is kept, with its error.
pub type PlacementObject = DeserializeGuard<Placement>;

/// Why a resource is held (its containers left as they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// This agent's finalizer is not on the `Placement` yet.
    AwaitingFinalizer,
    /// The spec cannot be run: unreadable, or it does not validate (message).
    Invalid(String),
    /// A secret value cannot be read (message).
    Secret(String),
}

impl Hold {
    fn message(&self) -> String {
        match self {
            Hold::AwaitingFinalizer => "waiting for this node's finalizer on the Placement".into(),
            Hold::Invalid(m) | Hold::Secret(m) => m.clone(),
        }
    }
}

/// What one assembly found, beside the parents to build from.
#[derive(Clone, Debug, Default)]
pub struct Assembly {
    /// Parents of the live `Placement`s that carry this agent's finalizer and read well.
    pub parents: Vec<Parent>,
    /// Held resources and why.
    pub held: BTreeMap<ResourceKey, Hold>,
    /// Names of live `Placement`s without this agent's finalizer, by namespace.
    pub need_finalizer: Vec<ObjectMeta>,
    /// Resources of live `Placement`s.
    pub present: BTreeSet<ResourceKey>,
    /// Resources of `Placement`s being deleted: the loop removes their containers.
    pub terminating: BTreeSet<ResourceKey>,
}

/// The resource a `Placement` (readable or not) is for: from its spec, else its labels.
pub fn key_of(object: &PlacementObject) -> Option<ResourceKey> {
    match &object.0 {
        Ok(p) => resource_of(p),
        Err(invalid) => {
            let labels = invalid.metadata.labels.as_ref()?;
            let kind = match labels.get(PARENT_KIND_LABEL)?.as_str() {
                "Image" => Kind::Image,
                _ => Kind::Container,
            };
            Some(ResourceKey::new(
                kind,
                invalid.metadata.namespace.clone().unwrap_or_default(),
                labels.get(PARENT_NAME_LABEL)?.clone(),
            ))
        }
    }
}

fn meta(object: &PlacementObject) -> &ObjectMeta {
    match &object.0 {
        Ok(p) => &p.metadata,
        Err(invalid) => &invalid.metadata,
    }
}

/// Sorts this node's `Placement`s into parents to run, held resources and `Placement`s that
/// still need the finalizer. Pure.
pub fn assemble(placements: &[Arc<PlacementObject>]) -> Assembly {
    let mut out = Assembly::default();
    for object in placements {
        let meta = meta(object);
        let Some(key) = key_of(object) else {
            tracing::warn!(placement = ?meta.name, "a Placement without a parent reference; ignored");
            continue;
        };
        if meta.deletion_timestamp.is_some() {
            out.terminating.insert(key);
            continue;
        }
        out.present.insert(key.clone());
        let has_finalizer = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
        if !has_finalizer {
            out.need_finalizer.push(meta.clone());
            out.held.insert(key, Hold::AwaitingFinalizer);
            continue;
        }
        match &object.0 {
            Err(invalid) => {
                let message = format!("the Placement does not match its schema: {}", invalid.error);
                out.held.insert(key, Hold::Invalid(message));
            }
            Ok(p) => match parent_of(p) {
                Ok(parent) => out.parents.push(parent),
                Err(message) => {
                    out.held.insert(key, Hold::Invalid(message));
                }
            },
        }
    }
    out
}

/// The resources the loop may remove: those of `Placement`s being deleted, and those a live
/// `Placement` named earlier (`seen`) that are gone from the store. Pure.
pub fn removable(assembly: &Assembly, seen: &BTreeSet<ResourceKey>) -> BTreeSet<ResourceKey> {
    assembly
        .terminating
        .iter()
        .chain(seen.difference(&assembly.present))
        .cloned()
        .collect()
}

/// Builds snapshots from the `Placement` store; keeps the publication counter.
pub struct Feed {
    client: Client,
    scoped: ScopedCredentials,
    generation: u64,
    /// Every resource a live `Placement` of this node named since the agent started: one that
    /// is gone from the store since (deleted without waiting for this agent) is removable.
    seen: BTreeSet<ResourceKey>,
}

/// A snapshot and what the reporter needs beside it.
#[derive(Clone, Debug)]
pub struct Fed {
    /// For the agent loop.
    pub snapshot: DesiredSnapshot,
    /// Held resources and why (the reporter writes them as `Degraded` or waits).
    pub held: BTreeMap<ResourceKey, Hold>,
    /// `Placement`s that still need this agent's finalizer.
    pub need_finalizer: Vec<ObjectMeta>,
}

impl Feed {
    /// A feed reading Secrets with `client` and publishing pull secrets into `scoped`.
    pub fn new(client: Client, scoped: ScopedCredentials) -> Self {
        Self {
            client,
            scoped,
            generation: 0,
            seen: BTreeSet::new(),
        }
    }

    /// The snapshot of `placements` (the store's current state).
    pub async fn snapshot(&mut self, placements: &[Arc<PlacementObject>]) -> Fed {
        let assembly = assemble(placements);
        let removable = removable(&assembly, &self.seen);
        self.seen.extend(assembly.present.iter().cloned());
        let mut held = assembly.held;
        let (images, containers): (Vec<&Image>, Vec<&Container>) = {
            let mut images = Vec::new();
            let mut containers = Vec::new();
            for parent in &assembly.parents {
                match parent {
                    Parent::Image(i) => images.push(i.as_ref()),
                    Parent::Container(c) => containers.push(c.as_ref()),
                }
            }
            (images, containers)
        };
        let built = desired::build(&images, &containers);
        let fetched = self.fetch_secrets(&built.state).await;
        let built = desired::resolve_secrets(built, &fetched);
        for (key, message) in &built.errors {
            held.insert(key.clone(), Hold::Invalid(message.clone()));
        }
        for (key, message) in &built.held {
            held.insert(key.clone(), Hold::Secret(message.clone()));
        }
        self.scoped
            .replace(self.pull_secrets(&containers, &built.state).await);
        self.generation += 1;
        let blocked = held
            .iter()
            .map(|(key, hold)| Blocked {
                resource: key.clone(),
                message: hold.message(),
            })
            .collect();
        Fed {
            snapshot: DesiredSnapshot {
                desired: Arc::new(built.state),
                errors: Vec::new(),
                complete: true,
                generation: self.generation,
                revision: None,
                held: blocked,
                prune_only: Some(Arc::new(removable)),
            },
            held,
            need_finalizer: assembly.need_finalizer,
        }
    }

    /// Every Secret a `secretKeyRef` names, read once.
    async fn fetch_secrets(&self, state: &crate::desired::DesiredState) -> FetchedSecrets {
        let mut fetched = FetchedSecrets(BTreeMap::new());
        for (namespace, name) in desired::secret_refs(state) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
            let data = match api.get(&name).await {
                Ok(secret) => Ok(secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()),
                Err(e) => Err(format!("Secret {namespace}/{name}: {e}")),
            };
            fetched.0.insert((namespace, name), data);
        }
        fetched
    }

    /// The `imagePullSecrets` of each declared container, read from its namespace. A secret
    /// that cannot be used is logged and the pull goes on without it (kubelet semantics).
    async fn pull_secrets(
        &self,
        containers: &[&Container],
        state: &crate::desired::DesiredState,
    ) -> BTreeMap<ResourceKey, Arc<dyn CredentialSource>> {
        let mut out: BTreeMap<ResourceKey, Arc<dyn CredentialSource>> = BTreeMap::new();
        let declared: BTreeSet<&ResourceKey> = state.containers.keys().collect();
        for c in containers {
            if c.spec.image_pull_secrets.is_empty() {
                continue;
            }
            let key = ResourceKey::new(
                Kind::Container,
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            );
            if !declared.contains(&key) {
                continue;
            }
            match secrets::pull_secrets(&self.client, &key.namespace, &c.spec.image_pull_secrets)
                .await
            {
                Ok(Some(source)) => {
                    out.insert(key, source);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(resource = %key, %error, "pull secret unusable; pulling without it")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerSpec, ParentReference, PlacementSpec};
    use kube::core::error_boundary::InvalidObject;

    fn placement(name: &str, finalizer: bool, deleting: bool) -> Arc<PlacementObject> {
        let mut p = Placement::new(
            &format!("container.{name}.n1"),
            PlacementSpec {
                node_name: "n1".into(),
                parent: ParentReference {
                    kind: "Container".into(),
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    generation: Some(1),
                },
                container: Some(ContainerSpec {
                    image: "busybox:1".into(),
                    ..ContainerSpec::default()
                }),
                image: None,
            },
        );
        p.metadata.namespace = Some("ns".into());
        if finalizer {
            p.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        if deleting {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        Arc::new(DeserializeGuard(Ok(p)))
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "ns", name)
    }

    #[test]
    fn live_placements_with_the_finalizer_run_the_rest_wait_or_go() {
        let a = assemble(&[
            placement("run", true, false),
            placement("new", false, false),
            placement("gone", true, true),
        ]);
        assert_eq!(a.parents.len(), 1);
        assert_eq!(a.parents[0].key(), key("run"));
        assert_eq!(a.held.get(&key("new")), Some(&Hold::AwaitingFinalizer));
        assert_eq!(a.need_finalizer.len(), 1);
        assert!(
            !a.held.contains_key(&key("gone")),
            "a deleted one is pruned, not held"
        );
    }

    #[test]
    fn only_what_a_placement_named_is_removable() {
        let a = assemble(&[
            placement("run", true, false),
            placement("new", false, false),
            placement("gone", true, true),
        ]);
        assert_eq!(
            removable(&a, &BTreeSet::new()),
            BTreeSet::from([key("gone")]),
            "at start: only the terminating one (no Placement, no removal)"
        );
        let seen = BTreeSet::from([key("run"), key("vanished")]);
        assert_eq!(
            removable(&a, &seen),
            BTreeSet::from([key("gone"), key("vanished")]),
            "a Placement seen earlier and gone since is removable too"
        );
    }

    #[test]
    fn a_malformed_placement_is_held_by_its_labels() {
        let metadata = ObjectMeta {
            name: Some("container.bad.n1".into()),
            namespace: Some("ns".into()),
            finalizers: Some(vec![FINALIZER.into()]),
            labels: Some(
                [
                    (PARENT_KIND_LABEL.to_string(), "Container".to_string()),
                    (PARENT_NAME_LABEL.to_string(), "bad".to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        let object = Arc::new(DeserializeGuard(Err(InvalidObject {
            error: "spec.container.replicas: invalid type".into(),
            metadata,
        })));
        let a = assemble(&[object]);
        assert!(a.parents.is_empty());
        match a.held.get(&key("bad")) {
            Some(Hold::Invalid(m)) => assert!(m.contains("replicas"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

//! Custom resources → the [`DesiredState`] the file mode builds, through the very same
//! normalisation and validation ([`crate::source::build_desired`]), with per-resource errors:
//! one broken object never stops the others. Also the checks only a cluster needs: host files
//! (`files[].source`), relative bind sources, build contexts and `registryAuth` files name
//! paths relative to a manifest file, which an object in the API server does not have.
//!
//! Choices: the objects get `Origin::Kubernetes` and base directory `/`, so only absolute
//! paths survive; an object whose errors come from another one (an invalid `Image` it names,
//! a name clash) carries the error itself and is left out, like any invalid object. Left-out
//! objects are never acted on (fail-safe: their containers stay as they are).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::ResourceExt;

use crate::api::{Container, Image, SecretKeySelector, VolumeType};
use crate::desired::{DesiredState, Origin, ResourceKey};
use crate::secrets::{resolve_refs, SecretResolver, SecretSource, SecretValue};
use crate::source::{build_desired, LoadedManifest, Manifest, ManifestError};

/// The desired state of the objects placed on a node, and why the others are left out.
/// Built by the controller from its reflector stores (cached until they change); read by every
/// reconcile.
#[derive(Clone, Debug, Default)]
pub struct ClusterDesired {
    /// Every valid placed object, normalised.
    pub state: DesiredState,
    /// Objects left out, with their errors (`field: message`, one per line).
    pub errors: BTreeMap<ResourceKey, String>,
    /// Valid objects held back by the policy gate or an unresolvable `secretKeyRef`, with why
    /// (retried with back-off: a Secret may appear, the policy may change).
    pub held: BTreeMap<ResourceKey, String>,
}

/// A custom resource as a loaded manifest: `Origin::Kubernetes` (uid and generation), base
/// directory `/`.
pub fn loaded(manifest: Manifest) -> LoadedManifest {
    let meta = manifest.metadata();
    let origin = Origin::Kubernetes {
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation,
    };
    LoadedManifest {
        manifest,
        origin,
        base_dir: PathBuf::from("/"),
    }
}

/// What an object asks for that has no meaning in a cluster, as `(field, message)`.
pub fn cluster_problems(manifest: &Manifest) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let relative = |p: &str| !Path::new(p).is_absolute();
    match manifest {
        Manifest::Container(c) => {
            for (i, f) in c.spec.files.iter().enumerate() {
                if f.source.is_some() {
                    out.push((
                        format!("spec.files[{i}].source"),
                        "a host file has no meaning for a cluster object; put the text in content (or mount a volume)".into(),
                    ));
                }
            }
            for (i, v) in c.spec.volumes.iter().enumerate() {
                if v.type_ == VolumeType::Bind && v.source.as_deref().is_some_and(relative) {
                    out.push((
                        format!("spec.volumes[{i}].source"),
                        "a relative bind source has no meaning for a cluster object (there is no manifest file); use an absolute path on the node".into(),
                    ));
                }
            }
        }
        Manifest::Image(i) => {
            if let Some(build) = &i.spec.build {
                if relative(&build.context) {
                    out.push((
                        "spec.build.context".into(),
                        "a relative build context has no meaning for a cluster object; use an absolute path on the node".into(),
                    ));
                }
            }
            if i.spec.registry_auth.is_some() {
                out.push((
                    "spec.registryAuth".into(),
                    "a credentials file has no meaning for a cluster object; use imagePullSecrets on the Container".into(),
                ));
            }
        }
        // Not watched in Kubernetes mode yet (see docs/kubernetes.md).
        Manifest::Network(_) | Manifest::Volume(_) => {}
    }
    out
}

fn key_of(manifest: &Manifest) -> ResourceKey {
    manifest.key()
}

fn line(e: &ManifestError) -> String {
    match &e.field {
        Some(field) => format!("{field}: {}", e.message),
        None => e.message.clone(),
    }
}

/// Builds the desired state of `images` and `containers` (already filtered to the objects
/// placed on this node and not being deleted). Objects with errors are left out and listed.
pub fn build(images: &[&Image], containers: &[&Container]) -> ClusterDesired {
    let mut errors: BTreeMap<ResourceKey, Vec<String>> = BTreeMap::new();
    let mut remaining: Vec<LoadedManifest> = Vec::with_capacity(images.len() + containers.len());
    let manifests = images
        .iter()
        .map(|i| Manifest::Image((*i).clone()))
        .chain(containers.iter().map(|c| Manifest::Container((*c).clone())));
    for manifest in manifests {
        let problems = cluster_problems(&manifest);
        if problems.is_empty() {
            remaining.push(loaded(manifest));
        } else {
            let lines = problems.into_iter().map(|(f, m)| format!("{f}: {m}"));
            errors.entry(key_of(&manifest)).or_default().extend(lines);
        }
    }
    // Validation reports every error at once; drop the objects it names and validate the rest
    // again, until what is left is valid (each round drops at least one object).
    let state = loop {
        match build_desired(&remaining) {
            Ok(state) => break state,
            Err(all) => {
                let by_label: BTreeMap<String, ResourceKey> = remaining
                    .iter()
                    .map(|lm| (lm.manifest.label(), lm.manifest.key()))
                    .collect();
                let mut bad = BTreeSet::new();
                let mut unattributed = Vec::new();
                for e in &all.0 {
                    match e.resource.as_ref().and_then(|r| by_label.get(r)) {
                        Some(key) => {
                            errors.entry(key.clone()).or_default().push(line(e));
                            bad.insert(key.clone());
                        }
                        None => unattributed.push(e.to_string()),
                    }
                }
                if bad.is_empty() {
                    // Nothing to blame: fail safe, leave every object out.
                    for lm in &remaining {
                        errors
                            .entry(lm.manifest.key())
                            .or_default()
                            .extend(unattributed.iter().cloned());
                    }
                    break DesiredState::default();
                }
                remaining.retain(|lm| !bad.contains(&lm.manifest.key()));
            }
        }
    };
    let errors = errors.into_iter().map(|(k, v)| (k, v.join("\n"))).collect();
    ClusterDesired {
        state,
        errors,
        held: BTreeMap::new(),
    }
}

/// The `(namespace, Secret name)` of every unresolved `secretKeyRef` in `state`.
pub fn secret_refs(state: &DesiredState) -> BTreeSet<(String, String)> {
    state
        .containers
        .values()
        .flat_map(|c| c.config.secret_env.iter())
        .filter_map(|e| match &e.source {
            SecretSource::SecretKeyRef {
                namespace,
                selector,
                resolved: false,
            } => Some((namespace.clone(), selector.name.clone())),
            _ => None,
        })
        .collect()
}

/// A Secret's data by key, or why it could not be read.
pub type SecretData = Result<BTreeMap<String, Vec<u8>>, String>;

/// Resolves `secretKeyRef`s from Secrets already fetched, by `(namespace, name)`. Values are
/// never logged; errors name the Secret and key only.
pub struct FetchedSecrets(pub BTreeMap<(String, String), SecretData>);

impl SecretResolver for FetchedSecrets {
    fn resolve(
        &self,
        namespace: &str,
        selector: &SecretKeySelector,
    ) -> Result<SecretValue, String> {
        let data = match self.0.get(&(namespace.to_string(), selector.name.clone())) {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(format!("Secret {namespace}/{} was not read", selector.name)),
        };
        let bytes = data.get(&selector.key).ok_or_else(|| {
            format!(
                "Secret {namespace}/{} has no key {:?}",
                selector.name, selector.key
            )
        })?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            format!(
                "Secret {namespace}/{} key {:?} is not UTF-8",
                selector.name, selector.key
            )
        })?;
        Ok(SecretValue::new(text))
    }
}

/// Resolves secret references through `secrets`; what cannot be resolved goes to
/// [`ClusterDesired::held`] (the policy gate is the agent loop's, as in file mode).
pub fn resolve_secrets(mut built: ClusterDesired, secrets: &FetchedSecrets) -> ClusterDesired {
    for (key, message) in resolve_refs(&mut built.state, secrets) {
        built.state.containers.remove(&key);
        built.held.entry(key).or_insert(message);
    }
    built
}

/// A fingerprint of what [`build`] reads from an object: identity, generation (every spec
/// change bumps it) and whether it is being deleted.
pub fn fingerprint_of<K: kube::Resource>(obj: &K) -> (String, Option<i64>, bool) {
    (
        obj.uid().unwrap_or_default(),
        obj.meta().generation,
        obj.meta().deletion_timestamp.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerSpec, Dependency, FileSpec, ImageSpec, VolumeMount};
    use crate::desired::Kind;

    fn container(name: &str, spec: ContainerSpec) -> Container {
        let mut c = Container::new(name, spec);
        c.metadata.namespace = Some("apps".into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.generation = Some(3);
        c
    }

    fn spec(image: &str) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            replicas: 1,
            ..Default::default()
        }
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "apps", name)
    }

    #[test]
    fn valid_objects_normalise_like_files() {
        let web = container("web", spec("busybox:1.36"));
        let out = build(&[], &[&web]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let d = &out.state.containers[&key("web")];
        assert_eq!(d.config.image, "docker.io/library/busybox:1.36");
        assert_eq!(
            d.origin,
            Origin::Kubernetes {
                uid: "uid-web".into(),
                generation: Some(3)
            }
        );
    }

    #[test]
    fn host_paths_are_per_object_errors() {
        let mut bad = spec("busybox:1.36");
        bad.files = vec![FileSpec {
            path: "/etc/x".into(),
            source: Some("x.conf".into()),
            ..Default::default()
        }];
        bad.volumes = vec![VolumeMount {
            type_: VolumeType::Bind,
            source: Some("./data".into()),
            target: "/data".into(),
            ..Default::default()
        }];
        let bad = container("bad", bad);
        let good = container("good", spec("busybox:1.36"));
        let out = build(&[], &[&bad, &good]);
        let msg = &out.errors[&key("bad")];
        assert!(msg.contains("spec.files[0].source: a host file"), "{msg}");
        assert!(
            msg.contains("spec.volumes[0].source: a relative bind source"),
            "{msg}"
        );
        assert!(out.state.containers.contains_key(&key("good")));
        assert!(!out.state.containers.contains_key(&key("bad")));
    }

    #[test]
    fn validation_errors_stay_with_their_object() {
        let mut broken = spec("busybox:1.36");
        broken.working_dir = Some("relative".into());
        let broken = container("broken", broken);
        let mut dependent = spec("busybox:1.36");
        dependent.depends_on = vec![Dependency {
            name: "broken".into(),
            ..Default::default()
        }];
        let dependent = container("dependent", dependent);
        let fine = container("fine", spec("busybox:1.36"));
        let out = build(&[], &[&broken, &dependent, &fine]);
        assert!(
            out.errors[&key("broken")].contains("spec.workingDir"),
            "{:?}",
            out.errors
        );
        assert!(
            out.errors[&key("dependent")].contains("spec.dependsOn[0].name"),
            "{:?}",
            out.errors
        );
        assert_eq!(
            out.state.containers.keys().collect::<Vec<_>>(),
            vec![&key("fine")]
        );
    }

    #[test]
    fn images_bind_within_the_namespace() {
        let mut image = Image::new(
            "web",
            ImageSpec {
                reference: "127.0.0.1:5000/web:1".into(),
                ..Default::default()
            },
        );
        image.metadata.namespace = Some("apps".into());
        let c = container("c1", spec("web"));
        let out = build(&[&image], &[&c]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            out.state.containers[&key("c1")].image.reference,
            "127.0.0.1:5000/web:1"
        );
    }
}

//! What a `409 Conflict` on a container create means. The name is deterministic, so the holder
//! is either the very container we meant to create (another dockwright process of the same
//! owner won the race, or the daemon acted on an earlier create whose answer was lost) — then
//! the create succeeded — or someone else's container, which is never touched.

use std::collections::HashMap;

use super::errors::{action_error, is_not_found};
use super::Docker;
use crate::execute::{ActionError, ErrorKind};
use crate::labels;
use crate::plan::CreateSpec;

/// How often a holder that cannot be inspected yet is looked for again, and how long apart.
const INSPECT_ATTEMPTS: u32 = 20;
const INSPECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The container holding a name we tried to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Its ID.
    pub id: String,
    /// True while it was never started (files may still have to be copied into it).
    pub never_started: bool,
}

/// Why a name is held by a container that is not the one we create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// No owner label: not dockwright's.
    Unmanaged,
    /// Another owner's.
    OtherOwner(String),
    /// Ours, but for another resource or replica, or another spec.
    OtherSpec,
}

/// Compares a holder's labels with the ones `spec` would set. Ours means the same owner,
/// resource, replica and spec hash: every label that identifies a replica's revision.
pub(crate) fn compare(
    holder: &HashMap<String, String>,
    spec: &CreateSpec,
    owner: &str,
) -> Result<(), Mismatch> {
    match holder.get(labels::OWNER) {
        None => return Err(Mismatch::Unmanaged),
        Some(o) if o != owner => return Err(Mismatch::OtherOwner(o.clone())),
        Some(_) => {}
    }
    let same = |key: &str| spec.labels.contains_key(key) && holder.get(key) == spec.labels.get(key);
    if same(labels::RESOURCE) && same(labels::REPLICA) && same(labels::SPEC_HASH) {
        Ok(())
    } else {
        Err(Mismatch::OtherSpec)
    }
}

/// Inspects the holder of `spec.name` after a 409: `Ok(holder)` when it is the container
/// `spec` describes, else the clear conflict error (the holder vanished in between: a
/// `Conflict` too, retried by the next pass).
pub(crate) async fn adopt(
    docker: &Docker,
    owner: &str,
    spec: &CreateSpec,
) -> Result<Holder, ActionError> {
    let name = spec.name.as_str();
    // The daemon reserves a name before the container it names can be inspected: a 404 right
    // after the 409 usually means the winner's create is still under way, so look again.
    let mut attempts = 0;
    let found = loop {
        match docker.client.inspect_container(name, None).await {
            Ok(found) => break found,
            Err(e) if is_not_found(&e) && attempts < INSPECT_ATTEMPTS => {
                attempts += 1;
                tokio::time::sleep(INSPECT_PAUSE).await;
            }
            Err(e) if is_not_found(&e) => {
                return Err(ActionError::new(
                    ErrorKind::Conflict,
                    format!("create {name}: the name was taken, then freed, while we created it (a concurrent change); the next pass retries"),
                ))
            }
            Err(e) => return Err(action_error("inspect the holder of the name", name, &e)),
        }
    };
    let holder_labels = found
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    match compare(&holder_labels, spec, owner) {
        Ok(()) => {
            let never_started = found
                .state
                .as_ref()
                .and_then(|s| s.started_at.as_deref())
                .is_none_or(|t| t.starts_with("0001-01-01"));
            tracing::info!(container = name, "name already held by this very container (a concurrent dockwright of the same owner, or a lost answer): adopted");
            Ok(Holder {
                id: found.id.unwrap_or_else(|| name.to_string()),
                never_started,
            })
        }
        Err(mismatch) => {
            let message = match mismatch {
                Mismatch::Unmanaged => format!("container name \"{name}\" is taken by a container dockwright does not manage; rename or remove it"),
                Mismatch::OtherOwner(other) => format!("container name \"{name}\" is taken by a container of another dockwright owner ({other:?}); give one of the resources another name"),
                Mismatch::OtherSpec => format!("container name \"{name}\" is taken by another container of owner {owner:?} (another dockwright process of this owner is converging a different spec?); the next pass retries"),
            };
            Err(ActionError::new(ErrorKind::Conflict, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::desired::ContainerConfig;

    fn spec() -> CreateSpec {
        CreateSpec {
            name: "web".into(),
            replica: 0,
            config: Arc::new(ContainerConfig::default()),
            image_id: Some("sha256:1".into()),
            labels: BTreeMap::from([
                (labels::OWNER.to_string(), "me".to_string()),
                (
                    labels::RESOURCE.to_string(),
                    "Container/default/web".to_string(),
                ),
                (labels::REPLICA.to_string(), "0".to_string()),
                (labels::SPEC_HASH.to_string(), "sha256:abc".to_string()),
            ]),
            start: true,
        }
    }

    fn holder(changes: &[(&str, Option<&str>)]) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = spec().labels.into_iter().collect();
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k.to_string(), v.to_string()),
                None => map.remove(*k),
            };
        }
        map
    }

    #[test]
    fn the_same_replica_and_spec_is_ours() {
        assert_eq!(compare(&holder(&[]), &spec(), "me"), Ok(()));
    }

    #[test]
    fn anything_else_is_a_conflict() {
        let s = spec();
        assert_eq!(
            compare(&holder(&[(labels::OWNER, None)]), &s, "me"),
            Err(Mismatch::Unmanaged)
        );
        assert_eq!(
            compare(&holder(&[(labels::OWNER, Some("you"))]), &s, "me"),
            Err(Mismatch::OtherOwner("you".into()))
        );
        for key in [labels::RESOURCE, labels::REPLICA, labels::SPEC_HASH] {
            assert_eq!(
                compare(&holder(&[(key, Some("other"))]), &s, "me"),
                Err(Mismatch::OtherSpec),
                "{key}"
            );
            assert_eq!(
                compare(&holder(&[(key, None)]), &s, "me"),
                Err(Mismatch::OtherSpec),
                "{key}"
            );
        }
    }

    #[test]
    fn a_spec_without_labels_never_matches() {
        let mut s = spec();
        s.labels.clear();
        assert_eq!(compare(&holder(&[]), &s, "me"), Err(Mismatch::OtherSpec));
    }
}

//! What wakes the controllers, besides the objects themselves: the filter that keeps a status
//! write from reconciling its object again, the `Image` changes that matter to the
//! `Container`s naming them, and bursts of Docker events coalesced into one reconcile-all.
//!
//! Status writes: every agent writes its own status entry, and a status-only change does not
//! bump `metadata.generation`. The controllers' own streams therefore pass an object only when
//! its generation or its finalizers changed ([`object_changes`]): the generation covers every
//! spec edit and the start of a deletion (the API server bumps it when it sets
//! `deletionTimestamp`), the finalizers cover the update that adds or removes one (kube's
//! finalizer helper waits for it; the generation alone would suppress it, see kube's
//! `finalizer` docs). Everything else that matters (the node's labels, the daemon's events,
//! the resync) reaches the objects through `reconcile_all_on` and requeues.

use std::collections::HashMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::{predicates, watcher, Predicate};
use kube::Resource;
use tokio::sync::mpsc;

/// The predicate of the controllers' own streams: generation and finalizers (see the module
/// documentation).
pub fn object_changes<K: Resource>(obj: &K) -> Option<u64> {
    predicates::generation
        .combine(predicates::finalizers)
        .hash_property(obj)
}

/// The `Image` objects whose spec changed (or that were deleted), from a watcher's events:
/// what a `Container` naming them has to be reconciled for. A status write, or a relist that
/// finds an object unchanged, passes nothing; a deletion always passes (a deleted object need
/// not carry a new generation).
pub fn spec_changes<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut seen = SeenGenerations::default();
    events.filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                seen.changed(&obj).then_some(Ok(obj))
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.forget(&obj);
                Some(Ok(obj))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

/// Last generation seen per object (by namespace and name).
#[derive(Debug, Default)]
struct SeenGenerations(HashMap<(Option<String>, Option<String>), Option<i64>>);

impl SeenGenerations {
    fn id<K: Resource>(obj: &K) -> (Option<String>, Option<String>) {
        (obj.meta().namespace.clone(), obj.meta().name.clone())
    }

    /// True when `obj` is new or its generation differs from the last one seen.
    fn changed<K: Resource>(&mut self, obj: &K) -> bool {
        let generation = obj.meta().generation;
        self.0.insert(Self::id(obj), generation) != Some(generation)
    }

    fn forget<K: Resource>(&mut self, obj: &K) {
        self.0.remove(&Self::id(obj));
    }
}

/// `()` per burst of triggers (bursts within `coalesce` become one).
pub fn coalesced(
    rx: mpsc::Receiver<()>,
    coalesce: Duration,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, move |mut rx| async move {
        rx.recv().await?;
        tokio::time::sleep(coalesce).await;
        while rx.try_recv().is_ok() {}
        Some(((), rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Image, ImageSpec};

    fn image(name: &str, generation: i64, version: &str) -> Image {
        let mut i = Image::new(
            name,
            ImageSpec {
                reference: "busybox:1.36".into(),
                ..Default::default()
            },
        );
        i.metadata.namespace = Some("default".into());
        i.metadata.generation = Some(generation);
        i.metadata.resource_version = Some(version.into());
        i
    }

    #[tokio::test]
    async fn only_spec_changes_and_deletions_pass() {
        use watcher::Event;
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(image("web", 1, "1"))),
            Ok(Event::InitApply(image("db", 1, "2"))),
            Ok(Event::InitDone),
            // A status write: new resourceVersion, same generation.
            Ok(Event::Apply(image("web", 1, "3"))),
            // A spec edit.
            Ok(Event::Apply(image("web", 2, "4"))),
            // A relist finds both unchanged.
            Ok(Event::Init),
            Ok(Event::InitApply(image("web", 2, "4"))),
            Ok(Event::InitApply(image("db", 1, "2"))),
            Ok(Event::InitDone),
            Ok(Event::Delete(image("db", 1, "5"))),
            // Created again under the same name.
            Ok(Event::Apply(image("db", 1, "6"))),
        ];
        let passed: Vec<(String, String)> = spec_changes(futures::stream::iter(events))
            .map(|r| {
                let i = r.unwrap();
                (
                    i.metadata.name.unwrap(),
                    i.metadata.resource_version.unwrap(),
                )
            })
            .collect()
            .await;
        let passed: Vec<(&str, &str)> = passed
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            passed,
            [
                ("web", "1"),
                ("db", "2"),
                ("web", "4"),
                ("db", "5"),
                ("db", "6")
            ]
        );
    }

    #[test]
    fn the_object_predicate_sees_generation_and_finalizers_not_status() {
        let a = image("web", 1, "1");
        let mut status_only = image("web", 1, "2");
        status_only.status = Some(Default::default());
        assert_eq!(object_changes(&a), object_changes(&status_only));
        let edited = image("web", 2, "3");
        assert_ne!(object_changes(&a), object_changes(&edited));
        let mut finalized = image("web", 1, "4");
        finalized.metadata.finalizers = Some(vec!["dockwright.dev/node.n1".into()]);
        assert_ne!(object_changes(&a), object_changes(&finalized));
    }
}

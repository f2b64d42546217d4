//! Restart counts of managed containers, for status. The container list that observation is
//! made of does not carry `RestartCount`; only a container inspect does. So that status does
//! not cost an inspect per replica per reconcile, [`RestartCounts`] remembers each container's
//! count together with the state it was read in, and a count is read again only when it may
//! have changed (see [`RestartCounts::to_read`]). The cache is pure; [`Docker::restart_count`]
//! is the one daemon call.

use std::collections::{BTreeMap, HashMap};

use super::errors::is_not_found;
use super::{DaemonEvent, Docker};
use crate::observed::{ObservedContainer, RunState};
use crate::Error;

impl Docker {
    /// The daemon's `RestartCount` of container `id` (one inspect): how often its restart
    /// policy restarted it. `Ok(None)` when the container is gone.
    pub async fn restart_count(&self, id: &str) -> Result<Option<i64>, Error> {
        match self.client.inspect_container(id, None).await {
            Ok(inspect) => Ok(Some(inspect.restart_count.unwrap_or(0))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(Error::Docker {
                operation: format!("inspect container {id}"),
                source,
            }),
        }
    }
}

/// A count as read, and the state the container was in when it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Known {
    state: RunState,
    count: i64,
}

/// A container whose count has to be read, and the cache's generation when that was decided
/// (a daemon event for the container after that makes the read stale; see
/// [`RestartCounts::record`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToRead {
    /// Container ID.
    pub id: String,
    /// Its state as observed.
    pub state: RunState,
    generation: u64,
}

/// Restart counts by container ID.
///
/// Owned by the Kubernetes controller's context; reconciles read and fill it when they build a
/// status entry, the Docker events stream invalidates it. The daemon increments
/// `RestartCount` only when its restart policy starts the container again, which it reports
/// as a `start` event, and a container that is restarting changes state on the way. So a
/// count is read again only when the container is new to the cache, was observed in another
/// state than when its count was read, or had a `start` event since (any event after a
/// reconnect of the stream, which forgets everything). Cost: one inspect per replica when it
/// appears and after each start; nothing for reconciles where nothing happened.
#[derive(Clone, Debug, Default)]
pub struct RestartCounts {
    known: HashMap<String, Known>,
    /// Generation of the last invalidating event per container ID (only IDs with one).
    invalidated: HashMap<String, u64>,
    /// Generation of the last reconnect: reads decided before it may have missed events.
    cleared_at: u64,
    generation: u64,
}

impl RestartCounts {
    /// Takes a daemon event in: a container's `start` forgets its count; a (re)connected
    /// stream forgets every count (events may have been missed while it was down).
    pub fn on_event(&mut self, event: &DaemonEvent) {
        match event {
            DaemonEvent::Container { id, action, .. } if action == "start" => {
                self.generation += 1;
                self.known.remove(id);
                self.invalidated.insert(id.clone(), self.generation);
            }
            DaemonEvent::Connected => {
                self.generation += 1;
                self.known.clear();
                self.invalidated.clear();
                self.cleared_at = self.generation;
            }
            _ => {}
        }
    }

    /// The containers among `containers` whose count must be read (unknown, or read in
    /// another state).
    pub fn to_read<'a>(
        &self,
        containers: impl IntoIterator<Item = &'a ObservedContainer>,
    ) -> Vec<ToRead> {
        containers
            .into_iter()
            .filter(|c| {
                self.known
                    .get(&c.id)
                    .is_none_or(|known| known.state != c.state)
            })
            .map(|c| ToRead {
                id: c.id.clone(),
                state: c.state,
                generation: self.generation,
            })
            .collect()
    }

    /// Remembers a count read for `read`, unless an event for that container, or a reconnect
    /// of the stream, came after the read was decided (then the count may be stale and is read
    /// again next time).
    pub fn record(&mut self, read: &ToRead, count: i64) {
        let stale = read.generation < self.cleared_at
            || self
                .invalidated
                .get(&read.id)
                .is_some_and(|g| *g > read.generation);
        if stale {
            return;
        }
        self.known.insert(
            read.id.clone(),
            Known {
                state: read.state,
                count,
            },
        );
    }

    /// The known counts of `containers` (those read in the state they are observed in).
    pub fn counts<'a>(
        &self,
        containers: impl IntoIterator<Item = &'a ObservedContainer>,
    ) -> BTreeMap<String, i64> {
        containers
            .into_iter()
            .filter_map(|c| {
                let known = self.known.get(&c.id).filter(|k| k.state == c.state)?;
                Some((c.id.clone(), known.count))
            })
            .collect()
    }

    /// Forgets containers that are gone (`live` says which IDs still exist).
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.known.retain(|id, _| live(id));
        self.invalidated.retain(|id, _| live(id));
    }

    /// Number of containers whose count is known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when no count is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, state: RunState) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            name: id.into(),
            resource: None,
            replica: None,
            spec_hash: None,
            spec: None,
            source: None,
            state,
            health: None,
            exit_code: None,
            image_id: String::new(),
            image: String::new(),
            ports: vec![],
            created: 0,
            status: String::new(),
        }
    }

    fn start(id: &str) -> DaemonEvent {
        DaemonEvent::Container {
            resource: None,
            id: id.into(),
            action: "start".into(),
        }
    }

    fn ids(reads: &[ToRead]) -> Vec<&str> {
        reads.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn a_count_is_read_once_then_again_only_after_a_start_or_a_state_change() {
        let mut cache = RestartCounts::default();
        let a = container("a", RunState::Running);
        let b = container("b", RunState::Running);
        let reads = cache.to_read([&a, &b]);
        assert_eq!(ids(&reads), ["a", "b"]);
        assert!(cache.counts([&a, &b]).is_empty());
        cache.record(&reads[0], 0);
        cache.record(&reads[1], 2);
        assert!(cache.to_read([&a, &b]).is_empty(), "nothing changed");
        assert_eq!(
            cache.counts([&a, &b]),
            BTreeMap::from([("a".to_string(), 0), ("b".to_string(), 2)])
        );
        // Other events change nothing.
        cache.on_event(&DaemonEvent::Container {
            resource: None,
            id: "a".into(),
            action: "health_status: healthy".into(),
        });
        assert!(cache.to_read([&a]).is_empty());
        // Restarted by its policy: read again.
        cache.on_event(&start("a"));
        assert_eq!(ids(&cache.to_read([&a, &b])), ["a"]);
        assert_eq!(cache.counts([&a]), BTreeMap::new());
        // Observed in another state than it was read in: read again.
        let b_restarting = container("b", RunState::Restarting);
        assert_eq!(ids(&cache.to_read([&b_restarting])), ["b"]);
        assert!(cache.counts([&b_restarting]).is_empty());
    }

    #[test]
    fn a_read_overtaken_by_a_start_is_not_remembered() {
        let mut cache = RestartCounts::default();
        let a = container("a", RunState::Running);
        let reads = cache.to_read([&a]);
        // The container restarts while its inspect is on the way.
        cache.on_event(&start("a"));
        cache.record(&reads[0], 1);
        assert_eq!(ids(&cache.to_read([&a])), ["a"]);
        // A read decided after the event is kept.
        let reads = cache.to_read([&a]);
        cache.record(&reads[0], 2);
        assert_eq!(cache.counts([&a]), BTreeMap::from([("a".to_string(), 2)]));
    }

    #[test]
    fn a_reconnect_forgets_everything_and_gone_containers_are_dropped() {
        let mut cache = RestartCounts::default();
        let a = container("a", RunState::Running);
        let b = container("b", RunState::Exited);
        for r in cache.to_read([&a, &b]) {
            cache.record(&r, 1);
        }
        assert_eq!(cache.len(), 2);
        cache.retain(|id| id == "a");
        assert_eq!(cache.len(), 1);
        cache.on_event(&DaemonEvent::Connected);
        assert!(cache.is_empty());
        assert_eq!(ids(&cache.to_read([&a])), ["a"]);
    }

    #[test]
    fn a_read_decided_before_a_reconnect_is_not_remembered() {
        let mut cache = RestartCounts::default();
        let a = container("a", RunState::Running);
        let reads = cache.to_read([&a]);
        // The stream drops and comes back while the inspect is on the way: a `start` may
        // have been missed in between.
        cache.on_event(&DaemonEvent::Connected);
        cache.record(&reads[0], 1);
        assert!(cache.is_empty());
        let reads = cache.to_read([&a]);
        cache.record(&reads[0], 2);
        assert_eq!(cache.counts([&a]), BTreeMap::from([("a".to_string(), 2)]));
    }
}

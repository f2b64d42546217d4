//! Readiness of the Kubernetes agent: ready once the first full reconcile pass is done, as in
//! file mode — both kinds listed, and every object of those first lists reconciled once (with
//! success or not; an object deleted meanwhile no longer counts). Until then `/readyz` says
//! not ready, so a rollout of the DaemonSet waits until each new agent has converged its node
//! once.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::desired::ResourceKey;

/// The first pass's bookkeeping.
///
/// Owned by the controller context: every reconcile reports its object through
/// [`FirstPass::reconciled`] (both kinds, whatever the result); the task started by
/// [`super::run`] waits in [`FirstPass::wait`] and then calls the agent's `ready`. Once
/// ready it keeps nothing.
#[derive(Debug, Default)]
pub struct FirstPass {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Objects reconciled at least once so far (cleared once done).
    reconciled: BTreeSet<ResourceKey>,
    done: bool,
}

impl FirstPass {
    /// A reconcile of `key` finished (whatever its result).
    pub fn reconciled(&self, key: &ResourceKey) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.done {
            state.reconciled.insert(key.clone());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// The objects of `listed` that still wait for their first reconcile, among those `live`
    /// says still exist.
    pub fn pending(
        &self,
        listed: &BTreeSet<ResourceKey>,
        live: impl Fn(&ResourceKey) -> bool,
    ) -> Vec<ResourceKey> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.done {
            return Vec::new();
        }
        listed
            .iter()
            .filter(|k| !state.reconciled.contains(*k) && live(k))
            .cloned()
            .collect()
    }

    /// True once the first pass is done.
    pub fn is_done(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).done
    }

    /// Waits until every object of `listed` that still exists (`live`, asked again at each
    /// change and at least every second, so a deleted object never holds readiness back) has
    /// been reconciled once; then forgets what it kept.
    pub async fn wait(&self, listed: &BTreeSet<ResourceKey>, live: impl Fn(&ResourceKey) -> bool) {
        loop {
            let pending = self.pending(listed, &live);
            if pending.is_empty() {
                break;
            }
            tracing::debug!(
                pending = pending.len(),
                "first pass: objects not reconciled yet"
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), self.changed.notified()).await;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.done = true;
        state.reconciled.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::Kind;

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", name)
    }

    #[tokio::test]
    async fn ready_once_every_listed_object_that_still_exists_was_reconciled() {
        let first = std::sync::Arc::new(FirstPass::default());
        let listed = BTreeSet::from([key("a"), key("b"), key("gone")]);
        // Reconciled before the lists were complete: counts.
        first.reconciled(&key("a"));
        let live = |k: &ResourceKey| k.name != "gone";
        assert_eq!(first.pending(&listed, live), vec![key("b")]);
        let waiter = {
            let first = std::sync::Arc::clone(&first);
            let listed = listed.clone();
            tokio::spawn(async move { first.wait(&listed, live).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "b was not reconciled yet");
        assert!(!first.is_done());
        first.reconciled(&key("b"));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("ready after b")
            .unwrap();
        assert!(first.is_done());
        // Nothing is kept once done.
        first.reconciled(&key("c"));
        assert!(first
            .pending(&BTreeSet::from([key("c")]), |_| true)
            .is_empty());
    }

    #[tokio::test]
    async fn nothing_listed_is_ready_at_once() {
        let first = FirstPass::default();
        tokio::time::timeout(
            Duration::from_secs(1),
            first.wait(&BTreeSet::new(), |_| true),
        )
        .await
        .unwrap();
        assert!(first.is_done());
    }
}

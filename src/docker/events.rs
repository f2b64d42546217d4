//! The Docker events stream, reduced to what the agent reacts to: which managed resource a
//! container event concerns, and which image references an image event touches. Reconnects
//! with exponential backoff when the daemon goes away, and says so, so the agent relists.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::EventMessageTypeEnum;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::Docker;
use crate::desired::ResourceKey;
use crate::labels;

/// Something the daemon reported that may need a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonEvent {
    /// A container carrying our owner label changed.
    Container {
        /// The resource its label names (None when the label is unreadable).
        resource: Option<ResourceKey>,
        /// Container ID.
        id: String,
        /// Docker's action: `die`, `destroy`, `oom`, `stop`, `health_status: healthy`, ...
        action: String,
    },
    /// An image was deleted, untagged, tagged or pulled.
    Image {
        /// Image ID or reference as the daemon reports it.
        id: String,
        /// Docker's action.
        action: String,
        /// The reference a `tag` gave or a `pull` fetched (the daemon names no reference
        /// for the others: an `untag` names the image ID).
        reference: Option<String>,
    },
    /// The stream (re)connected: anything may have happened while it was down.
    Connected,
    /// The stream broke; the next [`DaemonEvent::Connected`] follows when the daemon is back.
    Disconnected {
        /// Why.
        reason: String,
    },
}

impl DaemonEvent {
    /// Short labels `(type, action)` for metrics; health events collapse to `health_status`.
    pub fn metric_labels(&self) -> (&'static str, String) {
        match self {
            DaemonEvent::Container { action, .. } => (
                "container",
                action.split(':').next().unwrap_or(action).to_string(),
            ),
            DaemonEvent::Image { action, .. } => ("image", action.clone()),
            DaemonEvent::Connected => ("stream", "connected".into()),
            DaemonEvent::Disconnected { .. } => ("stream", "disconnected".into()),
        }
    }
}

/// Container actions that can move a container away from its desired state.
const CONTAINER_ACTIONS: &[&str] = &[
    "create",
    "start",
    "die",
    "destroy",
    "oom",
    "stop",
    "kill",
    "pause",
    "unpause",
    "rename",
    "health_status",
];
/// Image actions that can change what a reference resolves to.
const IMAGE_ACTIONS: &[&str] = &["delete", "untag", "tag", "pull", "load", "import"];

/// Reconnect back-off bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

impl Docker {
    /// Follows the daemon's events for `owner` until `tx` is closed, forwarding the relevant
    /// ones. Never returns an error: a broken stream is reported as
    /// [`DaemonEvent::Disconnected`] and retried with back-off (200 ms doubling to 10 s).
    pub async fn follow_events(&self, owner: &str, tx: mpsc::Sender<DaemonEvent>) {
        let mut delay = RECONNECT_MIN;
        loop {
            // `type` filters are ORed; the owner is checked on the container's attributes,
            // because a `label` filter would also drop every image event.
            let filters: HashMap<&str, Vec<&str>> =
                HashMap::from([("type", vec!["container", "image"])]);
            // Replay from a second before connecting, so nothing between the relist the
            // agent does on `Connected` and the subscription is missed (repeats are harmless).
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs().saturating_sub(1))
                .to_string();
            let options = EventsOptionsBuilder::new()
                .since(&since)
                .filters(&filters)
                .build();
            let mut stream = self
                .client_with_timeout(Duration::from_secs(u64::from(u32::MAX)))
                .events(Some(options));
            // The daemon sends nothing until an event happens; `_ping` proves it is there.
            let reachable = self.client.ping().await.is_ok();
            if reachable {
                if tx.send(DaemonEvent::Connected).await.is_err() {
                    return;
                }
                delay = RECONNECT_MIN;
            }
            let reason = loop {
                if !reachable {
                    break "daemon unreachable".to_string();
                }
                match stream.next().await {
                    Some(Ok(message)) => {
                        if let Some(event) = relevant(&message, owner) {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "event stream ended".to_string(),
                }
            };
            tracing::warn!(reason = %reason, retry_in = ?delay, "docker events stream lost");
            if tx.send(DaemonEvent::Disconnected { reason }).await.is_err() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }
}

fn relevant(message: &bollard::models::EventMessage, owner: &str) -> Option<DaemonEvent> {
    let action = message.action.clone()?;
    let actor = message.actor.as_ref()?;
    let id = actor.id.clone().unwrap_or_default();
    let attributes = actor.attributes.as_ref();
    let base = action.split(':').next().unwrap_or(&action);
    match message.typ? {
        EventMessageTypeEnum::CONTAINER if CONTAINER_ACTIONS.contains(&base) => {
            let attributes = attributes?;
            if attributes.get(labels::OWNER).map(String::as_str) != Some(owner) {
                return None;
            }
            let resource = attributes
                .get(labels::RESOURCE)
                .and_then(|r| ResourceKey::parse(r));
            Some(DaemonEvent::Container {
                resource,
                id,
                action,
            })
        }
        EventMessageTypeEnum::IMAGE if IMAGE_ACTIONS.contains(&base) => {
            let reference = match base {
                "tag" => attributes.and_then(|a| a.get("name")).cloned(),
                "pull" => Some(id.clone()),
                _ => None,
            };
            Some(DaemonEvent::Image {
                id,
                action,
                reference,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{EventActor, EventMessage};

    use super::*;

    fn message(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<HashMap<_, _>>(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_only_our_containers_and_relevant_actions() {
        let ours = [
            (labels::OWNER, "me"),
            (labels::RESOURCE, "Container/default/web"),
        ];
        let got = relevant(
            &message(EventMessageTypeEnum::CONTAINER, "die", &ours),
            "me",
        );
        assert_eq!(
            got,
            Some(DaemonEvent::Container {
                resource: ResourceKey::parse("Container/default/web"),
                id: "abc".into(),
                action: "die".into()
            })
        );
        assert!(relevant(
            &message(
                EventMessageTypeEnum::CONTAINER,
                "health_status: unhealthy",
                &ours
            ),
            "me"
        )
        .is_some());
        assert!(relevant(
            &message(EventMessageTypeEnum::CONTAINER, "die", &ours),
            "someone-else"
        )
        .is_none());
        assert!(relevant(
            &message(EventMessageTypeEnum::CONTAINER, "exec_start: sh", &ours),
            "me"
        )
        .is_none());
        assert!(relevant(&message(EventMessageTypeEnum::CONTAINER, "die", &[]), "me").is_none());
        assert!(relevant(&message(EventMessageTypeEnum::IMAGE, "untag", &[]), "me").is_some());
        assert!(relevant(
            &message(EventMessageTypeEnum::NETWORK, "connect", &ours),
            "me"
        )
        .is_none());
    }

    #[test]
    fn image_events_carry_the_reference_a_tag_gave_or_a_pull_fetched() {
        // As Docker 20.10 reports them: a tag names the new reference, a pull's actor is the
        // reference, an untag names only the image ID.
        let image = |action: &str, attrs: &[(&str, &str)]| match relevant(
            &message(EventMessageTypeEnum::IMAGE, action, attrs),
            "me",
        ) {
            Some(DaemonEvent::Image { reference, .. }) => reference,
            other => panic!("{action}: {other:?}"),
        };
        assert_eq!(
            image("tag", &[("name", "127.0.0.1:5000/team/web:1")]).as_deref(),
            Some("127.0.0.1:5000/team/web:1")
        );
        assert_eq!(
            image("pull", &[("name", "127.0.0.1:5000/team/web")]).as_deref(),
            Some("abc")
        );
        assert_eq!(image("untag", &[("name", "sha256:abc")]), None);
        assert_eq!(image("delete", &[]), None);
    }

    #[test]
    fn metric_labels_collapse_health() {
        let e = DaemonEvent::Container {
            resource: None,
            id: String::new(),
            action: "health_status: healthy".into(),
        };
        assert_eq!(
            e.metric_labels(),
            ("container", "health_status".to_string())
        );
    }
}

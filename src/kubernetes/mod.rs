//! The Kubernetes add-on (`dockwright agent --kubernetes`): one agent per node turns the
//! `Container`/`Image` custom resources placed on its node into the same [`DesiredState`] the
//! file mode builds, and drives the same planner and executor against its node's daemon.
//!
//! Steps, each its own module: [`placement`] (pure: does a resource run here),
//! [`desired`] (objects → desired state, per-resource errors), [`secrets`]
//! (`imagePullSecrets` → registry credentials), [`status`] (pure: the per-node status
//! entries and their server-side-apply patch), [`triggers`] (what wakes a reconcile),
//! [`readiness`] (the first full pass), [`controller`] (kube `Controller`s, the `Container`
//! reconcile, finalizers, events, back-off) and [`image`] (the `Image` reconcile). Nothing
//! here plans or executes on its own: the planner, executor and the back-off bookkeeping are
//! the file agent's.
//!
//! Finalizers: one per node, `dockwright.dev/node.<node>`, added by a node's agent before it
//! creates anything for an object, removed once that node's containers of the object are gone
//! (object deleted, or no longer placed on the node). Rule for a node that is gone for good:
//! whenever an agent reconciles an object being deleted, it looks up the Node of every other
//! `dockwright.dev/node.*` finalizer on it and removes the finalizers whose Node object no
//! longer exists (a deleted Node has no daemon left to clean, and no agent that could).
//!
//! [`DesiredState`]: crate::desired::DesiredState

pub mod controller;
pub mod desired;
pub mod image;
pub mod placement;
pub mod readiness;
pub mod secrets;
pub mod status;
pub mod triggers;

pub use controller::{run, Context, ControllerOptions};
pub use placement::NodeInfo;

use crate::execute::ActionError;

/// Prefix of the per-node finalizers.
pub const FINALIZER_PREFIX: &str = "dockwright.dev/node.";

/// The finalizer a node's agent puts on the objects it runs.
pub fn finalizer_name(node: &str) -> String {
    format!("{FINALIZER_PREFIX}{node}")
}

/// The server-side-apply field manager of a node's agent (its status entries).
pub fn field_manager(node: &str) -> String {
    format!("dockwright-{node}")
}

/// Why reconciling one object failed. Each variant has a short [`Error::label`] for metrics
/// and events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed (adding or removing the finalizer, or the step it wraps).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Observing the daemon failed.
    #[error("docker: {0}")]
    Docker(#[source] Box<crate::Error>),
    /// Some actions of the object failed on this node.
    #[error("{0}")]
    Actions(ActionError),
    /// The object is held back: refused by the policy, or a secret value cannot be read.
    #[error("held: {0}")]
    Held(String),
    /// The object has no name or namespace (never from a real API server).
    #[error("object without {0}")]
    Unnamed(&'static str),
}

impl Error {
    /// Short stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Docker(_) => "docker",
            Error::Actions(e) => e.kind.label(),
            Error::Held(_) => "held",
            Error::Unnamed(_) => "unnamed",
        }
    }
}

//! The Kubernetes add-on, in two parts that meet at the `Placement` kind (the DaemonSet →
//! Pod split, see [`crate::api::Placement`]):
//!
//! - the **placement controller** ([`controller`], `dockwright controller`, leader-elected):
//!   watches `Container`, `Image` and `Node` objects and keeps one `Placement` per (resource,
//!   node) placed, labelled with the node; it writes each parent's aggregate status and owns
//!   the rule for nodes that are gone for good;
//! - the **node agent** ([`node`], `dockwright agent --kubernetes`): watches only its own
//!   node's `Placement`s (label selector), turns them into the same [`DesiredState`] the file
//!   mode builds ([`desired`]), runs the file agent's loop ([`crate::agent::run`]: one observe
//!   → plan → execute pass per burst of triggers, the converge rounds every front end shares)
//!   and writes status only on its own `Placement`s ([`status`]).
//!
//! Pure helpers: [`placement`] (does a resource run on a node), [`status`] (a `Placement`'s
//! status from what the agent observed). [`secrets`] reads `imagePullSecrets`.
//!
//! Finalizers: the node agent puts [`FINALIZER`] on each of its `Placement`s before anything
//! is created for it and removes it once the node's containers of it are gone, so deleting a
//! parent (garbage collection through owner references) or un-placing it (the controller
//! deletes the `Placement`) removes the containers first. For a node that is gone for good
//! the controller removes the finalizer (no daemon is left to clean, and no agent).
//!
//! [`DesiredState`]: crate::desired::DesiredState

pub mod controller;
pub mod desired;
pub mod node;
pub mod placement;
pub mod secrets;
pub mod status;

pub use node::{run, NodeOptions};
pub use placement::NodeInfo;

/// The finalizer a node's agent puts on its `Placement`s.
pub const FINALIZER: &str = "dockwright.dev/node-agent";

/// Prefix of the per-node finalizers the agents of earlier versions put on the parents
/// (`dockwright.dev/node.<node>`); the controller removes them (see [`controller`]).
pub const LEGACY_FINALIZER_PREFIX: &str = "dockwright.dev/node.";

/// Field manager of the node agent (status of its `Placement`s, its finalizer).
pub fn field_manager(node: &str) -> String {
    format!("dockwright-{node}")
}

/// Why a step of the controller or the node agent failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Talking to the daemon failed.
    #[error("docker: {0}")]
    Docker(#[source] Box<crate::Error>),
    /// The object has no name or namespace (never from a real API server).
    #[error("object without {0}")]
    Unnamed(&'static str),
}

impl Error {
    /// Short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Docker(_) => "docker",
            Error::Unnamed(_) => "unnamed",
        }
    }
}

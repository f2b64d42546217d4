//! Manifest types: the `Image`, `Container`, `Network` and `Volume` custom resources, the
//! `Placement` children of the Kubernetes mode, shared sub-types and
//! the CRD generator. No I/O lives here; the file and Kubernetes sources both parse
//! into these types, so one document means the same thing in every mode.

mod common;
mod container;
mod crd;
mod docs;
mod image;
mod network;
mod placement;
mod volume;

pub use common::*;
pub use container::*;
pub use crd::{all_crds, crds_yaml};
pub use docs::{reference_markdown, REFERENCE_MARKER};
pub use image::*;
pub use network::*;
pub use placement::*;
pub use volume::*;

/// API group of every dockwright resource.
pub const GROUP: &str = "dockwright.dev";
/// The only served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "dockwright.dev/v1alpha1";

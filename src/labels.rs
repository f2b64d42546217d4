//! Ownership labels: how dockwright recognises what is its own.

/// Agent instance that owns the object.
pub const OWNER: &str = "dockwright.dev/owner";
/// `Kind/namespace/name` of the resource the object belongs to.
pub const RESOURCE: &str = "dockwright.dev/resource";
/// Replica index of a container.
pub const REPLICA: &str = "dockwright.dev/replica";
/// Hash of the effective create configuration plus image ID.
pub const SPEC_HASH: &str = "dockwright.dev/spec-hash";
/// Canonical JSON of the effective create configuration plus image ID (no secrets, no file bytes).
pub const SPEC: &str = "dockwright.dev/spec";
/// Hash of the build inputs of an image dockwright built.
pub const BUILD_HASH: &str = "dockwright.dev/build-hash";
/// `reclaimPolicy` of a volume dockwright created for a `Volume` (volumes cannot be
/// relabelled, so this is the policy at creation).
pub const RECLAIM_POLICY: &str = "dockwright.dev/reclaim-policy";
/// Prefix reserved for dockwright's own labels.
pub const PREFIX: &str = "dockwright.dev/";
/// Default owner name.
pub const DEFAULT_OWNER: &str = "dockwright";

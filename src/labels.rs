//! Ownership labels: how dockwright recognises what is its own.

/// Agent instance that owns the object.
pub const OWNER: &str = "dockwright.dev/owner";
/// `Kind/namespace/name` of the resource the object belongs to.
pub const RESOURCE: &str = "dockwright.dev/resource";
/// Source that declared the object (see [`crate::source::identity`]): a manifests
/// directory's canonical path, a `--source` name, `git:<url>#<path>` or `kubernetes`. Not
/// part of the spec hash, so adding it never recreates anything.
pub const SOURCE: &str = "dockwright.dev/source";
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

/// The ownership labels every object dockwright creates carries (containers, built images,
/// networks, volumes): owner and source. The one place they are built, so new kinds get both.
pub fn ownership(owner: &str, source: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    out.insert(OWNER.to_string(), owner.to_string());
    if !source.is_empty() {
        out.insert(SOURCE.to_string(), source.to_string());
    }
    out
}

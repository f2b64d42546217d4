//! Coverage-guided fuzzing of the manifest front door: any bytes → `source::parse_str` →
//! `source::build_desired` → the policy gate → the spec JSON. Must never panic; every `Err`
//! carries at least one located error. The same check runs on stable, at scale, in
//! tests/fuzz_manifests.rs.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use dockwright::policy::{Gate, PathResolver, Policy};
use dockwright::secrets::SecretKey;
use dockwright::source::{build_desired, parse_str};
use libfuzzer_sys::fuzz_target;

/// A base directory with the files the seed corpus names (created once per process).
fn base() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let _ = std::fs::create_dir_all(dir.path().join("conf"));
        let _ = std::fs::create_dir_all(dir.path().join("ctx"));
        let _ = std::fs::write(dir.path().join("conf/app.conf"), "a=b\n");
        let _ = std::fs::write(dir.path().join("ctx/Dockerfile"), "FROM scratch\n");
        let _ = std::fs::write(dir.path().join("pw"), "secret\n");
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = base().join("fuzz.yaml");
    match parse_str(text, &path) {
        Err(errors) => assert!(!errors.0.is_empty()),
        Ok(manifests) => match build_desired(&manifests) {
            Err(errors) => assert!(!errors.0.is_empty()),
            Ok(desired) => {
                let gate = Gate {
                    policy: Arc::new(Policy::default()),
                    paths: PathResolver::Lexical,
                    secret_key: Some(SecretKey::from_bytes([3; 32])),
                };
                for c in gate.admit(&desired).desired.containers.values() {
                    let json = dockwright::plan::spec_json(&c.config, "sha256:x");
                    assert!(serde_json_ok(&json));
                }
            }
        },
    }
});

fn serde_json_ok(text: &str) -> bool {
    text.starts_with('{') && text.ends_with('}')
}

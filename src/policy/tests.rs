//! The policy over real manifests: each refused field, each setting that allows it, symlinks
//! and the socket, and what the gate does to a plan.

use std::path::Path;

use super::*;
use crate::desired::Kind;
use crate::source::{build_desired, parse_str};

fn desired(dir: &Path, spec: &str) -> DesiredState {
    let text = format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: web}}\nspec: {spec}\n---\napiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: ok}}\nspec: {{image: busybox:1}}\n"
    );
    let manifests = parse_str(&text, &dir.join("app.yaml")).unwrap();
    build_desired(&manifests).unwrap()
}

fn refusals(dir: &Path, spec: &str, policy: &str) -> Vec<Refusal> {
    check(
        &desired(dir, spec),
        &Policy::parse(policy).unwrap(),
        PathResolver::HostFs,
    )
}

#[test]
fn default_policy_refuses_each_dangerous_field_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{image: busybox:1, privileged: true}",
            "spec.privileged",
            "allowPrivileged: true",
            "allowPrivileged: true",
        ),
        (
            "{image: busybox:1, network: host}",
            "spec.network",
            "allowHostNetwork: true",
            "allowHostNetwork: true",
        ),
        (
            "{image: busybox:1, hostPID: true}",
            "spec.hostPID",
            "allowHostPID: true",
            "allowHostPID: true",
        ),
        (
            "{image: busybox:1, hostIPC: true}",
            "spec.hostIPC",
            "allowHostIPC: true",
            "allowHostIPC: true",
        ),
        (
            "{image: busybox:1, capabilities: {add: [cap_net_admin]}}",
            "spec.capabilities.add",
            "allowedCapabilities: [NET_ADMIN]",
            "allowedCapabilities: [NET_ADMIN]",
        ),
        (
            "{image: busybox:1, devices: [{hostPath: /dev/null}]}",
            "spec.devices[0].hostPath",
            "allowedDevices: [/dev/null]",
            "allowedDevices: [/dev]",
        ),
        (
            "{image: busybox:1, volumes: [{type: Bind, source: /tmp, target: /t}]}",
            "spec.volumes[0].source",
            "allowedBindPrefixes: [/tmp]",
            "allowedBindPrefixes: [/tmp]",
        ),
    ];
    for (spec, field, setting, allow) in cases {
        let refused = refusals(dir.path(), spec, "");
        assert_eq!(refused.len(), 1, "{spec}: {refused:?}");
        let r = &refused[0];
        assert_eq!(
            r.resource,
            ResourceKey::new(Kind::Container, "default", "web")
        );
        assert_eq!(r.field, field, "{spec}");
        assert_eq!(r.setting, setting, "{spec}");
        let text = r.to_string();
        for part in [
            "app.yaml (document 1)",
            "Container/web",
            field,
            setting,
            "refused by the agent's policy",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
        assert!(
            refusals(dir.path(), spec, allow).is_empty(),
            "{allow} should allow {spec}"
        );
    }
}

#[test]
fn dropping_capabilities_is_always_fine_and_all_allows_any() {
    let dir = tempfile::tempdir().unwrap();
    assert!(refusals(
        dir.path(),
        "{image: busybox:1, capabilities: {drop: [ALL]}}",
        ""
    )
    .is_empty());
    let spec = "{image: busybox:1, capabilities: {add: [NET_ADMIN, SYS_TIME]}}";
    let refused = refusals(dir.path(), spec, "allowedCapabilities: [NET_ADMIN]");
    assert_eq!(refused.len(), 1);
    assert!(refused[0].message.contains("SYS_TIME"));
    assert!(refusals(dir.path(), spec, "allowedCapabilities: [ALL]").is_empty());
}

#[test]
fn bind_prefixes_match_whole_components_and_follow_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    for d in ["data/sub", "database", "outside"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(base.join("outside"), base.join("data/escape")).unwrap();
    let policy = format!("allowedBindPrefixes: [{}]", base.join("data").display());
    let bind = |src: &str| {
        format!("{{image: busybox:1, volumes: [{{type: Bind, source: {src}, target: /t}}]}}")
    };
    assert!(refusals(&base, &bind("./data/sub"), &policy).is_empty());
    assert!(refusals(&base, &bind("./data"), &policy).is_empty());
    assert_eq!(refusals(&base, &bind("./database"), &policy).len(), 1);
    let escaped = refusals(&base, &bind("./data/escape"), &policy);
    assert_eq!(
        escaped.len(),
        1,
        "a symlink out of the allowed prefix must be refused"
    );
    assert!(
        escaped[0].message.contains("resolves to"),
        "{}",
        escaped[0].message
    );
}

#[test]
fn docker_socket_is_refused_even_under_an_allowed_prefix_and_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let run = base.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let socket = run.join("docker.sock");
    std::fs::write(&socket, b"").unwrap();
    std::os::unix::fs::symlink(&socket, base.join("innocent")).unwrap();
    let policy = |extra: &str| {
        format!(
            "allowedBindPrefixes: [{}]\ndockerSocketPaths: [{}]\n{extra}",
            base.display(),
            socket.display()
        )
    };
    let bind = |src: &str| {
        format!("{{image: busybox:1, volumes: [{{type: Bind, source: {src}, target: /t}}]}}")
    };
    for src in ["./run/docker.sock", "./innocent", "./run", "."] {
        let refused = refusals(&base, &bind(src), &policy(""));
        assert_eq!(
            refused.len(),
            1,
            "{src} must be refused: it is or holds the socket"
        );
        assert!(
            refused[0].message.contains("Docker socket"),
            "{}",
            refused[0]
        );
    }
    // The socket file itself with allowDockerSocket; its directory never.
    assert!(refusals(
        &base,
        &bind("./innocent"),
        &policy("allowDockerSocket: true")
    )
    .is_empty());
    assert_eq!(
        refusals(&base, &bind("./run"), &policy("allowDockerSocket: true")).len(),
        1
    );
}

#[test]
fn policy_files_parse_strictly() {
    assert_eq!(Policy::parse("").unwrap(), Policy::default());
    assert_eq!(Policy::parse("{}\n").unwrap(), Policy::default());
    assert_eq!(
        Policy::parse("# only a comment\n").unwrap(),
        Policy::default()
    );
    let p =
        Policy::parse("allowedCapabilities: [cap_sys_time]\nallowedBindPrefixes: [/srv/./data/]\n")
            .unwrap();
    assert_eq!(p.allowed_capabilities, ["SYS_TIME"]);
    assert_eq!(p.allowed_bind_prefixes, ["/srv/data"]);
    for (bad, says) in [
        ("allowPrivilegd: true", "unknown field"),
        ("allowedBindPrefixes: [srv]", "absolute"),
        (
            "allowedCapabilities: [\"NET ADMIN\"]",
            "allowedCapabilities[0]",
        ),
        ("allowPrivileged: yes", "allowPrivileged"),
        ("- a\n", "invalid type"),
    ] {
        let err = Policy::parse(bad).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

#[test]
fn gate_holds_refused_resources_without_pruning_them() {
    use crate::plan::{Action, Reason};
    let dir = tempfile::tempdir().unwrap();
    let desired = desired(dir.path(), "{image: busybox:1, privileged: true}");
    let admission = Gate::default().admit(&desired);
    let web = ResourceKey::new(Kind::Container, "default", "web");
    let ok = ResourceKey::new(Kind::Container, "default", "ok");
    assert!(!admission.desired.containers.contains_key(&web));
    assert!(admission.desired.containers.contains_key(&ok));
    // `web` already runs (created when the policy allowed it) and so is missing from the
    // admitted state: the planner would prune it. Held, the plan must neither remove nor
    // change it, and still converge `ok`.
    let mut raw = Plan::default();
    let remove = |name: &str| Action::RemoveContainer {
        id: format!("id-{name}"),
        name: name.to_string(),
    };
    let pruned = raw.push(web.clone(), remove("web"), Reason::Pruned, vec![]);
    raw.push(web.clone(), remove("web-x"), Reason::Pruned, vec![pruned]);
    raw.push(ok.clone(), remove("ok-old"), Reason::Pruned, vec![]);
    let held = admission.hold(raw);
    assert!(held.actions.iter().all(|a| a.resource != web), "{held:?}");
    assert_eq!(held.actions.len(), 1);
    assert_eq!(held.actions[0].resource, ok);
    let blocked: Vec<_> = held.blocked.iter().filter(|b| b.resource == web).collect();
    assert_eq!(blocked.len(), 1);
    assert!(blocked[0].message.contains("allowPrivileged: true"));
}

#[test]
fn gate_seals_secrets_or_holds_them_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
    let desired = desired(
        dir.path(),
        "{image: busybox:1, env: [{name: PW, valueFrom: {file: ./pw}}]}",
    );
    let web = ResourceKey::new(Kind::Container, "default", "web");
    let unsealed = &desired.containers[&web].config.secret_env[0];
    assert_eq!(
        unsealed.value.expose(),
        "hunter2",
        "one trailing newline is removed"
    );
    assert!(unsealed.digest.is_empty());

    let without_key = Gate::default().admit(&desired);
    assert!(!without_key.desired.containers.contains_key(&web));
    assert!(without_key.held[0].message.contains("secret key"));

    let gate = Gate::new(Policy::default(), Some(SecretKey::from_bytes([9; 32])));
    let admitted = gate.admit(&desired);
    let config = &admitted.desired.containers[&web].config;
    assert!(config.secret_env[0].digest.starts_with("hmac-sha256:"));
    let json = crate::plan::spec_json(config, "sha256:x");
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains(&config.secret_env[0].digest));
    assert!(!format!("{config:?}").contains("hunter2"));
}

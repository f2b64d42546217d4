//! The Helm chart as Kubernetes would see it: every object rendered from charts/dockwright
//! (target/chart-render/*.yaml, written by scripts/check-chart.sh with Helm's own SDK) and every
//! object in deploy/kubernetes/dockwright.yaml deserialises into its k8s-openapi type *without
//! losing a field* (k8s-openapi ignores unknown fields, so each object is serialised back and
//! compared: a misspelt or misplaced field fails with its path). Then the wiring is checked: the
//! agent's arguments, the socket mount, RBAC, the Service, and that every non-default value in
//! charts/dockwright/ci/nondefault-values.yaml reaches the objects.
//!
//! The renders exist only after scripts/check-chart.sh ran: without them these tests say so and
//! pass, unless CI is set, where a missing render is a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::DynamicObject;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const RELEASE_NAMESPACE: &str = "dockwright";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One rendered object, typed by its kind.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a dozen objects per test: size does not matter
enum Object {
    Crd(CustomResourceDefinition),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Service(Service),
    DaemonSet(DaemonSet),
    Deployment(Deployment),
    Role(Role),
    RoleBinding(RoleBinding),
    /// A kind k8s-openapi has no type for (the ServiceMonitor), checked as a generic object.
    Other(DynamicObject),
}

impl Object {
    fn kind(&self) -> &str {
        match self {
            Object::Crd(_) => "CustomResourceDefinition",
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Service(_) => "Service",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Deployment(_) => "Deployment",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::Other(o) => o.types.as_ref().map(|t| t.kind.as_str()).unwrap_or(""),
        }
    }
}

/// The first path at which `a` and `b` differ, with both sides, or None when equal.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let sub = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(&sub, p, q),
                    (Some(p), None) => Some(format!(
                        "{sub}: {p} in the YAML is not a field of the type (dropped)"
                    )),
                    (None, Some(q)) => {
                        Some(format!("{sub}: missing in the YAML, the type adds {q}"))
                    }
                    (None, None) => None,
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} in the YAML, {b} after the round trip")),
    }
}

/// Deserialises `doc` into `T` and serialises it back: the two must be equal, so no field was
/// unknown to the type (k8s-openapi drops those silently) and none was mistyped.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> T {
    let value: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: does not deserialise into {}: {e}",
            std::any::type_name::<T>()
        )
    });
    let back = serde_json::to_value(&value).unwrap();
    if let Some(diff) = first_difference("", doc, &back) {
        panic!(
            "{what}: not a faithful {}: {diff}",
            std::any::type_name::<T>()
        );
    }
    value
}

/// Parses a multi-document YAML file and types each document by its kind.
fn load(path: &Path) -> Vec<(Value, Object)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!docs.is_empty(), "{}: no documents", path.display());
    docs.into_iter()
        .map(|doc| {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let what = format!("{}: {kind}/{name}", path.display());
            assert!(!name.is_empty(), "{what}: no metadata.name");
            let object = match kind.as_str() {
                "CustomResourceDefinition" => Object::Crd(typed(&doc, &what)),
                "Namespace" => Object::Namespace(typed(&doc, &what)),
                "ServiceAccount" => Object::ServiceAccount(typed(&doc, &what)),
                "ConfigMap" => Object::ConfigMap(typed(&doc, &what)),
                "ClusterRole" => Object::ClusterRole(typed(&doc, &what)),
                "ClusterRoleBinding" => Object::ClusterRoleBinding(typed(&doc, &what)),
                "Service" => Object::Service(typed(&doc, &what)),
                "DaemonSet" => Object::DaemonSet(typed(&doc, &what)),
                "Deployment" => Object::Deployment(typed(&doc, &what)),
                "Role" => Object::Role(typed(&doc, &what)),
                "RoleBinding" => Object::RoleBinding(typed(&doc, &what)),
                _ => {
                    let generic: DynamicObject = serde_json::from_value(doc.clone())
                        .unwrap_or_else(|e| panic!("{what}: not a Kubernetes object: {e}"));
                    let types = generic
                        .types
                        .as_ref()
                        .unwrap_or_else(|| panic!("{what}: no apiVersion/kind"));
                    assert!(
                        types.api_version.contains('/'),
                        "{what}: apiVersion {:?} has no group",
                        types.api_version
                    );
                    assert!(
                        doc.get("spec").is_some_and(Value::is_object),
                        "{what}: no spec object"
                    );
                    Object::Other(generic)
                }
            };
            (doc, object)
        })
        .collect()
}

/// The render directory, or None (with a message) when scripts/check-chart.sh has not run.
/// Under CI a missing render fails: .ci/run runs the script before the tests.
fn render(file: &str) -> Option<Vec<(Value, Object)>> {
    let path = root().join("target/chart-render").join(file);
    if path.exists() {
        return Some(load(&path));
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "{} is missing: .ci/run must run scripts/check-chart.sh before the tests",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} is missing; run scripts/check-chart.sh to render the chart",
        path.display()
    );
    None
}

fn one<'a, T>(objects: &'a [(Value, Object)], pick: impl Fn(&'a Object) -> Option<&'a T>) -> &'a T {
    one_of(objects, None, pick)
}

/// The one object `pick` selects among those of `component` (the
/// `app.kubernetes.io/component` label: `agent` or `controller`), or among all with `None`.
fn one_of<'a, T>(
    objects: &'a [(Value, Object)],
    component: Option<&str>,
    pick: impl Fn(&'a Object) -> Option<&'a T>,
) -> &'a T {
    let found: Vec<&T> = objects
        .iter()
        .filter(|(doc, _)| {
            component.is_none_or(|c| doc["metadata"]["labels"]["app.kubernetes.io/component"] == c)
        })
        .filter_map(|(_, o)| pick(o))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one object of that kind, found {}",
        found.len()
    );
    found[0]
}

fn daemonset(objects: &[(Value, Object)]) -> &DaemonSet {
    one(objects, |o| match o {
        Object::DaemonSet(d) => Some(d),
        _ => None,
    })
}

fn agent(ds: &DaemonSet) -> &Container {
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container in the agent pod");
    &pod.containers[0]
}

/// The value following `flag` in the agent's arguments.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{flag} without a value"))
        .as_str()
}

fn env_value<'a>(c: &'a Container, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    c.env
        .as_ref()
        .and_then(|e| e.iter().find(|v| v.name == name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// A typed field as JSON, for comparison with a fragment of a values file.
fn to_json<T: Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap()
}

fn values(file: &str) -> Value {
    let path = root().join("charts/dockwright").join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What any render must satisfy, whatever the values: the agent's arguments, the socket and
/// policy mounts, the Service → pod → port chain, the ServiceAccount → binding → role chain.
fn check_wiring(objects: &[(Value, Object)], v: &Value) {
    let ds = daemonset(objects);
    let c = agent(ds);
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let args = c.args.as_ref().expect("agent args");
    assert_eq!(&args[..2], ["agent", "--kubernetes"], "{args:?}");
    assert_eq!(flag(args, "--node-name"), "$(NODE_NAME)");
    let node_name = env_value(c, "NODE_NAME")
        .value_from
        .as_ref()
        .and_then(|f| f.field_ref.as_ref());
    assert_eq!(
        node_name.map(|f| f.field_path.as_str()),
        Some("spec.nodeName")
    );
    assert_eq!(flag(args, "--owner"), v["owner"].as_str().unwrap());
    assert_eq!(flag(args, "--log-format"), v["logFormat"].as_str().unwrap());
    let port = v["metrics"]["port"].as_i64().unwrap();
    assert_eq!(flag(args, "--listen"), format!("0.0.0.0:{port}"));
    let extra: Vec<&str> = v["extraArgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.ends_with(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        "extraArgs {extra:?} end {args:?}"
    );

    // The socket: its directory, read-only and away from /var/run (where the ServiceAccount
    // token is mounted), or the socket file at its own path. DOCKER_HOST names it in the pod.
    let socket = Path::new(v["docker"]["socketPath"].as_str().unwrap());
    let volumes = pod.volumes.as_ref().unwrap();
    let mounts = c.volume_mounts.as_ref().unwrap();
    let sock_vol = volumes
        .iter()
        .find(|vol| vol.name == "docker-socket")
        .expect("the docker-socket volume");
    assert!(
        sock_vol.host_path.is_some(),
        "the socket comes from the host"
    );
    // The state directory (secret key, image records): the only other hostPath, read-write,
    // named by XDG_STATE_HOME, so a restarted agent keeps its key on a read-only root.
    let state_vol = volumes
        .iter()
        .find(|vol| vol.name == "state")
        .expect("the state volume");
    let state_host = state_vol.host_path.as_ref().expect("state is a hostPath");
    assert_eq!(Some(state_host.path.as_str()), v["stateDir"].as_str());
    assert_eq!(state_host.type_.as_deref(), Some("DirectoryOrCreate"));
    let state_mount = mounts
        .iter()
        .find(|m| m.name == "state")
        .expect("state mounted");
    assert_ne!(state_mount.read_only, Some(true));
    assert_eq!(
        env_value(c, "XDG_STATE_HOME").value.as_deref(),
        Some(state_mount.mount_path.as_str())
    );
    assert_eq!(
        volumes.iter().filter(|vol| vol.host_path.is_some()).count(),
        2,
        "only the socket and the state directory come from the host"
    );
    assert_eq!(
        pod.host_network.unwrap_or(false),
        v["hostNetwork"].as_bool().unwrap()
    );
    let host_path = sock_vol.host_path.as_ref().unwrap();
    let sock_mount = mounts
        .iter()
        .find(|m| m.name == sock_vol.name)
        .expect("socket mounted");
    let docker_host = env_value(c, "DOCKER_HOST").value.as_deref().unwrap();
    let in_pod = Path::new(
        docker_host
            .strip_prefix("unix://")
            .unwrap_or_else(|| panic!("DOCKER_HOST {docker_host} is not unix://")),
    );
    if v["docker"]["mountSocketDirectory"].as_bool().unwrap() {
        assert_eq!(Path::new(&host_path.path), socket.parent().unwrap());
        assert_eq!(host_path.type_.as_deref(), Some("Directory"));
        assert_eq!(sock_mount.read_only, Some(true));
        assert_eq!(
            in_pod,
            Path::new(&sock_mount.mount_path).join(socket.file_name().unwrap())
        );
        for token in [
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "/run/secrets/kubernetes.io/serviceaccount",
        ] {
            assert!(
                !Path::new(token).starts_with(&sock_mount.mount_path),
                "the socket directory is mounted over the token's {token}"
            );
        }
    } else {
        assert_eq!(Path::new(&host_path.path), socket);
        assert_eq!(host_path.type_.as_deref(), Some("Socket"));
        assert_eq!(Path::new(&sock_mount.mount_path), socket);
        assert_eq!(in_pod, socket);
    }

    // The policy: --policy names policy.yaml in the mounted ConfigMap, which holds the value.
    let policy_vol = volumes
        .iter()
        .find(|vol| vol.config_map.is_some())
        .expect("policy volume");
    let policy_mount = mounts
        .iter()
        .find(|m| m.name == policy_vol.name)
        .expect("policy mounted");
    assert_eq!(policy_mount.read_only, Some(true));
    assert_eq!(
        flag(args, "--policy"),
        format!("{}/policy.yaml", policy_mount.mount_path)
    );
    let cm_name = &policy_vol.config_map.as_ref().unwrap().name;
    let cm = one(objects, |o| match o {
        Object::ConfigMap(cm) if cm.metadata.name.as_ref() == Some(cm_name) => Some(cm),
        _ => None,
    });
    let policy_text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("policy.yaml"))
        .expect("policy.yaml in the ConfigMap");
    let policy: Value = serde_saphyr::from_str(policy_text).unwrap();
    assert_eq!(policy, v["policy"], "the policy file is the `policy` value");
    // ... and one the agent accepts (unknown fields are errors there).
    if let Err(e) = dockwright::policy::Policy::parse(policy_text) {
        panic!("the chart's policy is not a valid agent policy: {e}\n{policy_text}");
    }

    // Read-only root filesystem: /tmp is the one writable place.
    assert!(
        mounts.iter().any(|m| m.mount_path == "/tmp"),
        "an emptyDir on /tmp"
    );

    // Service → pods → container port.
    let svc = one_of(objects, Some("agent"), |o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    });
    let spec = svc.spec.as_ref().unwrap();
    let pod_labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, val) in spec.selector.as_ref().unwrap() {
        assert_eq!(
            pod_labels.get(k),
            Some(val),
            "Service selector {k}={val} matches the agent pods"
        );
    }
    let svc_port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.name.as_deref(), Some("metrics"));
    assert_eq!(i64::from(svc_port.port), port);
    let c_port = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    assert_eq!(i64::from(c_port.container_port), port);
    for (k, val) in ds
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .as_ref()
        .unwrap()
    {
        assert_eq!(
            pod_labels.get(k),
            Some(val),
            "DaemonSet selector {k}={val} matches its pods"
        );
    }

    // ServiceAccount → ClusterRoleBinding → ClusterRole.
    let sa = one_of(objects, Some("agent"), |o| match o {
        Object::ServiceAccount(s) => Some(s),
        _ => None,
    });
    assert_eq!(pod.service_account_name, sa.metadata.name);
    let crb = one_of(objects, Some("agent"), |o| match o {
        Object::ClusterRoleBinding(b) => Some(b),
        _ => None,
    });
    let role = one_of(objects, Some("agent"), |o| match o {
        Object::ClusterRole(r) => Some(r),
        _ => None,
    });
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&crb.role_ref.name), role.metadata.name.as_ref());
    let subject = &crb.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", sa.metadata.name.as_deref().unwrap())
    );
    assert_eq!(subject.namespace, sa.metadata.namespace);

    check_controller_wiring(objects, v);

    // Standard labels on every object; namespaced objects in the release namespace.
    for (doc, object) in objects {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                labels[key].is_string(),
                "{} {}: no {key} label",
                object.kind(),
                doc["metadata"]["name"]
            );
        }
        let component = &labels["app.kubernetes.io/component"];
        assert!(
            component == "agent" || component == "controller",
            "{} {}: component {component}",
            object.kind(),
            doc["metadata"]["name"]
        );
        let namespaced = !matches!(
            object,
            Object::ClusterRole(_) | Object::ClusterRoleBinding(_)
        );
        // The Grafana dashboard ConfigMap goes where Grafana's sidecar looks, when set.
        let dashboard_ns = v["grafanaDashboard"]["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty());
        let is_dashboard = matches!(object, Object::ConfigMap(_))
            && doc["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-dashboard"));
        let want = match (namespaced, is_dashboard, dashboard_ns) {
            (false, _, _) => None,
            (true, true, Some(ns)) => Some(ns),
            (true, _, _) => Some(RELEASE_NAMESPACE),
        };
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            want,
            "{} {} namespace",
            object.kind(),
            doc["metadata"]["name"]
        );
    }
}

fn deployment(objects: &[(Value, Object)]) -> &Deployment {
    one(objects, |o| match o {
        Object::Deployment(d) => Some(d),
        _ => None,
    })
}

/// The (group/resource:verb) grants of a list of rules, with the names a rule narrows to.
fn grants(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none());
        let names = rule
            .resource_names
            .as_ref()
            .map(|n| format!("[{}]", n.join(",")))
            .unwrap_or_default();
        for group in rule.api_groups.as_ref().unwrap() {
            for resource in rule.resources.as_ref().unwrap() {
                for verb in &rule.verbs {
                    got.insert(format!("{group}/{resource}{names}:{verb}"));
                }
            }
        }
    }
    got
}

/// The placement controller: a Deployment whose pods no agent selector matches, its
/// arguments and Lease, the ServiceAccount → bindings → roles chain, its metrics Service.
fn check_controller_wiring(objects: &[(Value, Object)], v: &Value) {
    let cv = &v["controller"];
    let deploy = deployment(objects);
    let spec = deploy.spec.as_ref().unwrap();
    assert_eq!(spec.replicas.map(i64::from), cv["replicas"].as_i64());
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    let selector = spec.selector.match_labels.as_ref().unwrap();
    for (k, val) in selector {
        assert_eq!(
            pod_labels.get(k),
            Some(val),
            "Deployment selector {k}={val}"
        );
    }
    // No agent selector (DaemonSet, Service) matches a controller pod, and the other way round.
    let ds = daemonset(objects);
    let agent_selector = ds
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .as_ref()
        .unwrap();
    let agent_pod_labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(
        agent_selector
            .iter()
            .any(|(k, val)| pod_labels.get(k) != Some(val)),
        "the DaemonSet's selector matches the controller pods"
    );
    assert!(
        selector
            .iter()
            .any(|(k, val)| agent_pod_labels.get(k) != Some(val)),
        "the Deployment's selector matches the agent pods"
    );

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let args = c.args.as_ref().unwrap();
    assert_eq!(args[0], "controller", "{args:?}");
    let port = cv["metrics"]["port"].as_i64().unwrap();
    assert_eq!(flag(args, "--listen"), format!("0.0.0.0:{port}"));
    assert_eq!(flag(args, "--log-format"), v["logFormat"].as_str().unwrap());
    assert_eq!(
        flag(args, "--lease-duration"),
        cv["leaseDuration"].as_str().unwrap()
    );
    assert_eq!(flag(args, "--concurrency"), cv["concurrency"].to_string());
    let extra: Vec<String> = cv["extraArgs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(
        args.ends_with(&extra),
        "controller.extraArgs {extra:?} end {args:?}"
    );
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let field = env_value(c, name)
            .value_from
            .as_ref()
            .and_then(|f| f.field_ref.as_ref());
        assert_eq!(field.map(|f| f.field_path.as_str()), Some(path), "{name}");
    }
    assert!(
        pod.volumes.is_none(),
        "the controller mounts nothing: {:?}",
        pod.volumes
    );
    assert_eq!(
        pod.host_network.unwrap_or(false),
        v["hostNetwork"].as_bool().unwrap()
    );
    let c_port = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    assert_eq!(i64::from(c_port.container_port), port);

    // ServiceAccount → ClusterRoleBinding → ClusterRole, and → RoleBinding → Role (the Lease).
    let sa = one_of(objects, Some("controller"), |o| match o {
        Object::ServiceAccount(s) => Some(s),
        _ => None,
    });
    assert_eq!(pod.service_account_name, sa.metadata.name);
    let agent_sa = one_of(objects, Some("agent"), |o| match o {
        Object::ServiceAccount(s) => Some(s),
        _ => None,
    });
    assert_ne!(
        agent_sa.metadata.name, sa.metadata.name,
        "one identity each"
    );
    let crb = one_of(objects, Some("controller"), |o| match o {
        Object::ClusterRoleBinding(b) => Some(b),
        _ => None,
    });
    let role = one_of(objects, Some("controller"), |o| match o {
        Object::ClusterRole(r) => Some(r),
        _ => None,
    });
    assert_eq!(Some(&crb.role_ref.name), role.metadata.name.as_ref());
    let subject = &crb.subjects.as_ref().unwrap()[0];
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    assert_eq!(subject.namespace, sa.metadata.namespace);
    let lease_role = one(objects, |o| match o {
        Object::Role(r) => Some(r),
        _ => None,
    });
    let lease_binding = one(objects, |o| match o {
        Object::RoleBinding(b) => Some(b),
        _ => None,
    });
    assert_eq!(
        Some(&lease_binding.role_ref.name),
        lease_role.metadata.name.as_ref()
    );
    assert_eq!(lease_binding.role_ref.kind, "Role");
    assert_eq!(
        Some(&lease_binding.subjects.as_ref().unwrap()[0].name),
        sa.metadata.name.as_ref()
    );
    let lease = flag(args, "--lease-name");
    assert_eq!(
        grants(lease_role.rules.as_ref().unwrap()),
        BTreeSet::from([
            "coordination.k8s.io/leases:create".to_string(),
            format!("coordination.k8s.io/leases[{lease}]:get"),
            format!("coordination.k8s.io/leases[{lease}]:update"),
        ]),
        "the controller may touch its own Lease only"
    );

    if v["metrics"]["service"]["enabled"].as_bool().unwrap() {
        let svc = one_of(objects, Some("controller"), |o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        });
        let spec = svc.spec.as_ref().unwrap();
        for (k, val) in spec.selector.as_ref().unwrap() {
            assert_eq!(
                pod_labels.get(k),
                Some(val),
                "controller Service selector {k}={val}"
            );
        }
        assert_eq!(i64::from(spec.ports.as_ref().unwrap()[0].port), port);
    }
}

/// Every file in target/chart-render, whatever it holds, is made of faithful Kubernetes objects.
#[test]
fn every_rendered_object_deserialises() {
    if render("default.yaml").is_none() {
        return;
    }
    let dir = root().join("target/chart-render");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let objects = load(&path);
            eprintln!("{}: {} objects", path.display(), objects.len());
            files += 1;
        }
    }
    assert!(
        files >= 2,
        "default.yaml and nondefault.yaml in {}",
        dir.display()
    );
}

#[test]
fn default_render_runs_the_agent_safely() {
    let Some(objects) = render("default.yaml") else {
        return;
    };
    let v = values("values.yaml");
    check_wiring(&objects, &v);
    let c = agent(daemonset(&objects));
    assert_eq!(flag(c.args.as_ref().unwrap(), "--log-format"), "json");
    assert_eq!(
        env_value(c, "DOCKER_HOST").value.as_deref(),
        Some("unix:///run/dockwright/docker-host/docker.sock")
    );
    let pod = daemonset(&objects)
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let host_paths: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.as_str()))
        .collect();
    assert_eq!(
        host_paths,
        ["/var/run", "/var/lib/dockwright"],
        "the socket's directory and the agent's state directory from the node"
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.run_as_user),
        Some(0)
    );
    assert_ne!(pod.host_network, Some(true));
    assert_ne!(pod.host_pid, Some(true));
    assert!(
        objects.iter().all(|(_, o)| !matches!(o, Object::Other(_))),
        "no ServiceMonitor by default"
    );
}

#[test]
fn cluster_role_is_least_privilege() {
    let Some(objects) = render("default.yaml") else {
        return;
    };
    let role = one_of(&objects, Some("agent"), |o| match o {
        Object::ClusterRole(r) => Some(r),
        _ => None,
    });
    let got = grants(role.rules.as_ref().unwrap());
    let mut want = BTreeSet::new();
    for verb in ["get", "list", "watch", "patch", "update"] {
        want.insert(format!("dockwright.dev/placements:{verb}"));
    }
    for verb in ["get", "patch", "update"] {
        want.insert(format!("dockwright.dev/placements/status:{verb}"));
    }
    want.insert("/secrets:get".to_string());
    for group in ["", "events.k8s.io"] {
        for verb in ["create", "patch"] {
            want.insert(format!("{group}/events:{verb}"));
        }
    }
    assert_eq!(
        got, want,
        "ClusterRole grants exactly what the agent uses: its Placements, never the parents or Nodes"
    );
}

#[test]
fn controller_cluster_role_is_least_privilege() {
    let Some(objects) = render("default.yaml") else {
        return;
    };
    let role = one_of(&objects, Some("controller"), |o| match o {
        Object::ClusterRole(r) => Some(r),
        _ => None,
    });
    let mut want = BTreeSet::new();
    for r in ["images", "containers"] {
        for verb in ["get", "list", "watch", "patch"] {
            want.insert(format!("dockwright.dev/{r}:{verb}"));
        }
        for verb in ["get", "patch"] {
            want.insert(format!("dockwright.dev/{r}/status:{verb}"));
        }
        want.insert(format!("dockwright.dev/{r}/finalizers:update"));
    }
    for verb in ["get", "list", "watch", "create", "patch", "delete"] {
        want.insert(format!("dockwright.dev/placements:{verb}"));
    }
    for verb in ["get", "list", "watch"] {
        want.insert(format!("/nodes:{verb}"));
    }
    assert_eq!(
        grants(role.rules.as_ref().unwrap()),
        want,
        "the controller's ClusterRole grants exactly what it uses (no Secrets, no Events)"
    );
}

#[test]
fn nondefault_values_reach_the_objects() {
    let Some(objects) = render("nondefault.yaml") else {
        return;
    };
    let v = values("ci/nondefault-values.yaml");
    check_wiring(&objects, &v);
    let ds = daemonset(&objects);
    let c = agent(ds);
    let template = &ds.spec.as_ref().unwrap().template;
    let pod = template.spec.as_ref().unwrap();

    assert_eq!(
        c.image.as_deref(),
        Some(
            format!(
                "{}:{}",
                v["image"]["repository"].as_str().unwrap(),
                v["image"]["tag"].as_str().unwrap()
            )
            .as_str()
        )
    );
    assert_eq!(
        c.image_pull_policy.as_deref(),
        v["image"]["pullPolicy"].as_str()
    );
    assert_eq!(to_json(&pod.image_pull_secrets), v["imagePullSecrets"]);
    assert_eq!(to_json(&pod.tolerations), v["tolerations"]);
    assert_eq!(to_json(&pod.node_selector), v["nodeSelector"]);
    assert_eq!(to_json(&pod.affinity), v["affinity"]);
    assert_eq!(to_json(&c.resources), v["resources"]);
    assert_eq!(to_json(&pod.security_context), v["podSecurityContext"]);
    assert_eq!(
        pod.priority_class_name.as_deref(),
        v["priorityClassName"].as_str()
    );
    assert_eq!(
        pod.termination_grace_period_seconds,
        v["terminationGracePeriodSeconds"].as_i64()
    );
    assert_eq!(
        to_json(&ds.spec.as_ref().unwrap().update_strategy),
        v["updateStrategy"]
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        v["serviceAccount"]["name"].as_str()
    );
    let env = c.env.as_ref().unwrap();
    for extra in v["extraEnv"].as_array().unwrap() {
        assert!(
            env.iter()
                .any(|e| serde_json::to_value(e).unwrap() == *extra),
            "extraEnv {extra} in {env:?}"
        );
    }
    let meta = template.metadata.as_ref().unwrap();
    for (k, val) in v["podLabels"].as_object().unwrap() {
        assert_eq!(
            meta.labels.as_ref().unwrap().get(k).map(String::as_str),
            val.as_str(),
            "pod label {k}"
        );
    }
    for (k, val) in v["podAnnotations"].as_object().unwrap() {
        assert_eq!(
            meta.annotations
                .as_ref()
                .unwrap()
                .get(k)
                .map(String::as_str),
            val.as_str(),
            "pod annotation {k}"
        );
    }
    let svc = one_of(&objects, Some("agent"), |o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    });
    assert_eq!(
        to_json(&svc.metadata.annotations),
        v["metrics"]["service"]["annotations"]
    );

    // The ServiceMonitor scrapes the metrics Service's `metrics` port at the configured interval.
    let (doc, _) = objects
        .iter()
        .find(|(_, o)| o.kind() == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
    let endpoint = &doc["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["interval"], v["serviceMonitor"]["interval"]);
    assert_eq!(
        endpoint["scrapeTimeout"],
        v["serviceMonitor"]["scrapeTimeout"]
    );
    assert_eq!(
        doc["metadata"]["labels"]["release"],
        v["serviceMonitor"]["labels"]["release"]
    );
    let controller_svc = one_of(&objects, Some("controller"), |o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    });
    for svc in [svc, controller_svc] {
        let svc_labels = svc.metadata.labels.as_ref().unwrap();
        for (k, val) in doc["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(
                svc_labels.get(k).map(String::as_str),
                val.as_str(),
                "ServiceMonitor selects {:?} by {k}",
                svc.metadata.name
            );
        }
    }

    // The controller's own values reach its Deployment; the shared ones too.
    let cv = &v["controller"];
    let cpod = deployment(&objects)
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let cc = &cpod.containers[0];
    assert_eq!(to_json(&cpod.tolerations), cv["tolerations"]);
    assert_eq!(to_json(&cpod.node_selector), cv["nodeSelector"]);
    assert_eq!(to_json(&cpod.affinity), cv["affinity"]);
    assert_eq!(to_json(&cc.resources), cv["resources"]);
    assert_eq!(to_json(&cpod.security_context), cv["podSecurityContext"]);
    assert_eq!(
        cpod.priority_class_name.as_deref(),
        cv["priorityClassName"].as_str()
    );
    assert_eq!(
        cpod.service_account_name.as_deref(),
        cv["serviceAccountName"].as_str()
    );
    assert_eq!(cc.image, c.image);
    assert_eq!(to_json(&cpod.image_pull_secrets), v["imagePullSecrets"]);
    for extra in v["extraEnv"].as_array().unwrap() {
        assert!(
            cc.env
                .iter()
                .flatten()
                .any(|e| serde_json::to_value(e).unwrap() == *extra),
            "extraEnv {extra} reaches the controller"
        );
    }
    assert_eq!(
        doc["spec"]["namespaceSelector"]["matchNames"],
        json!([RELEASE_NAMESPACE])
    );
}

/// deploy/kubernetes/dockwright.yaml (checked in, so this runs everywhere): the generated CRDs
/// first, then the Namespace, then the chart's objects, all faithful Kubernetes objects.
#[test]
fn deploy_manifests_are_crds_namespace_then_the_chart() {
    let objects = load(&root().join("deploy/kubernetes/dockwright.yaml"));
    let kinds: Vec<&str> = objects.iter().map(|(_, o)| o.kind()).collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "ConfigMap",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "DaemonSet",
            "Deployment"
        ],
    );
    // The CRDs are the generated ones, document for document.
    let generated: Vec<Value> = serde_saphyr::from_multiple(
        &std::fs::read_to_string(root().join("crds/dockwright.yaml")).unwrap(),
    )
    .unwrap();
    let shipped: Vec<&Value> = objects
        .iter()
        .filter(|(_, o)| matches!(o, Object::Crd(_)))
        .map(|(d, _)| d)
        .collect();
    assert_eq!(
        shipped,
        generated.iter().collect::<Vec<_>>(),
        "deploy/ CRDs are crds/dockwright.yaml"
    );
    let names: BTreeSet<&str> = objects
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Crd(c) => c.metadata.name.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "images.dockwright.dev",
            "containers.dockwright.dev",
            "networks.dockwright.dev",
            "volumes.dockwright.dev",
            "placements.dockwright.dev"
        ])
    );

    // The Namespace allows hostPath (the socket): Pod Security "privileged".
    let ns = one(&objects, |o| match o {
        Object::Namespace(n) => Some(n),
        _ => None,
    });
    assert_eq!(ns.metadata.name.as_deref(), Some(RELEASE_NAMESPACE));
    let ns_labels = ns.metadata.labels.as_ref().unwrap();
    assert_eq!(
        ns_labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged")
    );

    let rest: Vec<(Value, Object)> = objects
        .into_iter()
        .filter(|(_, o)| !matches!(o, Object::Crd(_) | Object::Namespace(_)))
        .collect();
    check_wiring(&rest, &values("values.yaml"));
}

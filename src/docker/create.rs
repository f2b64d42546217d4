//! Maps a planned [`CreateSpec`] to bollard's create body: one place where each
//! [`ContainerConfig`] field meets its Docker name. Pure, no I/O. Only fields that an API-1.41
//! daemon accepts are ever set (no `StartInterval`, no per-endpoint fields newer than 1.41).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HostConfig, Mount as DockerMount,
    MountTmpfsOptions, MountType, NetworkingConfig, PortBinding as DockerPortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::desired::{ContainerConfig, Mount};
use crate::plan::CreateSpec;

/// The body of `POST /containers/create?name=<spec.name>`.
///
/// `Image` is the reference in Docker's short form, so `docker ps` shows what the manifest
/// says. The hash covers the image ID observed when planning; should the tag move between that
/// observation and this create, the container's hash label names the old ID, which no longer
/// matches the reference, so the next pass recreates it on the new image: self-correcting,
/// and cheaper than an extra inspect per create. `image_id` is kept for callers that check the
/// create is not deferred.
pub fn create_body(spec: &CreateSpec, image_id: &str) -> ContainerCreateBody {
    debug_assert!(
        !image_id.is_empty(),
        "deferred creates never reach the daemon"
    );
    let c: &ContainerConfig = &spec.config;
    let exposed: Vec<String> = dedup(
        c.ports
            .iter()
            .map(|p| port_key(p.container_port, &p.protocol)),
    );
    ContainerCreateBody {
        image: Some(crate::reference::familiar(&spec.config.image)),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: environment(c),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        hostname: c.hostname.clone(),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            // StartInterval is API 1.44+: never sent.
            start_interval: None,
        }),
        stop_timeout: c.stop_timeout.map(i64::from),
        host_config: Some(host_config(c)),
        networking_config: networking_config(c),
        ..Default::default()
    }
}

fn host_config(c: &ContainerConfig) -> HostConfig {
    let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    for p in c
        .ports
        .iter()
        .filter(|p| p.host_port.is_some() || p.host_ip.is_some())
    {
        bindings
            .entry(port_key(p.container_port, &p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(DockerPortBinding {
                host_ip: Some(p.host_ip.clone().unwrap_or_default()),
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    let mounts: Vec<DockerMount> = c.mounts.iter().map(mount).collect();
    HostConfig {
        network_mode: Some(c.network.clone()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        restart_policy: Some(restart_policy(c)),
        memory: c.memory_bytes,
        nano_cpus: c.nano_cpus,
        // Only what the policy admitted reaches here (see crate::policy); unset means
        // Docker's defaults, so nothing is sent.
        privileged: c.privileged.then_some(true),
        pid_mode: c.host_pid.then(|| "host".to_string()),
        ipc_mode: c.host_ipc.then(|| "host".to_string()),
        cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
        cap_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
        devices: (!c.devices.is_empty()).then(|| {
            c.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(d.container_path.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// `Env`: the plain variables, then the secret ones with their values. This request is the
/// only place a secret value leaves dockwright (the container needs it; the daemon keeps it
/// in the container's config, readable by whoever may inspect containers).
fn environment(c: &ContainerConfig) -> Option<Vec<String>> {
    let env: Vec<String> = c
        .env
        .iter()
        .cloned()
        .chain(
            c.secret_env
                .iter()
                .map(|s| format!("{}={}", s.name, s.value.expose())),
        )
        .collect();
    (!env.is_empty()).then_some(env)
}

fn restart_policy(c: &ContainerConfig) -> RestartPolicy {
    let name = match c.restart_policy.as_str() {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    let maximum_retry_count = match name {
        RestartPolicyNameEnum::ON_FAILURE => c.max_restarts.map(i64::from),
        _ => None,
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count,
    }
}

fn mount(m: &Mount) -> DockerMount {
    match m {
        Mount::Volume {
            source,
            target,
            read_only,
        } => DockerMount {
            typ: Some(MountType::VOLUME),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..Default::default()
        },
        Mount::Bind {
            source,
            target,
            read_only,
        } => DockerMount {
            typ: Some(MountType::BIND),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            ..Default::default()
        },
        Mount::Tmpfs { target, size_bytes } => DockerMount {
            typ: Some(MountType::TMPFS),
            target: Some(target.clone()),
            tmpfs_options: size_bytes.map(|size| MountTmpfsOptions {
                size_bytes: Some(size),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// Aliases only work on user-defined networks; the default bridge, `host`, `none` and
/// `container:` modes get no endpoint configuration.
fn networking_config(c: &ContainerConfig) -> Option<NetworkingConfig> {
    if !c.uses_named_network() {
        return None;
    }
    let endpoint = super::objects::endpoint_settings(&c.network_aliases, c.ipv4_address.as_deref());
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(c.network.clone(), endpoint)])),
    })
}

fn port_key(port: u16, protocol: &str) -> String {
    let protocol = if protocol.is_empty() { "tcp" } else { protocol };
    format!("{port}/{protocol}")
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::desired::{Health, PortBinding};

    fn spec(config: ContainerConfig) -> CreateSpec {
        CreateSpec {
            name: "web".into(),
            replica: 0,
            config: Arc::new(config),
            image_id: Some("sha256:abc".into()),
            labels: BTreeMap::from([("dockwright.dev/owner".into(), "t".into())]),
            start: true,
        }
    }

    fn full_config() -> ContainerConfig {
        ContainerConfig {
            image: "docker.io/library/busybox:latest".into(),
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "sleep 1".into()]),
            env: vec!["A=1".into(), "B=two".into()],
            working_dir: Some("/work".into()),
            user: Some("1000:1000".into()),
            hostname: Some("box".into()),
            ports: vec![
                PortBinding {
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: None,
                    host_port: None,
                },
                PortBinding {
                    container_port: 8080,
                    protocol: "tcp".into(),
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(3000),
                },
                PortBinding {
                    container_port: 8080,
                    protocol: "tcp".into(),
                    host_ip: None,
                    host_port: Some(3001),
                },
            ],
            mounts: vec![
                Mount::Volume {
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                Mount::Bind {
                    source: "/etc/hosts".into(),
                    target: "/h".into(),
                    read_only: true,
                },
                Mount::Tmpfs {
                    target: "/tmp/x".into(),
                    size_bytes: Some(1 << 20),
                },
            ],
            network: "front".into(),
            network_aliases: vec!["api".into()],
            restart_policy: "on-failure".into(),
            max_restarts: Some(3),
            healthcheck: Some(Health {
                test: vec!["CMD".into(), "true".into()],
                interval_ns: Some(1_000_000_000),
                timeout_ns: Some(2_000_000_000),
                retries: Some(3),
                start_period_ns: Some(500_000_000),
            }),
            memory_bytes: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            stop_timeout: Some(7),
            privileged: true,
            host_pid: true,
            host_ipc: true,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["ALL".into()],
            devices: vec![crate::desired::Device {
                host_path: "/dev/fuse".into(),
                container_path: "/dev/fuse".into(),
                permissions: "rw".into(),
            }],
            secret_env: vec![crate::desired::SecretEnv {
                name: "PW".into(),
                digest: "hmac-sha256:00".into(),
                value: crate::secrets::SecretValue::new("s3cret"),
                source: crate::secrets::SecretSource::File,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_field_lands_in_its_docker_place() {
        let body = serde_json::to_value(create_body(&spec(full_config()), "sha256:abc")).unwrap();
        assert_eq!(body["Image"], "busybox:latest");
        assert_eq!(body["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(body["Cmd"], json!(["-c", "sleep 1"]));
        assert_eq!(body["Env"], json!(["A=1", "B=two", "PW=s3cret"]));
        assert_eq!(body["WorkingDir"], "/work");
        assert_eq!(body["User"], "1000:1000");
        assert_eq!(body["Hostname"], "box");
        assert_eq!(body["Labels"], json!({"dockwright.dev/owner": "t"}));
        assert_eq!(body["ExposedPorts"], json!({"53/udp": {}, "8080/tcp": {}}));
        assert_eq!(body["StopTimeout"], 7);
        assert_eq!(
            body["Healthcheck"],
            json!({"Test": ["CMD", "true"], "Interval": 1_000_000_000i64, "Timeout": 2_000_000_000i64, "Retries": 3, "StartPeriod": 500_000_000})
        );
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], "front");
        assert_eq!(
            host["PortBindings"],
            json!({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "3000"}, {"HostIp": "", "HostPort": "3001"}]})
        );
        assert_eq!(
            host["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(host["Memory"], 64 << 20);
        assert_eq!(host["Privileged"], true);
        assert_eq!(host["PidMode"], "host");
        assert_eq!(host["IpcMode"], "host");
        assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(host["CapDrop"], json!(["ALL"]));
        assert_eq!(
            host["Devices"],
            json!([{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rw"}])
        );
        assert_eq!(host["NanoCpus"], 500_000_000);
        assert_eq!(
            host["Mounts"],
            json!([
                {"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": false},
                {"Type": "bind", "Source": "/etc/hosts", "Target": "/h", "ReadOnly": true},
                {"Type": "tmpfs", "Target": "/tmp/x", "TmpfsOptions": {"SizeBytes": 1 << 20}},
            ])
        );
        assert_eq!(
            body["NetworkingConfig"],
            json!({"EndpointsConfig": {"front": {"Aliases": ["api"]}}})
        );
    }

    #[test]
    fn minimal_config_sends_only_what_is_set() {
        let config = ContainerConfig {
            network: "bridge".into(),
            restart_policy: "no".into(),
            ..Default::default()
        };
        let body = serde_json::to_value(create_body(&spec(config), "sha256:abc")).unwrap();
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["HostConfig", "Image", "Labels"]);
        assert_eq!(
            body["HostConfig"],
            json!({"NetworkMode": "bridge", "RestartPolicy": {"Name": "no"}})
        );
    }

    /// Fields introduced after API 1.41 that must never be sent to an old daemon.
    #[test]
    fn no_field_newer_than_api_1_41() {
        let body = serde_json::to_value(create_body(&spec(full_config()), "sha256:abc")).unwrap();
        let newer = [
            "StartInterval",
            "GwPriority",
            "DNSNames",
            "Annotations",
            "ImageOptions",
            "Subpath",
            "Platform",
        ];
        fn walk(v: &Value, newer: &[&str], path: &str) {
            match v {
                Value::Object(map) => {
                    for (k, child) in map {
                        assert!(
                            !newer.contains(&k.as_str()),
                            "{path}.{k} is newer than API 1.41"
                        );
                        walk(child, newer, &format!("{path}.{k}"));
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, newer, path)),
                _ => {}
            }
        }
        walk(&body, &newer, "");
    }
}

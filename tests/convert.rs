//! `dockwright convert` over the Compose corpus in `tests/compose/` and small projects written
//! by the tests (networks and volumes, profiles, secrets and configs, extends, include): exact
//! specs parsed back from the produced YAML, the warnings for what cannot be expressed, errors
//! that name the field, and every produced document accepted by the file source. The side by
//! side runs against the real `docker-compose` (Debian's 1.29) live at the end (skipped when
//! the tool is missing): the same file brought up by both, the containers compared field by
//! field.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dockwright::api::{
    Capabilities, Container, ContainerSpec, Dependency, DependencyCondition, DeviceMapping, EnvVar,
    HealthCheck, PortSpec, Protocol, PullPolicy, ResourceLimits, Resources, RestartPolicy,
    RolloutStrategy, RolloutStrategyType, VolumeMount, VolumeType,
};
use dockwright::convert::{convert_with, Conversion, ConvertError, ConvertOptions, Warning};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compose")
        .join(name)
}

/// The variables every corpus conversion sees instead of the process environment.
fn test_env() -> BTreeMap<String, String> {
    [
        ("HOME", "/home/tester"),
        ("FROM_SHELL", "shell-value"),
        ("FROM_ENV", "env"),
        ("OVERRIDDEN", "from-env"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn convert_in(dir: &Path, text: &str) -> Result<Conversion, ConvertError> {
    convert_with(
        text,
        &ConvertOptions {
            file_label: "docker-compose.yml".to_string(),
            base_dir: dir.to_path_buf(),
            environment: Some(test_env()),
            ..ConvertOptions::default()
        },
    )
}

/// Converts `tests/compose/<name>/docker-compose.yml`.
fn convert_corpus(name: &str) -> Conversion {
    let dir = corpus(name);
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    convert_in(&dir, &text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The containers of a conversion, parsed back from the YAML it produced.
fn containers(c: &Conversion) -> Vec<Container> {
    c.documents
        .iter()
        .filter(|(file, _)| !is_object_file(file))
        .map(|(file, yaml)| {
            // A service with `build` has its `Image` first, then the `Container`.
            let last = yaml.rsplit("\n---\n").next().unwrap();
            let container: Container = serde_saphyr::from_str(last)
                .unwrap_or_else(|e| panic!("{file} does not parse back: {e}\n{yaml}"));
            assert_eq!(
                format!("{}.yaml", container.metadata.name.as_deref().unwrap()),
                *file
            );
            container
        })
        .collect()
}

/// A `Network` or `Volume` document's file.
fn is_object_file(file: &str) -> bool {
    file.ends_with(".network.yaml") || file.ends_with(".volume.yaml")
}

/// The `Network` and `Volume` documents, by file name.
fn object_files(c: &Conversion) -> Vec<&str> {
    c.documents
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| is_object_file(f))
        .collect()
}

fn document<'a>(c: &'a Conversion, file: &str) -> &'a str {
    &c.documents
        .iter()
        .find(|(f, _)| f == file)
        .unwrap_or_else(|| {
            panic!(
                "no {file} in {:?}",
                c.documents.iter().map(|d| &d.0).collect::<Vec<_>>()
            )
        })
        .1
}

/// The `Network` of a `<name>.network.yaml` document.
fn network_of(c: &Conversion, name: &str) -> dockwright::api::Network {
    let file = format!("{name}.network.yaml");
    serde_saphyr::from_str(document(c, &file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The `Volume` of a `<name>.volume.yaml` document.
fn volume_of(c: &Conversion, name: &str) -> dockwright::api::Volume {
    let file = format!("{name}.volume.yaml");
    serde_saphyr::from_str(document(c, &file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The `Image` a service's file holds before its `Container` (services with `build`).
fn image_of(c: &Conversion, file: &str) -> dockwright::api::Image {
    let yaml = &c
        .documents
        .iter()
        .find(|(f, _)| f == file)
        .unwrap_or_else(|| panic!("no {file}"))
        .1;
    let (first, _) = yaml
        .split_once("\n---\n")
        .unwrap_or_else(|| panic!("no Image in {file}:\n{yaml}"));
    serde_saphyr::from_str(first).unwrap_or_else(|e| panic!("{file}: {e}\n{yaml}"))
}

fn spec_of<'a>(containers: &'a [Container], name: &str) -> &'a ContainerSpec {
    &containers
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
        .spec
}

fn names(containers: &[Container]) -> Vec<&str> {
    containers
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap())
        .collect()
}

fn warnings(c: &Conversion) -> Vec<String> {
    c.warnings.iter().map(Warning::to_string).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(n, v)| EnvVar {
            name: n.to_string(),
            value: v.to_string(),
            value_from: None,
        })
        .collect()
}

fn port(container: u16, host: Option<u16>, ip: Option<&str>, protocol: Protocol) -> PortSpec {
    PortSpec {
        container_port: container,
        host_port: host,
        host_ip: ip.map(str::to_string),
        protocol,
    }
}

fn mount(type_: VolumeType, source: Option<&str>, target: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        type_,
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        size_limit: None,
    }
}

fn tmpfs(target: &str, size: Option<&str>) -> VolumeMount {
    VolumeMount {
        size_limit: size.map(str::to_string),
        ..mount(VolumeType::Tmpfs, None, target, false)
    }
}

fn attach(name: &str, aliases: &[&str], ipv4: Option<&str>) -> dockwright::api::NetworkAttachment {
    dockwright::api::NetworkAttachment {
        name: name.to_string(),
        aliases: strings(aliases),
        ipv4_address: ipv4.map(str::to_string),
    }
}

fn dep(name: &str, condition: DependencyCondition) -> Dependency {
    Dependency {
        name: name.to_string(),
        condition,
    }
}

fn path_in(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

/// Every document is accepted by the file source, as `dockwright apply -f` would read it.
fn assert_documents_parse(c: &Conversion) {
    for (file, yaml) in &c.documents {
        let loaded = dockwright::source::parse_str(yaml, Path::new(file))
            .unwrap_or_else(|e| panic!("{file} rejected by the file source: {e}\n{yaml}"));
        // One Container, after the Image it builds when the service has `build`; or one
        // Network or Volume.
        let builds = yaml.contains("\nkind: Image\n");
        assert_eq!(loaded.len(), 1 + usize::from(builds), "{file}");
        let kind = if file.ends_with(".network.yaml") {
            "Network"
        } else if file.ends_with(".volume.yaml") {
            "Volume"
        } else {
            "Container"
        };
        assert!(
            yaml.contains(&format!("\nkind: {kind}\n")),
            "{file}:\n{yaml}"
        );
    }
}

/// Writes the documents to a directory (what `convert -o DIR` does) and loads them all,
/// cross-resource checks included.
fn load_documents(c: &Conversion) -> Result<dockwright::desired::DesiredState, String> {
    let dir = tempfile::tempdir().unwrap();
    for (file, yaml) in &c.documents {
        std::fs::write(dir.path().join(file), yaml).unwrap();
    }
    dockwright::source::load_paths(&[dir.path().to_path_buf()]).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

#[test]
fn webapp_converts_every_mapped_field() {
    let c = convert_corpus("webapp");
    let dir = corpus("webapp");
    let all = containers(&c);
    assert_eq!(
        names(&all),
        ["web", "db", "migrate", "cache-warmer", "worker"],
        "one resource per service, in file order"
    );

    let web = ContainerSpec {
        image: "dockwright-test/busybox:latest".into(),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        replicas: 1,
        command: Some(strings(&["httpd", "-f", "-p", "8080", "-h", "/www"])),
        // env_file first, `environment` overrides in place (MODE), .env feeds interpolation.
        env: env(&[
            ("CACHE_SIZE", "128"),
            ("GREETING", "hello, world"),
            ("MODE", "staging"),
            ("LITERAL", "$NOT_EXPANDED"),
            ("API_URL", "http://api:9000/v1"),
            ("EMPTY", ""),
            ("FROM_SHELL", "shell-value"),
        ]),
        working_dir: Some("/www".into()),
        user: Some("1000:1000".into()),
        hostname: Some("shop-web".into()),
        labels: BTreeMap::from([
            ("com.example.team".to_string(), "shop".to_string()),
            ("com.example.tier".to_string(), "frontend".to_string()),
        ]),
        ports: vec![
            port(8080, Some(8081), None, Protocol::Tcp),
            port(8443, Some(8443), Some("127.0.0.1"), Protocol::Tcp),
        ],
        volumes: vec![
            mount(VolumeType::Bind, Some(&path_in(&dir, "html")), "/www", true),
            mount(
                VolumeType::Bind,
                Some(&path_in(&dir, "config")),
                "/etc/shop",
                true,
            ),
            mount(
                VolumeType::Volume,
                Some("shop-cache"),
                "/var/cache/shop",
                false,
            ),
        ],
        network: Some("shop-front".into()),
        network_aliases: strings(&["web", "www", "shop"]),
        restart_policy: RestartPolicy::Always,
        healthcheck: Some(HealthCheck {
            command: None,
            shell: Some("wget -q -O /dev/null http://localhost:8080/ || exit 1".into()),
            interval_seconds: Some(90),
            timeout_seconds: Some(10),
            retries: Some(3),
            start_period_seconds: Some(40),
        }),
        resources: Some(Resources {
            limits: ResourceLimits {
                cpu: Some("0.5".into()),
                memory: Some("512Mi".into()),
            },
        }),
        depends_on: vec![
            dep("db", DependencyCondition::Healthy),
            dep("migrate", DependencyCondition::Completed),
            dep("cache-warmer", DependencyCondition::Started),
        ],
        stop_grace_period_seconds: Some(60),
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "web"), web);

    let db = ContainerSpec {
        image: "dockwright-test/busybox:1.36".into(),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        replicas: 1,
        entrypoint: Some(strings(&["/bin/sh", "-c"])),
        command: Some(strings(&["mkdir -p /data && exec nc -lk -p 5432 -e cat"])),
        env: env(&[
            ("POSTGRES_DB", "shop"),
            ("POSTGRES_PASSWORD", "from-dotenv"),
            ("PORT", "5432"),
            ("DEBUG", "false"),
        ]),
        ports: vec![port(5432, None, None, Protocol::Tcp)],
        volumes: vec![mount(
            VolumeType::Volume,
            Some("shop-database"),
            "/data",
            false,
        )],
        network: Some("shop-front".into()),
        network_aliases: strings(&["db"]),
        restart_policy: RestartPolicy::Always,
        healthcheck: Some(HealthCheck {
            command: Some(strings(&["nc", "-z", "localhost", "5432"])),
            shell: None,
            interval_seconds: Some(5),
            timeout_seconds: Some(3),
            retries: Some(10),
            start_period_seconds: None,
        }),
        resources: Some(Resources {
            limits: ResourceLimits {
                cpu: Some("1.5".into()),
                memory: Some("1Gi".into()),
            },
        }),
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "db"), db);

    let migrate = ContainerSpec {
        image: "dockwright-test/busybox:latest".into(),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        replicas: 1,
        command: Some(strings(&["sh", "-c", "echo migrating && sleep 1"])),
        network: Some("shop-front".into()),
        network_aliases: strings(&["migrate"]),
        restart_policy: RestartPolicy::Never,
        depends_on: vec![dep("db", DependencyCondition::Started)],
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "migrate"), migrate);

    let warmer = ContainerSpec {
        image: "dockwright-test/busybox:latest".into(),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        replicas: 1,
        entrypoint: Some(strings(&[
            "sh",
            "-c",
            "while true; do echo warm; sleep 60; done",
        ])),
        labels: BTreeMap::from([
            ("com.example.flag".to_string(), String::new()),
            ("com.example.tier".to_string(), "backend".to_string()),
        ]),
        network: Some("bridge".into()),
        restart_policy: RestartPolicy::OnFailure,
        max_restarts: Some(5),
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "cache-warmer"), warmer);

    let worker = ContainerSpec {
        image: "dockwright-test/busybox:latest".into(),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        replicas: 3,
        command: Some(strings(&["sleep", "3600"])),
        volumes: vec![tmpfs("/tmp", Some("64Mi"))],
        network: Some("shop-default".into()),
        network_aliases: strings(&["worker"]),
        restart_policy: RestartPolicy::OnFailure,
        max_restarts: Some(2),
        depends_on: vec![dep("db", DependencyCondition::Started)],
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "worker"), worker);

    assert_eq!(
        warnings(&c),
        [
            "services.web.logging: not supported by dockwright yet; dropped",
            "services.db.environment.UNSET_VAR: UNSET_VAR is not set in the environment; left out, as Compose does",
            "volumes.cache: becomes the Volume \"shop-cache\" (resource names are DNS labels); Compose names it \"shop_cache\", whose data is not reused: to keep using that, declare it external: true with name: shop_cache",
        ]
    );
    // The networks and volumes the services use, before them.
    assert_eq!(
        c.documents.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        [
            "shop-default.network.yaml",
            "shop-front.network.yaml",
            "shop-cache.volume.yaml",
            "shop-database.volume.yaml",
            "web.yaml",
            "db.yaml",
            "migrate.yaml",
            "cache-warmer.yaml",
            "worker.yaml"
        ]
    );
    assert_eq!(network_of(&c, "shop-front").spec, Default::default());
    assert_eq!(
        volume_of(&c, "shop-database").spec,
        Default::default(),
        "name: keeps its name, and Retain"
    );
    assert_documents_parse(&c);
    let desired = load_documents(&c).expect("the converted app validates as a whole");
    assert_eq!(desired.containers.len(), 5);
    assert_eq!((desired.networks.len(), desired.volumes.len()), (2, 2));
}

#[test]
fn output_files_name_their_source_and_carry_their_warnings() {
    let c = convert_corpus("webapp");
    let (file, yaml) = c.documents.iter().find(|d| !is_object_file(&d.0)).unwrap();
    assert_eq!(file, "web.yaml");
    let header: Vec<&str> = yaml.lines().take_while(|l| l.starts_with('#')).collect();
    assert_eq!(
        header,
        [
            "# Converted by `dockwright convert` from docker-compose.yml, service \"web\".",
            "# warning: services.web.logging: not supported by dockwright yet; dropped",
        ]
    );
    let migrate = document(&c, "migrate.yaml");
    assert!(!migrate.contains("# warning"), "{migrate}");
    let cache = document(&c, "shop-cache.volume.yaml");
    assert!(
        cache.starts_with("# Converted by `dockwright convert` from docker-compose.yml, volume \"cache\".\n# warning: volumes.cache: becomes the Volume \"shop-cache\""),
        "{cache}"
    );

    // Without -o everything goes to stdout as one stream, which the file source reads back.
    let stream = c.to_stream();
    let loaded = dockwright::source::parse_str(&stream, Path::new("all.yaml")).unwrap();
    let names: Vec<&str> = loaded.iter().map(|m| m.manifest.name()).collect();
    assert_eq!(
        names,
        [
            "shop-default",
            "shop-front",
            "shop-cache",
            "shop-database",
            "web",
            "db",
            "migrate",
            "cache-warmer",
            "worker"
        ]
    );
}

#[test]
fn every_port_syntax() {
    let c = convert_corpus("ports");
    let all = containers(&c);
    use Protocol::{Tcp, Udp};
    let any = Some("0.0.0.0");
    assert_eq!(
        spec_of(&all, "edge").ports,
        vec![
            port(80, None, any, Tcp),
            port(81, Some(8080), None, Tcp),
            port(82, Some(8081), Some("127.0.0.1"), Tcp),
            port(83, None, Some("127.0.0.1"), Tcp),
            port(9100, Some(9000), None, Tcp),
            port(9101, Some(9001), None, Tcp),
            port(9102, Some(9002), None, Tcp),
            port(7000, None, any, Tcp),
            port(7001, None, any, Tcp),
            port(53, Some(53), None, Udp),
            port(6001, Some(6001), Some("::1"), Tcp),
            port(5000, Some(5000), None, Tcp),
            port(443, Some(8443), any, Tcp),
            port(444, Some(8444), None, Tcp),
            port(445, None, any, Udp),
            port(3000, None, None, Tcp),
            port(3001, None, None, Udp),
            port(4000, None, None, Tcp),
            port(4001, None, None, Tcp),
        ]
    );
    assert_eq!(
        warnings(&c),
        [
            "services.edge.ports[8]: SCTP is not supported by dockwright; dropped",
            "services.edge.ports[9]: a host port range (5000-5010) for one container port cannot be expressed; published on host port 5000",
            "services.edge.ports[11].app_protocol: not supported by dockwright; dropped",
            "services.edge.ports[11]: a host port range (8444-8445) for one container port cannot be expressed; published on host port 8444",
        ]
    );
    assert_documents_parse(&c);
    load_documents(&c).expect("ports validate");
}

#[test]
fn every_mount_syntax() {
    let c = convert_corpus("volumes");
    let dir = corpus("volumes");
    let all = containers(&c);
    let site = path_in(&dir, "site");
    use VolumeType::{Bind, Volume};
    assert_eq!(
        spec_of(&all, "store").volumes,
        vec![
            mount(Volume, Some("vols-data"), "/data", false),
            mount(Volume, Some("team-shared"), "/shared", true),
            mount(Volume, Some("old-data"), "/legacy", false),
            mount(Volume, Some("outside"), "/outside", false),
            mount(Bind, Some(&site), "/srv/site", true),
            mount(Bind, Some(&site), "/srv/again", false),
            mount(Bind, Some("/etc/hostname"), "/etc/host-name", true),
            mount(Bind, Some("/home/tester/.config"), "/cfg", false),
            mount(Bind, Some(&path_in(&dir, "missing")), "/missing", false),
            mount(
                Volume,
                Some("vols_store_var_lib_anon"),
                "/var/lib/anon",
                false
            ),
            mount(Volume, Some("vols-data"), "/long-data", true),
            mount(Volume, Some("vols_store_long-anon"), "/long-anon", false),
            mount(Bind, Some(&site), "/long-site", false),
            tmpfs("/scratch", Some("1Gi")),
            tmpfs("/run", None),
            tmpfs("/tmp", Some("64Mi")),
        ]
    );
    let missing = path_in(&dir, "missing");
    assert_eq!(
        warnings(&c),
        [
            "services.store.volumes[3]: mount option \"nocopy\" is not supported by dockwright; dropped".to_string(),
            "services.store.volumes[4]: mount option \"z\" is not supported by dockwright; dropped".to_string(),
            "services.store.volumes[7]: /home/tester/.config does not exist: Compose creates it, dockwright requires it; create it before applying".to_string(),
            format!("services.store.volumes[8]: {missing} does not exist: Compose creates it, dockwright requires it; create it before applying"),
            "services.store.volumes[9]: anonymous volume at /var/lib/anon becomes the named volume \"vols_store_var_lib_anon\"".to_string(),
            "services.store.volumes[10].volume.nocopy: not supported by dockwright; dropped".to_string(),
            "services.store.volumes[11]: anonymous volume at /long-anon becomes the named volume \"vols_store_long-anon\"".to_string(),
            "services.store.volumes[12].bind.propagation: not supported by dockwright; dropped".to_string(),
            "services.store.volumes[12].bind.create_host_path: not supported by dockwright; dropped".to_string(),
            "services.store.volumes[13].tmpfs.mode: not supported by dockwright; dropped".to_string(),
            "services.store.volumes[14].consistency: not supported by dockwright; dropped".to_string(),
            "services.store.volumes[14]: mount type \"npipe\" is not supported by dockwright; dropped".to_string(),
            "services.store.tmpfs[1]: tmpfs option \"mode=1777\" is not supported by dockwright; dropped".to_string(),
            "volumes.data: becomes the Volume \"vols-data\" (resource names are DNS labels); Compose names it \"vols_data\", whose data is not reused: to keep using that, declare it external: true with name: vols_data".to_string(),
        ]
    );
    // `name:` that is a DNS label names the resource; external ones are only referenced.
    assert_eq!(
        object_files(&c),
        [
            "vols-default.network.yaml",
            "vols-data.volume.yaml",
            "team-shared.volume.yaml"
        ]
    );
    let shared = volume_of(&c, "team-shared").spec;
    assert_eq!(shared.driver.as_deref(), Some("local"));
    assert_eq!(
        shared.labels,
        BTreeMap::from([("team".to_string(), "core".to_string())])
    );
    assert_documents_parse(&c);
    // The two bind sources that were warned about are exactly what validation rejects.
    let errors = load_documents(&c).unwrap_err();
    assert_eq!(errors.lines().count(), 2, "{errors}");
    assert!(
        errors.contains(
            "spec.volumes[7].source: missing volume source: /home/tester/.config does not exist"
        ),
        "{errors}"
    );
    assert!(
        errors.contains(&format!(
            "spec.volumes[8].source: missing volume source: {missing} does not exist"
        )),
        "{errors}"
    );
}

#[test]
fn interpolation_from_environment_and_dotenv() {
    let c = convert_corpus("interpolation");
    let all = containers(&c);
    let app = spec_of(&all, "app");
    assert_eq!(app.image, "127.0.0.1:5000/team/app:1.2");
    assert_eq!(app.replicas, 2, "a number from a default");
    assert_eq!(
        app.command,
        Some(strings(&["echo", "$HOME is literal", "hi", "there"])),
        "interpolated before splitting; $$ is a literal $"
    );
    assert_eq!(
        app.env,
        env(&[
            ("FROM_ENV", "env"),
            ("FROM_DOTENV", "dotenv"),
            ("OVERRIDDEN", "from-env"),
            ("ALT", "set"),
            ("DEFAULT_IF_EMPTY", "fallback"),
            ("DEFAULT_IF_UNSET", ""),
            ("NESTED", "dotenv-nested"),
            ("MISSING", "[]"),
        ])
    );
    assert_eq!(
        app.resources.as_ref().unwrap().limits.memory.as_deref(),
        Some("256Mi")
    );
    let health = app.healthcheck.as_ref().unwrap();
    assert_eq!(
        health.shell.as_deref(),
        Some("wget -q -O - http://localhost:80/health")
    );
    assert_eq!(health.interval_seconds, Some(30));
    assert_eq!(
        warnings(&c),
        ["services.app.environment.MISSING: variable NOT_SET_AT_ALL is not set; substituted an empty string"]
    );
    assert_documents_parse(&c);
}

#[test]
fn unsupported_keys_are_warned_one_per_service_and_key() {
    let c = convert_corpus("unsupported");
    let dir = corpus("unsupported");
    let all = containers(&c);
    assert_eq!(names(&all), ["api", "cache", "base"]);
    let fields: Vec<&str> = c.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "networks.front.ipam.config[0].aux_addresses",
            "services.cache.container_name",
            "services.api.security_opt",
            "services.api.links",
            "services.api.init",
            "services.api.logging",
            "services.api.build.cache_from",
            "services.api.deploy.placement",
            "services.api.deploy.resources.reservations",
            "services.api.deploy.mode",
            "services.api.deploy.restart_policy.delay",
            "services.api.restart",
            "services.api.ipc",
            "services.api.deploy.update_config.delay",
            "services.api.healthcheck.start_interval",
            "services.api.healthcheck.interval",
            "services.api.deploy.resources.limits.pids",
            "services.api.depends_on.cache.restart",
            "services.cache.pull_policy",
            "services.cache.networks.back.ipv6_address",
            "services.cache.networks.back.priority",
            "services.cache.healthcheck",
            "services.base.network_mode",
            "services.base.healthcheck",
            "services.base.stop_grace_period",
        ],
        "x- keys, version and the fields that convert are not warned about"
    );
    for w in &c.warnings {
        let service = w
            .field
            .strip_prefix("services.")
            .map(|r| r.split('.').next().unwrap());
        assert_eq!(w.service.as_deref(), service, "{w}");
    }
    // `build` becomes an Image the container names.
    let context = path_in(&dir, "api");
    let image = image_of(&c, "api.yaml");
    assert_eq!(image.metadata.name.as_deref(), Some("api"));
    assert_eq!(image.spec.reference, "unsupported-api");
    let build = image.spec.build.unwrap();
    assert_eq!(build.context, context);
    assert_eq!(build.dockerfile.as_deref(), Some("Dockerfile.prod"));
    assert_eq!(build.target.as_deref(), Some("runtime"));
    assert_eq!(
        build.args,
        BTreeMap::from([("VERSION".to_string(), "1.0".to_string())])
    );

    // What does convert: merged anchors, deploy.restart_policy over restart, both networks.
    let api = ContainerSpec {
        image: "api".into(),
        image_pull_policy: None,
        replicas: 1,
        networks: vec![
            attach("unsupported-front", &["api"], None),
            attach("shared-back", &["api"], None),
        ],
        restart_policy: RestartPolicy::Always,
        healthcheck: Some(HealthCheck {
            command: Some(strings(&["true"])),
            interval_seconds: Some(2),
            ..HealthCheck::default()
        }),
        resources: Some(Resources {
            limits: ResourceLimits {
                cpu: Some("2".into()),
                memory: None,
            },
        }),
        depends_on: vec![dep("cache", DependencyCondition::Started)],
        strategy: Some(RolloutStrategy {
            max_unavailable: Some(1),
            ..RolloutStrategy::default()
        }),
        ..ContainerSpec::default()
    };
    assert_eq!(*spec_of(&all, "api"), api);
    let cache = spec_of(&all, "cache");
    assert_eq!(
        cache.networks,
        [attach("shared-back", &["cache"], Some("172.28.0.5"))],
        "external network keeps its name; a fixed address needs the list form"
    );
    assert_eq!(
        object_files(&c),
        [
            "unsupported-default.network.yaml",
            "unsupported-front.network.yaml"
        ]
    );
    let front = network_of(&c, "unsupported-front").spec;
    assert_eq!(front.driver.as_deref(), Some("bridge"));
    assert_eq!(
        front.ipam.unwrap().config,
        [dockwright::api::IpamPool {
            subnet: "10.99.0.0/24".into(),
            ..Default::default()
        }]
    );
    assert_eq!(cache.healthcheck, None);
    let base = spec_of(&all, "base");
    assert_eq!(base.network.as_deref(), Some("unsupported-default"));
    assert_eq!(base.stop_grace_period_seconds, Some(3));
    assert_documents_parse(&c);
    load_documents(&c).expect("what was converted validates");
}

#[test]
fn service_names_become_dns_labels() {
    let c = convert_corpus("names");
    let all = containers(&c);
    assert_eq!(names(&all), ["web-front", "api-v2", "my-named-container"]);
    assert_eq!(
        spec_of(&all, "api-v2").depends_on,
        vec![dep("web-front", DependencyCondition::Started)]
    );
    assert_eq!(
        spec_of(&all, "my-named-container").depends_on,
        vec![dep("api-v2", DependencyCondition::Started)]
    );
    // The Compose service name stays resolvable on the network.
    assert_eq!(spec_of(&all, "web-front").network_aliases, ["Web_Front"]);
    assert_eq!(spec_of(&all, "api-v2").network_aliases, ["api.v2"]);
    assert_eq!(
        spec_of(&all, "my-named-container").network_aliases,
        ["named"]
    );
    assert_eq!(
        warnings(&c),
        [
            "services.Web_Front: the resource is named \"web-front\": names must be DNS labels",
            "services.api.v2: the resource is named \"api-v2\": names must be DNS labels",
            "services.named.container_name: used as the resource name \"my-named-container\"; dockwright names containers after the resource (\"my-named-container\", or \"my-named-container-<i>\" with several replicas)",
        ]
    );
    load_documents(&c).expect("names validate");
}

// ---------------------------------------------------------------------------------------------
// Smaller cases
// ---------------------------------------------------------------------------------------------

/// Converts one service body (indented YAML under `services.svc`) in a scratch directory.
fn convert_service(body: &str) -> Result<Conversion, ConvertError> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("services:\n  svc:\n{}", indent(body, 4));
    convert_in(dir.path(), &text)
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

fn only_spec(c: &Conversion) -> ContainerSpec {
    let all = containers(c);
    assert_eq!(all.len(), 1);
    all.into_iter().next().unwrap().spec
}

#[test]
fn restart_policies() {
    let cases = [
        ("", RestartPolicy::Never, None),
        ("restart: \"no\"", RestartPolicy::Never, None),
        ("restart: always", RestartPolicy::Always, None),
        ("restart: unless-stopped", RestartPolicy::Always, None),
        ("restart: on-failure", RestartPolicy::OnFailure, None),
        ("restart: on-failure:3", RestartPolicy::OnFailure, Some(3)),
        ("restart: on-failure:0", RestartPolicy::OnFailure, None),
        (
            "deploy: {restart_policy: {condition: none}}",
            RestartPolicy::Never,
            None,
        ),
        (
            "deploy: {restart_policy: {condition: any}}",
            RestartPolicy::Always,
            None,
        ),
        (
            "deploy: {restart_policy: {condition: on-failure, max_attempts: 4}}",
            RestartPolicy::OnFailure,
            Some(4),
        ),
        ("deploy: {restart_policy: {}}", RestartPolicy::Always, None),
    ];
    for (yaml, policy, max) in cases {
        let spec = only_spec(&convert_service(&format!("image: busybox:1\n{yaml}")).unwrap());
        assert_eq!(
            (spec.restart_policy, spec.max_restarts),
            (policy, max),
            "{yaml}"
        );
    }
}

#[test]
fn memory_and_cpu_units() {
    let cases = [
        ("512m", "512Mi"),
        ("512M", "512Mi"),
        ("1gb", "1Gi"),
        ("1.5g", "1536Mi"),
        ("268435456", "256Mi"),
        ("100000000", "100000000"),
        ("2048k", "2Mi"),
    ];
    for (compose, quantity) in cases {
        let c = convert_service(&format!(
            "image: busybox:1\ndeploy: {{resources: {{limits: {{memory: {compose}, cpus: 0.25}}}}}}"
        ))
        .unwrap();
        let limits = only_spec(&c).resources.unwrap().limits;
        assert_eq!(limits.memory.as_deref(), Some(quantity), "{compose}");
        assert_eq!(limits.cpu.as_deref(), Some("0.25"));
        // And the quantity means the same number of bytes to dockwright as to Compose.
        let bytes = dockwright::quantity::parse_memory(quantity).unwrap();
        let factor = match compose.trim_end_matches(['b', 'B']).chars().last().unwrap() {
            'k' => 1024.0,
            'm' | 'M' => 1024.0 * 1024.0,
            'g' => 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        };
        let number: f64 = compose
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .unwrap();
        assert_eq!(bytes as f64, number * factor, "{compose}");
    }
}

#[test]
fn legacy_limits_lose_to_deploy() {
    let c = convert_service(
        "image: busybox:1\nmem_limit: 64m\ncpus: 0.1\ndeploy: {resources: {limits: {memory: 128m}}}",
    )
    .unwrap();
    let limits = only_spec(&c).resources.unwrap().limits;
    assert_eq!(limits.memory.as_deref(), Some("128Mi"));
    assert_eq!(limits.cpu.as_deref(), Some("0.1"));
    assert_eq!(
        warnings(&c),
        ["services.svc.mem_limit: ignored: deploy.resources.limits.memory is set and wins"]
    );
}

#[test]
fn replicas_and_host_ports() {
    let c = convert_service("image: busybox:1\nscale: 2\nports: [\"8080:80\"]").unwrap();
    let spec = only_spec(&c);
    assert_eq!(spec.replicas, 2);
    assert_eq!(
        spec.ports,
        [port(80, None, Some("0.0.0.0"), Protocol::Tcp)],
        "replicas cannot share a host port"
    );
    assert_eq!(
        warnings(&c),
        ["services.svc.ports: host port 8080 cannot be shared by 2 replicas; each replica publishes container port 80 on a random host port instead"]
    );
    load_documents(&c).expect("valid");

    let c = convert_service("image: busybox:1\nnetwork_mode: host\nports: [\"80:80\"]").unwrap();
    let spec = only_spec(&c);
    assert_eq!(spec.network.as_deref(), Some("host"));
    assert!(spec.ports.is_empty());
    assert!(spec.network_aliases.is_empty());
    load_documents(&c).expect("valid");
}

fn device(host: &str, container: Option<&str>, permissions: Option<&str>) -> DeviceMapping {
    DeviceMapping {
        host_path: host.into(),
        container_path: container.map(Into::into),
        permissions: permissions.map(Into::into),
    }
}

#[test]
fn security_fields_map_to_the_container() {
    let c = convert_service(
        r#"image: busybox:1
privileged: true
cap_add: [NET_ADMIN, CAP_SYS_TIME]
cap_drop: [MKNOD]
devices:
  - /dev/fuse
  - /dev/sda:/dev/xvda:r
  - /dev/net/tun:rwm
  - /dev/snd:/dev/snd
  - source: /dev/kvm
    permissions: rw
  - nvidia.com/gpu=all
pid: host
ipc: host"#,
    )
    .unwrap();
    let spec = only_spec(&c);
    assert!(
        spec.privileged && spec.host_pid && spec.host_ipc,
        "{spec:?}"
    );
    assert_eq!(
        spec.capabilities,
        Some(Capabilities {
            add: strings(&["NET_ADMIN", "CAP_SYS_TIME"]),
            drop: strings(&["MKNOD"]),
        })
    );
    assert_eq!(
        spec.devices,
        [
            device("/dev/fuse", None, None),
            device("/dev/sda", Some("/dev/xvda"), Some("r")),
            device("/dev/net/tun", None, Some("rwm")),
            device("/dev/snd", None, None),
            device("/dev/kvm", None, Some("rw")),
        ]
    );
    assert_eq!(
        warnings(&c),
        ["services.svc.devices[5]: \"nvidia.com/gpu=all\" is not a host device path (a CDI device name?): dockwright maps device files only; dropped"]
    );
    // Valid manifests; whether they may run is the agent policy's call.
    let desired = load_documents(&c).expect("valid");
    let config = &desired.containers.values().next().unwrap().config;
    assert!(config.privileged && config.host_pid && config.host_ipc);
    assert_eq!(
        (&config.cap_add, &config.cap_drop),
        (&strings(&["NET_ADMIN", "SYS_TIME"]), &strings(&["MKNOD"]))
    );
    let devices: Vec<(&str, &str, &str)> = config
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.as_str(),
                d.container_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            ("/dev/fuse", "/dev/fuse", "rwm"),
            ("/dev/sda", "/dev/xvda", "r"),
            ("/dev/net/tun", "/dev/net/tun", "rwm"),
            ("/dev/snd", "/dev/snd", "rwm"),
            ("/dev/kvm", "/dev/kvm", "rw"),
        ]
    );

    // Only the host's namespaces have a field.
    let c = convert_service("image: busybox:1\npid: \"service:db\"\nipc: shareable").unwrap();
    let spec = only_spec(&c);
    assert!(!spec.host_pid && !spec.host_ipc);
    assert_eq!(
        warnings(&c),
        [
            "services.svc.pid: \"service:db\" is not supported: dockwright can share only the host's PID namespace (hostPID); the container gets the daemon's default; dropped",
            "services.svc.ipc: \"shareable\" is not supported: dockwright can share only the host's IPC namespace (hostIPC); the container gets the daemon's default; dropped",
        ]
    );

    // Nothing declared, nothing written.
    let spec = only_spec(&convert_service("image: busybox:1").unwrap());
    assert!(!spec.privileged && !spec.host_pid && !spec.host_ipc);
    assert_eq!((spec.capabilities, spec.devices), (None, Vec::new()));
}

#[test]
fn update_config_becomes_the_strategy() {
    let strategy = |type_, max_unavailable| RolloutStrategy {
        type_,
        max_unavailable,
        health_timeout_seconds: None,
    };
    let cases = [
        ("{}", None),
        ("{parallelism: 2}", Some(strategy(None, Some(2)))),
        ("{parallelism: 0}", Some(strategy(None, Some(3)))),
        (
            "{order: start-first}",
            Some(strategy(Some(RolloutStrategyType::StartFirst), None)),
        ),
        (
            "{order: stop-first, parallelism: 1, failure_action: rollback}",
            Some(strategy(Some(RolloutStrategyType::StopFirst), Some(1))),
        ),
    ];
    for (update, want) in cases {
        let c = convert_service(&format!(
            "image: busybox:1\ndeploy: {{replicas: 3, update_config: {update}}}"
        ))
        .unwrap();
        assert_eq!(only_spec(&c).strategy, want, "{update}");
        assert_eq!(warnings(&c), Vec::<String>::new(), "{update}");
        load_documents(&c).expect("valid");
    }

    // What dockwright does otherwise is said, field by field.
    let c = convert_service(
        "image: busybox:1\ndeploy:\n  update_config: {parallelism: 1, delay: 10s, failure_action: pause, monitor: 30s, max_failure_ratio: 0.2}",
    )
    .unwrap();
    assert_eq!(only_spec(&c).strategy, Some(strategy(None, Some(1))));
    assert_eq!(
        warnings(&c),
        [
            "services.svc.deploy.update_config.delay: not supported by dockwright; dropped",
            "services.svc.deploy.update_config.max_failure_ratio: not supported by dockwright; dropped",
            "services.svc.deploy.update_config.failure_action: \"pause\" is not supported: dockwright rolls back a new replica that does not become healthy (as rollback)",
            "services.svc.deploy.update_config.monitor: not converted: dockwright waits for a new replica with a healthcheck to become healthy (spec.strategy.healthTimeoutSeconds, default 300s) instead of watching it for a fixed time; dropped",
        ]
    );

    // start-first cannot hold with a host port: both containers would bind it.
    let c = convert_service(
        "image: busybox:1\nports: [\"8080:80\"]\ndeploy: {update_config: {order: start-first}}",
    )
    .unwrap();
    assert_eq!(
        only_spec(&c).strategy,
        Some(strategy(Some(RolloutStrategyType::StopFirst), None))
    );
    assert_eq!(
        warnings(&c),
        ["services.svc.deploy.update_config.order: start-first cannot be kept: the new container could not bind host port 8080 while the old one holds it; converted to StopFirst"]
    );
    load_documents(&c).expect("valid");
}

#[test]
fn healthcheck_forms() {
    let cases = [
        ("test: curl -f http://x/", None, Some("curl -f http://x/")),
        ("test: [CMD-SHELL, exit 0]", None, Some("exit 0")),
        (
            "test: [CMD, /bin/check, --quick]",
            Some(vec!["/bin/check", "--quick"]),
            None,
        ),
    ];
    for (yaml, command, shell) in cases {
        let c = convert_service(&format!(
            "image: busybox:1\nhealthcheck: {{{yaml}, retries: 0, timeout: 0s}}"
        ))
        .unwrap();
        let h = only_spec(&c).healthcheck.unwrap();
        assert_eq!(h.command, command.map(|c| strings(&c)), "{yaml}");
        assert_eq!(h.shell.as_deref(), shell, "{yaml}");
        assert_eq!(
            (h.retries, h.timeout_seconds),
            (None, None),
            "zero means Docker's default"
        );
    }
    let c = convert_service("image: busybox:1\nhealthcheck: {test: [NONE]}").unwrap();
    assert_eq!(only_spec(&c).healthcheck, None);
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn build_without_image_uses_the_compose_image_name() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    let c = convert_in(
        dir.path(),
        "name: My_App\nservices:\n  web:\n    build: .\n    pull_policy: missing\n",
    )
    .unwrap();
    let spec = only_spec(&c);
    assert_ne!(project, "my_app");
    assert_eq!(spec.image, "web", "the Image resource");
    assert_eq!(spec.image_pull_policy, None);
    let image = image_of(&c, "web.yaml");
    assert_eq!(
        image.spec.reference, "my_app-web",
        "project name from name:, lowercased"
    );
    assert_eq!(
        image.spec.build.unwrap().context,
        dir.path().to_str().unwrap()
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn project_name_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: fromfile\nservices:\n  s1:\n    image: busybox:1\n";
    let mut environment = test_env();
    environment.insert("COMPOSE_PROJECT_NAME".into(), "FromEnv".into());
    let c = convert_with(
        text,
        &ConvertOptions {
            file_label: "c.yml".into(),
            base_dir: dir.path().to_path_buf(),
            environment: Some(environment),
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    assert_eq!(only_spec(&c).network.as_deref(), Some("fromenv-default"));
    let c = convert_in(dir.path(), text).unwrap();
    assert_eq!(only_spec(&c).network.as_deref(), Some("fromfile-default"));
    let c = convert_in(dir.path(), "services:\n  s1:\n    image: busybox:1\n").unwrap();
    let dir_name = dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    let dir_name: String = dir_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert_eq!(
        only_spec(&c).network,
        Some(dockwright::convert::dns_label(&format!(
            "{}-default",
            dir_name.trim_start_matches(['_', '-'])
        )))
    );
}

#[test]
fn env_file_errors_and_optional_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.env"), "OK=1\nnot a line\n").unwrap();
    let err = convert_in(
        dir.path(),
        "services:\n  s1:\n    image: busybox:1\n    env_file: bad.env\n",
    )
    .unwrap_err()
    .to_string();
    let bad = dir.path().join("bad.env");
    assert_eq!(
        err,
        format!("docker-compose.yml: services.s1.env_file[0]: {}:2: \"not a line\" is not a variable name (letters, digits, '_', '.' and '-', not starting with a digit)", bad.display())
    );
    let err = convert_in(
        dir.path(),
        "services:\n  s1:\n    image: busybox:1\n    env_file: [missing.env]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("docker-compose.yml: services.s1.env_file[0]: cannot read "),
        "{err}"
    );
    let c = convert_in(
        dir.path(),
        "services:\n  s1:\n    image: busybox:1\n    env_file: [{path: missing.env, required: false}]\n    environment: [A=1]\n",
    )
    .unwrap();
    assert_eq!(only_spec(&c).env, env(&[("A", "1")]));
}

#[test]
fn invalid_compose_names_the_field() {
    let cases: &[(&str, &str)] = &[
        ("image: busybox:1\nports: [\"80:80:80:80\"]", "services.svc.ports[0]: invalid port \"80:80:80:80\": \"80:80\" is not an IP address"),
        ("image: busybox:1\nports: [\"http:80\"]", "services.svc.ports[0]: invalid port \"http:80\": \"http\" is not a port number (1-65535)"),
        ("image: busybox:1\nports: [\"8000-8002:80-81\"]", "services.svc.ports[0]: the host and container port ranges have different lengths"),
        ("image: busybox:1\nports: [\"1-2000\"]", "services.svc.ports[0]: a range of 2000 ports is more than the limit of 1000"),
        ("image: busybox:1\nports: [{published: 80}]", "services.svc.ports[0]: missing field `target`"),
        ("image: busybox:1\nports: [{target: 70000}]", "services.svc.ports[0].target: invalid value: integer `70000`, expected u16"),
        ("image: busybox:1\nports: [\"80/sctpx\"]", "services.svc.ports[0]: unknown protocol \"sctpx\"; expected tcp or udp"),
        ("image: busybox:1\nvolumes: [\"data:/data\"]", "services.svc.volumes[0]: named volume \"data\" is not declared under the top-level volumes"),
        ("image: busybox:1\nvolumes: [\"./a:/a:rx\"]", "services.svc.volumes[0]: unknown mount mode \"rx\" in \"./a:/a:rx\""),
        ("image: busybox:1\nvolumes: [{type: bind, target: /x}]", "services.svc.volumes[0].source: a bind mount needs a source path"),
        ("image: busybox:1\nvolumes: [{type: weird, target: /x}]", "services.svc.volumes[0].type: unknown mount type \"weird\"; expected volume, bind or tmpfs"),
        ("image: busybox:1\nnetworks: [nope]", "services.svc.networks.nope: undefined network \"nope\"; declare it under the top-level networks"),
        ("image: busybox:1\nnetwork_mode: host\nnetworks: [default]", "services.svc.network_mode: network_mode and networks cannot be combined"),
        ("image: busybox:1\ndepends_on: [ghost]", "services.svc.depends_on.ghost: undefined service \"ghost\""),
        ("image: busybox:1\ndepends_on: {svc: {condition: service_ready}}", "services.svc.depends_on.svc.condition: unknown condition \"service_ready\"; expected service_started, service_healthy or service_completed_successfully"),
        ("image: busybox:1\nrestart: sometimes", "services.svc.restart: unknown restart policy \"sometimes\"; expected no, always, unless-stopped or on-failure[:N]"),
        ("image: busybox:1\nhealthcheck: {test: [CMD], interval: 5s}", "services.svc.healthcheck.test: a list must start with CMD or CMD-SHELL followed by the command (or be [NONE])"),
        ("image: busybox:1\nhealthcheck: {test: [CMD, x], interval: 5}", "services.svc.healthcheck.interval: invalid duration \"5\": missing unit (e.g. 30s, 1m30s, 500ms)"),
        ("image: busybox:1\nmem_limit: 12 parsecs", "services.svc.mem_limit: invalid size \"12 parsecs\": unknown unit; use b, k, m, g or t (e.g. 512m, 1g, 1048576)"),
        ("image: busybox:1\ncpus: lots", "services.svc.cpus: invalid CPU count \"lots\": expected a number such as 0.5 or 2"),
        ("image: busybox:1\ncommand: echo 'unterminated", "services.svc.command: unterminated single quote in \"echo 'unterminated\""),
        ("image: busybox:1\nenvironment: ${NEED:?set NEED first}", "services.svc.environment: required variable NEED is not set or empty: set NEED first"),
        ("image: busybox:1\nenvironment: [\"A=5$\"]", "services.svc.environment[0]: invalid interpolation format in \"A=5$\"; write $$ for a literal $, or ${VAR}, ${VAR:-default}"),
        ("image: busybox:1\nenvironment: 3", "services.svc.environment: invalid type: integer `3`, expected a list of KEY=VALUE strings or a mapping"),
        ("image: busybox:1\nscale: 2\ndeploy: {replicas: 3}", "services.svc.scale: both scale and deploy.replicas are set; keep only deploy.replicas"),
        ("image: busybox:1\ndeploy: {replicas: many}", "services.svc.deploy.replicas: invalid value: string \"many\", expected an integer"),
        ("command: [\"true\"]", "services.svc.image: missing: a service needs an image or a build"),
        ("image: busybox:1\npull_policy: sometimes", "services.svc.pull_policy: unknown pull policy \"sometimes\"; expected always, never, missing, if_not_present or build"),
        ("image: busybox:1\ndevices: [\"/dev/a:/dev/b:r:x\"]", "services.svc.devices[0]: \"/dev/a:/dev/b:r:x\" is not HOST[:CONTAINER][:PERMISSIONS]"),
        ("image: busybox:1\ndevices: [{target: /dev/b}]", "services.svc.devices[0]: source is required"),
        ("image: busybox:1\ndeploy: {update_config: {order: random}}", "services.svc.deploy.update_config.order: unknown order \"random\"; expected stop-first or start-first"),
        ("image: busybox:1\ndeploy: {update_config: {failure_action: retry}}", "services.svc.deploy.update_config.failure_action: unknown failure action \"retry\"; expected continue, rollback or pause"),
    ];
    for (body, want) in cases {
        let err = convert_service(body).expect_err(body).to_string();
        assert_eq!(err, format!("docker-compose.yml: {want}"), "{body}");
    }
}

#[test]
fn invalid_files() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("services: [a, b]", "docker-compose.yml: services: invalid type: sequence, expected a mapping"),
        ("[]", "docker-compose.yml: (top level): expected a mapping with services, found a list"),
        ("name: x", "docker-compose.yml: services: no services to convert"),
        ("services:\n  a_b: {image: x}\n  a-b: {image: y}\n", "docker-compose.yml: services.a-b: its resource name \"a-b\" is also the name of service \"a_b\"; set container_name on one of them"),
        ("services:\n  ___: {image: x}\n", "docker-compose.yml: services.___: cannot make a resource name from this service name; set container_name to a DNS label"),
        ("volumes:\n  v: {external: maybe}\nservices:\n  s: {image: x}\n", "docker-compose.yml: volumes.v.external: invalid value: string \"maybe\", expected true, false or a mapping with name"),
    ];
    for (text, want) in cases {
        let err = convert_in(dir.path(), text).expect_err(text).to_string();
        assert_eq!(err, *want, "{text}");
    }
    let err = convert_in(dir.path(), "services:\n  a: {image: x\n").unwrap_err();
    assert!(matches!(err, ConvertError::Yaml { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("docker-compose.yml: invalid YAML: "),
        "{err}"
    );
    let err = convert_in(dir.path(), "services:\n  a: {image: x}\n  a: {image: y}\n").unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[test]
fn convert_file_reads_next_to_the_file() {
    let c =
        dockwright::convert::convert_file(&corpus("webapp").join("docker-compose.yml")).unwrap();
    let files: Vec<&str> = c.documents.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        [
            "shop-default.network.yaml",
            "shop-front.network.yaml",
            "shop-cache.volume.yaml",
            "shop-database.volume.yaml",
            "web.yaml",
            "db.yaml",
            "migrate.yaml",
            "cache-warmer.yaml",
            "worker.yaml"
        ]
    );
    let err = dockwright::convert::convert_file(Path::new("/nonexistent/docker-compose.yml"))
        .unwrap_err();
    assert!(matches!(err, ConvertError::Read { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Networks and volumes, profiles, secrets and configs, extends and include
// ---------------------------------------------------------------------------------------------

/// Writes `files` (relative path, content) under a new temporary directory.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn convert_opts(
    dir: &Path,
    text: &str,
    profiles: &[&str],
    vars: &[(&str, &str)],
) -> Result<Conversion, ConvertError> {
    let mut environment = test_env();
    for (k, v) in vars {
        environment.insert(k.to_string(), v.to_string());
    }
    convert_with(
        text,
        &ConvertOptions {
            file_label: "docker-compose.yml".into(),
            base_dir: dir.to_path_buf(),
            environment: Some(environment),
            profiles: strings(profiles),
            output_dir: None,
        },
    )
}

#[test]
fn networks_and_volumes_become_resources() {
    let dir = project(&[]);
    let text = r#"name: app
services:
  web:
    image: busybox:1
    networks:
      front:
        aliases: [www]
      back:
        ipv4_address: 10.77.0.10
      outside: {}
    volumes: [data:/data, cache:/cache, legacy:/legacy]
  solo:
    image: busybox:1
    networks: [back]
networks:
  front:
    driver: bridge
    driver_opts:
      com.docker.network.bridge.name: br-app
    labels:
      com.example.net: front
      dockwright.dev/owner: mine
    attachable: true
    enable_ipv6: false
  back:
    internal: true
    ipam:
      driver: default
      config:
        - subnet: 10.77.0.0/24
          gateway: 10.77.0.1
          ip_range: 10.77.0.128/25
  outside:
    external: true
    name: corp-net
  spare: {}
volumes:
  data:
    driver: local
    driver_opts: {type: tmpfs, device: tmpfs, o: "size=1m"}
    labels: [com.example.vol=data]
  cache:
    name: Old_Cache
    driver: local
  legacy:
    external: true
  unused:
"#;
    let c = convert_in(dir.path(), text).unwrap();
    let all = containers(&c);
    assert_eq!(
        spec_of(&all, "web").networks,
        [
            attach("app-front", &["web", "www"], None),
            attach("app-back", &["web"], Some("10.77.0.10")),
            attach("corp-net", &["web"], None),
        ]
    );
    assert_eq!(spec_of(&all, "web").network, None);
    let solo = spec_of(&all, "solo");
    assert_eq!(
        (
            solo.network.as_deref(),
            solo.network_aliases.clone(),
            solo.networks.len()
        ),
        (Some("app-back"), strings(&["solo"]), 0),
        "one network without a fixed address keeps the single form"
    );
    assert_eq!(
        spec_of(&all, "web").volumes,
        [
            mount(VolumeType::Volume, Some("app-data"), "/data", false),
            mount(VolumeType::Volume, Some("Old_Cache"), "/cache", false),
            mount(VolumeType::Volume, Some("legacy"), "/legacy", false),
        ]
    );
    // No default network (nobody is on it), no document for external or unusable names.
    assert_eq!(
        object_files(&c),
        [
            "app-front.network.yaml",
            "app-back.network.yaml",
            "app-data.volume.yaml"
        ]
    );
    let front = network_of(&c, "app-front").spec;
    assert_eq!(
        front,
        dockwright::api::NetworkSpec {
            driver: Some("bridge".into()),
            options: BTreeMap::from([(
                "com.docker.network.bridge.name".to_string(),
                "br-app".to_string()
            )]),
            labels: BTreeMap::from([("com.example.net".to_string(), "front".to_string())]),
            attachable: true,
            ..Default::default()
        }
    );
    let back = network_of(&c, "app-back").spec;
    assert!(back.internal);
    assert_eq!(
        back.ipam,
        Some(dockwright::api::NetworkIpam {
            driver: Some("default".into()),
            config: vec![dockwright::api::IpamPool {
                subnet: "10.77.0.0/24".into(),
                gateway: Some("10.77.0.1".into()),
                ip_range: Some("10.77.0.128/25".into()),
            }],
        })
    );
    let data = volume_of(&c, "app-data").spec;
    assert_eq!(data.driver.as_deref(), Some("local"));
    assert_eq!(
        data.driver_options.get("o").map(String::as_str),
        Some("size=1m")
    );
    assert_eq!(
        data.labels.get("com.example.vol").map(String::as_str),
        Some("data")
    );
    assert_eq!(data.reclaim_policy, dockwright::api::ReclaimPolicy::Retain);
    assert_eq!(
        warnings(&c),
        [
            "networks.front.labels.dockwright.dev/owner: keys under \"dockwright.dev/\" are reserved for dockwright; dropped",
            "volumes.cache.driver: dropped: \"Old_Cache\" is used by its Docker name (external, or a name that is not a DNS label), so dockwright does not create it with options",
            "networks.spare: not used by any converted service; not converted",
            "volumes.data: becomes the Volume \"app-data\" (resource names are DNS labels); Compose names it \"app_data\", whose data is not reused: to keep using that, declare it external: true with name: app_data",
            "volumes.unused: not used by any converted service; not converted",
        ]
    );
    assert_documents_parse(&c);
    let desired = load_documents(&c).unwrap();
    assert_eq!((desired.networks.len(), desired.volumes.len()), (2, 1));

    let err = convert_in(dir.path(), "services:\n  s: {image: x, networks: [nope]}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker-compose.yml: services.s.networks.nope: undefined network \"nope\"; declare it under the top-level networks"
    );
}

#[test]
fn profiles_select_services_as_compose_does() {
    let dir = project(&[]);
    let text = "name: p\nservices:\n  always: {image: x}\n  debug: {image: x, profiles: [debug]}\n  tools: {image: x, profiles: [tools, debug]}\n";
    let converted = |profiles: &[&str], vars: &[(&str, &str)]| {
        let c = convert_opts(dir.path(), text, profiles, vars).unwrap();
        names(&containers(&c))
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(converted(&[], &[]), ["always"]);
    assert_eq!(converted(&["tools"], &[]), ["always", "tools"]);
    assert_eq!(converted(&["debug"], &[]), ["always", "debug", "tools"]);
    assert_eq!(
        converted(&[], &[("COMPOSE_PROFILES", "tools,nothing")]),
        ["always", "tools"]
    );
    assert_eq!(
        converted(&["debug"], &[("COMPOSE_PROFILES", "tools")]),
        ["always", "debug", "tools"],
        "--profile wins over COMPOSE_PROFILES"
    );
    assert_eq!(converted(&["*"], &[]), ["always", "debug", "tools"]);

    // A dependency on a service that is left out: Compose refuses, unless not required.
    let text = "services:\n  web: {image: x, depends_on: [db]}\n  db: {image: x, profiles: [db]}\n";
    let err = convert_opts(dir.path(), text, &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker-compose.yml: services.web.depends_on.db: \"db\" is not enabled by the active profiles (it has [\"db\"]); activate one with --profile or COMPOSE_PROFILES, or give both services a common profile"
    );
    let c = convert_opts(dir.path(), text, &["db"], &[]).unwrap();
    assert_eq!(names(&containers(&c)), ["web", "db"]);
    let text = "services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: service_started, required: false}\n  db: {image: x, profiles: [db]}\n";
    let c = convert_opts(dir.path(), text, &[], &[]).unwrap();
    assert_eq!(only_spec(&c).depends_on, []);
    assert_eq!(
        warnings(&c),
        ["services.web.depends_on.db: dropped: \"db\" is not converted (none of its profiles [\"db\"] is active) and the dependency is not required"]
    );
    let err = convert_opts(
        dir.path(),
        "services:\n  a: {image: x, profiles: [a]}\n",
        &[],
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no service is enabled by the active profiles"),
        "{err}"
    );
}

#[test]
fn secrets_and_configs_become_files() {
    let dir = project(&[("secrets/token.txt", "s3cret\n"), ("app.conf", "a = 1\n")]);
    let text = r#"services:
  app:
    image: busybox:1
    user: "1000"
    secrets:
      - token
      - source: token
        target: api-token
        mode: 0440
        uid: "1000"
      - source: token
        target: /etc/token
      - from_env
      - swarm_only
    configs:
      - app_conf
      - source: inline
        target: /etc/app/inline.conf
        mode: 0600
      - source: from_env_config
        target: env.conf
secrets:
  token:
    file: ./secrets/token.txt
  from_env:
    environment: FROM_ENV
  swarm_only:
    external: true
configs:
  app_conf:
    file: app.conf
  inline:
    content: |
      inline = true
  from_env_config:
    environment: FROM_SHELL
"#;
    let c = convert_in(dir.path(), text).unwrap();
    let token = path_in(dir.path(), "secrets/token.txt");
    let file = |path: &str, source: Option<&str>, content: Option<&str>, mode: &str| {
        dockwright::api::FileSpec {
            path: path.into(),
            source: source.map(str::to_string),
            content: content.map(str::to_string),
            mode: Some(mode.into()),
        }
    };
    assert_eq!(
        only_spec(&c).files,
        [
            file("/run/secrets/token", Some(&token), None, "0400"),
            file("/run/secrets/api-token", Some(&token), None, "0440"),
            file("/etc/token", Some(&token), None, "0400"),
            file("/run/secrets/from_env", None, Some("env"), "0400"),
            file(
                "/app_conf",
                Some(&path_in(dir.path(), "app.conf")),
                None,
                "0444"
            ),
            file(
                "/etc/app/inline.conf",
                None,
                Some("inline = true\n"),
                "0600"
            ),
            file("/env.conf", None, Some("shell-value"), "0444"),
        ]
    );
    assert_eq!(
        warnings(&c),
        [
            "services.app.secrets[0]: /run/secrets/token is owned by root with mode 0400 and the service runs as user \"1000\": set mode (e.g. 0444) in the long syntax if it must read it",
            "services.app.secrets[1].uid: dropped: dockwright's files are owned by root",
            "services.app.secrets[2]: /etc/token is owned by root with mode 0400 and the service runs as user \"1000\": set mode (e.g. 0444) in the long syntax if it must read it",
            "services.app.secrets[3]: /run/secrets/from_env is owned by root with mode 0400 and the service runs as user \"1000\": set mode (e.g. 0444) in the long syntax if it must read it",
            "secrets.from_env.environment: the value of FROM_ENV is written into the manifests as the file's content: keep them as secret as the variable, or put the value in a file and use file:",
            "services.app.secrets[4]: secret \"swarm_only\" is external (kept by a Swarm, which dockwright cannot read); dropped: declare it with file: instead",
        ]
    );
    assert_documents_parse(&c);
    load_documents(&c).expect("the file sources exist");

    // -o DIR: host paths relative to where the manifests go, so the directory can move.
    let c = convert_with(
        "services:\n  app:\n    build: ./web\n    volumes: [./data:/data]\n    secrets: [token]\nsecrets:\n  token: {file: ./secrets/token.txt}\n",
        &ConvertOptions {
            file_label: "docker-compose.yml".into(),
            base_dir: dir.path().to_path_buf(),
            environment: Some(test_env()),
            output_dir: Some(dir.path().join("manifests")),
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    let spec = only_spec(&c);
    assert_eq!(
        spec.files[0].source.as_deref(),
        Some("../secrets/token.txt")
    );
    assert_eq!(spec.volumes[0].source.as_deref(), Some("../data"));
    assert_eq!(
        image_of(&c, "app.yaml").spec.build.unwrap().context,
        "../web"
    );

    for (body, want) in [
        ("secrets: [nope]", "docker-compose.yml: services.svc.secrets[0]: undefined secret \"nope\"; declare it under the top-level secrets"),
        ("configs: [{source: c, mode: 0999}]", "docker-compose.yml: services.svc.configs[0].mode: invalid mode \"0999\"; expected octal permission bits such as 0440"),
    ] {
        let text = format!("services:\n  svc:\n    image: x\n    {body}\nconfigs:\n  c: {{content: x}}\n");
        let err = convert_in(dir.path(), &text).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    let err = convert_in(
        dir.path(),
        "services:\n  s: {image: x, secrets: [t]}\nsecrets:\n  t: {content: x}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker-compose.yml: secrets.t: needs exactly one of file and environment"
    );
}

#[test]
fn extends_merges_services_of_this_file_and_others() {
    let dir = project(&[
        (
            "common/base.yml",
            r#"services:
  base:
    image: busybox:1
    command: ["sleep", "1"]
    environment: [A=1, B=2]
    ports: ["80"]
    volumes: ["./data:/data", "cache:/cache"]
    env_file: base.env
  root:
    image: busybox:0
    labels: {tier: root}
  mid:
    extends: root
    labels: {role: mid}
"#,
        ),
        ("common/base.env", "FROM_BASE_ENV=1\n"),
        ("common/data/.keep", ""),
    ]);
    let text = r#"services:
  web:
    extends:
      file: common/base.yml
      service: base
    command: ["httpd"]
    environment:
      B: three
      C: "4"
    ports: ["80", "443"]
    volumes: ["other:/cache"]
  worker:
    extends: web
    environment: [D=5]
  leaf:
    extends: {file: ./common/base.yml, service: mid}
volumes:
  other:
"#;
    let c = convert_in(dir.path(), text).unwrap();
    let all = containers(&c);
    let web = spec_of(&all, "web");
    assert_eq!(web.image, "busybox:1");
    assert_eq!(web.command, Some(strings(&["httpd"])), "command replaced");
    assert_eq!(
        web.env,
        env(&[
            ("FROM_BASE_ENV", "1"),
            ("A", "1"),
            ("B", "three"),
            ("C", "4")
        ]),
        "environment merged by name; the base's env_file read from its own directory"
    );
    assert_eq!(
        web.ports
            .iter()
            .map(|p| p.container_port)
            .collect::<Vec<_>>(),
        [80, 443]
    );
    assert_eq!(
        web.volumes,
        [
            mount(
                VolumeType::Bind,
                Some(&path_in(dir.path(), "common/data")),
                "/data",
                false
            ),
            mount(
                VolumeType::Volume,
                Some(&dns_project(dir.path(), "other")),
                "/cache",
                false
            ),
        ],
        "the base's relative paths resolve against its file; a mount at the same path replaced"
    );
    let worker = spec_of(&all, "worker");
    assert_eq!(worker.command, Some(strings(&["httpd"])));
    assert_eq!(worker.env.last().map(|e| e.name.as_str()), Some("D"));
    let leaf = spec_of(&all, "leaf");
    assert_eq!(leaf.image, "busybox:0");
    assert_eq!(
        leaf.labels,
        BTreeMap::from([
            ("role".to_string(), "mid".to_string()),
            ("tier".to_string(), "root".to_string())
        ]),
        "a chain of extends across files"
    );

    let err = convert_in(
        dir.path(),
        "services:\n  a: {extends: b, image: x}\n  b: {extends: {service: c}}\n  c: {extends: a}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker-compose.yml: services.a.extends: extends forms a cycle: a → b → c → a"
    );
    let err = convert_in(dir.path(), "services:\n  a: {extends: nope, image: x}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "docker-compose.yml: services.a.extends: service \"nope\" is not defined in this file"
    );
    let err = convert_in(
        dir.path(),
        "services:\n  a: {extends: {file: common/base.yml, service: nope}, image: x}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "docker-compose.yml: services.a.extends: service \"nope\" is not defined in {}",
            path_in(dir.path(), "common/base.yml")
        )
    );
}

/// `<project>-<key>` as convert names the resource of a top-level network or volume, with the
/// project named after the directory.
fn dns_project(dir: &Path, key: &str) -> String {
    let project = dockwright::convert::project_name(&BTreeMap::new(), None, dir);
    dockwright::convert::dns_label(&format!("{project}-{key}"))
}

#[test]
fn include_adds_the_services_of_other_files() {
    let dir = project(&[
        (
            "db/compose.yml",
            "services:\n  db:\n    image: busybox:${DB_TAG}\n    volumes: [./init:/init]\n    networks: [back]\nnetworks:\n  back: {}\n",
        ),
        ("db/.env", "DB_TAG=1.36\n"),
        ("db/init/.keep", ""),
        (
            "cache.yml",
            "include:\n  - nested.yml\nservices:\n  cache: {image: busybox:1}\n",
        ),
        ("nested.yml", "services:\n  nested: {image: busybox:1}\n"),
        ("loop-a.yml", "include: [loop-b.yml]\nservices:\n  a: {image: x}\n"),
        ("loop-b.yml", "include: [loop-a.yml]\nservices:\n  b: {image: x}\n"),
    ]);
    let text = "name: inc\ninclude:\n  - db/compose.yml\n  - path: cache.yml\nservices:\n  web:\n    image: busybox:1\n    networks: [back]\n    depends_on: [db]\n";
    let c = convert_in(dir.path(), text).unwrap();
    let all = containers(&c);
    assert_eq!(names(&all), ["web", "db", "cache", "nested"]);
    let db = spec_of(&all, "db");
    assert_eq!(
        db.image, "busybox:1.36",
        "interpolated with the included project's .env"
    );
    assert_eq!(
        db.volumes,
        [mount(
            VolumeType::Bind,
            Some(&path_in(dir.path(), "db/init")),
            "/init",
            false
        )],
        "relative to the included file's directory"
    );
    assert_eq!(db.network.as_deref(), Some("inc-back"));
    assert_eq!(spec_of(&all, "web").network.as_deref(), Some("inc-back"));
    assert_eq!(
        spec_of(&all, "web").depends_on,
        [dep("db", DependencyCondition::Started)]
    );

    let err = convert_in(
        dir.path(),
        "include: [cache.yml]\nservices:\n  cache: {image: y}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "docker-compose.yml: services.cache: also defined by the included file {}; rename one of them",
            path_in(dir.path(), "cache.yml")
        )
    );
    let err = convert_in(
        dir.path(),
        "include: [loop-a.yml]\nservices:\n  s: {image: y}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("include forms a cycle"), "{err}");
    let err = convert_in(
        dir.path(),
        "include: [missing.yml]\nservices:\n  s: {image: y}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "docker-compose.yml: include[0].path: {} does not exist",
            path_in(dir.path(), "missing.yml")
        )
    );
}

// ---------------------------------------------------------------------------------------------
// No panics on arbitrary input
// ---------------------------------------------------------------------------------------------

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn never_panics_on_service_fields(
        key in proptest::sample::select(vec![
            "ports", "volumes", "command", "entrypoint", "environment", "healthcheck", "restart",
            "deploy", "labels", "tmpfs", "networks", "depends_on", "mem_limit", "cpus", "expose",
            "stop_grace_period", "build", "env_file", "profiles", "secrets", "configs",
            "extends",
        ]),
        value in "[ -~]{0,30}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("services:\n  s:\n    image: x\n    {key}: {value:?}\n");
        let _ = convert_in(dir.path(), &text);
        let text = format!("services:\n  s:\n    image: x\n    {key}: [{value:?}]\n");
        let _ = convert_in(dir.path(), &text);
        let text = format!("include: [{value:?}]\nsecrets:\n  s: {{file: {value:?}}}\nnetworks:\n  n: {{ipam: {{config: [{{subnet: {value:?}}}]}}}}\nservices:\n  s: {{image: x, networks: [n], secrets: [s]}}\n");
        let _ = convert_in(dir.path(), &text);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip: the same file through docker-compose and through convert + converge
// ---------------------------------------------------------------------------------------------

/// `docker-compose` (Debian's Python 1.29), or `None` when it is not installed.
fn docker_compose() -> Option<PathBuf> {
    let out = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from("docker-compose"))
}

/// Runs `docker-compose -p <project> -f <file> <args>`, panicking with its output on failure.
fn compose(project: &str, file: &Path, args: &[&str]) {
    let run = compose_run(project, file, args);
    assert!(run.success(), "docker-compose {args:?}: {run}");
}

/// Runs `docker-compose -p <project> -f <file> <args>`.
fn compose_run(project: &str, file: &Path, args: &[&str]) -> common::Run {
    common::run(
        std::process::Command::new("docker-compose")
            .args(["--no-ansi", "-p", project, "-f"])
            .arg(file)
            .args(args),
    )
}

/// Takes the Compose project down (containers, networks, volumes, of every profile) even
/// when the test fails.
struct ComposeProject {
    project: String,
    file: PathBuf,
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .args(["--no-ansi", "-p", &self.project, "-f"])
            .arg(&self.file)
            .env("COMPOSE_PROFILES", "*")
            .args(["down", "-v", "--remove-orphans", "-t", "1"])
            .output();
        // `--profile "*"` is a Compose v2 spelling: 1.29 needs the names. Remove what is left.
        let filter = format!("label=com.docker.compose.project={}", self.project);
        for kind in ["container", "network", "volume"] {
            let ls = std::process::Command::new("docker")
                .args([kind, "ls", "-q", "--filter", &filter])
                .args(if kind == "container" {
                    &["-a"][..]
                } else {
                    &[][..]
                })
                .output();
            if let Ok(out) = ls {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let mut rm = std::process::Command::new("docker");
                    rm.args([kind, "rm"]);
                    if kind != "network" {
                        rm.arg("-f");
                    }
                    let _ = rm.arg(id).output();
                }
            }
        }
    }
}

/// A TCP port free on loopback right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Inspections of the containers carrying `label`, by a name derived with `key`.
async fn inspect_labelled(
    docker: &bollard::Docker,
    label: &str,
    key: impl Fn(&serde_json::Value) -> String,
) -> BTreeMap<String, serde_json::Value> {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for id in list.into_iter().filter_map(|c| c.id) {
        let inspect = docker.inspect_container(&id, None).await.unwrap();
        let value = serde_json::to_value(&inspect).unwrap();
        out.insert(key(&value), value);
    }
    out
}

/// The configuration that matters for the comparison (labels aside, as Compose adds its
/// own), normalised where the two spell the same thing differently: networks and volumes by
/// the name after the project (`<project>_front` under Compose, `<project>-front` here),
/// aliases without the container ID the daemon or Compose adds, secrets (bind mounts under
/// Compose, copied files here) left to the caller.
fn comparable(v: &serde_json::Value, project: &str) -> serde_json::Value {
    use serde_json::{json, Value};
    let at = |p: &str| v.pointer(p).cloned().unwrap_or(Value::Null);
    let suffix = |name: &Value| -> Value {
        let n = name.as_str().unwrap_or_default();
        let short = n
            .strip_prefix(&format!("{project}_"))
            .or_else(|| n.strip_prefix(&format!("{project}-")))
            .unwrap_or(n);
        json!(short)
    };
    let id = at("/Id").as_str().unwrap_or_default().to_string();
    let mut networks = serde_json::Map::new();
    if let Some(map) = at("/NetworkSettings/Networks").as_object() {
        for (name, endpoint) in map {
            let mut aliases: Vec<String> = endpoint["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .filter(|a| !id.starts_with(a))
                .map(str::to_string)
                .collect();
            aliases.sort();
            aliases.dedup();
            let key = suffix(&json!(name))
                .as_str()
                .unwrap_or_default()
                .to_string();
            networks.insert(key, json!(aliases));
        }
    }
    // The network a container is created on: only meaningful with one network (Compose 1.29
    // and dockwright may pick a different first one of several; all are connected anyway).
    let network_mode = if networks.len() > 1 {
        json!("(several)")
    } else {
        suffix(&at("/HostConfig/NetworkMode"))
    };
    let mut env: Vec<Value> = at("/Config/Env").as_array().cloned().unwrap_or_default();
    env.sort_by_key(|e| e.to_string());
    // An empty host address and 0.0.0.0 both publish on every IPv4 address.
    let mut ports = at("/HostConfig/PortBindings");
    if let Some(map) = ports.as_object_mut() {
        for bindings in map.values_mut().filter_map(Value::as_array_mut) {
            for b in bindings {
                if b["HostIp"] == json!("") {
                    b["HostIp"] = json!("0.0.0.0");
                }
            }
        }
    }
    let mut mounts: Vec<Value> = at("/Mounts")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            !m["Destination"]
                .as_str()
                .unwrap_or_default()
                .starts_with("/run/secrets/")
        })
        .map(|m| {
            json!({
                "Type": m["Type"],
                "Source": if m["Type"] == json!("volume") { suffix(&m["Name"]) } else { m["Source"].clone() },
                "Destination": m["Destination"],
                "RW": m["RW"],
            })
        })
        .collect();
    mounts.sort_by_key(|m| m["Destination"].to_string());
    if ports.as_object().is_some_and(|m| m.is_empty()) {
        ports = Value::Null;
    }
    // Without `hostname` the daemon uses the short container ID, which differs by nature.
    let mut hostname = at("/Config/Hostname");
    let id = at("/Id");
    if let (Some(h), Some(id)) = (hostname.as_str(), id.as_str()) {
        if id.starts_with(h) {
            hostname = json!("(container id)");
        }
    }
    let mut restart = at("/HostConfig/RestartPolicy");
    if restart["Name"] == json!("") {
        restart["Name"] = json!("no");
    }
    // Zero durations mean "Docker's default", whether sent as 0 or left out.
    let mut health = at("/Config/Healthcheck");
    if let Some(map) = health.as_object_mut() {
        map.retain(|_, v| !(v.is_null() || *v == json!(0)));
    }
    json!({
        "image": at("/Image"),
        "entrypoint": at("/Config/Entrypoint"),
        "cmd": at("/Config/Cmd"),
        "env": env,
        "workingDir": at("/Config/WorkingDir"),
        "user": at("/Config/User"),
        "hostname": hostname,
        "healthcheck": health,
        "ports": ports,
        "mounts": mounts,
        "tmpfs": at("/HostConfig/Tmpfs"),
        "restart": restart,
        "nanoCpus": at("/HostConfig/NanoCpus"),
        "memory": at("/HostConfig/Memory"),
        "network": network_mode,
        "networks": networks,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_matches_docker_compose() {
    if docker_compose().is_none() {
        // CI installs it (scripts/lib.sh); only a developer machine may lack it.
        assert!(
            std::env::var("CI").is_err(),
            "docker-compose is missing in CI (scripts/lib.sh DW_PACKAGES installs it)"
        );
        eprintln!("skipped: docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    common::ensure_test_image().await;
    let docker = common::docker().await;
    let owner = common::TestOwner::new("convert-rt");
    let project = common::unique("dwrt");
    // Service names become container names; unique ones keep parallel runs apart.
    let db = common::unique("rtdb");
    let web = common::unique("rtweb");
    let job = common::unique("rtjob");
    let (tcp_port, udp_port) = (free_port(), free_port());

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "hi\n").unwrap();
    std::fs::write(
        dir.path().join("web.env"),
        "# web settings\nexport EXPORTED=1\nGREETING=\"hello world\"\nSINGLE='a $b'\nPLAIN=plain\n",
    )
    .unwrap();
    let image = common::TEST_IMAGE;
    let text = format!(
        r#"services:
  {db}:
    image: {image}
    command: ["sh", "-c", "mkdir -p /data && exec httpd -f -p 5432 -h /data"]
    environment:
      ROLE: db
      PORT: 5432
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      timeout: 2s
      retries: 3
    restart: unless-stopped
    deploy:
      resources:
        limits:
          cpus: "0.5"
          memory: 64M
    labels:
      com.example.role: db
  {web}:
    image: {image}
    entrypoint: ["/bin/sh", "-c"]
    command: ["exec httpd -f -p 8080 -h /www"]
    working_dir: /www
    user: "0"
    hostname: web-host
    env_file: web.env
    environment:
      - MODE=test
      - PLAIN=overridden
    ports:
      - "127.0.0.1:{tcp_port}:8080"
      - "{udp_port}:8081/udp"
      - "8082"
    volumes:
      - ./www:/www:ro
      - type: tmpfs
        target: /cache
        tmpfs:
          size: 1048576
    depends_on:
      {db}:
        condition: service_healthy
    restart: on-failure:3
  {job}:
    image: {image}
    command: echo done
    restart: "no"
    mem_limit: 16m
volumes:
  data:
"#
    );
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, &text).unwrap();

    // Compose's containers.
    let guard = ComposeProject {
        project: project.clone(),
        file: file.clone(),
    };
    compose(&project, &file, &["up", "-d"]);
    let by_service = |v: &serde_json::Value| {
        v.pointer("/Config/Labels/com.docker.compose.service")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let from_compose = inspect_labelled(
        &docker,
        &format!("com.docker.compose.project={project}"),
        by_service,
    )
    .await;
    drop(guard);

    // Ours: convert, write as `convert -o` would, load and converge.
    let mut environment = test_env();
    environment.insert("COMPOSE_PROJECT_NAME".into(), project.clone());
    let conversion = convert_with(
        &text,
        &ConvertOptions {
            file_label: "docker-compose.yml".into(),
            base_dir: dir.path().to_path_buf(),
            environment: Some(environment),
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        warnings(&conversion),
        [format!("volumes.data: becomes the Volume \"{project}-data\" (resource names are DNS labels); Compose names it \"{project}_data\", whose data is not reused: to keep using that, declare it external: true with name: {project}_data")]
    );
    let desired = load_documents(&conversion).unwrap();
    let client = dockwright::docker::Docker::connect().await.unwrap();
    let runner = dockwright::docker::DockerRunner::new(client.clone(), owner.name());
    let mut options = dockwright::converge::ConvergeOptions::new(owner.name());
    // `./www` is a bind mount: the safe-default policy refuses it unless the operator's
    // policy allows its directory (as `apply --policy` would).
    options.gate = dockwright::policy::Gate::new(
        dockwright::policy::Policy {
            allowed_bind_prefixes: vec![dir.path().canonicalize().unwrap().display().to_string()],
            ..Default::default()
        },
        None,
    );
    let report = dockwright::converge::converge(&client, &runner, &desired, &options, &mut |_| {})
        .await
        .unwrap();
    assert!(report.converged(), "{report:?}");
    let by_resource = |v: &serde_json::Value| {
        v.pointer("/Config/Labels")
            .and_then(|l| l.get(dockwright::labels::RESOURCE))
            .and_then(|s| s.as_str())
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_default()
            .to_string()
    };
    let from_dockwright = inspect_labelled(&docker, &owner.label_filter(), by_resource).await;

    assert_eq!(
        from_compose.keys().collect::<Vec<_>>(),
        from_dockwright.keys().collect::<Vec<_>>()
    );
    for (service, compose_inspect) in &from_compose {
        let ours = comparable(&from_dockwright[service], &project);
        let theirs = comparable(compose_inspect, &project);
        assert_eq!(
            ours,
            theirs,
            "service {service}:\nours   {}\ncompose {}",
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
    }
    // The comparison compares something: the fields the file sets are present.
    let web_config = comparable(&from_compose[&web], &project);
    assert_eq!(web_config["hostname"], "web-host");
    assert_eq!(web_config["ports"].as_object().map(|p| p.len()), Some(3));
    assert_eq!(web_config["mounts"].as_array().map(|m| m.len()), Some(2));
    assert!(web_config["env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("GREETING=hello world")));
    assert_eq!(web_config["restart"]["MaximumRetryCount"], 3);
    assert_eq!(
        comparable(&from_compose[&db], &project)["memory"],
        64 * 1024 * 1024
    );
}

/// The same project through `docker-compose` and through convert + converge: two networks
/// (one internal) with aliases on each, a named volume, a secret from a file, a restart policy
/// and memory limit, `extends` from another file, and profiles (one enabled, one not)
/// respected by both; a dependency on a service whose profile is off refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_by_side_networks_volumes_secrets_and_profiles() {
    if docker_compose().is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "docker-compose is missing in CI (scripts/lib.sh DW_PACKAGES installs it)"
        );
        eprintln!("skipped: docker-compose is not installed (apt-get install docker-compose)");
        return;
    }
    common::ensure_test_image().await;
    let docker = common::docker().await;
    let owner = common::TestOwner::new("convert-sbs");
    let project = common::unique("dwsbs");
    let api = common::unique("sbsapi");
    let web = common::unique("sbsweb");
    let debug = common::unique("sbsdebug");
    let tools = common::unique("sbstools");
    let port = free_port();
    let image = common::TEST_IMAGE;
    let dir = project_dir_with(&[
        ("token.txt", "t0ken\n"),
        (
            "common/base.yml",
            "services:\n  base:\n    environment: [FROM_BASE=1, SHARED=base]\n    mem_limit: 24m\n    restart: on-failure:4\n",
        ),
    ]);
    let text = format!(
        r#"services:
  {api}:
    image: {image}
    command: ["httpd", "-f", "-p", "8080"]
    environment:
      ROLE: api
    networks:
      front:
        aliases: [api-front]
      back:
        aliases: [api-back, store]
    volumes:
      - data:/data
    secrets:
      - token
    restart: unless-stopped
    mem_limit: 32m
  {web}:
    image: {image}
    command: ["httpd", "-f", "-p", "8080"]
    ports:
      - "127.0.0.1:{port}:8080"
    networks: [front]
    depends_on: [{api}]
    restart: on-failure:2
  {debug}:
    image: {image}
    command: ["sleep", "600"]
    profiles: [debug]
  {tools}:
    extends:
      file: common/base.yml
      service: base
    image: {image}
    command: ["sleep", "600"]
    environment:
      SHARED: tools
    profiles: [tools]
    networks:
      back:
        aliases: [toolbox]
networks:
  front: {{}}
  back:
    internal: true
volumes:
  data: {{}}
secrets:
  token:
    file: ./token.txt
"#
    );
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, &text).unwrap();

    let guard = ComposeProject {
        project: project.clone(),
        file: file.clone(),
    };
    compose(&project, &file, &["--profile", "tools", "up", "-d"]);
    let by_service = |v: &serde_json::Value| {
        v.pointer("/Config/Labels/com.docker.compose.service")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let from_compose = inspect_labelled(
        &docker,
        &format!("com.docker.compose.project={project}"),
        by_service,
    )
    .await;
    let compose_secret = exec_cat(&from_compose[&api], "/run/secrets/token");
    drop(guard);

    let mut environment = test_env();
    environment.insert("COMPOSE_PROJECT_NAME".into(), project.clone());
    let conversion = convert_with(
        &text,
        &ConvertOptions {
            file_label: "docker-compose.yml".into(),
            base_dir: dir.path().to_path_buf(),
            environment: Some(environment),
            profiles: vec!["tools".into()],
            output_dir: None,
        },
    )
    .unwrap();
    let desired = load_documents(&conversion).unwrap();
    let client = dockwright::docker::Docker::connect().await.unwrap();
    let runner = dockwright::docker::DockerRunner::new(client.clone(), owner.name());
    let options = dockwright::converge::ConvergeOptions::new(owner.name());
    let report = dockwright::converge::converge(&client, &runner, &desired, &options, &mut |_| {})
        .await
        .unwrap();
    assert!(report.converged(), "{report:?}");
    let by_resource = |v: &serde_json::Value| {
        v.pointer("/Config/Labels")
            .and_then(|l| l.get(dockwright::labels::RESOURCE))
            .and_then(|s| s.as_str())
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_default()
            .to_string()
    };
    let from_dockwright = inspect_labelled(&docker, &owner.label_filter(), by_resource).await;

    assert_eq!(
        from_compose.keys().collect::<Vec<_>>(),
        from_dockwright.keys().collect::<Vec<_>>(),
        "the same services, by profile"
    );
    assert!(!from_compose.contains_key(&debug) && from_compose.contains_key(&tools));
    for (service, compose_inspect) in &from_compose {
        let ours = comparable(&from_dockwright[service], &project);
        let theirs = comparable(compose_inspect, &project);
        assert_eq!(
            ours,
            theirs,
            "service {service}:\nours   {}\ncompose {}",
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
    }
    // The comparison compares something.
    let api_config = comparable(&from_compose[&api], &project);
    assert_eq!(
        api_config["networks"],
        serde_json::json!({
            "back": ["api-back", api.as_str(), "store"],
            "front": ["api-front", api.as_str()],
        })
    );
    assert_eq!(api_config["memory"], 32 * 1024 * 1024);
    assert_eq!(api_config["restart"]["Name"], "unless-stopped");
    assert_eq!(api_config["mounts"][0]["Source"], "data");
    // `extends` from another file merged alike: environment by name, the rest inherited.
    let tools_config = comparable(&from_compose[&tools], &project);
    assert!(tools_config["env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SHARED=tools")));
    assert_eq!(tools_config["memory"], 24 * 1024 * 1024);
    // The secret: a bind mount under Compose, a copied file (0400) here; the same content.
    assert_eq!(compose_secret, "t0ken\n");
    assert_eq!(
        exec_cat(&from_dockwright[&api], "/run/secrets/token"),
        compose_secret
    );
    // The internal network is internal on both sides.
    let internal = docker
        .inspect_network(&format!("{project}-back"), None)
        .await
        .unwrap()
        .internal;
    assert_eq!(internal, Some(true));

    // A dependency on a service whose profile is off: both refuse.
    let bad = dir.path().join("bad.yml");
    let bad_project = format!("{project}-bad");
    let bad_text = format!(
        "services:\n  {web}:\n    image: {image}\n    depends_on: [{debug}]\n  {debug}:\n    image: {image}\n    profiles: [debug]\n"
    );
    std::fs::write(&bad, &bad_text).unwrap();
    let _bad_guard = ComposeProject {
        project: bad_project.clone(),
        file: bad.clone(),
    };
    let run = compose_run(&bad_project, &bad, &["up", "--no-start"]);
    assert!(!run.success(), "{run}");
    assert!(
        run.to_string()
            .contains("is not enabled by the active profiles"),
        "{run}"
    );
    let err = convert_in(dir.path(), &bad_text).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not enabled by the active profiles"),
        "{err}"
    );
}

/// A temporary directory holding `files`.
fn project_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    project(files)
}

/// `docker exec <container> cat <path>`.
fn exec_cat(inspect: &serde_json::Value, path: &str) -> String {
    let id = inspect["Id"].as_str().unwrap();
    let out = std::process::Command::new("docker")
        .args(["exec", id, "cat", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "cat {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

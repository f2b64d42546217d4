//! The file source end to end, without Docker: manifests on disk → `DesiredState`, or errors
//! that name file, document, resource and field. Plus a no-panic property test.

use std::path::{Path, PathBuf};

use dockwright::api::{DependencyCondition, DesiredRunState, PullPolicy, RestartPolicy};
use dockwright::desired::{Health, Kind, Mount, PortBinding, ResourceKey};
use dockwright::source::{
    build_desired, expand_paths, load_paths, parse_file, parse_str, ManifestError,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const HEADER: &str = "apiVersion: dockwright.dev/v1alpha1\n";

/// A temporary directory of manifest files.
struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tree = Self { dir };
        for (path, content) in files {
            tree.write(path, content);
        }
        tree
    }

    fn write(&self, path: &str, content: &str) {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn container(name: &str, spec: &str) -> String {
    format!(
        "{HEADER}kind: Container\nmetadata:\n  name: {name}\nspec:\n{}",
        indent(spec)
    )
}

fn image(name: &str, spec: &str) -> String {
    format!(
        "{HEADER}kind: Image\nmetadata:\n  name: {name}\nspec:\n{}",
        indent(spec)
    )
}

fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

/// Manifest tree of a case: relative path and content.
type Files = Vec<(&'static str, String)>;

/// What an expected error must say.
struct Want {
    /// Exact location, `{dir}` replaced by the tree's root.
    location: &'static str,
    resource: Option<&'static str>,
    field: Option<&'static str>,
    /// A piece of the message, `{dir}` replaced by the tree's root.
    message: &'static str,
}

fn assert_has_error(case: &str, errors: &[ManifestError], tree: &Tree, want: &Want) {
    let root = tree.root().display().to_string();
    let location = want.location.replace("{dir}", &root);
    let message = want.message.replace("{dir}", &root);
    let found = errors.iter().any(|e| {
        e.location == location
            && e.resource.as_deref() == want.resource
            && e.field.as_deref() == want.field
            && e.message.contains(&message)
    });
    assert!(
        found,
        "{case}: no error at {location} / {:?} / {:?} containing {:?}; got:\n{}",
        want.resource,
        want.field,
        message,
        errors
            .iter()
            .map(|e| format!("  {e:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn bad_inputs_name_file_resource_and_field() {
    let web = container("web", "image: busybox:1.36");
    let cases: Vec<(&str, Files, Want)> = vec![
        (
            "invalid YAML",
            vec![("a.yaml", format!("{HEADER}kind: Container\nmetadata: {{name: web\n"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: None,
                field: None,
                message: "invalid YAML: ",
            },
        ),
        (
            "invalid YAML in a later document keeps file line numbers",
            vec![("a.yaml", format!("{web}---\n# second\n{HEADER}kind: [\n"))],
            Want {
                location: "{dir}/a.yaml (document 2, line 7)",
                resource: None,
                field: None,
                message: "line 10",
            },
        ),
        (
            "unknown kind",
            vec![("a.yaml", format!("{HEADER}kind: Foo\nmetadata: {{name: x}}\nspec: {{}}\n"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: None,
                field: Some("kind"),
                message: "unknown kind \"Foo\"; expected Image, Container, Network or Volume",
            },
        ),
        (
            "wrong apiVersion",
            vec![("a.yaml", "apiVersion: v1\nkind: Container\nmetadata: {name: x}\nspec: {image: a}\n".to_string())],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: None,
                field: Some("apiVersion"),
                message: "unsupported apiVersion \"v1\"; expected dockwright.dev/v1alpha1",
            },
        ),
        (
            "unknown spec field",
            vec![("a.yaml", container("web", "image: busybox\nimagePullPolicyy: Always"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/web"),
                field: Some("spec.imagePullPolicyy"),
                message: "unknown field `imagePullPolicyy`",
            },
        ),
        (
            "unknown nested field",
            vec![("a.yaml", container("web", "image: busybox\nports:\n  - containerPort: 80\n    hostport: 80"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/web"),
                field: Some("spec.ports[0].hostport"),
                message: "unknown field `hostport`",
            },
        ),
        (
            "unknown top-level field",
            vec![("a.yaml", format!("{web}extra: 1\n"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/web"),
                field: Some("extra"),
                message: "unknown field `extra`",
            },
        ),
        (
            "unknown metadata field",
            vec![("a.yaml", format!("{HEADER}kind: Image\nmetadata: {{name: x, lables: {{}}}}\nspec: {{ref: a}}\n"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Image/x"),
                field: Some("metadata.lables"),
                message: "unknown field `lables`",
            },
        ),
        (
            "wrong type",
            vec![("a.yaml", format!("{web}---\n{}", container("api", "image: busybox\nports:\n  - containerPort: 80\n    hostPort: \"80\"")))],
            Want {
                location: "{dir}/a.yaml (document 2, line 7)",
                resource: Some("Container/api"),
                field: Some("spec.ports[0].hostPort"),
                message: "invalid type: string \"80\", expected u16",
            },
        ),
        (
            "number where a string belongs gets a hint",
            vec![("a.yaml", container("web", "image: busybox\nenv:\n  - {name: PORT, value: 8080}"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/web"),
                field: Some("spec.env[0].value"),
                message: "expected a string; quote the value",
            },
        ),
        (
            "missing required field",
            vec![("a.yaml", container("web", "replicas: 1"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/web"),
                field: Some("spec.image"),
                message: "missing",
            },
        ),
        (
            "missing name",
            vec![("a.yaml", format!("{HEADER}kind: Container\nmetadata: {{}}\nspec: {{image: a}}\n"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container"),
                field: Some("metadata.name"),
                message: "missing",
            },
        ),
        (
            "invalid name",
            vec![("a.yaml", container("Web_1", "image: busybox"))],
            Want {
                location: "{dir}/a.yaml (document 1, line 1)",
                resource: Some("Container/Web_1"),
                field: Some("metadata.name"),
                message: "only lowercase letters, digits and '-'",
            },
        ),
        (
            "duplicate names across files",
            vec![("a.yaml", web.clone()), ("b/c.yaml", web.clone())],
            Want {
                location: "{dir}/b/c.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("metadata.name"),
                message: "duplicate Container \"web\" in namespace default: already declared in {dir}/a.yaml (document 1)",
            },
        ),
        (
            "invalid image reference",
            vec![("a.yaml", container("web", "image: Busybox:1"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.image"),
                message: "invalid image reference \"Busybox:1\"",
            },
        ),
        (
            "invalid Image ref",
            vec![("a.yaml", image("base", "ref: \"a b\""))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Image/base"),
                field: Some("spec.ref"),
                message: "invalid image reference",
            },
        ),
        (
            "host port clash between resources",
            vec![
                ("a.yaml", container("api", "image: busybox:1\nports: [{containerPort: 80, hostPort: 8080}]")),
                (
                    "b.yaml",
                    container("web", "image: busybox:1\nports:\n  - {containerPort: 81}\n  - {containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}"),
                ),
            ],
            Want {
                location: "{dir}/b.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.ports[1].hostPort"),
                message: "host port 8080/tcp on 127.0.0.1 is already published by Container/api at spec.ports[0].hostPort",
            },
        ),
        (
            "host port clash within one resource",
            vec![(
                "a.yaml",
                container("web", "image: busybox:1\nports:\n  - {containerPort: 80, hostPort: 53, protocol: UDP}\n  - {containerPort: 81, hostPort: 53, protocol: UDP}"),
            )],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.ports[1].hostPort"),
                message: "host port 53/udp on all addresses is already published by Container/web at spec.ports[0].hostPort",
            },
        ),
        (
            "fixed host port with replicas",
            vec![("a.yaml", container("web", "image: busybox:1\nreplicas: 2\nports: [{containerPort: 80, hostPort: 8080}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.ports[0].hostPort"),
                message: "cannot be shared by 2 replicas",
            },
        ),
        (
            "container name clash between replicas and a resource",
            vec![(
                "a.yaml",
                format!("{}---\n{}", container("web", "image: busybox:1\nreplicas: 2"), container("web-0", "image: busybox:1")),
            )],
            Want {
                location: "{dir}/a.yaml (document 2)",
                resource: Some("Container/web-0"),
                field: Some("metadata.name"),
                message: "Docker container name \"web-0\" (replica 0) is also the name of Container/web replica 0",
            },
        ),
        (
            "missing bind source",
            vec![("m/a.yaml", container("web", "image: busybox:1\nvolumes: [{type: Bind, source: ./nope, target: /x}]"))],
            Want {
                location: "{dir}/m/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.volumes[0].source"),
                message: "missing volume source: {dir}/m/nope does not exist",
            },
        ),
        (
            "named volume without source",
            vec![("a.yaml", container("web", "image: busybox:1\nvolumes: [{target: /x}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.volumes[0].source"),
                message: "missing",
            },
        ),
        (
            "relative mount target",
            vec![("a.yaml", container("web", "image: busybox:1\nvolumes: [{type: Tmpfs, target: tmp}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.volumes[0].target"),
                message: "must be an absolute path",
            },
        ),
        (
            "missing files source",
            vec![("m/a.yaml", container("web", "image: busybox:1\nfiles: [{path: /etc/x.conf, source: conf/x.conf}]"))],
            Want {
                location: "{dir}/m/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.files[0].source"),
                message: "missing files source: {dir}/m/conf/x.conf does not exist",
            },
        ),
        (
            "files with both content and source",
            vec![("a.yaml", container("web", "image: busybox:1\nfiles: [{path: /x, source: a, content: b}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.files[0]"),
                message: "exactly one of content and source",
            },
        ),
        (
            "bad file mode",
            vec![("a.yaml", container("web", "image: busybox:1\nfiles: [{path: /x, content: b, mode: \"0999\"}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.files[0].mode"),
                message: "not an octal mode",
            },
        ),
        (
            "unknown dependency",
            vec![("a.yaml", container("web", "image: busybox:1\ndependsOn: [{name: db}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.dependsOn[0].name"),
                message: "unknown dependency: no Container \"db\" in namespace default",
            },
        ),
        (
            "dependency cycle",
            vec![(
                "a.yaml",
                format!(
                    "{}---\n{}",
                    container("aa", "image: busybox:1\ndependsOn: [{name: bb}]"),
                    container("bb", "image: busybox:1\ndependsOn: [{name: aa}]")
                ),
            )],
            Want {
                location: "{dir}/a.yaml (document 2)",
                resource: Some("Container/bb"),
                field: Some("spec.dependsOn[0].name"),
                message: "dependency cycle: Container/aa -> Container/bb -> Container/aa",
            },
        ),
        (
            "healthy dependency without healthcheck",
            vec![(
                "a.yaml",
                format!(
                    "{}---\n{}",
                    container("db", "image: busybox:1"),
                    container("app", "image: busybox:1\ndependsOn: [{name: db, condition: Healthy}]")
                ),
            )],
            Want {
                location: "{dir}/a.yaml (document 2)",
                resource: Some("Container/app"),
                field: Some("spec.dependsOn[0].name"),
                message: "has no healthcheck",
            },
        ),
        (
            "reserved label",
            vec![("a.yaml", container("web", "image: busybox:1\nlabels: {dockwright.dev/owner: me}"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.labels.dockwright.dev/owner"),
                message: "reserved",
            },
        ),
        (
            "duplicate env",
            vec![("a.yaml", container("web", "image: busybox:1\nenv: [{name: A, value: x}, {name: A}]"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.env[1].name"),
                message: "duplicate environment variable \"A\" (also spec.env[0])",
            },
        ),
        (
            "bad quantity",
            vec![("a.yaml", container("web", "image: busybox:1\nresources: {limits: {memory: 1MB}}"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.resources.limits.memory"),
                message: "invalid quantity \"1MB\"",
            },
        ),
        (
            "pull policy beside an Image resource",
            vec![(
                "a.yaml",
                format!("{}---\n{}", image("base", "ref: busybox:1"), container("web", "image: base\nimagePullPolicy: Always")),
            )],
            Want {
                location: "{dir}/a.yaml (document 2)",
                resource: Some("Container/web"),
                field: Some("spec.imagePullPolicy"),
                message: "set spec.pullPolicy on the Image",
            },
        ),
        (
            "healthcheck with both command and shell",
            vec![("a.yaml", container("web", "image: busybox:1\nhealthcheck: {command: [a], shell: b}"))],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/web"),
                field: Some("spec.healthcheck"),
                message: "exactly one of command and shell",
            },
        ),
        (
            "namespaced resource label",
            vec![(
                "a.yaml",
                format!("{HEADER}kind: Container\nmetadata: {{name: web, namespace: team}}\nspec: {{image: \"x y\"}}\n"),
            )],
            Want {
                location: "{dir}/a.yaml (document 1)",
                resource: Some("Container/team/web"),
                field: Some("spec.image"),
                message: "invalid image reference",
            },
        ),
    ];
    for (name, files, want) in cases {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let tree = Tree::new(&files);
        let errors = match load_paths(&[tree.root()]) {
            Ok(state) => panic!("{name}: expected an error, got {state:?}"),
            Err(e) => e.0,
        };
        assert_has_error(name, &errors, &tree, &want);
    }
}

#[test]
fn nonexistent_path_is_an_error() {
    let tree = Tree::new(&[]);
    let missing = tree.path("nope.yaml");
    let err = load_paths(std::slice::from_ref(&missing)).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].location, missing.display().to_string());
    assert_eq!(err.0[0].message, "no such file or directory");
}

#[test]
fn all_errors_of_all_files_are_collected() {
    let tree = Tree::new(&[
        ("a.yaml", &format!("{HEADER}kind: Nope\n")),
        ("b.yaml", "key: [unclosed\n"),
        ("c.yaml", &container("web", "image: busybox\nbogus: 1")),
    ]);
    let errors = load_paths(&[tree.root()]).unwrap_err().0;
    let files: Vec<&str> = errors
        .iter()
        .map(|e| e.location.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "a.yaml (document 1, line 1)",
            "b.yaml (document 1, line 1)",
            "c.yaml (document 1, line 1)"
        ]
    );
    // Display: location, resource, field, message.
    assert_eq!(
        errors[2].to_string(),
        format!(
            "{}/c.yaml (document 1, line 1): Container/web: spec.bogus: unknown field `bogus`, expected one of {}",
            tree.root().display(),
            errors[2].message.split_once("expected one of ").unwrap().1
        )
    );
}

#[test]
fn hostile_inputs_are_refused_without_panic() {
    let p = Path::new("hostile.yaml");
    // Billion laughs: alias expansion is bounded.
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let err = parse_str(&laughs, p).unwrap_err();
    assert!(
        err.0[0].message.contains("alias") || err.0[0].message.contains("limit"),
        "{err}"
    );
    // Deep nesting.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let err = parse_str(&deep, p).unwrap_err();
    assert!(err.0[0].message.contains("parser limits"), "{err}");
    // Too many documents.
    let many = "---\na: 1\n".repeat(1001);
    let err = parse_str(&many, p).unwrap_err();
    assert_eq!(
        err.0[0].message,
        "file holds more than the limit of 1000 documents; split it"
    );
    // Too large.
    let big = "#".repeat(4 * 1024 * 1024 + 1);
    let err = parse_str(&big, p).unwrap_err();
    assert!(err.0[0].message.contains("larger than the limit"), "{err}");
    let tree = Tree::new(&[("big.yaml", &big)]);
    let err = parse_file(&tree.path("big.yaml")).unwrap_err();
    assert!(err.0[0].message.contains("larger than the limit"), "{err}");
    // Not UTF-8.
    std::fs::write(tree.path("bin.yaml"), b"kind: \xff\xfe\n").unwrap();
    let err = parse_file(&tree.path("bin.yaml")).unwrap_err();
    assert_eq!(err.0[0].message, "not valid UTF-8 (byte 6)");
}

#[test]
fn empty_documents_and_comments_are_skipped() {
    let text = format!(
        "# header\n---\n---\n# nothing\n---\n{}...\n---\n",
        image("base", "ref: busybox")
    );
    let loaded = parse_str(&text, Path::new("x.yaml")).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].origin,
        dockwright::desired::Origin::File {
            path: PathBuf::from("x.yaml"),
            document: 3
        }
    );
    assert!(parse_str("", Path::new("x.yaml")).unwrap().is_empty());
    assert!(parse_str("# just a comment\n", Path::new("x.yaml"))
        .unwrap()
        .is_empty());
}

#[test]
fn status_is_ignored() {
    let text = format!(
        "{}status: {{readyReplicas: 1/1}}\n",
        container("web", "image: busybox:1")
    );
    let loaded = parse_str(&text, Path::new("x.yaml")).unwrap();
    assert_eq!(loaded.len(), 1);
}

#[test]
fn expand_paths_walks_directories_sorted_skipping_hidden() {
    let tree = Tree::new(&[
        ("b.yaml", ""),
        ("a.yml", ""),
        ("notes.txt", ""),
        (".hidden.yaml", ""),
        (".git/x.yaml", ""),
        ("sub/z.yaml", ""),
        ("sub/deeper/c.yaml", ""),
        ("other/given.conf", ""),
    ]);
    let got = expand_paths(&[
        tree.root(),
        tree.path("other/given.conf"),
        tree.path("b.yaml"),
    ])
    .unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|p| p.strip_prefix(tree.root()).unwrap().display().to_string())
        .collect();
    // A file reached twice (b.yaml) is listed once; a file given explicitly is taken as is.
    assert_eq!(
        rel,
        [
            "a.yml",
            "b.yaml",
            "sub/deeper/c.yaml",
            "sub/z.yaml",
            "other/given.conf"
        ]
    );
}

#[test]
fn expand_paths_skips_compose_files_in_directories() {
    let tree = Tree::new(&[
        ("app/docker-compose.yml", ""),
        ("app/docker-compose.prod.yaml", ""),
        ("app/compose.yaml", ""),
        ("app/web.yaml", ""),
        ("app/my-compose.yml", ""),
    ]);
    let got = expand_paths(&[tree.root(), tree.path("app/compose.yaml")]).unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|p| p.strip_prefix(tree.root()).unwrap().display().to_string())
        .collect();
    // Named explicitly, a Compose file is read like any other (and rejected by the parser).
    assert_eq!(
        rel,
        ["app/my-compose.yml", "app/web.yaml", "app/compose.yaml"]
    );
}

#[test]
fn expand_paths_survives_symlink_loops() {
    let tree = Tree::new(&[("d/a.yaml", "")]);
    std::os::unix::fs::symlink(tree.path("d"), tree.path("d/loop")).unwrap();
    let got = expand_paths(&[tree.root()]).unwrap();
    assert_eq!(got, [tree.path("d/a.yaml")]);
}

const FULL: &str = r#"apiVersion: dockwright.dev/v1alpha1
kind: Image
metadata:
  name: web
spec:
  ref: 127.0.0.1:5000/team/web:1.4
  pullPolicy: Never
---
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata:
  name: web
spec:
  image: web
  replicas: 2
  state: Stopped
  command: [httpd, -f]
  args: [-p, "8080"]
  env:
    - {name: MODE, value: prod}
    - {name: EMPTY}
  ports:
    - {containerPort: 8080}
    - {containerPort: 53, protocol: UDP}
  volumes:
    - {type: Volume, source: data, target: /data}
    - {type: Bind, source: ./static, target: /www, readOnly: true}
    - {type: Tmpfs, target: /tmp, sizeLimit: 64Mi}
  network: app
  networkAliases: [www]
  restartPolicy: OnFailure
  maxRestarts: 3
  healthcheck: {shell: "wget -q -O- localhost:8080", intervalSeconds: 5, retries: 0}
  resources: {limits: {cpu: 500m, memory: 256Mi}}
  files:
    - {path: /etc/app.conf, source: conf/app.conf, mode: "0600"}
    - {path: /etc/motd, content: hello}
  dependsOn: [{name: db, condition: Healthy}]
  stopGracePeriodSeconds: 20
---
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata: {name: db}
spec:
  image: busybox
  entrypoint: [/bin/sh]
  ports: [{containerPort: 5432, hostPort: 5432, hostIP: 127.0.0.1}]
  restartPolicy: Never
  healthcheck: {command: [/bin/true], timeoutSeconds: 2}
"#;

#[test]
fn good_manifests_normalise() {
    let tree = Tree::new(&[
        ("app/all.yaml", FULL),
        ("app/conf/app.conf", "listen 8080\n"),
    ]);
    std::fs::create_dir(tree.path("app/static")).unwrap();
    let state = load_paths(&[tree.root()]).unwrap();

    let image_key = ResourceKey::new(Kind::Image, "default", "web");
    let image = &state.images[&image_key];
    assert_eq!(image.reference, "127.0.0.1:5000/team/web:1.4");
    assert_eq!(image.pull_policy, PullPolicy::Never);

    let web = &state.containers[&ResourceKey::new(Kind::Container, "default", "web")];
    assert_eq!(
        web.origin,
        dockwright::desired::Origin::File {
            path: tree.path("app/all.yaml"),
            document: 2
        }
    );
    assert_eq!(web.image.reference, "127.0.0.1:5000/team/web:1.4");
    assert_eq!(web.image.pull_policy, PullPolicy::Never);
    assert_eq!(web.image.resource, Some(image_key));
    assert_eq!(web.replicas, 2);
    assert_eq!(web.state, DesiredRunState::Stopped);
    assert_eq!(web.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(
        web.depends_on,
        [(
            ResourceKey::new(Kind::Container, "default", "db"),
            DependencyCondition::Healthy
        )]
    );
    let c = &web.config;
    assert_eq!(c.image, "127.0.0.1:5000/team/web:1.4");
    assert_eq!(c.entrypoint, None);
    assert_eq!(
        c.cmd,
        Some(vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "8080".into()
        ])
    );
    assert_eq!(c.env, ["MODE=prod", "EMPTY="]);
    assert_eq!(
        c.ports,
        [
            PortBinding {
                container_port: 53,
                protocol: "udp".into(),
                host_ip: None,
                host_port: None
            },
            PortBinding {
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: None,
                host_port: None
            },
        ]
    );
    let static_dir = tree.path("app/static").display().to_string();
    assert_eq!(
        c.mounts,
        [
            Mount::Volume {
                source: "data".into(),
                target: "/data".into(),
                read_only: false
            },
            Mount::Bind {
                source: static_dir,
                target: "/www".into(),
                read_only: true
            },
            Mount::Tmpfs {
                target: "/tmp".into(),
                size_bytes: Some(64 * 1024 * 1024)
            },
        ]
    );
    assert_eq!(c.network, "app");
    assert_eq!(c.network_aliases, ["www"]);
    assert_eq!(c.restart_policy, "on-failure");
    assert_eq!(c.max_restarts, Some(3));
    assert_eq!(
        c.healthcheck,
        Some(Health {
            test: vec!["CMD-SHELL".into(), "wget -q -O- localhost:8080".into()],
            interval_ns: Some(5_000_000_000),
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
        })
    );
    assert_eq!(c.nano_cpus, Some(500_000_000));
    assert_eq!(c.memory_bytes, Some(256 * 1024 * 1024));
    assert_eq!(c.stop_timeout, Some(20));
    assert_eq!(c.files.len(), 2);
    assert_eq!(c.files[0].path, "/etc/app.conf");
    assert_eq!(c.files[0].mode, 0o600);
    assert_eq!(*c.files[0].content, b"listen 8080\n");
    assert_eq!(
        c.files[0].digest,
        format!("sha256:{}", hex::encode(Sha256::digest(b"listen 8080\n")))
    );
    assert_eq!(c.files[1].mode, 0o644);
    assert_eq!(*c.files[1].content, b"hello");
    assert_eq!(
        c.files[1].digest,
        format!("sha256:{}", hex::encode(Sha256::digest(b"hello")))
    );

    let db = &state.containers[&ResourceKey::new(Kind::Container, "default", "db")];
    // Untagged reference: kubelet defaults to Always.
    assert_eq!(db.image.reference, "docker.io/library/busybox:latest");
    assert_eq!(db.image.pull_policy, PullPolicy::Always);
    assert_eq!(db.image.resource, None);
    assert_eq!(db.config.entrypoint, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(db.config.cmd, None);
    assert_eq!(db.config.network, "bridge");
    assert_eq!(db.config.restart_policy, "no");
    assert_eq!(db.config.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        db.config.healthcheck.as_ref().map(|h| h.test.clone()),
        Some(vec!["CMD".into(), "/bin/true".into()])
    );
    assert_eq!(
        db.config.healthcheck.as_ref().and_then(|h| h.timeout_ns),
        Some(2_000_000_000)
    );
}

#[test]
fn editing_a_files_source_changes_the_config() {
    let tree = Tree::new(&[
        (
            "a.yaml",
            &container(
                "web",
                "image: busybox:1\nfiles: [{path: /etc/x, source: x}]",
            ),
        ),
        ("x", "one"),
    ]);
    let before = load_paths(&[tree.root()]).unwrap();
    tree.write("x", "two");
    let after = load_paths(&[tree.root()]).unwrap();
    let key = ResourceKey::new(Kind::Container, "default", "web");
    assert_ne!(
        before.containers[&key].config,
        after.containers[&key].config
    );
}

#[test]
fn kubelet_pull_policy_defaults() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cases = [
        ("busybox", None, PullPolicy::Always),
        ("busybox:latest", None, PullPolicy::Always),
        ("busybox:1.36", None, PullPolicy::IfNotPresent),
        ("localhost:5000/app", None, PullPolicy::Always),
        ("busybox:1.36", Some("Never"), PullPolicy::Never),
        ("busybox", Some("IfNotPresent"), PullPolicy::IfNotPresent),
    ];
    for (image, policy, want) in cases {
        let mut spec = format!("image: \"{image}\"");
        if let Some(p) = policy {
            spec.push_str(&format!("\nimagePullPolicy: {p}"));
        }
        let loaded = parse_str(&container("web", &spec), Path::new("x.yaml")).unwrap();
        let state = build_desired(&loaded).unwrap();
        let c = state.containers.values().next().unwrap();
        assert_eq!(c.image.pull_policy, want, "{image} {policy:?}");
    }
    let loaded = parse_str(
        &container("web", &format!("image: \"busybox@{digest}\"")),
        Path::new("x.yaml"),
    )
    .unwrap();
    let state = build_desired(&loaded).unwrap();
    let c = state.containers.values().next().unwrap();
    assert_eq!(c.image.pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(
        c.config.image,
        format!("docker.io/library/busybox@{digest}")
    );
}

#[test]
fn allowed_combinations() {
    let text = [
        // replicas: 0 with a fixed host port, and different addresses on one port: no clash.
        container("idle", "image: busybox:1\nreplicas: 0\nports: [{containerPort: 80, hostPort: 8080}]"),
        container("aa", "image: busybox:1\nports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}]"),
        container("bb", "image: busybox:1\nports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.2}]"),
        // Same port, other protocol.
        container("cc", "image: busybox:1\nports: [{containerPort: 80, hostPort: 9000, protocol: UDP}]"),
        container("dd", "image: busybox:1\nports: [{containerPort: 80, hostPort: 9000}]"),
        // The same name in another namespace is another resource.
        format!("{HEADER}kind: Container\nmetadata: {{name: aa, namespace: other}}\nspec: {{image: busybox:1, replicas: 3}}\n"),
        // Leading-zero numbers stay strings: an unquoted mode works.
        container("ee", "image: busybox:1\nfiles: [{path: /x, content: y, mode: 0755}]"),
    ]
    .join("---\n");
    let loaded = parse_str(&text, Path::new("x.yaml")).unwrap();
    let state = build_desired(&loaded).unwrap();
    assert_eq!(state.containers.len(), 7);
    let other = &state.containers[&ResourceKey::new(Kind::Container, "other", "aa")];
    assert_eq!(other.key.container_name(3, 1), "other.aa-1");
    let ee = &state.containers[&ResourceKey::new(Kind::Container, "default", "ee")];
    assert_eq!(ee.config.files[0].mode, 0o755);
}

mod no_panic {
    //! Whatever the input, parsing and building return values; they never panic.

    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn check(text: &str) {
        if let Ok(loaded) = parse_str(text, Path::new("fuzz.yaml")) {
            let _ = build_desired(&loaded);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-zA-Z0-9/:._@-]{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("Always"),
                Just("Never"),
                Just("Bind"),
                Just("Tmpfs"),
                Just("UDP"),
                Just("web"),
                Just("/etc/x"),
                Just("0644"),
                Just("1.5Gi"),
                Just("8080"),
            ]
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every JSON pointer into `value`.
    fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
        out.push(prefix.clone());
        match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    pointers(v, format!("{prefix}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    pointers(
                        v,
                        format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                        out,
                    );
                }
            }
            _ => {}
        }
    }

    fn documents() -> Vec<Value> {
        FULL.split("---\n")
            .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn byte_soup(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn yaml_ish_strings(s in "[-:a-zA-Z0-9 \\n\\[\\]{}&*!|>'\"#,.%@?~]{0,300}") {
            check(&s);
            check(&format!("{HEADER}kind: Container\n{s}"));
        }

        #[test]
        fn text_mutations_of_a_valid_manifest(
            edits in prop::collection::vec((0u8..4, any::<prop::sample::Index>(), "[-:a-z0-9 \\n\\[\\]{}&*\"#]{0,8}"), 1..6)
        ) {
            let mut chars: Vec<char> = FULL.chars().collect();
            for (op, at, snippet) in edits {
                let pos = at.index(chars.len() + 1);
                match op {
                    0 => { chars.splice(pos..pos, snippet.chars()); }
                    1 => { let end = (pos + snippet.len() + 1).min(chars.len()); chars.drain(pos.min(end)..end); }
                    2 => {
                        // duplicate the line around `pos`
                        let start = chars[..pos].iter().rposition(|c| *c == '\n').map_or(0, |i| i + 1);
                        let end = chars[pos..].iter().position(|c| *c == '\n').map_or(chars.len(), |i| pos + i + 1);
                        let line: Vec<char> = chars[start..end].to_vec();
                        chars.splice(end..end, line);
                    }
                    _ => { if pos < chars.len() { chars[pos] = snippet.chars().next().unwrap_or(' '); } }
                }
            }
            let text: String = chars.into_iter().collect();
            check(&text);
        }

        #[test]
        fn value_mutations_of_a_valid_manifest(
            doc in 0usize..3, at in any::<prop::sample::Index>(), replacement in json_value(), remove in any::<bool>()
        ) {
            let mut docs = documents();
            let mut paths = Vec::new();
            pointers(&docs[doc], String::new(), &mut paths);
            let pointer = paths[at.index(paths.len())].clone();
            let replaced = if remove && !pointer.is_empty() {
                // remove the field or item
                let (parent, last) = pointer.rsplit_once('/').unwrap();
                match docs[doc].pointer_mut(parent) {
                    Some(Value::Object(map)) => { map.remove(&last.replace("~1", "/").replace("~0", "~")); true }
                    Some(Value::Array(items)) => { if let Ok(i) = last.parse::<usize>() { if i < items.len() { items.remove(i); } } true }
                    _ => false,
                }
            } else { false };
            if !replaced {
                if let Some(slot) = docs[doc].pointer_mut(&pointer) { *slot = replacement; }
            }
            let text = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect::<Vec<_>>().join("\n---\n");
            check(&text);
        }
    }
}

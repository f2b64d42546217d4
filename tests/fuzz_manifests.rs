//! The manifest front door under hostile input, at scale, on the stable toolchain: the
//! parser (`source::parse_str`), cross-document validation (`source::build_desired`), the
//! policy gate and the spec hash must never panic and must answer every bad input with at
//! least one located error. Three generators: byte-level mutations of a corpus of valid
//! manifests (every field of both kinds), random JSON-shaped trees whose keys are the
//! schema's own field names (so deserialisation goes deep), and raw YAML-ish noise.
//!
//! `DOCKWRIGHT_FUZZ_CASES` scales the number of cases per generator (default 1500; the
//! libFuzzer target in `fuzz/` runs the same check coverage-guided, see fuzz/README.md).
//! The limits (size, documents, depth, nodes, aliases) are checked at their edges below.

use std::path::Path;

use dockwright::policy::{Gate, PathResolver, Policy};
use dockwright::secrets::SecretKey;
use dockwright::source::{build_desired, parse_str, MAX_DEPTH, MAX_DOCUMENTS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The manifest corpus the mutations start from.
const CORPUS: &[&str] = &[
    // Valid as it stands (see `corpus_is_valid`): every field of both kinds.
    "apiVersion: dockwright.dev/v1alpha1
kind: Image
metadata: {name: web}
spec:
  ref: 127.0.0.1:5000/team/web:1.4
  pullPolicy: IfNotPresent
  tags: [127.0.0.1:5000/team/web:latest]
---
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata: {name: web, labels: {a: b}}
spec:
  image: web
  replicas: 1
  state: Running
  entrypoint: [sh, -c]
  command: [httpd, -f, -p, \"8080\"]
  args: [x]
  env: [{name: MODE, value: prod}, {name: PW, valueFrom: {file: ./pw}}]
  workingDir: /www
  user: '1000:1000'
  hostname: box
  labels: {team: platform}
  ports: [{containerPort: 8080, hostPort: 3000, hostIP: 127.0.0.1, protocol: TCP}]
  volumes:
    - {type: Volume, source: data, target: /data}
    - {type: Bind, source: ./conf, target: /conf, readOnly: true}
    - {type: Tmpfs, target: /scratch, sizeLimit: 16Mi}
  network: front
  networkAliases: [api]
  restartPolicy: OnFailure
  maxRestarts: 3
  healthcheck: {shell: 'true', intervalSeconds: 1, timeoutSeconds: 2, retries: 3, startPeriodSeconds: 1}
  resources: {limits: {cpu: 500m, memory: 64Mi}}
  files: [{path: /etc/x, content: hi, mode: '0600'}, {path: /etc/y, source: ./conf/app.conf}]
  dependsOn: [{name: db, condition: Healthy}]
  stopGracePeriodSeconds: 5
  strategy: {type: StopFirst, maxUnavailable: 1, healthTimeoutSeconds: 30}
  privileged: true
  hostPID: true
  hostIPC: true
  capabilities: {add: [NET_ADMIN], drop: [MKNOD]}
  devices: [{hostPath: /dev/null, containerPath: /dev/n, permissions: rw}]
---
apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata: {name: db}
spec:
  image: busybox:1.36
  network: host
  healthcheck: {command: [\"true\"]}
",
    // Valid: a build.
    "# header
---
apiVersion: dockwright.dev/v1alpha1
kind: Image
metadata:
  name: built
spec:
  ref: local/built:1
  build:
    context: ./ctx
    dockerfile: Dockerfile
    args: {A: b}
  push: false
...
",
    // Parses, then refused: a Secret reference outside Kubernetes mode.
    "apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata: {name: db, namespace: prod}
spec:
  image: busybox:1.36
  env: [{name: S, valueFrom: {secretKeyRef: {name: s, key: k}}}]
",
];

/// Field names of the schema (keys for the random trees).
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "status",
    "name",
    "namespace",
    "labels",
    "annotations",
    "image",
    "ref",
    "replicas",
    "state",
    "entrypoint",
    "command",
    "args",
    "env",
    "value",
    "valueFrom",
    "file",
    "secretKeyRef",
    "key",
    "workingDir",
    "user",
    "hostname",
    "ports",
    "containerPort",
    "hostPort",
    "hostIP",
    "protocol",
    "volumes",
    "type",
    "source",
    "target",
    "readOnly",
    "sizeLimit",
    "network",
    "networkAliases",
    "restartPolicy",
    "maxRestarts",
    "healthcheck",
    "shell",
    "intervalSeconds",
    "resources",
    "limits",
    "cpu",
    "memory",
    "files",
    "path",
    "content",
    "mode",
    "dependsOn",
    "condition",
    "strategy",
    "maxUnavailable",
    "privileged",
    "hostPID",
    "hostIPC",
    "capabilities",
    "add",
    "drop",
    "devices",
    "hostPath",
    "containerPath",
    "permissions",
    "build",
    "context",
    "dockerfile",
    "tags",
    "push",
    "pullPolicy",
    "imagePullPolicy",
    "nodeSelector",
    "updateInterval",
];

/// Scalars that mean something somewhere in the schema.
const SCALARS: &[&str] = &[
    "dockwright.dev/v1alpha1",
    "Container",
    "Image",
    "web",
    "db",
    "busybox:1.36",
    "Bind",
    "Volume",
    "Tmpfs",
    "host",
    "/",
    "./pw",
    "../../etc/passwd",
    "/var/run/docker.sock",
    "0",
    "-1",
    "65536",
    "4294967296",
    "1e999",
    "0644",
    "0o7777",
    "500m",
    "64Mi",
    "1E",
    "TCP",
    "UDP",
    "Always",
    "Never",
    "OnFailure",
    "Healthy",
    "Completed",
    "ALL",
    "CAP_SYS_ADMIN",
    "rwm",
    "",
    "~",
    "null",
    "true",
    "no",
    "\u{0}",
    "é",
    "a=b",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

fn cases() -> u32 {
    std::env::var("DOCKWRIGHT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// How far an input got: 0 refused by the parser, 1 by validation, 2 admitted and hashed.
type Stage = usize;

/// The whole front door on one input: never panics; errors are located and non-empty.
fn check(text: &str, base: &Path) -> Stage {
    let path = base.join("fuzz.yaml");
    match parse_str(text, &path) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err with no error");
            for e in &errors.0 {
                assert!(!e.message.is_empty() && !e.location.is_empty(), "{e:?}");
            }
            0
        }
        Ok(manifests) => match build_desired(&manifests) {
            Err(errors) => {
                assert!(!errors.0.is_empty(), "an Err with no error");
                1
            }
            Ok(desired) => {
                let gate = Gate {
                    policy: std::sync::Arc::new(Policy::default()),
                    paths: PathResolver::Lexical,
                    secret_key: Some(SecretKey::from_bytes([3; 32])),
                };
                let admitted = gate.admit(&desired);
                for c in admitted.desired.containers.values() {
                    let json = dockwright::plan::spec_json(&c.config, "sha256:x");
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&json).is_ok(),
                        "{json}"
                    );
                }
                2
            }
        },
    }
}

/// Counts how many cases reached each stage, and checks a generator reaches the deep ones
/// (a generator whose every input dies in the parser tests nothing past it).
#[derive(Default)]
struct Reach(std::sync::Mutex<[usize; 3]>);

impl Reach {
    fn record(&self, stage: Stage) {
        if let Ok(mut r) = self.0.lock() {
            r[stage] += 1;
        }
    }

    fn assert_reaches(&self, generator: &str, stages: &[Stage]) {
        let r = *self.0.lock().unwrap();
        eprintln!(
            "{generator}: parser refused {}, validation refused {}, admitted {}",
            r[0], r[1], r[2]
        );
        for &s in stages {
            assert!(r[s] > 0, "{generator} never reached stage {s}: {r:?}");
        }
    }
}

/// A directory the corpus' relative paths resolve in (some exist, some do not).
fn base() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf")).unwrap();
    std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
    std::fs::write(dir.path().join("conf/app.conf"), "a=b\n").unwrap();
    std::fs::write(dir.path().join("ctx/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
    dir
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let noise = prop::collection::vec(
        prop::sample::select(vec![
            ":", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!str ", "|", ">", "'", "\"", "#",
            "%", "@", "\n", "  ", "---\n", "...\n", "<<: *a\n", "? ", "\t", "\u{feff}", "é",
            "null", "0x1F", "1e9", "-", "~", "true",
        ]),
        1..4,
    )
    .prop_map(|v| v.concat());
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), noise).prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0usize..5).prop_map(|(a, n)| Edit::Indent(a, n)),
    ]
}

fn apply_edit(text: &str, e: &Edit) -> String {
    let boundary = |i: usize| {
        let mut i = i % (text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match e {
        Edit::Delete(a, n) => {
            let a = boundary(*a);
            let b = boundary((a + n).min(text.len()));
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Edit::Insert(a, s) => {
            let a = boundary(*a);
            format!("{}{s}{}", &text[..a], &text[a..])
        }
        Edit::DuplicateLine(a) if !lines.is_empty() => {
            let i = a % lines.len();
            lines.insert(i, lines[i].clone());
            lines.join("\n")
        }
        Edit::SwapLines(a, b) if !lines.is_empty() => {
            let n = lines.len();
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Indent(a, n) if !lines.is_empty() => {
            let i = a % lines.len();
            lines[i] = format!("{}{}", " ".repeat(*n), lines[i]);
            lines.join("\n")
        }
        _ => text.to_string(),
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let dir = base();
    let reach = Reach::default();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(CORPUS.to_vec()),
        prop::collection::vec(edit(), 0..4),
    );
    runner
        .run(&strategy, |(seed, edits)| {
            let text = edits
                .iter()
                .fold(seed.to_string(), |t, e| apply_edit(&t, e));
            reach.record(check(&text, dir.path()));
            Ok(())
        })
        .unwrap();
    reach.assert_reaches("mutated corpus", &[0, 1, 2]);
}

fn tree() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        prop::sample::select(SCALARS.to_vec()).prop_map(|s| Value::String(s.to_string())),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..6).prop_map(
                |m| serde_json::Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )
            ),
        ]
    })
}

#[test]
fn schema_shaped_trees_never_panic() {
    let dir = base();
    let reach = Reach::default();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    // A valid envelope around a random spec reaches deserialisation and validation; a fully
    // random document exercises the envelope checks.
    let strategy = (
        prop::sample::select(vec!["Container", "Image"]),
        tree(),
        tree(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(kind, spec, whole, enveloped)| {
            let doc = if enveloped {
                serde_json::json!({
                    "apiVersion": "dockwright.dev/v1alpha1",
                    "kind": kind,
                    "metadata": {"name": "fuzzed"},
                    "spec": spec,
                })
            } else {
                whole
            };
            // JSON is YAML: the same text goes through the YAML parser.
            reach.record(check(&doc.to_string(), dir.path()));
            Ok(())
        })
        .unwrap();
    reach.assert_reaches("schema-shaped trees", &[0, 1]);
}

#[test]
fn yaml_noise_never_panics() {
    let dir = base();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&"[ -~\n\t:\\-\\[\\]{}&*!|>#%@é\u{0}]{0,300}", |text| {
            let _ = check(&text, dir.path());
            Ok(())
        })
        .unwrap();
}

#[test]
fn corpus_is_valid() {
    let dir = base();
    for (i, text) in CORPUS.iter().enumerate() {
        let expected = if i < 2 { 2 } else { 1 };
        assert_eq!(check(text, dir.path()), expected, "corpus[{i}]");
    }
}

/// Each limit accepts its edge and refuses one past it, with a message saying so.
#[test]
fn limits_hold_at_their_edges() {
    let p = Path::new("edge.yaml");
    let nested = |depth: usize| {
        // A block-style spec nested `depth` levels deep in total (the document is level 1).
        let mut text = String::from("apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {name: deep}\nspec:\n  image: busybox:1\n  labels:\n");
        let mut indent = String::from("    ");
        text.push_str(&format!("{indent}a:\n"));
        for _ in 0..depth.saturating_sub(4) {
            indent.push_str("  ");
            text.push_str(&format!("{indent}a:\n"));
        }
        indent.push_str("  ");
        text.push_str(&format!("{indent}b: c\n"));
        text
    };
    // Past the depth limit: refused by the parser budget, not a stack overflow.
    let err = parse_str(&nested(MAX_DEPTH + 1), p).unwrap_err();
    assert!(err.0[0].message.contains("parser limits"), "{err}");
    // Within it: parses (and fails later, on the type, as a normal error).
    let err = parse_str(&nested(MAX_DEPTH - 2), p).unwrap_err();
    assert!(!err.0[0].message.contains("parser limits"), "{err}");
    assert_eq!(
        err.0[0]
            .field
            .as_deref()
            .map(|f| f.starts_with("spec.labels")),
        Some(true),
        "{err}"
    );

    // Documents: exactly the limit is fine.
    let doc = |i: usize| {
        format!("---\napiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: {{name: i{i}}}\nspec: {{ref: 'busybox:{i}'}}\n")
    };
    let at_limit: String = (0..MAX_DOCUMENTS).map(doc).collect();
    assert_eq!(parse_str(&at_limit, p).unwrap().len(), MAX_DOCUMENTS);
    let past: String = (0..=MAX_DOCUMENTS).map(doc).collect();
    assert!(parse_str(&past, p).unwrap_err().0[0]
        .message
        .contains("documents"));

    // Nodes: one flat sequence with more nodes than a document may hold.
    let wide = format!("[{}]", vec!["1"; 25_000].join(","));
    let err = parse_str(&wide, p).unwrap_err();
    assert!(
        err.0[0].message.contains("parser limits") || err.0[0].message.contains("nodes"),
        "{err}"
    );

    // File size: the limit itself is accepted by the size check (then fails as YAML).
    let big = "#".repeat(dockwright::source::MAX_FILE_BYTES);
    assert!(parse_str(&big, p).is_ok());
}

//! `dockwright convert`: a Compose file → dockwright manifests (a `Container` per service, an
//! `Image` per build, a `Network` / `Volume` per top-level network and volume in use), plus a
//! [`Warning`] for everything that has no exact equivalent. The library part: reads the
//! Compose file, its `.env`, included and extended files, the services' `env_file`s; writing
//! the output is the caller's.
//!
//! Steps: YAML → an order-keeping tree ([`node`]) → `${VAR}` interpolation on every string
//! ([`interpolate`]; variables from the process environment over `.env`, as Compose) →
//! `include` and `extends` resolved on the trees ([`load`], [`extends`]) → the typed Compose
//! model ([`compose`], errors name the field path) → networks and volumes ([`objects`]) and
//! `Container` specs of the services the profiles enable ([`to_manifests`], whose module doc
//! lists the mapping decisions) → YAML through the real API types with serde-saphyr, so every
//! document parses back.
//!
//! The project name is Compose's: `COMPOSE_PROJECT_NAME`, else the top-level `name:`, else
//! the Compose file's directory, normalised as Compose does. It appears only where Compose puts
//! it into Docker object names: volumes, networks, and images a service builds.

mod compose;
mod dotenv;
mod extends;
mod interpolate;
mod load;
mod mounts;
mod node;
mod objects;
mod paths;
mod ports;
mod profiles;
mod rollout;
mod secrets;
mod security;
mod shell;
mod to_manifests;
mod units;
mod warnings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use ports::MAX_PORTS_PER_ENTRY;
pub use to_manifests::dns_label;
pub use warnings::Warning;

use node::Node;
use warnings::Warnings;

/// The result of converting one Compose file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversion {
    /// `(file name, YAML)` per service in file order: `<resource>.yaml` holding the resource,
    /// headed by comments naming its source and the warnings about it.
    pub documents: Vec<(String, String)>,
    /// Everything that was converted approximately or dropped, in the order found.
    pub warnings: Vec<Warning>,
}

impl Conversion {
    /// All documents as one multi-document YAML stream (for stdout when there is no `-o`):
    /// each file's text after a `---` line, in order.
    pub fn to_stream(&self) -> String {
        let mut out = String::new();
        for (_, yaml) in &self.documents {
            out.push_str("---\n");
            out.push_str(yaml);
            if !yaml.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Why a Compose file could not be converted. Always names the file; field errors name the
/// dotted Compose path (`services.web.ports[0]`).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The Compose file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML (or exceeds the parser limits).
    #[error("{file}: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message with line and column.
        message: String,
    },
    /// A field has a value Compose itself would reject, or that cannot be converted.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A converted resource could not be serialised (a bug: the types always serialise).
    #[error("serialising {resource}: {message}")]
    Output {
        /// The resource name.
        resource: String,
        /// The serialiser's message.
        message: String,
    },
}

/// Inputs of [`convert_with`] besides the text.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// How errors and output comments name the Compose file.
    pub file_label: String,
    /// Directory relative paths (env files, bind mounts, build contexts, `.env`) resolve
    /// against; its name is the default project name.
    pub base_dir: PathBuf,
    /// Variables for interpolation and env passthrough; `None` reads the process environment.
    /// `.env` in `base_dir` adds the variables these do not set.
    pub environment: Option<BTreeMap<String, String>>,
    /// Active profiles (`--profile`); empty: `COMPOSE_PROFILES` from the variables.
    pub profiles: Vec<String>,
    /// The directory the manifests will be written to: host paths (bind mounts, build
    /// contexts, file sources) are then written relative to it, else absolute.
    pub output_dir: Option<PathBuf>,
}

/// Converts the Compose file at `path` (its directory is the base directory).
pub fn convert_file(path: &Path) -> Result<Conversion, ConvertError> {
    convert_file_with(path, Vec::new(), None)
}

/// Converts the Compose file at `path` with the given active profiles, writing host paths
/// relative to `output_dir` when given (the CLI's `--profile` and `-o`).
pub fn convert_file_with(
    path: &Path,
    profiles: Vec<String>,
    output_dir: Option<PathBuf>,
) -> Result<Conversion, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    convert_with(
        &text,
        &ConvertOptions {
            file_label: path.display().to_string(),
            base_dir,
            environment: None,
            profiles,
            output_dir,
        },
    )
}

/// Converts Compose text as if it were a file in `base_dir`, with the process environment.
pub fn convert_str(text: &str, base_dir: &Path) -> Result<Conversion, ConvertError> {
    convert_with(
        text,
        &ConvertOptions {
            file_label: base_dir.join("docker-compose.yml").display().to_string(),
            base_dir: base_dir.to_path_buf(),
            ..ConvertOptions::default()
        },
    )
}

/// Converts Compose text with explicit options.
pub fn convert_with(text: &str, options: &ConvertOptions) -> Result<Conversion, ConvertError> {
    let file = options.file_label.as_str();
    let invalid = |field: &str, message: String| ConvertError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    let absolute = |p: &Path| -> Result<PathBuf, ConvertError> {
        std::path::absolute(p)
            .map(|a| paths::normalise(&a))
            .map_err(|source| ConvertError::Read {
                path: p.to_path_buf(),
                source,
            })
    };
    let base_dir = absolute(&options.base_dir)?;
    let output_dir = options.output_dir.as_deref().map(absolute).transpose()?;
    let mut warnings = Warnings::default();
    let vars = variables(options, &base_dir, &mut warnings)?;

    let tree = load::Loader::new(&mut warnings).main(text, file, &base_dir, &vars)?;
    let model: compose::ComposeFile = serde_path_to_error::deserialize(&tree).map_err(|e| {
        let path = e.path().to_string();
        invalid(&path, e.into_inner().to_string())
    })?;

    let project = project_name(&vars, model.name.as_deref(), &base_dir);
    let cx = to_manifests::Context {
        file,
        base_dir: &base_dir,
        vars: &vars,
        project: &project,
        output_dir: output_dir.as_deref(),
    };
    let active = profiles::Active::new(
        &options.profiles,
        vars.get("COMPOSE_PROFILES").map(String::as_str),
    );
    let objects = objects::convert(&cx, &model, &mut warnings)?;
    let converted = to_manifests::convert(&cx, &model, &active, &objects, &mut warnings)?;

    let mut documents = object_documents(file, &objects, &converted, &mut warnings)?;
    for c in converted {
        let resource = c.container.metadata.name.clone().unwrap_or_default();
        let output_error = |e: serde_saphyr::SerializeError| ConvertError::Output {
            resource: resource.clone(),
            message: e.to_string(),
        };
        let mut yaml = String::new();
        // The Image a service builds goes first, in the same file as its Container.
        if let Some(image) = &c.image {
            yaml.push_str(&serde_saphyr::to_string(image).map_err(output_error)?);
            yaml.push_str("---\n");
        }
        yaml.push_str(&serde_saphyr::to_string(&c.container).map_err(output_error)?);
        let mut out = format!(
            "# Converted by `dockwright convert` from {}, service {:?}.\n",
            file_name(file),
            c.service
        );
        for w in warnings
            .list
            .iter()
            .filter(|w| w.service.as_deref() == Some(c.service.as_str()))
        {
            out.push_str(&format!(
                "# warning: {}\n",
                w.to_string().replace('\n', " ")
            ));
        }
        out.push_str(&yaml);
        documents.push((format!("{resource}.yaml"), out));
    }
    Ok(Conversion {
        documents,
        warnings: warnings.list,
    })
}

/// One document per declared network and volume some converted container uses
/// (`<name>.network.yaml`, `<name>.volume.yaml`: container names have no dots, so these never
/// collide with a service's file); a warning for each declared one nothing uses.
fn object_documents(
    file: &str,
    objects: &objects::Objects,
    converted: &[to_manifests::Converted],
    warnings: &mut Warnings,
) -> Result<Vec<(String, String)>, ConvertError> {
    let mut used_networks = std::collections::BTreeSet::new();
    let mut used_volumes = std::collections::BTreeSet::new();
    for c in converted {
        let spec = &c.container.spec;
        used_networks.extend(spec.network.iter().cloned());
        used_networks.extend(spec.networks.iter().map(|n| n.name.clone()));
        used_volumes.extend(
            spec.volumes
                .iter()
                .filter(|v| v.type_ == crate::api::VolumeType::Volume)
                .filter_map(|v| v.source.clone()),
        );
    }
    let mut documents = Vec::new();
    for (kind, list, used) in [
        ("network", &objects.networks, &used_networks),
        ("volume", &objects.volumes, &used_volumes),
    ] {
        for (key, d) in list {
            if !used.contains(&d.name) {
                if key != "default" || kind != "network" {
                    warnings.push(
                        None,
                        d.field.clone(),
                        "not used by any converted service; not converted",
                    );
                }
                continue;
            }
            if let Some(compose_name) = &d.compose_name {
                warnings.push(
                    None,
                    d.field.clone(),
                    format!(
                        "becomes the Volume {:?} (resource names are DNS labels); Compose names it {compose_name:?}, whose data is not reused: to keep using that, declare it external: true with name: {compose_name}",
                        d.name
                    ),
                );
            }
            let Some(object) = &d.object else { continue };
            let yaml = match object {
                objects::Object::Network(n) => serde_saphyr::to_string(n),
                objects::Object::Volume(v) => serde_saphyr::to_string(v),
            }
            .map_err(|e| ConvertError::Output {
                resource: d.name.clone(),
                message: e.to_string(),
            })?;
            let mut out = format!(
                "# Converted by `dockwright convert` from {}, {kind} {key:?}.\n",
                file_name(file)
            );
            let prefix = format!("{}.", d.field);
            for w in warnings.list.iter().filter(|w| {
                w.service.is_none() && (w.field == d.field || w.field.starts_with(&prefix))
            }) {
                out.push_str(&format!(
                    "# warning: {}\n",
                    w.to_string().replace('\n', " ")
                ));
            }
            out.push_str(&yaml);
            documents.push((format!("{}.{kind}.yaml", d.name), out));
        }
    }
    Ok(documents)
}

/// The last component of a file label (output comments should not embed absolute paths).
fn file_name(label: &str) -> &str {
    Path::new(label)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(label)
}

/// Parser limits for Compose files: generous for anchors and merges, bounded for safety.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: crate::source::MAX_DEPTH,
            max_documents: 1,
            max_nodes: 200_000,
            max_events: 800_000,
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_reader_input_bytes: Some(crate::source::MAX_FILE_BYTES),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 200_000,
            max_replay_stack_depth: 16,
        },
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    }
}

fn read_yaml(text: &str, file: &str) -> Result<Node, ConvertError> {
    serde_saphyr::from_str_with_options::<Node>(text, yaml_options()).map_err(|e| {
        let rendered = e.render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
        ConvertError::Yaml {
            file: file.to_string(),
            message: format!("invalid YAML: {rendered}"),
        }
    })
}

/// The process environment (or the given one), plus what `.env` sets that it does not.
fn variables(
    options: &ConvertOptions,
    base_dir: &Path,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, String>, ConvertError> {
    let mut vars: BTreeMap<String, String> = match &options.environment {
        Some(env) => env.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    add_dotenv(&mut vars, &base_dir.join(".env"), warnings)?;
    Ok(vars)
}

/// Adds the variables the env file at `path` sets that `vars` does not (a missing file adds
/// nothing).
fn add_dotenv(
    vars: &mut BTreeMap<String, String>,
    path: &Path,
    warnings: &mut Warnings,
) -> Result<(), ConvertError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ConvertError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let lines =
        dotenv::parse_env_file(&text, vars).map_err(|(line, message)| ConvertError::Invalid {
            file: path.display().to_string(),
            field: format!("line {line}"),
            message,
        })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for line in lines {
        for var in &line.unset {
            warnings.push(
                None,
                format!("{name}:{}", line.line),
                format!("variable {var} is not set; substituted an empty string"),
            );
        }
        if let Some(value) = line.value {
            vars.entry(line.name).or_insert(value);
        }
    }
    Ok(())
}

/// Interpolates every string of the tree in place. Errors carry the field path.
fn interpolate_tree(
    node: &mut Node,
    path: &mut String,
    vars: &BTreeMap<String, String>,
    warnings: &mut Warnings,
) -> Result<(), (String, String)> {
    match node {
        Node::Str(s) if s.contains('$') => {
            let r = interpolate::interpolate(s, vars).map_err(|m| (path.clone(), m))?;
            for var in r.unset {
                let already = warnings
                    .list
                    .iter()
                    .any(|w| w.message.starts_with(&format!("variable {var} is not set")));
                if !already {
                    let service = path
                        .strip_prefix("services.")
                        .and_then(|rest| rest.split(['.', '[']).next())
                        .map(str::to_string);
                    warnings.list.push(Warning {
                        service,
                        field: path.clone(),
                        message: format!("variable {var} is not set; substituted an empty string"),
                    });
                }
            }
            *s = r.value;
        }
        Node::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, vars, warnings)?;
                path.truncate(len);
            }
        }
        Node::Map(entries) => {
            for (key, value) in entries.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                interpolate_tree(value, path, vars, warnings)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Compose's project name: `COMPOSE_PROJECT_NAME`, `name:`, or the directory name; lowercased
/// and reduced to `[a-z0-9_-]` starting with a letter or digit (`default` if nothing is left).
pub fn project_name(
    vars: &BTreeMap<String, String>,
    name: Option<&str>,
    base_dir: &Path,
) -> String {
    let raw = vars
        .get("COMPOSE_PROJECT_NAME")
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .or(name.filter(|n| !n.is_empty()))
        .map(str::to_string)
        .or_else(|| {
            base_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let cleaned: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let cleaned = cleaned.trim_start_matches(['_', '-']);
    if cleaned.is_empty() {
        "default".to_string()
    } else {
        cleaned.to_string()
    }
}

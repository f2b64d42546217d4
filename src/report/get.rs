//! `dockwright get`: the managed containers as a table, JSON or YAML.

use std::fmt::Write as _;

use serde::Serialize;

use crate::observed::ObservedContainer;

use super::lines::short_id;

/// Output format of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GetFormat {
    /// Aligned columns.
    Table,
    /// A JSON array.
    Json,
    /// A YAML sequence.
    Yaml,
}

/// One managed container as `get` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRow {
    /// `Kind/namespace/name`, or `-` for an unreadable label.
    pub resource: String,
    /// Container name.
    pub name: String,
    /// Container ID.
    pub container_id: String,
    /// Revision: the first 12 hex digits of the spec hash (see [`crate::plan::short_revision`]);
    /// during a rollout the kept old container (`<name>_prev`) shows the old one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Docker state.
    pub state: String,
    /// Health, when checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Last exit code, for exited containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Image as the daemon names it.
    pub image: String,
    /// Image ID.
    pub image_id: String,
    /// Published ports.
    pub ports: Vec<String>,
    /// Daemon status text.
    pub status: String,
}

impl From<&ObservedContainer> for ManagedRow {
    fn from(c: &ObservedContainer) -> Self {
        Self {
            resource: c
                .resource
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string),
            name: c.name.clone(),
            container_id: c.id.clone(),
            revision: c
                .spec_hash
                .as_deref()
                .map(|h| crate::plan::short_revision(h).to_string()),
            state: c.state.as_str().to_string(),
            health: c.health.map(|h| format!("{h:?}").to_lowercase()),
            exit_code: c.exit_code,
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            ports: c.ports.clone(),
            status: c.status.clone(),
        }
    }
}

/// Renders rows sorted by resource then name.
pub fn render_get(containers: &[ObservedContainer], format: GetFormat) -> crate::Result<String> {
    let mut rows: Vec<ManagedRow> = containers.iter().map(ManagedRow::from).collect();
    rows.sort_by(|a, b| (&a.resource, &a.name).cmp(&(&b.resource, &b.name)));
    match format {
        GetFormat::Json => serde_json::to_string_pretty(&rows)
            .map(|s| s + "\n")
            .map_err(|e| crate::Error::Output(e.to_string())),
        GetFormat::Yaml => {
            serde_saphyr::to_string(&rows).map_err(|e| crate::Error::Output(e.to_string()))
        }
        GetFormat::Table => Ok(table(&rows)),
    }
}

fn table(rows: &[ManagedRow]) -> String {
    let header = [
        "RESOURCE",
        "NAME",
        "CONTAINER",
        "REVISION",
        "STATE",
        "HEALTH",
        "EXIT",
        "IMAGE",
        "PORTS",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.resource.clone(),
                r.name.clone(),
                short_id(&r.container_id).to_string(),
                r.revision.clone().unwrap_or_else(|| "-".into()),
                r.state.clone(),
                r.health.clone().unwrap_or_else(|| "-".into()),
                r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                format!("{} ({})", r.image, short_id(&r.image_id)),
                if r.ports.is_empty() {
                    "-".into()
                } else {
                    r.ports.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Renders a running agent's status: one row per resource (table), or the whole status.
pub fn render_status(
    status: &crate::agent::AgentStatus,
    format: GetFormat,
) -> crate::Result<String> {
    match format {
        GetFormat::Json => serde_json::to_string_pretty(status)
            .map(|s| s + "\n")
            .map_err(|e| crate::Error::Output(e.to_string())),
        GetFormat::Yaml => {
            serde_saphyr::to_string(status).map_err(|e| crate::Error::Output(e.to_string()))
        }
        GetFormat::Table => {
            let mut out = String::new();
            let width = status
                .resources
                .iter()
                .map(|r| r.resource.len())
                .max()
                .unwrap_or(8)
                .max(8);
            let revisions: Vec<String> = status.resources.iter().map(revision_counts).collect();
            let rev_width = revisions.iter().map(String::len).max().unwrap_or(0).max(9);
            let _ = writeln!(
                out,
                "{:<width$}  {:<11}  {:<8}  {:<rev_width$}  DETAIL",
                "RESOURCE", "PHASE", "REPLICAS", "REVISIONS"
            );
            for (r, revisions) in status.resources.iter().zip(&revisions) {
                let running = r
                    .replicas
                    .iter()
                    .filter(|c| c.state.as_deref() == Some("running"))
                    .count();
                let detail = match (&r.last_error, r.retry_in_seconds, r.waiting_on.first()) {
                    (Some(e), Some(s), _) => format!("{e} (retry in {s}s)"),
                    (Some(e), None, _) => e.clone(),
                    (None, _, Some(w)) => format!("waiting: {w}"),
                    _ => String::new(),
                };
                let replicas = format!("{running}/{}", r.replicas.len());
                let line = format!(
                    "{:<width$}  {:<11}  {:<8}  {revisions:<rev_width$}  {detail}",
                    r.resource, r.phase, replicas
                );
                let _ = writeln!(out, "{}", line.trim_end());
            }
            for e in &status.manifest_errors {
                let _ = writeln!(out, "manifest error: {e}");
            }
            if let Some(git) = &status.source {
                render_git(&mut out, git);
            }
            Ok(out)
        }
    }
}

/// The git source's lines of `dockwright status`: what is applied, what was tried, the fetch.
fn render_git(out: &mut String, git: &crate::source::git::GitStatus) {
    let path = if git.path.is_empty() {
        String::new()
    } else {
        format!(" path {}", git.path)
    };
    let _ = writeln!(out, "source: git {} ref {}{path}", git.url, git.reference);
    let applied = git.applied_revision.as_deref().unwrap_or("none yet");
    match &git.applied_at {
        Some(at) => {
            let _ = writeln!(out, "  applied revision:   {applied} (at {at})");
        }
        None => {
            let _ = writeln!(out, "  applied revision:   {applied}");
        }
    }
    if let Some(attempted) = &git.attempted_revision {
        let error = git.attempted_error.as_deref().unwrap_or("");
        let _ = writeln!(out, "  attempted revision: {attempted} rejected: {error}");
    }
    let last = git.last_fetch.as_deref().unwrap_or("never");
    let _ = writeln!(
        out,
        "  last fetch:         {last} ({} ok, {} failed)",
        git.fetches, git.fetch_failures
    );
    if let Some(error) = &git.fetch_error {
        let _ = writeln!(out, "  fetch error:        {error}");
    }
}

/// Which revision runs where, in short: each revision with its number of containers, in the
/// order of the replicas (`3f2a9c1b7d0e(2) 9b1c0d2e4f5a(1)` mid-rollout), `-` for none.
fn revision_counts(r: &crate::agent::ResourceStatus) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for replica in &r.replicas {
        let Some(revision) = replica.revision.as_deref() else {
            continue;
        };
        match counts.iter_mut().find(|(rev, _)| *rev == revision) {
            Some((_, n)) => *n += 1,
            None => counts.push((revision, 1)),
        }
    }
    if counts.is_empty() {
        return "-".into();
    }
    counts
        .iter()
        .map(|(rev, n)| format!("{rev}({n})"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ReplicaStatus;
    use crate::observed::RunState;

    fn container(name: &str, hash: Option<&str>) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}-id-0123456789"),
            name: name.into(),
            resource: None,
            replica: Some(0),
            spec_hash: hash.map(String::from),
            spec: None,
            source: None,
            state: RunState::Running,
            health: None,
            exit_code: None,
            image_id: "sha256:feedfacefeedface".into(),
            image: "img".into(),
            ports: Vec::new(),
            created: 0,
            status: String::new(),
        }
    }

    #[test]
    fn get_shows_which_revision_each_container_runs() {
        let list = [
            container("web", Some("sha256:aaaaaaaaaaaa1111")),
            container("web_prev", Some("sha256:bbbbbbbbbbbb2222")),
            container("odd", None),
        ];
        let table = render_get(&list, GetFormat::Table).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header[2..5], ["CONTAINER", "REVISION", "STATE"], "{table}");
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(name))
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap()
        };
        assert_eq!(row("web"), "aaaaaaaaaaaa");
        assert_eq!(row("web_prev"), "bbbbbbbbbbbb");
        assert_eq!(row("odd"), "-");
        let json: serde_json::Value =
            serde_json::from_str(&render_get(&list, GetFormat::Json).unwrap()).unwrap();
        let by_name = |name: &str| {
            json.as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(by_name("web")["revision"], "aaaaaaaaaaaa");
        assert!(by_name("odd").get("revision").is_none());
    }

    #[test]
    fn status_counts_containers_per_revision() {
        let replica = |name: &str, revision: Option<&str>| ReplicaStatus {
            name: name.into(),
            revision: revision.map(String::from),
            state: Some("running".into()),
            ..Default::default()
        };
        let status = crate::agent::AgentStatus {
            passes: 1,
            resources: vec![
                crate::agent::ResourceStatus {
                    resource: "Container/default/web".into(),
                    phase: "Progressing".into(),
                    replicas: vec![
                        replica("web-0", Some("new")),
                        replica("web-0_prev", Some("old")),
                        replica("web-1", Some("old")),
                    ],
                    ..Default::default()
                },
                crate::agent::ResourceStatus {
                    resource: "Image/default/img".into(),
                    phase: "Ready".into(),
                    ..Default::default()
                },
            ],
            manifest_errors: Vec::new(),
            source: None,
        };
        let table = render_status(&status, GetFormat::Table).unwrap();
        assert!(
            table
                .lines()
                .next()
                .unwrap()
                .contains("REPLICAS  REVISIONS"),
            "{table}"
        );
        assert!(table.contains("3/3       new(1) old(2)"), "{table}");
        assert!(table.contains("Ready        0/0       -"), "{table}");
    }
}

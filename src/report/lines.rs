//! Plain-text lines for `apply`, `diff` and `delete`.

use std::fmt::Write as _;

use crate::execute::{ActionReport, Outcome};
use crate::plan::{Action, Plan, Reason};

/// The `diff` listing: actions grouped by resource in plan order, with changed fields spelled
/// out under each recreate. Empty string for an empty plan.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let mut current = None;
    for planned in &plan.actions {
        if current != Some(&planned.resource) {
            current = Some(&planned.resource);
            let _ = writeln!(out, "{}:", planned.resource);
        }
        let deferred = if planned.action.is_deferred() {
            " (after pull)"
        } else {
            ""
        };
        match &planned.reason {
            Reason::SpecChanged { changes }
                if matches!(
                    planned.action,
                    Action::RemoveContainer { .. }
                        | Action::RecreateNetwork { .. }
                        | Action::RemoveVolume { .. }
                ) =>
            {
                let loss = match planned.action {
                    Action::RemoveVolume { .. } => " (its data is deleted)",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "  ~ recreate {}: spec changed{loss}",
                    planned.action.target()
                );
                for change in changes {
                    let _ = writeln!(
                        out,
                        "      {}: {} → {}",
                        change.field, change.old, change.new
                    );
                }
            }
            reason => {
                let _ = writeln!(
                    out,
                    "  {} {} {}{deferred} ({reason})",
                    sign(&planned.action),
                    planned.action.verb(),
                    describe(&planned.action)
                );
            }
        }
    }
    for blocked in &plan.blocked {
        let _ = writeln!(
            out,
            "{}:\n  ! blocked: {}",
            blocked.resource, blocked.message
        );
    }
    out
}

fn sign(action: &Action) -> char {
    match action {
        Action::PullImage { .. }
        | Action::BuildImage(_)
        | Action::TagImage { .. }
        | Action::PushImage { .. }
        | Action::CreateContainer(_)
        | Action::EnsureNetwork { .. }
        | Action::EnsureVolume { .. }
        | Action::CreateNetwork(_)
        | Action::CreateVolume(_) => '+',
        Action::RemoveContainer { .. }
        | Action::RemoveImage { .. }
        | Action::RemoveNetwork { .. }
        | Action::RemoveVolume { .. } => '-',
        Action::RecreateNetwork { .. } => '~',
        Action::StartContainer { .. }
        | Action::StopContainer { .. }
        | Action::RenameContainer { .. }
        | Action::AdoptContainer { .. } => '~',
        Action::AwaitCondition { .. } => '…',
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::RenameContainer { from, to, .. } => format!("{from} → {to}"),
        Action::TagImage { source, target } => format!("{source} → {target}"),
        Action::RemoveImage { id, references } if references.is_empty() => short_id(id).to_string(),
        Action::RemoveImage { id, references } => {
            format!("{} ({})", references.join(", "), short_id(id))
        }
        Action::AwaitCondition {
            name, condition, ..
        } => format!("{name} {condition:?}"),
        Action::RemoveContainer { name, id }
        | Action::StopContainer { name, id, .. }
        | Action::AdoptContainer { name, id, .. } => {
            format!("{name} ({})", short_id(id))
        }
        // Volumes hold data: say so wherever one is removed.
        Action::RemoveVolume { name } => format!("{name} (its data is deleted)"),
        Action::RecreateNetwork {
            spec, containers, ..
        } if !containers.is_empty() => format!(
            "{} (moving {} container(s) of ours over)",
            spec.name,
            containers.len()
        ),
        other => other.target().to_string(),
    }
}

/// Twelve characters of an ID, without the `sha256:` prefix.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// One line per finished action, as `apply` prints them.
pub fn action_line(report: &ActionReport) -> String {
    let status = match &report.outcome {
        Outcome::Succeeded => "ok".to_string(),
        Outcome::Failed { error } => format!("FAILED: {error}"),
        Outcome::Skipped { .. } => "skipped: a prerequisite failed".to_string(),
        Outcome::Deferred => "waiting for image".to_string(),
    };
    format!(
        "{:<8} {:<28} {:<32} {} ({:.2}s)",
        report.verb,
        report.target,
        report.resource.to_string(),
        status,
        report.elapsed.as_secs_f64()
    )
}

/// The closing summary of `apply`/`delete`: counts, then one line per failed resource.
pub fn summary_text(reports: &[ActionReport], blocked: &[crate::plan::Blocked]) -> String {
    let ok = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .count();
    let mut out = String::new();
    let failed: Vec<&ActionReport> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
        .collect();
    let skipped = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Skipped { .. } | Outcome::Deferred))
        .count();
    let _ = write!(out, "{ok} action(s) done");
    if !failed.is_empty() || skipped > 0 || !blocked.is_empty() {
        let _ = write!(
            out,
            ", {} failed, {skipped} not run, {} resource(s) blocked",
            failed.len(),
            blocked.len()
        );
    }
    out.push('\n');
    for report in failed {
        if let Outcome::Failed { error } = &report.outcome {
            // The error names its call and target already ("pull <reference>: ...").
            let _ = writeln!(out, "error: {}: {error}", report.resource);
        }
    }
    for b in blocked {
        let _ = writeln!(out, "error: {}: {}", b.resource, b.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::desired::{Kind, ResourceKey};
    use crate::execute::{ActionError, ErrorKind};
    use crate::plan::Blocked;

    #[test]
    fn summary_names_each_failure_once() {
        let web = ResourceKey::new(Kind::Container, "default", "web");
        let reference = "127.0.0.1:1/a:v1";
        let failed = ActionReport {
            id: 0,
            resource: web.clone(),
            verb: "pull",
            target: reference.into(),
            outcome: Outcome::Failed {
                error: ActionError::new(
                    ErrorKind::Daemon,
                    format!("pull {reference}: connection refused"),
                ),
            },
            elapsed: Duration::ZERO,
        };
        let skipped = ActionReport {
            id: 1,
            verb: "create",
            target: "web".into(),
            outcome: Outcome::Skipped { blocked_by: 0 },
            ..failed.clone()
        };
        let blocked = Blocked {
            resource: ResourceKey::new(Kind::Container, "default", "api"),
            message: "waits for web".into(),
        };
        assert_eq!(
            summary_text(&[failed, skipped], &[blocked]),
            "0 action(s) done, 1 failed, 1 not run, 1 resource(s) blocked\n\
             error: Container/default/web: pull 127.0.0.1:1/a:v1: connection refused\n\
             error: Container/default/api: waits for web\n"
        );
    }
}

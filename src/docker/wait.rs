//! `AwaitCondition`: polls `inspect` until a container is started, healthy or completed, and
//! fails fast when the condition can no longer be reached (the container exited, or has no
//! health check to become healthy with).

use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};

use super::errors::action_error;
use super::Docker;
use crate::api::DependencyCondition;
use crate::execute::{ActionError, ErrorKind};

/// What one inspect says about the wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The condition holds.
    Reached,
    /// Not yet; the text says where the container is.
    Pending(String),
    /// It never will: the message says why.
    Unreachable(String),
}

/// Polls every `interval` until `condition` holds for container `name`, or `timeout` passes.
pub(crate) async fn await_condition(
    docker: &Docker,
    name: &str,
    condition: DependencyCondition,
    timeout: Duration,
    interval: Duration,
) -> Result<(), ActionError> {
    let deadline = Instant::now() + timeout;
    loop {
        let inspect = docker
            .client
            .inspect_container(name, None)
            .await
            .map_err(|e| action_error("wait for", name, &e))?;
        let last = match verdict(&inspect, condition) {
            Verdict::Reached => return Ok(()),
            Verdict::Unreachable(why) => {
                return Err(ActionError::new(
                    ErrorKind::Timeout,
                    format!("container {name} cannot become {}: {why}", word(condition)),
                ))
            }
            Verdict::Pending(state) => state,
        };
        if Instant::now() + interval > deadline {
            return Err(ActionError::new(
                ErrorKind::Timeout,
                format!(
                    "container {name} did not become {} within {}s (last seen: {last})",
                    word(condition),
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

fn word(condition: DependencyCondition) -> &'static str {
    match condition {
        DependencyCondition::Started => "started",
        DependencyCondition::Healthy => "healthy",
        DependencyCondition::Completed => "completed",
    }
}

/// Judges one inspect. An `unhealthy` container keeps being polled: health checks may recover,
/// and the overall timeout bounds the wait.
pub(crate) fn verdict(
    inspect: &ContainerInspectResponse,
    condition: DependencyCondition,
) -> Verdict {
    let Some(state) = inspect.state.as_ref() else {
        return Verdict::Pending("no state yet".into());
    };
    let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    let exit_code = state.exit_code.unwrap_or_default();
    let ended = matches!(
        status,
        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
    );
    let ended_text = || {
        if status == ContainerStateStatusEnum::DEAD {
            "it is dead".to_string()
        } else {
            format!("it exited with code {exit_code}")
        }
    };
    match condition {
        DependencyCondition::Started => match status {
            ContainerStateStatusEnum::RUNNING => Verdict::Reached,
            _ if ended => Verdict::Unreachable(ended_text()),
            other => Verdict::Pending(other.to_string()),
        },
        DependencyCondition::Healthy => {
            if ended {
                return Verdict::Unreachable(ended_text());
            }
            let health = state.health.as_ref().and_then(|h| h.status);
            let has_check = inspect
                .config
                .as_ref()
                .and_then(|c| c.healthcheck.as_ref())
                .and_then(|h| h.test.as_ref())
                .is_some_and(|t| t.first().is_some_and(|first| first != "NONE"));
            match health {
                Some(HealthStatusEnum::HEALTHY) => Verdict::Reached,
                None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY)
                    if !has_check && status == ContainerStateStatusEnum::RUNNING =>
                {
                    Verdict::Unreachable("it has no health check".into())
                }
                Some(h) => Verdict::Pending(format!("{status}, health {h}")),
                None => Verdict::Pending(status.to_string()),
            }
        }
        DependencyCondition::Completed => match status {
            ContainerStateStatusEnum::EXITED if exit_code == 0 => Verdict::Reached,
            _ if ended => Verdict::Unreachable(ended_text()),
            other => Verdict::Pending(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, ContainerState, Health, HealthConfig};

    use super::*;

    fn inspect(
        status: ContainerStateStatusEnum,
        exit: i64,
        health: Option<HealthStatusEnum>,
        check: bool,
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(status),
                exit_code: Some(exit),
                health: health.map(|h| Health {
                    status: Some(h),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                healthcheck: check.then(|| HealthConfig {
                    test: Some(vec!["CMD".into(), "true".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    use ContainerStateStatusEnum::{CREATED, EXITED, RUNNING};
    use DependencyCondition::{Completed, Healthy, Started};

    #[test]
    fn started_means_running() {
        assert_eq!(
            verdict(&inspect(RUNNING, 0, None, false), Started),
            Verdict::Reached
        );
        assert!(matches!(
            verdict(&inspect(CREATED, 0, None, false), Started),
            Verdict::Pending(_)
        ));
        assert!(matches!(
            verdict(&inspect(EXITED, 1, None, false), Started),
            Verdict::Unreachable(_)
        ));
    }

    #[test]
    fn healthy_waits_for_the_check_and_fails_fast_on_exit() {
        use HealthStatusEnum::{HEALTHY, STARTING, UNHEALTHY};
        assert_eq!(
            verdict(&inspect(RUNNING, 0, Some(HEALTHY), true), Healthy),
            Verdict::Reached
        );
        assert!(matches!(
            verdict(&inspect(RUNNING, 0, Some(STARTING), true), Healthy),
            Verdict::Pending(_)
        ));
        assert!(matches!(
            verdict(&inspect(RUNNING, 0, Some(UNHEALTHY), true), Healthy),
            Verdict::Pending(_)
        ));
        assert_eq!(
            verdict(&inspect(EXITED, 2, Some(UNHEALTHY), true), Healthy),
            Verdict::Unreachable("it exited with code 2".into())
        );
        assert_eq!(
            verdict(&inspect(RUNNING, 0, None, false), Healthy),
            Verdict::Unreachable("it has no health check".into())
        );
    }

    #[test]
    fn completed_needs_exit_code_zero() {
        assert_eq!(
            verdict(&inspect(EXITED, 0, None, false), Completed),
            Verdict::Reached
        );
        assert_eq!(
            verdict(&inspect(EXITED, 3, None, false), Completed),
            Verdict::Unreachable("it exited with code 3".into())
        );
        assert!(matches!(
            verdict(&inspect(RUNNING, 0, None, false), Completed),
            Verdict::Pending(_)
        ));
    }
}

//! Compose `deploy.update_config` → the Container's `strategy`: `parallelism` becomes
//! `maxUnavailable` (0, all at once, becomes the replica count) and `order` the strategy type.
//! dockwright always rolls back a new replica that does not become healthy, so only
//! `failure_action: rollback` converts exactly; `pause` and `continue`, `monitor` (dockwright
//! waits until healthy, up to `healthTimeoutSeconds`, instead of watching for a fixed time),
//! `delay` and `max_failure_ratio` are warned about. Unset fields keep dockwright's defaults.

use super::compose::UpdateConfig;
use super::to_manifests::ServiceCx;
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::{RolloutStrategy, RolloutStrategyType};

const FIELD: &str = "deploy.update_config";

/// The strategy for `replicas` replicas publishing `host_port` (the first host port, if any).
pub(super) fn strategy(
    sc: &ServiceCx<'_>,
    update: Option<&UpdateConfig>,
    replicas: u32,
    host_port: Option<u16>,
    w: &mut Warnings,
) -> Result<Option<RolloutStrategy>, ConvertError> {
    let Some(u) = update else {
        return Ok(None);
    };
    sc.unsupported(w, FIELD, &u.other.0);
    let field = |key: &str| format!("{FIELD}.{key}");
    let type_ = match u.order.as_deref() {
        None => None,
        Some("stop-first") => Some(RolloutStrategyType::StopFirst),
        Some("start-first") => match host_port {
            None => Some(RolloutStrategyType::StartFirst),
            Some(port) => {
                sc.warn(
                    w,
                    &field("order"),
                    format!("start-first cannot be kept: the new container could not bind host port {port} while the old one holds it; converted to StopFirst"),
                );
                Some(RolloutStrategyType::StopFirst)
            }
        },
        Some(o) => {
            return Err(sc.err(
                &field("order"),
                format!("unknown order {o:?}; expected stop-first or start-first"),
            ))
        }
    };
    match u.failure_action.as_deref() {
        None | Some("rollback") => {}
        Some(a @ ("pause" | "continue")) => sc.warn(
            w,
            &field("failure_action"),
            format!("{a:?} is not supported: dockwright rolls back a new replica that does not become healthy (as rollback)"),
        ),
        Some(a) => {
            return Err(sc.err(
                &field("failure_action"),
                format!("unknown failure action {a:?}; expected continue, rollback or pause"),
            ))
        }
    }
    if u.monitor.is_some() {
        sc.warn(
            w,
            &field("monitor"),
            "not converted: dockwright waits for a new replica with a healthcheck to become healthy (spec.strategy.healthTimeoutSeconds, default 300s) instead of watching it for a fixed time; dropped",
        );
    }
    let max_unavailable = u
        .parallelism
        .map(|p| if p == 0 { replicas.max(1) } else { p });
    Ok(
        (type_.is_some() || max_unavailable.is_some()).then_some(RolloutStrategy {
            type_,
            max_unavailable,
            health_timeout_seconds: None,
        }),
    )
}

//! `spec.strategy` of a `Container`: defaults and checks for how its replicas are rolled.
//! Produces [`Rollout`], which lives beside the create configuration, never inside it, so a
//! strategy edit changes no spec hash.

use super::Ctx;
use crate::api::{ContainerSpec, RolloutStrategyType};
use crate::desired::{PortBinding, Rollout, DEFAULT_HEALTH_TIMEOUT_SECONDS};

/// Upper bound of `healthTimeoutSeconds` (a day): beyond that a typo is likelier than intent.
const MAX_HEALTH_TIMEOUT_SECONDS: u32 = 86_400;

/// Normalises `spec.strategy` given the already normalised `ports` and the fixed network
/// addresses (`networks[].ipv4Address`).
///
/// The type defaults to `StartFirst`, or to `StopFirst` when a port is published on the host
/// or an address is fixed: the new container could not bind the port, or take the address,
/// while the old one holds it. An explicit `StartFirst` then is an error rather than silently
/// turned into `StopFirst`: the user asked for a rollout without downtime, which cannot be
/// had, and should know.
pub(super) fn normalize_strategy(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    ports: &[PortBinding],
    fixed_addresses: &[&str],
) -> Rollout {
    let held = ports
        .iter()
        .find_map(|p| p.host_port)
        .map(|port| (format!("host port {port}"), "hostPort"))
        .or_else(|| {
            fixed_addresses
                .first()
                .map(|ip| (format!("address {ip}"), "ipv4Address"))
        });
    let given = spec.strategy.as_ref();
    let strategy = match (given.and_then(|s| s.type_), held) {
        (Some(RolloutStrategyType::StartFirst), Some((what, field))) => {
            cx.err(
                "spec.strategy.type",
                format!(
                    "StartFirst would start the new container while the old one still holds {what}; use StopFirst (the default with a {field}) or drop the {field}"
                ),
            );
            RolloutStrategyType::StopFirst
        }
        (Some(t), _) => t,
        (None, Some(_)) => RolloutStrategyType::StopFirst,
        (None, None) => RolloutStrategyType::StartFirst,
    };
    let max_unavailable = match given.and_then(|s| s.max_unavailable) {
        Some(0) => {
            cx.err(
                "spec.strategy.maxUnavailable",
                "must be at least 1 (replicas are replaced by removing the old ones)",
            );
            1
        }
        Some(n) => n,
        None => 1,
    };
    let health_timeout_seconds = match given.and_then(|s| s.health_timeout_seconds) {
        Some(0) => {
            cx.err("spec.strategy.healthTimeoutSeconds", "must be at least 1");
            DEFAULT_HEALTH_TIMEOUT_SECONDS
        }
        Some(n) if n > MAX_HEALTH_TIMEOUT_SECONDS => {
            cx.err(
                "spec.strategy.healthTimeoutSeconds",
                format!("{n} is more than a day ({MAX_HEALTH_TIMEOUT_SECONDS})"),
            );
            DEFAULT_HEALTH_TIMEOUT_SECONDS
        }
        Some(n) => n,
        None => DEFAULT_HEALTH_TIMEOUT_SECONDS,
    };
    Rollout {
        strategy,
        max_unavailable,
        health_timeout_seconds,
    }
}

//! The placement controller (`dockwright controller`): see the module documentation of
//! [`crate::kubernetes`]. Replicas elect a leader on a Lease ([`lease`]); the leader runs the
//! [`worker`], which keeps each parent's `Placement`s ([`children`]) and writes its aggregate
//! status ([`aggregate`]). A replica that loses the Lease stops its worker at once; a
//! standby's caches are filled only when it becomes leader.

pub mod aggregate;
pub mod children;
pub mod lease;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::Client;
use prometheus::{IntCounterVec, IntGauge, Opts};

pub use lease::LeaseOptions;
pub use worker::WorkerOptions;

use crate::metrics::{Metrics, MetricsError};

/// `dockwright_controller_*`.
pub struct ControllerMetrics {
    /// 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// 1 once the leader's caches are filled.
    pub ready: IntGauge,
    /// Parent reconciles by kind and result.
    pub reconciles: IntCounterVec,
    /// Writes by verb (`apply`, `delete`, `release` of a child; `status` of a parent).
    pub writes: IntCounterVec,
    /// Times this replica became leader.
    pub transitions: prometheus::IntCounter,
}

impl ControllerMetrics {
    /// Registers the controller's metrics beside the common ones.
    pub fn register(metrics: &Metrics) -> Result<Self, MetricsError> {
        let leader = IntGauge::new(
            "dockwright_controller_leader",
            "1 while this replica holds the controller Lease.",
        )
        .map_err(MetricsError::from)?;
        let ready = IntGauge::new(
            "dockwright_controller_caches_ready",
            "1 once the leader's caches of parents, nodes and placements are filled.",
        )
        .map_err(MetricsError::from)?;
        let reconciles = IntCounterVec::new(
            Opts::new(
                "dockwright_controller_reconciles_total",
                "Parent reconciles by kind and result (ok, kube, ...).",
            ),
            &["kind", "result"],
        )
        .map_err(MetricsError::from)?;
        let writes = IntCounterVec::new(
            Opts::new(
                "dockwright_controller_writes_total",
                "API writes by verb: apply, delete, release (a child's finalizer), status (a parent's).",
            ),
            &["verb"],
        )
        .map_err(MetricsError::from)?;
        let transitions = prometheus::IntCounter::new(
            "dockwright_controller_leader_transitions_total",
            "Times this replica became leader.",
        )
        .map_err(MetricsError::from)?;
        metrics.register(Box::new(leader.clone()))?;
        metrics.register(Box::new(ready.clone()))?;
        metrics.register(Box::new(reconciles.clone()))?;
        metrics.register(Box::new(writes.clone()))?;
        metrics.register(Box::new(transitions.clone()))?;
        Ok(Self {
            leader,
            ready,
            reconciles,
            writes,
            transitions,
        })
    }
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The Lease.
    pub lease: LeaseOptions,
    /// The worker.
    pub worker: WorkerOptions,
}

/// Campaigns for the Lease and leads while holding it, until `shutdown` completes; then gives
/// the Lease up so a standby takes over at once.
pub async fn run(
    client: Client,
    options: ControllerOptions,
    metrics: Arc<ControllerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut elector = lease::Elector::new(client.clone(), options.lease.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let retry = options.lease.retry;
    let identity = elector.identity().to_string();
    loop {
        // Candidate: try every `retry` until the Lease is ours.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "lease: could not read or take it"),
            }
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = &mut shutdown => return,
            }
        }
        tracing::info!(%identity, lease = %options.lease.name, "became leader");
        metrics.leader.set(1);
        metrics.transitions.inc();
        let work = tokio::spawn(worker::run(
            client.clone(),
            options.worker.clone(),
            Arc::clone(&metrics),
        ));
        let mut renewed = Instant::now();
        let lost = loop {
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = &mut shutdown => break false,
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break true,
                Err(error) => {
                    tracing::warn!(%error, "lease: renewal failed");
                    if renewed.elapsed() >= options.lease.renew_deadline {
                        break true;
                    }
                }
            }
        };
        work.abort();
        let _ = work.await;
        metrics.leader.set(0);
        metrics.ready.set(0);
        if !lost {
            if let Err(error) = elector.release().await {
                tracing::warn!(%error, "lease: could not release it");
            }
            tracing::info!(%identity, "stopped leading (shutdown)");
            return;
        }
        tracing::warn!(%identity, "lost the lease; stopped leading");
    }
}

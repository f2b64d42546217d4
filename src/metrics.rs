//! The Prometheus registry and the `dockwright_*` metrics (names in DESIGN). The agent only
//! calls "count this" / "time this"; [`Metrics::render`] gives the text exposition format that
//! `/metrics` serves. Its own [`Registry`], never the process-wide default one, so tests and
//! several agents in one process never share counters.
//!
//! Choices the design leaves open:
//! - `dockwright_actions_total{result}` is `ok`, `failed`, `skipped` (a prerequisite failed)
//!   or `deferred` (waits for an image pulled in the same pass, planned again next pass):
//!   a deferral is neither a success nor a failure, so it gets its own value.
//! - Failures are also counted by error kind in `dockwright_action_errors_total{action,kind}`
//!   (kind = [`crate::execute::ErrorKind::label`]), so they can be told apart without logs.
//! - `dockwright_docker_requests_total` mirrors the Docker adapter's own request counters
//!   (read at scrape time from a source set with [`Metrics::set_docker_request_source`], or
//!   pushed with [`Metrics::sync_docker_requests`]), so there is one count, not two.
//! - The `dockwright_source_*` metrics exist only on an agent that follows a git repository
//!   (registered by the first [`Metrics::sync_source`]), mirroring its [`GitStatus`] counts.
//!
//! [`GitStatus`]: crate::source::git::GitStatus

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::docker::DaemonEvent;
use crate::execute::{ActionReport, Outcome};

/// Buckets of the reconcile duration: a no-op pass takes milliseconds, one with pulls or
/// health waits minutes.
const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Resource kinds and phases always exported (as 0 when no resource is in them), so
/// dashboards and alerts see the series before the first resource lands there.
const KINDS: &[&str] = &["Image", "Container"];
const PHASES: &[&str] = &["Ready", "Progressing", "Failed", "Blocked"];

/// A source of the Docker adapter's request counts (`Docker::request_counts`).
pub type RequestCountSource = Box<dyn Fn() -> BTreeMap<&'static str, u64> + Send + Sync>;

/// Registration of a metric failed (a name registered twice: a programming error).
#[derive(Debug, thiserror::Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every `dockwright_*` metric, registered in one registry.
///
/// Created once by the agent and shared (`Arc`) between the reconcile loop, which counts, and
/// the HTTP server, which renders. All methods take `&self`.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconciles: IntCounterVec,
    actions: IntCounterVec,
    action_errors: IntCounterVec,
    resources: IntGaugeVec,
    drift_corrections: IntCounterVec,
    docker_requests: IntCounterVec,
    docker_events: IntCounterVec,
    backoff_resources: IntGauge,
    ready: IntGauge,
    /// `(kind, phase)` pairs set by the last [`Metrics::set_resources`] outside the fixed ones.
    extra_phases: Mutex<BTreeSet<(String, String)>>,
    request_source: Mutex<Option<RequestCountSource>>,
    /// The git source's metrics, registered by the first [`Metrics::sync_source`].
    source: Mutex<Option<SourceMetrics>>,
}

/// `dockwright_source_*`: fetches, failures, rejected revisions, the applied revision.
struct SourceMetrics {
    fetches: IntCounterVec,
    rejected: prometheus::IntCounter,
    last_fetch: prometheus::Gauge,
    revision: IntGaugeVec,
    /// Labels of the `revision` series set to 1.
    revision_labels: Option<[String; 3]>,
}

impl SourceMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let fetches = IntCounterVec::new(
            Opts::new(
                "dockwright_source_fetches_total",
                "Polls of the git source by result (ok: the server answered; error).",
            ),
            &["result"],
        )?;
        let rejected = prometheus::IntCounter::new(
            "dockwright_source_rejected_revisions_total",
            "Revisions that failed to check out, parse or validate (nothing was changed).",
        )?;
        let last_fetch = prometheus::Gauge::new(
            "dockwright_source_last_successful_fetch_timestamp_seconds",
            "Unix time of the last poll the git server answered.",
        )?;
        let revision = IntGaugeVec::new(
            Opts::new(
                "dockwright_source_revision_info",
                "1 for the revision in effect, labelled with the URL (no credentials), ref and commit.",
            ),
            &["url", "ref", "revision"],
        )?;
        for result in ["ok", "error"] {
            fetches.with_label_values(&[result]);
        }
        registry.register(Box::new(fetches.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(last_fetch.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        Ok(Self {
            fetches,
            rejected,
            last_fetch,
            revision,
            revision_labels: None,
        })
    }
}

/// Raises `counter` to `total` (counters only go up).
fn raise(counter: &prometheus::IntCounter, total: u64) {
    let delta = total.saturating_sub(counter.get());
    if delta > 0 {
        counter.inc_by(delta);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers more collectors in the same registry (the placement controller's own).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), MetricsError> {
        Ok(self.registry.register(collector)?)
    }

    /// Registers every metric in a new registry; `dockwright_build_info{version}` is 1,
    /// `dockwright_ready` 0.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "dockwright_reconcile_duration_seconds",
                "Duration of reconcile passes (observe, plan, execute).",
            )
            .buckets(RECONCILE_BUCKETS.to_vec()),
        )?;
        let reconciles = IntCounterVec::new(
            Opts::new(
                "dockwright_reconciles_total",
                "Reconcile passes by result (ok, error).",
            ),
            &["result"],
        )?;
        let actions = IntCounterVec::new(
            Opts::new(
                "dockwright_actions_total",
                "Actions run, by verb and result (ok, failed, skipped, deferred).",
            ),
            &["action", "result"],
        )?;
        let action_errors = IntCounterVec::new(
            Opts::new(
                "dockwright_action_errors_total",
                "Failed actions by verb and error kind.",
            ),
            &["action", "kind"],
        )?;
        let resources = IntGaugeVec::new(
            Opts::new(
                "dockwright_resources",
                "Resources by kind and phase after the last pass.",
            ),
            &["kind", "phase"],
        )?;
        let drift_corrections = IntCounterVec::new(
            Opts::new(
                "dockwright_drift_corrections_total",
                "Changes made outside dockwright that it corrected, by reason.",
            ),
            &["reason"],
        )?;
        let docker_requests = IntCounterVec::new(
            Opts::new(
                "dockwright_docker_requests_total",
                "Docker API requests by operation.",
            ),
            &["operation"],
        )?;
        let docker_events = IntCounterVec::new(
            Opts::new(
                "dockwright_docker_events_total",
                "Docker events received, by type and action.",
            ),
            &["type", "action"],
        )?;
        let backoff_resources = IntGauge::new(
            "dockwright_backoff_resources",
            "Resources waiting out a back-off after failures.",
        )?;
        let ready = IntGauge::new(
            "dockwright_ready",
            "1 once the first full reconcile pass has finished.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "dockwright_build_info",
                "Always 1; labelled with the dockwright version.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for kind in KINDS {
            for phase in PHASES {
                resources.with_label_values(&[kind, phase]).set(0);
            }
        }
        for result in ["ok", "error"] {
            reconciles.with_label_values(&[result]);
        }

        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(actions.clone()))?;
        registry.register(Box::new(action_errors.clone()))?;
        registry.register(Box::new(resources.clone()))?;
        registry.register(Box::new(drift_corrections.clone()))?;
        registry.register(Box::new(docker_requests.clone()))?;
        registry.register(Box::new(docker_events.clone()))?;
        registry.register(Box::new(backoff_resources.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Self {
            registry,
            reconcile_duration,
            reconciles,
            actions,
            action_errors,
            resources,
            drift_corrections,
            docker_requests,
            docker_events,
            backoff_resources,
            ready,
            extra_phases: Mutex::new(BTreeSet::new()),
            request_source: Mutex::new(None),
            source: Mutex::new(None),
        })
    }

    /// The registry, to add collectors of other libraries.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts timing a reconcile pass; record it with [`ReconcileTimer::finish`]. A timer
    /// dropped unfinished (a pass cancelled by shutdown) records nothing.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Records one reconcile pass: its duration and whether it ended without error.
    pub fn observe_reconcile(&self, elapsed: Duration, ok: bool) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        self.reconciles
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Counts one executed (or skipped, or deferred) action.
    pub fn count_action(&self, report: &ActionReport) {
        let result = match &report.outcome {
            Outcome::Succeeded => "ok",
            Outcome::Failed { error } => {
                self.action_errors
                    .with_label_values(&[report.verb, error.kind.label()])
                    .inc();
                "failed"
            }
            Outcome::Skipped { .. } => "skipped",
            Outcome::Deferred => "deferred",
        };
        self.actions.with_label_values(&[report.verb, result]).inc();
    }

    /// Counts every action of a pass.
    pub fn count_actions(&self, reports: &[ActionReport]) {
        for report in reports {
            self.count_action(report);
        }
    }

    /// Sets `dockwright_resources` from a count per `(kind, phase)` (as
    /// `AgentStatus::phase_counts` gives). Pairs absent from `counts` drop to 0 (the fixed
    /// kinds and phases) or disappear (any other phase, e.g. `Undeclared`).
    pub fn set_resources<K, P>(&self, counts: &BTreeMap<(K, P), usize>)
    where
        K: AsRef<str> + Ord,
        P: AsRef<str> + Ord,
    {
        let mut extra = self.extra_phases.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, phase) in std::mem::take(&mut *extra) {
            // Absent is fine: it may have been removed already.
            let _ = self.resources.remove_label_values(&[&kind, &phase]);
        }
        for kind in KINDS {
            for phase in PHASES {
                self.resources.with_label_values(&[kind, phase]).set(0);
            }
        }
        for ((kind, phase), n) in counts {
            let (kind, phase) = (kind.as_ref(), phase.as_ref());
            let fixed = KINDS.contains(&kind) && PHASES.contains(&phase);
            if !fixed {
                extra.insert((kind.to_string(), phase.to_string()));
            }
            self.resources
                .with_label_values(&[kind, phase])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Counts one correction of drift (`removed`, `stopped`, `modified`, ...).
    pub fn count_drift_correction(&self, reason: &str) {
        self.drift_corrections.with_label_values(&[reason]).inc();
    }

    /// Counts one Docker event by its `(type, action)` labels.
    pub fn count_docker_event(&self, event: &DaemonEvent) {
        let (kind, action) = event.metric_labels();
        self.docker_events.with_label_values(&[kind, &action]).inc();
    }

    /// Sets the number of resources backing off.
    pub fn set_backoff_resources(&self, n: usize) {
        self.backoff_resources
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets readiness (`dockwright_ready`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Reads the Docker request counts from `source` at every [`Metrics::render`]
    /// (e.g. `Box::new(move || docker.request_counts())`).
    pub fn set_docker_request_source(&self, source: RequestCountSource) {
        *self
            .request_source
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Brings `dockwright_docker_requests_total` up to the adapter's totals. Counters only go
    /// up: a total below the exported value (a new client whose counts restarted) is ignored
    /// until it passes it.
    pub fn sync_docker_requests(&self, counts: &BTreeMap<&'static str, u64>) {
        for (operation, total) in counts {
            let counter = self.docker_requests.with_label_values(&[operation]);
            let delta = total.saturating_sub(counter.get());
            if delta > 0 {
                counter.inc_by(delta);
            }
        }
    }

    /// Brings the `dockwright_source_*` metrics in line with the git source's status.
    pub fn sync_source(&self, status: &crate::source::git::GitStatus) {
        let mut guard = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match SourceMetrics::register(&self.registry) {
                Ok(m) => *guard = Some(m),
                Err(error) => {
                    tracing::warn!(%error, "registering the source metrics");
                    return;
                }
            }
        }
        let Some(m) = guard.as_mut() else {
            return;
        };
        raise(&m.fetches.with_label_values(&["ok"]), status.fetches);
        raise(
            &m.fetches.with_label_values(&["error"]),
            status.fetch_failures,
        );
        raise(&m.rejected, status.rejected_revisions);
        if let Some(t) = status.last_fetch_unix {
            m.last_fetch.set(t);
        }
        let labels = status.applied_revision.as_ref().map(|revision| {
            [
                status.url.clone(),
                status.reference.clone(),
                revision.clone(),
            ]
        });
        if labels != m.revision_labels {
            if let Some(old) = &m.revision_labels {
                let old: Vec<&str> = old.iter().map(String::as_str).collect();
                let _ = m.revision.remove_label_values(&old);
            }
            if let Some(new) = &labels {
                let new: Vec<&str> = new.iter().map(String::as_str).collect();
                m.revision.with_label_values(&new).set(1);
            }
            m.revision_labels = labels;
        }
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let counts = {
            let source = self
                .request_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            source.as_ref().map(|f| f())
        };
        if let Some(counts) = counts {
            self.sync_docker_requests(&counts);
        }
        let families = self.registry.gather();
        let mut out = Vec::new();
        // Encoding into a Vec fails only on invalid metric data, which our types cannot make.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Times one reconcile pass (see [`Metrics::reconcile_timer`]).
#[must_use = "call finish() to record the pass"]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl ReconcileTimer<'_> {
    /// Records the pass with its result.
    pub fn finish(self, ok: bool) {
        self.metrics.observe_reconcile(self.started.elapsed(), ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Kind, ResourceKey};
    use crate::execute::{ActionError, ErrorKind};

    /// The value of the sample `name{labels}` in the rendered text (labels as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn report(verb: &'static str, outcome: Outcome) -> ActionReport {
        ActionReport {
            id: 0,
            resource: ResourceKey::new(Kind::Container, "default", "web"),
            verb,
            target: "web".into(),
            outcome,
            elapsed: Duration::from_millis(5),
        }
    }

    #[test]
    fn fresh_registry_exports_build_info_readiness_and_zero_phases() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            sample(
                &text,
                &format!("dockwright_build_info{{version=\"{version}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "dockwright_ready"), Some(0.0));
        assert_eq!(sample(&text, "dockwright_backoff_resources"), Some(0.0));
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Container\",phase=\"Blocked\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "dockwright_reconciles_total{result=\"error\"}"),
            Some(0.0)
        );
        assert!(
            text.contains("# TYPE dockwright_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE dockwright_reconciles_total counter"),
            "{text}"
        );
    }

    #[test]
    fn a_new_registry_is_not_shared() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.count_drift_correction("removed");
        assert_eq!(
            sample(
                &a.render(),
                "dockwright_drift_corrections_total{reason=\"removed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &b.render(),
                "dockwright_drift_corrections_total{reason=\"removed\"}"
            ),
            None
        );
    }

    #[test]
    fn reconcile_passes_are_timed_and_counted_by_result() {
        let m = Metrics::new().unwrap();
        m.observe_reconcile(Duration::from_millis(30), true);
        m.observe_reconcile(Duration::from_secs(20), false);
        m.reconcile_timer().finish(true);
        drop(m.reconcile_timer()); // unfinished: not recorded
        let text = m.render();
        assert_eq!(
            sample(&text, "dockwright_reconciles_total{result=\"ok\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "dockwright_reconciles_total{result=\"error\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "dockwright_reconcile_duration_seconds_count"),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_reconcile_duration_seconds_bucket{le=\"0.05\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_reconcile_duration_seconds_bucket{le=\"30\"}"
            ),
            Some(3.0)
        );
        let sum = sample(&text, "dockwright_reconcile_duration_seconds_sum").unwrap();
        assert!((20.03..21.0).contains(&sum), "{sum}");
    }

    #[test]
    fn actions_are_counted_by_verb_and_result() {
        let m = Metrics::new().unwrap();
        m.count_actions(&[
            report("create", Outcome::Succeeded),
            report("create", Outcome::Succeeded),
            report(
                "start",
                Outcome::Failed {
                    error: ActionError::new(ErrorKind::Conflict, "taken"),
                },
            ),
            report("start", Outcome::Skipped { blocked_by: 1 }),
            report("create", Outcome::Deferred),
        ]);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "dockwright_actions_total{action=\"create\",result=\"ok\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_actions_total{action=\"start\",result=\"failed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_actions_total{action=\"start\",result=\"skipped\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_actions_total{action=\"create\",result=\"deferred\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_action_errors_total{action=\"start\",kind=\"conflict\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_actions_total{action=\"start\",result=\"ok\"}"
            ),
            None
        );
    }

    #[test]
    fn resource_phases_are_replaced_not_accumulated() {
        let m = Metrics::new().unwrap();
        let first: BTreeMap<(String, String), usize> = [
            (("Container".into(), "Ready".into()), 3),
            (("Container".into(), "Undeclared".into()), 1),
            (("Image".into(), "Failed".into()), 1),
        ]
        .into();
        m.set_resources(&first);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Container\",phase=\"Ready\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Container\",phase=\"Undeclared\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Image\",phase=\"Failed\"}"
            ),
            Some(1.0)
        );

        let second: BTreeMap<(&str, &str), usize> = [(("Container", "Ready"), 2)].into();
        m.set_resources(&second);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Container\",phase=\"Ready\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Image\",phase=\"Failed\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_resources{kind=\"Container\",phase=\"Undeclared\"}"
            ),
            None
        );
    }

    #[test]
    fn docker_requests_follow_the_adapter_totals() {
        let m = Metrics::new().unwrap();
        m.sync_docker_requests(&[("container_list", 3), ("ping", 1)].into());
        m.sync_docker_requests(&[("container_list", 5), ("ping", 1)].into());
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "dockwright_docker_requests_total{operation=\"container_list\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_docker_requests_total{operation=\"ping\"}"
            ),
            Some(1.0)
        );
        // A lower total (a fresh client) never makes a counter go down.
        m.sync_docker_requests(&[("container_list", 2)].into());
        assert_eq!(
            sample(
                &m.render(),
                "dockwright_docker_requests_total{operation=\"container_list\"}"
            ),
            Some(5.0)
        );

        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(7));
        let source = std::sync::Arc::clone(&calls);
        m.set_docker_request_source(Box::new(move || {
            [(
                "image_list",
                source.load(std::sync::atomic::Ordering::SeqCst),
            )]
            .into()
        }));
        assert_eq!(
            sample(
                &m.render(),
                "dockwright_docker_requests_total{operation=\"image_list\"}"
            ),
            Some(7.0)
        );
        calls.store(9, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            sample(
                &m.render(),
                "dockwright_docker_requests_total{operation=\"image_list\"}"
            ),
            Some(9.0)
        );
    }

    #[test]
    fn events_drift_backoff_and_readiness() {
        let m = Metrics::new().unwrap();
        m.count_docker_event(&DaemonEvent::Container {
            resource: None,
            id: "abc".into(),
            action: "health_status: unhealthy".into(),
        });
        m.count_docker_event(&DaemonEvent::Image {
            id: "sha256:1".into(),
            action: "delete".into(),
            reference: None,
        });
        m.count_docker_event(&DaemonEvent::Connected);
        m.count_drift_correction("stopped");
        m.count_drift_correction("stopped");
        m.set_backoff_resources(4);
        m.set_ready(true);
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "dockwright_docker_events_total{action=\"health_status\",type=\"container\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_docker_events_total{action=\"delete\",type=\"image\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_docker_events_total{action=\"connected\",type=\"stream\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "dockwright_drift_corrections_total{reason=\"stopped\"}"
            ),
            Some(2.0)
        );
        assert_eq!(sample(&text, "dockwright_backoff_resources"), Some(4.0));
        assert_eq!(sample(&text, "dockwright_ready"), Some(1.0));
    }
}

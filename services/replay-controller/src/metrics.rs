//! Prometheus metrics of the replay controller (served on /metrics).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct Metrics {
    /// Reconciles run, by result (ok | error).
    pub reconciles: Family<Labels, Counter>,
    /// Reconcile errors, by kind (kube | kafka | finalizer ...).
    pub failures: Family<Labels, Counter>,
    /// How long one reconcile took.
    pub duration: Histogram,
    /// Requests that reached a phase (every phase change), by phase.
    pub transitions: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            failures: Family::default(),
            // 1 ms .. ~16 s
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            transitions: Family::default(),
        }
    }
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "orderflow_replay_reconciles",
            "ReplayRequest reconciles, by result",
            m.reconciles.clone(),
        );
        registry.register(
            "orderflow_replay_reconcile_failures",
            "ReplayRequest reconciles that failed (retried with backoff), by kind",
            m.failures.clone(),
        );
        registry.register(
            "orderflow_replay_reconcile_duration_seconds",
            "Time one ReplayRequest reconcile took",
            m.duration.clone(),
        );
        registry.register(
            "orderflow_replay_phase_transitions",
            "ReplayRequest phase changes, by the phase entered",
            m.transitions.clone(),
        );
        m
    }

    pub fn reconciled(&self, took: Duration, ok: bool) {
        self.duration.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&label("result", result))
            .inc();
    }

    pub fn failed(&self, kind: &str) {
        self.failures.get_or_create(&label("kind", kind)).inc();
    }

    pub fn entered(&self, phase: &str) {
        self.transitions.get_or_create(&label("phase", phase)).inc();
    }
}

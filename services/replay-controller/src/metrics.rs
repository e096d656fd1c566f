//! Prometheus metrics of the replay controller (served on /metrics).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::drill::DrillVerdict;

/// `{result="ok"}` or `{result="error"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// `{kind="..."}`: what failed (kube | kafka | finalizer | invalid).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// `{phase="..."}`: the phase entered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// `{group="...",namespace="...",name="..."}`: a ReplayRequest and the consumer group it
/// replays.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    pub group: String,
    pub namespace: String,
    pub name: String,
}

/// `{group="...",verdict="passed|failed"}`: the group whose lag a drill measured.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    pub group: String,
    pub verdict: DrillVerdict,
}

fn drain_histogram() -> Histogram {
    // 1 s .. ~68 min
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

#[derive(Clone)]
pub struct Metrics {
    /// Reconciles run, by result (ok | error).
    pub reconciles: Family<ResultLabels, Counter>,
    /// Reconcile errors, by kind (kube | kafka | finalizer ...).
    pub failures: Family<KindLabels, Counter>,
    /// How long one reconcile took.
    pub duration: Histogram,
    /// Requests that reached a phase (every phase change), by phase.
    pub transitions: Family<PhaseLabels, Counter>,
    /// 1 while a request is active on its group (ScalingDown to HoldingLag, CatchingUp
    /// included); the series is removed when it is not (pending, planned, finished, deleted).
    pub in_progress: Family<ReplayLabels, Gauge>,
    /// Drills (spec.lag.maxDrainSeconds): seconds from restoring the deployment until the
    /// lag was 0 (until the drain timeout when it did not drain), by group and verdict.
    pub drill_drain: Family<DrillLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            failures: Family::default(),
            // 1 ms .. ~16 s
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            transitions: Family::default(),
            in_progress: Family::default(),
            drill_drain: Family::new_with_constructor(drain_histogram),
        }
    }
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
        registry.register(
            "orderflow_replay_in_progress",
            "1 while a ReplayRequest is active on the consumer group (scaled down, resetting, restoring, catching up or holding lag); absent otherwise. Alerts on the group's lag are muted with it",
            m.in_progress.clone(),
        );
        registry.register(
            "orderflow_replay_drill_drain_seconds",
            "Drills: seconds from restoring the lag deployment until the lag was 0, by group and verdict",
            m.drill_drain.clone(),
        );
        m
    }

    /// Request `namespace/name` moving `groups` is active (1 for each) or not (series
    /// removed).
    pub fn replay(&self, groups: &[&str], namespace: &str, name: &str, active: bool) {
        for group in groups {
            let labels = ReplayLabels {
                group: group.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            if active {
                self.in_progress.get_or_create(&labels).set(1);
            } else {
                self.in_progress.remove(&labels);
            }
        }
    }

    pub fn reconciled(&self, took: Duration, ok: bool) {
        self.duration.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn failed(&self, kind: &'static str) {
        self.failures.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn entered(&self, phase: &'static str) {
        self.transitions.get_or_create(&PhaseLabels { phase }).inc();
    }

    /// A drill's verdict on `group`, its drain measured `seconds` after the restore.
    pub fn drill(&self, group: &str, verdict: DrillVerdict, seconds: f64) {
        self.drill_drain
            .get_or_create(&DrillLabels {
                group: group.to_string(),
                verdict,
            })
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn the_labels_are_named_result_kind_phase_group_and_verdict() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconciled(Duration::from_millis(3), true);
        m.reconciled(Duration::from_millis(3), false);
        m.failed("kafka");
        m.entered("Succeeded");
        m.replay(&["analytics", "inventory"], "default", "replay-1", true);
        m.replay(&["inventory"], "default", "replay-2", true);
        m.replay(&["inventory"], "default", "replay-2", false);
        m.drill("inventory", DrillVerdict::Failed, 7.5);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"orderflow_replay_reconciles_total{result="ok"} 1"#,
            r#"orderflow_replay_reconciles_total{result="error"} 1"#,
            r#"orderflow_replay_reconcile_failures_total{kind="kafka"} 1"#,
            r#"orderflow_replay_phase_transitions_total{phase="Succeeded"} 1"#,
            r#"orderflow_replay_in_progress{group="analytics",namespace="default",name="replay-1"} 1"#,
            r#"orderflow_replay_in_progress{group="inventory",namespace="default",name="replay-1"} 1"#,
            r#"orderflow_replay_drill_drain_seconds_count{group="inventory",verdict="failed"} 1"#,
            r#"orderflow_replay_drill_drain_seconds_sum{group="inventory",verdict="failed"} 7.5"#,
            r#"orderflow_replay_drill_drain_seconds_bucket{le="8.0",group="inventory",verdict="failed"} 1"#,
            r#"orderflow_replay_drill_drain_seconds_bucket{le="4.0",group="inventory",verdict="failed"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("replay-2"),
            "a finished request's series is removed"
        );
    }
}

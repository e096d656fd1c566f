//! The shadow part of a ReplayRequest (`spec.strategy: Shadow`) as the dashboard shows it:
//! the replay-controller runs a copy of the Deployment as group `<group>-shadow-<request>`
//! beside the live one, and records in `status.shadow` its group, Deployment, times and the
//! two analytics' numbers it read (`metrics.shadow`, `metrics.live`), and in
//! `status.catchUp` the shadow group's progress. Read from untyped JSON, like the rest of
//! the panel; absent fields stay absent.

use serde::Serialize;
use serde_json::Value;

use crate::state::failure_rate;

/// `spec.strategy` of a shadow replay.
pub const SHADOW: &str = "Shadow";
/// `spec.strategy` when absent: the consumer group itself is reset.
pub const IN_PLACE: &str = "InPlace";

/// The numbers one analytics reported (`status.shadow.metrics.shadow` / `.live`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowMetrics {
    pub orders_total: u64,
    pub reserved_total: u64,
    pub failed_total: u64,
    /// As recorded, else `failed / (reserved + failed)` like `/api/metrics`.
    pub failure_rate: f64,
    /// Event-time minutes counted.
    pub minutes: u64,
}

/// The shadow group's progress towards the replay's targets (`status.catchUp`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CatchUp {
    pub records_total: i64,
    pub records_done: i64,
    pub records_left: i64,
    pub records_per_second: Option<f64>,
    /// When it would pass the targets at that rate, RFC 3339.
    pub eta: Option<String>,
    pub caught_up_at: Option<String>,
}

/// A shadow replay: `ReplaySummary::shadow`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowSummary {
    /// `spec.promote`: whether the shadow's state replaces the live one once caught up.
    pub promote: bool,
    /// The shadow's consumer group (`status.shadow.consumerGroup`), absent until the
    /// controller created it.
    pub consumer_group: Option<String>,
    /// The shadow's Deployment (`<deployment>-shadow-<request>`).
    pub deployment: Option<String>,
    /// Created and not removed yet: the dashboard shows it beside the live numbers.
    pub running: bool,
    pub promoted: bool,
    pub removed: bool,
    pub created_at: Option<String>,
    pub caught_up_at: Option<String>,
    pub promoted_at: Option<String>,
    pub removed_at: Option<String>,
    pub catch_up: Option<CatchUp>,
    /// When the controller read `shadow_metrics` and `live_metrics`.
    pub metrics_at: Option<String>,
    pub shadow_metrics: Option<ShadowMetrics>,
    pub live_metrics: Option<ShadowMetrics>,
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| cur.get(*p))
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path).and_then(Value::as_str).map(String::from)
}

/// `spec.strategy`, [`IN_PLACE`] when absent.
pub fn strategy(object: &Value) -> String {
    text(object, &["spec", "strategy"]).unwrap_or_else(|| IN_PLACE.into())
}

fn metrics(v: Option<&Value>) -> Option<ShadowMetrics> {
    let v = v?;
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let (reserved, failed) = (n("reservedTotal")?, n("failedTotal")?);
    Some(ShadowMetrics {
        orders_total: n("ordersTotal")?,
        reserved_total: reserved,
        failed_total: failed,
        failure_rate: v
            .get("failureRate")
            .and_then(Value::as_f64)
            .unwrap_or_else(|| failure_rate(reserved, failed)),
        minutes: n("minutes").unwrap_or(0),
    })
}

fn catch_up(v: Option<&Value>) -> Option<CatchUp> {
    let v = v?;
    let n = |k: &str| v.get(k).and_then(Value::as_i64);
    Some(CatchUp {
        records_total: n("recordsTotal")?,
        records_done: n("recordsDone")?,
        records_left: n("recordsLeft")?,
        records_per_second: v.get("recordsPerSecond").and_then(Value::as_f64),
        eta: text(v, &["eta"]),
        caught_up_at: text(v, &["caughtUpAt"]),
    })
}

/// The shadow part of ReplayRequest `object`: `None` unless `spec.strategy` is [`SHADOW`].
pub fn summarize(object: &Value) -> Option<ShadowSummary> {
    if strategy(object) != SHADOW {
        return None;
    }
    let status = at(object, &["status", "shadow"]);
    let field = |k: &str| status.and_then(|s| text(s, &[k]));
    let promoted_at = field("promotedAt");
    let removed_at = field("removedAt");
    Some(ShadowSummary {
        promote: at(object, &["spec", "promote"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        consumer_group: field("consumerGroup"),
        deployment: field("deployment"),
        running: status.is_some() && removed_at.is_none(),
        promoted: promoted_at.is_some(),
        removed: removed_at.is_some(),
        created_at: field("createdAt"),
        caught_up_at: field("caughtUpAt"),
        promoted_at,
        removed_at,
        catch_up: catch_up(at(object, &["status", "catchUp"])),
        metrics_at: status.and_then(|s| text(s, &["metrics", "at"])),
        shadow_metrics: metrics(status.and_then(|s| at(s, &["metrics", "shadow"]))),
        live_metrics: metrics(status.and_then(|s| at(s, &["metrics", "live"]))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replays::tests::rr;
    use serde_json::json;

    /// A ReplayRequest with `spec.strategy: Shadow` (and `promote`), and `status`.
    fn shadow_rr(name: &str, promote: bool, status: Option<Value>) -> Value {
        let mut v = rr(name, "2026-12-06T07:00:00Z", status);
        v["spec"]["strategy"] = json!("Shadow");
        v["spec"]["promote"] = json!(promote);
        v
    }

    fn one(o: Value) -> crate::replays::ReplaySummary {
        crate::replays::summarize(&[o], 10).remove(0)
    }

    #[test]
    fn in_place_requests_have_no_shadow() {
        let mut explicit = rr("replay-1", "2026-12-06T07:00:00Z", None);
        explicit["spec"]["strategy"] = json!("InPlace");
        for o in [rr("replay-0", "2026-12-06T07:00:00Z", None), explicit] {
            let s = one(o);
            assert_eq!(s.strategy, "InPlace");
            assert_eq!(s.shadow, None);
        }
    }

    #[test]
    fn a_shadow_not_created_yet() {
        let s = one(shadow_rr("s0", false, None));
        assert_eq!(s.strategy, "Shadow");
        assert_eq!(s.phase, "Pending");
        let sh = s.shadow.unwrap();
        assert!(!sh.running && !sh.promoted && !sh.removed && !sh.promote);
        assert_eq!(sh.consumer_group, None);
        assert_eq!(sh.catch_up, None);
        assert_eq!(sh.shadow_metrics, None);
    }

    #[test]
    fn a_running_shadow_mid_catch_up() {
        let s = one(shadow_rr(
            "s1",
            false,
            Some(json!({
                "phase": "ShadowCatchingUp",
                "catchUp": {"recordsTotal": 1000, "recordsDone": 400, "recordsLeft": 600,
                            "recordsPerSecond": 120.5, "eta": "2026-12-06T07:01:05Z",
                            "partitions": []},
                "shadow": {"consumerGroup": "analytics-shadow-s1",
                           "deployment": "analytics-shadow-s1",
                           "createdAt": "2026-12-06T07:00:02Z"}
            })),
        ));
        assert_eq!(s.phase, "ShadowCatchingUp");
        let sh = s.shadow.unwrap();
        assert!(sh.running && !sh.promoted && !sh.removed);
        assert_eq!(sh.consumer_group.as_deref(), Some("analytics-shadow-s1"));
        assert_eq!(sh.deployment.as_deref(), Some("analytics-shadow-s1"));
        assert_eq!(sh.created_at.as_deref(), Some("2026-12-06T07:00:02Z"));
        assert_eq!(
            sh.catch_up,
            Some(CatchUp {
                records_total: 1000,
                records_done: 400,
                records_left: 600,
                records_per_second: Some(120.5),
                eta: Some("2026-12-06T07:01:05Z".into()),
                caught_up_at: None,
            })
        );
        assert_eq!(sh.metrics_at, None);
        assert_eq!(sh.shadow_metrics, None, "no numbers recorded yet");
    }

    #[test]
    fn a_caught_up_shadow_with_both_numbers() {
        let s = one(shadow_rr(
            "s2",
            true,
            Some(json!({
                "phase": "Shadowing",
                "catchUp": {"recordsTotal": 1000, "recordsDone": 1000, "recordsLeft": 0,
                            "caughtUpAt": "2026-12-06T07:01:00Z"},
                "shadow": {"consumerGroup": "analytics-shadow-s2",
                           "deployment": "analytics-shadow-s2",
                           "createdAt": "2026-12-06T07:00:02Z",
                           "caughtUpAt": "2026-12-06T07:01:00Z",
                           "metrics": {"at": "2026-12-06T07:02:00Z",
                                       "shadow": {"ordersTotal": 500, "reservedTotal": 450,
                                                  "failedTotal": 50, "failureRate": 0.1,
                                                  "minutes": 12},
                                       // no failureRate: computed like /api/metrics
                                       "live": {"ordersTotal": 510, "reservedTotal": 300,
                                                "failedTotal": 100, "minutes": 13}}}
            })),
        ));
        let sh = s.shadow.unwrap();
        assert!(sh.running && sh.promote && !sh.promoted);
        assert_eq!(sh.caught_up_at.as_deref(), Some("2026-12-06T07:01:00Z"));
        assert_eq!(sh.catch_up.unwrap().records_left, 0);
        assert_eq!(sh.metrics_at.as_deref(), Some("2026-12-06T07:02:00Z"));
        assert_eq!(
            sh.shadow_metrics,
            Some(ShadowMetrics {
                orders_total: 500,
                reserved_total: 450,
                failed_total: 50,
                failure_rate: 0.1,
                minutes: 12,
            })
        );
        let live = sh.live_metrics.unwrap();
        assert_eq!(live.orders_total, 510);
        assert_eq!(live.failure_rate, 0.25);
        assert_eq!(live.minutes, 13);
    }

    #[test]
    fn a_promoted_shadow_and_a_removed_one() {
        let promoted = one(shadow_rr(
            "s3",
            true,
            Some(json!({
                "phase": "Promoting",
                "shadow": {"consumerGroup": "analytics-shadow-s3",
                           "deployment": "analytics-shadow-s3",
                           "promotedAt": "2026-12-06T07:05:00Z"}
            })),
        ));
        let sh = promoted.shadow.unwrap();
        assert!(sh.promoted && sh.running && !sh.removed);
        assert_eq!(sh.promoted_at.as_deref(), Some("2026-12-06T07:05:00Z"));

        let removed = one(shadow_rr(
            "s4",
            true,
            Some(json!({
                "phase": "Succeeded",
                "shadow": {"consumerGroup": "analytics-shadow-s4",
                           "deployment": "analytics-shadow-s4",
                           "promotedAt": "2026-12-06T07:05:00Z",
                           "removedAt": "2026-12-06T07:06:00Z",
                           // a field this build does not know is ignored
                           "metrics": {"at": "2026-12-06T07:04:00Z", "shadow": {"ordersTotal": 1}}}
            })),
        ));
        let sh = removed.shadow.unwrap();
        assert!(sh.promoted && sh.removed && !sh.running, "gone: not shown");
        assert_eq!(sh.removed_at.as_deref(), Some("2026-12-06T07:06:00Z"));
        assert_eq!(sh.shadow_metrics, None, "incomplete numbers are not shown");
    }
}

//! Tests of the ReplayRequest types and their generated schema.

use super::*;
use kube::CustomResourceExt;

/// A request with `lag` and its defaults (group and topics), as deploy/samples/lag.yaml
/// without the optional fields.
#[test]
fn a_lag_request_with_the_defaults_parses() {
    let yaml = r#"
apiVersion: orderflow.io/v1alpha1
kind: ReplayRequest
metadata: {name: replay-1}
spec:
  consumerGroup: analytics
  deployment: analytics
  topics: [orders, inventory-events]
  resetTo: earliest
  lag: {deployment: inventory, replicas: 0, holdSeconds: 60}
"#;
    let rr: ReplayRequest = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(rr.spec.reset_to, Some(ResetTarget::Earliest));
    let lag = rr.spec.lag.unwrap();
    assert_eq!(lag.group(), "inventory");
    assert_eq!(lag.topics(), vec!["orders".to_string()]);
    assert!(rr.status.is_none());
}

#[test]
fn the_schema_refuses_what_it_can() {
    let crd = serde_json::to_value(ReplayRequest::crd()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "rr");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["resetTo"]["enum"],
        serde_json::json!([
            "earliest",
            "latest",
            "timestamp",
            "byDuration",
            "shiftBy",
            "toOffsets",
            "none"
        ])
    );
    assert_eq!(
        spec["properties"]["lag"]["properties"]["replicas"]["minimum"],
        0.0
    );
    // consumerGroup, deployment and topics: required by a CEL rule unless resetTo none;
    // resetTo: required unless undoOf (a CEL rule too)
    assert!(spec.get("required").is_none(), "{}", spec["required"]);
    let rules = spec["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.consumerGroup) && has(self.deployment)"));
    assert!(rules.contains("self.resetTo != 'none' || (has(self.lag)"));
    assert!(rules.contains("has(self.resetTo) != has(self.undoOf)"));
    assert!(spec["properties"]["consumerGroup"]["description"]
        .as_str()
        .unwrap()
        .contains("consumer group"));
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Group",
            "Reset",
            "Lag Peak",
            "Reprocess",
            "Drill",
            "Age",
            "Message"
        ]
    );
}

#[test]
fn lag_samples_keep_the_peak_and_stay_bounded() {
    let mut lag = LagStatus::default();
    for i in 0..1000 {
        let secs = (i % 3 == 0).then_some((i % 11) as f64);
        lag.push(format!("t{i}"), if i == 10 { 500 } else { i % 7 }, secs);
    }
    assert_eq!(lag.peak, 500);
    assert_eq!(lag.peak_seconds, Some(10.0));
    assert!(lag.samples.len() <= MAX_LAG_SAMPLES);
    assert_eq!(lag.samples[0].at, "t0");
    assert_eq!(lag.samples.last().unwrap().at, "t999");
}

#[test]
fn phases() {
    assert!(Phase::Succeeded.is_final() && Phase::Failed.is_final());
    assert!(!Phase::Pending.is_active() && Phase::HoldingLag.is_active());
    assert_eq!(
        serde_json::to_string(&Phase::HoldingLag).unwrap(),
        "\"HoldingLag\""
    );
}

//! The chart ships the CRD that the Rust types generate (`make crds` rewrites it), and the
//! sample ReplayRequests in deploy/samples are valid against those types.

use std::path::PathBuf;

use replay_controller::ReplayRequest;

fn repo(path: &str) -> std::path::PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../..")
        .join(path)
}

#[test]
fn the_committed_crd_is_crdgen_output() {
    let committed = std::fs::read_to_string(repo("helm/orderflow/crds/replayrequest.yaml"))
        .expect("helm/orderflow/crds/replayrequest.yaml");
    let generated = replay_controller::crd_yaml().expect("crd yaml");
    assert!(
        committed == generated,
        "helm/orderflow/crds/replayrequest.yaml differs from the Rust types: run `make crds` and commit it"
    );
}

#[test]
fn the_samples_parse_and_validate() {
    for name in [
        "replay.yaml",
        "replay-timestamp.yaml",
        "replay-last-hour.yaml",
        "undo.yaml",
        "lag.yaml",
        "replay-plan.yaml",
    ] {
        let text = std::fs::read_to_string(repo("deploy/samples").join(name)).expect(name);
        let rr: ReplayRequest = serde_yaml::from_str(&text).expect(name);
        rr.spec.validate().expect(name);
        assert_eq!(rr.spec.deployment, "analytics", "{name}");
    }
    // the drill: no reset, so spec.lag alone, with its verdict
    let text = std::fs::read_to_string(repo("deploy/samples").join("drill.yaml")).expect("drill");
    let rr: ReplayRequest = serde_yaml::from_str(&text).expect("drill.yaml");
    replay_controller::drill::check_spec(&rr.spec).expect("drill.yaml");
    assert_eq!(rr.spec.lag.and_then(|l| l.max_drain_seconds), Some(120));
}

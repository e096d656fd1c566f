//! The users' flow end to end on a local control plane (kube-apiserver + etcd with RBAC, the
//! local Apache Kafka, `helm install` of the chart, the stand-in kubelet running the services and
//! the controller as local processes): 10,000 orders over HTTP, lag and replays driven by
//! ReplayRequests applied with kubectl. `make e2e` runs only this; `make test` runs it too.
//! Progress, `kubectl get rr` and `kubectl describe rr` go to the terminal and to
//! target/e2e/e2e.log; the report to target/e2e/report.md and lag.svg.

mod flow;
mod report;

use flow::{run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_flow_on_a_local_control_plane() -> anyhow::Result<()> {
    let opts = Options::default();
    let outcome = run(&opts).await?;
    // run() fails on the first broken promise; the report must hold what it measured
    let report = std::fs::read_to_string(opts.out_dir.join("report.md"))?;
    assert!(report.contains("| after replay-1 (earliest) |"), "{report}");
    assert!(opts.out_dir.join("lag.svg").exists());
    for name in ["lag-1", "replay-1", "replay-from-time"] {
        assert!(outcome.get_rr.contains(name), "{}", outcome.get_rr);
    }
    assert_eq!(
        outcome.get_rr.matches("Succeeded").count(),
        3,
        "{}",
        outcome.get_rr
    );
    assert!(
        outcome.describe_rr.contains("Events:"),
        "{}",
        outcome.describe_rr
    );
    Ok(())
}

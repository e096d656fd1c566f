//! The users' flow on the test bed's kind cluster (Kubernetes v1.33 built here, a real kubelet,
//! containerd, CoreDNS, kube-proxy): `helm install` of the chart with the project's images and
//! Apache Kafka in the release, 10,000 orders over HTTP through the order Service's NodePort,
//! `kubectl apply` of deploy/samples/replay.yaml, lag.yaml, replay-timestamp.yaml and
//! shadow.yaml (promoted, the analytics Service polled throughout), `kubectl get rr`, the JSON lines
//! of `kubectl logs`, and a screenshot of the dashboard through the analytics Service.
//!
//! Built only with the `kind` feature (`required-features` in Cargo.toml), so a plain
//! `cargo test` neither runs nor lists it: it needs the cluster and the loaded images, which
//! `make e2e` (scripts/k8s/e2e-kind.sh) makes first (scripts/k8s/kind-bed.sh up, scripts/k8s/images.sh build, check
//! and load) before it runs `cargo test --features kind --test kind`. Output
//! goes to target/e2e-kind/ (kind.log, report.md, dashboard.png).

mod checks;
mod flow;
mod release;
mod report;
mod shadow;

use flow::{run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_flow_on_kind() -> anyhow::Result<()> {
    let opts = Options::default();
    let outcome = run(&opts).await?;
    for name in ["replay-1", "lag-1", "replay-from-time", "shadow-1"] {
        assert!(outcome.get_rr.contains(name), "{}", outcome.get_rr);
    }
    for column in ["PHASE", "GROUP", "RESET", "LAG PEAK", "AGE"] {
        assert!(outcome.get_rr.contains(column), "{}", outcome.get_rr);
    }
    assert_eq!(
        outcome.get_rr.matches("Succeeded").count(),
        4,
        "{}",
        outcome.get_rr
    );
    assert!(
        outcome.describe_rr.contains("Events:"),
        "{}",
        outcome.describe_rr
    );
    let out = &Options::default().out_dir;
    let report = std::fs::read_to_string(out.join("report.md"))?;
    assert!(report.contains("| after replay-1 (earliest) |"), "{report}");
    assert!(std::fs::read_to_string(out.join("lag.svg"))?.starts_with("<svg"));
    Ok(())
}

/// The CRD's CEL rule (`x-kubernetes-validations`, from crd.rs) on a real v1.33 API server: a
/// ReplayRequest with `resetTo: timestamp` and no timestamp, or a timestamp with another
/// `resetTo`, is refused with the rule's message; the samples are accepted.
#[test]
fn the_api_server_enforces_the_crd_cel_rule() -> anyhow::Result<()> {
    use orderflow_testkit::kind::Bed;
    use orderflow_testkit::procs::repo_root;

    let bed = Bed::connect("orderflow-cel")?;
    let crds = repo_root().join("helm/orderflow/crds");
    bed.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &crds.display().to_string(),
    ])?;
    bed.kubectl(&[
        "wait",
        "crd/replayrequests.orderflow.io",
        "--for=condition=Established",
        "--timeout=60s",
    ])?;
    // a namespace of its own for the dry-runs, deleted at the end (also on failure)
    struct Ns<'a>(&'a Bed);
    impl Drop for Ns<'_> {
        fn drop(&mut self) {
            let _ = self.0.delete_namespace();
        }
    }
    if bed.kubectl(&["get", "namespace", "orderflow-cel"]).is_err() {
        bed.kubectl(&["create", "namespace", "orderflow-cel"])?;
    }
    let _ns = Ns(&bed);
    let samples = repo_root().join("deploy/samples");
    let timestamp = std::fs::read_to_string(samples.join("replay-timestamp.yaml"))?;
    let replay = std::fs::read_to_string(samples.join("replay.yaml"))?;
    let message =
        "spec.timestamp is required when spec.resetTo is timestamp, and allowed only then";
    let no_timestamp: String = timestamp
        .lines()
        .filter(|l| !l.trim_start().starts_with("timestamp:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let stray_timestamp = replay.replace(
        "resetTo: earliest",
        "resetTo: earliest\n  timestamp: \"2026-11-22T10:00:00Z\"",
    );
    assert_ne!(stray_timestamp, replay);
    for (what, yaml) in [
        ("resetTo timestamp without a timestamp", &no_timestamp),
        ("a timestamp with resetTo earliest", &stray_timestamp),
    ] {
        let (ok, _, err) = bed.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], yaml)?;
        assert!(!ok, "{what}: accepted");
        assert!(
            err.contains(message),
            "{what}: refused, but not by the rule: {err}"
        );
        eprintln!("{what}: refused: {}", err.trim());
    }
    for (what, yaml) in [
        ("replay-timestamp.yaml", &timestamp),
        ("replay.yaml", &replay),
    ] {
        let (ok, out, err) = bed.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], yaml)?;
        assert!(ok, "{what} refused: {err}");
        eprintln!("{what}: {}", out.trim());
    }
    Ok(())
}

/// deploy/ and deploy/secure/ against Strimzi's own CRDs applied unmodified (CEL rules
/// included) to the v1.33 API server: a server-side dry-run must accept every object. The CRDs
/// come from `STRIMZI_CRDS` (default ../shared/strimzi-crds, as `make lint`); without them the
/// test says so and passes. The CRDs are removed again at the end.
#[test]
fn deploy_is_accepted_by_strimzi_crds_on_the_api_server() -> anyhow::Result<()> {
    use orderflow_testkit::kind::Bed;
    use orderflow_testkit::procs::repo_root;

    let dir = std::env::var("STRIMZI_CRDS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("../shared/strimzi-crds"));
    let crds: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    if crds.is_empty() {
        eprintln!(
            "SKIPPED: no Strimzi CRDs in {} (STRIMZI_CRDS)",
            dir.display()
        );
        return Ok(());
    }
    let bed = Bed::connect("orderflow-strimzi-dry")?;
    struct Cleanup<'a>(&'a Bed, Vec<String>);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.delete_namespace();
            for f in &self.1 {
                let _ = self.0.kubectl(&["delete", "-f", f, "--ignore-not-found"]);
            }
        }
    }
    let files: Vec<String> = crds.iter().map(|p| p.display().to_string()).collect();
    let _cleanup = Cleanup(&bed, files.clone());
    for f in &files {
        bed.kubectl(&["apply", "--server-side", "-f", f])?;
    }
    bed.kubectl(&[
        "wait",
        "crd",
        "kafkas.kafka.strimzi.io",
        "kafkanodepools.kafka.strimzi.io",
        "kafkatopics.kafka.strimzi.io",
        "kafkausers.kafka.strimzi.io",
        "--for=condition=Established",
        "--timeout=60s",
    ])?;
    if bed.kubectl(&["get", "namespace", &bed.namespace]).is_err() {
        bed.kubectl(&["create", "namespace", &bed.namespace])?;
    }
    for d in ["deploy", "deploy/secure"] {
        let path = repo_root().join(d).display().to_string();
        let out = bed.kubectl_ns(&["apply", "--dry-run=server", "-f", &path])?;
        eprintln!("{d}:\n{}", out.trim());
        assert!(
            out.lines().all(|l| l.ends_with("(server dry run)")),
            "{out}"
        );
    }
    Ok(())
}

/// compose.yaml, for users who come from docker-compose: `scripts/compose-demo.sh --local` brings
/// up Apache Kafka and the three services from the bed's images (the project's Kafka image stands
/// in for apache/kafka:4.3.1), publishes 10,000 orders, replays analytics with orderflowctl run in
/// its image, and waits for the same metrics again; then `down -v`.
#[test]
fn compose_yaml_runs_the_lab_scenario_with_the_local_images() -> anyhow::Result<()> {
    use orderflow_testkit::procs::repo_root;

    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/compose-demo.sh"))
        .arg("--local")
        .current_dir(repo_root())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "compose-demo.sh --local failed");
    assert!(
        stderr.contains("compose-demo: identical: true"),
        "no identical metrics after the replay"
    );
    Ok(())
}

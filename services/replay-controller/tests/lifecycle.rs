//! Install, upgrade and uninstall on a real kube-apiserver + etcd (scripts/envtest):
//! - `MANAGE_CRD`: the controller server-side applies its CRD over an older one (and creates it
//!   when missing) with exactly the chart's RBAC, and says which permission it lacks without it;
//! - a finished request lets go of its finalizer, so it can be deleted with no controller;
//! - `replay-controller drain` (the chart's pre-delete hook) deletes the requests and waits
//!   while the running controller restores a request in flight; it times out naming a
//!   request whose finalizer nobody releases.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    apply_rr, create_deployment, phase, replicas, rr, setup, shipped_crd, start_controller,
    stray_consumer, wait_group_members, wait_rr, waiting_for_stray,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use orderflow_testkit::envtest::write_token_kubeconfig;
use orderflow_testkit::envtest::ControlPlane;
use orderflow_testkit::procs::{free_port, repo_root};
use orderflow_testkit::{wait, Service, ServiceKind};
use replay_controller::crd::{Phase, ReplayRequest};
use replay_controller::crd_apply::CRD_NAME;
use replay_controller::reconcile::FINALIZER;
use serde_json::{json, Value};

/// `want` is in `got`: every object key of `want` with a matching value, arrays of the same
/// length matching element by element (so a column the old CRD had and the new one has not
/// makes a difference), scalars equal. The API server adds defaults `want` does not name.
fn within(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| within(v, gv))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| within(a, b))
        }
        (w, g) => w == g,
    }
}

/// Run `replay-controller ARGS` with `env` to its end, for at most `limit`: (success, log).
async fn run_binary(args: &[&str], env: &[(&str, String)], limit: Duration) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay-controller"));
    cmd.args(args)
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "info,kube=warn")
        .env(
            "HTTP_ADDR",
            format!("127.0.0.1:{}", free_port().unwrap_or(0)),
        )
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(out)) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Ok(Err(e)) => (false, format!("could not run replay-controller: {e}")),
        Err(_) => (
            false,
            format!("replay-controller {args:?} still running after {limit:?}"),
        ),
    }
}

/// The chart's RBAC for the controller (templates/rbac.yaml, rendered with `set`), applied.
fn apply_chart_rbac(cp: &ControlPlane, ns: &str, set: &[&str]) -> anyhow::Result<()> {
    let chart = repo_root().join("helm/orderflow");
    let mut args = vec![
        "template",
        "orderflow",
        chart.to_str().unwrap_or_default(),
        "--namespace",
        ns,
        "--show-only",
        "templates/rbac.yaml",
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    let yaml = cp.helm(&args)?;
    cp.kubectl_stdin(&["-n", ns, "apply", "-f", "-"], &yaml)?;
    Ok(())
}

async fn crd_value(crds: &Api<CustomResourceDefinition>) -> Option<Value> {
    serde_json::to_value(crds.get_opt(CRD_NAME).await.ok()??).ok()
}

/// The controller, as the chart's service account, with MANAGE_CRD=true.
async fn start_as_sa(cp: &ControlPlane, kubeconfig: &Path, ns: &str) -> anyhow::Result<Service> {
    let dead = free_port()?; // the CRD comes first; Kafka is not needed here
    Service::start(
        ServiceKind::ReplayController,
        &format!("127.0.0.1:{dead}"),
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("WATCH_NAMESPACE", ns.to_string()),
            ("MANAGE_CRD", "true".to_string()),
            ("RUST_LOG", "info,kube=warn".to_string()),
        ],
        &cp.run_dir.join("logs"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_applies_its_crd_over_an_older_one_with_the_charts_rbac(
) -> anyhow::Result<()> {
    let dir = common::out_dir("crd");
    let cp = ControlPlane::start_rbac(&dir.join("kube"))?;
    let admin = cp.client().await?;
    let ns = "orderflow";
    cp.kubectl(&["create", "namespace", ns])?;
    cp.kubectl(&["-n", ns, "create", "serviceaccount", "replay-controller"])?;
    let kubeconfig = dir.join("sa.kubeconfig");
    write_token_kubeconfig(&admin, ns, "replay-controller", &cp.kubeconfig, &kubeconfig).await?;

    // an older CRD, created as `helm install` does: a column fewer ("Lag Peak"), one the new
    // version dropped ("Old"), a property it dropped, another description
    let want = shipped_crd()?;
    let mut old = want.clone();
    let v = &mut old["spec"]["versions"][0];
    let cols = v["additionalPrinterColumns"]
        .as_array_mut()
        .expect("columns");
    cols.retain(|c| c["name"] != "Lag Peak");
    cols.push(json!({"name": "Old", "type": "string", "jsonPath": ".spec.deployment"}));
    let schema = &mut v["schema"]["openAPIV3Schema"];
    schema["description"] = json!("an older description");
    schema["properties"]["spec"]["properties"]["legacy"] = json!({"type": "string"});
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(old)?)
        .await?;

    // 1. without the ClusterRole (controller.manageCrd=false) the apply is refused, and said so
    apply_chart_rbac(&cp, ns, &["controller.manageCrd=false"])?;
    let env = [
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("WATCH_NAMESPACE", ns.to_string()),
        ("MANAGE_CRD", "true".to_string()),
        ("KAFKA_BOOTSTRAP", format!("127.0.0.1:{}", free_port()?)),
    ];
    let (ok, log) = run_binary(&[], &env, Duration::from_secs(60)).await;
    assert!(!ok, "{log}");
    assert!(
        log.contains("not allowed to apply (patch) the CRD replayrequests.orderflow.io")
            && log.contains("needs get, create and patch on customresourcedefinitions"),
        "{log}"
    );

    // 2. with the chart's ClusterRole: the CRD becomes this version's, then the controller is
    //    ready (Service::start waits for /readyz)
    apply_chart_rbac(&cp, ns, &[])?;
    let ctl = start_as_sa(&cp, &kubeconfig, ns).await?;
    let got = wait::until(
        "the CRD in the API server to be the generated one",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let got = crd_value(&crds).await?;
            within(&want["spec"], &got["spec"]).then_some(got)
        },
    )
    .await?;
    let established = got["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    });
    assert!(established, "{}", got["status"]);
    // what only the older version had is gone too (the forced apply owns every field now)
    let props = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    assert!(
        props["spec"]["properties"].get("legacy").is_none(),
        "{}",
        props["spec"]
    );
    let managers: Vec<&str> = got["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["operation"] == "Apply")
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["replay-controller"]);
    ctl.stop(Duration::from_secs(10)).await?;

    // 3. no CRD at all (helm install --skip-crds): the controller creates it, by its name only
    crds.delete(CRD_NAME, &DeleteParams::default()).await?;
    wait::until(
        "the CRD to be gone",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { matches!(crds.get_opt(CRD_NAME).await, Ok(None)).then_some(()) },
    )
    .await?;
    let ctl = start_as_sa(&cp, &kubeconfig, ns).await?;
    let got = crd_value(&crds).await.unwrap_or_default();
    assert!(within(&want["spec"], &got["spec"]), "{}", got["spec"]);
    ctl.stop(Duration::from_secs(10)).await?;
    drop(cp);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn finalizers(o: &ReplayRequest) -> Vec<String> {
    o.metadata.finalizers.clone().unwrap_or_default()
}

async fn wait_gone(c: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let api = Api::<ReplayRequest>::namespaced(c.clone(), ns);
    wait::until(
        &format!("{name} to be gone"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let api = api.clone();
            async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_requests_need_no_controller_and_drain_waits_for_the_rest() -> anyhow::Result<()> {
    let env = setup("drain").await?;
    let (c, ns) = (env.client.clone(), "default");
    let kafka = env.broker.kafka();
    create_deployment(&c, ns, "analytics", 1).await?;
    let ctl_env = [("WATCH_NAMESPACE", ns.to_string())];
    let rrs = Api::<ReplayRequest>::namespaced(c.clone(), ns);

    // 1. a succeeded request ends without finalizers and is deleted with no controller running
    let ctl = start_controller(&env, &ctl_env).await?;
    apply_rr(&c, ns, rr("done", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest"}))).await?;
    let o = wait_rr(
        &c,
        ns,
        "done",
        "Succeeded, no finalizer",
        Duration::from_secs(60),
        |o| phase(o).is_final() && finalizers(o).is_empty(),
    )
    .await?;
    assert_eq!(phase(&o), Phase::Succeeded, "{:?}", o.status);
    ctl.stop(Duration::from_secs(10)).await?;
    rrs.delete("done", &DeleteParams::default()).await?;
    wait_gone(&c, ns, "done").await?;

    // 2. drain while the controller runs: a request in flight (a stray consumer keeps the
    //    group busy, analytics is held at 0) is deleted, analytics restored, the request gone
    let (stop_stray, stray) = stray_consumer(&kafka)?;
    wait_group_members(&kafka, 1).await?;
    let ctl = start_controller(&env, &ctl_env).await?;
    apply_rr(&c, ns, rr("busy", json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "latest"}))).await?;
    let o = wait_rr(
        &c,
        ns,
        "busy",
        "waiting for the group",
        Duration::from_secs(30),
        waiting_for_stray,
    )
    .await?;
    assert_eq!(finalizers(&o), [FINALIZER]);
    assert_eq!(replicas(&c, ns, "analytics").await?, 0);
    let drain_env = [
        ("KUBECONFIG", env.cp.kubeconfig.display().to_string()),
        ("WATCH_NAMESPACE", ns.to_string()),
    ];
    let (ok, log) = run_binary(
        &["drain", "--timeout-seconds", "60"],
        &drain_env,
        Duration::from_secs(90),
    )
    .await;
    assert!(ok, "{log}");
    assert!(log.contains("no ReplayRequest left"), "{log}");
    assert!(matches!(rrs.get_opt("busy").await, Ok(None)));
    assert_eq!(replicas(&c, ns, "analytics").await?, 1);
    stop_stray.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stray.join();
    ctl.stop(Duration::from_secs(10)).await?;

    // 3. nobody releases a finalizer: drain gives up after its timeout, naming the request
    let mut held = rr(
        "held",
        json!({"consumerGroup": "analytics", "deployment": "analytics", "topics": ["orders"], "resetTo": "earliest"}),
    );
    held["metadata"]["finalizers"] = json!([FINALIZER]);
    apply_rr(&c, ns, held).await?;
    let (ok, log) = run_binary(
        &["drain", "--timeout-seconds", "2"],
        &drain_env,
        Duration::from_secs(30),
    )
    .await;
    assert!(!ok, "{log}");
    assert!(
        log.contains("timed out after 2s: 1 ReplayRequest(s) of namespace default still there: held (phase Pending, finalizers orderflow.io/restore-deployments)"),
        "{log}"
    );
    // test cleanup: let it go
    rrs.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    wait_gone(&c, ns, "held").await?;
    env.passed();
    Ok(())
}

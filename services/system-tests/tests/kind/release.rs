//! The release a flow installs, removed again however the flow ends.

use orderflow_testkit::kind::Bed;

/// Uninstalls the release and deletes its namespace when dropped (also on failure).
pub struct Release<'a> {
    pub bed: &'a Bed,
    pub keep: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.keep {
            teardown(self.bed);
        }
    }
}

/// Remove the release and its namespace, also after a failed step (the flow's last step does the
/// same as users would, checked). The ReplayRequests go first, while the controller runs and
/// removes their finalizer (orderflow.io/restore-deployments); left over from an earlier run of
/// an older chart without a controller, their finalizer is removed here (test cleanup only).
pub fn teardown(bed: &Bed) {
    if bed
        .kubectl_ns(&["delete", "rr", "--all", "--wait=true", "--timeout=60s"])
        .is_err()
    {
        let names = bed
            .kubectl_ns(&["get", "rr", "-o", "name"])
            .unwrap_or_default();
        for rr in names.lines() {
            let _ = bed.kubectl_ns(&[
                "patch",
                rr,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
    let _ = bed.helm(&[
        "uninstall",
        "orderflow",
        "-n",
        &bed.namespace,
        "--wait",
        "--timeout",
        "2m",
    ]);
    let _ = bed.delete_namespace();
}

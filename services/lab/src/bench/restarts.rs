//! P7 and P8: inventory-service and analytics-service started again over the N decisions of
//! a run (start to ready, and their peak RSS), and how the bench reads a process's peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{push, report_secs, Samples};
use crate::procs::{Service, ServiceKind};

/// P7 and P8: inventory-service and analytics-service restarted over the N decisions.
pub(super) async fn restarts(
    b: &str,
    kafka: &orderflow_runtime::KafkaConfig,
    logs: &Path,
    n: u64,
    s: &mut Samples,
) -> anyhow::Result<()> {
    let windows = [
        ("inventory-service", None),
        ("inventory-service (1 s window)", Some("1000")),
    ];
    for (subject, window) in windows {
        let env: Vec<(&str, String)> = window
            .map(|w| ("IDEMPOTENCY_WINDOW_MS", w.to_string()))
            .into_iter()
            .collect();
        let t = Instant::now();
        let inventory = Service::start(ServiceKind::Inventory, b, &env, logs).await?;
        report_secs(s, "P7", subject, n, t.elapsed().as_secs_f64());
        push(s, "P8", subject, peak_rss_mib(inventory.pid()));
        inventory.stop(Duration::from_secs(20)).await?;
    }
    let what = "analytics-service to catch up after its restart";
    let step = super::ours::caught_up(b, kafka, logs, n, what, &[]).await?;
    report_secs(s, "P7", "analytics-service", 2 * n, step.secs);
    push(s, "P8", "analytics-service", step.rss_mib);
    Ok(())
}

/// Peak resident set size (VmHWM) of a live process, in MiB (NaN when unreadable).
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
        .map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm() {
        assert_eq!(vm_hwm_kib("Name:\tx\nVmHWM:\t   12345 kB\n"), Some(12345));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
    }
}

//! Local processes: Apache Kafka via scripts/kafka.sh ([`Broker`], in `broker.rs`) and the
//! service binaries ([`Service`], in `service.rs`), for the demo, the bench and (through
//! orderflow-testkit) the tests. Everything started here is stopped when its guard is
//! dropped, by PID.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

mod broker;
mod service;

pub use broker::{kafka_tool, Broker};
pub use service::{get_json, metric_sum, Service, ServiceKind};

/// The repository root (for scripts/). Cargo sets `CARGO_MANIFEST_DIR` for the tests and
/// binaries it runs, and that run-time value wins: the compile-time one names the checkout
/// that built this crate, which may be another clone sharing the target directory (cargo
/// reuses a crate built from the same relative path).
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
        .join("../..")
}

/// A free TCP port on 127.0.0.1 (bound then released), for a process started next: drawn
/// at random below the kernel's range for the source ports of outgoing connections
/// (`ip_local_port_range`, where the kernel's own pick, port 0, comes from too), so that no
/// client's connection takes it before that process binds it.
pub fn free_port() -> anyhow::Result<u16> {
    let low = source_ports_start();
    if low > FIRST_PORT + 1_000 {
        for _ in 0..200 {
            let p = FIRST_PORT + (random() % u64::from(low - FIRST_PORT)) as u32;
            if let Ok(port) = u16::try_from(p) {
                if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return Ok(port);
                }
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The lowest port [`free_port`] draws.
const FIRST_PORT: u32 = 10_000;

/// The first port of the kernel's range for the source ports of outgoing connections.
fn source_ports_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A random number (std's per-process random hash keys, hashing a counter).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Run `cmd` to completion (stdin closed) and return its stdout; when it fails, the error
/// says `what` failed, with its exit status, stdout and stderr.
pub fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the service binaries are: `ORDERFLOW_BIN_DIR`, else the directory of the running
/// executable's profile (`target/<profile>/` for tests run by cargo and for the demo binary).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(d) = std::env::var("ORDERFLOW_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("executable has no directory"))?;
    // tests live in target/<profile>/deps, binaries in target/<profile>
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// Run the `orderflowctl` CLI against `bootstrap`; returns (exit code, stdout, stderr).
pub fn orderflowctl(bootstrap: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let bin = bin_dir()?.join("orderflowctl");
    let out = Command::new(&bin)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "running {} (build it: cargo build --release --workspace --bins)",
                bin.display()
            )
        })?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_free_and_below_the_range_of_source_ports() {
        let low = source_ports_start();
        let ports: Vec<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        for &p in &ports {
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "{p} is taken");
            if low > FIRST_PORT + 1_000 {
                assert!(
                    (FIRST_PORT..low).contains(&u32::from(p)),
                    "{p} not below {low}"
                );
            }
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert!(distinct.len() > 10, "not random: {ports:?}");
    }
}

//! Headless Chromium for the dashboard's end-to-end test: render a page and return its DOM
//! after the page's scripts ran (`--dump-dom`), or save a screenshot. Debian's `chromium`
//! package, installed by `scripts/browser-tools.sh` (`make browser-tools`, a prerequisite of
//! `make test`). Each run gets a fresh profile directory and is killed by PID when it
//! overruns its timeout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The browser binary: `CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
pub fn chromium() -> anyhow::Result<PathBuf> {
    if let Ok(c) = std::env::var("CHROMIUM") {
        if !c.trim().is_empty() {
            return Ok(PathBuf::from(c));
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!("chromium not found: run scripts/browser-tools.sh (make browser-tools) or set CHROMIUM")
}

/// The flags every run uses: headless, and as root (CI) without the sandbox; no GPU, no
/// background traffic of the browser's own.
pub const BASE_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    "--mute-audio",
];

/// Run chromium with `args` (after [`BASE_FLAGS`] and a fresh `--user-data-dir` under
/// `work`), wait at most `timeout`, and return its stdout. Killed by PID on timeout.
pub async fn run(work: &Path, args: &[String], timeout: Duration) -> anyhow::Result<String> {
    let bin = chromium()?;
    let profile = work.join(format!("chromium-profile-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&profile)?;
    let out_path = profile.with_extension("stdout");
    let err_path = profile.with_extension("stderr");
    let mut child = Command::new(&bin)
        .args(BASE_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(status) = status else {
        let _ = child.kill(); // by PID (the child we started)
        let _ = child.wait();
        bail!(
            "chromium did not finish within {timeout:?}; stderr: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    if !status.success() {
        bail!("chromium failed ({status}): {}", stderr.trim());
    }
    Ok(stdout)
}

/// The DOM of `url` after `budget_ms` of virtual time (the page's timers and fetches run).
pub async fn dump_dom(work: &Path, url: &str, budget_ms: u64) -> anyhow::Result<String> {
    run(
        work,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom".to_string(),
            url.to_string(),
        ],
        Duration::from_secs(90),
    )
    .await
}

/// A PNG screenshot of `url` at `width` x `height` after `budget_ms` of virtual time.
pub async fn screenshot(
    work: &Path,
    url: &str,
    png: &Path,
    (width, height): (u32, u32),
    budget_ms: u64,
) -> anyhow::Result<()> {
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(png);
    run(
        work,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", png.display()),
            url.to_string(),
        ],
        Duration::from_secs(90),
    )
    .await?;
    if !png.is_file() {
        bail!("chromium wrote no screenshot at {}", png.display());
    }
    Ok(())
}

/// The value of attribute `attr` on the element with `id="<id>"` in `html`.
pub fn attribute_of(html: &str, id: &str, attr: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    let len = tag[v..].find('"')?;
    Some(tag[v..v + len].to_string())
}

/// Whether `bytes` start with the PNG signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_by_id() {
        let html = r#"<div class="chart" id="chart-lag" data-points="12"><canvas></canvas></div>
                      <div data-points="3" id="chart-orders" class="chart">"#;
        assert_eq!(
            attribute_of(html, "chart-lag", "data-points").as_deref(),
            Some("12")
        );
        assert_eq!(
            attribute_of(html, "chart-orders", "data-points").as_deref(),
            Some("3")
        );
        assert_eq!(attribute_of(html, "chart-failure", "data-points"), None);
        assert_eq!(attribute_of(html, "chart-lag", "data-missing"), None);
    }

    #[test]
    fn png_signature() {
        assert!(is_png(b"\x89PNG\r\n\x1a\nrest"));
        assert!(!is_png(b"GIF89a"));
    }
}

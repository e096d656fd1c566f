//! Progress lines of a long whole-system test: to the terminal (stderr, also under
//! `cargo test`, whose capture only takes the print macros) and to a log file, each line
//! stamped with the test's name and the seconds since it started.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

pub struct ProgressLog {
    tag: &'static str,
    file: Mutex<std::fs::File>,
    started: Instant,
}

impl ProgressLog {
    /// A log tagged `tag` (e.g. `e2e`), written to `path` (created anew).
    pub fn create(tag: &'static str, path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            tag,
            file: Mutex::new(std::fs::File::create(path)?),
            started: Instant::now(),
        })
    }

    /// Each line of `msg`, stamped `[tag   t.t s]`.
    pub fn line(&self, msg: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let tag = self.tag;
        let text: String = msg
            .lines()
            .map(|l| format!("[{tag} {t:6.1}s] {l}\n"))
            .collect();
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

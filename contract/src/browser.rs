//! A real browser for the page tests: headless Chromium (the Debian
//! package; `scripts/services.sh` installs it), each run with a fresh
//! profile, and the folder screenshots are kept in. A test that needs it
//! fails when it is missing, never skips.

use std::path::PathBuf;
use std::process::Command;

/// Where screenshots go: `$MINIGRAM_ARTIFACTS`, else `artifacts/` in the repo.
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("MINIGRAM_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../artifacts")));
    std::fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`,
/// `--screenshot=...`) and returns what it printed.
pub fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("temp profile");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium is required (apt-get install chromium; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

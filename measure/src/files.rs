//! Result files and generated documents are written whole or not at all:
//! a reader (the dashboard, a person, CI) never sees half a file, and an
//! interrupted run leaves at most a `.partial` beside it.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Writes `contents` to `path` through a temporary file beside it and a
/// rename, creating the directory if needed.
pub fn write_whole(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A JSON value as a pretty-printed file, whole or not at all.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    write_whole(
        path,
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )
}

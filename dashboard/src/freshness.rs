//! Whether a reference run is older than the code it measures.
//!
//! Every result file records the commit it was measured at; every
//! experiment measures the code of the stages its variants ran
//! (`measure::schema::code_paths`: `stage-1/src` or `stage-2/src`, and the
//! `shared/src` both use). A run is **current** when the last commit that
//! changed any of those directories is its own commit or an ancestor of
//! it, and the working tree has no uncommitted change to them; otherwise
//! it is **stale**, and the README, the docs and the dashboard say so next
//! to its figures. Because the marks are generated, `dashboard report
//! --check` fails once a change to the code makes a published run stale
//! and the documents have not been regenerated: staleness cannot stay
//! unsaid. `dashboard stale` lists the stale runs and fails if there are
//! any (the goal: re-run them).
//!
//! The history comes from `git` in the repository that holds the results
//! directory. A copy of results/ outside any repository (a test's
//! temporary directory) is marked "code age not checked", not passed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a run's commit relates to the code it measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Age {
    /// No change to its code since its commit.
    Current,
    /// These directories changed after its commit.
    Changed(Vec<String>),
    /// It was measured with uncommitted changes (`-dirty`): no commit holds
    /// the code it measured.
    Dirty,
    /// Its commit is not in this repository's history.
    Unknown(String),
    /// No git history to compare with.
    Unchecked,
}

impl Age {
    pub fn is_stale(&self) -> bool {
        matches!(self, Age::Changed(_) | Age::Dirty | Age::Unknown(_))
    }

    /// "current code", "stale: stage-2/src changed since" …
    pub fn text(&self) -> String {
        match self {
            Age::Current => "current code".into(),
            Age::Changed(paths) => format!("stale: {} changed since", paths.join(", ")),
            Age::Dirty => "stale: measured uncommitted code".into(),
            Age::Unknown(c) => format!("stale: commit {c} is not in this history"),
            Age::Unchecked => "code age not checked (no git history here)".into(),
        }
    }
}

/// The repository the results belong to, with what was asked of git so
/// far (a page asks about the same few paths many times).
pub struct Repo {
    root: PathBuf,
    /// Path → the last commit that changed it ("" if none did).
    last_change: RefCell<BTreeMap<String, String>>,
    /// Path → whether the working tree changes it now.
    uncommitted: RefCell<BTreeMap<String, bool>>,
    /// (ancestor, commit) → is it one (`None`: the commit is unknown).
    ancestry: RefCell<BTreeMap<(String, String), Option<bool>>>,
}

fn git(root: &Path, args: &[&str]) -> Option<std::process::Output> {
    Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()
}

impl Repo {
    /// The git work tree that holds `dir`, if any.
    pub fn holding(dir: &Path) -> Option<Self> {
        let out = git(dir, &["rev-parse", "--show-toplevel"])?;
        if !out.status.success() {
            return None;
        }
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Some(Self {
            root,
            last_change: RefCell::default(),
            uncommitted: RefCell::default(),
            ancestry: RefCell::default(),
        })
    }

    fn last_change(&self, path: &str) -> String {
        self.last_change
            .borrow_mut()
            .entry(path.to_owned())
            .or_insert_with(|| {
                git(&self.root, &["log", "-1", "--format=%H", "--", path])
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default()
            })
            .clone()
    }

    fn uncommitted(&self, path: &str) -> bool {
        *self
            .uncommitted
            .borrow_mut()
            .entry(path.to_owned())
            .or_insert_with(|| {
                git(&self.root, &["status", "--porcelain", "--", path])
                    .is_some_and(|o| !o.stdout.is_empty())
            })
    }

    /// Whether `ancestor` is `commit` or in its past; `None` when git does
    /// not know `commit`.
    fn contains(&self, commit: &str, ancestor: &str) -> Option<bool> {
        *self
            .ancestry
            .borrow_mut()
            .entry((ancestor.to_owned(), commit.to_owned()))
            .or_insert_with(|| {
                let known = git(
                    &self.root,
                    &["cat-file", "-e", &format!("{commit}^{{commit}}")],
                )
                .is_some_and(|o| o.status.success());
                known.then(|| {
                    git(
                        &self.root,
                        &["merge-base", "--is-ancestor", ancestor, commit],
                    )
                    .is_some_and(|o| o.status.success())
                })
            })
    }

    /// The age of a run measured at `commit` (as result files record it:
    /// 12 hex digits, `-dirty` when the code had uncommitted changes) of
    /// the code under `paths`.
    pub fn age(&self, commit: &str, paths: &[String]) -> Age {
        if commit.ends_with("-dirty") {
            return Age::Dirty;
        }
        let mut changed = Vec::new();
        for path in paths {
            let last = self.last_change(path);
            if last.is_empty() {
                continue;
            }
            match self.contains(commit, &last) {
                None => return Age::Unknown(commit.to_owned()),
                Some(false) => changed.push(path.clone()),
                Some(true) if self.uncommitted(path) => changed.push(path.clone()),
                Some(true) => {}
            }
        }
        if changed.is_empty() {
            Age::Current
        } else {
            Age::Changed(changed)
        }
    }
}

/// Ages result files against the repository that holds their directory.
pub struct Checker {
    repo: Option<Repo>,
}

impl Checker {
    pub fn for_results(results_dir: &Path) -> Self {
        Self {
            repo: Repo::holding(results_dir),
        }
    }

    /// The age of a result file that names its commit and its code: lab
    /// reports by their variants' stages, load-test runs and benchmarks
    /// by their own stage.
    pub fn of(&self, v: &serde_json::Value) -> Option<Age> {
        let commit = v["commit"].as_str()?;
        let paths = code_of(v)?;
        Some(
            self.repo
                .as_ref()
                .map_or(Age::Unchecked, |r| r.age(commit, &paths)),
        )
    }
}

/// The reference runs, one line each, and how many are stale.
pub struct StaleReport {
    pub lines: Vec<String>,
    pub stale: usize,
}

/// The newest report of each experiment and every benchmark file, with
/// their age and the command that would measure them again.
pub fn report(results: &crate::Results) -> StaleReport {
    let mut lines = Vec::new();
    let mut stale = 0;
    let mut line = |file: &str, commit: &str, command: &str| {
        let age = results.ages.get(file).cloned().unwrap_or(Age::Unchecked);
        stale += usize::from(age.is_stale());
        lines.push(format!(
            "{}  {file} (commit {commit}): {}{}",
            if age.is_stale() { "STALE" } else { "ok   " },
            age.text(),
            if age.is_stale() {
                format!("; re-run: {command}")
            } else {
                String::new()
            }
        ));
    };
    for lab in crate::overview::newest_reports(results) {
        let r = &lab.report;
        line(
            &lab.file,
            &r.commit,
            &format!("loadtests lab {}", r.experiment),
        );
    }
    for b in &results.benches {
        line(&b.file, &b.commit, &b.command);
    }
    StaleReport { lines, stale }
}

/// The code a result file measured.
fn code_of(v: &serde_json::Value) -> Option<Vec<String>> {
    let schema = v["schema"].as_str()?;
    if schema == measure::schema::LabReport::SCHEMA {
        let report: measure::schema::LabReport = serde_json::from_value(v.clone()).ok()?;
        return Some(report.code_paths());
    }
    // Benchmarks name their stage in the schema (`minigram.bench-stage1/1`)
    // or in a field (storage benches, load-test runs).
    let stage = match v["stage"].as_str() {
        Some(s) => s.to_owned(),
        None if schema.contains("stage1") => "stage-1".to_owned(),
        None if schema.contains("stage2") => "stage-2".to_owned(),
        None => return None,
    };
    Some(measure::schema::code_paths(&stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_and_unknown_commits_are_stale() {
        let repo = Repo::holding(Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("the tests run inside the repository");
        let paths = measure::schema::code_paths("stage-1");
        assert_eq!(repo.age("0123456789ab-dirty", &paths), Age::Dirty);
        assert_eq!(
            repo.age("0123456789ab", &paths),
            Age::Unknown("0123456789ab".into())
        );
        assert!(Age::Changed(paths).is_stale());
        assert!(!Age::Unchecked.is_stale());
    }

    #[test]
    fn the_commit_that_last_changed_the_code_is_current_for_it() {
        let repo = Repo::holding(Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("the tests run inside the repository");
        let paths = vec!["stage-1/src".to_owned()];
        let last = repo.last_change("stage-1/src");
        assert!(!last.is_empty(), "stage-1/src has a history");
        let first = String::from_utf8_lossy(
            &git(&repo.root, &["rev-list", "--max-parents=0", "HEAD"])
                .unwrap()
                .stdout,
        )
        .lines()
        .next()
        .unwrap()
        .to_owned();
        // Its first commit predates every later change to stage-1/src.
        if first != last {
            assert_eq!(
                repo.age(&first, &paths),
                Age::Changed(vec!["stage-1/src".into()])
            );
        }
        if !repo.uncommitted("stage-1/src") {
            assert_eq!(repo.age(&last, &paths), Age::Current);
        }
    }
}

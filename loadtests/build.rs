//! Records the commit of the code this `loadtests` is built from — and
//! whether the workspace's code differed from it — as
//! `MINIGRAM_BUILD_COMMIT`, so a result file names the code that made it,
//! not the git state of whatever directory the tool happens to run in.
//! Only code paths count toward "-dirty": results/ and docs/ change when a
//! run writes them.

use std::path::Path;
use std::process::Command;

const CODE: &[&str] = &[
    "shared",
    "stage-1",
    "stage-2",
    "loadtests",
    "dashboard",
    "measure",
    "crosscheck",
    "Cargo.toml",
    "Cargo.lock",
];

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        // No index refresh: a rewritten .git/index would rerun this script
        // on every build.
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest)
        .parent()
        .expect("loadtests is in the workspace");
    let commit = match git(root, &["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
            status.extend(CODE);
            let dirty = git(root, &status).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=MINIGRAM_BUILD_COMMIT={commit}");
    // Again when the commit moves or the code changes.
    for path in [".git/HEAD", ".git/index", ".git/refs", ".git/packed-refs"]
        .into_iter()
        .chain(CODE.iter().copied())
    {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}

//! Records the git revision and the compiler version for `--version` and
//! `agent_exporter_build_info`.

use std::process::Command;

fn main() {
    let revision = std::env::var("AGENT_HEALTH_EXPORTER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = run(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=AHE_GIT_REVISION={revision}");
    println!("cargo:rustc-env=AHE_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=AGENT_HEALTH_EXPORTER_REVISION");
    // Asked of git rather than assumed to be under .git/: in a worktree .git is a file, and a
    // path that does not exist would make cargo rerun this script, and rebuild the crate, on
    // every build. Only paths that exist are named, for the same reason.
    for name in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = run("git", &["rev-parse", "--git-path", name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

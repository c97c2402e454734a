//! docs/figures.md, the benchmark figures the docs point to, is what BENCHMARKS.md's last run
//! gives (bench/figures.py writes it; this runs its `--check`). Skipped without python3.

mod docs_md;

use std::process::Command;

#[test]
fn figures_page_matches_the_last_benchmark_run() {
    let Ok(out) = Command::new("python3")
        .arg(docs_md::repo().join("bench/figures.py"))
        .arg("--check")
        .output()
    else {
        println!("SKIPPED: python3 is not installed; .ci/run runs bench/figures.py --check");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

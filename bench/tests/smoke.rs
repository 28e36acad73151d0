//! The bench runs end to end and every scenario's checksum holds. Timings
//! are not checked here (they live in docs/performance.md).

use std::path::Path;
use std::process::Command;

#[test]
fn quick_bench_runs_every_scenario_with_checksums_holding() {
    let bench = Path::new(env!("CARGO_BIN_EXE_plughost-bench"));
    let profile = bench.parent().unwrap();
    let target = profile.parent().unwrap();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "--quiet",
            "-p",
            "plughost",
            "-p",
            "bench-plugin",
            "--target-dir",
        ])
        .arg(target);
    if profile.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    assert!(
        cargo.status().unwrap().success(),
        "build the bench plugin and the host"
    );
    let out = Command::new(bench)
        .args(["--quick", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in [
        "raw",
        "rust",
        "rust_batch",
        "c",
        "fanout8",
        "process",
        "latency",
        "startup",
        "idle_rss",
    ] {
        assert!(report["scenarios"][name].is_object(), "{name} in {report}");
    }
    assert!(
        report["scenarios"]["rust"]["ratio_to_raw"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(report["scenarios"]["latency"]["p99_us"].as_f64().is_some());
}

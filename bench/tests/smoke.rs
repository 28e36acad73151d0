//! CI's smoke test of the bench: `plughost-bench --quick --json` runs every
//! scenario end to end and every checksum holds (it exits non-zero on any
//! mismatch). Timings are never asserted; they live in docs/performance.md.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every scenario of issue 7, by the name `--json` reports it under.
const SCENARIOS: [&str; 11] = [
    "raw",
    "rust",
    "publisher_thread",
    "rust_batch",
    "c",
    "fanout8",
    "process",
    "raw_latency",
    "latency",
    "startup",
    "idle_rss",
];

/// The bench binary under test, in `<target>/<profile>/`.
fn bench() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_plughost-bench"))
}

/// Build what the bench loads from its own directory (the bench plugin
/// cdylib, `libbench_c.so` from this crate's build script, and the
/// `plughost` binary): cdylibs and other packages' binaries are not built
/// for this crate's tests. Same profile and target directory as the bench;
/// the whole workspace, so that under `cargo test --workspace` every
/// dependency has the features it was built with and nothing compiles twice.
fn build_siblings() -> PathBuf {
    let profile = bench().parent().expect("the bench has a directory");
    let target_dir = profile.parent().expect("the profile dir has a parent");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["build", "--quiet", "--workspace"])
        .arg("--target-dir")
        .arg(target_dir);
    if profile.file_name().is_some_and(|name| name == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo");
    assert!(
        status.success(),
        "building the bench's plugins and plughost failed"
    );
    profile.to_owned()
}

#[test]
fn quick_bench_runs_every_scenario_and_every_checksum_holds() {
    let dir = build_siblings();
    for needed in ["libbench_plugin.so", "libbench_c.so", "plughost"] {
        assert!(dir.join(needed).exists(), "{needed} was not built");
    }
    let out = Command::new(bench())
        .args(["--quick", "--json"])
        .output()
        .expect("run plughost-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "plughost-bench failed ({}): {stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    let scenarios = report["scenarios"]
        .as_object()
        .unwrap_or_else(|| panic!("no scenarios object in {report}"));
    for name in SCENARIOS {
        assert!(scenarios.contains_key(name), "{name} missing in {report}");
    }
    assert_eq!(
        scenarios.len(),
        SCENARIOS.len(),
        "unexpected scenarios in {report}"
    );
    // Which fields each scenario reports (their values are not judged).
    let has = |name: &str, field: &str| scenarios[name][field].is_number();
    for name in [
        "raw",
        "rust",
        "publisher_thread",
        "rust_batch",
        "c",
        "fanout8",
        "process",
    ] {
        assert!(
            has(name, "events_per_sec") && has(name, "ratio_to_raw"),
            "{name}: {report}"
        );
    }
    for name in ["raw_latency", "latency"] {
        for field in ["p50_us", "p99_us", "p999_us"] {
            assert!(has(name, field), "{name}.{field}: {report}");
        }
    }
    // latency's p99 over raw_latency's
    assert!(
        has("latency", "ratio_to_raw"),
        "latency.ratio_to_raw: {report}"
    );
    assert!(has("startup", "ms"), "startup.ms: {report}");
    assert!(has("idle_rss", "bytes"), "idle_rss.bytes: {report}");
}

#[test]
fn unknown_arguments_are_usage_errors() {
    let out = Command::new(bench())
        .arg("--frobnicate")
        .output()
        .expect("run plughost-bench");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: plughost-bench"));
}

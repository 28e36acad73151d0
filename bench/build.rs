//! Compile `c/bench_c.c` into `libbench_c.so` and place it in the profile
//! directory (`target/<profile>/`), beside `libbench_plugin.so` and the
//! `plughost-bench` binary that looks for it there; as `plugins/c/build.rs`
//! does for the shipped C plugins.

use std::path::PathBuf;
use std::process::Command;

#[path = "../ffi/cflags.rs"]
mod cflags;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let source = here.join("c/bench_c.c");
    let include = here.join("../ffi/include");
    let util = here.join("../plugins/c");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the profile directory")
        .to_owned();
    for input in [
        source.clone(),
        include.join("plughost.h"),
        util.join("plughost_util.h"),
        here.join("../ffi/cflags.rs"),
    ] {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    let built = out_dir.join("libbench_c.so");
    let compiler = cc::Build::new().pic(true).opt_level(2).get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args(cflags::C_PLUGIN_FLAGS)
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(&util)
        .arg("-o")
        .arg(&built)
        .arg(&source);
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler: {e}"));
    assert!(status.success(), "compiling {} failed", source.display());
    // Replace, never overwrite in place: a running host may have the old file mapped.
    let staging = profile_dir.join(".libbench_c.so.tmp");
    std::fs::copy(&built, &staging).unwrap();
    std::fs::rename(&staging, profile_dir.join("libbench_c.so")).unwrap();
}

//! Compile `c/bench_c.c` into `libbench_c.so` beside the other plugins in
//! the profile directory (as `plugins/c/build.rs` does for the shipped ones).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let source = here.join("c/bench_c.c");
    let include = here.join("../ffi/include");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the profile directory")
        .to_owned();
    println!("cargo:rerun-if-changed={}", source.display());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("plughost.h").display()
    );
    let built = out_dir.join("libbench_c.so");
    let compiler = cc::Build::new().pic(true).opt_level(2).get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fvisibility=hidden",
        ])
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(&built)
        .arg(&source);
    assert!(
        command.status().expect("run the C compiler").success(),
        "compiling bench_c.c failed"
    );
    let staging = profile_dir.join(".libbench_c.so.tmp");
    std::fs::copy(&built, &staging).unwrap();
    std::fs::rename(&staging, profile_dir.join("libbench_c.so")).unwrap();
}

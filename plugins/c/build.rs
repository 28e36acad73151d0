//! Compile every `*.c` in this directory into a shared library against
//! `ffi/include/plughost.h`, and place it in the profile directory, where
//! `plugin_dirs = ["target/release"]` (or `target/debug`) finds it.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../ffi/cflags.rs"]
mod cflags;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let include = here.join("../../ffi/include");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the profile directory")
        .to_owned();
    let compiler = cc::Build::new()
        .pic(true)
        .opt_level(2)
        .warnings(true)
        .get_compiler();

    println!(
        "cargo:rerun-if-changed={}",
        include.join("plughost.h").display()
    );
    println!("cargo:rerun-if-changed=../../ffi/cflags.rs");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&here)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    for header in std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().path()) {
        if header.extension().is_some_and(|ext| ext == "h") {
            println!("cargo:rerun-if-changed={}", header.display());
        }
    }
    for source in sources {
        println!("cargo:rerun-if-changed={}", source.display());
        let name = source.file_stem().unwrap().to_str().unwrap();
        let built = out_dir.join(format!("lib{name}.so"));
        build(&compiler, &source, &include, &built);
        let placed = profile_dir.join(format!("lib{name}.so"));
        // Replace, never overwrite in place: a running host may have the old file mapped.
        let staging = profile_dir.join(format!(".lib{name}.so.tmp"));
        std::fs::copy(&built, &staging).unwrap();
        std::fs::rename(&staging, &placed).unwrap();
    }
}

fn build(compiler: &cc::Tool, source: &Path, include: &Path, output: &Path) {
    let mut command: Command = compiler.to_command();
    command
        .args(cflags::C_PLUGIN_FLAGS)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(output)
        .arg(source);
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler: {e}"));
    assert!(status.success(), "compiling {} failed", source.display());
}

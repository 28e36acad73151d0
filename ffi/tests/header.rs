//! The committed header is exactly what cbindgen generates from `src/lib.rs`,
//! and it compiles on its own as C11 and C++17 with warnings as errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn committed_header() -> PathBuf {
    crate_dir().join("include/plughost.h")
}

fn generate() -> String {
    let config =
        cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).expect("read cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn committed_header_matches_the_rust_definitions() {
    let fresh = generate();
    if std::env::var_os("PLUGHOST_BLESS").is_some() {
        std::fs::write(committed_header(), &fresh).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(committed_header()).unwrap_or_default();
    assert!(
        committed == fresh,
        "ffi/include/plughost.h is out of date with ffi/src/lib.rs; regenerate it with:\n    PLUGHOST_BLESS=1 cargo test -p plughost-ffi --test header"
    );
}

fn compiles(compiler: &str, std: &str, extension: &str, extra: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("header-{extension}"));
    std::fs::create_dir_all(&dir).unwrap();
    // The committed file itself, as plugin authors include it (the drift test
    // checks it against the Rust definitions separately).
    let include = committed_header()
        .parent()
        .expect("the header has a directory")
        .to_owned();
    // A copy beside the source would win over `-I` for `#include "..."`.
    let _ = std::fs::remove_file(dir.join("plughost.h"));
    let source = dir.join(format!("only_header.{extension}"));
    std::fs::write(
        &source,
        "#include \"plughost.h\"\nint main(void) { return (int)sizeof(plughost_plugin) == 0; }\n",
    )
    .unwrap();
    let output = Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(dir.join("only_header"))
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} -std={std} rejects plughost.h:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn header_compiles_alone_as_c11_with_warnings_as_errors() {
    compiles("cc", "c11", "c", &["-pedantic"]);
}

#[test]
fn header_compiles_alone_as_cpp17_with_warnings_as_errors() {
    compiles("c++", "c++17", "cpp", &[]);
}

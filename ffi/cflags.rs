//! How a C plugin of this repository is compiled: the build scripts
//! (`plugins/c`, `bench`) and the tests (`tests/common`, `tests/compat.rs`)
//! include this one file (`#[path = ".../ffi/cflags.rs"] mod cflags;`), so a
//! plugin built by a test is built as the shipped ones are.

/// C11, every warning an error, a position-independent shared library that
/// may start threads (a plugin's own threads publish through its
/// publisher), exporting only what it marks visible (its
/// `plughost_plugin_entry`).
pub const C_PLUGIN_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-shared",
    "-pthread",
    "-fPIC",
    "-fvisibility=hidden",
];

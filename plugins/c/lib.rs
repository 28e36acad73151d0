//! Nothing to link: this crate exists for its build script, which compiles
//! each `plugins/c/*.c` into `lib<name>.so` in the profile's output directory
//! (`target/debug`, `target/release`), next to the Rust plugins.

//! Where a `library` of `plugins.toml` points: a bare name looked up in
//! `plugin_dirs` under the platform's file name, or a path taken relative to
//! the config.

use super::LoadError;
use std::path::{Path, PathBuf};

/// The platform's file name for a library called `name`.
pub fn platform_file_name(name: &str) -> String {
    format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn is_path(spec: &str) -> bool {
    spec.contains(std::path::MAIN_SEPARATOR)
        || spec.contains('/')
        || [".so", ".dylib", ".dll"]
            .iter()
            .any(|suffix| spec.ends_with(suffix))
}

/// Where `spec` (a bare name or a path) points: a path is taken relative to
/// `base`; a bare name is looked up in `dirs` under its platform file name.
pub fn resolve(spec: &str, dirs: &[PathBuf], base: &Path) -> Result<PathBuf, LoadError> {
    if is_path(spec) {
        let path = crate::config::clean(&base.join(spec));
        if let Some(name) = bare_name_of(spec)
            && path.symlink_metadata().is_err()
        {
            return Err(not_beside_the_config(spec, name, path, dirs, base));
        }
        return Ok(path);
    }
    let file = platform_file_name(spec);
    let candidates: Vec<PathBuf> = dirs.iter().map(|dir| dir.join(&file)).collect();
    candidates
        .iter()
        .find(|path| path.symlink_metadata().is_ok())
        .cloned()
        .ok_or(LoadError::NotFound {
            name: spec.to_owned(),
            looked_in: candidates,
        })
}

/// `topn` for `libtopn.so`: the bare name a file name without a directory
/// stands for, when it has the platform's form.
fn bare_name_of(spec: &str) -> Option<&str> {
    if spec.contains('/') {
        return None;
    }
    spec.strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)
        .filter(|name| !name.is_empty())
}

/// `library = "libtopn.so"` is a path, beside the config, where it is not:
/// say where it was looked for, and what finds it in `plugin_dirs`.
fn not_beside_the_config(
    spec: &str,
    name: &str,
    path: PathBuf,
    dirs: &[PathBuf],
    base: &Path,
) -> LoadError {
    let in_dirs = dirs
        .iter()
        .map(|dir| dir.join(spec))
        .find(|p| p.symlink_metadata().is_ok());
    let found = match in_dirs {
        Some(there) => format!(" ({} is there)", there.display()),
        None => String::new(),
    };
    LoadError::io(
        &path,
        format!(
            "no such file: `{spec}` names a file in the config's directory {}; to look for the library in plugin_dirs{found}, write library = \"{name}\"",
            base.display()
        ),
    )
}

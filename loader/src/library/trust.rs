//! What must hold of a library file before any of its code runs: it is a
//! complete ELF shared library for this machine that exports a plugin entry
//! point, nobody but this user or root can change it or the directories on
//! the way to it, and a plugin that would run on a host thread can have its
//! panics caught. Checked on the descriptor the library is then loaded from.

use super::LoadError;
use super::elf;
use crate::config::{Isolation, PluginConfig};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What must hold of a library file before it is loaded.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The file's expected SHA-256, lowercase hex.
    pub sha256: Option<String>,
    /// Accept a file, or a directory on the way to it, that is writable by
    /// others or owned by someone other than this user or root.
    pub allow_insecure_permissions: bool,
    /// The plugin runs on a thread of the host (`isolation = "thread"`): a
    /// library built with `panic = "abort"` is refused, since its first
    /// panic would end the host.
    pub thread_isolation: bool,
}

impl Trust {
    /// What must hold of `plugin`'s library file before it is loaded.
    pub fn of(plugin: &PluginConfig) -> Trust {
        Trust {
            sha256: plugin.sha256.clone(),
            allow_insecure_permissions: plugin.allow_insecure_permissions,
            thread_isolation: plugin.isolation == Isolation::Thread,
        }
    }
}

/// A library file that passed every check made without running any of it.
pub(crate) struct Vetted {
    pub(super) file: File,
    pub(super) meta: std::fs::Metadata,
    pub(super) exports: elf::Exports,
}

impl Vetted {
    /// Built with `panic = "abort"`.
    pub(crate) fn panic_abort(&self) -> bool {
        self.exports.panic_abort
    }
}

/// Every check that needs no code of the library to run: the file is a
/// complete ELF shared library for this machine that exports a plugin entry
/// point, nobody but this user or root can change it or the directories on
/// the way to it, and a plugin that would run on a host thread can have its
/// panics caught. No constructor of a file refused here ever runs.
pub(crate) fn vet(path: &Path, trust: &Trust) -> Result<Vetted, LoadError> {
    let (file, exports) = open_checked(path)?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::io(path, format!("cannot stat: {e}")))?;
    if !trust.allow_insecure_permissions {
        check_permissions(path, &meta)?;
    }
    if trust.thread_isolation && exports.panic_abort {
        return Err(LoadError::incompatible(
            path,
            "built with panic = \"abort\": its first panic would end the host, so it cannot run on a host thread; set isolation = \"process\" for this plugin, or rebuild it with panic = \"unwind\"",
        ));
    }
    Ok(Vetted {
        file,
        meta,
        exports,
    })
}

/// Refuse a file that others could have changed: writable by others, owned
/// by someone else, or reached through a directory where others may replace
/// or redirect what is found, as OpenSSH's secure-path checks do: every
/// directory the lookup passes through, from `/` down, including the
/// directory of each symbolic link and of each link's target, must be owned
/// by root or this user and not writable by others (unless sticky, like
/// `/tmp`, where others cannot replace our files).
fn check_permissions(path: &Path, meta: &std::fs::Metadata) -> Result<(), LoadError> {
    let hint =
        "fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin";
    let me = rustix_euid();
    if meta.mode() & 0o002 != 0 {
        return Err(LoadError::insecure(
            path,
            format!(
                "is writable by others (mode {:o}): {hint}",
                meta.mode() & 0o7777
            ),
        ));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(LoadError::insecure(
            path,
            format!(
                "is owned by uid {}, not by this user or root: {hint}",
                meta.uid()
            ),
        ));
    }
    let (directories, own) = directories_on_the_way(path).map_err(|e| {
        LoadError::io(
            path,
            format!("cannot check the directories on the way to it: {e}"),
        )
    })?;
    for dir in directories {
        let dir_meta = std::fs::symlink_metadata(&dir).map_err(|e| {
            LoadError::io(
                path,
                format!("cannot check directory {}: {e}", dir.display()),
            )
        })?;
        let which = if dir == own {
            format!("its directory {}", dir.display())
        } else {
            format!("directory {} on the way to it", dir.display())
        };
        let sticky = dir_meta.mode() & 0o1000 != 0;
        if dir_meta.mode() & 0o002 != 0 && !sticky {
            return Err(LoadError::insecure(
                path,
                format!("{which} is writable by others: {hint}"),
            ));
        }
        if dir_meta.uid() != 0 && dir_meta.uid() != me {
            return Err(LoadError::insecure(
                path,
                format!(
                    "{which} is owned by uid {}, not by this user or root: {hint}",
                    dir_meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

/// Every directory the lookup of `path` passes through, in order from `/`,
/// following symbolic links the way the kernel does, and the directory the
/// file itself is finally found in.
fn directories_on_the_way(path: &Path) -> std::io::Result<(Vec<PathBuf>, PathBuf)> {
    use std::collections::VecDeque;
    use std::path::Component;
    /// As the kernel's limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    fn parts(path: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
        path.components().filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
    }
    let path = std::path::absolute(path)?;
    let mut pending: VecDeque<std::ffi::OsString> = parts(&path).collect();
    // Always a real directory: links are resolved as they are met.
    let mut here = PathBuf::from("/");
    let mut seen = vec![here.clone()];
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            here.pop();
            continue;
        }
        let next = here.join(&name);
        let meta = next.symlink_metadata()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = std::fs::read_link(&next)?;
            if target.is_absolute() {
                here = PathBuf::from("/");
            }
            for part in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                pending.push_front(part);
            }
        } else if !pending.is_empty() {
            here = next;
            if !seen.contains(&here) {
                seen.push(here.clone());
            }
        }
    }
    Ok((seen, here))
}

fn rustix_euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Open without following links, make sure it is a non-empty regular file
/// and a complete ELF shared library that exports a plugin entry point.
fn open_checked(path: &Path) -> Result<(File, elf::Exports), LoadError> {
    let link = path.symlink_metadata().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::io(path, "no such file"),
        _ => LoadError::io(path, format!("cannot read: {e}")),
    })?;
    // Follow the links to the real file first; the open below refuses links.
    let real = if link.file_type().is_symlink() {
        std::fs::canonicalize(path)
            .map_err(|_| LoadError::io(path, "dangling symbolic link: its target does not exist"))?
    } else {
        path.to_owned()
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&real)
        .map_err(|e| LoadError::io(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::io(path, format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(LoadError::not_a_plugin(
            path,
            "is a directory, not a plugin library",
        ));
    }
    if !meta.is_file() {
        return Err(LoadError::not_a_plugin(path, "is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(LoadError::not_a_plugin(
            path,
            "empty file, not a plugin library",
        ));
    }
    let exports =
        elf::inspect(&file, meta.len()).map_err(|reason| LoadError::not_a_plugin(path, reason))?;
    if !exports.is_plugin() {
        return Err(LoadError::not_a_plugin(
            path,
            "not a plughost plugin: it exports no plugin entry point (a Rust plugin needs `plughost_api::export_plugin!`, a C plugin `plughost_plugin_entry`)",
        ));
    }
    Ok((file, exports))
}

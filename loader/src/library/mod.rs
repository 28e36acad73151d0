//! Finding, checking and opening plugin libraries.
//!
//! A library is opened once per content and never closed: plugin threads,
//! thread-local destructors and abi_stable's own statics may outlive any
//! instance, so unloading could crash the host. The file is opened first
//! (without following links), checked and hashed on that descriptor, and
//! copied into a sealed private memory file that the dynamic loader gets as
//! `/proc/self/fd/N`: what was checked is what is loaded, a file changed later
//! (even overwritten in place) never touches the running code, and a changed
//! file is a new library, not the loader's cached copy of the old one.
//! The descriptor stays open for the life of the process: glibc recognises an
//! already-loaded library by its path string, and a reused descriptor number
//! would otherwise alias a different file.

mod c;
mod elf;
mod fatal;
pub(crate) mod process;
mod rust;

use crate::bus::Bus;
use crate::instance::{CallFailure, Instance, Slot};
use crate::text::Escaped;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use c::CLibrary;
use rust::RustLibrary;

/// Why a library could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A bare name was not found in any plugin directory.
    #[error("library `{name}` not found; looked for {}", looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The name as written.
        name: String,
        /// Every path tried.
        looked_in: Vec<PathBuf>,
    },
    /// The file exists but cannot be used.
    #[error("{}: {reason}", path.display())]
    Unusable {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl LoadError {
    fn unusable(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::Unusable {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The language a plugin library is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// A Rust cdylib exporting an abi_stable root module.
    Rust,
    /// A C library exporting `plughost_plugin_entry`.
    C,
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::C => "c",
        })
    }
}

/// How much of a plugin library this host can use (`docs/compatibility.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Support {
    /// Everything it offers: built against this host's ABI or an older minor.
    Full,
    /// Built against a newer minor: what this host does not know, it does
    /// not call. The text says so, naming both versions.
    Partly(String),
}

/// A loaded plugin library.
pub(crate) struct Library {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    /// The ABI it was built against, as shown: `plughost-api ABI 1.0`, `plughost.h 1.2`.
    pub abi: String,
    pub support: Support,
    pub language: Language,
    /// SHA-256 of the file's content, lowercase hex: what a reload compares.
    pub sha256: String,
    kind: Kind,
}

enum Kind {
    Rust(RustLibrary),
    C(CLibrary),
}

impl Library {
    /// Create one instance on the calling thread (the instance's own thread),
    /// talking to the host through `host`.
    pub(crate) fn create(
        &self,
        config_json: &str,
        host: SharedHost,
    ) -> Result<Box<dyn Instance>, CallFailure> {
        // Named on stderr if the plugin crashes the process during a call.
        let culprit = fatal::Culprit::new(host.instance_name(), &self.path);
        match &self.kind {
            Kind::Rust(library) => library.create(config_json, host, culprit),
            Kind::C(library) => library.create(config_json, host, culprit),
        }
    }

    /// Check an instance's config without creating it; `None` when the
    /// library cannot (C plugins, Rust plugins built before the check).
    pub(crate) fn validate_config(&self, config_json: &str) -> Option<Result<(), String>> {
        match &self.kind {
            Kind::Rust(library) => Some(library.validate_config(config_json)),
            Kind::C(_) => None,
        }
    }
}

/// What a plugin instance, whatever its language, can ask of the host. In
/// the host's process that is a [`HostLink`]; in a plugin's own process, a
/// link that forwards over the socket to the host.
pub(crate) trait HostSide: Send + Sync {
    fn instance_name(&self) -> &str;
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String>;
    fn log(&self, level: plughost_api::LogLevel, message: &str);

    /// Run a host command (JSON) and return the host's JSON answer.
    fn call(&self, request: &str) -> Result<String, String> {
        let _ = request;
        Err("call is not available to process-isolated plugins".to_owned())
    }

    /// Run a host command without waiting.
    fn cast(&self, request: &str) {
        let _ = request;
    }
}

/// How long a plugin's `call` waits for a command about another instance.
const CALL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) type SharedHost = Arc<dyn HostSide>;

/// The host side of an instance running in the host's process.
pub(crate) struct HostLink {
    pub slot: Arc<Slot>,
    pub bus: Arc<Bus>,
    /// For `call` / `cast`: the host, unless it is gone.
    pub host: std::sync::Weak<crate::host::Inner>,
}

impl HostSide for HostLink {
    fn instance_name(&self) -> &str {
        &self.slot.name
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.bus
            .publish(&self.slot, topic, payload.into())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn log(&self, level: plughost_api::LogLevel, message: &str) {
        crate::plugin_log(&self.slot.name, level, message);
    }

    /// Commands run on a thread of their own, never on the caller's: one
    /// about the caller itself (or a reload) is accepted at once and runs
    /// after the call returns; others are waited for, up to `CALL_WAIT`.
    fn call(&self, request: &str) -> Result<String, String> {
        let host = self
            .host
            .upgrade()
            .map(|inner| crate::host::Host { inner })
            .ok_or("the host is shutting down")?;
        let command = crate::control::parse(request.as_bytes())?;
        let about_myself = command.changes() == Some(&*self.slot.name)
            || matches!(command, crate::control::Command::Reload(_));
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let caller = crate::control::Caller::Plugin(self.slot.name.clone());
        std::thread::Builder::new()
            .name(format!("plughost:{}:call", self.slot.name))
            .spawn(move || {
                let _ = reply_tx.send(crate::control::run(&host, &caller, command));
            })
            .map_err(|e| format!("cannot run the command: {e}"))?;
        if about_myself {
            return Ok(serde_json::json!({"ok": true, "result": "accepted"}).to_string());
        }
        match reply_rx.recv_timeout(CALL_WAIT) {
            Ok(answer) => Ok(answer.to_string()),
            Err(_) => Err(format!(
                "the command still runs after {CALL_WAIT:?}; not waiting for it"
            )),
        }
    }

    fn cast(&self, request: &str) {
        let Some(host) = self.host.upgrade().map(|inner| crate::host::Host { inner }) else {
            return;
        };
        let request = request.to_owned();
        let name = self.slot.name.clone();
        let _ = std::thread::Builder::new()
            .name(format!("plughost:{name}:cast"))
            .spawn(move || {
                let caller = crate::control::Caller::Plugin(name.clone());
                let answer = crate::control::answer(&host, &caller, request.as_bytes());
                if answer["ok"] != true {
                    let error = answer["error"].as_str().unwrap_or_default();
                    tracing::warn!(plugin = %name, "cast {} failed: {}", Escaped(&request), Escaped(error));
                }
            });
    }
}

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
    LoadError::unusable(
        &path,
        format!(
            "no such file: `{spec}` names a file in the config's directory {}; to look for the library in plugin_dirs{found}, write library = \"{name}\"",
            base.display()
        ),
    )
}

/// Libraries opened by this process: opened once per content, kept forever.
#[derive(Default)]
struct Loaded {
    /// By the file's identity and change times: a file not touched since is
    /// not hashed again.
    by_file: HashMap<FileKey, Arc<Library>>,
    /// By SHA-256: the same bytes are the same library, wherever they sit.
    by_content: HashMap<String, Arc<Library>>,
}

/// (device, inode, size, mtime, ctime): any write to the file changes it.
type FileKey = (u64, u64, u64, (i64, i64), (i64, i64));

fn file_key(meta: &std::fs::Metadata) -> FileKey {
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    )
}

type Registry = Mutex<Loaded>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

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

/// Open the library at `path`, or return the one this process already
/// opened with the same content. The checks of `trust` run on the open
/// descriptor, before the dynamic loader sees the file.
pub(crate) fn open(path: &Path, trust: &Trust) -> Result<Arc<Library>, LoadError> {
    let Vetted {
        file,
        meta,
        exports,
    } = vet(path, trust)?;
    let pinned = |found: &str| match &trust.sha256 {
        Some(expected) if expected != found => Err(LoadError::unusable(
            path,
            format!(
                "sha256 mismatch: plugins.toml pins {expected}, the file is {found}; refusing to load it"
            ),
        )),
        _ => Ok(()),
    };
    let key = file_key(&meta);
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(library) = registry.by_file.get(&key) {
        pinned(&library.sha256)?;
        return Ok(library.clone());
    }
    let sha256 =
        sha256_of(&file).map_err(|e| LoadError::unusable(path, format!("cannot read: {e}")))?;
    pinned(&sha256)?;
    if let Some(library) = registry.by_content.get(&sha256).cloned() {
        registry.by_file.insert(key, library.clone());
        return Ok(library);
    }
    let copy = private_copy(path, &file, &sha256)?;
    let library = Arc::new(load(path, copy, sha256.clone(), exports)?);
    registry.by_file.insert(key, library.clone());
    registry.by_content.insert(sha256, library.clone());
    Ok(library)
}

/// A library file that passed every check made without running any of it.
pub(crate) struct Vetted {
    file: File,
    meta: std::fs::Metadata,
    exports: elf::Exports,
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
        .map_err(|e| LoadError::unusable(path, format!("cannot stat: {e}")))?;
    if !trust.allow_insecure_permissions {
        check_permissions(path, &meta)?;
    }
    if trust.thread_isolation && exports.panic_abort {
        return Err(LoadError::unusable(
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

/// Copy the checked file into a sealed memory file (`memfd`) of this process
/// and check the copy has the same SHA-256. The loader maps the copy: nobody
/// can change it (the seals forbid writes, even ours), it is a new file for
/// the loader (never its cached copy of an older version), and it needs no
/// writable, executable directory.
fn private_copy(path: &Path, file: &File, sha256: &str) -> Result<File, LoadError> {
    use std::os::unix::io::FromRawFd;
    let fail = |what: &str, e: std::io::Error| {
        LoadError::unusable(
            path,
            format!("cannot make a private copy to load ({what}: {e})"),
        )
    };
    let name = c"plughost-plugin";
    // SAFETY: memfd_create reads a NUL-terminated name and returns a new
    // descriptor (or -1); no memory of ours is kept.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(fail("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let copy = unsafe { File::from_raw_fd(fd) };
    // Plain reads and writes: a `sendfile`/`splice` copy (what `io::copy`
    // does between files) can leave pages of the copy pinned for a moment,
    // and sealing then fails with EBUSY.
    copy_plainly(file, &copy).map_err(|e| fail("copy", e))?;
    seal(&copy).map_err(|e| fail("seal", e))?;
    let copied = sha256_of(&copy).map_err(|e| fail("hash", e))?;
    if copied != sha256 {
        return Err(LoadError::unusable(
            path,
            "the file changed while it was being loaded; try again once it is written",
        ));
    }
    Ok(copy)
}

/// `source` from its start into `copy`, with read(2) and write(2) only.
fn copy_plainly(source: &File, copy: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, Write};
    let (mut source, mut copy) = (source, copy);
    source.seek(std::io::SeekFrom::Start(0))?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match source.read(&mut buffer) {
            Ok(0) => return copy.flush(),
            Ok(n) => copy.write_all(&buffer[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How often, and how long at most, sealing waits for a busy copy.
const SEAL_TRIES: u32 = 10;
const SEAL_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// Seal the private copy against any change. The kernel refuses the write
/// seal (EBUSY) while a page of the file is still pinned or mapped writable
/// by someone; that passes, so a busy machine gets a few tries with a short
/// backoff (at most about half a second in all) before the load fails.
fn seal(copy: &File) -> std::io::Result<()> {
    seal_waiting(copy, std::thread::sleep)
}

/// [`seal`], with `wait` for the pauses between tries.
fn seal_waiting(copy: &File, mut wait: impl FnMut(std::time::Duration)) -> std::io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    let mut backoff = std::time::Duration::from_millis(1);
    let mut attempt = 1;
    loop {
        // SAFETY: fcntl(F_ADD_SEALS) on our own descriptor takes an integer argument.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) || attempt >= SEAL_TRIES {
            return Err(error);
        }
        wait(backoff);
        backoff = (backoff * 2).min(SEAL_BACKOFF_MAX);
        attempt += 1;
    }
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
        return Err(LoadError::unusable(
            path,
            format!(
                "is writable by others (mode {:o}): {hint}",
                meta.mode() & 0o7777
            ),
        ));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Err(LoadError::unusable(
            path,
            format!(
                "is owned by uid {}, not by this user or root: {hint}",
                meta.uid()
            ),
        ));
    }
    let (directories, own) = directories_on_the_way(path).map_err(|e| {
        LoadError::unusable(
            path,
            format!("cannot check the directories on the way to it: {e}"),
        )
    })?;
    for dir in directories {
        let dir_meta = std::fs::symlink_metadata(&dir).map_err(|e| {
            LoadError::unusable(
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
            return Err(LoadError::unusable(
                path,
                format!("{which} is writable by others: {hint}"),
            ));
        }
        if dir_meta.uid() != 0 && dir_meta.uid() != me {
            return Err(LoadError::unusable(
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
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The SHA-256 of an open file, from its start, as lowercase hex.
fn sha256_of(file: &File) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::{Read, Seek};
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Open without following links, make sure it is a non-empty regular file
/// and a complete ELF shared library that exports a plugin entry point.
fn open_checked(path: &Path) -> Result<(File, elf::Exports), LoadError> {
    let link = path.symlink_metadata().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::unusable(path, "no such file"),
        _ => LoadError::unusable(path, format!("cannot read: {e}")),
    })?;
    // Follow the links to the real file first; the open below refuses links.
    let real = if link.file_type().is_symlink() {
        std::fs::canonicalize(path).map_err(|_| {
            LoadError::unusable(path, "dangling symbolic link: its target does not exist")
        })?
    } else {
        path.to_owned()
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&real)
        .map_err(|e| LoadError::unusable(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::unusable(path, format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(LoadError::unusable(
            path,
            "is a directory, not a plugin library",
        ));
    }
    if !meta.is_file() {
        return Err(LoadError::unusable(path, "is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(LoadError::unusable(
            path,
            "empty file, not a plugin library",
        ));
    }
    let exports =
        elf::inspect(&file, meta.len()).map_err(|reason| LoadError::unusable(path, reason))?;
    if !exports.is_plugin() {
        return Err(LoadError::unusable(
            path,
            "not a plughost plugin: it exports no plugin entry point (a Rust plugin needs `plughost_api::export_plugin!`, a C plugin `plughost_plugin_entry`)",
        ));
    }
    Ok((file, exports))
}

/// Hand the sealed copy to the dynamic loader, as what its exports say it is.
fn load(
    path: &Path,
    file: File,
    sha256: String,
    exports: elf::Exports,
) -> Result<Library, LoadError> {
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // SAFETY: opening a library runs its initialisers; the operator chose to
    // trust this file by listing it, and it passed every check of `vet`.
    let handle = unsafe {
        libloading::os::unix::Library::open(Some(&fd_path), libc::RTLD_NOW | libc::RTLD_LOCAL)
    }
    .map_err(|e| LoadError::unusable(path, describe_dlopen_error(&e.to_string(), &fd_path)))?;
    // Never closed (see the module docs), and neither is the descriptor: its
    // number names the library to the loader.
    let handle = std::mem::ManuallyDrop::new(handle);
    std::mem::forget(file);
    let library = if exports.rust_root {
        let library = RustLibrary::load(path, &fd_path)?;
        let support = match library.support() {
            plughost_api::loading::Support::Full => Support::Full,
            _ => Support::Partly(format!(
                "this host speaks plugin ABI {}; what ABI {} added is not called",
                plughost_api::loading::AbiVersion::HOST,
                library.abi()
            )),
        };
        Library {
            path: path.to_owned(),
            name: library.name(),
            version: library.version(),
            abi: format!("plughost-api ABI {}", library.abi()),
            support,
            language: Language::Rust,
            sha256,
            kind: Kind::Rust(library),
        }
    } else {
        let library = CLibrary::load(path, &handle)?;
        let support = match library.unknown_capabilities {
            false => Support::Full,
            true => Support::Partly(format!(
                "this host speaks C ABI {}.{}; what the plugin sets beyond it is not called",
                plughost_ffi::PLUGHOST_ABI_MAJOR,
                plughost_ffi::PLUGHOST_ABI_MINOR
            )),
        };
        Library {
            path: path.to_owned(),
            name: library.name.clone(),
            version: library.version.clone(),
            abi: format!("plughost.h {}.{}", library.abi_major, library.abi_minor),
            support,
            language: Language::C,
            sha256,
            kind: Kind::C(library),
        }
    };
    if let Support::Partly(what) = &library.support {
        tracing::warn!(
            "{}: built against {}, newer than this host: {}",
            path.display(),
            Escaped(&library.abi),
            what
        );
    }
    Ok(library)
}

/// Turn the loader's message into one line about `path`.
fn describe_dlopen_error(message: &str, fd_path: &Path) -> String {
    let message = message.replace(&format!("{}: ", fd_path.display()), "");
    let message = message.trim();
    if message.contains("invalid ELF header") || message.contains("file too short") {
        format!("not a shared library ({message})")
    } else if message.contains("wrong ELF class") || message.contains("machine architecture") {
        format!("built for another architecture ({message})")
    } else {
        format!("cannot load: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory file holding a few bytes, and a writable shared mapping of
    /// it: while the mapping lives, the kernel refuses the write seal with
    /// EBUSY, as it does while a page is pinned.
    fn busy_copy() -> (File, *mut libc::c_void) {
        use std::io::Write;
        use std::os::unix::io::FromRawFd;
        // SAFETY: memfd_create reads a NUL-terminated name, returns a new descriptor.
        let fd = unsafe {
            libc::memfd_create(
                c"test".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just created and nothing else owns it.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.write_all(&[7; 4096]).unwrap();
        // SAFETY: a new shared mapping of our own file; unmapped by the test.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        (file, map)
    }

    #[test]
    fn sealing_waits_for_a_copy_that_is_busy_for_a_moment() {
        let (copy, map) = busy_copy();
        let mut waits = 0;
        let sealed = seal_waiting(&copy, |_| {
            waits += 1;
            if waits == 1 {
                // SAFETY: the mapping made by busy_copy, unmapped once.
                let unmapped = unsafe { libc::munmap(map, 4096) };
                assert_eq!(unmapped, 0);
            }
        });
        assert!(sealed.is_ok(), "{sealed:?}");
        assert_eq!(waits, 1, "the first try met EBUSY, the second sealed it");
    }

    #[test]
    fn sealing_gives_up_after_a_bounded_wait() {
        let (copy, map) = busy_copy();
        let mut waited = std::time::Duration::ZERO;
        let sealed = seal_waiting(&copy, |pause| waited += pause);
        assert_eq!(sealed.unwrap_err().raw_os_error(), Some(libc::EBUSY));
        assert!(
            waited > std::time::Duration::from_millis(100)
                && waited < std::time::Duration::from_secs(1),
            "{waited:?}"
        );
        // SAFETY: the mapping made by busy_copy, unmapped once.
        unsafe { libc::munmap(map, 4096) };
    }
}

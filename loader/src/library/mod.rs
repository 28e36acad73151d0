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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// A loaded plugin library.
pub(crate) struct Library {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub abi: String,
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
        match &self.kind {
            Kind::Rust(library) => library.create(config_json, host),
            Kind::C(library) => library.create(config_json, host),
        }
    }

    /// Check an instance's config without creating it; `None` when the
    /// library cannot (C plugins, Rust plugins built before the check).
    pub(crate) fn validate_config(&self, config_json: &str) -> Option<Result<(), String>> {
        match &self.kind {
            Kind::Rust(library) => library.validate_config(config_json),
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
        return Ok(crate::config::clean(&base.join(spec)));
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
    /// Accept a file or directory writable by others, or a file owned by
    /// someone other than this user or root.
    pub allow_insecure_permissions: bool,
}

/// Open the library at `path`, or return the one this process already
/// opened with the same content. The checks of `trust` run on the open
/// descriptor, before the dynamic loader sees the file.
pub(crate) fn open(path: &Path, trust: &Trust) -> Result<Arc<Library>, LoadError> {
    let file = open_checked(path)?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::unusable(path, format!("cannot stat: {e}")))?;
    if !trust.allow_insecure_permissions {
        check_permissions(path, &meta)?;
    }
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
    let library = Arc::new(load(path, copy, sha256.clone())?);
    registry.by_file.insert(key, library.clone());
    registry.by_content.insert(sha256, library.clone());
    Ok(library)
}

/// Copy the checked file into a sealed memory file (`memfd`) of this process
/// and check the copy has the same SHA-256. The loader maps the copy: nobody
/// can change it (the seals forbid writes, even ours), it is a new file for
/// the loader (never its cached copy of an older version), and it needs no
/// writable, executable directory.
fn private_copy(path: &Path, file: &File, sha256: &str) -> Result<File, LoadError> {
    use std::io::Seek;
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
    let mut copy = unsafe { File::from_raw_fd(fd) };
    let mut source = file;
    source
        .seek(std::io::SeekFrom::Start(0))
        .and_then(|_| std::io::copy(&mut source, &mut copy))
        .map_err(|e| fail("copy", e))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on our own descriptor takes an integer argument.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(fail("seal", std::io::Error::last_os_error()));
    }
    let copied = sha256_of(&copy).map_err(|e| fail("hash", e))?;
    if copied != sha256 {
        return Err(LoadError::unusable(
            path,
            "the file changed while it was being loaded; try again once it is written",
        ));
    }
    Ok(copy)
}

/// Refuse a file that others could have changed: writable by others, owned
/// by someone else, or in a directory where others may replace files.
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
    let dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned));
    if let Some(dir) = dir
        && let Ok(dir_meta) = std::fs::metadata(&dir)
    {
        // A sticky directory (like /tmp) stops others from replacing our file.
        let sticky = dir_meta.mode() & 0o1000 != 0;
        if dir_meta.mode() & 0o002 != 0 && !sticky {
            return Err(LoadError::unusable(
                path,
                format!(
                    "its directory {} is writable by others: {hint}",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
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

/// Open without following links, and make sure it is a non-empty regular file.
fn open_checked(path: &Path) -> Result<File, LoadError> {
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
    elf::check(&file, meta.len()).map_err(|reason| LoadError::unusable(path, reason))?;
    Ok(file)
}

fn load(path: &Path, file: File, sha256: String) -> Result<Library, LoadError> {
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // SAFETY: opening a library runs its initialisers; the operator chose to
    // trust this file by listing it. The handle is never closed (see module docs).
    let handle = unsafe {
        libloading::os::unix::Library::open(Some(&fd_path), libc::RTLD_NOW | libc::RTLD_LOCAL)
    }
    .map_err(|e| LoadError::unusable(path, describe_dlopen_error(&e.to_string(), &fd_path)))?;
    let has = |symbol: &[u8]| {
        // SAFETY: only the symbol's presence is checked; nothing is read or called.
        unsafe { handle.get::<*const std::ffi::c_void>(symbol) }.is_ok()
    };
    let is_rust = has(rust::ROOT_SYMBOL);
    let is_c = has(plughost_ffi::PLUGHOST_ENTRY_SYMBOL);
    let c_library = if is_c && !is_rust {
        Some(CLibrary::load(path, &handle))
    } else {
        None
    };
    std::mem::forget(handle);
    // Keep the descriptor too: its number names the library to the loader.
    std::mem::forget(file);
    if is_rust {
        let library = RustLibrary::load(path, &fd_path)?;
        return Ok(Library {
            path: path.to_owned(),
            name: library.name(),
            version: library.version(),
            abi: format!("plughost-api {}", library.api_version()),
            language: Language::Rust,
            sha256,
            kind: Kind::Rust(library),
        });
    }
    if let Some(library) = c_library {
        let library = library?;
        return Ok(Library {
            path: path.to_owned(),
            name: library.name.clone(),
            version: library.version.clone(),
            abi: format!("plughost.h {}.{}", library.abi_major, library.abi_minor),
            language: Language::C,
            sha256,
            kind: Kind::C(library),
        });
    }
    Err(LoadError::unusable(
        path,
        "not a plughost plugin: it exports no plugin entry point (a Rust plugin needs `plughost_api::export_plugin!`, a C plugin `plughost_plugin_entry`)",
    ))
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

//! Opening a library: once per content, never closed (see the module docs
//! of `library`), loaded from a sealed private copy of the checked file, as
//! what its exports say it is (a Rust or a C plugin).

use super::c::CLibrary;
use super::fatal;
use super::rust::RustLibrary;
use super::trust::{Trust, Vetted, vet};
use super::{LoadError, PluginHost, elf};
use crate::instance::{CallFailure, Instance};
use crate::text::Escaped;
use rustix::fs::{MemfdFlags, SealFlags};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
        host: Arc<dyn PluginHost>,
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
        Some(expected) if expected != found => Err(LoadError::hash_mismatch(
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
    let sha256 = sha256_of(&file).map_err(|e| LoadError::io(path, format!("cannot read: {e}")))?;
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

/// Copy the checked file into a sealed memory file (`memfd`) of this process
/// and check the copy has the same SHA-256. The loader maps the copy: nobody
/// can change it (the seals forbid writes, even ours), it is a new file for
/// the loader (never its cached copy of an older version), and it needs no
/// writable, executable directory.
fn private_copy(path: &Path, file: &File, sha256: &str) -> Result<File, LoadError> {
    let fail = |what: &str, e: std::io::Error| {
        LoadError::io(
            path,
            format!("cannot make a private copy to load ({what}: {e})"),
        )
    };
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let copy = File::from(
        rustix::fs::memfd_create(c"plughost-plugin", flags)
            .map_err(|e| fail("memfd_create", e.into()))?,
    );
    // Plain reads and writes: a `sendfile`/`splice` copy (what `io::copy`
    // does between files) can leave pages of the copy pinned for a moment,
    // and sealing then fails with EBUSY.
    copy_plainly(file, &copy).map_err(|e| fail("copy", e))?;
    seal(&copy).map_err(|e| fail("seal", e))?;
    let copied = sha256_of(&copy).map_err(|e| fail("hash", e))?;
    if copied != sha256 {
        return Err(LoadError::hash_mismatch(
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
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    let mut backoff = std::time::Duration::from_millis(1);
    let mut attempt = 1;
    loop {
        let error = match rustix::fs::fcntl_add_seals(copy, seals) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if error != rustix::io::Errno::BUSY || attempt >= SEAL_TRIES {
            return Err(error.into());
        }
        wait(backoff);
        backoff = (backoff * 2).min(SEAL_BACKOFF_MAX);
        attempt += 1;
    }
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
    .map_err(|e| LoadError::load_failed(path, describe_dlopen_error(&e.to_string(), &fd_path)))?;
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

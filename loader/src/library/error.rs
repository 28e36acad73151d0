//! Why a library cannot be used: one variant per kind of refusal, each
//! naming the file, so a caller (or a test) can tell them apart and a user
//! reads one line.

use std::path::{Path, PathBuf};

/// Why a library could not be used. Every variant but [`LoadError::NotFound`]
/// names the file and says, in `reason`, what is wrong and what to do; the
/// message is `PATH: REASON`.
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
    /// The file cannot be read: missing, a dangling link, an I/O error.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Others could change the file or a directory on the way to it.
    #[error("{}: {reason}", path.display())]
    InsecurePermissions {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Its SHA-256 is not the one `plugins.toml` pins (or it changed while
    /// it was being loaded).
    #[error("{}: {reason}", path.display())]
    HashMismatch {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Not a plugin: not a regular file, not an ELF shared library for this
    /// machine, or no plugin entry point.
    #[error("{}: {reason}", path.display())]
    NotAPlugin {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A plugin built against a plugin ABI this host does not speak, or
    /// whose descriptor or layout does not match it.
    #[error("{}: {reason}", path.display())]
    AbiMismatch {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A plugin that cannot run where it is asked to (built with
    /// `panic = "abort"`, for a host thread).
    #[error("{}: {reason}", path.display())]
    Incompatible {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Loading it failed: the dynamic loader refused it, its root module or
    /// descriptor failed, or it hung or crashed the process that inspected it.
    #[error("{}: {reason}", path.display())]
    LoadFailed {
        /// The library file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// The kinds of [`LoadError`] that name a file, as they travel from the
/// inspecting child to the host (`library::inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Io,
    InsecurePermissions,
    HashMismatch,
    NotAPlugin,
    AbiMismatch,
    Incompatible,
    LoadFailed,
}

impl LoadError {
    /// The error of `kind` about `path`.
    pub(crate) fn new(kind: Kind, path: &Path, reason: impl Into<String>) -> LoadError {
        let (path, reason) = (path.to_owned(), reason.into());
        match kind {
            Kind::Io => LoadError::Io { path, reason },
            Kind::InsecurePermissions => LoadError::InsecurePermissions { path, reason },
            Kind::HashMismatch => LoadError::HashMismatch { path, reason },
            Kind::NotAPlugin => LoadError::NotAPlugin { path, reason },
            Kind::AbiMismatch => LoadError::AbiMismatch { path, reason },
            Kind::Incompatible => LoadError::Incompatible { path, reason },
            Kind::LoadFailed => LoadError::LoadFailed { path, reason },
        }
    }

    /// Its kind and reason, unless it is [`LoadError::NotFound`].
    pub(crate) fn kind(&self) -> Option<(Kind, &str)> {
        let (kind, reason) = match self {
            LoadError::NotFound { .. } => return None,
            LoadError::Io { reason, .. } => (Kind::Io, reason),
            LoadError::InsecurePermissions { reason, .. } => (Kind::InsecurePermissions, reason),
            LoadError::HashMismatch { reason, .. } => (Kind::HashMismatch, reason),
            LoadError::NotAPlugin { reason, .. } => (Kind::NotAPlugin, reason),
            LoadError::AbiMismatch { reason, .. } => (Kind::AbiMismatch, reason),
            LoadError::Incompatible { reason, .. } => (Kind::Incompatible, reason),
            LoadError::LoadFailed { reason, .. } => (Kind::LoadFailed, reason),
        };
        Some((kind, reason))
    }

    /// What is wrong with the file (the message without its path), unless
    /// the library was not found at all.
    pub fn reason(&self) -> Option<&str> {
        self.kind().map(|(_, reason)| reason)
    }

    pub(super) fn io(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::Io, path, reason)
    }

    pub(super) fn insecure(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::InsecurePermissions, path, reason)
    }

    pub(super) fn hash_mismatch(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::HashMismatch, path, reason)
    }

    pub(super) fn not_a_plugin(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::NotAPlugin, path, reason)
    }

    pub(super) fn abi_mismatch(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::AbiMismatch, path, reason)
    }

    pub(super) fn incompatible(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::Incompatible, path, reason)
    }

    pub(super) fn load_failed(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::new(Kind::LoadFailed, path, reason)
    }
}

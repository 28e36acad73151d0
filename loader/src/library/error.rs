//! Why a library cannot be used: one variant per kind of refusal, each
//! naming the file, so a caller (or a test) can tell them apart and a user
//! reads one line.

use std::path::{Path, PathBuf};

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
    pub(super) fn unusable(path: &Path, reason: impl Into<String>) -> LoadError {
        LoadError::Unusable {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

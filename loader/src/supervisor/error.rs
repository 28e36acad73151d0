//! Why an instance could not be started, stopped or restarted: one variant
//! per case a caller may act on, each saying it in one line.

use crate::library::LoadError;
use std::time::Duration;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A library could not be found or loaded.
    #[error("plugin `{name}`: {cause}")]
    Load {
        /// The instance.
        name: String,
        /// Why.
        cause: LoadError,
    },
    /// A plugin's `init` returned an error or panicked.
    #[error("plugin `{name}` ({library}) failed to initialize: {reason}")]
    Init {
        /// The instance.
        name: String,
        /// The library file.
        library: String,
        /// What the plugin said.
        reason: String,
    },
    /// The OS refused a thread.
    #[error("plugin `{name}`: cannot start its thread: {cause}")]
    Spawn {
        /// The instance.
        name: String,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// [`Host::start_cancellable`](crate::Host::start_cancellable) was
    /// cancelled; what had started was drained and stopped.
    #[error("startup cancelled; the plugin instances started so far were stopped")]
    Cancelled,
}

/// Why an operator's command about one instance (`stop`, `start`,
/// `restart`) did not do what it asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceError {
    /// No instance of that name is configured.
    #[error("no plugin instance named `{name}`")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// `stop` of an instance already stopped.
    #[error("`{name}` is already stopped")]
    AlreadyStopped {
        /// The instance.
        name: String,
    },
    /// `stop` of an instance that is down (failed, flapping) or starting.
    #[error("`{name}` is not running ({state})")]
    NotRunning {
        /// The instance.
        name: String,
        /// Its state, as operators see it.
        state: &'static str,
    },
    /// `start` of an instance that runs.
    #[error("`{name}` is already running")]
    AlreadyRunning {
        /// The instance.
        name: String,
    },
    /// Its thread did not end within the wait (it is stuck in the plugin).
    #[error("`{name}` did not stop within {waited:?}")]
    StopTimeout {
        /// The instance.
        name: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The old plugin's `stop` and the new one's `init` took longer than
    /// the wait.
    #[error("`{name}` did not restart within {waited:?}")]
    RestartTimeout {
        /// The instance.
        name: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The new plugin's `init` failed (the instance then fails under its
    /// restart policy).
    #[error("init {reason}")]
    InitFailed {
        /// What the plugin said.
        reason: String,
    },
    /// A stop was ordered while the new plugin's `init` ran.
    #[error("stopped during its init")]
    StoppedDuringInit,
    /// It could not be started.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The host is shutting down: no instance starts, stops or restarts on
    /// an order any more.
    #[error("the host is shutting down")]
    ShuttingDown,
}

//! What runs, and what keeps it running: the state of a running host
//! ([`Supervisor`], in `running`), one worker thread behind each slot
//! (`handle`), starting instances (`launch`), stopping and restarting them on
//! an operator's order (`operate`), applying a changed config (`reload`), the
//! restart policy (`policy`) and the watchdog (`watchdog`). `Host` is its
//! public face; plugins reach the host's commands through `local`'s
//! [`Commands`], which the host hands down.
//!
//! One change (an operator's command, a reload) runs at a time.

mod error;
mod handle;
mod launch;
mod local;
mod operate;
pub(crate) mod policy;
mod reload;
mod running;
mod watchdog;

pub use error::{InstanceError, StartError};
pub(crate) use handle::WorkerHandle;
pub(crate) use launch::Start;
pub(crate) use local::Commands;
pub(crate) use operate::RouteAnswer;
pub use reload::{ReloadError, ReloadReport};
pub(crate) use running::{Background, Supervisor, WATCHDOG};

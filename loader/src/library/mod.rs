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
mod error;
mod fatal;
pub(crate) mod inspect;
mod load;
mod plugin_host;
pub(crate) mod process;
mod resolve;
mod rust;
pub(crate) mod signal;
mod trust;

pub use error::LoadError;
pub use load::{Language, Support};
pub(crate) use load::{Library, open};
pub(crate) use plugin_host::{PluginHost, plugin_log};
pub use resolve::{platform_file_name, resolve};
pub use signal::known as signal_name;
pub use trust::Trust;
pub(crate) use trust::vet;

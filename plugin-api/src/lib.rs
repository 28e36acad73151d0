#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod abi;
mod content;
mod context;
mod duration;
mod event;
mod export;
mod http;
#[doc(hidden)]
pub mod loading;
mod plugin;
mod status;
pub mod topic;

pub use abi::LogLevel;
pub use content::{ContentError, ContentType};
pub use context::{Context, Publisher};
pub use duration::HumanDuration;
pub use event::Event;
pub use http::{HttpRequest, HttpResponse};
pub use plugin::{NoConfig, Plugin};
pub use status::{Health, HealthStatus, JobReport, Readiness};

/// The error a plugin returns: anything that implements `std::error::Error`,
/// or a `String` / `&str` through `?` and `.into()`.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[doc(hidden)]
pub mod __private {
    pub use crate::abi::PluginModuleRef;
    pub use crate::export::{PANIC_ABORT_SYMBOL, root_module};
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };
}

#[cfg(test)]
mod readme {
    /// The crate docs are the README (rendered on docs.rs, away from the
    /// repository): every link in it is absolute, an anchor, or an
    /// intra-doc path, never a path relative to the repository's files.
    #[test]
    fn every_link_in_the_readme_resolves_outside_the_repository() {
        let readme = include_str!("../README.md");
        let targets: Vec<&str> = readme
            .split("](")
            .skip(1)
            .map(|rest| rest.split(')').next().unwrap_or(""))
            .collect();
        assert!(!targets.is_empty());
        for target in targets {
            let absolute = target.starts_with("https://") || target.starts_with('#');
            let intra_doc = !target.contains('/') && !target.contains(".md");
            assert!(absolute || intra_doc, "a relative link: {target}");
        }
    }
}

//! How a host loads a plugin's root module: the version rule and the layout
//! check of `docs/compatibility.md`, shared by plughost and by any other
//! program that loads plugins built against this crate.
//!
//! abi_stable's own `init_root_module` checks the host's types as the
//! interface and the library's as the implementation, and accepts a prefix
//! type only when the implementation has at least the interface's fields: it
//! models a loader built against an older interface than the library. A host
//! loads plugins older than itself, so here the older side of the pair is the
//! interface: the library when it declares an older or equal ABI minor, the
//! host otherwise. Every type both sides know is still compared field by
//! field; only the direction in which prefix types may grow follows the
//! versions. Fields an older plugin lacks then read as absent through the
//! prefix types' accessors.

use crate::abi::{ABI_MAJOR, ABI_MINOR, PluginModuleRef};
use abi_stable::StableAbi;
use abi_stable::abi_stability::abi_checking::{
    AbiInstability, AbiInstabilityErrors, CheckingGlobals, ExpectedFound,
    check_layout_compatibility_with_globals,
};
use abi_stable::library::{LibHeader, LibraryError};
use abi_stable::type_layout::{TLFieldOrFunction, TypeLayout};
use std::fmt;

/// A plugin ABI version, as a library declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    /// Major: must equal the host's.
    pub major: u32,
    /// Minor: capabilities appended since `major.0`.
    pub minor: u32,
}

impl AbiVersion {
    /// The version this crate speaks.
    pub const HOST: AbiVersion = AbiVersion {
        major: ABI_MAJOR,
        minor: ABI_MINOR,
    };
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How much of a loaded plugin this host can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Everything the plugin offers: it was built against this host's ABI
    /// or an older minor of it.
    Full,
    /// Built against a newer minor: what that minor added, this host does
    /// not call, and host functions it lacks answer "absent" to the plugin.
    Partly,
}

/// A root module that passed the checks.
pub struct Loaded {
    /// The module.
    pub module: PluginModuleRef,
    /// The ABI the library declares.
    pub abi: AbiVersion,
}

impl Loaded {
    /// Whether this host supports the plugin fully or partly.
    pub fn support(&self) -> Support {
        if self.abi.minor > ABI_MINOR {
            Support::Partly
        } else {
            Support::Full
        }
    }
}

/// Why a root module was refused; `Display` is one line saying what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The declared version is not a version.
    BadVersion {
        /// As declared.
        declared: String,
    },
    /// Another major (or a build from before ABI 1.0).
    OtherMajor {
        /// As declared.
        declared: String,
        /// Its major.
        major: u32,
    },
    /// The library exports its root module without a layout to check.
    NoLayout,
    /// abi_stable found the layouts incompatible.
    Layout {
        /// The ABI the library declares.
        library: AbiVersion,
        /// The type abi_stable names, and the fields that lead to it.
        place: String,
        /// What differs, in the plugin's and the host's terms.
        problem: String,
        /// abi_stable's full report, many lines.
        report: String,
    },
    /// abi_stable refused it otherwise (the root module failed to initialize, ...).
    Library(LibraryError),
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = AbiVersion::HOST;
        let rebuild = format!("rebuild the plugin against plughost-api {ABI_MAJOR}.x");
        match self {
            LoadFailure::BadVersion { declared } => write!(
                f,
                "declares plugin ABI `{}`, which is not a version: {rebuild}",
                declared.escape_debug()
            ),
            LoadFailure::OtherMajor { declared, major: 0 } => write!(
                f,
                "built against plughost-api {}, from before the stable plugin ABI 1.0; this host speaks ABI {host} and loads {ABI_MAJOR}.x only: {rebuild}",
                declared.escape_debug()
            ),
            LoadFailure::OtherMajor { declared, major } => write!(
                f,
                "built against plugin ABI {}, but this host speaks ABI {host} and loads {ABI_MAJOR}.x only: {}{rebuild}",
                declared.escape_debug(),
                if *major > ABI_MAJOR {
                    "upgrade plughost, or "
                } else {
                    ""
                }
            ),
            LoadFailure::NoLayout => write!(
                f,
                "its root module carries no layout to check (not exported by plughost_api::export_plugin!): {rebuild}"
            ),
            LoadFailure::Layout {
                library,
                place,
                problem,
                ..
            } => write!(
                f,
                "built against plugin ABI {library}, but its layout differs from this host's (ABI {host}) in {place}: {problem}: {rebuild} (a released one)"
            ),
            LoadFailure::Library(LibraryError::RootModule { err, .. }) => write!(
                f,
                "its root module failed to initialize: {}",
                one_line(&err.to_string())
            ),
            LoadFailure::Library(other) => f.write_str(&one_line(&other.to_string())),
        }
    }
}

impl std::error::Error for LoadFailure {}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The root module behind `header`, if the library declares this host's
/// major and its layout agrees with this host's for every type both know.
pub fn load_root_module(header: &'static LibHeader) -> Result<Loaded, LoadFailure> {
    let declared = header.version_strings();
    let number = declared.parsed().map_err(|_| LoadFailure::BadVersion {
        declared: declared.version.to_string(),
    })?;
    if number.major != ABI_MAJOR {
        return Err(LoadFailure::OtherMajor {
            declared: declared.version.to_string(),
            major: number.major,
        });
    }
    let abi = AbiVersion {
        major: number.major,
        minor: number.minor,
    };
    let library = header.layout().ok_or(LoadFailure::NoLayout)?;
    let host = <PluginModuleRef as StableAbi>::LAYOUT;
    // The older side is the interface (see the module docs).
    let library_is_newer = abi.minor > ABI_MINOR;
    let (interface, implementation) = if library_is_newer {
        (host, library)
    } else {
        (library, host)
    };
    // Each library is checked against this host alone, never against what
    // other libraries were: abi_stable's process-wide globals keep the first
    // layout seen of each prefix type, so a 1.0 plugin loaded first (its
    // `HostVTable` of 7 fields) would make every 1.1 plugin after it (8)
    // look as if it had more fields than the host. Plugins never hand each
    // other a table; the host builds every table it hands them.
    let globals = CheckingGlobals::new();
    if let Err(errors) =
        check_layout_compatibility_with_globals(interface, implementation, &globals)
    {
        let (place, problem) = summary(&errors, !library_is_newer);
        return Err(LoadFailure::Layout {
            library: abi,
            place,
            problem,
            report: errors.to_string(),
        });
    }
    // SAFETY: the layout of the library's root module, and of every type it
    // reaches, was just checked against this host's, in the direction its
    // declared version allows; the version itself is checked again inside.
    let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
        .map_err(LoadFailure::Library)?;
    Ok(Loaded { module, abi })
}

/// The type abi_stable names (with the fields that lead to it from the root
/// module) and what differs there, with `plugin` and `host` for abi_stable's
/// "expected" and "found".
fn summary(errors: &AbiInstabilityErrors, plugin_is_expected: bool) -> (String, String) {
    let Some(error) = errors.errors.iter().find(|e| !e.errs.is_empty()) else {
        return ("its root module".to_owned(), "see the debug log".to_owned());
    };
    let sides = |pair: &ExpectedFound<String>| {
        if plugin_is_expected {
            (pair.expected.clone(), pair.found.clone())
        } else {
            (pair.found.clone(), pair.expected.clone())
        }
    };
    // Follow the fields from the root module to the type abi_stable names,
    // leaving out the ones abi_stable's own wrappers add (`0`, `field_0`,
    // `__returns`): the last field left and its owner say where it is.
    let mut owner = type_name(errors.interface);
    let mut last = None;
    let mut path: Vec<&str> = Vec::new();
    for step in &error.stack_trace {
        if let TLFieldOrFunction::Field(field) = &step.expected {
            let name = field.name();
            let named = !(name == "0" || name == "__returns" || name.starts_with("field_"));
            if named {
                path.push(name);
            }
            last = named.then_some((owner, name));
            owner = type_name(field.layout());
        }
    }
    let place = match (last, path.is_empty()) {
        (Some((owner, field)), _) => {
            format!("field `{field}` of `{owner}` (at {})", path.join("."))
        }
        (None, true) => format!("`{owner}`"),
        (None, false) => format!("`{owner}` (at {})", path.join(".")),
    };
    let text = |pair: ExpectedFound<String>| sides(&pair);
    let problem = match &error.errs[0] {
        AbiInstability::FieldCountMismatch(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|n| n.to_string()));
            format!("the plugin's has {plugin} fields, this host's {host}")
        }
        AbiInstability::UnexpectedField(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|f| f.name().to_string()));
            format!("the plugin's has field `{plugin}` where this host's has `{host}`")
        }
        AbiInstability::Name(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|t| t.to_string()));
            format!("the plugin's is `{plugin}` where this host's is `{host}`")
        }
        AbiInstability::Package(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|p| p.to_string()));
            format!("the plugin's comes from package `{plugin}`, this host's from `{host}`")
        }
        AbiInstability::PackageVersion(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|v| v.to_string()));
            format!("the plugin's comes from package version {plugin}, this host's from {host}")
        }
        AbiInstability::Size(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|n| n.to_string()));
            format!("the plugin's takes {plugin} bytes, this host's {host}")
        }
        AbiInstability::Alignment(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|n| n.to_string()));
            format!("the plugin's is aligned to {plugin} bytes, this host's to {host}")
        }
        AbiInstability::MismatchedPrefixSize(pair) => {
            let (plugin, host) = text(pair.as_ref().map(|n| n.to_string()));
            format!("the plugin's has {plugin} fields before its appended ones, this host's {host}")
        }
        other => format!("abi_stable finds {}", kind(other)),
    };
    (place, problem)
}

fn type_name(layout: &'static TypeLayout) -> &'static str {
    layout.name()
}

/// abi_stable's words for the kinds of difference `summary` does not spell out.
fn kind(instability: &AbiInstability) -> &'static str {
    match instability {
        AbiInstability::NonZeroness(_) => "a different non-zeroness",
        AbiInstability::GenericParamCount(_) => "a different number of generic parameters",
        AbiInstability::TLDataDiscriminant(_) => "a different kind of type",
        AbiInstability::MismatchedPrimitive(_) => "a different primitive type",
        AbiInstability::FieldLifetimeMismatch(_) => "a field referencing different lifetimes",
        AbiInstability::FnLifetimeMismatch(_) => {
            "function pointers referencing different lifetimes"
        }
        AbiInstability::FnQualifierMismatch(_) => {
            "function pointers with different qualifiers (`unsafe`, ...)"
        }
        AbiInstability::TooManyVariants(_) => "an enum with more variants",
        AbiInstability::MismatchedPrefixConditionality(_) => "prefix fields of other conditions",
        AbiInstability::MismatchedExhaustiveness(_) => "enums of another exhaustiveness",
        AbiInstability::UnexpectedVariant(_) => "an unexpected enum variant",
        AbiInstability::ReprAttr(_) => "another `repr` attribute",
        AbiInstability::EnumDiscriminant(_) => "different enum discriminants",
        _ => "a difference it reports in full at debug level",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::ABI_VERSION;

    #[test]
    fn refusals_name_both_versions() {
        let pre = LoadFailure::OtherMajor {
            declared: "0.1.0".into(),
            major: 0,
        };
        assert_eq!(
            pre.to_string(),
            format!(
                "built against plughost-api 0.1.0, from before the stable plugin ABI 1.0; this host speaks ABI {ABI_MAJOR}.{ABI_MINOR} and loads 1.x only: rebuild the plugin against plughost-api 1.x"
            )
        );
        let newer = LoadFailure::OtherMajor {
            declared: "2.0.0".into(),
            major: 2,
        };
        assert_eq!(
            newer.to_string(),
            format!(
                "built against plugin ABI 2.0.0, but this host speaks ABI {ABI_MAJOR}.{ABI_MINOR} and loads 1.x only: upgrade plughost, or rebuild the plugin against plughost-api 1.x"
            )
        );
    }

    #[test]
    fn the_host_layout_is_compatible_with_itself() {
        let layout = <PluginModuleRef as StableAbi>::LAYOUT;
        assert!(
            abi_stable::abi_stability::abi_checking::check_layout_compatibility(layout, layout)
                .is_ok()
        );
        assert_eq!(ABI_VERSION, format!("{}.0", AbiVersion::HOST));
    }
}

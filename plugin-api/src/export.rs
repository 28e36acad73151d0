//! The panic boundary and the glue `export_plugin!` expands to.
//!
//! Every call from the host into plugin code goes through [`guard`], which
//! catches panics inside the plugin and turns them into a `CallError`, so no
//! unwind ever crosses the ABI (abi_stable would abort the whole process).

use crate::abi::{
    CallError, EventRef, HeaderAbi, HealthReport, HostHandle, HttpRequestAbi, HttpResponseAbi,
    JobReportAbi, PluginHandle, PluginModule, PluginModuleRef, PluginVTable, PluginVTableRef,
    ReadinessReport,
};
use crate::{ContentType, Context, Event, HttpRequest, Plugin, Result};
use abi_stable::prefix_type::{PrefixTypeTrait, WithMetadata};
use abi_stable::staticref;
use abi_stable::std_types::{RErr, ROk, ROption, RResult, RStr, RString, RVec};
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static IN_BOUNDARY: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records panics raised inside a host call instead of printing them: the host
/// reports them once, in its own log, with the instance name. Panics on threads
/// the plugin started itself still reach the previous hook.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_BOUNDARY.with(Cell::get) {
                let message = info.payload_as_str().unwrap_or("non-string panic payload");
                let text = match info.location() {
                    Some(at) => format!("panicked at {}:{}: {message}", at.file(), at.line()),
                    None => format!("panicked: {message}"),
                };
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Run plugin code, turning an error or a panic into a `CallError`.
fn guard<T>(call: impl FnOnce() -> Result<T>) -> RResult<T, CallError> {
    let was_inside = IN_BOUNDARY.with(|inside| inside.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(call));
    IN_BOUNDARY.with(|inside| inside.set(was_inside));
    match outcome {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(error)) => RErr(CallError {
            panicked: false,
            message: RString::from(error.to_string()),
        }),
        Err(_) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| "panicked".to_owned());
            RErr(CallError {
                panicked: true,
                message: RString::from(message),
            })
        }
    }
}

/// One instance: the plugin and its context, behind a `PluginHandle`.
struct Adapter<P> {
    plugin: P,
    ctx: Context,
}

/// The plugin functions for plugin type `P`: one static table per type.
struct Functions<P>(P);

impl<P: Plugin> Functions<P> {
    /// # Safety
    /// `state` must come from `create::<P>` and not be dropped yet, and no
    /// other call may use it at the same time.
    unsafe fn adapter<'a>(state: *mut c_void) -> &'a mut Adapter<P> {
        // SAFETY: per the caller, a live `Box<Adapter<P>>` lent to this call alone.
        unsafe { &mut *state.cast::<Adapter<P>>() }
    }

    unsafe extern "C" fn drop(state: *mut c_void) {
        // SAFETY: the box `create` leaked, returned once, last.
        let adapter = unsafe { Box::from_raw(state.cast::<Adapter<P>>()) };
        let Adapter { plugin, ctx } = *adapter;
        // A panicking destructor must not unwind into the host either.
        let _ = guard(|| {
            drop(plugin);
            Ok(())
        });
        drop(ctx);
    }

    unsafe extern "C" fn on_event(
        state: *mut c_void,
        event: EventRef<'_>,
    ) -> RResult<(), CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| plugin.on_event(&Event::from_raw(event), ctx))
    }

    unsafe extern "C" fn on_event_typed(
        state: *mut c_void,
        event: EventRef<'_>,
        content_type: u8,
    ) -> RResult<(), CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        let content = ContentType::from_abi(content_type);
        guard(|| plugin.on_event(&Event::from_raw_typed(event, content), ctx))
    }

    unsafe extern "C" fn stop(state: *mut c_void) -> RResult<(), CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| plugin.stop(ctx))
    }

    unsafe extern "C" fn health(state: *mut c_void) -> RResult<ROption<HealthReport>, CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| {
            Ok(ROption::from(plugin.health(ctx).map(|h| HealthReport {
                status: h.status.into(),
                message: h.message.into(),
            })))
        })
    }

    unsafe extern "C" fn ready(state: *mut c_void) -> RResult<ROption<ReadinessReport>, CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| {
            Ok(ROption::from(plugin.ready(ctx).map(|r| ReadinessReport {
                ready: r.ready,
                message: r.message.into(),
            })))
        })
    }

    unsafe extern "C" fn jobs(
        state: *mut c_void,
    ) -> RResult<ROption<RVec<JobReportAbi>>, CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| {
            Ok(ROption::from(plugin.jobs(ctx).map(|jobs| {
                jobs.into_iter().map(JobReportAbi::from).collect()
            })))
        })
    }

    unsafe extern "C" fn tick(state: *mut c_void) -> RResult<(), CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        guard(|| plugin.tick(ctx))
    }

    unsafe extern "C" fn routes(state: *mut c_void) -> RResult<RVec<RString>, CallError> {
        // SAFETY: a live `Box<Adapter<P>>` from `create`, only read here.
        let Adapter { plugin, .. } = unsafe { &*state.cast::<Adapter<P>>() };
        guard(|| Ok(plugin.routes().into_iter().map(RString::from).collect()))
    }

    unsafe extern "C" fn http(
        state: *mut c_void,
        request: HttpRequestAbi,
    ) -> RResult<ROption<HttpResponseAbi>, CallError> {
        // SAFETY: per the vtable's contract.
        let Adapter { plugin, ctx } = unsafe { Self::adapter(state) };
        let request = HttpRequest {
            method: request.method.into_string(),
            path: request.path.into_string(),
            query: request.query.into_string(),
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name.into_string(), h.value.into_string()))
                .collect(),
            body: request.body.into_vec(),
        };
        guard(|| {
            Ok(ROption::from(plugin.http(&request, ctx).map(|response| {
                HttpResponseAbi {
                    status: response.status,
                    headers: response
                        .headers
                        .into_iter()
                        .map(|(name, value)| HeaderAbi {
                            name: name.into(),
                            value: value.into(),
                        })
                        .collect(),
                    body: response.body.into(),
                }
            })))
        })
    }

    staticref! {
        const TABLE: WithMetadata<PluginVTable> = WithMetadata::new(PluginVTable {
            drop: Self::drop,
            on_event: Self::on_event,
            stop: Self::stop,
            health: Self::health,
            ready: Self::ready,
            jobs: Self::jobs,
            tick: Self::tick,
            routes: Self::routes,
            http: Self::http,
            on_event_typed: Self::on_event_typed,
        })
    }

    const VTABLE: PluginVTableRef = PluginVTableRef(Self::TABLE.as_prefix());
}

extern "C" fn create<P: Plugin>(
    config_json: RStr<'_>,
    host: HostHandle,
) -> RResult<PluginHandle, CallError> {
    install_panic_hook();
    let ctx = Context::from_host(host);
    let plugin = guard(|| {
        let config: P::Config = serde_json::from_str(config_json.as_str())
            .map_err(|e| format!("invalid config: {e}"))?;
        P::init(config, &ctx)
    });
    plugin.map(|plugin| PluginHandle {
        state: Box::into_raw(Box::new(Adapter { plugin, ctx })).cast(),
        vtable: Functions::<P>::VTABLE,
    })
}

extern "C" fn validate_config<P: Plugin>(config_json: RStr<'_>) -> RResult<(), CallError> {
    install_panic_hook();
    guard(|| {
        serde_json::from_str::<P::Config>(config_json.as_str())
            .map(drop)
            .map_err(|e| format!("invalid config: {e}").into())
    })
}

/// The symbol [`export_plugin!`](crate::export_plugin) also exports when the plugin is built with
/// `panic = "abort"`. Such a plugin cannot have its panics caught: its first
/// panic ends the process it runs in, so the host refuses to run it on one of
/// its own threads. The host reads this from the library's dynamic symbols
/// before loading it; the root module and every ABI type stay as they are.
pub const PANIC_ABORT_SYMBOL: &str = "plughost_panic_abort";

/// The root module for plugin type `P`. Called once per library by abi_stable.
pub fn root_module<P: Plugin>(name: &'static str, version: &'static str) -> PluginModuleRef {
    PluginModule {
        name: RStr::from_str(name),
        version: RStr::from_str(version),
        create: create::<P>,
        validate_config: validate_config::<P>,
    }
    .leak_into_prefix()
}

/// Export `$plugin` (a type implementing [`Plugin`](crate::Plugin)) as this
/// library's plughost plugin. Use it once, in a `cdylib` crate.
///
/// ```
/// use plughost_api::{Context, Event, NoConfig, Plugin, Result, export_plugin};
///
/// struct Hello;
///
/// impl Plugin for Hello {
///     type Config = NoConfig;
///     fn init(_: NoConfig, _: &Context) -> Result<Self> {
///         Ok(Hello)
///     }
///     fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
///         ctx.info(format!("hello from {}", event.topic()));
///         Ok(())
///     }
/// }
///
/// export_plugin!(Hello);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // The symbol abi_stable's loader looks up; `export_root_module` would
        // emit the same, but it needs `abi_stable` as a direct dependency.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn plughost_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(|| {
                    $crate::__private::root_module::<$plugin>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                })
            }
            // SAFETY: the constructor returns the root module of type
            // `PluginModuleRef`, the type named here, as abi_stable requires.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModuleRef>(
                    plughost_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };

        // Evaluated in the plugin's crate: present only in a library built
        // with `panic = "abort"` (see `PANIC_ABORT_SYMBOL`).
        #[cfg(panic = "abort")]
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static plughost_panic_abort: u8 = 1;
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn the_panic_abort_mark_is_the_symbol_the_macro_defines() {
        let expansion = include_str!("export.rs");
        let defined = format!("pub static {}: u8", super::PANIC_ABORT_SYMBOL);
        assert!(expansion.contains(&defined), "{defined}");
    }
}

//! Frozen-ABI fixture: the smallest host of the plughost-api beside it. It
//! loads one plugin library as plughost does (`plughost_api::loading`, the
//! version rule and abi_stable's layout check), creates an instance, sends it
//! events, asks its health, stops and drops it, printing one line per step on
//! standard output. tests/compat.rs runs it on plugins built against other
//! ABIs: it stands for a host released at this ABI.
//!
//! Usage: `compat-loader-abi-1-0 LIBRARY`. Exit 0 when the library loaded
//! (whatever its events did), 1 when it was refused (`refused: <reason>`).

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::{RSlice, RStr};
use plughost_api::LogLevel;
use plughost_api::abi::{EventRef, HostFunctions, HostHandle};
use plughost_api::loading::{Support, load_root_module};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The host side: prints what the plugin asks of it.
struct Printer;

impl HostFunctions for Printer {
    fn instance_name(&self) -> &str {
        "compat"
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        println!("published {topic} {}", String::from_utf8_lossy(payload));
        Ok(())
    }

    fn log(&self, level: LogLevel, message: &str) {
        println!("log {level:?}: {message}");
    }

    fn call(&self, request: &str) -> Result<String, String> {
        Err(format!("this loader runs no commands ({request})"))
    }

    fn cast(&self, _request: &str) {}
}

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: compat-loader LIBRARY");
        return ExitCode::from(2);
    };
    let header = match lib_header_from_path(Path::new(&path)) {
        Ok(header) => header,
        Err(error) => {
            println!("refused: {error}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = match load_root_module(header) {
        Ok(loaded) => loaded,
        Err(failure) => {
            println!("refused: {failure}");
            return ExitCode::FAILURE;
        }
    };
    let module = loaded.module;
    let support = match loaded.support() {
        Support::Full => "fully supported",
        Support::Partly => "partly supported",
    };
    println!(
        "loaded {} {}, built against ABI {}: {support}",
        module.name(),
        module.version(),
        loaded.abi,
    );
    #[cfg(feature = "appended")]
    {
        match module.appended_note() {
            Some(note) => println!("appended root module field: {note}"),
            None => println!("appended root module field: absent"),
        }
    }
    let host = HostHandle::new(Arc::new(Printer));
    let mut plugin = match (module.create())(RStr::from_str("{}"), host).into_result() {
        Ok(plugin) => plugin,
        Err(error) => {
            println!("create failed: {}", error.message);
            return ExitCode::SUCCESS;
        }
    };
    #[cfg(feature = "appended")]
    {
        match plugin.vtable.appended_answer() {
            // SAFETY: the instance's own state, with its own vtable's function.
            Some(answer) => println!("appended plugin function: {}", unsafe {
                answer(plugin.state)
            }),
            None => println!("appended plugin function: absent"),
        }
    }
    let topics = [
        "compat.ping",
        "compat.fail",
        "compat.panic",
        "compat.ask",
        "compat.ping",
    ];
    for (id, topic) in (1..).zip(topics) {
        let payload = id.to_string();
        let event = EventRef {
            id,
            timestamp_ms: 0,
            topic: RStr::from_str(topic),
            payload: RSlice::from_slice(payload.as_bytes()),
            source: RStr::from_str("host"),
        };
        match plugin.on_event(event).into_result() {
            Ok(()) => println!("event {topic}: ok"),
            Err(error) if error.panicked => println!("event {topic}: panicked: {}", error.message),
            Err(error) => println!("event {topic}: failed: {}", error.message),
        }
    }
    match plugin.health().into_result() {
        Ok(report) => match report.into_option() {
            Some(report) => println!("health {}: {}", report.status, report.message),
            None => println!("health: not reported"),
        },
        Err(error) => println!("health failed: {}", error.message),
    }
    match plugin.stop().into_result() {
        Ok(()) => println!("stopped"),
        Err(error) => println!("stop failed: {}", error.message),
    }
    drop(plugin);
    println!("dropped");
    ExitCode::SUCCESS
}

//! `plughost check` and `plughost discover`: what a config's libraries are,
//! and what libraries a directory holds, each inspected in a child process.

use anyhow::Context as _;
use plughost::{Config, Escaped};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `--inspect-timeout`: a duration such as "10s", more than 0, at most 1h.
pub(crate) fn inspect_timeout(text: &str) -> Result<Duration, String> {
    let limit = plughost_api::HumanDuration::parse(text)?;
    if limit.is_zero() || limit > Duration::from_secs(3600) {
        return Err(format!("`{text}` is out of range: more than 0, at most 1h"));
    }
    Ok(limit)
}

pub(crate) fn check(config_path: &Path, time_limit: Duration) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let base = config.base_dir();
    let mut problems = 0;
    if config.plugins.is_empty() {
        out!("no [[plugin]] instances configured: nothing to check");
    }
    for plugin in &config.plugins {
        if !plugin.enabled {
            out!("{}: disabled (not checked)", Escaped(&plugin.name));
            continue;
        }
        let inspected = plughost::resolve(&plugin.library, &config.host.plugin_dirs, &base)
            .and_then(|path| {
                plughost::check_config(
                    &path,
                    &plughost::Trust::of(plugin),
                    &plugin.config,
                    time_limit,
                )
            });
        let name = Escaped(&plugin.name);
        match inspected {
            Ok((info, plughost::ConfigCheck::Invalid(reason))) => {
                problems += 1;
                out!(
                    "{name}: error: {}: {} (in [plugin.config])",
                    Escaped(&info.path.display().to_string()),
                    Escaped(&reason)
                );
            }
            Ok((info, checked)) => out!(
                "{name}: ok: {} {} ({}, {}) from {}{}{}",
                Escaped(&info.name),
                Escaped(&info.version),
                info.language,
                Escaped(&info.abi),
                Escaped(&info.path.display().to_string()),
                match &info.support {
                    plughost::Support::Partly(what) => format!(" (partly supported: {what})"),
                    _ => String::new(),
                },
                match checked {
                    plughost::ConfigCheck::Valid => "",
                    _ => " (config not checked: this plugin reads it only when it starts)",
                }
            ),
            Err(error) => {
                problems += 1;
                out!("{name}: error: {}", Escaped(&error.to_string()));
            }
        }
    }
    if problems > 0 {
        eprintln!(
            "error: {problems} of {} plugin(s) cannot be loaded or refuse their config",
            config.plugins.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn discover(dirs: &[PathBuf], time_limit: Duration) -> anyhow::Result<ExitCode> {
    let mut unusable = 0;
    for dir in dirs {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.to_string_lossy()
                    .ends_with(std::env::consts::DLL_SUFFIX)
            })
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let shown = Escaped(&shown);
            match plughost::inspect(&path, &plughost::Trust::default(), time_limit) {
                Ok(info) => out!(
                    "{shown}: {} {} ({}, {}): {}{}",
                    Escaped(&info.name),
                    Escaped(&info.version),
                    info.language,
                    Escaped(&info.abi),
                    match &info.support {
                        plughost::Support::Partly(what) => format!("partly supported: {what}"),
                        _ => "fully supported".to_owned(),
                    },
                    if info.panic_abort {
                        "; built with panic = \"abort\", so it runs only with isolation = \"process\""
                    } else {
                        ""
                    }
                ),
                Err(error) => {
                    unusable += 1;
                    let reason = error
                        .reason()
                        .map_or_else(|| error.to_string(), str::to_owned);
                    out!("{shown}: not usable: {}", Escaped(&reason));
                }
            }
        }
    }
    Ok(if unusable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

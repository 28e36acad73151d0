//! `plughost ctl`: one command to a running host's control socket, its
//! answer printed plain or as JSON.

use super::run::print_summary;
use anyhow::Context as _;
use plughost::control::{Command as CtlCommand, Instance};
use plughost::{Escaped, InstanceReport};
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn ctl(socket: &Path, json: bool, mut command: CtlCommand) -> anyhow::Result<ExitCode> {
    // The flags travel as the socket's `as`.
    if let CtlCommand::Publish(args) = &mut command {
        args.read_as = args.read_as();
    }
    let request = serde_json::to_value(&command).context("cannot encode the command")?;
    let answer = plughost::control::request(socket, &request)?;
    if json {
        out!("{answer}");
    }
    if answer["ok"] != true {
        let error = answer["error"]
            .as_str()
            .unwrap_or("the host refused the command");
        if !json {
            eprintln!("error: {error}");
        }
        return Ok(ExitCode::FAILURE);
    }
    if json {
        // The exit code says the same whatever the format: `ready` fails
        // when the host is not ready, as a probe expects.
        let not_ready =
            matches!(command, CtlCommand::Ready(_)) && answer["result"]["ready"] != true;
        return Ok(if not_ready {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let result = &answer["result"];
    match command {
        CtlCommand::List(_) => {
            let reports: Vec<InstanceReport> =
                serde_json::from_value(result.clone()).unwrap_or_default();
            print_summary(&reports);
        }
        CtlCommand::Status(_) => {
            for plugin in result["plugins"].as_array().into_iter().flatten() {
                out!("{}", Escaped(plugin["name"].as_str().unwrap_or("?")));
                for key in [
                    "state",
                    "library",
                    "language",
                    "isolation",
                    "restarts",
                    "received",
                    "processed",
                    "dropped",
                    "failed",
                    "queue_depth",
                    "queue_capacity",
                    "last_error",
                ] {
                    if !plugin[key].is_null() {
                        out!("  {key:<15} {}", plain(&plugin[key]));
                    }
                }
                if let Some(health) = plugin["health"].as_object() {
                    out!(
                        "  {:<15} {} {}",
                        "health",
                        plain(&health["status"]),
                        plain(&health["message"])
                    );
                }
            }
            out!("reloads: {}", result["reloads"]);
        }
        CtlCommand::Ready(_) => {
            out!(
                "{}",
                if result["ready"] == true {
                    "ready"
                } else {
                    "not ready"
                }
            );
            for plugin in result["plugins"].as_array().into_iter().flatten() {
                let ready = if plugin["ready"] == true {
                    "ready"
                } else {
                    "not ready"
                };
                out!(
                    "  {}: {ready} {}",
                    plain(&plugin["name"]),
                    plain(&plugin["message"])
                );
            }
            if result["ready"] != true {
                return Ok(ExitCode::FAILURE);
            }
        }
        CtlCommand::Publish(_) => out!(
            "published event {} on {} ({})",
            result["id"],
            plain(&result["topic"]),
            plain(&result["content_type"])
        ),
        CtlCommand::Start(Instance { name }) => out!("started {name}"),
        CtlCommand::Stop(Instance { name }) => out!("stopped {name}"),
        CtlCommand::Restart(Instance { name }) => out!("restarted {name}"),
        CtlCommand::Reload(_) => {
            for key in [
                "added",
                "removed",
                "restarted",
                "unchanged",
                "restart_needed",
            ] {
                let names: Vec<String> = result[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(plain)
                    .collect();
                // Said only when there is something to say: keys to restart for.
                if key == "restart_needed" && names.is_empty() {
                    continue;
                }
                out!(
                    "{key}: {}",
                    if names.is_empty() {
                        "-".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as text, strings without quotes and with their control
/// characters escaped (names and messages come from plugins).
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => Escaped(text).to_string(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

//! How `plughost check` and `plughost discover` look at a library without
//! trusting it. Everything that can be known from the file alone (ELF
//! headers, exported symbols, permissions, the pinned hash) is checked in
//! this process, so no code of a file refused there ever runs. A library
//! that passes is loaded in a child process of its own (`plughost
//! __inspect`), under a time limit: a constructor or entry point that
//! crashes, exits or hangs ends only that child, and is reported as such.

use super::error::Kind;
use super::{Language, LoadError, Support, Trust};
use std::io::{BufRead, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What `plughost check` and `plughost discover` say about a library.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryInfo {
    /// The file.
    pub path: std::path::PathBuf,
    /// Plugin name, as the library declares it.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Language.
    pub language: Language,
    /// The ABI it was built against.
    pub abi: String,
    /// How much of it this host can use.
    pub support: Support,
    /// Built with `panic = "abort"`: it runs only with `isolation = "process"`.
    pub panic_abort: bool,
}

/// How long `plughost check` and `plughost discover` give one library to
/// load in its inspection process, unless told otherwise.
pub const INSPECT_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Check that the library at `path` is a plugin this host can run, without
/// running any of it in this process: what the file alone tells is checked
/// here (a file that is not a plugin never runs), then the library is loaded
/// in a child process that may take at most `time_limit`. A library whose
/// initialisers or entry point crash, exit or hang is refused, saying so.
pub fn inspect(
    path: &Path,
    trust: &Trust,
    time_limit: std::time::Duration,
) -> Result<LibraryInfo, LoadError> {
    inspect_in_child(path, trust, None, time_limit).map(|(info, _)| info)
}

/// What a library says about an instance's `[plugin.config]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigCheck {
    /// The plugin accepts it.
    Valid,
    /// The plugin refuses it, with its reason.
    Invalid(String),
    /// The library cannot check a config without running the plugin (C
    /// plugins, and Rust plugins built before plugins could).
    Unchecked,
}

/// [`inspect`] the library at `path`, and have the plugin check `config`
/// (an instance's `[plugin.config]` as JSON) the way it would read it at
/// start, without creating an instance; in the same child process.
pub fn check_config(
    path: &Path,
    trust: &Trust,
    config: &serde_json::Value,
    time_limit: std::time::Duration,
) -> Result<(LibraryInfo, ConfigCheck), LoadError> {
    let (info, checked) = inspect_in_child(path, trust, Some(config), time_limit)?;
    Ok((info, checked.unwrap_or(ConfigCheck::Unchecked)))
}

/// What the inspecting child answers, as one JSON line.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Usable {
        name: String,
        version: String,
        language: Language,
        abi: String,
        support: Support,
        /// What the plugin said of the config, when asked.
        config: Option<Verdict>,
    },
    /// Why the library cannot be used.
    Unusable { kind: Kind, reason: String },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Valid,
    Invalid(String),
    Unchecked,
}

/// The most a child may answer: a name, a version and a reason or two.
const ANSWER_MAX_BYTES: u64 = 1024 * 1024;

/// Inspect the library at `path` (and have it check `config`, when given)
/// in a child process that may take at most `time_limit`.
fn inspect_in_child(
    path: &Path,
    trust: &Trust,
    config: Option<&serde_json::Value>,
    time_limit: Duration,
) -> Result<(LibraryInfo, Option<ConfigCheck>), LoadError> {
    let panic_abort = super::vet(path, trust)?.panic_abort();
    let unusable = |reason: String| LoadError::new(Kind::LoadFailed, path, reason);
    let exe = super::process::child_executable()
        .map_err(|e| unusable(format!("cannot inspect it: {e}")))?;
    let mut command = Command::new(exe);
    command
        .arg("__inspect")
        .arg(path)
        .arg(std::process::id().to_string())
        .args(trust.sha256.iter().flat_map(|pin| ["--sha256", pin]))
        .args(
            trust
                .allow_insecure_permissions
                .then_some("--allow-insecure-permissions"),
        )
        .args(trust.thread_isolation.then_some("--thread-isolation"))
        .args(config.is_some().then_some("--check-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Whatever the library writes is not ours to show.
        .stderr(Stdio::null())
        // Its own group: a hang is ended with whatever it started.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| unusable(format!("cannot inspect it: cannot start a process: {e}")))?;
    let pid = child.id() as i32;
    let (tx, rx) = crossbeam_channel::bounded::<Event>(3);
    if let Some(mut stdin) = child.stdin.take() {
        let config = config.map(|c| c.to_string()).unwrap_or_default();
        std::thread::spawn(move || {
            let _ = stdin.write_all(config.as_bytes());
        });
    }
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let read =
                std::io::BufReader::new(stdout.take(ANSWER_MAX_BYTES)).read_until(b'\n', &mut line);
            let _ = tx.send(Event::Answer(
                read.ok()
                    .and_then(|_| serde_json::from_slice::<Answer>(&line).ok()),
            ));
        });
    }
    std::thread::spawn(move || {
        let _ = tx.send(Event::Exited(child.wait().ok()));
    });

    let deadline = Instant::now() + time_limit;
    let (mut answer, mut status) = (None, None);
    while answer.is_none() || status.is_none() {
        match rx.recv_deadline(deadline) {
            Ok(Event::Answer(got)) => answer = Some(got),
            Ok(Event::Exited(got)) => status = Some(got),
            Err(_) if status.is_none() => {
                // The process group of our child, which is not reaped yet
                // (no exit status came).
                super::process::kill_group(pid);
                return Err(unusable(format!(
                    "did not finish loading within {time_limit:?} (a constructor or its entry point does not return), so its inspection was stopped; it would hang the host"
                )));
            }
            // Exited, but something it started still holds the answer's pipe.
            Err(_) => break,
        }
    }
    let status = status.flatten();
    match (answer.flatten(), status) {
        (Some(answer), Some(status)) if status.success() => {
            answer_to_result(path, answer, panic_abort)
        }
        (_, status) => Err(unusable(ended(status))),
    }
}

enum Event {
    Answer(Option<Answer>),
    Exited(Option<ExitStatus>),
}

/// Why a child that gave no answer (or ended badly) ended.
fn ended(status: Option<ExitStatus>) -> String {
    let how = match status.map(|s| (s.code(), s.signal())) {
        Some((_, Some(signal))) => format!(
            "crashed while it was being loaded (killed by {})",
            super::signal::name(signal)
        ),
        Some((Some(code), _)) => format!(
            "ended the process that loaded it (exit status {code}) before it could be inspected"
        ),
        _ => "its inspection ended without an answer".to_owned(),
    };
    format!("{how}: a constructor or its entry point would do the same to the host")
}

fn answer_to_result(
    path: &Path,
    answer: Answer,
    panic_abort: bool,
) -> Result<(LibraryInfo, Option<ConfigCheck>), LoadError> {
    match answer {
        Answer::Unusable { kind, reason } => Err(LoadError::new(kind, path, reason)),
        Answer::Usable {
            name,
            version,
            language,
            abi,
            support,
            config,
        } => Ok((
            LibraryInfo {
                path: path.to_owned(),
                name,
                version,
                language,
                abi,
                support,
                panic_abort,
            },
            config.map(|verdict| match verdict {
                Verdict::Valid => ConfigCheck::Valid,
                Verdict::Invalid(reason) => ConfigCheck::Invalid(reason),
                Verdict::Unchecked => ConfigCheck::Unchecked,
            }),
        )),
    }
}

/// The `plughost __inspect` child: load the library, answer one JSON line on
/// the descriptor that was standard output, and end without running any
/// library's destructors. With `check_config`, standard input holds the
/// config (JSON) to have the plugin check.
pub fn child_main(path: &Path, parent: u32, trust: &Trust, check_config: bool) -> i32 {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if std::os::unix::process::parent_id() != parent {
        return 1; // the inspecting command is gone
    }
    let Some(mut out) = take_stdout() else {
        return 1;
    };
    let mut config = String::new();
    if check_config && std::io::stdin().read_to_string(&mut config).is_err() {
        return 1;
    }
    let answer = match super::open(path, trust) {
        Err(error) => refusal(&error),
        Ok(library) => Answer::Usable {
            name: library.name.clone(),
            version: library.version.clone(),
            language: library.language,
            abi: library.abi.clone(),
            support: library.support.clone(),
            config: check_config.then(|| match library.validate_config(&config) {
                Some(Ok(())) => Verdict::Valid,
                Some(Err(reason)) => Verdict::Invalid(reason),
                None => Verdict::Unchecked,
            }),
        },
    };
    let mut line = serde_json::to_vec(&answer).unwrap_or_default();
    line.push(b'\n');
    let written = out.write_all(&line).and_then(|_| out.flush());
    // SAFETY: _exit ends the process at once: no destructor of the library
    // (nor atexit handler) runs after the answer, since the host never runs
    // them either while it lives.
    unsafe { libc::_exit(if written.is_ok() { 0 } else { 1 }) }
}

/// The answer that carries `error` to the host: its kind and its reason,
/// which the host makes into the same [`LoadError`] about its own path.
fn refusal(error: &LoadError) -> Answer {
    match error.kind() {
        Some((kind, reason)) => Answer::Unusable {
            kind,
            reason: reason.to_owned(),
        },
        None => Answer::Unusable {
            kind: Kind::LoadFailed,
            reason: error.to_string(),
        },
    }
}

/// The answer's channel: standard output, moved to a descriptor of its own,
/// with standard output itself sent to /dev/null, so that nothing a library
/// prints can pass for an answer.
fn take_stdout() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .ok()?;
    let out = std::fs::File::from(rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3).ok()?);
    // SAFETY: dup2 onto descriptor 1, which std's stdout writes to unowned.
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host tells the kinds of refusal apart whether the library was
    /// opened in its own process or inspected in a child: the kind travels
    /// with the reason.
    #[test]
    fn a_refusal_keeps_its_kind_and_its_line_through_the_inspecting_child() {
        let path = Path::new("/plugins/libx.so");
        for kind in [
            Kind::Io,
            Kind::InsecurePermissions,
            Kind::HashMismatch,
            Kind::NotAPlugin,
            Kind::AbiMismatch,
            Kind::Incompatible,
            Kind::LoadFailed,
        ] {
            let error = LoadError::new(kind, path, "what is wrong");
            let line = serde_json::to_vec(&refusal(&error)).unwrap();
            let answer: Answer = serde_json::from_slice(&line).unwrap();
            let Err(back) = answer_to_result(path, answer, false) else {
                panic!("{kind:?} came back usable");
            };
            assert_eq!(back.kind(), Some((kind, "what is wrong")));
            assert_eq!(back.to_string(), "/plugins/libx.so: what is wrong");
        }
    }
}

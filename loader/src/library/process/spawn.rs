//! Starting a plugin's own process: a `plughost __child` with the instance's
//! socket on descriptor 3, in a process group of its own, and a monitor
//! thread that reaps it and says how it ended. Children die with the host:
//! they ask the kernel for SIGKILL when their parent exits, and an `atexit`
//! handler kills what they started.

use super::frame::{Frame, Limits};
use super::instance::{ChildPid, ProcessInstance, Reaped, Reply, death};
use super::kill::kill_group;
use crate::instance::{CallFailure, Instance};
use crate::library::{Library, PluginHost, Trust};
use rustix::io::Errno;
use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
use std::net::Shutdown;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The descriptor the child finds its socket on.
pub(super) const CHILD_FD: i32 = 3;

/// The `plughost` executable to run children with: this one, or a
/// `plughost` beside it when the host is embedded in another program
/// (`PLUGHOST_CHILD_EXE` overrides both).
pub(crate) fn child_executable() -> Result<PathBuf, NoExecutable> {
    if let Some(path) = std::env::var_os("PLUGHOST_CHILD_EXE") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().map_err(NoExecutable::Unknown)?;
    if exe.file_stem().is_some_and(|stem| stem == "plughost") {
        return Ok(exe);
    }
    let sibling = exe.with_file_name("plughost");
    match sibling.exists() {
        true => Ok(sibling),
        false => Err(NoExecutable::NotBeside(exe)),
    }
}

/// Why no `plughost` executable can run a child.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoExecutable {
    /// This process's own executable cannot be found.
    #[error("cannot find the plughost executable: {0}")]
    Unknown(std::io::Error),
    /// The host is embedded, and no `plughost` lies beside its executable.
    #[error("no `plughost` executable beside {} (set PLUGHOST_CHILD_EXE)", .0.display())]
    NotBeside(PathBuf),
}

/// The process groups of the children alive, killed when the host exits
/// (see [`kill_children_at_exit`]).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kill the process group of every child still alive: registered with
/// `atexit`, so a host that exits without stopping a child (a stuck one it
/// gave up on at shutdown) leaves nothing of it behind. Children themselves
/// die with the host anyway (PDEATHSIG); this is for their descendants.
extern "C" fn kill_children_at_exit() {
    // A lock held by a thread frozen at exit is not waited for.
    if let Ok(groups) = GROUPS.try_lock() {
        for &group in groups.iter() {
            // A live child's pid, not yet reaped (its monitor removes it
            // first), so not reused.
            kill_group(group);
        }
    }
}

fn register_group(pid: i32) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a function that takes no arguments and never
        // unwinds (it panics nowhere); atexit only records it.
        unsafe { libc::atexit(kill_children_at_exit) };
    });
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister_group(pid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&group| group != pid);
}

/// Wait until child `pid` has ended, without reaping it: while it is a
/// zombie its pid, and so its process group's id, cannot be reused.
fn wait_ended(pid: i32) {
    let Some(pid) = Pid::from_raw(pid) else {
        return;
    };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
    while let Err(Errno::INTR) = waitid(WaitId::Pid(pid), options) {}
}

/// SIGINT, SIGTERM and SIGHUP are meant for the host, not for its children:
/// a service manager signals every process of a unit (systemd's
/// `KillMode=control-group`), and a child that died of it would lose the
/// events the host is still draining into it. (Ctrl-C in a terminal reaches
/// only the host's process group, not the children's own.) A child ends when
/// the host tells it to, when its socket closes, or with the host
/// (PDEATHSIG). SIGTTOU and SIGTTIN: a child is in a background process
/// group of the terminal, and writing to it must not stop the child.
pub(super) fn ignore_stop_signals() {
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGTTOU,
        libc::SIGTTIN,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no
        // handler and touches no memory; it is async-signal-safe.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
}

/// Start `library` in a child process and create the instance there.
/// `host` is where what the child sends goes (its publishes, logs, calls and
/// casts); `child` holds the child's pid while it runs; `died` is called
/// once, by the monitor, with the pid and how the child ended, whenever it
/// ends.
pub(crate) fn spawn(
    library: &Library,
    trust: &Trust,
    config_json: &str,
    host: Arc<dyn PluginHost>,
    child: Arc<ChildPid>,
    died: Box<dyn FnOnce(i32, CallFailure) + Send>,
    limits: Limits,
) -> Result<Box<dyn Instance>, CallFailure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CallFailure::Error(format!("cannot start its process: {what}: {e}"))
    };
    let name = host.instance_name().to_owned();
    let exe = child_executable().map_err(|e| CallFailure::Error(e.to_string()))?;
    let (host_end, child_end) = UnixStream::pair().map_err(|e| fail("socketpair", &e))?;
    let child_fd = child_end.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .arg("__child")
        .arg(&library.path)
        .arg(&name)
        .arg(std::process::id().to_string())
        .args(trust.sha256.iter().flat_map(|pin| ["--sha256", pin]))
        .args(["--host-sha256", &library.sha256])
        .args(["--max-event-bytes", &limits.max_event_bytes.to_string()])
        .args(
            trust
                .allow_insecure_permissions
                .then_some("--allow-insecure-permissions"),
        )
        .stdin(Stdio::null())
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_default())
        // Its own process group: whatever the plugin forks can be killed
        // with it (see the monitor below).
        .process_group(0);
    // SAFETY: runs in the forked child before exec; dup2 and signal are
    // async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            // Ignored signals stay ignored across exec: no window before
            // `child_main` in which a terminal's Ctrl-C could kill the child.
            ignore_stop_signals();
            match libc::dup2(child_fd, CHILD_FD) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let mut process = command.spawn().map_err(|e| fail("spawn", &e))?;
    drop(child_end);
    let pid = process.id() as i32;
    child.set(pid);
    register_group(pid);
    // The monitor's handle on the socket: shutting it down ends a read or a
    // write of the instance's thread at once.
    let socket = host_end.try_clone();

    let reaped = Arc::new(Reaped::default());
    {
        let (reaped, child) = (reaped.clone(), child.clone());
        std::thread::Builder::new()
            .name(format!("plughost:{name}:wait"))
            .spawn(move || {
                wait_ended(pid);
                // The child is a zombie: its group id is still its own.
                kill_group(pid);
                unregister_group(pid);
                child.clear(pid);
                let status = process.wait().ok();
                *reaped.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
                reaped.done.notify_all();
                // What the child wrote before it ended can still be read;
                // after that a read ends at once, whoever else holds the
                // child's end (a descendant that escaped the group kill).
                if let Ok(socket) = &socket {
                    let _ = socket.shutdown(Shutdown::Both);
                }
                died(pid, death(status));
            })
            .map_err(|e| {
                // No one would reap it or its group: end both now.
                kill_group(pid);
                unregister_group(pid);
                fail("monitor thread", &e)
            })?;
    }
    let reader = host_end.try_clone().map_err(|e| fail("socket", &e))?;
    let (to, incoming) = crossbeam_channel::unbounded();
    if let Err(e) = super::pump::start(&name, reader, host.clone(), limits, to) {
        // The monitor reaps it and ends its group.
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(fail("pump thread", &e));
    }
    let mut instance = ProcessInstance {
        pid,
        writer: host_end,
        incoming,
        patience: None,
        host,
        child,
        routes: Vec::new(),
        reaped,
        out: Vec::with_capacity(64 * 1024),
        limits,
    };
    instance.send(&Frame::Init { config_json })?;
    match instance.reply()? {
        Reply::Done(None) => Ok(Box::new(instance)),
        Reply::Done(Some(error)) => Err(CallFailure::Error(error)),
        _ => Err(instance.protocol_error("expected the init answer")),
    }
}

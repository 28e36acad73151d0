//! The signals `plughost run` takes (SIGINT, SIGTERM, SIGHUP): blocked in
//! every thread and taken by one, so no plugin can steal them.

use super::run::End;
use plughost::{Escaped, Host};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// SIGINT, SIGTERM and SIGHUP are blocked in every thread of the host (the
/// mask is set before any other thread starts, and threads inherit it) and
/// taken by one thread of their own with `sigwait`. So a thread-mode plugin
/// that installs a handler of its own for them (or ignores them) changes
/// nothing: a blocked signal is never delivered to a handler, and `sigwait`
/// takes it whatever its disposition.
///
/// A child inherits the mask of the thread that starts it. A child made by
/// `fork` (process-isolated plugins, `std::process::Command` with a
/// `pre_exec`, a C plugin's `fork`) gets the signals unblocked again by a
/// `pthread_atfork` handler; one made by `posix_spawn` (a plain
/// `Command::spawn`, `system`, `popen`) cannot be reached that way, and the
/// plugin guides say how to clear its mask.
pub(crate) struct HostSignals {
    set: libc::sigset_t,
}

impl HostSignals {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    /// The host's signals as a set.
    fn set() -> libc::sigset_t {
        // SAFETY: sigemptyset and sigaddset initialise and fill a set we own;
        // both are async-signal-safe (this also runs in a forked child).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in Self::SIGNALS {
                libc::sigaddset(&mut set, signal);
            }
            set
        }
    }

    /// Block the host's signals in the calling thread (and so in every
    /// thread it starts from now on), and unblock them in forked children.
    pub(crate) fn block() -> HostSignals {
        extern "C" fn unblock_in_child() {
            let set = HostSignals::set();
            // SAFETY: runs in a freshly forked child, on its only thread;
            // pthread_sigmask is async-signal-safe and changes only its mask.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
        let set = Self::set();
        // SAFETY: pthread_sigmask changes only the calling thread's mask;
        // pthread_atfork records a plain function to run in forked children.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::pthread_atfork(None, None, Some(unblock_in_child));
        }
        HostSignals { set }
    }

    /// Take the signals on a thread of their own, for the life of the
    /// process. The first SIGINT/SIGTERM cancels a start under way (`cancel`)
    /// and ends the run (graceful shutdown); a second one exits at once.
    /// SIGHUP reloads the config once the host runs.
    pub(crate) fn take(
        self,
        end: crossbeam_channel::Sender<End>,
        host: Arc<OnceLock<Host>>,
        cancel: Arc<AtomicBool>,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("plughost:signals".into())
            .spawn(move || {
                let mut stopping = false;
                loop {
                    let mut signal: libc::c_int = 0;
                    // SAFETY: sigwait reads the set we own and writes the
                    // signal's number into `signal`; every signal in the set
                    // is blocked in every thread.
                    let error = unsafe { libc::sigwait(&self.set, &mut signal) };
                    if error != 0 {
                        let error = std::io::Error::from_raw_os_error(error);
                        tracing::error!("cannot wait for signals any more: {error}");
                        return;
                    }
                    if signal == libc::SIGHUP {
                        reload_on_hangup(host.get());
                        continue;
                    }
                    // SIGINT or SIGTERM, named from the library's one table.
                    let name = plughost::signal_name(signal).unwrap_or("signal");
                    if stopping {
                        eprintln!("error: second {name}: exiting at once without draining");
                        std::process::exit(1);
                    }
                    stopping = true;
                    cancel.store(true, Ordering::Release);
                    let _ = end.send(End::Signal(name));
                }
            })
            .map(drop)
    }
}

/// SIGHUP: reload the config, as `plughost ctl reload` does, on a thread of
/// its own (a reload can take a while; signals keep being taken meanwhile).
pub(crate) fn reload_on_hangup(host: Option<&Host>) {
    let Some(host) = host.cloned() else {
        tracing::warn!("SIGHUP during startup: ignored (nothing to reload yet)");
        return;
    };
    if host.is_shutting_down() {
        tracing::warn!("SIGHUP while shutting down: ignored");
        return;
    }
    tracing::info!("SIGHUP: reloading the config");
    let spawned = std::thread::Builder::new()
        .name("plughost:reload".into())
        .spawn(move || {
            if let Err(error) = host.reload() {
                tracing::error!(
                    "reload rejected, the running config stays: {}",
                    Escaped(&error.to_string())
                );
            }
        });
    if let Err(e) = spawned {
        tracing::error!("SIGHUP: cannot start a reload: {e}");
    }
}

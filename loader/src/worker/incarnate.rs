//! A fresh thread for each incarnation of an instance (its start, and each
//! restart): the thread makes the instance (the plugin's `init`), and the
//! caller waits for it within `start_timeout`, giving up on it when it does
//! not return in time, is cancelled or a stop is ordered.

use super::control::Factory;
use crate::config::Isolation;
use crate::instance::{CallFailure, Instance};
use crate::mailbox::Slot;
use crossbeam_channel::{RecvTimeoutError, Sender};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How an incarnation's `init` went (see [`incarnate`]).
pub(crate) enum Init<W> {
    /// The instance exists; its thread waits for its worker `W` on `worker`
    /// and then serves its events.
    Ready {
        worker: Sender<W>,
        thread: std::thread::JoinHandle<()>,
    },
    /// `init` failed, or did not return within its `start_timeout`.
    Failed(CallFailure),
    /// The OS refused a thread.
    NoThread(std::io::Error),
    /// The host's startup was cancelled, or a stop ordered, while `init` ran.
    Cancelled,
}

/// How often a wait for an `init` looks at its cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(5);

/// Make an instance from `factory` on a new thread, which becomes the
/// instance's own thread once it is handed its worker (`serve` then runs the
/// worker with the instance), and wait for its `init`: up to `limit`, or
/// until `cancelled` is set or a stop is ordered.
///
/// An `init` given up on is ended as far as the host can end it: a process
/// instance's child is killed (its thread then ends by itself); a thread
/// instance's thread is abandoned, blocked in the plugin. It is never
/// joined and its library never unloaded; if its `init` ever returns, the
/// late instance is dropped on that thread and never sees an event.
pub(crate) fn incarnate<W: Send + 'static>(
    slot: &Arc<Slot>,
    factory: &Factory,
    limit: Duration,
    cancelled: Option<&AtomicBool>,
    serve: fn(W, Box<dyn Instance>),
) -> Init<W> {
    type Made<W> = Result<Sender<W>, CallFailure>;
    let (init_tx, init_rx) = crossbeam_channel::bounded::<Made<W>>(1);
    let (make, own) = (factory.clone(), slot.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("plughost:{}", slot.name))
        .spawn(move || {
            let instance = match make() {
                Ok(instance) => instance,
                Err(failure) => {
                    let _ = init_tx.send(Err(failure));
                    return;
                }
            };
            own.set_routes(instance.routes());
            let (worker_tx, worker_rx) = crossbeam_channel::bounded::<W>(1);
            let sent = init_tx.send(Ok(worker_tx));
            // When the waiter gave up, dropping the last sender discards the
            // channel and the `worker_tx` in it: `recv` below fails.
            drop(init_tx);
            if sent.is_ok()
                && let Ok(worker) = worker_rx.recv()
            {
                serve(worker, instance);
            }
        });
    let thread = match spawned {
        Ok(thread) => thread,
        Err(cause) => return Init::NoThread(cause),
    };
    let deadline = Instant::now() + limit;
    let made = |made: Made<W>, thread: std::thread::JoinHandle<()>| match made {
        Ok(worker) => Init::Ready { worker, thread },
        Err(failure) => {
            // Its thread has nothing left to do.
            let _ = thread.join();
            Init::Failed(failure)
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match init_rx.recv_timeout(left.min(CANCEL_CHECK)) {
            Ok(outcome) => return made(outcome, thread),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                let ended = "its thread ended during init".to_owned();
                return Init::Failed(CallFailure::Panic(ended));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let cancel = cancelled.is_some_and(|flag| flag.load(Ordering::Acquire))
            || slot.stop_asked.load(Ordering::Acquire);
        if cancel || Instant::now() >= deadline {
            // Unless it made it just now, give up on it.
            if let Ok(outcome) = init_rx.try_recv() {
                return made(outcome, thread);
            }
            drop(init_rx);
            let fate = give_up(slot, thread);
            if cancel {
                tracing::warn!(plugin = %slot.name, "stopped during its init; {fate}");
                return Init::Cancelled;
            }
            let reason = format!("did not return within {limit:?} (start_timeout); {fate}");
            return Init::Failed(CallFailure::Panic(reason));
        }
    }
}

/// End an incarnation stuck in `init` as far as the host can; says how.
fn give_up(slot: &Slot, thread: std::thread::JoinHandle<()>) -> String {
    // Never joined: a thread stuck in a plugin may never return.
    drop(thread);
    match slot.settings().isolation {
        Isolation::Process => {
            // Its thread sees the child die, and ends.
            slot.child.kill();
            "its process was killed".to_owned()
        }
        Isolation::Thread => {
            let n = slot.abandoned_threads.fetch_add(1, Ordering::AcqRel) + 1;
            format!(
                "its thread is abandoned, blocked in the plugin, and its library stays loaded ({n} such thread(s) for this instance)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Quiet, slot};
    use crate::worker::incarnate;

    fn factory(
        make: impl Fn() -> Result<Box<dyn Instance>, CallFailure> + Send + Sync + 'static,
    ) -> Factory {
        Arc::new(make)
    }

    #[test]
    fn an_init_is_waited_for_up_to_its_limit_then_given_up() {
        let slot = slot("");
        let quick = factory(|| Ok(Box::new(Quiet)));
        let limit = Duration::from_secs(30);
        assert!(matches!(
            incarnate(&slot, &quick, limit, None),
            Init::Ready { .. }
        ));
        let failing = factory(|| Err(CallFailure::Error("no".into())));
        match incarnate(&slot, &failing, limit, None) {
            Init::Failed(CallFailure::Error(message)) => assert_eq!(message, "no"),
            _ => panic!("a failing init fails"),
        }
        let hanging = factory(|| {
            loop {
                std::thread::park();
            }
        });
        let limit = Duration::from_millis(50);
        match incarnate(&slot, &hanging, limit, None) {
            Init::Failed(CallFailure::Panic(message)) => assert_eq!(
                message,
                "did not return within 50ms (start_timeout); its thread is abandoned, blocked in the plugin, and its library stays loaded (1 such thread(s) for this instance)"
            ),
            _ => panic!("a hanging init fails at its limit"),
        }
        assert_eq!(slot.abandoned_threads.load(Ordering::Acquire), 1);
    }

    #[test]
    fn an_init_is_given_up_when_cancelled_or_stopped() {
        let slot = slot("");
        let hanging = factory(|| {
            loop {
                std::thread::park();
            }
        });
        let limit = Duration::from_secs(3600);
        let cancelled = AtomicBool::new(true);
        assert!(matches!(
            incarnate(&slot, &hanging, limit, Some(&cancelled)),
            Init::Cancelled
        ));
        slot.stop_asked.store(true, Ordering::Release);
        assert!(matches!(
            incarnate(&slot, &hanging, limit, None),
            Init::Cancelled
        ));
        assert_eq!(slot.abandoned_threads.load(Ordering::Acquire), 2);
    }
}

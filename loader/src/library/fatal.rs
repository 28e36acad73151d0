//! The last line of a plugin that crashes the process it runs in. A fatal
//! signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP) raised
//! on a thread that is inside a plugin call writes one line to stderr naming
//! the instance, its library and the topic (or the call) it was handling,
//! then the signal takes its course: the handler that was there before runs
//! (Rust's stack-overflow report), or the default action ends the process.
//!
//! The handler is async-signal-safe: it reads a thread-local record, copies
//! preformatted bytes into a buffer on its (alternate) stack and calls
//! `write(2)`; it allocates nothing and takes no lock. The record of what a
//! thread is calling is a few plain stores into a thread-local around each
//! call into a plugin: the event path pays nothing more.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::path::Path;
use std::sync::{Arc, Once, OnceLock};

/// The signals a plugin's bug ends the process with.
const FATAL: [libc::c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGSYS,
    libc::SIGTRAP,
];

/// Who an instance is, formatted once, when it is created: `plugin `NAME`
/// (library PATH)`, with control characters escaped.
pub(crate) struct Culprit {
    who: Box<[u8]>,
}

impl Culprit {
    pub(crate) fn new(instance: &str, library: &Path) -> Arc<Culprit> {
        install();
        prepare_this_thread();
        let library = library.display().to_string();
        let who = format!(
            "plugin `{}` (library {})",
            crate::text::Escaped(instance),
            crate::text::Escaped(&library)
        );
        Arc::new(Culprit {
            who: who.into_bytes().into_boxed_slice(),
        })
    }

    /// Record that this thread calls into the plugin (`call`, such as
    /// `"tick"`) until the guard is dropped.
    #[inline]
    pub(crate) fn calling(&self, call: &'static str) -> Calling {
        Calling::enter(Current {
            culprit: self,
            topic: std::ptr::null(),
            topic_len: 0,
            call,
        })
    }

    /// Record that this thread hands the plugin an event on `topic`.
    #[inline]
    pub(crate) fn handling(&self, topic: &str) -> Calling {
        Calling::enter(Current {
            culprit: self,
            topic: topic.as_ptr(),
            topic_len: topic.len(),
            call: "",
        })
    }
}

/// What a thread is calling: valid while the [`Calling`] guard that set it
/// lives, which is the whole call (the pointers borrow from its caller).
#[derive(Clone, Copy)]
struct Current {
    culprit: *const Culprit,
    topic: *const u8,
    topic_len: usize,
    call: &'static str,
}

const NOTHING: Current = Current {
    culprit: std::ptr::null(),
    topic: std::ptr::null(),
    topic_len: 0,
    call: "",
};

thread_local! {
    // `const`, and nothing to drop: a plain thread-local the signal handler
    // can read (no lazy initialisation, no destructor registration).
    static CURRENT: Cell<Current> = const { Cell::new(NOTHING) };
}

/// Restores the previous record when the call returns.
pub(crate) struct Calling {
    previous: Current,
}

impl Calling {
    #[inline]
    fn enter(current: Current) -> Calling {
        let previous = CURRENT.with(|c| c.replace(current));
        // The handler runs on this thread, between any two instructions:
        // the record must be stored before the call, not moved after it.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        Calling { previous }
    }
}

impl Drop for Calling {
    #[inline]
    fn drop(&mut self) {
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// The handlers that were installed before ours, by signal, to chain to.
struct Previous([(libc::c_int, libc::sigaction); FATAL.len()]);

// SAFETY: plain data (handler addresses, masks, flags), written once before
// any handler of ours is installed and only read afterwards.
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

/// Install the handler for every fatal signal, once per process.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask).
        let mut previous: [(libc::c_int, libc::sigaction); FATAL.len()] =
            FATAL.map(|signal| (signal, unsafe { std::mem::zeroed() }));
        for (signal, old) in &mut previous {
            // SAFETY: sigaction with a null new action only reads the
            // current one into `old`, which we own.
            unsafe { libc::sigaction(*signal, std::ptr::null(), old) };
        }
        if PREVIOUS.set(Previous(previous)).is_err() {
            return;
        }
        for signal in FATAL {
            // SAFETY: all-zero is a valid sigaction, filled in below.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fatal_signal as *const () as libc::sighandler_t;
            // On the thread's alternate stack: a stack overflow still reports.
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: sa_mask is ours; sigemptyset only initialises it.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            // SAFETY: installs a handler that only does async-signal-safe work.
            unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
        }
    });
}

/// Bytes a report can hold; a longer one is cut.
const LINE_MAX: usize = 1024;
/// Bytes of a topic shown.
const TOPIC_MAX: usize = 256;

/// A fixed buffer on the handler's stack.
struct Line {
    bytes: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == LINE_MAX - 1 {
                return;
            }
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    /// A topic comes from outside: control bytes are shown as `\xNN`.
    fn push_escaped(&mut self, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            if b < 0x20 || b == 0x7f {
                self.push(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            } else {
                self.push(&[b]);
            }
        }
    }
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut c_void,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// One report per process: Rust's stack-overflow report ends in abort(),
    /// a second fatal signal on the way down.
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let current = CURRENT.with(Cell::get);
    if !current.culprit.is_null() && !REPORTED.swap(true, Ordering::AcqRel) {
        let mut line = Line {
            bytes: [0; LINE_MAX],
            len: 0,
        };
        line.push(b"error: ");
        // SAFETY: the record points at the Culprit of a call still running
        // on this thread (the guard that set it is on this thread's stack).
        line.push(unsafe { &(*current.culprit).who });
        line.push(b" crashed with ");
        line.push(super::signal::known(signal).map_or(b"a fatal signal".as_slice(), str::as_bytes));
        if current.topic.is_null() {
            line.push(b" in its `");
            line.push(current.call.as_bytes());
            line.push(b"`");
        } else {
            // SAFETY: as above: the topic of the event the call was handed.
            let topic = unsafe { std::slice::from_raw_parts(current.topic, current.topic_len) };
            line.push(b" while handling an event on topic `");
            line.push_escaped(&topic[..topic.len().min(TOPIC_MAX)]);
            line.push(if topic.len() > TOPIC_MAX {
                b"...`"
            } else {
                b"`"
            });
        }
        line.push(b"\n");
        // SAFETY: write(2) is async-signal-safe; the buffer is ours.
        unsafe { libc::write(libc::STDERR_FILENO, line.bytes.as_ptr().cast(), line.len) };
    }
    chain(signal, info, context);
}

/// Hand the signal to whoever had it before, or let the default action end
/// the process.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let previous = PREVIOUS
        .get()
        .and_then(|p| p.0.iter().find(|(s, _)| *s == signal))
        .map(|(_, action)| *action);
    if let Some(action) = previous
        && action.sa_sigaction != libc::SIG_DFL
        && action.sa_sigaction != libc::SIG_IGN
    {
        if action.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO, so
            // it takes these three arguments; we pass it what we were given.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { std::mem::transmute(action.sa_sigaction) };
            handler(signal, info, context);
        } else {
            // SAFETY: a handler installed without SA_SIGINFO takes the signal number.
            let handler: extern "C" fn(libc::c_int) =
                unsafe { std::mem::transmute(action.sa_sigaction) };
            handler(signal);
        }
        return;
    }
    // SAFETY: all-zero is SIG_DFL with an empty mask.
    let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    // SAFETY: sigaction and raise are async-signal-safe. The signal is
    // blocked while this handler runs: raised again, it is delivered with the
    // default action as soon as the handler returns (a fault would also
    // happen again when the faulting instruction runs again).
    unsafe {
        libc::sigaction(signal, &default, std::ptr::null_mut());
        libc::raise(signal);
    }
}

/// Make sure the calling thread has an alternate signal stack big enough
/// for the report, so it is written even when the plugin overflowed the
/// thread's stack. The one Rust's standard library gives its threads holds
/// one signal frame, but a report chained to Rust's stack-overflow handler
/// takes two (that handler ends in abort(), a SIGABRT inside the SIGSEGV),
/// and a signal frame alone can take several KiB (the CPU's vector state).
/// The thread gets one of its own, freed when the thread ends.
fn prepare_this_thread() {
    thread_local! {
        static ALTERNATE: RefCell<Option<AltStack>> = const { RefCell::new(None) };
    }
    // SAFETY: all-zero is a valid stack_t to read into.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new stack, sigaltstack only reads the current one.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0
        || (current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= AltStack::SIZE)
    {
        return;
    }
    if let Some(stack) = AltStack::new() {
        let _ = ALTERNATE.try_with(|slot| *slot.borrow_mut() = Some(stack));
    }
}

/// An alternate signal stack of this thread, with a guard page below it.
struct AltStack {
    base: *mut c_void,
    len: usize,
}

impl AltStack {
    const SIZE: usize = 64 * 1024;

    fn new() -> Option<AltStack> {
        let page = rustix::param::page_size();
        let len = page + Self::SIZE;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = AltStack { base, len };
        // SAFETY: the first page of our own mapping becomes the guard page.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return None;
        }
        let install = libc::stack_t {
            // SAFETY: `page` is within the mapping of `len` bytes.
            ss_sp: unsafe { base.cast::<u8>().add(page) }.cast(),
            ss_flags: 0,
            ss_size: Self::SIZE,
        };
        // SAFETY: the stack is ours, mapped, and outlives its use: it is
        // disabled before it is unmapped (Drop, on this same thread).
        if unsafe { libc::sigaltstack(&install, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(stack)
    }
}

// The standard library's own alternate stack of a thread (if we replaced
// it) is disabled and unmapped by its own thread-local destructor; in
// whichever order the two run, neither unmaps a stack still in use.
impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: Self::SIZE,
        };
        // SAFETY: runs on the thread the stack was installed on, which is
        // not on it (a thread-local destructor is not a signal handler).
        unsafe {
            libc::sigaltstack(&disable, std::ptr::null_mut());
            libc::munmap(self.base, self.len);
        }
    }
}

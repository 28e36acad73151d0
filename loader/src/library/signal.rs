//! Signal names, for messages: one table, which the fatal-signal report
//! reads inside its handler (a match on constants: no allocation, no lock).

/// The signals the host names in messages.
const NAMES: [(libc::c_int, &str); 12] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGSYS, "SIGSYS"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGHUP, "SIGHUP"),
];

/// `SIGSEGV` for 11, and so on; `None` for a signal without a name here.
/// Async-signal-safe.
pub fn known(signal: libc::c_int) -> Option<&'static str> {
    let mut i = 0;
    while i < NAMES.len() {
        if NAMES[i].0 == signal {
            return Some(NAMES[i].1);
        }
        i += 1;
    }
    None
}

/// The signal's name, or `signal N`.
pub(crate) fn name(signal: libc::c_int) -> String {
    known(signal).map_or_else(|| format!("signal {signal}"), str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_are_named_or_numbered() {
        assert_eq!(super::name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(super::name(libc::SIGKILL), "SIGKILL");
        assert_eq!(super::name(64), "signal 64");
        assert_eq!(super::known(libc::SIGSYS), Some("SIGSYS"));
    }
}

//! Handler errors in the log: every one is counted (as `failed`), the first
//! ones are logged, then one in a thousand, with how many were left out.

use crate::event::Event;
use crate::text::Escaped;

/// Handler errors logged one by one before the log thins out.
const ERRORS_LOGGED_FIRST: u64 = 10;
/// After the first ones, one handler error in this many is logged.
const ERRORS_LOGGED_EVERY: u64 = 1000;
/// Where every handler error is counted, whether logged or not.
const ERRORS_COUNTED: &str =
    "every one is counted as `failed` in /plugins, /metrics and the shutdown summary";

/// Which handler errors were logged: all are counted, not all are logged.
#[derive(Default)]
pub(super) struct ErrorLog {
    seen: u64,
    /// Errors not logged since the last one that was.
    unlogged: u64,
}

/// What to log about one more handler error.
#[derive(Debug, PartialEq, Eq)]
enum ErrorNote {
    /// Log it.
    Log,
    /// Log it, and that the log thins out from now on.
    LogAndThin,
    /// Log it, and how many were not logged since the last one.
    LogAfter(u64),
    /// Do not log it (it is counted).
    Skip,
}

impl ErrorLog {
    fn record(&mut self) -> ErrorNote {
        self.seen += 1;
        if self.seen < ERRORS_LOGGED_FIRST {
            ErrorNote::Log
        } else if self.seen == ERRORS_LOGGED_FIRST {
            ErrorNote::LogAndThin
        } else if self.seen.is_multiple_of(ERRORS_LOGGED_EVERY) {
            ErrorNote::LogAfter(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            ErrorNote::Skip
        }
    }
}

impl ErrorLog {
    /// Instance `name`'s handler failed on `event` with `message`.
    pub(super) fn log(&mut self, name: &str, event: &Event, message: &str) {
        // Every error is counted; the log says the first ones, then one in
        // a thousand, and says how many it left out.
        let note = self.record();
        let (topic, message) = (Escaped(event.topic()), Escaped(message));
        let id = event.id();
        match note {
            ErrorNote::Log => {
                tracing::warn!(plugin = %name, "event {id} on {topic} failed: {message}")
            }
            ErrorNote::LogAndThin => tracing::warn!(
                plugin = %name,
                "event {id} on {topic} failed: {message} ({ERRORS_LOGGED_FIRST} handler errors logged; from now on only one in {ERRORS_LOGGED_EVERY} is, and {ERRORS_COUNTED})"
            ),
            ErrorNote::LogAfter(unlogged) => tracing::warn!(
                plugin = %name,
                "event {id} on {topic} failed: {message} ({unlogged} handler error(s) since the last one logged were not logged; {ERRORS_COUNTED})"
            ),
            ErrorNote::Skip => {}
        }
    }

    /// Say how many handler errors went unlogged since the last one logged.
    pub(super) fn flush(&mut self, name: &str) {
        let unlogged = std::mem::take(&mut self.unlogged);
        if unlogged > 0 {
            tracing::warn!(
                plugin = %name,
                "{unlogged} handler error(s) since the last one logged were not logged; {ERRORS_COUNTED}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_log_names_ten_then_one_in_a_thousand_and_how_many_it_left_out() {
        let mut log = ErrorLog::default();
        let notes: Vec<ErrorNote> = (0..2500).map(|_| log.record()).collect();
        assert!(notes[..9].iter().all(|n| *n == ErrorNote::Log));
        assert_eq!(notes[9], ErrorNote::LogAndThin);
        assert_eq!(notes[999], ErrorNote::LogAfter(989));
        assert_eq!(notes[1999], ErrorNote::LogAfter(999));
        let logged = notes.iter().filter(|n| **n != ErrorNote::Skip).count();
        assert_eq!(logged, 12);
        assert_eq!(log.unlogged, 500, "said when the instance stops");
    }
}

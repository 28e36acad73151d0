//! The restart policy: whether a failed instance is restarted, after what
//! backoff, and when it is flapping (stopped for good). A pure record of
//! recent restarts, judged at a given instant, so it is tested without
//! waiting. The worker carries its verdicts out on the instance's thread.

use crate::config::{PluginConfig, Restart};
use crate::instance::CallFailure;
use std::time::{Duration, Instant};

/// Restart policy and the record the flapping rule is judged on.
pub(crate) struct Supervision {
    /// How often the worker calls the plugin's `tick`.
    pub tick: Option<Duration>,
    pub restart: Restart,
    pub max_restarts: u32,
    pub window: Duration,
    /// How long a (re)start's `init` may run.
    pub start_timeout: Duration,
    pub recent: std::collections::VecDeque<Instant>,
}

impl Supervision {
    pub(crate) fn new(config: &PluginConfig) -> Supervision {
        Supervision {
            tick: config.tick_interval,
            restart: config.restart,
            max_restarts: config.max_restarts,
            window: config.restart_window,
            start_timeout: config.start_timeout,
            recent: Default::default(),
        }
    }

    /// Every failure that reaches the policy ends the instance: `on-failure`
    /// and `always` restart it, `never` does not. (An instance never ends
    /// by itself without failing, so `always` has nothing more to restart.)
    pub(crate) fn wants_restart(&self, _failure: &CallFailure) -> bool {
        self.restart != Restart::Never
    }

    /// The delay before the next restart (exponential, from 50 ms to 5 s), or
    /// `None` when the restarts inside the window already reached the limit.
    pub(crate) fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts as usize {
            return None;
        }
        let exponent = self.recent.len().min(7) as u32;
        Some(Duration::from_millis(50 * 2u64.pow(exponent)).min(Duration::from_secs(5)))
    }

    /// A restart is under way at `now`: it counts against the flapping rule.
    pub(crate) fn restarting(&mut self, now: Instant) {
        self.recent.push_back(now);
    }

    /// Why the instance is stopped for good, once [`Supervision::next_delay`]
    /// allows no more restarts.
    pub(crate) fn flapping(&self) -> String {
        format!(
            "flapping: {} restarts within {:?}; stopped for good",
            self.recent.len(),
            self.window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::plugin;

    fn supervision(max_restarts: u32, window: &str) -> Supervision {
        Supervision::new(&plugin(&format!(
            "max_restarts = {max_restarts}\nrestart_window = \"{window}\"\n"
        )))
    }

    /// Fail again as soon as each restart is done, as the worker does: ask
    /// for the delay at `now`, wait it out, record the restart. Returns the
    /// delays in order, until the schedule says flapping (or `limit`).
    fn restart_at_once(s: &mut Supervision, now: &mut Instant, limit: usize) -> Vec<u64> {
        let mut delays = Vec::new();
        while delays.len() < limit {
            let Some(delay) = s.next_delay(*now) else {
                break;
            };
            delays.push(delay.as_millis() as u64);
            *now += delay;
            s.recent.push_back(*now);
        }
        delays
    }

    #[test]
    fn every_failure_is_restarted_unless_the_policy_is_never() {
        for (policy, restarts) in [("never", false), ("on-failure", true), ("always", true)] {
            let s = Supervision::new(&plugin(&format!("restart = \"{policy}\"\n")));
            for failure in [
                CallFailure::Error("e".into()),
                CallFailure::Panic("p".into()),
            ] {
                assert_eq!(s.wants_restart(&failure), restarts, "{policy}: {failure:?}");
            }
        }
    }

    #[test]
    fn the_restart_backoff_doubles_from_50ms_up_to_5s() {
        let mut s = supervision(10_000, "24h");
        let mut now = Instant::now();
        assert_eq!(
            restart_at_once(&mut s, &mut now, 12),
            [
                50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000
            ]
        );
        // However many restarts the window holds, never more than 5 s.
        assert_eq!(
            restart_at_once(&mut s, &mut now, 200).iter().max(),
            Some(&5000)
        );
        assert_eq!(s.recent.len(), 212);
    }

    #[test]
    fn restarts_that_left_the_window_no_longer_count() {
        let mut s = supervision(5, "60s");
        let start = Instant::now();
        let mut now = start;
        assert_eq!(restart_at_once(&mut s, &mut now, 3), [50, 100, 200]);
        let last = now;
        // The first restart (at 50 ms) is exactly 60 s old: it still counts.
        let at = start + Duration::from_millis(50) + Duration::from_secs(60);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(400)));
        // A millisecond later it left the window: the wait is one step shorter.
        let at = at + Duration::from_millis(1);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(200)));
        assert_eq!(s.recent.len(), 2);
        // Once the last one left too, the schedule starts over at 50 ms.
        let at = last + Duration::from_secs(60) + Duration::from_millis(1);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(50)));
        assert!(s.recent.is_empty());
    }

    #[test]
    fn the_failure_after_max_restarts_inside_the_window_is_flapping() {
        let mut now = Instant::now();
        let mut s = supervision(5, "60s");
        assert_eq!(
            restart_at_once(&mut s, &mut now, 100),
            [50, 100, 200, 400, 800],
            "5 restarts, then no delay: flapping"
        );
        assert_eq!(s.next_delay(now), None);
        assert_eq!(s.next_delay(now + Duration::from_secs(50)), None);
        // Restarts spread wider than the window never reach the limit.
        let mut s = supervision(2, "1s");
        for _ in 0..10 {
            let delay = s.next_delay(now).expect("fewer than 2 in the last second");
            now += delay;
            s.recent.push_back(now);
            now += Duration::from_millis(600);
        }
        // `max_restarts = 0`: the first failure is already flapping.
        assert_eq!(supervision(0, "60s").next_delay(Instant::now()), None);
        let mut s = supervision(1, "60s");
        assert_eq!(restart_at_once(&mut s, &mut now, 100), [50]);
    }
}

//! The watchdog: a handler running longer than its `handler_timeout` is
//! reported once (`plughost.plugin.stuck`), counts as failing, and a
//! process-isolated one is killed so that its restart policy applies.

use super::running::{Supervisor, WATCHDOG};
use crate::config::Isolation;
use crate::event::coarse_nanos;
use crate::observe::lifecycle::{self, Lifecycle};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Supervisor {
    /// Start the watchdog, unless it runs or no instance has a
    /// `handler_timeout`. It looks four times per shortest timeout.
    pub(crate) fn start_watchdog(&self) {
        let Some(shortest) = self
            .config()
            .plugins
            .iter()
            .filter_map(|p| p.handler_timeout)
            .min()
        else {
            return;
        };
        if self.watchdog.swap(true, Ordering::AcqRel) {
            return;
        }
        let interval = (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let bus = self.bus.clone();
        self.every(WATCHDOG, interval, move || {
            for slot in bus.slots() {
                let settings = slot.settings();
                let Some(limit) = settings.handler_timeout else { continue };
                let since = slot.stats.consumer.busy_since.load(Ordering::Acquire);
                let running = Duration::from_nanos(coarse_nanos().saturating_sub(since));
                if since == 0 || running <= limit || slot.stuck_at.swap(since, Ordering::AcqRel) == since {
                    continue;
                }
                tracing::error!(plugin = %slot.name, "stuck: a handler has run for {running:?} (handler_timeout {limit:?})");
                let stuck = Lifecycle::Stuck { running, handler_timeout: limit };
                lifecycle::publish(&bus, &slot, stuck);
                if settings.isolation == Isolation::Process {
                    slot.child.kill();
                }
            }
        });
    }
}

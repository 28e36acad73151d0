//! `counter`: counts the events it receives per topic and, when it stops,
//! publishes `counter.summary` with `{"counts": {topic: n, ...}, "total": n}`.
//!
//! At the host's shutdown, events may still arrive after its `stop` (what
//! other instances publish in their own `stop`). They are counted, and count
//! as processed (counting them is all it does), but the summary is already
//! out: they are in none, and the first of them is logged saying so.

use plughost_api::{Context, Event, NoConfig, Plugin, Result, export_plugin};
use std::collections::BTreeMap;

#[derive(Default)]
struct Counter {
    counts: BTreeMap<String, u64>,
    /// The summary is published: what comes now is in none.
    summarized: bool,
    /// Events counted after the summary.
    late: u64,
}

impl Plugin for Counter {
    type Config = NoConfig;

    fn init(_config: NoConfig, _ctx: &Context) -> Result<Self> {
        Ok(Counter::default())
    }

    fn on_event(&mut self, event: &Event<'_>, ctx: &Context) -> Result<()> {
        if self.summarized {
            self.late += 1;
            if self.late == 1 {
                ctx.info(format!(
                    "{} arrived after the summary (published by another instance's stop): counted, but in no summary",
                    event.topic()
                ));
            }
        }
        match self.counts.get_mut(event.topic()) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(event.topic().to_owned(), 1);
            }
        }
        Ok(())
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
        self.summarized = true;
        let total: u64 = self.counts.values().sum();
        ctx.info(format!(
            "{total} event(s) on {} topic(s)",
            self.counts.len()
        ));
        ctx.publish_json(
            "counter.summary",
            &serde_json::json!({"counts": self.counts, "total": total}),
        )
    }
}

export_plugin!(Counter);

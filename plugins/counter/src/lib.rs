//! `counter`: counts the events it receives per topic and, when it stops,
//! publishes `counter.summary` with `{"counts": {topic: n, ...}, "total": n}`.

use plughost_api::{Context, Event, NoConfig, Plugin, Result, export_plugin};
use std::collections::BTreeMap;

#[derive(Default)]
struct Counter {
    counts: BTreeMap<String, u64>,
}

impl Plugin for Counter {
    type Config = NoConfig;

    fn init(_config: NoConfig, _ctx: &Context) -> Result<Self> {
        Ok(Counter::default())
    }

    fn on_event(&mut self, event: &Event<'_>, _ctx: &Context) -> Result<()> {
        match self.counts.get_mut(event.topic()) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(event.topic().to_owned(), 1);
            }
        }
        Ok(())
    }

    fn stop(&mut self, ctx: &Context) -> Result<()> {
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

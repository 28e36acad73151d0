//! `GET /metrics`: the instances' counters in the OpenMetrics text format,
//! read at scrape time.

use crate::host::Host;
use crate::mailbox::{HANDLER_BUCKETS, State};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

/// The registry `/metrics` encodes: one collector over `host`'s instances.
pub(super) fn registry(host: &Host) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector { host: host.clone() }));
    registry
}

/// `registry` as OpenMetrics text; `None` if it cannot be encoded.
pub(super) fn encode(registry: &Registry) -> Option<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).ok()?;
    Some(text)
}

/// Picks one count out of an instance's counts.
type CountOf = fn(&crate::mailbox::Counts) -> u64;

/// Reads the instances' counters at scrape time: counting itself takes no
/// lock and no registry on the event path.
#[derive(Debug)]
struct Collector {
    host: Host,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let slots = self.host.supervisor.slots();
        let counters: [(&str, &str, CountOf); 4] = [
            (
                "plughost_events_received",
                "Events routed to the instance",
                |c| c.received,
            ),
            (
                "plughost_events_processed",
                "Events its handler finished without error",
                |c| c.processed,
            ),
            (
                "plughost_events_dropped",
                "Events dropped by overflow, failure or shutdown",
                |c| c.dropped,
            ),
            (
                "plughost_events_failed",
                "Events whose handler returned an error or panicked",
                |c| c.failed,
            ),
        ];
        let counts: Vec<_> = slots
            .iter()
            .map(|s| (s.name.to_string(), s.counts()))
            .collect();
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (plugin, c) in &counts {
                ConstCounter::new(value(c))
                    .encode(metric.encode_family(&[("plugin", plugin.as_str())])?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_plugin_restarts",
            "Restarts of the instance",
            None,
            MetricType::Counter,
        )?;
        for slot in &slots {
            ConstCounter::new(slot.restarts.load(Ordering::Acquire))
                .encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_queue_depth",
            "Events waiting in the mailbox",
            None,
            MetricType::Gauge,
        )?;
        for slot in &slots {
            ConstGauge::new(slot.rx.len() as i64)
                .encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_plugin_up",
            "1 while the instance runs (0 while a handler is stuck)",
            None,
            MetricType::Gauge,
        )?;
        for slot in &slots {
            let up = i64::from(slot.state() == State::Running && !slot.is_stuck());
            ConstGauge::new(up).encode(metric.encode_family(&[("plugin", &*slot.name)])?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_events_refused",
            "Events refused where they entered, by entry point and reason",
            None,
            MetricType::Counter,
        )?;
        for refused in self.host.supervisor.bus.refusals.all() {
            ConstCounter::new(refused.count).encode(
                metric.encode_family(&[("entry", refused.entry), ("reason", refused.reason)])?,
            )?;
        }
        let mut metric = encoder.encode_descriptor(
            "plughost_handler_seconds",
            "Time spent in on_event",
            None,
            MetricType::Histogram,
        )?;
        for slot in &slots {
            let (sum, count, buckets) = slot.stats.consumer.handler.snapshot();
            debug_assert_eq!(buckets.len(), HANDLER_BUCKETS.len() + 1);
            metric
                .encode_family(&[("plugin", &*slot.name)])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
        }
        Ok(())
    }
}

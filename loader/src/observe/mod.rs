//! What the host tells about its instances, beside their events: lifecycle
//! events (`plughost.plugin.*`, `lifecycle`), Lightbus state and metrics
//! events (`state`, `metrics`), reports and the answers to health,
//! readiness and job checks (`report`, `probe`).

pub(crate) mod lifecycle;
pub(crate) mod metrics;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod state;

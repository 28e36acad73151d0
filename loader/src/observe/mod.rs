//! What the host tells about its instances, beside their events: lifecycle
//! events (`plughost.plugin.*`).

pub(crate) mod lifecycle;

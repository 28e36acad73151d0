//! The bounds of every size and count key: a value outside them is refused
//! by `check`, by `run` and by a reload, with the value's line and column,
//! rather than failing (or aborting the process) when it is used.

/// A key's name, default and accepted range.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// The key as written in `plugins.toml`.
    pub key: &'static str,
    /// Its value when absent.
    pub default: u64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

/// `queue_capacity` (`[host]` and `[[plugin]]`): a mailbox is allocated
/// whole when its instance starts, about 100 bytes per slot.
pub const QUEUE_CAPACITY: Limit = Limit {
    key: "queue_capacity",
    default: 1024,
    min: 1,
    max: 1 << 20,
};
/// `[host] max_event_bytes`: the largest payload accepted from any entry point.
pub const MAX_EVENT_BYTES: Limit = Limit {
    key: "max_event_bytes",
    default: 64 << 20,
    min: 1,
    max: 1 << 30,
};
/// `[host] control_max_line_bytes`: the longest control command line.
pub const CONTROL_MAX_LINE_BYTES: Limit = Limit {
    key: "control_max_line_bytes",
    default: 64 << 20,
    min: 1024,
    max: 1 << 30,
};
/// `[host] control_max_connections`: control connections served at once.
pub const CONTROL_MAX_CONNECTIONS: Limit = Limit {
    key: "control_max_connections",
    default: 64,
    min: 1,
    max: 4096,
};
/// `[[plugin]]` tables in one config: each is a thread and a mailbox.
pub const MAX_PLUGINS: usize = 4096;
/// The largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// `[status] ingest_max_bytes`: the largest `POST /events/TOPIC` body.
pub const INGEST_MAX_BYTES: Limit = Limit {
    key: "ingest_max_bytes",
    default: 1 << 20,
    min: 1,
    max: 1 << 30,
};
/// `[status] max_connections`: connections served at once.
pub const MAX_CONNECTIONS: Limit = Limit {
    key: "max_connections",
    default: 1024,
    min: 1,
    max: 65536,
};
/// `[status] route_max_pending`: route calls waiting on one instance.
pub const ROUTE_MAX_PENDING: Limit = Limit {
    key: "route_max_pending",
    default: 64,
    min: 1,
    max: 4096,
};
/// `[[plugin]] max_restarts`.
pub const MAX_RESTARTS: Limit = Limit {
    key: "max_restarts",
    default: 5,
    min: 0,
    max: 10_000,
};
/// Every duration key: at most a day, so no deadline computed from one
/// can overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The longest instance name: it is the source of every event the instance
/// publishes, and appears in topics, URLs and metric labels.
pub const MAX_INSTANCE_NAME_BYTES: usize = 256;

//! What a plugin may report about itself: health, readiness, job queues
//! (RoadRunner's JobsReport fields). All optional: a plugin that does not
//! report one is left out of that aggregate.

/// How a plugin is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Working normally.
    Ok,
    /// Working, but impaired (the host's `/health` still answers 200).
    Degraded,
    /// Not working (the host's `/health` answers 503).
    Failing,
}

/// A health status as the ABIs carry it (the Rust ABI's `HealthReport`,
/// C's `PLUGHOST_HEALTH_*`, a process plugin's frames): 0 ok, 1 degraded,
/// 2 failing.
impl From<HealthStatus> for u8 {
    fn from(status: HealthStatus) -> u8 {
        match status {
            HealthStatus::Ok => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Failing => 2,
        }
    }
}

/// The number a health status travels as (see `From<HealthStatus> for
/// u8`); any number but 0 and 1 reads as failing.
impl From<i64> for HealthStatus {
    fn from(code: i64) -> HealthStatus {
        match code {
            0 => HealthStatus::Ok,
            1 => HealthStatus::Degraded,
            _ => HealthStatus::Failing,
        }
    }
}

impl HealthStatus {
    /// `ok`, `degraded` or `failing`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Failing => "failing",
        }
    }
}

/// A health report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why, for operators (may be empty).
    pub message: String,
}

impl Health {
    /// Healthy, no message.
    pub fn ok() -> Health {
        Health {
            status: HealthStatus::Ok,
            message: String::new(),
        }
    }

    /// Impaired, with a reason.
    pub fn degraded(message: impl Into<String>) -> Health {
        Health {
            status: HealthStatus::Degraded,
            message: message.into(),
        }
    }

    /// Not working, with a reason.
    pub fn failing(message: impl Into<String>) -> Health {
        Health {
            status: HealthStatus::Failing,
            message: message.into(),
        }
    }
}

/// A readiness report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether it is ready to take work.
    pub ready: bool,
    /// Why not, for operators (may be empty).
    pub message: String,
}

impl Readiness {
    /// Ready to take work, no message.
    pub fn ready() -> Readiness {
        Readiness {
            ready: true,
            message: String::new(),
        }
    }

    /// Not ready, with a reason (`waiting for the broker`).
    pub fn not_ready(message: impl Into<String>) -> Readiness {
        Readiness {
            ready: false,
            message: message.into(),
        }
    }
}

/// One job pipeline's state, with RoadRunner's JobsReport fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline priority.
    pub priority: u64,
    /// Whether the pipeline is ready to consume.
    pub ready: bool,
    /// Queue name.
    pub queue: String,
    /// Jobs being processed.
    pub active: i64,
    /// Jobs delayed.
    pub delayed: i64,
    /// Jobs reserved.
    pub reserved: i64,
    /// Driver name (`memory`, `amqp`, ...).
    pub driver: String,
    /// The last error, if any (empty otherwise).
    pub error_message: String,
}

#[cfg(test)]
mod number_tests {
    use super::*;
    use crate::abi::LogLevel;

    /// The one mapping between statuses and levels and the numbers the ABIs
    /// carry: each comes back as itself, and an unknown number is the
    /// cautious reading.
    #[test]
    fn statuses_and_levels_round_trip_through_their_numbers() {
        for status in [
            HealthStatus::Ok,
            HealthStatus::Degraded,
            HealthStatus::Failing,
        ] {
            assert_eq!(HealthStatus::from(i64::from(u8::from(status))), status);
        }
        assert_eq!(HealthStatus::from(7), HealthStatus::Failing);
        assert_eq!(HealthStatus::from(-1), HealthStatus::Failing);
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            assert_eq!(LogLevel::from(level as i64), level);
        }
        assert_eq!(LogLevel::from(0), LogLevel::Info);
        assert_eq!(LogLevel::from(99), LogLevel::Info);
    }
}

//! The binary's commands, one file each: `run` (with the signals it takes),
//! `ctl`, `check` and `discover`. The library does the work; these read the
//! command line's arguments and print.

mod check;
mod ctl;
mod run;
mod signals;

pub(crate) use check::{check, discover, inspect_timeout};
pub(crate) use ctl::ctl;
pub(crate) use run::run;
pub(crate) use signals::HostSignals;

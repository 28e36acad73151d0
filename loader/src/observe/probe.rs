//! Asking instances between their events (health, readiness, jobs), each
//! on its own thread and all at once, within one timeout: what is known
//! without asking (failed, stuck) is answered at once, and an instance that
//! gives no answer in time answers `timeout`.

use super::report::{PluginHealth, PluginJob, PluginReadiness};
use crate::mailbox::{Slot, State};
use crate::supervisor::Supervisor;
use crate::worker::{Control, Probe, ProbeAnswer, Reply};
use plughost_api::JobReport;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Order `probe` from every running instance (or only `only`), each
/// answering on its own thread through a reply made by `reply`. Returns
/// every instance concerned, with its answer when it is known without
/// asking (failed, stuck), `None` when it was asked.
fn ask(
    supervisor: &Supervisor,
    probe: Probe,
    only: Option<&str>,
    reply: impl Fn() -> Reply<(usize, ProbeAnswer)>,
) -> Vec<(Arc<Slot>, Option<ProbeAnswer>)> {
    let mut answers: Vec<(Arc<Slot>, Option<ProbeAnswer>)> = Vec::new();
    for worker in supervisor.workers().iter() {
        let slot = &worker.slot;
        if only.is_some_and(|name| name != &*slot.name) {
            continue;
        }
        match slot.state() {
            State::Running if slot.is_stuck() => {
                let reason = "stuck: a handler has run longer than handler_timeout".to_owned();
                answers.push((slot.clone(), Some(ProbeAnswer::Failed(reason))));
            }
            State::Running => {
                worker.order(Control::Probe(probe, reply()));
                answers.push((slot.clone(), None));
            }
            State::Failed | State::Restarting | State::Flapping => {
                let state = slot.state().as_str();
                let reason = slot
                    .last_error()
                    .map_or_else(|| state.to_owned(), |e| format!("{state}: {e}"));
                answers.push((slot.clone(), Some(ProbeAnswer::Failed(reason))));
            }
            State::Starting | State::Stopping | State::Stopped => {}
        }
    }
    answers
}

/// Ask every running instance (or only `only`) `probe`, on its own
/// thread, and wait at most `timeout`. A failed instance answers with its
/// failure; one that does not answer in time, with `timeout`.
pub(crate) fn probe(
    supervisor: &Supervisor,
    probe: Probe,
    timeout: Duration,
    only: Option<&str>,
) -> Vec<(Arc<Slot>, ProbeAnswer)> {
    let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
    let mut answers = ask(supervisor, probe, only, || {
        let reply_tx = reply_tx.clone();
        Box::new(move |answer| {
            let _ = reply_tx.send(answer);
        })
    });
    drop(reply_tx);
    let deadline = Instant::now() + timeout;
    while answers.iter().any(|(_, answer)| answer.is_none()) {
        let Ok(answer) = reply_rx.recv_deadline(deadline) else {
            break;
        };
        record(&mut answers, answer);
    }
    settle(answers)
}

/// [`probe`] for async callers: the wait holds no thread, so any
/// number of checks can wait at once.
pub(crate) async fn probe_async(
    supervisor: &Supervisor,
    probe: Probe,
    timeout: Duration,
    only: Option<&str>,
) -> Vec<(Arc<Slot>, ProbeAnswer)> {
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut answers = ask(supervisor, probe, only, || {
        let reply_tx = reply_tx.clone();
        Box::new(move |answer| {
            let _ = reply_tx.send(answer);
        })
    });
    drop(reply_tx);
    let deadline = tokio::time::Instant::now() + timeout;
    while answers.iter().any(|(_, answer)| answer.is_none()) {
        let Ok(Some(answer)) = tokio::time::timeout_at(deadline, reply_rx.recv()).await else {
            break;
        };
        record(&mut answers, answer);
    }
    settle(answers)
}

/// Put an instance's answer beside its slot.
fn record(answers: &mut [(Arc<Slot>, Option<ProbeAnswer>)], (index, answer): (usize, ProbeAnswer)) {
    if let Some(entry) = answers.iter_mut().find(|(slot, _)| slot.index == index) {
        entry.1 = Some(answer);
    }
}

/// The answers, `timeout` for an instance that gave none in time.
fn settle(answers: Vec<(Arc<Slot>, Option<ProbeAnswer>)>) -> Vec<(Arc<Slot>, ProbeAnswer)> {
    answers
        .into_iter()
        .map(|(slot, answer)| {
            (
                slot,
                answer.unwrap_or_else(|| ProbeAnswer::Failed("timeout".to_owned())),
            )
        })
        .collect()
}

pub(crate) fn health_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginHealth> {
    let failing = |slot: &Slot, message: String| PluginHealth {
        name: slot.name.to_string(),
        status: "failing",
        message,
    };
    answers
        .into_iter()
        .filter_map(|(slot, answer)| match answer {
            ProbeAnswer::Health(Some(h)) => Some(PluginHealth {
                name: slot.name.to_string(),
                status: h.status.as_str(),
                message: h.message,
            }),
            ProbeAnswer::Failed(reason) => Some(failing(&slot, reason)),
            _ => None,
        })
        .collect()
}

pub(crate) fn readiness_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginReadiness> {
    answers
        .into_iter()
        .filter_map(|(slot, answer)| {
            let name = slot.name.to_string();
            match answer {
                ProbeAnswer::Ready(Some(r)) => Some(PluginReadiness {
                    name,
                    ready: r.ready,
                    message: r.message,
                }),
                ProbeAnswer::Failed(reason) => Some(PluginReadiness {
                    name,
                    ready: false,
                    message: reason,
                }),
                _ => None,
            }
        })
        .collect()
}

pub(crate) fn jobs_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginJob> {
    let mut jobs = Vec::new();
    for (slot, answer) in answers {
        match answer {
            ProbeAnswer::Jobs(Some(reports)) => {
                jobs.extend(
                    reports
                        .into_iter()
                        .map(|job| PluginJob::new(&slot.name, job)),
                );
            }
            ProbeAnswer::Failed(reason) if slot.state() == State::Running => {
                let job = JobReport {
                    error_message: reason,
                    ..JobReport::default()
                };
                jobs.push(PluginJob::new(&slot.name, job));
            }
            _ => {}
        }
    }
    jobs
}

/// Health of every instance that reports it (and of failed ones), each
/// asked on its own thread within `timeout`.
pub(crate) fn health(
    supervisor: &Supervisor,
    timeout: Duration,
    only: Option<&str>,
) -> Vec<PluginHealth> {
    health_of(probe(supervisor, Probe::Health, timeout, only))
}

/// Readiness of every instance that reports it (failed ones are not ready).
pub(crate) fn readiness(
    supervisor: &Supervisor,
    timeout: Duration,
    only: Option<&str>,
) -> Vec<PluginReadiness> {
    readiness_of(probe(supervisor, Probe::Ready, timeout, only))
}

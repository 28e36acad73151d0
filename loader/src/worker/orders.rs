//! Orders from the control lane, carried out between events: stop, the
//! shutdown's stop in place, probes, HTTP requests, a process's death, and
//! the replacement of the plugin (a restart, or a reload that changed it).

use super::control::{Control, Probe, ProbeAnswer};
use super::{Init, Next, Worker, incarnate, watched};
use crate::instance::CallFailure;
use crate::mailbox::State;
use crate::supervisor::InstanceError;
use crate::text::Escaped;

impl Worker {
    /// Carry out one order.
    pub(super) fn obey(&mut self, order: Control) -> Next {
        match order {
            Control::Stop { drain } => Next::Stop(drain),
            Control::StopInPlace { drop_before, reply } => {
                let _ = reply.send(self.stop_in_place(drop_before));
                Next::Go
            }
            Control::Replace { reply, .. } if self.stop_ran => {
                let _ = reply.send(Err(InstanceError::ShuttingDown));
                Next::Go
            }
            Control::Probe(probe, reply) => {
                reply((self.slot.index, self.probe(probe)));
                Next::Go
            }
            Control::Replace {
                factory,
                supervision,
                reply,
            } => {
                // The old instance stops and goes on its own thread: this one.
                if let Some(mut old) = self.instance.take()
                    && let Err(failure) = old.stop()
                {
                    tracing::warn!(plugin = %self.slot.name, "stop before restart failed: {}", Escaped(&failure.to_string()));
                }
                self.factory = factory;
                self.supervision = supervision;
                self.pending_failure = None;
                let limit = self.supervision.start_timeout;
                let failure = match incarnate(&self.slot, &self.factory, limit, None) {
                    Init::Ready { worker, .. } => {
                        self.slot.set_state(State::Running);
                        let _ = reply.send(Ok(()));
                        return Next::Handoff(worker);
                    }
                    Init::Failed(failure) => failure,
                    Init::NoThread(cause) => {
                        CallFailure::Error(format!("cannot start its thread: {cause}"))
                    }
                    Init::Cancelled => {
                        // A stop was ordered: the control lane has it.
                        let _ = reply.send(Err(InstanceError::StoppedDuringInit));
                        return Next::Go;
                    }
                };
                let _ = reply.send(Err(InstanceError::InitFailed {
                    reason: failure.to_string(),
                }));
                self.fail_init(failure);
                Next::Go
            }
            Control::Http(request, reply) => {
                let stop_ran = self.stop_ran;
                let answer = match self.instance.as_mut().filter(|_| !stop_ran) {
                    None => Err(format!(
                        "`{}` is {}",
                        self.slot.name,
                        self.slot.state().as_str()
                    )),
                    Some(instance) => match watched(&self.slot.stats.consumer.busy_since, || {
                        instance.http(request)
                    }) {
                        Ok(response) => Ok(response),
                        Err(CallFailure::Error(message)) => Err(message),
                        Err(failure) => {
                            let reason = format!("http {failure}");
                            self.fail(CallFailure::Panic(reason.clone()));
                            Err(reason)
                        }
                    },
                };
                reply(answer);
                Next::Go
            }
            Control::Died { pid, failure } => {
                // A stale notice about a process already replaced is ignored.
                if self.instance.as_ref().and_then(|i| i.pid()) == Some(pid) {
                    self.fail(failure);
                }
                Next::Go
            }
        }
    }

    pub(super) fn probe(&mut self, probe: Probe) -> ProbeAnswer {
        if self.stop_ran {
            return ProbeAnswer::Failed(self.slot.state().as_str().to_owned());
        }
        let Some(instance) = self.instance.as_mut() else {
            return ProbeAnswer::Failed(
                self.slot
                    .last_error()
                    .unwrap_or_else(|| self.slot.state().as_str().to_owned()),
            );
        };
        let answer = match probe {
            Probe::Health => instance.health().map(ProbeAnswer::Health),
            Probe::Ready => instance.ready().map(ProbeAnswer::Ready),
            Probe::Jobs => instance.jobs().map(ProbeAnswer::Jobs),
        };
        match answer {
            Ok(answer) => answer,
            Err(CallFailure::Error(message)) => ProbeAnswer::Failed(message),
            Err(failure) => {
                let reason = format!("{} check {failure}", format!("{probe:?}").to_lowercase());
                self.fail(CallFailure::Panic(reason.clone()));
                ProbeAnswer::Failed(reason)
            }
        }
    }
}

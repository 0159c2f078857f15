//! Progress reporting for the long protocol steps (safe primes, auxiliary info).

use cggmp21::progress::{Event, Tracer};

/// One step of a long operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressEvent {
    /// What is being done, e.g. `"safe prime"` or `"auxiliary info round"`.
    pub stage: &'static str,
    /// Steps completed so far.
    pub done: u32,
    /// Total steps, when known in advance.
    pub total: Option<u32>,
}

impl ProgressEvent {
    /// Builds an event.
    pub fn new(stage: &'static str, done: u32, total: Option<u32>) -> Self {
        ProgressEvent { stage, done, total }
    }
}

/// Receives progress events. Implemented for closures.
pub trait Progress: Send + Sync {
    /// Called at each step.
    fn report(&mut self, event: ProgressEvent);
}

impl<F: FnMut(ProgressEvent) + Send + Sync> Progress for F {
    fn report(&mut self, event: ProgressEvent) {
        self(event)
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn report(&mut self, _event: ProgressEvent) {}
}

/// Adapts a [`Progress`] to cggmp21's tracer, reporting one step per protocol round.
pub(crate) struct RoundTracer<'a> {
    stage: &'static str,
    rounds: u32,
    inner: &'a mut dyn Progress,
}

impl<'a> RoundTracer<'a> {
    pub fn new(stage: &'static str, inner: &'a mut dyn Progress) -> Self {
        RoundTracer {
            stage,
            rounds: 0,
            inner,
        }
    }
}

impl Tracer for RoundTracer<'_> {
    fn trace_event(&mut self, event: Event) {
        match event {
            Event::RoundBegins { .. } => {
                self.rounds += 1;
                self.inner
                    .report(ProgressEvent::new(self.stage, self.rounds - 1, None));
            }
            Event::ProtocolEnds => {
                self.inner.report(ProgressEvent::new(
                    self.stage,
                    self.rounds,
                    Some(self.rounds),
                ));
            }
            _ => {}
        }
    }
}

//! The events of a workflow run, each a versioned payload in the run's stream `wf/<run id>`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{EventPayload, RecordedEvent};

/// The stream of run `run_id`.
pub fn run_stream(run_id: &str) -> String {
    format!("{RUN_STREAM_PREFIX}{run_id}")
}

/// Every run stream starts with this.
pub(crate) const RUN_STREAM_PREFIX: &str = "wf/";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started, steps remaining.
    Running,
    /// Every step completed.
    Completed,
    /// A step failed for good.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 4] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The status's name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the run is over; a finished run never changes again.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// The run was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Started {
    pub workflow: String,
    /// The input, as JSON text.
    pub input: String,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub parent: Option<String>,
}

impl EventPayload for Started {
    const KIND: &'static str = "workflow.started";
    const VERSION: u16 = 1;
}

/// An attempt of a step began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepStarted {
    pub step: String,
    pub attempt: u32,
}

impl EventPayload for StepStarted {
    const KIND: &'static str = "workflow.step_started";
    const VERSION: u16 = 1;
}

/// A step recorded a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepProgress {
    pub step: String,
    /// The checkpoint, as JSON text.
    pub detail: String,
}

impl EventPayload for StepProgress {
    const KIND: &'static str = "workflow.step_progress";
    const VERSION: u16 = 1;
}

/// A step completed with an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepCompleted {
    pub step: String,
    /// The output, as JSON text.
    pub output: String,
}

impl EventPayload for StepCompleted {
    const KIND: &'static str = "workflow.step_completed";
    const VERSION: u16 = 1;
}

/// An attempt of a step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StepFailed {
    pub step: String,
    pub attempt: u32,
    pub error: String,
    pub retryable: bool,
    /// Whether another attempt follows; `false` means the step was given up.
    pub will_retry: bool,
}

impl EventPayload for StepFailed {
    const KIND: &'static str = "workflow.step_failed";
    const VERSION: u16 = 1;
}

/// A failed step will be tried again at `at_ms` (a durable timer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RetryScheduled {
    pub step: String,
    pub at_ms: i64,
}

impl EventPayload for RetryScheduled {
    const KIND: &'static str = "workflow.retry_scheduled";
    const VERSION: u16 = 1;
}

/// Someone asked for the run to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CancelRequested {
    pub by: String,
}

impl EventPayload for CancelRequested {
    const KIND: &'static str = "workflow.cancel_requested";
    const VERSION: u16 = 1;
}

/// The steps are over and the cleanup steps begin; `outcome` is what the run will end as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CleanupStarted {
    pub outcome: RunStatus,
    pub error: Option<String>,
}

impl EventPayload for CleanupStarted {
    const KIND: &'static str = "workflow.cleanup_started";
    const VERSION: u16 = 1;
}

/// The run is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Finished {
    pub status: RunStatus,
    pub error: Option<String>,
}

impl EventPayload for Finished {
    const KIND: &'static str = "workflow.finished";
    const VERSION: u16 = 1;
}

/// The stream that claims an idempotency key for one run.
pub(crate) fn idempotency_stream(key: &str) -> String {
    format!("idem/{key}")
}

/// An idempotency key was claimed for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct IdempotencyClaimed {
    pub run_id: String,
}

impl EventPayload for IdempotencyClaimed {
    const KIND: &'static str = "workflow.idempotency_claimed";
    const VERSION: u16 = 1;
}

/// A workflow event as other projections see it: which run it belongs to and what happened, with
/// inputs, outputs and checkpoints parsed. Idempotency claims and retry timers are not shown.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The run was created.
    Started {
        /// The workflow type.
        workflow: String,
        /// The run's input.
        input: serde_json::Value,
        /// The run that started it.
        parent: Option<String>,
    },
    /// An attempt of a step began.
    StepStarted {
        /// The step.
        step: String,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// A step recorded a checkpoint.
    StepProgress {
        /// The step.
        step: String,
        /// The checkpoint.
        detail: serde_json::Value,
    },
    /// A step completed.
    StepCompleted {
        /// The step.
        step: String,
        /// Its output.
        output: serde_json::Value,
    },
    /// An attempt of a step failed.
    StepFailed {
        /// The step.
        step: String,
        /// The attempt.
        attempt: u32,
        /// Why.
        error: String,
        /// Whether another attempt follows.
        will_retry: bool,
    },
    /// Someone asked for the run to stop.
    CancelRequested {
        /// Who.
        by: String,
    },
    /// The steps are over and the cleanup steps begin.
    CleanupStarted {
        /// What the run will end as.
        outcome: RunStatus,
    },
    /// The run is over.
    Finished {
        /// How it ended.
        status: RunStatus,
        /// Why it failed, if it did.
        error: Option<String>,
    },
}

/// The run id and typed view of a workflow event; `None` for events that are not a run's.
pub fn run_event(event: &RecordedEvent) -> Option<Result<(String, RunEvent)>> {
    let run_id = event.stream.strip_prefix(RUN_STREAM_PREFIX)?.to_string();
    let parse = |text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text).map_err(|err| Error::Corrupt {
            stream: event.stream.clone(),
            seq: event.seq,
            reason: format!("JSON text in a workflow event: {err}"),
        })
    };
    let typed = || -> Result<Option<RunEvent>> {
        Ok(Some(match event.kind.as_str() {
            Started::KIND => {
                let started: Started = event.decode()?;
                RunEvent::Started {
                    workflow: started.workflow,
                    input: parse(&started.input)?,
                    parent: started.parent,
                }
            }
            StepStarted::KIND => {
                let started: StepStarted = event.decode()?;
                RunEvent::StepStarted {
                    step: started.step,
                    attempt: started.attempt,
                }
            }
            StepProgress::KIND => {
                let progress: StepProgress = event.decode()?;
                RunEvent::StepProgress {
                    step: progress.step,
                    detail: parse(&progress.detail)?,
                }
            }
            StepCompleted::KIND => {
                let completed: StepCompleted = event.decode()?;
                RunEvent::StepCompleted {
                    step: completed.step,
                    output: parse(&completed.output)?,
                }
            }
            StepFailed::KIND => {
                let failed: StepFailed = event.decode()?;
                RunEvent::StepFailed {
                    step: failed.step,
                    attempt: failed.attempt,
                    error: failed.error,
                    will_retry: failed.will_retry,
                }
            }
            CancelRequested::KIND => RunEvent::CancelRequested {
                by: event.decode::<CancelRequested>()?.by,
            },
            CleanupStarted::KIND => RunEvent::CleanupStarted {
                outcome: event.decode::<CleanupStarted>()?.outcome,
            },
            Finished::KIND => {
                let finished: Finished = event.decode()?;
                RunEvent::Finished {
                    status: finished.status,
                    error: finished.error,
                }
            }
            _ => return Ok(None),
        }))
    };
    typed()
        .transpose()
        .map(|result| result.map(|run| (run_id, run)))
}

/// The payload of a workflow event as JSON, for the audit stream and `describe` views; `None` when
/// the event is not one of the runtime's. Fields holding JSON text (input, output, checkpoint
/// detail) are shown parsed.
pub fn workflow_event_json(event: &RecordedEvent) -> Option<Result<serde_json::Value>> {
    fn render<T: EventPayload>(
        event: &RecordedEvent,
        json_text_fields: &[&str],
    ) -> Result<serde_json::Value> {
        let payload: T = event.decode()?;
        let mut value = serde_json::to_value(payload).map_err(|err| Error::Corrupt {
            stream: event.stream.clone(),
            seq: event.seq,
            reason: format!("cannot show the payload as JSON: {err}"),
        })?;
        for field in json_text_fields {
            if let Some(slot) = value.get_mut(*field)
                && let Some(text) = slot.as_str()
                && let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text)
            {
                *slot = parsed;
            }
        }
        Ok(value)
    }
    Some(match event.kind.as_str() {
        Started::KIND => render::<Started>(event, &["input"]),
        StepStarted::KIND => render::<StepStarted>(event, &[]),
        StepProgress::KIND => render::<StepProgress>(event, &["detail"]),
        StepCompleted::KIND => render::<StepCompleted>(event, &["output"]),
        StepFailed::KIND => render::<StepFailed>(event, &[]),
        RetryScheduled::KIND => render::<RetryScheduled>(event, &[]),
        CancelRequested::KIND => render::<CancelRequested>(event, &[]),
        CleanupStarted::KIND => render::<CleanupStarted>(event, &[]),
        Finished::KIND => render::<Finished>(event, &[]),
        IdempotencyClaimed::KIND => render::<IdempotencyClaimed>(event, &[]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec;

    /// Payload bytes as version 1 of these events writes them, laid out by hand from the codec's
    /// documented format. Runs in existing databases hold these bytes: they must always decode.
    const GOLDEN_STEP_FAILED_V1: [u8; 28] = [
        0x01, // codec format
        0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'c', b'o', b'p', b'y', // step
        0x02, 0x00, 0x00, 0x00, // attempt
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'x', // error
        0x01, // retryable
        0x00, // will_retry
    ];

    const GOLDEN_STARTED_V1: [u8; 39] = [
        0x01, // codec format
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'b', b'a', b'c', b'k', b'u', b'p', 0x04,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'n', b'u', b'l', b'l', // input
        0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'k', // Some("k")
        0x00, // concurrency_key: None
        0x00, // parent: None
    ];

    #[test]
    fn workflow_payloads_of_version_1_are_pinned() {
        let failed = StepFailed {
            step: "copy".into(),
            attempt: 2,
            error: "x".into(),
            retryable: true,
            will_retry: false,
        };
        assert_eq!(codec::encode(&failed).unwrap(), GOLDEN_STEP_FAILED_V1);
        assert_eq!(
            codec::decode::<StepFailed>(&GOLDEN_STEP_FAILED_V1).unwrap(),
            failed
        );
        let started = Started {
            workflow: "backup".into(),
            input: "null".into(),
            idempotency_key: Some("k".into()),
            concurrency_key: None,
            parent: None,
        };
        assert_eq!(codec::encode(&started).unwrap(), GOLDEN_STARTED_V1);
        assert_eq!(
            codec::decode::<Started>(&GOLDEN_STARTED_V1).unwrap(),
            started
        );
        assert_eq!((StepFailed::VERSION, Started::VERSION), (1, 1));
    }
}

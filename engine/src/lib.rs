//! `stowage-engine`: the event log on RocksDB and the durable workflow runtime.
//!
//! It owns the on-disk database (column families, key layout, format marker), streams of events
//! with per-stream and global sequences, group-committed durable appends, the live audit stream,
//! projections maintained in the same write batch and rebuildable from the log, and will own the
//! workflow runtime built on them.
//!
//! It knows nothing of Kubernetes, backups, storage locations or HTTP: callers hand it opaque
//! payloads and steps, and it makes them durable.

mod clock;
mod codec;
mod error;
mod event;
mod keys;
mod projection;
mod store;
mod workflow;
mod writer;

pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use codec::{CodecError, decode as decode_value, encode as encode_value};
pub use error::{Error, Result};
pub use event::{Appended, EventPayload, ExpectedSeq, NewEvent, RecordedEvent};
pub use keys::{COLUMN_FAMILIES, FORMAT_VERSION, MAX_NAME_LEN};
pub use projection::{Projection, ProjectionState};
pub use store::{InspectReport, Store, StoreOptions, inspect};
pub use workflow::{
    RetryPolicy, RunCount, RunEvent, RunState, RunStatus, RunSummary, Runtime, RuntimeOptions,
    StartOptions, StepContext, StepError, StepResult, WORKFLOW_PROJECTION, Workflow, run_counts,
    run_event, run_stream, runs_projection_is_current, workflow_event_json,
};

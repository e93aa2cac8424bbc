//! Restores: which backed-up objects come back, rewritten how, created in which order, and what
//! became of each.

pub mod apply;
pub mod order;
pub mod transform;
pub mod workflow;

pub use apply::{Applier, ExistingPolicy, ObjectResult, Outcome};
pub use transform::{RESTORE_LABEL, Skip, TransformOptions, prepare};

//! TensorBoard event files written directly: TFRecord-framed `Event` protobufs
//! with scalars, text, histograms and the HParams plugin's records.
//!
//! Flush policy: every event is encoded whole and handed to the operating system
//! in a single `write` call as it is logged, so a process that is killed (even
//! with SIGKILL) leaves only complete records behind; [`EventWriter::flush`] and
//! dropping the writer also `fsync`, so records survive a machine crash from then on.

pub mod hparams;
mod proto;
mod record;
mod writer;

pub use hparams::{HParamInfo, HParamType, HValue, SessionStatus};
pub use writer::{event_files, holds_events, EventWriter, EVENTS_PREFIX};

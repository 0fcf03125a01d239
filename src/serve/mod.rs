//! Serving a finetuned USER-LLM without the training run: the export folder
//! and questions put to it from the command line. It asks through the task
//! layer's [`crate::task::ask::Asker`], as evaluation does, so both give the
//! same answers.

pub mod export;
pub mod query;
